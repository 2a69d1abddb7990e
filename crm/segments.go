package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rapportcrm/rapport/loyalty"
	"github.com/rapportcrm/rapport/storage"
)

const segmentMembersCollection = "segment_members"

// A contact's memberships of one segment set: one record per set and
// contact, indexed by set ‖ segment so a segment's members are a scan.
var segmentMemberCollection = storage.Collection{Name: segmentMembersCollection, Indexes: []storage.Index{
	{Name: "segment", Field: "in"},
}}

type segmentMemberRec struct {
	Contact string   `json:"contact"`
	In      []string `json:"in"` // set ‖ segment, sorted
}

// SegmentSet keeps the memberships of a set of segments in the store and
// up to date: Refresh evaluates a contact again and records the segments
// it entered and left, with a segment.entered or segment.left event each,
// in one transaction.
type SegmentSet struct {
	t        *Tenant
	name     string
	segments *loyalty.Segments
	currency string
	enrich   MemberFunc
}

// WithMember returns a set that completes each member with fn before
// evaluating (for example with RFM scores).
func (s *SegmentSet) WithMember(fn MemberFunc) *SegmentSet {
	c := *s
	c.enrich = fn
	return &c
}

// SegmentSet returns the stored memberships of a compiled set of
// segments, named name (a set per name; segments see the totals of orders
// in currency).
func (t *Tenant) SegmentSet(name string, s *loyalty.Segments, currency string) *SegmentSet {
	return &SegmentSet{t: t, name: name, segments: s, currency: currency}
}

// segmentChange is the body of segment.entered and segment.left events.
type segmentChange struct {
	Set     string `json:"set"`
	Segment string `json:"segment"`
	Contact string `json:"contact"`
}

// Refresh evaluates the segments for a contact (a deleted contact is in
// none) and returns the changes it recorded.
func (s *SegmentSet) Refresh(ctx context.Context, contact string) ([]loyalty.Change, error) {
	if err := s.validName(); err != nil {
		return nil, err
	}
	if err := storage.ValidateID("segment membership", s.name+"/"+contact); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return s.refresh(ctx, contact, Event{})
}

// refresh is Refresh writing its events as consequences of cause (with
// its automation depth).
func (s *SegmentSet) refresh(ctx context.Context, contact string, cause Event) ([]loyalty.Change, error) {
	var changes []loyalty.Change
	err := s.t.updateRetrying(ctx, func(tx storage.Tx) error {
		var err error
		changes, err = s.refreshIn(ctx, causedBy(tx, cause), contact)
		return err
	})
	return changes, err
}

// refreshBatch is how many contacts RefreshAll refreshes per transaction.
const refreshBatch = 200

// RefreshAll refreshes every contact of the tenant, and every contact the
// set still records that has been deleted since: the sweep that moves
// members through time-based segments (no order for 90 days, a birthday
// this week) when nothing happens to their records. Run it once a day,
// or after changing the segments. It refreshes refreshBatch contacts per
// transaction, so a failure keeps the batches already done, and returns
// how many changes it recorded (each with its event).
func (s *SegmentSet) RefreshAll(ctx context.Context) (int, error) {
	if err := s.validName(); err != nil {
		return 0, err
	}
	changes := 0
	batch := func(ids []string, onlyGone bool) error {
		n := 0
		err := s.t.updateRetrying(ctx, func(tx storage.Tx) error {
			n = 0
			for _, id := range ids {
				if onlyGone {
					if _, err := tx.Get(ctx, contactsCollection, id); !errors.Is(err, storage.ErrNotFound) {
						if err != nil {
							return err
						}
						continue // refreshed with the contacts
					}
				}
				c, err := s.refreshIn(ctx, tx, id)
				if err != nil {
					return fmt.Errorf("contact %s: %w", id, err)
				}
				n += len(c)
			}
			return nil
		})
		changes += n
		return err
	}
	// Contacts, then the memberships of contacts deleted since.
	for _, pass := range []struct {
		coll, prefix string
		onlyGone     bool
	}{{contactsCollection, "", false}, {segmentMembersCollection, s.name + "/", true}} {
		q := storage.Query{Prefix: pass.prefix, KeysOnly: true, Limit: refreshBatch}
		for {
			var pg storage.Page
			err := s.t.view(ctx, func(tx storage.ReadTx) error {
				var err error
				pg, err = tx.Scan(ctx, pass.coll, q)
				return err
			})
			if err != nil {
				return changes, err
			}
			ids := make([]string, len(pg.Records))
			for i, r := range pg.Records {
				ids[i] = strings.TrimPrefix(r.ID, pass.prefix)
			}
			if err := batch(ids, pass.onlyGone); err != nil {
				return changes, err
			}
			if pg.Next == "" {
				break
			}
			q.Cursor = pg.Next
		}
	}
	return changes, nil
}

func (s *SegmentSet) validName() error {
	if s.name == "" || strings.Contains(s.name, sep) || strings.Contains(s.name, "/") {
		return fmt.Errorf("%w: segment set name %q", ErrInvalid, s.name)
	}
	return nil
}

// refreshIn is Refresh in tx.
func (s *SegmentSet) refreshIn(ctx context.Context, tx storage.Tx, contact string) ([]loyalty.Change, error) {
	id := s.name + "/" + contact
	var changes []loyalty.Change
	var now []string
	if _, err := tx.Get(ctx, contactsCollection, contact); err == nil {
		m, err := baseMember(ctx, tx, contact, s.currency)
		if err != nil {
			return nil, err
		}
		if s.enrich != nil {
			if err := s.enrich(ctx, &m); err != nil {
				return nil, err
			}
		}
		if now, err = s.segments.Of(m); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	rec, err := tx.Get(ctx, segmentMembersCollection, id)
	var was segmentMemberRec
	switch {
	case err == nil:
		if err := json.Unmarshal(rec.Body, &was); err != nil {
			return nil, fmt.Errorf("crm: segment membership %s: %w", id, err)
		}
	case !errors.Is(err, storage.ErrNotFound):
		return nil, err
	}
	in := make([]string, len(now))
	for i, g := range now {
		in[i] = s.name + sep + g
	}
	slices.Sort(in)
	stamp := s.t.e.clock.Now().UTC()
	for _, k := range in {
		if !slices.Contains(was.In, k) {
			changes = append(changes, loyalty.Change{Segment: strings.TrimPrefix(k, s.name+sep), Member: contact, Entered: true})
		}
	}
	for _, k := range was.In {
		if !slices.Contains(in, k) {
			changes = append(changes, loyalty.Change{Segment: strings.TrimPrefix(k, s.name+sep), Member: contact})
		}
	}
	if len(changes) == 0 {
		return nil, nil
	}
	events := make([]storage.Event, 0, len(changes))
	for _, c := range changes {
		body, err := json.Marshal(segmentChange{Set: s.name, Segment: c.Segment, Contact: contact})
		if err != nil {
			return nil, err
		}
		typ := "segment.left"
		if c.Entered {
			typ = "segment.entered"
		}
		events = append(events, storage.Event{Type: typ, Collection: segmentMembersCollection, RecordID: id, Time: stamp, Body: body})
	}
	body, err := json.Marshal(segmentMemberRec{Contact: contact, In: in})
	if err != nil {
		return nil, err
	}
	if _, err := tx.Put(ctx, segmentMembersCollection, storage.Record{ID: id, Version: rec.Version, Body: body}); err != nil {
		return nil, err
	}
	return changes, tx.Append(ctx, events...)
}

// Members returns the contacts recorded in a segment, in ID order.
func (s *SegmentSet) Members(ctx context.Context, segment string) ([]string, error) {
	var out []string
	err := s.t.view(ctx, func(tx storage.ReadTx) error {
		q := storage.Query{Index: "segment", Equal: s.name + sep + segment, KeysOnly: true, Limit: storage.MaxScanLimit}
		return scanKeys(ctx, tx, segmentMembersCollection, q, func(_, id string) error {
			out = append(out, strings.TrimPrefix(id, s.name+"/"))
			return nil
		})
	})
	return out, err
}

// WatchSegments keeps a segment set up to date in every tenant: each
// contact.* event, and each order.placed for a customer, refreshes that
// contact's memberships (SegmentSet.Refresh), so segment.entered and
// segment.left events follow every change. name names the subscription
// and the set. Compile the segments with the engine's clock
// (Options.Clock) so that daysSince and the like agree with it; a
// time-based segment (no order for 90 days) changes only when the
// contact is refreshed: by an event, by Refresh, or by the daily sweep,
// SegmentSet.RefreshAll. enrich, if
// not nil, completes each member (SegmentSet.WithMember).
func (e *Engine) WatchSegments(name string, s *loyalty.Segments, currency string, enrich MemberFunc) error {
	return e.Subscribe(Subscription{Name: name, Events: []string{"contact.*", "order.placed"}, Handler: func(ctx context.Context, ev Event) error {
		t := e.Tenant(ev.Tenant)
		contact := ev.ID
		if ev.Type == "order.placed" {
			o, err := t.Orders().Get(ctx, ev.ID)
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if contact = o.ContactID; contact == "" {
				return nil
			}
		}
		set := t.SegmentSet(name, s, currency).WithMember(enrich)
		if err := set.validName(); err != nil {
			return err
		}
		if err := storage.ValidateID("segment membership", name+"/"+contact); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		// The segment events follow from ev: an automation's change
		// that moves a contact into a segment is a step of its chain.
		_, err := set.refresh(ctx, contact, ev)
		return err
	}})
}
