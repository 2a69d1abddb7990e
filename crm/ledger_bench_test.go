package crm_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/loyalty"
)

// BenchmarkLedger measures earn+spend operations on bbolt (durable: fsync
// per commit), batched with ApplyEach and one at a time with Apply. Goal:
// ≥ 20,000 operations/s batched.
func BenchmarkLedger(b *testing.B) {
	ctx := context.Background()
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			e, err := crm.Open(ctx, crm.Options{Path: filepath.Join(b.TempDir(), "ledger.db")})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			l := e.Default().Ledger("beans", false)
			at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			const members = 1000
			n := 0
			ops := make([]crm.LedgerOp, 0, batch)
			for b.Loop() {
				ops = ops[:0]
				for range batch {
					// Each member earns, then spends half of it.
					m := fmt.Sprintf("m%d", (n/2)%members)
					op := loyalty.Op{Key: fmt.Sprintf("op%d", n), Kind: loyalty.KindEarn, Points: 100, At: at, ExpiresAt: at.AddDate(1, 0, 0)}
					if n%2 == 1 {
						op = loyalty.Op{Key: fmt.Sprintf("op%d", n), Kind: loyalty.KindSpend, Points: 50, At: at}
					}
					ops = append(ops, crm.LedgerOp{Member: m, Op: op})
					n++
				}
				res, err := l.ApplyEach(ctx, ops)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}
