package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	err := scanAll(ctx, tx, automationAlarmsCollection, storage.Query{}, func(rec storage.Record) error {
		var a alarmRec
		if err := json.Unmarshal(rec.Body, &a); err == nil && a.Done != "" {
			keep[rec.ID] = a.Done
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
	return nil
}

// alarmPage is how many due alarms CheckTimers fires per transaction.
const alarmPage = 200

// fireAlarms fires the tenant's alarms that are due at the clock's now
// and returns how many runs they started.
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
				_, q, err := t.fireAlarm(ctx, tx, cs, al, now, m)
				if err != nil {
					return err
				}
				queued = queued || q
			}
			return nil
		})
		var ae *actionError
		if errors.As(err, &ae) {
			started = 0
			for _, al := range due {
				err = t.isolate(ctx, func(tx storage.Tx, m mode) (int, bool, error) {
					n := 0
					m.started = &n
					plans, q, err := t.fireAlarm(ctx, tx, cs, al, now, m)
					if err == nil {
						started += n
					}
					return plans, q, err
				})
				if err != nil {
					return total, err
				}
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

// fireAlarm starts the runs of one due alarm (see mode) and moves the
// alarm on: a schedule to its next time, a date to its next occurrence;
// an inactivity alarm is done. It returns how many runs it planned.
func (t *Tenant) fireAlarm(ctx context.Context, tx storage.Tx, cs *compiledSet, al *alarmRec, now time.Time, m mode) (int, bool, error) {
	if m.run < 0 {
		cur, err := getAlarm(ctx, tx, al.id)
		if err != nil {
			return 0, false, err
		}
		if cur == nil || cur.version != al.version {
			return 0, false, nil // fired by another engine
		}
	}
	ai := -1
	for i := range cs.set.Automations {
		if cs.set.Automations[i].Name == al.Automation {
			ai = i
		}
	}
	if ai < 0 || cs.set.Automations[ai].Disabled {
		return 0, false, deleteAlarm(ctx, tx, al.id)
	}
	a := &cs.set.Automations[ai]
	type plan struct {
		id  string
		sub *subject
	}
	var plans []plan
	switch al.Kind {
	case "schedule":
		if a.On.For == "" {
			plans = append(plans, plan{id: noticeID("schedule", a.Name, dueString(al.At))})
			break
		}
		coll := entityCollections[a.On.For]
		err := scanAll(ctx, tx, coll, storage.Query{}, func(rec storage.Record) error {
			sub, err := subjectFrom(coll, rec.ID, rec.Body, rec.Version)
			if err != nil {
				return err
			}
			if sub.str("archived_at") != "" {
				return nil
			}
			plans = append(plans, plan{id: noticeID("schedule", a.Name, dueString(al.At), rec.ID), sub: sub})
			return nil
		})
		if err != nil {
			return 0, false, err
		}
	default:
		sub, err := loadSubject(ctx, tx, al.Collection, al.RecordID)
		if err != nil {
			return 0, false, err
		}
		if sub != nil {
			plans = append(plans, plan{id: noticeID(al.Kind, a.Name, al.RecordID, al.Key), sub: sub})
		}
	}
	queued := false
	if m.run != -2 {
		for n, p := range plans {
			if m.run >= 0 && n != m.run {
				continue
			}
			run := AutomationRun{ID: p.id, Automation: a.Name, Trigger: al.Kind, Event: automation.EventInfo{Type: al.Kind, Time: al.At},
				CreatedAt: now}
			var record map[string]any
			if p.sub != nil {
				run.Collection, run.RecordID, record = p.sub.collection, p.sub.id, p.sub.env()
			}
			q, err := t.start(ctx, tx, cs, ai, &run, p.sub, record, m)
			if err != nil {
				return len(plans), false, err
			}
			queued = queued || q
		}
	}
	if m.run >= 0 {
		return len(plans), queued, nil
	}
	// Move the alarm on.
	switch al.Kind {
	case "schedule":
		next := *al
		next.At = a.On.Next(al.At, t.Location()).UTC()
		if err := putAlarm(ctx, tx, &next); err != nil {
			return len(plans), queued, err
		}
	case "date":
		next := *al
		next.Done = al.Key
		if err := putAlarm(ctx, tx, &next); err != nil {
			return len(plans), queued, err
		}
		var sub *subject
		if len(plans) > 0 {
			sub = plans[0].sub
		}
		if err := t.setDateAlarm(ctx, tx, a, al.Collection, al.RecordID, sub, al.At.Add(time.Second), nil); err != nil {
			return len(plans), queued, err
		}
	default:
		if err := deleteAlarm(ctx, tx, al.id); err != nil {
			return len(plans), queued, err
		}
	}
	return len(plans), queued, nil
}
