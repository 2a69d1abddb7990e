package analytics_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/analytics"
	"github.com/rapportcrm/rapport/bulk"
	"github.com/rapportcrm/rapport/crm"
)

// rfmOrders stores, in EUR minor units:
//
//	A: Mar 1 10000, Mar 10 5000, refund Mar 12 -2000
//	B: Mar 5 30000
//	C: a refund only (Mar 8, -1000): no RFM row
//	D: Mar 14 23:30 UTC 1000, Mar 14 10:00 500
//	E: Mar 2 800, Mar 3 900, Mar 14 01:00 700
//	no customer: Mar 15 12:00 100 (the last order: the reference is Mar 16)
func rfmOrders(t *testing.T, loc *time.Location) (*crm.Engine, map[string]string) {
	t.Helper()
	return rfmOrdersWith(t, crm.Options{Location: loc})
}

// rfmOrdersWith is rfmOrders with options for crm.Open.
func rfmOrdersWith(t *testing.T, opts crm.Options) (*crm.Engine, map[string]string) {
	t.Helper()
	ctx := context.Background()
	e, _ := openWith(t, day(time.March, 20), opts)
	ids := map[string]string{}
	for _, n := range []string{"A", "B", "C", "D", "E"} {
		owner := "u2"
		if n == "A" || n == "B" {
			owner = "u1"
		}
		c, err := e.Contacts().Create(ctx, crm.Contact{Meta: crm.Meta{Owner: owner}, FirstName: n, ExternalID: "x" + n})
		require.NoError(t, err)
		ids[n] = c.ID
	}
	num := 0
	order := func(who string, at time.Time, amount int64) {
		num++
		o := crm.Order{Number: strconv.Itoa(num), ContactID: ids[who], OrderedAt: at, Currency: "EUR",
			Lines: []crm.OrderLine{{SKU: "s", Quantity: 1, UnitPrice: crm.Money{Amount: amount, Currency: "EUR"}}}}
		if amount < 0 {
			o.Refund = true
			o.Lines[0].Quantity, o.Lines[0].UnitPrice.Amount = -1, -amount
		}
		_, err := e.Orders().Create(ctx, o)
		require.NoError(t, err)
	}
	order("A", day(time.March, 1), 10000)
	order("A", day(time.March, 10), 5000)
	order("A", day(time.March, 12), -2000)
	order("B", day(time.March, 5), 30000)
	order("C", day(time.March, 8), -1000)
	order("D", day(time.March, 14).Add(23*time.Hour+30*time.Minute), 1000)
	order("D", day(time.March, 14).Add(10*time.Hour), 500)
	order("E", day(time.March, 2), 800)
	order("E", day(time.March, 3), 900)
	order("E", day(time.March, 14).Add(time.Hour), 700)
	order("", day(time.March, 15).Add(12*time.Hour), 100)
	return e, ids
}

type rfmValues struct {
	recency, frequency int
	monetary           int64
	r, f, m            int
	segment            string
}

func rfmByCustomer(rows []analytics.RFMRow, names map[string]string) map[string]rfmValues {
	out := map[string]rfmValues{}
	for _, row := range rows {
		for n, id := range names {
			if id == row.CustomerID {
				out[n] = rfmValues{row.RecencyDays, row.Frequency, row.Monetary, row.R, row.F, row.M, row.Segment}
			}
		}
	}
	return out
}

func TestRFM(t *testing.T) {
	ctx := context.Background()
	e, ids := rfmOrders(t, time.UTC)
	r := analytics.New(e.Default())
	rep, err := r.RFM(ctx, analytics.RFMOptions{})
	require.NoError(t, err)
	assert.Equal(t, day(time.March, 16), rep.Reference, "the day after the last order, which has no customer")
	assert.Equal(t, "EUR", rep.Currency)
	require.Len(t, rep.Rows, 4, "C has only a refund")
	// Recency: A 6, B 11, D 2, E 2 days. Scores 1 + ⌊5w/4⌋ for w worse
	// customers: R: B 1, A 2, D and E (tied) 3; F (2, 1, 2, 3): B 1, A and
	// D 2, E 4; M (13000, 30000, 1500, 2400): D 1, E 2, A 3, B 4.
	assert.Equal(t, map[string]rfmValues{
		"A": {6, 2, 13000, 2, 2, 3, "hibernating"},
		"B": {11, 1, 30000, 1, 1, 4, "hibernating"},
		"D": {2, 2, 1500, 3, 2, 1, "about_to_sleep"},
		"E": {2, 3, 2400, 3, 4, 2, "loyal"},
	}, rfmByCustomer(rep.Rows, ids))
	for i := 1; i < len(rep.Rows); i++ {
		assert.Less(t, rep.Rows[i-1].CustomerID, rep.Rows[i].CustomerID, "rows in customer ID order")
	}

	// An explicit reference date, and a segment map of one's own.
	rep, err = r.RFM(ctx, analytics.RFMOptions{Reference: day(time.March, 20).Add(15 * time.Hour), ExternalIDs: true,
		Segments: []analytics.Segment{{Name: "big", M: [2]int{4, 5}}, {Name: "recent", R: [2]int{3, 5}}}})
	require.NoError(t, err)
	got := rfmByCustomer(rep.Rows, ids)
	assert.Equal(t, 10, got["A"].recency)
	assert.Equal(t, "big", got["B"].segment)
	assert.Equal(t, "recent", got["E"].segment)
	assert.Equal(t, analytics.OtherSegment, got["A"].segment)

	var out bytes.Buffer
	require.NoError(t, rep.WriteCSV(&out))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 5)
	assert.Equal(t, "customer_id,recency_days,frequency,monetary_minor,r,f,m,segment", lines[0])
	assert.Contains(t, lines, "xB,15,1,30000,1,1,4,big", "external IDs stand for customers")
}

func TestRFMCountsDaysInTheEngineTimeZone(t *testing.T) {
	// At UTC+9, D's order of Mar 14 23:30 UTC is on March 15, and the last
	// order (Mar 15 12:00 UTC) is on March 15 too: the reference is March
	// 16 there, and D's recency is 1.
	tokyo := time.FixedZone("JST", 9*3600)
	e, ids := rfmOrders(t, tokyo)
	rep, err := analytics.New(e.Default()).RFM(context.Background(), analytics.RFMOptions{})
	require.NoError(t, err)
	assert.Equal(t, time.Date(2024, 3, 16, 0, 0, 0, 0, tokyo), rep.Reference)
	got := rfmByCustomer(rep.Rows, ids)
	assert.Equal(t, 1, got["D"].recency)
	assert.Equal(t, 6, got["A"].recency, "Mar 10 00:00 UTC is Mar 10 09:00 JST")
}

func TestRFMRefusesBadOptions(t *testing.T) {
	ctx := context.Background()
	e, ids := rfmOrders(t, time.UTC)
	r := analytics.New(e.Default())
	for name, opts := range map[string]analytics.RFMOptions{
		"unknown currency": {Currency: "ZZZ"},
		"unnamed segment":  {Segments: []analytics.Segment{{R: [2]int{1, 2}}}},
		"range past 5":     {Segments: []analytics.Segment{{Name: "x", R: [2]int{4, 6}}}},
		"inverted range":   {Segments: []analytics.Segment{{Name: "x", F: [2]int{3, 2}}}},
		"duplicate name":   {Segments: []analytics.Segment{{Name: "x"}, {Name: "x"}}},
	} {
		_, err := r.RFM(ctx, opts)
		require.ErrorIs(t, err, crm.ErrInvalid, name)
	}

	// Orders in two currencies need a choice.
	_, err := e.Orders().Create(ctx, crm.Order{Number: "gbp", ContactID: ids["B"], OrderedAt: day(time.March, 6), Currency: "GBP",
		Lines: []crm.OrderLine{{SKU: "s", Quantity: 1, UnitPrice: crm.Money{Amount: 999, Currency: "GBP"}}}})
	require.NoError(t, err)
	_, err = r.RFM(ctx, analytics.RFMOptions{})
	require.ErrorIs(t, err, analytics.ErrInvalid)
	assert.ErrorContains(t, err, "several currencies")
	eur, err := r.RFM(ctx, analytics.RFMOptions{Currency: "EUR"})
	require.NoError(t, err)
	assert.Equal(t, int64(30000), rfmByCustomer(eur.Rows, ids)["B"].monetary, "the GBP order is left out")
	gbp, err := r.RFM(ctx, analytics.RFMOptions{Currency: "GBP"})
	require.NoError(t, err)
	require.Len(t, gbp.Rows, 1)
	assert.Equal(t, int64(999), gbp.Rows[0].Monetary)
}

// retailPath is the real Online Retail sample, outside the repository.
const retailPath = "../../shared/data/online_retail_sample.csv"

// TestRFMOnlineRetail imports the real sample and compares every
// customer's recency, frequency, monetary value, scores and lifetime value with a small
// computation of its own straight from the CSV.
func TestRFMOnlineRetail(t *testing.T) {
	if _, err := os.Stat(retailPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing, and in CI it must be present: %v", retailPath, err)
		}
		t.Skipf("%s is missing (see ../shared/data/README.md); skipping the real-data RFM test", retailPath)
	}
	raw, err := os.ReadFile(retailPath)
	require.NoError(t, err)
	ctx := context.Background()
	e, _ := open(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	_, err = bulk.ImportOrders(ctx, e.Default(), bytes.NewReader(raw), bulk.Options{Currency: "GBP", RefundPrefix: "C",
		Mapping: map[string]string{"InvoiceNo": "order_number", "StockCode": "sku", "Description": "description", "Quantity": "quantity",
			"InvoiceDate": "ordered_at", "UnitPrice": "unit_price", "CustomerID": "customer_external_id", "Country": "country"}})
	require.NoError(t, err)

	// The expected values, from the CSV alone.
	type cust struct {
		invoices map[string]bool
		spend    int64
		last     time.Time
		first    time.Time
	}
	custs := map[string]*cust{}
	var lastOrder time.Time
	rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	require.NoError(t, err)
	for _, row := range rows[1:] {
		invoice, qtyS, dateS, priceS, id := row[0], row[3], row[4], row[5], row[6]
		if id == "" {
			continue
		}
		id = strings.TrimSuffix(id, ".0")
		at, err := time.Parse("2006-01-02 15:04:05", dateS)
		require.NoError(t, err)
		qty, err := strconv.ParseInt(qtyS, 10, 64)
		require.NoError(t, err)
		price, err := strconv.ParseFloat(priceS, 64)
		require.NoError(t, err)
		c := custs[id]
		if c == nil {
			c = &cust{invoices: map[string]bool{}}
			custs[id] = c
		}
		c.spend += qty * int64(math.Round(price*100))
		if at.After(lastOrder) {
			lastOrder = at
		}
		if strings.HasPrefix(invoice, "C") {
			continue
		}
		c.invoices[invoice] = true
		if c.first.IsZero() || at.Before(c.first) {
			c.first = at
		}
		if at.After(c.last) {
			c.last = at
		}
	}
	y, m, d := lastOrder.AddDate(0, 0, 1).Date()
	ref := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	want := map[string]rfmValues{}
	for id, c := range custs {
		if len(c.invoices) == 0 {
			continue
		}
		ly, lm, ld := c.last.Date()
		days := int(ref.Sub(time.Date(ly, lm, ld, 0, 0, 0, 0, time.UTC)).Hours() / 24)
		want[id] = rfmValues{recency: days, frequency: len(c.invoices), monetary: c.spend}
	}
	// Scores: 1 + ⌊5w/n⌋, w = customers strictly worse, counted pairwise.
	n := len(want)
	for id, v := range want {
		var wr, wf, wm int
		for _, o := range want {
			if o.recency > v.recency {
				wr++
			}
			if o.frequency < v.frequency {
				wf++
			}
			if o.monetary < v.monetary {
				wm++
			}
		}
		v.r, v.f, v.m = 1+5*wr/n, 1+5*wf/n, 1+5*wm/n
		want[id] = v
	}

	rep, err := analytics.New(e.Default()).RFM(ctx, analytics.RFMOptions{ExternalIDs: true})
	require.NoError(t, err)
	assert.Equal(t, ref, rep.Reference)
	assert.Equal(t, "GBP", rep.Currency)
	got := map[string]rfmValues{}
	segments := map[string]int{}
	for _, row := range rep.Rows {
		got[row.ExternalID] = rfmValues{row.RecencyDays, row.Frequency, row.Monetary, row.R, row.F, row.M, ""}
		segments[row.Segment]++
	}
	require.Len(t, got, len(want))
	for id, w := range want {
		assert.Equal(t, w, got[id], "customer %s", id)
	}
	assert.Greater(t, n, 3000, "the sample has about 3,500 customers")
	assert.Zero(t, segments[analytics.OtherSegment], "the default segments name every (R, F) cell")
	t.Logf("%d customers, reference %s, segments %v", n, ref.Format(time.DateOnly), segments)

	// CLV from the same data: historic = net spend; tenure from the
	// first order's day; 5 years at 8%, 60% retention, 30% margin.
	clv, err := analytics.New(e.Default()).CLV(ctx, analytics.CLVOptions{ExternalIDs: true, Horizon: 5, DiscountRate: 0.08, Retention: 0.6, Margin: 0.3})
	require.NoError(t, err)
	factor := 0.0
	for y := 1; y <= 5; y++ {
		factor += math.Pow(0.6, float64(y-1)) / math.Pow(1.08, float64(y))
	}
	require.Len(t, clv.Rows, n)
	var total int64
	for _, row := range clv.Rows {
		c := custs[row.ExternalID]
		require.NotNil(t, c, row.ExternalID)
		fy, fm, fd := c.first.Date()
		years := max(1, ref.Sub(time.Date(fy, fm, fd, 0, 0, 0, 0, time.UTC)).Hours()/24/365)
		yearly := math.Round(float64(c.spend) * 0.3 / years)
		assert.Equal(t, c.spend, row.Historic, row.ExternalID)
		assert.Equal(t, len(c.invoices), row.Orders, row.ExternalID)
		assert.Equal(t, int64(yearly), row.Yearly, row.ExternalID)
		assert.Equal(t, int64(math.Round(yearly*factor)), row.Predicted, row.ExternalID)
		total += c.spend
	}
	assert.Equal(t, total, clv.Historic)
}
