package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/analytics"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/postgres"
	"github.com/rapportcrm/rapport/storage/postgres/pgtest"
)

// streaming hides the store's aggregators: reports on it take the
// streaming path.
type streaming struct{ storage.Store }

// testClock is a clock the test moves forward.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestPushdownParity runs the funnel, the stage report and RFM on the
// same data twice: computed in SQL (the store's aggregators) and streamed
// through the engine. The reports must be the same.
func TestPushdownParity(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	clock := &testClock{now: time.Date(2026, 3, 2, 9, 0, 0, 123456789, time.UTC)}
	pushed, err := crm.Open(ctx, crm.Options{Store: st, Clock: clock})
	require.NoError(t, err)
	defer pushed.Close()
	streamed, err := crm.Open(ctx, crm.Options{Store: streaming{st}, Clock: clock})
	require.NoError(t, err)
	defer streamed.Close()

	def, err := pipeline.Builtin("b2b-deal")
	require.NoError(t, err)
	require.NoError(t, pushed.Pipelines().Save(ctx, def))
	var stages []string
	for _, s := range def.Stages {
		stages = append(stages, s.Key)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	owners := []string{"u1", "u2", "u3", ""}
	amount, err := crm.ParseMoney("1000", "EUR")
	require.NoError(t, err)
	for i := range 60 {
		d, err := pushed.Deals().Create(ctx, crm.Deal{Title: fmt.Sprintf("Deal %d", i), Pipeline: "b2b-deal", Amount: amount,
			Meta: crm.Meta{Owner: owners[rng.IntN(len(owners))]}})
		require.NoError(t, err)
		for range rng.IntN(6) {
			clock.advance(time.Duration(rng.Int64N(int64(72 * time.Hour))))
			if rng.IntN(4) == 0 {
				d.Owner = owners[rng.IntN(len(owners))]
				if d, err = pushed.Deals().Update(ctx, d); err != nil {
					require.NoError(t, err)
				}
			}
			moved, err := pushed.Deals().Move(ctx, d.ID, stages[rng.IntN(len(stages))], crm.MoveOptions{Version: d.Version})
			if err != nil {
				continue // a move the pipeline refuses
			}
			d = moved
		}
	}
	var contacts []string
	for i := range 25 {
		c, err := pushed.Contacts().Create(ctx, crm.Contact{FirstName: "C", LastName: fmt.Sprint(i)})
		require.NoError(t, err)
		contacts = append(contacts, c.ID)
	}
	for i := range 80 {
		c := contacts[rng.IntN(len(contacts))]
		cur := []string{"EUR", "EUR", "USD"}[rng.IntN(3)]
		clock.advance(time.Duration(rng.Int64N(int64(48 * time.Hour))))
		o := crm.Order{Number: fmt.Sprint(i), ContactID: c, OrderedAt: clock.Now(), Currency: cur,
			Lines: []crm.OrderLine{{SKU: "x", Quantity: 1 + rng.Int64N(3), UnitPrice: crm.Money{Amount: 100 + rng.Int64N(10000), Currency: cur}}}}
		if rng.IntN(8) == 0 {
			o.Refund, o.Lines[0].Quantity = true, -1
		}
		_, err := pushed.Orders().Create(ctx, o)
		require.NoError(t, err)
	}

	p, s := analytics.New(pushed.Default()), analytics.New(streamed.Default())
	mid := clock.Now().Add(-5 * 24 * time.Hour)
	for _, period := range []analytics.Period{{}, {From: mid}, {To: mid}} {
		for _, by := range []analytics.By{analytics.All, analytics.ByOwner} {
			for _, slice := range []analytics.Slice{{}, {Owners: []string{"u1", "u3"}}} {
				name := fmt.Sprintf("%+v %q %v", period, by, slice.Owners)
				fp, err := p.Funnel(ctx, analytics.FunnelQuery{Pipeline: "b2b-deal", Period: period, By: by, Slice: slice})
				require.NoError(t, err, name)
				fs, err := s.Funnel(ctx, analytics.FunnelQuery{Pipeline: "b2b-deal", Period: period, By: by, Slice: slice})
				require.NoError(t, err, name)
				assert.Equal(t, fs, fp, "funnel %s", name)
				sp, err := p.Stages(ctx, analytics.StagesQuery{Pipeline: "b2b-deal", Period: period, By: by, Slice: slice})
				require.NoError(t, err, name)
				ss, err := s.Stages(ctx, analytics.StagesQuery{Pipeline: "b2b-deal", Period: period, By: by, Slice: slice})
				require.NoError(t, err, name)
				assert.Equal(t, ss, sp, "stages %s", name)
			}
		}
	}
	for _, cur := range []string{"EUR", "USD"} {
		rp, err := p.RFM(ctx, analytics.RFMOptions{Currency: cur})
		require.NoError(t, err)
		rs, err := s.RFM(ctx, analytics.RFMOptions{Currency: cur})
		require.NoError(t, err)
		assert.Equal(t, rs, rp, "rfm %s", cur)
		assert.NotEmpty(t, rp.Rows)
	}

	// The aggregators answered (the numbers are not all zero).
	f, err := st.AggregateFunnel(ctx, analytics.FunnelAggregate{FactsQuery: analytics.FactsQuery{Tenant: "default", Kind: pipeline.KindDeal,
		Records: "deals", Timeline: "timeline", Pipeline: "b2b-deal", Stages: stages}, PathRank: make([]int, len(stages))})
	require.NoError(t, err)
	require.Len(t, f, 1)
	assert.Equal(t, 60, f[0].Entered[0], "every deal entered the first stage")
}

// openEngine opens an engine on a store of its own.
func openEngine(t *testing.T) (*postgres.Store, *crm.Engine) {
	t.Helper()
	st := open(t)
	e, err := crm.Open(context.Background(), crm.Options{Store: st})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	return st, e
}

// TestEngineCreateMany checks the engine's CreateMany on PostgreSQL, which
// sends the records in bulk (storage.BulkCreator): the records, their
// events and their stage facts are there as with one create each, and a
// bad record anywhere in the batch is named and writes nothing.
func TestEngineCreateMany(t *testing.T) {
	st, e := openEngine(t)
	ctx := context.Background()
	contact := benchContact
	var cs []crm.Contact
	for i := range 100 {
		cs = append(cs, contact(i))
	}
	out, err := e.Contacts().CreateMany(ctx, cs)
	require.NoError(t, err)
	require.Len(t, out, 100)
	got, err := e.Contacts().Get(ctx, out[42].ID)
	require.NoError(t, err)
	assert.Equal(t, "customer42@example.com", got.Email)
	assert.Equal(t, uint64(1), got.Version)
	head, err := st.OutboxHead(ctx)
	require.NoError(t, err)

	// A duplicate within the batch, then one of a stored contact.
	for name, bad := range map[string]crm.Contact{"within": contact(1000), "stored": contact(7)} {
		batch := []crm.Contact{contact(1000), contact(1001), contact(1002), bad}
		if name == "within" {
			batch[3] = contact(1000)
		}
		_, err = e.Contacts().CreateMany(ctx, batch)
		var ve *crm.ValidationError
		require.ErrorAs(t, err, &ve, name)
		assert.ErrorContains(t, err, "record 3 of 4", name)
		assert.Equal(t, "email", ve.Fields[0].Field, name)
	}
	list, err := e.Contacts().List(ctx, crm.ListOptions{Limit: 1000})
	require.NoError(t, err)
	assert.Len(t, list.Items, 100, "refused batches wrote nothing")
	after, err := st.OutboxHead(ctx)
	require.NoError(t, err)
	assert.Equal(t, head, after, "nor any event")

	// Deals: their stage facts are written beside them.
	def, err := pipeline.Builtin("b2b-deal")
	require.NoError(t, err)
	require.NoError(t, e.Pipelines().Save(ctx, def))
	amount, err := crm.ParseMoney("10", "EUR")
	require.NoError(t, err)
	var ds []crm.Deal
	for i := range 30 {
		ds = append(ds, crm.Deal{Title: fmt.Sprint("D", i), Pipeline: "b2b-deal", Amount: amount})
	}
	_, err = e.Deals().CreateMany(ctx, ds)
	require.NoError(t, err)
	f, err := analytics.New(e.Default()).Funnel(ctx, analytics.FunnelQuery{Pipeline: "b2b-deal"})
	require.NoError(t, err)
	assert.Equal(t, 30, f.Groups[0].Stages[0].Entered)
}

// TestEngineCreateEach checks the import path on PostgreSQL: records the
// store refuses (an email held by a stored contact or repeated in the
// batch) are reported one by one and left out, the others are created in
// bulk, with one event each.
func TestEngineCreateEach(t *testing.T) {
	st, e := openEngine(t)
	ctx := context.Background()
	contact := benchContact
	_, err := e.Contacts().Create(ctx, contact(5))
	require.NoError(t, err)
	head, err := st.OutboxHead(ctx)
	require.NoError(t, err)
	var batch []crm.Contact
	for i := range 20 {
		batch = append(batch, contact(100+i))
	}
	batch[3] = contact(5)    // held by a stored contact
	batch[9] = contact(100)  // repeats record 0
	batch[12].Email = "nope" // invalid: refused before any write
	batch[15] = contact(5)   // held too
	created, errs, err := e.Contacts().CreateEach(ctx, batch)
	require.NoError(t, err)
	for i := range batch {
		switch i {
		case 3, 9, 12, 15:
			var ve *crm.ValidationError
			require.ErrorAs(t, errs[i], &ve, "record %d", i)
			assert.Equal(t, "email", ve.Fields[0].Field, "record %d", i)
		default:
			require.NoError(t, errs[i], "record %d", i)
			assert.NotEmpty(t, created[i].ID)
		}
	}
	list, err := e.Contacts().List(ctx, crm.ListOptions{Limit: 100})
	require.NoError(t, err)
	assert.Len(t, list.Items, 1+16)
	after, err := st.OutboxHead(ctx)
	require.NoError(t, err)
	assert.Equal(t, head+16, after, "one event per created contact")
}

// TestReportsPlannedForTheirTenant checks that the report queries are
// not statements prepared once per connection: PostgreSQL may keep such
// a statement's generic plan after five runs, and that plan, which does
// not know the tenant, scanned every tenant's rows of the typed table.
// The store has one connection for its calls (and one for LISTEN), so
// every report runs on it.
func TestReportsPlannedForTheirTenant(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	schema := pgtest.Schema(t)
	st, err := postgres.Open(ctx, poolSize(server.URL, 2), &postgres.Options{Schema: schema})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = st.Close()
		dropSchema(t, schema)
	})
	e, err := crm.Open(ctx, crm.Options{Store: st})
	require.NoError(t, err)
	defer e.Close()
	def, err := pipeline.Builtin("b2b-deal")
	require.NoError(t, err)
	var stages []string
	for _, s := range def.Stages {
		stages = append(stages, s.Key)
	}
	facts := analytics.FactsQuery{Tenant: "default", Kind: pipeline.KindDeal, Records: "deals", Timeline: "timeline", Pipeline: "b2b-deal", Stages: stages}
	for range 7 {
		_, err := st.AggregateFunnel(ctx, analytics.FunnelAggregate{FactsQuery: facts, PathRank: make([]int, len(stages))})
		require.NoError(t, err)
		_, err = st.AggregateStages(ctx, analytics.StageAggregate{FactsQuery: facts, At: time.Now()})
		require.NoError(t, err)
		_, err = st.AggregateRFM(ctx, analytics.RFMAggregate{Tenant: "default", Orders: "orders", Currency: "EUR"})
		require.NoError(t, err)
	}
	prepared, err := st.PreparedStatements(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, prepared, "the store's other statements are prepared on its connection")
	for _, sql := range prepared {
		// (pgx's COPY prepares a query of a typed table's columns, with
		// no parameters.)
		if strings.Contains(sql, "cols_") && strings.Contains(sql, "$1") {
			t.Errorf("a report statement is prepared: %s", sql)
		}
	}
}
