package analytics

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/loyalty"
)

// RFMOptions configure an RFM report.
type RFMOptions struct {
	// Reference is the day recency is counted to (its date in the engine's
	// time zone). Zero means the day after the date of the last order in
	// the data: any order, a refund or one without a customer too.
	Reference time.Time
	// Currency keeps only orders in this currency. Empty means the one
	// currency the orders are in; orders in several currencies are then
	// an error.
	Currency string
	// Segments name customers by their scores, first match wins; nil
	// means DefaultSegments.
	Segments []Segment
	// ExternalIDs fills RFMRow.ExternalID from each customer's contact
	// (one read per customer).
	ExternalIDs bool
	// Slice keeps the customers (contacts) of some owners and of accounts
	// in an industry; it takes no Source, Campaign or Product. Scores are
	// quintiles among the customers kept; the default Reference is still
	// the day after the last order of all.
	Slice Slice
}

// RFM is the recency, frequency and monetary value of every customer with
// at least one order that is not a refund.
//
// Definitions: a customer is an order's contact (orders without one are
// no one's). Frequency is the number of orders that are not refunds.
// Monetary is the net spend, refunds included (their totals are
// negative), in minor units of Currency. Recency is the number of
// calendar days from the date of the customer's last order that is not a
// refund to Reference, both dates in the engine's time zone: an order on
// the day before Reference has recency 1.
//
// Scores 1-5 are quintiles by rank: a customer's score is 1 + ⌊5 × w / n⌋,
// where n is the number of customers and w the number of customers with
// a strictly worse value (longer recency, lower frequency, lower
// monetary). Customers with equal values therefore always get the same
// score, the score of the first of them in rank order; the scores do not
// depend on the order customers are read in.
type RFM struct {
	// Reference is the reference date, midnight in the engine's time zone.
	Reference time.Time
	Currency  string
	// Rows are in customer ID order.
	Rows []RFMRow
}

// FillMember sets a loyalty member's R, F and M scores from the report
// (rows are in customer ID order, so it is a binary search). A customer
// without a row keeps zero scores. Its signature is crm.MemberFunc, so
// rule and segment runners take it as it is:
//
//	tenant.Loyalty(program).WithMember(rep.FillMember)
func (r *RFM) FillMember(_ context.Context, m *loyalty.Member) error {
	i, ok := slices.BinarySearchFunc(r.Rows, m.ID, func(row RFMRow, id string) int { return strings.Compare(row.CustomerID, id) })
	if ok {
		m.R, m.F, m.M = r.Rows[i].R, r.Rows[i].F, r.Rows[i].M
	}
	return nil
}

// RFMRow is one customer's RFM values, scores and segment.
type RFMRow struct {
	CustomerID string
	// ExternalID is the contact's ExternalID, when RFMOptions.ExternalIDs
	// is set.
	ExternalID string
	// LastOrder is the time of the last order that is not a refund.
	LastOrder   time.Time
	RecencyDays int
	Frequency   int
	Monetary    int64
	R, F, M     int
	Segment     string
}

// Segment names the customers whose scores lie in its ranges. A range is
// [min, max] within 1-5; the zero range matches any score.
type Segment struct {
	Name string `json:"name" yaml:"name"`
	R    [2]int `json:"r,omitzero" yaml:"r,omitempty"`
	F    [2]int `json:"f,omitzero" yaml:"f,omitempty"`
	M    [2]int `json:"m,omitzero" yaml:"m,omitempty"`
}

// OtherSegment names customers no segment matches.
const OtherSegment = "other"

// DefaultSegments is the common grid of recency and frequency scores; it
// names every one of the 25 (R, F) cells.
var DefaultSegments = []Segment{
	{Name: "champions", R: [2]int{5, 5}, F: [2]int{4, 5}},
	{Name: "loyal", R: [2]int{3, 4}, F: [2]int{4, 5}},
	{Name: "potential_loyalists", R: [2]int{4, 5}, F: [2]int{2, 3}},
	{Name: "new_customers", R: [2]int{5, 5}, F: [2]int{1, 1}},
	{Name: "promising", R: [2]int{4, 4}, F: [2]int{1, 1}},
	{Name: "need_attention", R: [2]int{3, 3}, F: [2]int{3, 3}},
	{Name: "about_to_sleep", R: [2]int{3, 3}, F: [2]int{1, 2}},
	{Name: "cant_lose", R: [2]int{1, 2}, F: [2]int{5, 5}},
	{Name: "at_risk", R: [2]int{1, 2}, F: [2]int{3, 4}},
	{Name: "hibernating", R: [2]int{1, 2}, F: [2]int{1, 2}},
}

func (s Segment) matches(r, f, m int) bool {
	in := func(x int, rg [2]int) bool { return rg == [2]int{} || (x >= rg[0] && x <= rg[1]) }
	return in(r, s.R) && in(f, s.F) && in(m, s.M)
}

// ValidateSegments checks a segment map: names set and unique, ranges
// within 1-5 with min <= max.
func ValidateSegments(segs []Segment) error {
	seen := map[string]bool{}
	for i, s := range segs {
		if s.Name == "" {
			return fmt.Errorf("%w: segment %d has no name", ErrInvalid, i+1)
		}
		if seen[s.Name] {
			return fmt.Errorf("%w: segment %q is named twice", ErrInvalid, s.Name)
		}
		seen[s.Name] = true
		for _, rg := range []struct {
			what string
			r    [2]int
		}{{"r", s.R}, {"f", s.F}, {"m", s.M}} {
			if rg.r != [2]int{} && (rg.r[0] < 1 || rg.r[1] > 5 || rg.r[0] > rg.r[1]) {
				return fmt.Errorf("%w: segment %q: %s range %v is not within 1-5 with min <= max", ErrInvalid, s.Name, rg.what, rg.r)
			}
		}
	}
	return nil
}

// custAgg is one customer's aggregate, 40 bytes like the dense loop's
// row and free of pointers, so that the garbage collector never scans the
// millions of them: the customer is a recordKeys key, the last order's
// time Unix seconds and nanoseconds. Most of the aggregation's time is
// the first write to each new row's memory, so every byte counts.
type custAgg struct {
	key       [16]byte
	lastSec   int64
	lastNsec  int32
	frequency uint32
	monetary  int64
}

// rfmAcc aggregates order facts that come grouped by customer, each
// customer's in time order, into one aggregate per customer, appended to
// dense chunks: no map, no lookups, no copying as the number of customers
// grows.
type rfmAcc struct {
	currency string
	fixed    bool // currency was given, so others are skipped
	rows     chunked[custAgg]
	keys     recordKeys
	// cur is the customer being read, curID its ID as the facts give it
	// ("" before the first fact: a fact always has a customer).
	cur   custAgg
	curID string
}

func (a *rfmAcc) add(f *crm.OrderFact) error {
	// The common case, another order of the same customer in the same
	// currency, goes straight to the sums. ScanOrderFacts gives one
	// customer's facts one ID string and one currency string, so equal
	// pointers settle it without a call to compare bytes.
	if !samePtr(f.ContactID, a.curID) || !samePtr(f.Total.Currency, a.currency) {
		if f.ContactID != a.curID || f.Total.Currency != a.currency {
			return a.next(f)
		}
	}
	x := f.Total.Amount
	s := a.cur.monetary + x
	if (x > 0) != (s > a.cur.monetary) && x != 0 {
		return overflow(f)
	}
	a.cur.monetary = s
	if !f.Refund {
		if a.cur.frequency == math.MaxUint32 {
			return fmt.Errorf("analytics: RFM: customer %s has more than %d orders", f.ContactID, uint32(math.MaxUint32))
		}
		a.cur.frequency++
		// Facts come in time order: the last is the latest.
		a.cur.lastSec, a.cur.lastNsec = f.OrderedAt.Unix(), int32(f.OrderedAt.Nanosecond())
	}
	return nil
}

// next starts a new customer, or skips or refuses an order in another
// currency, then adds f.
func (a *rfmAcc) next(f *crm.OrderFact) error {
	if f.Total.Currency != a.currency {
		switch {
		case a.fixed:
			return nil
		case a.currency == "":
			a.currency = f.Total.Currency
		default:
			return fmt.Errorf("%w: orders are in several currencies (%s and %s at least); choose one with RFMOptions.Currency", ErrInvalid, a.currency, f.Total.Currency)
		}
	}
	if f.ContactID != a.curID {
		a.flush()
		a.cur, a.curID = custAgg{key: a.keys.key(f.ContactID)}, f.ContactID
	}
	return a.add(f)
}

// addTotals takes the customers' totals from an RFMAggregator instead of
// their facts.
func (a *rfmAcc) addTotals(totals []CustomerTotals) error {
	slices.SortFunc(totals, func(x, y CustomerTotals) int {
		return cmp.Or(cmp.Compare(x.CustomerID, y.CustomerID), cmp.Compare(x.Currency, y.Currency))
	})
	for i, t := range totals {
		if i > 0 && t.CustomerID == totals[i-1].CustomerID && t.Currency == totals[i-1].Currency {
			return fmt.Errorf("analytics: RFM aggregator: customer %s has two rows in %s", t.CustomerID, t.Currency)
		}
		// An empty fact checks the currency and starts the customer.
		if err := a.next(&crm.OrderFact{ContactID: t.CustomerID, Refund: true, Total: crm.Money{Currency: t.Currency}}); err != nil {
			return err
		}
		if t.Currency == a.currency && t.CustomerID == a.curID {
			if t.Frequency < 0 || t.Frequency > math.MaxUint32 {
				return fmt.Errorf("analytics: RFM aggregator: customer %s has frequency %d", t.CustomerID, t.Frequency)
			}
			a.cur.monetary, a.cur.frequency = t.Monetary, uint32(t.Frequency)
			a.cur.lastSec, a.cur.lastNsec = t.Last.Unix(), int32(t.Last.Nanosecond())
		}
	}
	a.flush()
	return nil
}

// customers resolves a customer report's slice into the contacts it
// keeps; nil keeps everyone.
func (r *Reports) customers(ctx context.Context, s Slice, report string) (map[string]bool, error) {
	sl, err := r.slicer(ctx, s, report, customerDims)
	if err != nil {
		return nil, err
	}
	return sl.customers(ctx, r.t)
}

// sliceFacts returns fn, skipping the facts of customers keep does not
// hold (unless keep is nil).
func sliceFacts(keep map[string]bool, fn func(*crm.OrderFact) error) func(*crm.OrderFact) error {
	if keep == nil {
		return fn
	}
	return func(f *crm.OrderFact) error {
		if !keep[f.ContactID] {
			return nil
		}
		return fn(f)
	}
}

// samePtr reports whether x and y are the same bytes (then they are
// equal; if not, they may still be).
func samePtr(x, y string) bool {
	return len(x) == len(y) && unsafe.StringData(x) == unsafe.StringData(y)
}

func overflow(f *crm.OrderFact) error {
	return fmt.Errorf("analytics: RFM: the spend of customer %s overflows int64 minor units", f.ContactID)
}

// flush ends the current customer, keeping it if it has an order that is
// not a refund.
func (a *rfmAcc) flush() {
	if a.cur.frequency > 0 {
		a.rows.add(a.cur)
	}
	a.cur, a.curID = custAgg{}, ""
}

// result returns the customers' rows.
func (a *rfmAcc) result() []RFMRow {
	a.flush()
	out := make([]RFMRow, 0, a.rows.n)
	for _, ch := range a.rows.chunks {
		for _, c := range ch {
			out = append(out, RFMRow{CustomerID: a.keys.id(c.key), LastOrder: time.Unix(c.lastSec, int64(c.lastNsec)).UTC(),
				Frequency: int(c.frequency), Monetary: c.monetary})
		}
	}
	return out
}

// dayNumber returns the days since 1970-01-01 of t's date in loc.
func dayNumber(t time.Time, loc *time.Location) int64 {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// RFM computes the RFM report over every customer's orders, reading order
// facts from index values (crm.Tenant.ScanOrderFacts) in customer order.
func (r *Reports) RFM(ctx context.Context, opts RFMOptions) (*RFM, error) {
	segs := opts.Segments
	if segs == nil {
		segs = DefaultSegments
	}
	if err := ValidateSegments(segs); err != nil {
		return nil, err
	}
	if opts.Currency != "" {
		if _, err := crm.CurrencyScale(opts.Currency); err != nil {
			return nil, err
		}
	}
	keep, err := r.customers(ctx, opts.Slice, "rfm")
	if err != nil {
		return nil, err
	}
	a := &rfmAcc{currency: opts.Currency, fixed: opts.Currency != ""}
	agg, ok := aggregator[RFMAggregator](r)
	if ok {
		totals, err := agg.AggregateRFM(ctx, RFMAggregate{Tenant: r.t.ID(), Orders: crm.OrdersCollection, Currency: opts.Currency})
		if ok, err = pushed(err); err != nil {
			return nil, err
		}
		if ok && keep != nil {
			totals = slices.DeleteFunc(totals, func(t CustomerTotals) bool { return !keep[t.CustomerID] })
		}
		if ok {
			if err := a.addTotals(totals); err != nil {
				return nil, err
			}
		}
	}
	if !ok {
		if err := r.t.ScanOrderFacts(ctx, sliceFacts(keep, a.add)); err != nil {
			return nil, err
		}
	}
	loc := r.t.Location()
	out := &RFM{Currency: a.currency, Rows: a.result()}
	ref, err := r.referenceDay(ctx, opts.Reference)
	if err != nil || ref.IsZero() {
		return out, err // no orders at all
	}
	out.Reference = ref
	refDay := dayNumber(out.Reference, loc)
	for i := range out.Rows {
		out.Rows[i].RecencyDays = int(refDay - dayNumber(out.Rows[i].LastOrder, loc))
	}
	score(out.Rows)
	for i := range out.Rows {
		row := &out.Rows[i]
		row.Segment = OtherSegment
		for _, s := range segs {
			if s.matches(row.R, row.F, row.M) {
				row.Segment = s.Name
				break
			}
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

// referenceDay returns the midnight (in the engine's time zone) of the
// day of ref or, when ref is zero, of the day after the last order of
// any kind; zero when there is no order.
func (r *Reports) referenceDay(ctx context.Context, ref time.Time) (time.Time, error) {
	loc := r.t.Location()
	if ref.IsZero() {
		last, err := r.t.Orders().List(ctx, crm.ListOptions{By: "ordered_at", Reverse: true, Limit: 1, Archived: crm.ArchivedIncluded})
		if err != nil {
			return time.Time{}, err
		}
		if len(last.Items) == 0 {
			return time.Time{}, nil
		}
		ref = last.Items[0].OrderedAt.In(loc).AddDate(0, 0, 1)
	}
	y, m, d := ref.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc), nil
}

// score sets the quintile scores of rows (see RFM).
func score(rows []RFMRow) {
	n := len(rows)
	if n == 0 {
		return
	}
	vals := make([]int64, n)
	set := func(get func(*RFMRow) int64, put func(*RFMRow, int)) {
		for i := range rows {
			vals[i] = get(&rows[i])
		}
		slices.Sort(vals)
		for i := range rows {
			// w: the customers with a strictly worse (smaller) value.
			w := sort.Search(n, func(j int) bool { return vals[j] >= get(&rows[i]) })
			put(&rows[i], 1+5*w/n)
		}
	}
	// Shorter recency is better: negate it so that larger is better.
	set(func(r *RFMRow) int64 { return -int64(r.RecencyDays) }, func(r *RFMRow, s int) { r.R = s })
	set(func(r *RFMRow) int64 { return int64(r.Frequency) }, func(r *RFMRow, s int) { r.F = s })
	set(func(r *RFMRow) int64 { return r.Monetary }, func(r *RFMRow, s int) { r.M = s })
}
