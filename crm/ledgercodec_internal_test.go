package crm

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/loyalty"
)

// TestLedgerStateCodec round-trips random states, with keys and partners
// that need escaping, through the compact account encoding.
func TestLedgerStateCodec(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"", "order-1/base/ann", `quote"d`, `back\slash`, "tab\there", "ünïcode ✓", "\u2028"}
	for i := range 500 {
		st := loyalty.State{Member: names[rng.IntN(len(names))], AllowNegative: rng.IntN(2) == 0,
			Balance: rng.Int64N(1e6) - 5e5, Pending: rng.Int64N(1e6), Debt: rng.Int64N(100), Seq: int64(i)}
		for j := range rng.IntN(30) {
			l := loyalty.Lot{ID: int64(j), Key: names[rng.IntN(len(names))] + fmt.Sprint(j), Points: rng.Int64N(1e9),
				Remaining: rng.Int64N(1e9), EarnedAt: time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).UTC(),
				Partner: names[rng.IntN(len(names))], Pending: rng.IntN(2) == 0, Reversed: rng.IntN(5) == 0, Expired: rng.Int64N(50)}
			if rng.IntN(3) > 0 {
				l.ExpiresAt = time.Unix(rng.Int64N(1e11), rng.Int64N(1e9)).UTC() // years beyond 2262 too
			}
			if l.Pending && rng.IntN(2) == 0 {
				l.ActivatesAt = time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).UTC()
			}
			st.Lots = append(st.Lots, l)
		}
		body := encodeLedgerState(&st)
		var got loyalty.State
		require.NoError(t, decodeLedgerState(body, &got), string(body))
		if len(st.Lots) == 0 {
			st.Lots = got.Lots // nil and empty both mean none
		}
		require.Equal(t, st, got, string(body))
	}
	for _, bad := range []string{``, `{}`, `{"lots":[[1,"k",1]]}`, `{"lots":[[1,2,3,4,5,6,7,8,9,10,11,12,13]]}`, `{"lots":[["x","k",1,1,1,1,1,1,"",0,0,0,0]]}`, `{"lots":[[1,"k",1,1,1,1,1,1,"",0,0,0,0]}`, `{"lots":[[1,"k",1,1,1,1,1,1,"",0,0]]}`} {
		var got loyalty.State
		require.Error(t, decodeLedgerState([]byte(bad), &got), bad)
	}
}
