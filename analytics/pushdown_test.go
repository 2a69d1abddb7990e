package analytics_test

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/analytics"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/memory"
)

// aggStore is a store that answers the pushdown interfaces itself, the
// way a SQL store would, but from what the engine's public API returns
// (each deal's stage history and current stage, each order): a
// computation independent of the index facts the streaming path reads.
type aggStore struct {
	storage.Store
	e *crm.Engine
	// off declines every query (errors.ErrUnsupported), so that reports
	// stream; fail is returned instead of an answer; short drops a
	// stage from every answer.
	off   bool
	fail  error
	short bool
	calls int
}

func (s *aggStore) answer() error {
	s.calls++
	if s.off {
		return errors.ErrUnsupported
	}
	return s.fail
}

// facts returns the deals of the queried pipeline with their histories.
func (s *aggStore) facts(ctx context.Context, q analytics.FactsQuery) ([]crm.Deal, [][]crm.StageChange, error) {
	if q.Kind != pipeline.KindDeal {
		return nil, nil, errors.ErrUnsupported
	}
	deals := s.e.Tenant(q.Tenant).Deals()
	var ds []crm.Deal
	err := deals.Each(ctx, crm.EachOptions{Archived: crm.ArchivedIncluded}, func(d *crm.Deal) error {
		ds = append(ds, *d)
		return nil
	})
	hs := make([][]crm.StageChange, len(ds))
	for i := range ds {
		if hs[i], err = deals.History(ctx, ds[i].ID); err != nil {
			return nil, nil, err
		}
	}
	return ds, hs, err
}

func (s *aggStore) keep(q analytics.FactsQuery, owner string) (group string, ok bool) {
	if q.Owners != nil && !slices.Contains(q.Owners, owner) {
		return "", false
	}
	if q.ByOwner {
		return owner, true
	}
	return "", true
}

func (s *aggStore) inPeriod(q analytics.FactsQuery, at time.Time) bool {
	return (q.From.IsZero() || !at.Before(q.From)) && (q.To.IsZero() || at.Before(q.To))
}

func (s *aggStore) AggregateFunnel(ctx context.Context, q analytics.FunnelAggregate) ([]analytics.FunnelCounts, error) {
	if err := s.answer(); err != nil {
		return nil, err
	}
	ds, hs, err := s.facts(ctx, q.FactsQuery)
	if err != nil {
		return nil, err
	}
	groups := map[string]*analytics.FunnelCounts{}
	for i := range ds {
		entered := map[string]map[int]bool{} // group → stages entered
		for _, c := range hs[i] {
			st := slices.Index(q.Stages, c.To)
			g, ok := s.keep(q.FactsQuery, c.Owner)
			if c.Pipeline != q.Pipeline || st < 0 || !ok || !s.inPeriod(q.FactsQuery, c.At) {
				continue
			}
			if entered[g] == nil {
				entered[g] = map[int]bool{}
			}
			entered[g][st] = true
		}
		for g, stages := range entered {
			fc := groups[g]
			if fc == nil {
				fc = &analytics.FunnelCounts{Group: g, Entered: make([]int, len(q.Stages)), Furthest: make([]int, len(q.Stages))}
				groups[g] = fc
			}
			furthest := -1
			for st := range stages {
				fc.Entered[st]++
				if q.PathRank[st] >= 0 && (furthest < 0 || q.PathRank[st] > q.PathRank[furthest]) {
					furthest = st
				}
			}
			if furthest >= 0 {
				fc.Furthest[furthest]++
			}
		}
	}
	var out []analytics.FunnelCounts
	for _, fc := range groups {
		if s.short {
			fc.Entered = fc.Entered[1:]
		}
		out = append(out, *fc)
	}
	return out, nil
}

func (s *aggStore) AggregateStages(ctx context.Context, q analytics.StageAggregate) ([]analytics.StageCounts, error) {
	if err := s.answer(); err != nil {
		return nil, err
	}
	ds, hs, err := s.facts(ctx, q.FactsQuery)
	if err != nil {
		return nil, err
	}
	n := len(q.Stages)
	type acc struct {
		stays [][]time.Duration
		analytics.StageCounts
	}
	groups := map[string]*acc{}
	group := func(g string) *acc {
		if groups[g] == nil {
			groups[g] = &acc{stays: make([][]time.Duration, n), StageCounts: analytics.StageCounts{Group: g,
				Exits: make([]int, n), Average: make([]time.Duration, n), Median: make([]time.Duration, n),
				Current: make([]int, n), Overdue: make([]int, n)}}
		}
		return groups[g]
	}
	for i, d := range ds {
		for _, c := range hs[i] {
			st := slices.Index(q.Stages, c.From)
			g, ok := s.keep(q.FactsQuery, c.Owner)
			if c.Pipeline == q.Pipeline && st >= 0 && ok && s.inPeriod(q.FactsQuery, c.At) {
				a := group(g)
				a.stays[st] = append(a.stays[st], c.InPrevious)
			}
		}
		st := slices.Index(q.Stages, d.Stage)
		g, ok := s.keep(q.FactsQuery, d.Owner)
		if d.Pipeline == q.Pipeline && st >= 0 && ok {
			a := group(g)
			a.Current[st]++
			if !d.StageDueAt.IsZero() && d.StageDueAt.Before(q.At) {
				a.Overdue[st]++
			}
		}
	}
	var out []analytics.StageCounts
	for _, a := range groups {
		for st, stays := range a.stays {
			if len(stays) == 0 {
				continue
			}
			slices.Sort(stays)
			var sum time.Duration
			for _, d := range stays {
				sum += d // small test data: no overflow
			}
			a.Exits[st], a.Average[st], a.Median[st] = len(stays), sum/time.Duration(len(stays)), stays[(len(stays)-1)/2]
		}
		if s.short {
			a.Overdue = a.Overdue[1:]
		}
		out = append(out, a.StageCounts)
	}
	return out, nil
}

func (s *aggStore) AggregateRFM(ctx context.Context, q analytics.RFMAggregate) ([]analytics.CustomerTotals, error) {
	if err := s.answer(); err != nil {
		return nil, err
	}
	type key struct{ customer, currency string }
	totals := map[key]*analytics.CustomerTotals{}
	err := s.e.Tenant(q.Tenant).Orders().Each(ctx, crm.EachOptions{Archived: crm.ArchivedIncluded}, func(o *crm.Order) error {
		if o.ContactID == "" || (q.Currency != "" && o.Currency != q.Currency) {
			return nil
		}
		k := key{o.ContactID, o.Currency}
		t := totals[k]
		if t == nil {
			t = &analytics.CustomerTotals{CustomerID: o.ContactID, Currency: o.Currency}
			totals[k] = t
		}
		t.Monetary += o.Total.Amount
		if !o.Refund {
			t.Frequency++
			if o.OrderedAt.After(t.Last) {
				t.Last = o.OrderedAt
			}
		}
		return nil
	})
	var out []analytics.CustomerTotals
	for _, t := range totals {
		out = append(out, *t)
	}
	if s.short && len(out) > 1 {
		out = append(out, out[0]) // a repeated row
	}
	slices.SortFunc(out, func(a, b analytics.CustomerTotals) int { return cmp.Compare(b.CustomerID, a.CustomerID) }) // any order
	return out, err
}

// TestPushdown checks that reports ask a store that can aggregate for the
// numbers, that they come out the same as when the reports stream (the
// store declines), and that a failing or malformed answer is an error.
func TestPushdown(t *testing.T) {
	ctx := context.Background()
	st := &aggStore{Store: memory.New()}
	st.e = salesHistoryWith(t, crm.Options{Store: st})
	r := analytics.New(st.e.Default())
	compare := func(name string, report func() (any, error)) {
		t.Helper()
		st.off, st.calls = false, 0
		pushed, err := report()
		require.NoError(t, err, name)
		require.Equal(t, 1, st.calls, "%s asks the store", name)
		st.off = true
		streamed, err := report()
		require.NoError(t, err, name)
		assert.Equal(t, streamed, pushed, name)
		assert.Equal(t, 2, st.calls, "%s asks again and streams when the store declines", name)
	}
	for _, p := range []analytics.Period{{}, march} {
		for _, by := range []analytics.By{analytics.All, analytics.ByOwner} {
			for _, slice := range []analytics.Slice{{}, {Owners: []string{"u1"}}} {
				compare("funnel", func() (any, error) {
					return r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales", Period: p, By: by, Slice: slice})
				})
				compare("stages", func() (any, error) {
					return r.Stages(ctx, analytics.StagesQuery{Pipeline: "sales", Period: p, By: by, Slice: slice})
				})
			}
		}
	}
	// The pushed-down funnel is the one worked out by hand in TestFunnel.
	st.off = false
	f, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales", Period: march})
	require.NoError(t, err)
	assert.Equal(t, []int{5, 4, 2, 1}, []int{f.Groups[0].Stages[0].Reached, f.Groups[0].Stages[1].Reached,
		f.Groups[0].Stages[2].Reached, f.Groups[0].Stages[3].Reached})

	rfmStore := &aggStore{Store: memory.New()}
	rfmStore.e, _ = rfmOrdersWith(t, crm.Options{Store: rfmStore})
	st = rfmStore
	r = analytics.New(st.e.Default())
	compare("rfm", func() (any, error) { return r.RFM(ctx, analytics.RFMOptions{}) })
	compare("rfm in EUR", func() (any, error) { return r.RFM(ctx, analytics.RFMOptions{Currency: "EUR"}) })
	compare("rfm of u1's customers", func() (any, error) {
		return r.RFM(ctx, analytics.RFMOptions{Slice: analytics.Slice{Owners: []string{"u1"}}})
	})
	st.off = false
	rfm, err := r.RFM(ctx, analytics.RFMOptions{Currency: "USD"})
	require.NoError(t, err)
	assert.Empty(t, rfm.Rows, "no orders in USD")

	// An answer that fails fails the report; a malformed one is refused.
	st.fail = errors.New("database is down")
	_, err = r.RFM(ctx, analytics.RFMOptions{})
	require.ErrorIs(t, err, st.fail)
	st.fail, st.short = nil, true
	_, err = r.RFM(ctx, analytics.RFMOptions{})
	require.ErrorContains(t, err, "two rows")
}

// TestPushdownRefusesMalformedAnswers checks that the funnel and stage
// reports refuse counts that do not fit the pipeline, and pass on a
// store's errors.
func TestPushdownRefusesMalformedAnswers(t *testing.T) {
	ctx := context.Background()
	st := &aggStore{Store: memory.New()}
	st.e = salesHistoryWith(t, crm.Options{Store: st})
	r := analytics.New(st.e.Default())
	st.short = true
	_, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales"})
	require.ErrorContains(t, err, "funnel aggregator")
	_, err = r.Stages(ctx, analytics.StagesQuery{Pipeline: "sales"})
	require.ErrorContains(t, err, "stage aggregator")
	st.short, st.fail = false, errors.New("database is down")
	_, err = r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales"})
	require.ErrorIs(t, err, st.fail)
	_, err = r.Stages(ctx, analytics.StagesQuery{Pipeline: "sales"})
	require.ErrorIs(t, err, st.fail)
}
