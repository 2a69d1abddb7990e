package analytics_test

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/analytics"
	"github.com/rapportcrm/rapport/crm"
)

func TestCLV(t *testing.T) {
	ctx := context.Background()
	e, ids := rfmOrders(t, time.UTC)
	r := analytics.New(e.Default())

	rep, err := r.CLV(ctx, analytics.CLVOptions{Horizon: 2, DiscountRate: 0.1, Retention: 0.5, Margin: 0.5})
	require.NoError(t, err)
	assert.Equal(t, day(time.March, 16), rep.Reference)
	// Factor: 1/1.1 + 0.5/1.1² = 0.9090… + 0.4132… = 1.3223…; every
	// customer is younger than a year, so Years is 1 and Yearly is half
	// the historic spend.
	assert.InDelta(t, 1/1.1+0.5/1.21, rep.Factor, 1e-12)
	type row struct {
		historic, yearly, predicted int64
		orders                      int
	}
	got := map[string]row{}
	for _, x := range rep.Rows {
		for n, id := range ids {
			if id == x.CustomerID {
				got[n] = row{x.Historic, x.Yearly, x.Predicted, x.Orders}
				assert.Equal(t, 1.0, x.Years, n)
			}
		}
	}
	assert.Equal(t, map[string]row{
		"A": {13000, 6500, 8595, 2},   // 6500 × 1.3223 = 8595.04
		"B": {30000, 15000, 19835, 1}, // 19834.71
		"D": {1500, 750, 992, 2},      // 991.74
		"E": {2400, 1200, 1587, 3},    // 1586.78
	}, got, "C has only a refund")
	assert.Equal(t, int64(46900), rep.Historic)
	assert.Equal(t, int64(8595+19835+992+1587), rep.Predicted)

	// A year later: A's tenure is 380 days (2024 is a leap year), so its
	// yearly value is 13000 × 365/380 = 12486.84 → 12487; with the
	// defaults (3 years, no discount, no churn) it is worth 3 × 12487.
	rep, err = r.CLV(ctx, analytics.CLVOptions{Reference: time.Date(2025, 3, 16, 9, 0, 0, 0, time.UTC), ExternalIDs: true})
	require.NoError(t, err)
	require.Len(t, rep.Rows, 4)
	for _, x := range rep.Rows {
		if x.CustomerID == ids["A"] {
			assert.Equal(t, "xA", x.ExternalID)
			assert.InDelta(t, 380.0/365, x.Years, 1e-12)
			assert.Equal(t, int64(12487), x.Yearly)
			assert.Equal(t, int64(3*12487), x.Predicted)
		}
	}

	for name, bad := range map[string]analytics.CLVOptions{
		"horizon":   {Horizon: -1},
		"discount":  {DiscountRate: -0.1},
		"nan":       {DiscountRate: math.NaN()},
		"retention": {Retention: 1.5},
		"margin":    {Margin: -1},
		"currency":  {Currency: "euro"},
	} {
		_, err := r.CLV(ctx, bad)
		assert.ErrorIs(t, err, analytics.ErrInvalid, name)
	}
}

// cohortOrders stores (UTC):
//
//	P: Jan 10, Feb 3, Apr 20           cohort 2024-01, months 0, 1, 3
//	Q: Jan 31 23:00, refund Feb 5      cohort 2024-01, month 0
//	R: refund Jan 5, Feb 10, Feb 20    cohort 2024-02 (a refund is no first order)
//	S: Mar 1                           cohort 2024-03
//
// with the clock at Apr 25.
func cohortOrders(t *testing.T, loc *time.Location) *crm.Engine {
	t.Helper()
	ctx := context.Background()
	e, _ := openWith(t, day(time.April, 25), crm.Options{Location: loc})
	num := 0
	for who, orders := range map[string][]time.Time{
		"P": {day(time.January, 10), day(time.February, 3), day(time.April, 20)},
		"Q": {day(time.January, 31).Add(23 * time.Hour), {}, day(time.February, 5)},
		"R": {{}, day(time.January, 5), day(time.February, 10), day(time.February, 20)},
		"S": {day(time.March, 1)},
	} {
		c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: who})
		require.NoError(t, err)
		refund := false
		for _, at := range orders {
			if at.IsZero() { // the next order is a refund
				refund = true
				continue
			}
			num++
			o := crm.Order{Number: strconv.Itoa(num), ContactID: c.ID, OrderedAt: at, Currency: "EUR", Refund: refund,
				Lines: []crm.OrderLine{{SKU: "s", Quantity: 1, UnitPrice: crm.Money{Amount: 100}}}}
			if refund {
				o.Lines[0].Quantity = -1
			}
			_, err := e.Orders().Create(ctx, o)
			require.NoError(t, err)
			refund = false
		}
	}
	return e
}

func TestCohorts(t *testing.T) {
	ctx := context.Background()
	e := cohortOrders(t, time.UTC)
	r := analytics.New(e.Default())

	rep, err := r.Cohorts(ctx, analytics.CohortsQuery{Months: 3})
	require.NoError(t, err)
	assert.Equal(t, []analytics.Cohort{
		{Month: "2024-01", Customers: 2, Active: []int{2, 1, 0, 1}, Retention: []float64{1, 0.5, 0, 0.5}, Repeat: 1, RepeatRate: 0.5},
		{Month: "2024-02", Customers: 1, Active: []int{1, 0, 0}, Retention: []float64{1, 0, 0}, Repeat: 1, RepeatRate: 1},
		{Month: "2024-03", Customers: 1, Active: []int{1, 0}, Retention: []float64{1, 0}},
	}, rep.Cohorts, "months after April (the clock) are not reported")

	rep, err = r.Cohorts(ctx, analytics.CohortsQuery{Period: analytics.Period{From: day(time.February, 1), To: day(time.March, 1)}, Months: 1})
	require.NoError(t, err)
	require.Len(t, rep.Cohorts, 1)
	assert.Equal(t, "2024-02", rep.Cohorts[0].Month)
	assert.Equal(t, []int{1, 0}, rep.Cohorts[0].Active)

	// At UTC+9, Q's first order is on February 1.
	e = cohortOrders(t, time.FixedZone("JST", 9*3600))
	rep, err = analytics.New(e.Default()).Cohorts(ctx, analytics.CohortsQuery{})
	require.NoError(t, err)
	require.Len(t, rep.Cohorts, 3)
	assert.Equal(t, 1, rep.Cohorts[0].Customers)
	assert.Equal(t, []int{2, 0, 0}, rep.Cohorts[1].Active, "default 12 months, cut at the clock's month")

	for _, months := range []int{-1, 121} {
		_, err := r.Cohorts(ctx, analytics.CohortsQuery{Months: months})
		assert.ErrorIs(t, err, analytics.ErrInvalid)
	}
	_, err = r.Cohorts(ctx, analytics.CohortsQuery{Period: analytics.Period{From: day(time.March, 1), To: day(time.March, 1)}})
	assert.ErrorIs(t, err, analytics.ErrInvalid)
}
