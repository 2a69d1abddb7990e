package analytics_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/rapportcrm/rapport/analytics"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage/bolt"
)

// fixtureDir holds the benchmark databases, built once per process, or
// kept across runs in $RAPPORT_BENCH_DIR when it is set.
var fixtureDir = sync.OnceValue(func() string {
	if dir := os.Getenv("RAPPORT_BENCH_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			panic(err)
		}
		return dir
	}
	dir, err := os.MkdirTemp("", "rapport-analytics-bench-")
	if err != nil {
		panic(err)
	}
	return dir
})

func TestMain(m *testing.M) {
	code := m.Run()
	if os.Getenv("RAPPORT_BENCH_DIR") == "" {
		os.RemoveAll(fixtureDir())
	}
	os.Exit(code)
}

// fixture returns the path of a benchmark database, unless a previous
// run left it in fixtureDir building it: build fills an engine on a
// bbolt file (into a temporary file, renamed when complete) whose clock
// starts at 2025-01-01, and the search indexer catches up before it is
// closed, so that it does not run during the measurements.
func fixture(b *testing.B, name string, build func(ctx context.Context, e *crm.Engine, c *clock)) string {
	b.Helper()
	path := filepath.Join(fixtureDir(), name)
	if _, err := os.Stat(path); err == nil {
		return path
	}
	tmp := path + ".building"
	os.Remove(tmp)
	ctx := context.Background()
	st, err := bolt.Open(tmp, &bolt.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	c := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	e, err := crm.Open(ctx, crm.Options{Store: st, Clock: c})
	if err != nil {
		b.Fatal(err)
	}
	build(ctx, e, c)
	if _, err := e.Contacts().Search(ctx, "anyone", crm.SearchOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := errors.Join(e.Close(), st.Close()); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	return path
}

// openFixture opens the engine on a fixture with its clock at now, closed
// when b ends.
func openFixture(b *testing.B, path string, now time.Time) *crm.Engine {
	b.Helper()
	e, err := crm.Open(context.Background(), crm.Options{Path: path, Clock: &clock{now: now}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e
}

// checkBatch fails b on a batch's error or any item's.
func checkBatch(b *testing.B, errs []error, err error) {
	b.Helper()
	if err := cmp.Or(append([]error{err}, errs...)...); err != nil {
		b.Fatal(err)
	}
}

// createDeals creates n deals of the sales pipeline entering it over
// 2024, owned by 50 owners, at the stage stage(j) gives deal j, and
// returns their IDs.
func createDeals(ctx context.Context, b *testing.B, e *crm.Engine, n int, stage func(j int) string) []string {
	const batch = 10_000
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	step := time.Duration(int64(365*24*time.Hour) / int64(n))
	ids := make([]string, 0, n)
	deals := make([]crm.Deal, 0, batch)
	for i := 0; i < n; i += batch {
		deals = deals[:0]
		for j := i; j < min(i+batch, n); j++ {
			deals = append(deals, crm.Deal{Meta: crm.Meta{Owner: fmt.Sprintf("u%02d", j%50)}, Title: "Deal",
				Pipeline: "sales", Stage: stage(j), StageEnteredAt: start.Add(time.Duration(j) * step),
				Amount: crm.Money{Amount: int64(1000 + j%100000), Currency: "EUR"}})
		}
		created, errs, err := e.Deals().CreateEach(ctx, deals)
		checkBatch(b, errs, err)
		for _, d := range created {
			ids = append(ids, d.ID)
		}
	}
	return ids
}

// dealsDB returns a bbolt file with n deals in the sales pipeline, created
// at stages spread over 2024 (40% new, 25% qualified, 15% proposal, 10%
// won, 10% lost), owned by 50 owners: n stage-history entries.
func dealsDB(b *testing.B, n int) string {
	b.Helper()
	return fixture(b, fmt.Sprintf("deals-%d.db", n), func(ctx context.Context, e *crm.Engine, _ *clock) {
		savePipeline(b, e, salesPipeline)
		stages := []string{"new", "new", "new", "new", "qualified", "qualified", "qualified", "proposal", "won", "lost"}
		createDeals(ctx, b, e, n, func(j int) string { return stages[(j*7)%10] })
	})
}

// historyDB returns a bbolt file with n deals of the sales pipeline that
// have five stage-history entries each: created at "new" over 2024, then
// moved to qualified, proposal, back to qualified, and on to won, lost
// or proposal (a third each), in batches of 10,000 an hour
// apart from 2025-01-01, so that stays differ.
func historyDB(b *testing.B, n int) string {
	b.Helper()
	return fixture(b, fmt.Sprintf("history-%d.db", n), func(ctx context.Context, e *crm.Engine, c *clock) {
		savePipeline(b, e, salesPipeline)
		ids := createDeals(ctx, b, e, n, func(int) string { return "new" })
		route := func(j, round int) string {
			switch round {
			case 0:
				return "qualified"
			case 1:
				return "proposal"
			case 2:
				return "qualified" // back one stage
			}
			return [3]string{"won", "lost", "proposal"}[j%3]
		}
		const batch = 10_000
		reqs := make([]crm.MoveRequest, 0, batch)
		for round := range 4 {
			for i := 0; i < n; i += batch {
				c.set(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(round*n/batch+i/batch) * time.Hour))
				reqs = reqs[:0]
				for j := i; j < min(i+batch, n); j++ {
					reqs = append(reqs, crm.MoveRequest{ID: ids[j], To: route(j, round), MoveOptions: crm.MoveOptions{Reason: "price"}})
				}
				_, errs, err := e.Deals().MoveEach(ctx, reqs)
				checkBatch(b, errs, err)
			}
		}
	})
}

// BenchmarkFunnelAndStages computes the funnel and the stage report of
// 1,000,000 deals with 5,000,000 stage-history entries (the goal is at
// most 5 s for both), reporting the peak heap.
func BenchmarkFunnelAndStages(b *testing.B) {
	const n = 1_000_000
	e := openFixture(b, historyDB(b, n), time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC))
	ctx := context.Background()
	r := analytics.New(e.Default())
	var peak uint64
	for b.Loop() {
		runtime.GC()
		stop := peakHeap()
		f, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales"})
		if err != nil {
			b.Fatal(err)
		}
		st, err := r.Stages(ctx, analytics.StagesQuery{Pipeline: "sales"})
		peak = max(peak, stop())
		if err != nil {
			b.Fatal(err)
		}
		if got := f.Groups[0].Stages[0].Entered; got != n {
			b.Fatalf("%d deals entered new, not %d", got, n)
		}
		exits := 0
		for _, s := range st.Groups[0].Stages {
			exits += s.Exits
		}
		if exits != 4*n {
			b.Fatalf("%d stays ended, not %d", exits, 4*n)
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
	b.ReportMetric(float64(5*n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// openDeals opens the engine on dealsDB(b, n), closed when b ends.
func openDeals(b *testing.B, n int) *crm.Engine {
	b.Helper()
	return openFixture(b, dealsDB(b, n), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
}

// peakHeap samples the heap in use every millisecond until stop is
// called, which returns the largest value seen, in bytes.
func peakHeap() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	done, finished := make(chan struct{}), make(chan struct{})
	read := func() {
		metrics.Read(sample)
		peak = max(peak, sample[0].Value.Uint64())
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			read()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		read()
		return peak
	}
}

// BenchmarkFunnel computes the funnel of 1,000,000 deals on bbolt (the
// goal is at most 1 s), and the stage report over the same deals,
// reporting the peak heap of each run.
func BenchmarkFunnel(b *testing.B) {
	const n = 1_000_000
	e := openDeals(b, n)
	ctx := context.Background()
	r := analytics.New(e.Default())
	// The floor: reading the stage changes, with no aggregation.
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			count := 0
			err := e.Deals().ScanMoves(ctx, crm.MovesQuery{Pipeline: "sales"}, func(*crm.StageMove) error {
				count++
				return nil
			})
			if err != nil || count != n {
				b.Fatalf("%d moves, %v", count, err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deals/s")
	})
	for _, by := range []analytics.By{analytics.All, analytics.ByOwner} {
		b.Run("by="+string(by), func(b *testing.B) {
			var peak uint64
			for b.Loop() {
				runtime.GC()
				stop := peakHeap()
				f, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales", By: by})
				peak = max(peak, stop())
				if err != nil {
					b.Fatal(err)
				}
				total := 0
				for _, g := range f.Groups {
					total += g.Stages[0].Reached + g.Stages[4].Entered
				}
				if total != n {
					b.Fatalf("the funnel counts %d deals, not %d", total, n)
				}
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deals/s")
		})
	}
}

// BenchmarkStages computes the stage report of the same 1,000,000 deals:
// their stage history (index values) and where each deal is now (which
// reads every deal's body).
func BenchmarkStages(b *testing.B) {
	const n = 1_000_000
	e := openDeals(b, n)
	ctx := context.Background()
	r := analytics.New(e.Default())
	var peak uint64
	for b.Loop() {
		runtime.GC()
		stop := peakHeap()
		st, err := r.Stages(ctx, analytics.StagesQuery{Pipeline: "sales"})
		peak = max(peak, stop())
		if err != nil {
			b.Fatal(err)
		}
		total := 0
		for _, s := range st.Groups[0].Stages {
			total += s.Current
		}
		if total != n {
			b.Fatalf("%d deals now, not %d", total, n)
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
}

// ordersDB returns a bbolt file with customers contacts and orders of 4
// lines each, over 2024: order k belongs to customer k mod customers, and
// every tenth order after each customer's first is a refund.
func ordersDB(b *testing.B, customers, orders int) string {
	b.Helper()
	return fixture(b, fmt.Sprintf("orders-%d-%d.db", customers, orders), func(ctx context.Context, e *crm.Engine, _ *clock) {
		const batch = 10_000
		ids := make([]string, 0, customers)
		contacts := make([]crm.Contact, 0, batch)
		for i := 0; i < customers; i += batch {
			contacts = contacts[:0]
			for j := i; j < min(i+batch, customers); j++ {
				contacts = append(contacts, crm.Contact{FirstName: "C", LastName: fmt.Sprint(j)})
			}
			created, errs, err := e.Contacts().CreateEach(ctx, contacts)
			checkBatch(b, errs, err)
			for _, c := range created {
				ids = append(ids, c.ID)
			}
		}
		start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
		step := time.Duration(int64(365*24*time.Hour) / int64(orders))
		batchOrders := make([]crm.Order, 0, batch)
		for i := 0; i < orders; i += batch {
			batchOrders = batchOrders[:0]
			for k := i; k < min(i+batch, orders); k++ {
				o := crm.Order{Number: fmt.Sprint(k), ContactID: ids[k%customers], OrderedAt: start.Add(time.Duration(k) * step), Currency: "GBP"}
				sign := int64(1)
				if k%10 == 9 && k >= customers {
					o.Number, o.Refund, sign = "C"+o.Number, true, -1
				}
				for l := range 4 {
					o.Lines = append(o.Lines, crm.OrderLine{SKU: fmt.Sprintf("p%d", (k+l)%500), Quantity: sign * int64(1+l), UnitPrice: crm.Money{Amount: int64(100 + (k*7+l)%900)}})
				}
				batchOrders = append(batchOrders, o)
			}
			_, errs, err := e.Orders().CreateEach(ctx, batchOrders)
			checkBatch(b, errs, err)
		}
	})
}

// BenchmarkRFM computes RFM over 1,000,000 customers with 2,500,000
// orders of 10,000,000 lines (the goal is at most 10 s), reporting the
// peak heap.
func BenchmarkRFM(b *testing.B) {
	const customers, orders = 1_000_000, 2_500_000
	e := openFixture(b, ordersDB(b, customers, orders), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	ctx := context.Background()
	r := analytics.New(e.Default())
	var peak uint64
	for b.Loop() {
		runtime.GC()
		stop := peakHeap()
		rfm, err := r.RFM(ctx, analytics.RFMOptions{})
		peak = max(peak, stop())
		if err != nil {
			b.Fatal(err)
		}
		if len(rfm.Rows) != customers {
			b.Fatalf("%d customers, not %d", len(rfm.Rows), customers)
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
	b.ReportMetric(float64(4*orders)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// The in-memory RFM aggregation must stay within 1.5x of a plain loop
// that sums into a dense per-customer slice. Both run over the same
// 10,000,000 order facts of 1,000,000 customers, grouped by customer as
// crm.Tenant.ScanOrderFacts delivers them; the dense loop is given each
// fact's customer index up front, which the real aggregation has to work
// out from the IDs.
func BenchmarkRFMAggregation(b *testing.B) {
	const customers, lines = 1_000_000, 10_000_000
	facts := make([]crm.OrderFact, 0, lines)
	index := make([]int32, 0, lines)
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for c := range customers {
		id := fmt.Sprintf("0190c6d2-0000-7000-8000-%012d", c)
		for j := range lines / customers {
			// One customer's facts share one ID string, as
			// ScanOrderFacts delivers them (a copy per fact makes the
			// aggregation compare 36 bytes per line: 2.1x).
			facts = append(facts, crm.OrderFact{ContactID: id, OrderedAt: at.Add(time.Duration(c+j) * time.Hour),
				Refund: j == 9 && c%7 == 0, Total: crm.Money{Amount: int64(100 + (c+j)%5000), Currency: "EUR"}})
			index = append(index, int32(c))
		}
	}
	type row struct {
		frequency int
		monetary  int64
		last      time.Time
	}
	dense := func() []row {
		rows := make([]row, customers)
		for i := range facts {
			f, r := &facts[i], &rows[index[i]]
			r.monetary += f.Total.Amount
			if !f.Refund {
				r.frequency++
				if f.OrderedAt.After(r.last) {
					r.last = f.OrderedAt
				}
			}
		}
		return rows
	}
	rfm := func() {
		rows, err := analytics.AggregateRFM(facts)
		if err != nil || rows != customers {
			b.Fatalf("%d rows, %v", rows, err)
		}
	}
	// Settle the building's garbage first, so that neither loop pays
	// for it. (The first series still runs up to three times slower on
	// this VM, whichever loop goes first: discard it.)
	runtime.GC()
	b.Run("dense-slice", func(b *testing.B) {
		for b.Loop() {
			dense()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/lines, "ns/line")
	})
	b.Run("rfm", func(b *testing.B) {
		for b.Loop() {
			rfm()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/lines, "ns/line")
	})
	// The two loops taking turns, so that the machine's drift from one
	// series to the next falls on both alike; ratio is the goal's figure.
	b.Run("alternating", func(b *testing.B) {
		var d, r time.Duration
		for b.Loop() {
			start := time.Now()
			dense()
			mid := time.Now()
			rfm()
			d, r = d+mid.Sub(start), r+time.Since(mid)
		}
		b.ReportMetric(float64(d.Nanoseconds())/float64(b.N)/lines, "dense-ns/line")
		b.ReportMetric(float64(r.Nanoseconds())/float64(b.N)/lines, "rfm-ns/line")
		b.ReportMetric(float64(r)/float64(d), "ratio")
	})
}
