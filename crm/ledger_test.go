package crm_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/loyalty"
	"github.com/rapportcrm/rapport/storage/memory"
)

// ledgerEngines opens an engine on each store the ledger is tested on.
func ledgerEngines(t *testing.T) map[string]*crm.Engine {
	t.Helper()
	ctx := context.Background()
	mem := memory.New()
	onMemory, err := crm.Open(ctx, crm.Options{Store: mem})
	require.NoError(t, err)
	onBolt, err := crm.Open(ctx, crm.Options{Path: filepath.Join(t.TempDir(), "ledger.db")})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, onMemory.Close())
		require.NoError(t, mem.Close())
		require.NoError(t, onBolt.Close())
	})
	return map[string]*crm.Engine{"memory": onMemory, "bolt": onBolt}
}

var ledgerT0 = time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)

func TestLedgerIdempotencyAndErrors(t *testing.T) {
	ctx := context.Background()
	for name, e := range ledgerEngines(t) {
		t.Run(name, func(t *testing.T) {
			l := e.Default().Ledger("beans", false)
			earn := loyalty.Op{Key: "order-1", Kind: loyalty.KindEarn, Points: 100, At: ledgerT0, ExpiresAt: ledgerT0.AddDate(1, 0, 0)}
			first, err := l.Apply(ctx, "ann", earn)
			require.NoError(t, err)
			again, err := l.Apply(ctx, "ann", earn)
			require.NoError(t, err)
			assert.Equal(t, first, again, "a retry returns the first entry")
			st, err := l.State(ctx, "ann")
			require.NoError(t, err)
			assert.Equal(t, int64(100), st.Balance, "and is applied once")

			before, err := l.Journal(ctx, "ann")
			require.NoError(t, err)
			for what, op := range map[string]loyalty.Op{
				"conflict":  {Key: "order-1", Kind: loyalty.KindEarn, Points: 5, At: ledgerT0},
				"overspend": {Key: "s1", Kind: loyalty.KindSpend, Points: 101, At: ledgerT0},
				"no key":    {Kind: loyalty.KindSpend, Points: 1, At: ledgerT0},
				"bad kind":  {Key: "k", Kind: "gift", Points: 1, At: ledgerT0},
				"no ref":    {Key: "k", Kind: loyalty.KindReverse, Ref: "nope", At: ledgerT0},
			} {
				_, err := l.Apply(ctx, "ann", op)
				require.Error(t, err, what)
				assert.True(t, errors.Is(err, loyalty.ErrIdempotencyConflict) || errors.Is(err, loyalty.ErrInsufficientPoints) ||
					errors.Is(err, loyalty.ErrInvalid) || errors.Is(err, loyalty.ErrNotFound), "%s: %v", what, err)
			}
			_, err = l.Apply(ctx, "", earn)
			require.ErrorIs(t, err, crm.ErrInvalid)
			_, err = e.Default().Ledger("a/b", false).Apply(ctx, "ann", earn)
			require.ErrorIs(t, err, crm.ErrInvalid, "program names cannot contain '/'")
			after, err := l.Journal(ctx, "ann")
			require.NoError(t, err)
			assert.Equal(t, before, after, "refused operations change nothing")

			// A batch: refusals are per operation.
			res, err := l.ApplyEach(ctx, []crm.LedgerOp{
				{Member: "ann", Op: loyalty.Op{Key: "s2", Kind: loyalty.KindSpend, Points: 60, At: ledgerT0}},
				{Member: "ann", Op: loyalty.Op{Key: "s3", Kind: loyalty.KindSpend, Points: 60, At: ledgerT0}},
				{Member: "bob", Op: loyalty.Op{Key: "e1", Kind: loyalty.KindEarn, Points: 7, At: ledgerT0}},
				{Member: "ann", Op: loyalty.Op{Key: "s2", Kind: loyalty.KindSpend, Points: 60, At: ledgerT0}},
			})
			require.NoError(t, err)
			require.NoError(t, res[0].Err)
			require.ErrorIs(t, res[1].Err, loyalty.ErrInsufficientPoints)
			require.NoError(t, res[2].Err)
			assert.Equal(t, res[0].Entry, res[3].Entry, "the same key twice in a batch is applied once")
			st, err = l.State(ctx, "ann")
			require.NoError(t, err)
			assert.Equal(t, int64(40), st.Balance)

			// Programs and tenants are separate ledgers.
			other, err := e.Default().Ledger("miles", false).State(ctx, "ann")
			require.NoError(t, err)
			assert.Zero(t, other.Balance)
			other, err = e.Tenant("acme").Ledger("beans", false).State(ctx, "ann")
			require.NoError(t, err)
			assert.Zero(t, other.Balance)

			// Expiry, as a job.
			es, err := l.ExpireDue(ctx, "ann", ledgerT0.AddDate(1, 0, 0))
			require.NoError(t, err)
			require.Len(t, es, 1)
			assert.Equal(t, int64(-40), es[0].Delta)
			j, err := l.Journal(ctx, "ann")
			require.NoError(t, err)
			require.NoError(t, j.Check())
			assert.Zero(t, j.Balance)
		})
	}
}

// TestLedgerPropertiesOnStores runs random operations through the engine
// on the memory and bolt stores and checks the invariants against the
// stored journal.
func TestLedgerPropertiesOnStores(t *testing.T) {
	ctx := context.Background()
	for name, e := range ledgerEngines(t) {
		t.Run(name, func(t *testing.T) {
			for _, negative := range []bool{false, true} {
				l := e.Default().Ledger(fmt.Sprintf("p-%v", negative), negative)
				rng := rand.New(rand.NewPCG(3, 9))
				now := ledgerT0
				var keys []string
				members := []string{"ann", "bob", "cid"}
				applied := 0
				for i := range 1500 {
					now = now.Add(time.Duration(rng.IntN(48)) * time.Hour)
					m := members[rng.IntN(len(members))]
					st, err := l.State(ctx, m)
					require.NoError(t, err)
					op := randomLedgerOp(rng, i, now, keys, st.Balance)
					e, err := l.Apply(ctx, m, op)
					if err == nil {
						applied++
						if op.Kind == loyalty.KindEarn || op.Kind == loyalty.KindPending {
							keys = append(keys, op.Key)
						}
						require.Equal(t, op.Key, e.Op.Key)
					}
					if i%100 == 99 {
						for _, m := range members {
							j, err := l.Journal(ctx, m)
							require.NoError(t, err)
							require.NoError(t, j.Check(), "%s after %d", m, i)
						}
					}
				}
				assert.Greater(t, applied, 900)
			}
		})
	}
}

func randomLedgerOp(rng *rand.Rand, i int, now time.Time, keys []string, balance int64) loyalty.Op {
	key := fmt.Sprintf("op-%d", i)
	var expires time.Time
	if rng.IntN(3) > 0 {
		expires = now.AddDate(0, 0, 1+rng.IntN(90))
	}
	ref := "missing"
	if len(keys) > 0 {
		ref = keys[rng.IntN(len(keys))]
	}
	switch rng.IntN(9) {
	case 0, 1, 2:
		return loyalty.Op{Key: key, Kind: loyalty.KindEarn, Points: 1 + rng.Int64N(100), At: now, ExpiresAt: expires}
	case 3:
		return loyalty.Op{Key: key, Kind: loyalty.KindPending, Points: 1 + rng.Int64N(100), At: now, ExpiresAt: expires}
	case 4:
		return loyalty.Op{Key: key, Kind: loyalty.KindActivate, Ref: ref, At: now}
	case 5, 6:
		return loyalty.Op{Key: key, Kind: loyalty.KindSpend, Points: 1 + rng.Int64N(max(balance, 0)*6/5+10), At: now}
	case 7:
		// All the entry has left, or part of it (a partial refund;
		// sometimes more than is left, which is refused).
		var pts int64
		if rng.IntN(2) == 0 {
			pts = 1 + rng.Int64N(60)
		}
		return loyalty.Op{Key: key, Kind: loyalty.KindReverse, Ref: ref, Points: pts, At: now}
	default:
		return loyalty.Op{Key: key, Kind: loyalty.KindAdjust, Points: rng.Int64N(200) - 120, At: now, Reason: "support"}
	}
}

// TestLedgerConcurrentSpends has 100 goroutines spend the same points at
// once through the engine.
func TestLedgerConcurrentSpends(t *testing.T) {
	ctx := context.Background()
	for name, e := range ledgerEngines(t) {
		t.Run(name, func(t *testing.T) {
			l := e.Default().Ledger("beans", false)
			_, err := l.Apply(ctx, "ann", loyalty.Op{Key: "e", Kind: loyalty.KindEarn, Points: 500, At: ledgerT0})
			require.NoError(t, err)
			var ok, refused atomic.Int64
			var wg sync.WaitGroup
			for g := range 100 {
				wg.Go(func() {
					_, err := l.Apply(ctx, "ann", loyalty.Op{Key: fmt.Sprintf("s%d", g), Kind: loyalty.KindSpend, Points: 20, At: ledgerT0.Add(time.Hour)})
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, loyalty.ErrInsufficientPoints):
						refused.Add(1)
					default:
						t.Error(err)
					}
				})
			}
			wg.Wait()
			assert.Equal(t, int64(25), ok.Load())
			assert.Equal(t, int64(75), refused.Load())
			j, err := l.Journal(ctx, "ann")
			require.NoError(t, err)
			assert.Zero(t, j.Balance)
			assert.Len(t, j.Journal, 26)
			require.NoError(t, j.Check())
		})
	}
}

func TestLedgerSettlement(t *testing.T) {
	ctx := context.Background()
	for name, e := range ledgerEngines(t) {
		t.Run(name, func(t *testing.T) {
			l := e.Default().Ledger("beans", false)
			res, err := l.ApplyEach(ctx, []crm.LedgerOp{
				{Member: "ann", Op: loyalty.Op{Key: "f1", Kind: loyalty.KindEarn, Points: 80, At: ledgerT0, Partner: "fuelco"}},
				{Member: "bob", Op: loyalty.Op{Key: "f2", Kind: loyalty.KindEarn, Points: 40, At: ledgerT0, Partner: "fuelco"}},
				{Member: "bob", Op: loyalty.Op{Key: "r2", Kind: loyalty.KindReverse, Ref: "f2", At: ledgerT0.Add(time.Hour)}},
				{Member: "cid", Op: loyalty.Op{Key: "h1", Kind: loyalty.KindEarn, Points: 300, At: ledgerT0, Partner: "hotels"}},
				{Member: "cid", Op: loyalty.Op{Key: "s1", Kind: loyalty.KindSpend, Points: 100, At: ledgerT0.Add(time.Hour), Partner: "hotels"}},
			})
			require.NoError(t, err)
			for _, r := range res {
				require.NoError(t, r.Err)
			}
			// Another program's entries are not this one's.
			_, err = e.Default().Ledger("beansx", false).Apply(ctx, "ann", loyalty.Op{Key: "x", Kind: loyalty.KindEarn, Points: 5, At: ledgerT0, Partner: "fuelco"})
			require.NoError(t, err)
			got, err := l.Settlement(ctx, ledgerT0, ledgerT0.AddDate(0, 1, 0))
			require.NoError(t, err)
			assert.Equal(t, []loyalty.PartnerTotals{
				{Partner: "fuelco", Earned: 120, Reversed: 40},
				{Partner: "hotels", Earned: 300, Spent: 100},
			}, got)
		})
	}
}
