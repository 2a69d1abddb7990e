package crm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage"
)

// Reports read facts: the few fields of many records they aggregate. The
// engine keeps the facts of stage changes and orders in index values
// (the timeline's "moves" index, the orders' "customer_facts" index), so a
// report scans index keys only (storage.Query.KeysOnly) and never decodes
// a JSON body. Each key is its fields joined by sep; the fields are IDs,
// pipeline and stage keys, sortable times and integers, none of which can
// hold sep (a control character).

// The columns of the facts indexes, for stores that keep them typed
// (storage.Index.Columns): a SQL store aggregates reports over them.
var (
	moveColumns = []storage.Column{{Name: "collection"}, {Name: "pipeline"}, {Name: "at", Type: storage.ColumnTime},
		{Name: "to_stage"}, {Name: "from_stage"}, {Name: "record_id"}, {Name: "owner"}, {Name: "in_previous", Type: storage.ColumnInt}}
	positionColumns = []storage.Column{{Name: "pipeline"}, {Name: "stage"}, {Name: "owner"},
		{Name: "entered_at", Type: storage.ColumnTime}, {Name: "due_at", Type: storage.ColumnTime}}
	orderFactColumns = []storage.Column{{Name: "customer"}, {Name: "ordered_at", Type: storage.ColumnTime},
		{Name: "refund", Type: storage.ColumnInt}, {Name: "currency"}, {Name: "total", Type: storage.ColumnInt}}
)

// OrdersCollection is the collection of orders; its "customer_facts"
// index (columns orderFactColumns: customer, ordered_at, refund,
// currency, total) holds the facts of RFM and the other customer
// reports.
const OrdersCollection = ordersCollection

// FactsCollections names where the facts of records of kind k live, for
// stores that aggregate reports themselves (analytics pushdown): records
// is their collection, whose "position" index (columns pipeline, stage,
// owner, entered_at, due_at) says where each record is; timeline holds
// their stage changes in its "moves" index (columns collection,
// pipeline, at, to_stage, from_stage, record_id, owner, in_previous).
func FactsCollections(k pipeline.Kind) (records, timeline string, err error) {
	sk, err := stagedKindOf(k)
	if err != nil {
		return "", "", err
	}
	return sk.collectionName(), timelineCollection, nil
}

// StageMove is one stage change, as reports read it.
type StageMove struct {
	// RecordID is the record that moved.
	RecordID string
	// Pipeline is the pipeline it moved in. From is "" when the record
	// entered the pipeline (on create, or from another pipeline); To is ""
	// when it left the pipeline for another one.
	Pipeline, From, To string
	// Owner is the record's owner when it moved ("" for moves recorded
	// before owners were kept in the history).
	Owner string
	// At is when it moved; InPrevious is how long it had been in From.
	At         time.Time
	InPrevious time.Duration
}

// MovesQuery selects stage changes for ScanMoves.
type MovesQuery struct {
	// Pipeline is required.
	Pipeline string
	// From and To bound the moves' times: From <= At < To. A zero bound is
	// open.
	From, To time.Time
}

// moveKey indexes a stage_changed timeline entry as collection ‖
// pipeline ‖ at ‖ to ‖ from ‖ record ID ‖ owner ‖ in-previous
// nanoseconds. The longest value (8+64+30+64+64+128+128+19 bytes and 7
// separators) is exactly MaxIndexValueLen. A change of pipeline has two
// values: the entry into the new pipeline (From "") and the exit from the
// old one (To "", with the time spent in its last stage).
func moveKey(body []byte) ([]string, error) {
	if gjsonString(body, "type") != TimelineStageChanged {
		return nil, nil
	}
	r := gjson.GetManyBytes(body, "stage_change.collection", "stage_change.pipeline", "stage_change.at",
		"stage_change.to", "stage_change.from", "stage_change.record_id", "stage_change.owner",
		"stage_change.in_previous", "stage_change.from_pipeline")
	at, err := time.Parse(time.RFC3339Nano, r[2].String())
	if err != nil {
		return nil, fmt.Errorf("stage change time: %w", err)
	}
	key := func(pipeline, to, from string, inPrevious int64) string {
		return r[0].String() + sep + pipeline + sep + at.UTC().Format(sortableTimeLayout) + sep +
			to + sep + from + sep + r[5].String() + sep + r[6].String() + sep + strconv.FormatInt(max(inPrevious, 0), 10)
	}
	if old := r[8].String(); old != "" {
		return []string{key(r[1].String(), r[3].String(), "", 0), key(old, "", r[4].String(), r[7].Int())}, nil
	}
	return []string{key(r[1].String(), r[3].String(), r[4].String(), r[7].Int())}, nil
}

// parseMoveKey reads a moveKey value.
func parseMoveKey(k string) (StageMove, error) {
	var f [8]string
	rest := k
	for i := range f {
		if i == len(f)-1 {
			f[i] = rest
			break
		}
		var ok bool
		f[i], rest, ok = strings.Cut(rest, sep)
		if !ok {
			return StageMove{}, fmt.Errorf("malformed stage-change index value %q", k)
		}
	}
	at, err := parseSortableTime(f[2])
	if err != nil {
		return StageMove{}, err
	}
	ns, err := strconv.ParseInt(f[7], 10, 64)
	if err != nil {
		return StageMove{}, fmt.Errorf("malformed stage-change index value %q: %w", k, err)
	}
	return StageMove{Pipeline: f[1], At: at, To: f[3], From: f[4], RecordID: f[5], Owner: f[6], InPrevious: time.Duration(ns)}, nil
}

// parseSortableTime reads a time in sortableTimeLayout, several times
// faster than time.Parse.
func parseSortableTime(s string) (time.Time, error) {
	const layout = sortableTimeLayout
	bad := func() (time.Time, error) { return time.Time{}, fmt.Errorf("malformed sortable time %q", s) }
	if len(s) != len(layout) {
		return bad()
	}
	num := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	var v [7]int
	for i, span := range [7][2]int{{0, 4}, {5, 7}, {8, 10}, {11, 13}, {14, 16}, {17, 19}, {20, 29}} {
		var ok bool
		if v[i], ok = num(span[0], span[1]); !ok {
			return bad()
		}
	}
	for _, i := range []int{4, 7, 10, 13, 16, 19, 29} {
		if s[i] != layout[i] {
			return bad()
		}
	}
	if v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 59 {
		return bad()
	}
	// Seconds since the epoch from the civil date (days_from_civil, H.
	// Hinnant), much cheaper than time.Date; years are 0000-9999.
	y, m := v[0], v[1]
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	doy := (153*((m+9)%12)+2)/5 + v[2] - 1
	days := int64(era)*146097 + int64(yoe*365+yoe/4-yoe/100+doy) - 719468
	return time.Unix(days*86400+int64(v[3]*3600+v[4]*60+v[5]), int64(v[6])).UTC(), nil
}

// ScanMoves calls fn for every stage change of the kind's records in
// q.Pipeline with From <= At < To, in time order (moves at the same
// instant in an unspecified but stable order), including each record's
// entry into the pipeline. It reads index values only, in one snapshot;
// fn must not call back into the engine (see Records.Each), and must copy
// the move if it keeps it: the pointer is reused. An error from fn stops
// the scan and is returned.
func (s *Staged[T]) ScanMoves(ctx context.Context, q MovesQuery, fn func(*StageMove) error) error {
	if q.Pipeline == "" {
		return fmt.Errorf("crm: %s moves: %w: no pipeline", s.k.name, ErrInvalid)
	}
	prefix := s.k.collection.Name + sep + q.Pipeline + sep
	sq := storage.Query{Index: "moves", Prefix: prefix, KeysOnly: true, Limit: storage.MaxScanLimit}
	if !q.From.IsZero() || !q.To.IsZero() {
		sq.Prefix = ""
		sq.Start, sq.End = prefix, prefix+"\xff"
		if !q.From.IsZero() {
			sq.Start = prefix + q.From.UTC().Format(sortableTimeLayout)
		}
		if !q.To.IsZero() {
			sq.End = prefix + q.To.UTC().Format(sortableTimeLayout)
		}
		if sq.Start >= sq.End {
			return nil
		}
	}
	var m StageMove // one for every call: fn must not keep it
	return s.view(ctx, func(tx storage.ReadTx) error {
		return scanKeys(ctx, tx, timelineCollection, sq, func(key, _ string) error {
			var err error
			if m, err = parseMoveKey(key); err != nil {
				return err
			}
			return fn(&m)
		})
	})
}

// Position is where a record stands in its pipeline now.
type Position struct {
	RecordID, Stage, Owner string
	// EnteredAt is when it entered Stage; DueAt when it should leave it
	// (zero without a norm).
	EnteredAt, DueAt time.Time
}

// positionKey indexes a record in a pipeline as pipeline ‖ stage ‖ owner
// ‖ stage entered at ‖ stage due at (times sortable, "" when unset), so
// that ScanPositions reads index values only. The longest value
// (64+64+128+30+30 bytes and 4 separators) is well within
// MaxIndexValueLen.
func positionKey(body []byte) ([]string, error) {
	r := gjson.GetManyBytes(body, "pipeline", "stage", "owner", "stage_entered_at", "stage_due_at")
	if r[0].String() == "" || r[1].String() == "" {
		return nil, nil
	}
	var times [2]string
	for i, v := range r[3:] {
		if v.String() == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v.String())
		if err != nil {
			return nil, err
		}
		times[i] = t.UTC().Format(sortableTimeLayout)
	}
	return []string{r[0].String() + sep + r[1].String() + sep + r[2].String() + sep + times[0] + sep + times[1]}, nil
}

// parsePositionKey reads a positionKey value (without the pipeline, which
// the caller knows) into p.
func parsePositionKey(k string, p *Position) error {
	_, rest, ok1 := strings.Cut(k, sep)
	stage, rest, ok2 := strings.Cut(rest, sep)
	owner, rest, ok3 := strings.Cut(rest, sep)
	entered, due, ok4 := strings.Cut(rest, sep)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return fmt.Errorf("malformed position index value %q", k)
	}
	p.Stage, p.Owner, p.EnteredAt, p.DueAt = stage, owner, time.Time{}, time.Time{}
	var err error
	if entered != "" {
		if p.EnteredAt, err = parseSortableTime(entered); err != nil {
			return err
		}
	}
	if due != "" {
		p.DueAt, err = parseSortableTime(due)
	}
	return err
}

// ScanPositions calls fn for every record of the kind in pipeline, grouped
// by stage (stages in key order; within a stage, by owner, then by the
// time the record entered it). It reads index values only (the
// "position" index), in one snapshot. fn must copy the position if it
// keeps it: the pointer is reused.
func (s *Staged[T]) ScanPositions(ctx context.Context, pipelineName string, fn func(*Position) error) error {
	if pipelineName == "" {
		return fmt.Errorf("crm: %s positions: %w: no pipeline", s.k.name, ErrInvalid)
	}
	q := storage.Query{Index: "position", Prefix: pipelineName + sep, KeysOnly: true, Limit: storage.MaxScanLimit}
	var p Position
	return s.view(ctx, func(tx storage.ReadTx) error {
		return scanKeys(ctx, tx, s.k.collection.Name, q, func(key, id string) error {
			p.RecordID = id
			if err := parsePositionKey(key, &p); err != nil {
				return fmt.Errorf("%s %s: %w", s.k.name, id, err)
			}
			return fn(&p)
		})
	})
}

// OrderFact is one order of a customer, as reports read it.
//
// Consecutive facts from ScanOrderFacts with the same customer share one
// ContactID string, and with the same currency one Currency string, so
// that a consumer grouping by them compares pointers, not bytes.
type OrderFact struct {
	// ContactID is the customer; orders without one have no fact.
	ContactID string
	OrderID   string
	OrderedAt time.Time
	Refund    bool
	// Total is the order's total (negative for a refund).
	Total Money
}

// orderFactKey indexes an order with a customer as contact ID ‖ ordered
// at ‖ refund (0 or 1) ‖ currency ‖ total in minor units.
func orderFactKey(body []byte) ([]string, error) {
	r := gjson.GetManyBytes(body, "contact_id", "ordered_at", "refund", "currency", "total.amount")
	if r[0].String() == "" {
		return nil, nil
	}
	at, err := time.Parse(time.RFC3339Nano, r[1].String())
	if err != nil {
		return nil, fmt.Errorf("ordered_at: %w", err)
	}
	refund := "0"
	if r[2].Bool() {
		refund = "1"
	}
	return []string{r[0].String() + sep + at.UTC().Format(sortableTimeLayout) + sep + refund + sep + r[3].String() + sep + strconv.FormatInt(r[4].Int(), 10)}, nil
}

// ScanOrderFacts calls fn for every order that has a customer, grouped by
// customer (customers in ID order, each customer's orders in time order),
// so that a per-customer aggregate needs no map. It reads index values
// only, in one snapshot. fn must copy the fact if it keeps it: the
// pointer is reused.
func (t *Tenant) ScanOrderFacts(ctx context.Context, fn func(*OrderFact) error) error {
	q := storage.Query{Index: "customer_facts", KeysOnly: true, Limit: storage.MaxScanLimit}
	var f OrderFact
	return t.view(ctx, func(tx storage.ReadTx) error {
		return scanKeys(ctx, tx, ordersCollection, q, func(key, id string) error {
			prev := f
			var err error
			if f, err = parseOrderFact(key); err != nil {
				return err
			}
			// The bytes compared here were just read; the consumer's
			// comparison with its previous fact then finds equal pointers.
			if f.ContactID == prev.ContactID {
				f.ContactID = prev.ContactID
			}
			if f.Total.Currency == prev.Total.Currency {
				f.Total.Currency = prev.Total.Currency
			}
			f.OrderID = id
			return fn(&f)
		})
	})
}

var errMalformedFact = errors.New("malformed order fact")

func parseOrderFact(k string) (OrderFact, error) {
	contact, rest, ok1 := strings.Cut(k, sep)
	at, rest, ok2 := strings.Cut(rest, sep)
	refund, rest, ok3 := strings.Cut(rest, sep)
	cur, amount, ok4 := strings.Cut(rest, sep)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return OrderFact{}, fmt.Errorf("%w: %q", errMalformedFact, k)
	}
	t, err := parseSortableTime(at)
	if err != nil {
		return OrderFact{}, err
	}
	n, err := strconv.ParseInt(amount, 10, 64)
	if err != nil {
		return OrderFact{}, fmt.Errorf("%w: %q: %v", errMalformedFact, k, err)
	}
	return OrderFact{ContactID: contact, OrderedAt: t, Refund: refund == "1", Total: Money{Amount: n, Currency: cur}}, nil
}
