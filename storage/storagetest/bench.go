package storagetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/rapportcrm/rapport/storage"
)

// BenchTenant is the tenant the benchmarks write to.
const BenchTenant = "bench"

// BenchRecord returns the i-th record of the benchmark data set: a person
// of about 200 bytes with a unique email, one of 10 tags and one of 50
// cities.
func BenchRecord(i int) storage.Record {
	return storage.Record{
		ID: BenchID(i),
		Body: fmt.Appendf(nil, `{"name":"Customer %d","email":"customer%d@example.com","tags":["t%d","all"],"address":{"city":"City %02d"},"n":%d,"note":"Bought twice; prefers email. Ask about the renewal in spring."}`,
			i, i, i%10, i%50, i),
	}
}

// BenchID returns the ID of the i-th benchmark record; IDs sort in i order.
func BenchID(i int) string { return fmt.Sprintf("c%09d", i) }

// Populate writes records [from, to) of the benchmark data set in
// transactions of batch records.
func Populate(ctx context.Context, st storage.Store, from, to, batch int) error {
	if err := st.Declare(ctx, Collections()...); err != nil {
		return err
	}
	for start := from; start < to; start += batch {
		end := min(start+batch, to)
		err := st.Update(ctx, BenchTenant, func(tx storage.Tx) error {
			for i := start; i < end; i++ {
				if _, err := tx.Put(ctx, people, BenchRecord(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("populating records %d-%d: %w", start, end, err)
		}
	}
	return nil
}

// BenchmarkPut measures durable single-record creates, one transaction each.
func BenchmarkPut(b *testing.B, st storage.Store) {
	ctx := context.Background()
	if err := st.Declare(ctx, Collections()...); err != nil {
		b.Fatal(err)
	}
	base := 1 << 30 // clear of other benchmarks' IDs
	i := 0
	for b.Loop() {
		rec := BenchRecord(base + i)
		i++
		err := st.Update(ctx, BenchTenant, func(tx storage.Tx) error {
			_, err := tx.Put(ctx, people, rec)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBatchPut measures creates of batch records per transaction,
// the way an import writes, and reports records/s. Each iteration adds a
// new batch to the same store, starting empty.
func BenchmarkBatchPut(b *testing.B, st storage.Store, batch int) {
	ctx := context.Background()
	if err := st.Declare(ctx, Collections()...); err != nil {
		b.Fatal(err)
	}
	next := 0
	for b.Loop() {
		if err := Populate(ctx, st, next, next+batch, batch); err != nil {
			b.Fatal(err)
		}
		next += batch
	}
	b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkGet measures Get by ID, one read transaction each, on a store
// holding records [0, n) of the data set, and reports the median and 99th
// percentile latency.
func BenchmarkGet(b *testing.B, st storage.Store, n int) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	lat := make([]time.Duration, 0, 1<<20)
	for b.Loop() {
		id := BenchID(rng.IntN(n))
		start := time.Now()
		err := st.View(ctx, BenchTenant, func(tx storage.ReadTx) error {
			_, err := tx.Get(ctx, people, id)
			return err
		})
		d := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, d)
		}
	}
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkScanIndex scans every record with one tag value (a tenth of the
// store) through the index, in pages of 10,000 within one read
// transaction, and reports records/s.
func BenchmarkScanIndex(b *testing.B, st storage.Store, n int) {
	ctx := context.Background()
	var records int
	var elapsed time.Duration
	for b.Loop() {
		start := time.Now()
		got := 0
		err := st.View(ctx, BenchTenant, func(tx storage.ReadTx) error {
			q := storage.Query{Index: "tags", Equal: "t3", Limit: storage.MaxScanLimit}
			for {
				p, err := tx.Scan(ctx, people, q)
				if err != nil {
					return err
				}
				got += len(p.Records)
				if p.Next == "" {
					return nil
				}
				q.Cursor = p.Next
			}
		})
		elapsed += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if want := (n + 6) / 10; got != want {
			b.Fatalf("scan returned %d records, want %d", got, want)
		}
		records += got
	}
	b.ReportMetric(float64(records)/elapsed.Seconds(), "records/s")
}
