package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/storage"
)

// alarmRec is when a schedule, date or inactivity trigger is next due:
// one per schedule, and one per automation and record for dates and
// inactivity. Alarms are fired by CheckTimers.
type alarmRec struct {
	Automation string `json:"automation"`
	Kind       string `json:"kind"` // schedule, date, inactivity
	Collection string `json:"collection,omitempty"`
	RecordID   string `json:"record_id,omitempty"`
	// At is zero for a date alarm that is spent: its last occurrence
	// ran (Done) and no other is due; it is kept so that the date does
	// not run again.
	At time.Time `json:"at,omitzero"`
	// Key names the occurrence (a date's day, the end of a quiet
	// spell); runs are keyed by it.
	Key string `json:"key,omitempty"`
	// Done is the Key of the last date occurrence that ran.
	Done string `json:"done,omitempty"`

	id      string
	version uint64
}

func alarmID(automationName, collection, id string) string {
	return noticeID("alarm", automationName, collection, id)
}

func getAlarm(ctx context.Context, tx storage.ReadTx, id string) (*alarmRec, error) {
	rec, err := tx.Get(ctx, automationAlarmsCollection, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a alarmRec
	if err := json.Unmarshal(rec.Body, &a); err != nil {
		return nil, fmt.Errorf("automation alarm %s: %w", id, err)
	}
	a.id, a.version = id, rec.Version
	return &a, nil
}

func putAlarm(ctx context.Context, tx storage.Tx, a *alarmRec) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	rec, err := tx.Put(ctx, automationAlarmsCollection, storage.Record{ID: a.id, Version: a.version, Body: body})
	if err != nil {
		return err
	}
	a.version = rec.Version
	return nil
}

func deleteAlarm(ctx context.Context, tx storage.Tx, id string) error {
	err := tx.Delete(ctx, automationAlarmsCollection, id, 0)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// lookup reads a field ("ends_on", "custom.birthday") of a record.
func lookup(body map[string]any, field string) any {
	head, rest, nested := strings.Cut(field, ".")
	v := body[head]
	if !nested {
		return v
	}
	m, _ := v.(map[string]any)
	return m[rest]
}

// setDateAlarm sets the alarm of a date automation for one record to the
// next occurrence of its date, or removes it when none is due.
func (t *Tenant) setDateAlarm(ctx context.Context, tx storage.Tx, a *automation.Automation, collection, id string,
	sub *subject, now time.Time, keep map[string]string) error {
	aid := alarmID(a.Name, collection, id)
	cur, err := getAlarm(ctx, tx, aid)
	if err != nil {
		return err
	}
	done := ""
	if cur != nil {
		done = cur.Done
	} else if keep != nil {
		done = keep[aid]
	}
	var date time.Time
	ok := sub != nil && sub.str("archived_at") == ""
	if ok {
		date, ok = automation.ParseDate(lookup(sub.body, a.On.Date.Field), t.Location())
	}
	var occ automation.Occurrence
	if ok {
		var doneDay time.Time
		if done != "" {
			doneDay, _ = time.ParseInLocation(time.DateOnly, done, t.Location())
		}
		if cur != nil && !cur.At.IsZero() && !cur.At.After(now) {
			// The alarm is due and not fired yet: a change to the record
			// (its title, say) must not skip the occurrence. It stays
			// unless the date moved.
			if o, ok := a.On.Date.Due(date, doneDay, cur.At.Add(-time.Nanosecond), t.Location()); ok && o.Date.Format(time.DateOnly) == cur.Key {
				return nil
			}
		}
		occ, ok = a.On.Date.Due(date, doneDay, now, t.Location())
	}
	if !ok {
		switch {
		case cur != nil && done != "" && sub != nil:
			if cur.At.IsZero() && cur.Key == "" {
				return nil
			}
			spent := &alarmRec{Automation: a.Name, Kind: "date", Collection: collection, RecordID: id, Done: done, id: aid, version: cur.version}
			return putAlarm(ctx, tx, spent)
		case cur != nil:
			return deleteAlarm(ctx, tx, aid)
		}
		return nil
	}
	key := occ.Date.Format(time.DateOnly)
	if cur != nil && cur.At.Equal(occ.At) && cur.Key == key {
		return nil
	}
	next := &alarmRec{Automation: a.Name, Kind: "date", Collection: collection, RecordID: id, At: occ.At.UTC(), Key: key, Done: done, id: aid}
	if cur != nil {
		next.version = cur.version
	}
	return putAlarm(ctx, tx, next)
}

// setQuietAlarm sets the inactivity alarm of a contact to after past the
// interaction at last, unless it is set later already.
func (t *Tenant) setQuietAlarm(ctx context.Context, tx storage.Tx, a *automation.Automation, contact string, last, now time.Time) error {
	aid := alarmID(a.Name, contactsCollection, contact)
	cur, err := getAlarm(ctx, tx, aid)
	if err != nil {
		return err
	}
	end := last.Add(time.Duration(a.On.Inactivity.After)).UTC()
	key := end.Format(sortableTimeLayout)
	if cur != nil && cur.Key >= key {
		return nil
	}
	next := &alarmRec{Automation: a.Name, Kind: "inactivity", Collection: contactsCollection, RecordID: contact,
		At: end, Key: key, id: aid}
	if end.Before(now) {
		next.At = now.UTC() // already quiet that long: due now
	}
	if cur != nil {
		next.version = cur.version
	}
	return putAlarm(ctx, tx, next)
}

// alarmsFor keeps the date and inactivity alarms of the record an event
// is about up to date.
func (t *Tenant) alarmsFor(ctx context.Context, tx storage.Tx, cs *compiledSet, se storage.Event, collection, id string, now time.Time) error {
	var sub *subject
	loaded := false
	for i := range cs.set.Automations {
		a := &cs.set.Automations[i]
		if a.Disabled {
			continue
		}
		switch {
		case a.On.Date != nil && entityCollections[a.On.Date.Of] == collection && id != "" && collection == se.Collection:
			if !loaded {
				var err error
				if sub, err = loadSubject(ctx, tx, collection, id); err != nil {
					return err
				}
				loaded = true
			}
			if err := t.setDateAlarm(ctx, tx, a, collection, id, sub, now, nil); err != nil {
				return err
			}
		case a.On.Inactivity != nil:
			switch {
			case se.Type == "contact.created":
				if err := t.setQuietAlarm(ctx, tx, a, se.RecordID, se.Time, now); err != nil {
					return err
				}
			case se.Type == "contact.deleted" || se.Type == "contact.archived" || se.Type == "contact.merged" || se.Type == "contact.erased":
				if err := deleteAlarm(ctx, tx, alarmID(a.Name, contactsCollection, se.RecordID)); err != nil {
					return err
				}
			case se.Type == "interaction.created":
				_, body, _ := eventInfo(se)
				var in Interaction
				if err := json.Unmarshal(body.Data, &in); err != nil || in.ContactID == "" {
					continue
				}
				at := in.OccurredAt
				if at.IsZero() {
					at = in.CreatedAt
				}
				if err := t.setQuietAlarm(ctx, tx, a, in.ContactID, at, now); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// rebuildAlarms replaces the tenant's alarms with those of cs, from the
// records as they are; dates that already ran stay done.
func (t *Tenant) rebuildAlarms(ctx context.Context, tx storage.Tx, cs *compiledSet, now time.Time) error {
	keep := map[string]string{}
	var due []alarmRec // due and not fired: they stay due
	err := scanAll(ctx, tx, automationAlarmsCollection, storage.Query{}, func(rec storage.Record) error {
		var a alarmRec
		if err := json.Unmarshal(rec.Body, &a); err != nil {
			return nil
		}
		if a.Done != "" {
			keep[rec.ID] = a.Done
		}
		if !a.At.IsZero() && !a.At.After(now) {
			a.id = rec.ID
			due = append(due, a)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := deleteAll(ctx, tx, automationAlarmsCollection); err != nil {
		return err
	}
	var lastSeen map[string]time.Time // contact → last interaction
	for i := range cs.set.Automations {
		a := &cs.set.Automations[i]
		if a.Disabled {
			continue
		}
		switch {
		case a.On.Schedule != "":
			al := &alarmRec{Automation: a.Name, Kind: "schedule", At: a.On.Next(now, t.Location()).UTC(), id: alarmID(a.Name, "", "")}
			if err := putAlarm(ctx, tx, al); err != nil {
				return err
			}
		case a.On.Date != nil:
			coll := entityCollections[a.On.Date.Of]
			err := scanAll(ctx, tx, coll, storage.Query{}, func(rec storage.Record) error {
				sub, err := subjectFrom(coll, rec.ID, rec.Body, rec.Version)
				if err != nil {
					return err
				}
				return t.setDateAlarm(ctx, tx, a, coll, rec.ID, sub, now, keep)
			})
			if err != nil {
				return err
			}
		case a.On.Inactivity != nil:
			if lastSeen == nil {
				lastSeen = map[string]time.Time{}
				err := scanAll(ctx, tx, interactionsCollection, storage.Query{}, func(rec storage.Record) error {
					var in Interaction
					if err := json.Unmarshal(rec.Body, &in); err != nil || in.ContactID == "" {
						return err
					}
					at := in.OccurredAt
					if at.IsZero() {
						at = in.CreatedAt
					}
					if at.After(lastSeen[in.ContactID]) {
						lastSeen[in.ContactID] = at
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
			err := scanAll(ctx, tx, contactsCollection, storage.Query{}, func(rec storage.Record) error {
				var c Contact
				if err := json.Unmarshal(rec.Body, &c); err != nil {
					return err
				}
				if !c.ArchivedAt.IsZero() || c.MergedInto != "" || !c.ErasedAt.IsZero() {
					return nil
				}
				last := c.CreatedAt
				if l := lastSeen[c.ID]; l.After(last) {
					last = l
				}
				return t.setQuietAlarm(ctx, tx, a, c.ID, last, now)
			})
			if err != nil {
				return err
			}
		}
	}
	// What was due when the set was saved again fires still (the engine
	// may have been down): the alarms of automations that are still
	// there, with the same kind of trigger, keep their due occurrence.
	for _, old := range due {
		a := cs.set.Get(old.Automation)
		if a == nil || a.Disabled || old.Kind != triggerKind(a) {
			continue
		}
		cur, err := getAlarm(ctx, tx, old.id)
		if err != nil {
			return err
		}
		if cur == nil && old.Kind != "schedule" {
			continue // the record no longer qualifies
		}
		if cur != nil {
			old.version = cur.version
		}
		if err := putAlarm(ctx, tx, &old); err != nil {
			return err
		}
	}
	return nil
}

// triggerKind names the kind of alarm an automation's trigger keeps.
func triggerKind(a *automation.Automation) string {
	switch {
	case a.On.Schedule != "":
		return "schedule"
	case a.On.Date != nil:
		return "date"
	case a.On.Inactivity != nil:
		return "inactivity"
	}
	return ""
}

// alarmPage is how many due alarms CheckTimers fires per transaction.
const alarmPage = 200

// fireAlarms fires the tenant's alarms that are due at the clock's now
// and returns how many runs they started. A page of alarms is fired in
// one transaction; when an action fails there, each alarm of the page
// is fired run by run instead (see fireIsolated).
func (t *Tenant) fireAlarms(ctx context.Context) (int, error) {
	total := 0
	for {
		now := t.Now()
		var cs *compiledSet
		var due []*alarmRec
		err := t.view(ctx, func(tx storage.ReadTx) error {
			var err error
			if cs, err = t.compiledSet(ctx, tx); err != nil || cs == nil {
				return err
			}
			pg, err := tx.Scan(ctx, automationAlarmsCollection, storage.Query{Index: "at", End: now.Add(time.Nanosecond).Format(sortableTimeLayout), Limit: alarmPage})
			if err != nil {
				return err
			}
			for _, rec := range pg.Records {
				var a alarmRec
				if err := json.Unmarshal(rec.Body, &a); err != nil {
					return fmt.Errorf("automation alarm %s: %w", rec.ID, err)
				}
				a.id, a.version = rec.ID, rec.Version
				due = append(due, &a)
			}
			return nil
		})
		if err != nil || cs == nil || len(due) == 0 {
			return total, err
		}
		t.e.resolveKinds(ctx, cs)
		started := 0
		queued := false
		err = t.update(ctx, func(tx storage.Tx) error {
			started, queued = 0, false
			m := all
			m.started = &started
			for _, al := range due {
				q, err := t.fireAlarm(ctx, tx, cs, al, now, m)
				if err != nil {
					return err
				}
				queued = queued || q
			}
			return nil
		})
		var ae *actionError
		if errors.As(err, &ae) {
			started, queued = 0, false
			for _, al := range due {
				n, q, err := t.fireIsolated(ctx, cs, al, now)
				if err != nil {
					return total, err
				}
				started, queued = started+n, queued || q
			}
		} else if err != nil {
			return total, err
		}
		if queued {
			t.e.wakeAutomations()
		}
		total += started
	}
}

// alarmPlan is one run an alarm fires: for a record, or none.
type alarmPlan struct {
	id, collection, recordID string
}

// alarmPlans lists the runs a due alarm fires, and the index of its
// automation (-1: the automation is gone or disabled).
func (t *Tenant) alarmPlans(ctx context.Context, tx storage.ReadTx, cs *compiledSet, al *alarmRec) (int, []alarmPlan, error) {
	ai := slices.IndexFunc(cs.set.Automations, func(a automation.Automation) bool { return a.Name == al.Automation })
	if ai < 0 || cs.set.Automations[ai].Disabled {
		return -1, nil, nil
	}
	a := &cs.set.Automations[ai]
	var plans []alarmPlan
	switch al.Kind {
	case "schedule":
		if a.On.For == "" {
			return ai, []alarmPlan{{id: noticeID("schedule", a.Name, dueString(al.At))}}, nil
		}
		coll := entityCollections[a.On.For]
		err := scanAll(ctx, tx, coll, storage.Query{}, func(rec storage.Record) error {
			if gjsonString(rec.Body, "archived_at") != "" {
				return nil
			}
			plans = append(plans, alarmPlan{id: noticeID("schedule", a.Name, dueString(al.At), rec.ID), collection: coll, recordID: rec.ID})
			return nil
		})
		return ai, plans, err
	case "inactivity":
		// The runner may not have seen the contact's latest interaction
		// yet: a contact who talked since is not quiet.
		end, err := quietEnd(ctx, tx, a, al.RecordID)
		if err != nil || end > al.Key {
			return ai, nil, err
		}
	}
	return ai, []alarmPlan{{id: noticeID(al.Kind, a.Name, al.RecordID, al.Key), collection: al.Collection, recordID: al.RecordID}}, nil
}

// quietEnd is when a contact's quiet spell ends by its interactions as
// stored (a sortable time; "" with none).
func quietEnd(ctx context.Context, tx storage.ReadTx, a *automation.Automation, contact string) (string, error) {
	var last time.Time
	err := scanAll(ctx, tx, interactionsCollection, storage.Query{Index: "contact", Equal: contact}, func(rec storage.Record) error {
		var in Interaction
		if err := json.Unmarshal(rec.Body, &in); err != nil {
			return err
		}
		at := in.OccurredAt
		if at.IsZero() {
			at = in.CreatedAt
		}
		if at.After(last) {
			last = at
		}
		return nil
	})
	if err != nil || last.IsZero() {
		return "", err
	}
	return last.Add(time.Duration(a.On.Inactivity.After)).UTC().Format(sortableTimeLayout), nil
}

// fireAlarm fires one due alarm in tx: its runs, then the alarm moved on.
// It returns whether a run waits for the runner.
func (t *Tenant) fireAlarm(ctx context.Context, tx storage.Tx, cs *compiledSet, al *alarmRec, now time.Time, m mode) (bool, error) {
	cur, err := getAlarm(ctx, tx, al.id)
	if err != nil || cur == nil || cur.version != al.version || cur.At.IsZero() || cur.At.After(now) {
		return false, err // fired by another engine, or changed
	}
	ai, plans, err := t.alarmPlans(ctx, tx, cs, al)
	if err != nil {
		return false, err
	}
	if ai < 0 {
		return false, deleteAlarm(ctx, tx, al.id)
	}
	queued := false
	for _, p := range plans {
		q, err := t.runAlarmPlan(ctx, tx, cs, ai, al, p, now, m)
		if err != nil {
			return false, err
		}
		queued = queued || q
	}
	return queued, t.advanceAlarm(ctx, tx, cs, ai, al)
}

// fireIsolated fires one due alarm run by run, each in a transaction of
// its own, recording a run whose action fails as failing; the alarm moves
// on only after all its runs are stored, so none is lost (a run stored
// before a crash is not repeated: its ID names the occurrence). The
// records it runs for are listed once, before the first run.
func (t *Tenant) fireIsolated(ctx context.Context, cs *compiledSet, al *alarmRec, now time.Time) (int, bool, error) {
	var ai int
	var plans []alarmPlan
	err := t.view(ctx, func(tx storage.ReadTx) error {
		cur, err := getAlarm(ctx, tx, al.id)
		if err != nil || cur == nil || cur.version != al.version {
			ai = -2
			return err
		}
		ai, plans, err = t.alarmPlans(ctx, tx, cs, al)
		return err
	})
	if err != nil || ai == -2 {
		return 0, false, err
	}
	started, queued := 0, false
	for _, p := range plans {
		n := 0
		err := t.update(ctx, func(tx storage.Tx) error {
			n = 0
			q, err := t.runAlarmPlan(ctx, tx, cs, ai, al, p, now, mode{run: -1, started: &n})
			queued = queued || q
			return err
		})
		var ae *actionError
		if errors.As(err, &ae) {
			err = t.update(ctx, func(tx storage.Tx) error {
				_, err := t.runAlarmPlan(ctx, tx, cs, ai, al, p, now, mode{run: -1, fail: ae})
				return err
			})
		}
		if err != nil {
			return started, queued, err
		}
		started += n
	}
	err = t.update(ctx, func(tx storage.Tx) error {
		cur, err := getAlarm(ctx, tx, al.id)
		if err != nil || cur == nil || cur.version != al.version {
			return err
		}
		if ai < 0 {
			return deleteAlarm(ctx, tx, al.id)
		}
		return t.advanceAlarm(ctx, tx, cs, ai, al)
	})
	return started, queued, err
}

// runAlarmPlan starts one run of an alarm (see mode; run is ignored).
func (t *Tenant) runAlarmPlan(ctx context.Context, tx storage.Tx, cs *compiledSet, ai int, al *alarmRec, p alarmPlan, now time.Time, m mode) (bool, error) {
	sub, err := loadSubject(ctx, tx, p.collection, p.recordID)
	if err != nil || sub == nil {
		return false, err // the record is gone
	}
	run := AutomationRun{ID: p.id, Automation: cs.set.Automations[ai].Name, Trigger: al.Kind,
		Event: automation.EventInfo{Type: al.Kind, Time: al.At}, CreatedAt: now}
	var record map[string]any
	if p.recordID != "" {
		run.Collection, run.RecordID, record = p.collection, p.recordID, sub.env()
	}
	return t.start(ctx, tx, cs, ai, &run, sub, record, m)
}

// advanceAlarm moves a fired alarm on: a schedule to its next time, a
// date to its next occurrence (or spent); an inactivity alarm is done.
func (t *Tenant) advanceAlarm(ctx context.Context, tx storage.Tx, cs *compiledSet, ai int, al *alarmRec) error {
	a := &cs.set.Automations[ai]
	switch al.Kind {
	case "schedule":
		next := *al
		next.At = a.On.Next(al.At, t.Location()).UTC()
		return putAlarm(ctx, tx, &next)
	case "date":
		next := *al
		next.Done = al.Key
		if err := putAlarm(ctx, tx, &next); err != nil {
			return err
		}
		sub, err := loadSubject(ctx, tx, al.Collection, al.RecordID)
		if err != nil {
			return err
		}
		return t.setDateAlarm(ctx, tx, a, al.Collection, al.RecordID, sub, al.At.Add(time.Second), nil)
	default:
		if err := deleteAlarm(ctx, tx, al.id); err != nil {
			return err
		}
		// A contact who talked since gets the alarm of the new spell.
		end, err := quietEnd(ctx, tx, a, al.RecordID)
		if err != nil || end <= al.Key {
			return err
		}
		last, err := time.Parse(sortableTimeLayout, end)
		if err != nil {
			return err
		}
		return t.setQuietAlarm(ctx, tx, a, al.RecordID, last.Add(-time.Duration(a.On.Inactivity.After)), al.At)
	}
}
