package analytics_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/analytics"
	"github.com/rapportcrm/rapport/crm"
)

// salesHistory plays a month of deals, in time order:
//
//	Feb 20  D4 (u2) created in new
//	Mar 1   D1, D2, D5 (u1) created in new
//	Mar 2   D1 → qualified; D3 (u2) created in proposal; D5 → lost
//	Mar 3   D1 → proposal; D4 → qualified
//	Mar 4   D1 → won
//	Mar 5   D2 → qualified
//	Mar 6   D2 → new (back)
//	Mar 7   D2 → qualified
//	Mar 10  D4 → lost
//	Apr 1   D6 (u1) created in new
//
// and leaves the clock at Apr 5.
func salesHistory(t *testing.T) *crm.Engine { return salesHistoryWith(t, crm.Options{}) }

// salesHistoryWith is salesHistory with options for crm.Open.
func salesHistoryWith(t *testing.T, opts crm.Options) *crm.Engine {
	t.Helper()
	ctx := context.Background()
	e, c := openWith(t, day(time.February, 20), opts)
	savePipeline(t, e, salesPipeline)
	deals := e.Deals()
	ids := map[string]string{}
	create := func(name, owner, stage string) {
		d, err := deals.Create(ctx, crm.Deal{Meta: crm.Meta{Owner: owner}, Title: name, Pipeline: "sales", Stage: stage,
			Amount: crm.Money{Amount: 100000, Currency: "EUR"}})
		require.NoError(t, err)
		ids[name] = d.ID
	}
	move := func(name, to string) {
		opts := crm.MoveOptions{}
		if to == "lost" {
			opts.Reason = "price"
		}
		_, err := deals.Move(ctx, ids[name], to, opts)
		require.NoError(t, err, "%s → %s", name, to)
	}
	create("D4", "u2", "new")
	c.set(day(time.March, 1))
	create("D1", "u1", "new")
	create("D2", "u1", "new")
	create("D5", "u1", "new")
	c.set(day(time.March, 2))
	move("D1", "qualified")
	create("D3", "u2", "proposal")
	move("D5", "lost")
	c.set(day(time.March, 3))
	move("D1", "proposal")
	move("D4", "qualified")
	c.set(day(time.March, 4))
	move("D1", "won")
	c.set(day(time.March, 5))
	move("D2", "qualified")
	c.set(day(time.March, 6))
	move("D2", "new")
	c.set(day(time.March, 7))
	move("D2", "qualified")
	c.set(day(time.March, 10))
	move("D4", "lost")
	c.set(day(time.April, 1))
	create("D6", "u1", "new")
	c.set(day(time.April, 5))
	return e
}

var march = analytics.Period{From: day(time.March, 1), To: day(time.April, 1)}

func TestFunnel(t *testing.T) {
	ctx := context.Background()
	e := salesHistory(t)
	r := analytics.New(e.Default())

	type row struct {
		entered, reached int
		conversion       float64
	}
	check := func(t *testing.T, g analytics.FunnelGroup, want map[string]row) {
		t.Helper()
		require.Len(t, g.Stages, 5)
		for _, s := range g.Stages {
			got := row{s.Entered, s.Reached, s.Conversion}
			assert.InDelta(t, want[s.Stage].conversion, got.conversion, 1e-9, "%s %s conversion", g.Key, s.Stage)
			got.conversion = want[s.Stage].conversion
			assert.Equal(t, want[s.Stage], got, "group %q stage %s", g.Key, s.Stage)
		}
	}

	f, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales", Period: march})
	require.NoError(t, err)
	require.Len(t, f.Groups, 1)
	// Entered: D2 enters new twice but counts once; D4 entered new in
	// February and D6 in April. Reached: D3 skipped to proposal, so it
	// has passed new and qualified; D1 is the only one past proposal.
	check(t, f.Groups[0], map[string]row{
		"new":       {3, 5, 4.0 / 5},
		"qualified": {3, 4, 2.0 / 4},
		"proposal":  {2, 2, 1.0 / 2},
		"won":       {1, 1, 0},
		"lost":      {2, 2, 0},
	})

	f, err = r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales", Period: march, By: analytics.ByOwner})
	require.NoError(t, err)
	require.Len(t, f.Groups, 2)
	assert.Equal(t, "u1", f.Groups[0].Key)
	check(t, f.Groups[0], map[string]row{
		"new":       {3, 3, 2.0 / 3},
		"qualified": {2, 2, 1.0 / 2},
		"proposal":  {1, 1, 1},
		"won":       {1, 1, 0},
		"lost":      {1, 1, 0},
	})
	assert.Equal(t, "u2", f.Groups[1].Key)
	check(t, f.Groups[1], map[string]row{
		"new":       {0, 2, 1},
		"qualified": {1, 2, 1.0 / 2},
		"proposal":  {1, 1, 0},
		"won":       {0, 0, 0},
		"lost":      {1, 1, 0},
	})

	only, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales", Period: march, Slice: analytics.Slice{Owners: []string{"u2"}}})
	require.NoError(t, err)
	assert.Equal(t, f.Groups[1].Stages, only.Groups[0].Stages, "slicing to u2 gives u2's group")

	april, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales", Period: analytics.Month(2024, time.April, time.UTC)})
	require.NoError(t, err)
	assert.Equal(t, 1, april.Groups[0].Stages[0].Entered, "D6")

	var csv bytes.Buffer
	require.NoError(t, f.WriteCSV(&csv))
	assert.Contains(t, csv.String(), "group,stage,label,terminal,entered,reached,conversion\nu1,new,new,,3,3,0.6667\n")
}

func TestStages(t *testing.T) {
	ctx := context.Background()
	e := salesHistory(t)
	r := analytics.New(e.Default())
	st, err := r.Stages(ctx, analytics.StagesQuery{Pipeline: "sales", Period: march})
	require.NoError(t, err)
	assert.Equal(t, day(time.April, 5), st.At)
	require.Len(t, st.Groups, 1)
	type row struct {
		exits            int
		average, median  time.Duration
		current, overdue int
		share            float64
	}
	h := time.Hour
	// Stays that ended in March: in new, D1 24h, D2 96h and 24h, D4 288h
	// (from February 20), D5 24h; in qualified, D1 24h, D2 24h, D4 168h;
	// in proposal, D1 24h. Now (April 5): D6 in new since April 1 (norm
	// 48h: overdue), D2 in qualified since March 7 (norm 720h: due April
	// 6, not overdue), D3 in proposal since March 2 (overdue), D1 won, D4
	// and D5 lost.
	want := map[string]row{
		"new":       {5, 456 * h / 5, 24 * h, 1, 1, 1},
		"qualified": {3, 72 * h, 24 * h, 1, 0, 0},
		"proposal":  {1, 24 * h, 24 * h, 1, 1, 1},
		"won":       {0, 0, 0, 1, 0, 0},
		"lost":      {0, 0, 0, 2, 0, 0},
	}
	for _, s := range st.Groups[0].Stages {
		assert.Equal(t, want[s.Stage], row{s.Exits, s.Average, s.Median, s.Current, s.Overdue, s.OverdueShare}, s.Stage)
	}
	assert.Equal(t, "2d", st.Groups[0].Stages[0].Norm)

	byOwner, err := r.Stages(ctx, analytics.StagesQuery{Pipeline: "sales", Period: march, By: analytics.ByOwner})
	require.NoError(t, err)
	require.Len(t, byOwner.Groups, 2)
	u2 := byOwner.Groups[1]
	assert.Equal(t, "u2", u2.Key)
	assert.Equal(t, 1, u2.Stages[0].Exits, "D4 left new")
	assert.Equal(t, 288*h, u2.Stages[0].Median)
	assert.Equal(t, 1, u2.Stages[2].Current, "D3")

	var csv bytes.Buffer
	require.NoError(t, st.WriteCSV(&csv))
	assert.Contains(t, csv.String(), "\n,new,new,2d,5,328320,86400,1,1,1.0000\n")
}

func TestReportsRefuseBadQueries(t *testing.T) {
	ctx := context.Background()
	e := salesHistory(t)
	r := analytics.New(e.Default())
	for name, q := range map[string]analytics.FunnelQuery{
		"no pipeline":      {},
		"unknown pipeline": {Pipeline: "nope"},
		"empty period":     {Pipeline: "sales", Period: analytics.Period{From: day(time.March, 2), To: day(time.March, 1)}},
		"unknown grouping": {Pipeline: "sales", By: "industry"},
		"unknown team":     {Pipeline: "sales", Slice: analytics.Slice{Team: "nope"}},
	} {
		_, err := r.Funnel(ctx, q)
		require.ErrorIs(t, err, analytics.ErrInvalid, name)
		require.ErrorIs(t, err, crm.ErrInvalid, name)
		_, err = r.Stages(ctx, analytics.StagesQuery(q))
		require.ErrorIs(t, err, analytics.ErrInvalid, name)
	}
}
