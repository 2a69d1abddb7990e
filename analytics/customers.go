package analytics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/rapportcrm/rapport/crm"
)

// CLVOptions configure the customer lifetime value report.
type CLVOptions struct {
	// Reference is the day the values are taken at; zero means the day
	// after the last order, as for RFM.
	Reference time.Time
	// Currency is as for RFMOptions.Currency.
	Currency string
	// Horizon is how many years ahead the prediction looks; 0 means 3.
	Horizon int
	// DiscountRate is the yearly rate future contributions are discounted
	// at, for example 0.1 for 10%; it must be 0 or more.
	DiscountRate float64
	// Retention is the chance that a customer of one year is still one
	// the next, in (0, 1]; 0 means 1 (no churn).
	Retention float64
	// Margin is the share of spend that is contribution, in (0, 1]; 0
	// means 1 (spend is contribution).
	Margin float64
	// ExternalIDs fills CLVRow.ExternalID, as for RFM.
	ExternalIDs bool
	// Slice keeps some customers, as for RFMOptions.Slice.
	Slice Slice
}

// CLV is the customer lifetime value report.
type CLV struct {
	Reference         time.Time
	Currency          string
	Horizon           int
	DiscountRate      float64
	Retention, Margin float64
	// Factor is Σ_{t=1..Horizon} Retention^(t-1) / (1+DiscountRate)^t:
	// the present value of one unit of yearly contribution.
	Factor float64
	// Rows has a row for every customer with an order that is not a
	// refund, in customer ID order.
	Rows []CLVRow
	// Historic and Predicted sum the rows.
	Historic, Predicted int64
}

// CLVRow is one customer's lifetime value, in minor units of the
// report's currency.
type CLVRow struct {
	CustomerID, ExternalID string
	// FirstOrder is the customer's first order that is not a refund.
	FirstOrder time.Time
	// Orders counts the orders that are not refunds.
	Orders int
	// Historic is the net spend so far (refunds subtract), as RFM's
	// monetary value.
	Historic int64
	// Years is the customer's tenure: the calendar days from the first
	// order's day to the reference day over 365, and at least 1.
	Years float64
	// Yearly is the expected yearly contribution: Historic × Margin /
	// Years, rounded half away from zero.
	Yearly int64
	// Predicted is the net present value of the contributions of the
	// coming Horizon years: Yearly × Factor, rounded half away from zero.
	Predicted int64
}

// CLV computes historic and predicted customer lifetime value from the
// order facts, one customer at a time.
func (r *Reports) CLV(ctx context.Context, opts CLVOptions) (*CLV, error) {
	if opts.Horizon == 0 {
		opts.Horizon = 3
	}
	if opts.Retention == 0 {
		opts.Retention = 1
	}
	if opts.Margin == 0 {
		opts.Margin = 1
	}
	switch {
	case opts.Horizon < 0 || opts.Horizon > 100:
		return nil, fmt.Errorf("%w: CLV horizon %d years: want 1-100", ErrInvalid, opts.Horizon)
	case !(opts.DiscountRate >= 0 && opts.DiscountRate <= 10):
		return nil, fmt.Errorf("%w: CLV discount rate %v: want 0-10", ErrInvalid, opts.DiscountRate)
	case !(opts.Retention > 0 && opts.Retention <= 1):
		return nil, fmt.Errorf("%w: CLV retention %v: want (0, 1]", ErrInvalid, opts.Retention)
	case !(opts.Margin > 0 && opts.Margin <= 1):
		return nil, fmt.Errorf("%w: CLV margin %v: want (0, 1]", ErrInvalid, opts.Margin)
	}
	pick, err := newCurrencyPick(opts.Currency, "CLVOptions.Currency")
	if err != nil {
		return nil, err
	}
	keep, err := r.customers(ctx, opts.Slice, "clv")
	if err != nil {
		return nil, err
	}
	out := &CLV{Horizon: opts.Horizon, DiscountRate: opts.DiscountRate, Retention: opts.Retention, Margin: opts.Margin}
	for t := 1; t <= opts.Horizon; t++ {
		out.Factor += math.Pow(opts.Retention, float64(t-1)) / math.Pow(1+opts.DiscountRate, float64(t))
	}
	var cur CLVRow
	flush := func() {
		if cur.Orders > 0 {
			out.Rows = append(out.Rows, cur)
		}
		cur = CLVRow{}
	}
	err = r.t.ScanOrderFacts(ctx, sliceFacts(keep, func(f *crm.OrderFact) error {
		if f.ContactID != cur.CustomerID {
			flush()
			cur.CustomerID = f.ContactID
		}
		if ok, err := pick.keep(f.Total); err != nil || !ok {
			return err
		}
		if err := addMoney(&cur.Historic, f.Total.Amount, "the spend of customer "+f.ContactID); err != nil {
			return err
		}
		if !f.Refund {
			if cur.Orders == 0 || f.OrderedAt.Before(cur.FirstOrder) {
				cur.FirstOrder = f.OrderedAt
			}
			cur.Orders++
		}
		return nil
	}))
	if err != nil {
		return nil, err
	}
	flush()
	out.Currency = pick.currency
	if out.Reference, err = r.referenceDay(ctx, opts.Reference); err != nil {
		return nil, err
	}
	loc := r.t.Location()
	refDay := dayNumber(out.Reference, loc)
	for i := range out.Rows {
		row := &out.Rows[i]
		row.Years = max(1, float64(refDay-dayNumber(row.FirstOrder, loc))/365)
		row.Yearly = roundMinor(float64(row.Historic) * opts.Margin / row.Years)
		row.Predicted = roundMinor(float64(row.Yearly) * out.Factor)
		if err := addMoney(&out.Historic, row.Historic, "historic value"); err != nil {
			return nil, err
		}
		if err := addMoney(&out.Predicted, row.Predicted, "predicted value"); err != nil {
			return nil, err
		}
	}
	if opts.ExternalIDs {
		for i := range out.Rows {
			if out.Rows[i].ExternalID, err = r.externalID(ctx, out.Rows[i].CustomerID); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// roundMinor rounds x half away from zero to an int64, saturating.
func roundMinor(x float64) int64 {
	x = math.Round(x)
	switch {
	case x >= math.MaxInt64:
		return math.MaxInt64
	case x <= math.MinInt64:
		return math.MinInt64
	}
	return int64(x)
}

// externalID returns a contact's external ID ("" when it has none or is
// gone).
func (r *Reports) externalID(ctx context.Context, id string) (string, error) {
	c, err := r.t.Contacts().Get(ctx, id)
	if errors.Is(err, crm.ErrNotFound) {
		return "", nil // erased or deleted since the order
	}
	return c.ExternalID, err
}

// CohortsQuery selects the cohorts of a retention report.
type CohortsQuery struct {
	// Period keeps the cohorts whose month starts in it.
	Period Period
	// Months is how many months after the first the report follows each
	// cohort; 0 means 12, at most 120.
	Months int
	// Slice keeps some customers, as for RFMOptions.Slice.
	Slice Slice
}

// Cohorts is the retention report: customers grouped by the month of
// their first order (in the engine's time zone), and how many of each
// group order again in each following month.
type Cohorts struct {
	Period Period
	Months int
	// Cohorts are in month order.
	Cohorts []Cohort
}

// Cohort is the customers whose first order that is not a refund was in
// Month.
type Cohort struct {
	// Month is YYYY-MM.
	Month     string
	Customers int
	// Active[k] counts the customers who placed an order that is not a
	// refund in the k-th month after Month (Active[0] == Customers).
	// Months after the engine clock's current month are left out, so the
	// slice is shorter for young cohorts.
	Active []int
	// Retention[k] is Active[k] / Customers.
	Retention []float64
	// Repeat counts the customers with two or more orders that are not
	// refunds, at any time; RepeatRate is Repeat / Customers.
	Repeat     int
	RepeatRate float64
}

// Cohorts computes the cohort retention report from the order facts.
func (r *Reports) Cohorts(ctx context.Context, q CohortsQuery) (*Cohorts, error) {
	if err := q.Period.validate(); err != nil {
		return nil, err
	}
	if q.Months == 0 {
		q.Months = 12
	}
	if q.Months < 0 || q.Months > 120 {
		return nil, fmt.Errorf("%w: cohorts: %d months: want 1-120", ErrInvalid, q.Months)
	}
	keep, err := r.customers(ctx, q.Slice, "cohorts")
	if err != nil {
		return nil, err
	}
	loc := r.t.Location()
	monthOf := func(t time.Time) int {
		y, m, _ := t.In(loc).Date()
		return y*12 + int(m) - 1
	}
	now := monthOf(r.t.Now())
	type acc struct {
		customers, repeat int
		active            []int
	}
	cohorts := map[int]*acc{}
	var (
		who    string
		first  = -1 // the current customer's first month
		orders int
		seen   = make([]bool, q.Months+1)
	)
	flush := func() {
		if first < 0 {
			return
		}
		start := time.Date(first/12, time.Month(first%12+1), 1, 0, 0, 0, 0, loc)
		if q.Period.Contains(start) {
			c := cohorts[first]
			if c == nil {
				c = &acc{active: make([]int, q.Months+1)}
				cohorts[first] = c
			}
			c.customers++
			if orders > 1 {
				c.repeat++
			}
			for k, s := range seen {
				if s {
					c.active[k]++
				}
			}
		}
		first, orders = -1, 0
		clear(seen)
	}
	err = r.t.ScanOrderFacts(ctx, sliceFacts(keep, func(f *crm.OrderFact) error {
		if f.ContactID != who {
			flush()
			who = f.ContactID
		}
		if f.Refund {
			return nil
		}
		m := monthOf(f.OrderedAt)
		if first < 0 {
			first = m // facts come in time order
		}
		orders++
		if k := m - first; k <= q.Months {
			seen[k] = true
		}
		return nil
	}))
	if err != nil {
		return nil, err
	}
	flush()
	out := &Cohorts{Period: q.Period, Months: q.Months}
	for _, m := range sortedKeys(cohorts) {
		c := cohorts[m]
		n := min(q.Months, now-m) + 1
		if n < 1 {
			n = 1 // a cohort in the future of the clock
		}
		co := Cohort{Month: fmt.Sprintf("%04d-%02d", m/12, m%12+1), Customers: c.customers, Active: c.active[:n],
			Repeat: c.repeat, RepeatRate: ratio(c.repeat, c.customers)}
		for _, a := range co.Active {
			co.Retention = append(co.Retention, ratio(a, c.customers))
		}
		out.Cohorts = append(out.Cohorts, co)
	}
	return out, nil
}
