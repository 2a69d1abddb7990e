package analytics_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/analytics"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

// TestSliceByOwnerAndAttributes slices the sales reports of closedHistory
// by territory and by industry.
func TestSliceByOwnerAndAttributes(t *testing.T) {
	ctx := context.Background()
	e := closedHistory(t)
	r := analytics.New(e.Default())
	lost := func(s analytics.Slice) analytics.LostRow {
		t.Helper()
		l, err := r.Lost(ctx, analytics.LostQuery{Slice: s})
		require.NoError(t, err)
		return l.Total
	}
	// Losses: D9 (u1, energy, 700.00), D2 (u1, energy, 500.00), D3 (u2,
	// retail, 2000.00).
	assert.Equal(t, analytics.LostRow{Deals: 3, Value: 320000}, lost(analytics.Slice{Territory: "north"}), "north holds city")
	assert.Equal(t, analytics.LostRow{Deals: 1, Value: 200000}, lost(analytics.Slice{Territory: "city"}))
	assert.Equal(t, analytics.LostRow{}, lost(analytics.Slice{Territory: "city", Owners: []string{"u1"}}), "both: u1 is not in city")
	assert.Equal(t, analytics.LostRow{Deals: 2, Value: 120000}, lost(analytics.Slice{Industry: "energy"}))
	assert.Equal(t, analytics.LostRow{Deals: 1, Value: 200000}, lost(analytics.Slice{Industry: "retail", Team: "t1"}))
	assert.Equal(t, analytics.LostRow{}, lost(analytics.Slice{Industry: "mining"}))

	// Won in March: D1 (u1, retail, 1000.00) and D4 (u2, no account).
	c, err := r.Commission(ctx, analytics.CommissionQuery{Period: march, Slice: analytics.Slice{Industry: "retail"}, Rates: analytics.CommissionRates{Default: 100}})
	require.NoError(t, err)
	assert.Equal(t, []analytics.CommissionRow{{Owner: "u1", Rate: 100, Deals: 1, Won: 100000, Earned: 1000}}, c.Owners)

	// Open deals with an account: none (D1 won, D2 and D3 lost).
	f, err := r.Forecast(ctx, analytics.ForecastQuery{Slice: analytics.Slice{Industry: "retail"}})
	require.NoError(t, err)
	assert.Empty(t, f.Months)
	f, err = r.Forecast(ctx, analytics.ForecastQuery{Slice: analytics.Slice{Territory: "city"}})
	require.NoError(t, err)
	assert.Equal(t, 2, f.Total.Deals, "u2's open deals: D6 and D7")

	// The energy deals D9 and D2 both entered new and were lost there:
	// D9 stayed 3 days (Feb 25-28), D2 4 days (Mar 1-5).
	fn, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales", Slice: analytics.Slice{Industry: "energy"}})
	require.NoError(t, err)
	st := fn.Groups[0].Stages
	assert.Equal(t, [5]int{2, 0, 0, 0, 2}, [5]int{st[0].Entered, st[1].Entered, st[2].Entered, st[3].Entered, st[4].Entered})
	assert.Equal(t, [4]int{2, 0, 0, 0}, [4]int{st[0].Reached, st[1].Reached, st[2].Reached, st[3].Reached})
	s, err := r.Stages(ctx, analytics.StagesQuery{Pipeline: "sales", Slice: analytics.Slice{Industry: "energy"}})
	require.NoError(t, err)
	assert.Equal(t, 2, s.Groups[0].Stages[0].Exits)
	assert.Equal(t, 84*time.Hour, s.Groups[0].Stages[0].Average)
	assert.Equal(t, 72*time.Hour, s.Groups[0].Stages[0].Median, "the lower middle")
	assert.Equal(t, 2, s.Groups[0].Stages[4].Current, "both are lost now")
	assert.Equal(t, 0, s.Groups[0].Stages[0].Current)
}

// TestSliceByOrigin slices the marketing reports of marketingHistory, and
// the deals converted from its leads, by source and campaign.
func TestSliceByOrigin(t *testing.T) {
	ctx := context.Background()
	e, _ := marketingHistory(t)
	r := analytics.New(e.Default())

	l, err := r.Leads(ctx, analytics.LeadsQuery{Period: march, Slice: analytics.Slice{Source: "web"}})
	require.NoError(t, err)
	assert.Equal(t, analytics.LeadGroup{Leads: 2, Converted: 2, Won: 1, ConversionRate: 1, WinRate: 0.5, Expected: 70000, Average: 35000}, l.Total, "L1 and L2")
	l, err = r.Leads(ctx, analytics.LeadsQuery{Slice: analytics.Slice{Campaign: "C2"}})
	require.NoError(t, err)
	assert.Equal(t, 1, l.Total.Leads, "L3")

	// The deals converted from L1 (won Mar 5) and L2 (open) came from the
	// web; none came from the fair.
	fn, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales", Slice: analytics.Slice{Source: "web"}})
	require.NoError(t, err)
	st := fn.Groups[0].Stages
	assert.Equal(t, [4]int{2, 1, 1, 1}, [4]int{st[0].Reached, st[1].Reached, st[2].Reached, st[3].Reached})
	fn, err = r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales", Slice: analytics.Slice{Source: "fair"}})
	require.NoError(t, err)
	assert.Zero(t, fn.Groups[0].Stages[0].Reached)
	c, err := r.Commission(ctx, analytics.CommissionQuery{Slice: analytics.Slice{Campaign: "C1"}})
	require.NoError(t, err)
	assert.Equal(t, 1, c.Total.Deals)
	c, err = r.Commission(ctx, analytics.CommissionQuery{Slice: analytics.Slice{Campaign: "C2"}})
	require.NoError(t, err)
	assert.Zero(t, c.Total.Deals)

	// Orders naming C1: one line of "s" for 150.00.
	p, err := r.Products(ctx, analytics.ProductsQuery{Slice: analytics.Slice{Campaign: "C1"}})
	require.NoError(t, err)
	assert.Equal(t, int64(15000), p.Revenue)
	p, err = r.Products(ctx, analytics.ProductsQuery{Slice: analytics.Slice{Product: "other"}})
	require.NoError(t, err)
	assert.Empty(t, p.Products)

	camps, err := r.Campaigns(ctx, analytics.CampaignsQuery{Slice: analytics.Slice{Campaign: "C2"}})
	require.NoError(t, err)
	require.Len(t, camps.Campaigns, 1)
	assert.Equal(t, "C2", camps.Campaigns[0].ID)
}

// TestSliceRefusesWhatItCannotApply checks that a report refuses slices
// it has no way to apply, and unknown teams and territories.
func TestSliceRefusesWhatItCannotApply(t *testing.T) {
	ctx := context.Background()
	e, _ := marketingHistory(t)
	r := analytics.New(e.Default())
	for name, run := range map[string]func() error{
		"lost by product": func() error {
			_, err := r.Lost(ctx, analytics.LostQuery{Slice: analytics.Slice{Product: "s"}})
			return err
		},
		"campaigns by industry": func() error {
			_, err := r.Campaigns(ctx, analytics.CampaignsQuery{Slice: analytics.Slice{Industry: "retail"}})
			return err
		},
		"products by source": func() error {
			_, err := r.Products(ctx, analytics.ProductsQuery{Slice: analytics.Slice{Source: "web"}})
			return err
		},
		"unknown territory": func() error {
			_, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales", Slice: analytics.Slice{Territory: "nowhere"}})
			return err
		},
		"unknown team": func() error {
			_, err := r.Leads(ctx, analytics.LeadsQuery{Slice: analytics.Slice{Team: "nobody"}})
			return err
		},
	} {
		assert.ErrorIs(t, run(), analytics.ErrInvalid, name)
	}
	_, err := r.Campaigns(ctx, analytics.CampaignsQuery{Slice: analytics.Slice{Product: "s", Industry: "retail"}})
	assert.ErrorContains(t, err, "the campaigns report cannot be sliced by Industry, Product")

	// Accounts have an industry but no source.
	def, err := pipeline.Builtin("account-lifecycle")
	require.NoError(t, err)
	require.NoError(t, e.Pipelines().Save(ctx, def))
	_, err = r.Funnel(ctx, analytics.FunnelQuery{Pipeline: def.Name, Slice: analytics.Slice{Source: "web"}})
	assert.ErrorIs(t, err, analytics.ErrInvalid)
	_, err = r.Funnel(ctx, analytics.FunnelQuery{Pipeline: def.Name, Slice: analytics.Slice{Industry: "retail"}})
	assert.NoError(t, err)
}

// TestSliceCustomers slices the customer reports of rfmOrders by the
// contacts' owner: u1 has A and B, u2 the others.
func TestSliceCustomers(t *testing.T) {
	ctx := context.Background()
	e, ids := rfmOrders(t, time.UTC)
	r := analytics.New(e.Default())
	u1 := analytics.Slice{Owners: []string{"u1"}}
	rfm, err := r.RFM(ctx, analytics.RFMOptions{Slice: u1})
	require.NoError(t, err)
	got := map[string]int64{}
	for _, row := range rfm.Rows {
		got[row.CustomerID] = row.Monetary
	}
	assert.Equal(t, map[string]int64{ids["A"]: 13000, ids["B"]: 30000}, got)
	assert.Equal(t, day(time.March, 16), rfm.Reference, "the reference is still the day after the last order of all")

	clv, err := r.CLV(ctx, analytics.CLVOptions{Slice: u1})
	require.NoError(t, err)
	assert.Len(t, clv.Rows, 2)
	co, err := r.Cohorts(ctx, analytics.CohortsQuery{Slice: analytics.Slice{Owners: []string{"nobody"}}})
	require.NoError(t, err)
	assert.Empty(t, co.Cohorts)
	co, err = r.Cohorts(ctx, analytics.CohortsQuery{Slice: u1})
	require.NoError(t, err)
	require.Len(t, co.Cohorts, 1)
	assert.Equal(t, 2, co.Cohorts[0].Customers)

	// A (u1) recommends us, C (u2) does not; one response has no contact.
	for who, score := range map[string]int{"A": 10, "C": 3, "": 9} {
		_, err := e.Default().SurveyResponses().Create(ctx, crm.SurveyResponse{Survey: "s", ContactID: ids[who], NPS: &score})
		require.NoError(t, err)
	}
	sat, err := r.Satisfaction(ctx, analytics.SatisfactionQuery{Slice: u1})
	require.NoError(t, err)
	assert.Equal(t, 1, sat.Groups[0].Responses)
	assert.Equal(t, 100.0, sat.Groups[0].NPS)
	sat, err = r.Satisfaction(ctx, analytics.SatisfactionQuery{})
	require.NoError(t, err)
	assert.Equal(t, 3, sat.Groups[0].Responses)

	_, err = r.RFM(ctx, analytics.RFMOptions{Slice: analytics.Slice{Campaign: "C1"}})
	assert.ErrorIs(t, err, analytics.ErrInvalid)
	_, err = r.Satisfaction(ctx, analytics.SatisfactionQuery{Slice: analytics.Slice{Product: "tea"}})
	assert.ErrorIs(t, err, analytics.ErrInvalid)
}
