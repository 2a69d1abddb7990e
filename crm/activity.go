package crm

import (
	"context"
	"fmt"
	"time"

	"github.com/rapportcrm/rapport/storage"
)

// Links tie an activity or an interaction to the records whose timelines
// show it. Each link must name a record of the same tenant.
type Links struct {
	ContactID string `json:"contact_id,omitempty"`
	AccountID string `json:"account_id,omitempty"`
	LeadID    string `json:"lead_id,omitempty"`
	DealID    string `json:"deal_id,omitempty"`
	CaseID    string `json:"case_id,omitempty"`
}

// linked lists the records l links to, as collection and ID.
func (l *Links) linked() [][2]string {
	var out [][2]string
	for _, x := range []struct{ coll, id string }{
		{contactsCollection, l.ContactID}, {accountsCollection, l.AccountID}, {leadsCollection, l.LeadID},
		{dealsCollection, l.DealID}, {casesCollection, l.CaseID},
	} {
		if x.id != "" {
			out = append(out, [2]string{x.coll, x.id})
		}
	}
	return out
}

func checkLinks(ctx context.Context, tx storage.ReadTx, p *problems, l *Links, was Links) error {
	for _, x := range []struct {
		field, coll, what string
		id                *string
		was               string
	}{
		{"contact_id", contactsCollection, "contact", &l.ContactID, was.ContactID},
		{"account_id", accountsCollection, "account", &l.AccountID, was.AccountID},
		{"lead_id", leadsCollection, "lead", &l.LeadID, was.LeadID},
		{"deal_id", dealsCollection, "deal", &l.DealID, was.DealID},
		{"case_id", casesCollection, "case", &l.CaseID, was.CaseID},
	} {
		if err := checkRef(ctx, tx, p, x.field, x.coll, x.what, x.id, x.was); err != nil {
			return err
		}
	}
	return nil
}

// linkIndexes index the links of activities and interactions.
func linkIndexes() []storage.Index {
	return []storage.Index{
		{Name: "contact", Field: "contact_id"},
		{Name: "account", Field: "account_id"},
		{Name: "lead", Field: "lead_id"},
		{Name: "deal", Field: "deal_id"},
		{Name: "case", Field: "case_id"},
	}
}

// ActivityType says what an activity is.
type ActivityType string

// Activity types.
const (
	Task    ActivityType = "task"
	Call    ActivityType = "call"
	Meeting ActivityType = "meeting"
	Email   ActivityType = "email"
)

// Activity is something a user is to do: a task, a call, a meeting or an
// email, with a due time and an optional reminder. It is open until
// Activities.Complete marks it done; an open activity past its due time is
// overdue.
//
// Indexes for ListOptions.By: "owner", "tag", "assignee", "contact",
// "account", "lead", "deal", "case".
//
// Events: activity.created, activity.updated, activity.deleted,
// activity.completed; Tenant.CheckTimers emits activity.due at the
// reminder time and activity.overdue when the due time passes with the
// activity still open. Creating and completing an activity add entries to
// the timelines of the linked records.
type Activity struct {
	Meta
	// Type and Subject are required.
	Type    ActivityType `json:"type"`
	Subject string       `json:"subject"`
	Notes   string       `json:"notes,omitempty"`
	// Assignee is the user who is to do it; it defaults to Owner.
	Assignee string `json:"assignee,omitempty"`
	// DueAt is when it is due; RemindAt, if set, when to remind the
	// assignee, no later than DueAt. Changing either re-arms its event.
	DueAt    time.Time `json:"due_at,omitzero"`
	RemindAt time.Time `json:"remind_at,omitzero"`
	// DoneAt is set by Complete.
	DoneAt time.Time `json:"done_at,omitzero"`
	Links
}

// Open reports whether the activity is not done yet.
func (a *Activity) Open() bool { return a.DoneAt.IsZero() }

// Overdue reports whether the activity is open and past its due time at now.
func (a *Activity) Overdue(now time.Time) bool {
	return a.Open() && !a.DueAt.IsZero() && now.After(a.DueAt)
}

const activitiesCollection = "activities"

// openTime indexes a time field of open activities only.
func openTime(field string) func([]byte) ([]string, error) {
	return func(body []byte) ([]string, error) {
		if gjsonString(body, "done_at") != "" {
			return nil, nil
		}
		return sortableTime(field)(body)
	}
}

var activityKind = func() *kind[Activity] {
	ix := []storage.Index{
		{Name: "owner", Field: "owner"},
		{Name: "tag", Field: "tags"},
		{Name: "assignee", Field: "assignee"},
		// open_due and open_remind drive CheckTimers.
		{Name: "open_due", Extract: openTime("due_at")},
		{Name: "open_remind", Extract: openTime("remind_at")},
		// assignee_due: assignee ‖ sep ‖ due, open activities only.
		{Name: "assignee_due", Extract: func(body []byte) ([]string, error) {
			a := gjsonString(body, "assignee")
			due, err := openTime("due_at")(body)
			if a == "" || err != nil || len(due) == 0 {
				return nil, err
			}
			return []string{a + sep + due[0]}, nil
		}},
	}
	k := newKind[Activity](activityName, storage.Collection{Name: activitiesCollection, Indexes: append(ix, linkIndexes()...)}, checkActivity, nil)
	k.checkUpdate = func(cur, next *Activity, p *problems) {
		if !cur.DoneAt.Equal(next.DoneAt) {
			p.add("done_at", "is set by Complete")
		}
		if cur.Links != next.Links {
			p.add("links", "an activity's links are fixed: they place it on timelines; delete it and create another")
		}
	}
	k.afterCreate = func(ctx context.Context, tx storage.Tx, a *Activity) error {
		summary := string(a.Type) + ": " + a.Subject
		if !a.DueAt.IsZero() {
			summary += " (due " + a.DueAt.Format(time.RFC3339) + ")"
		}
		return appendLinked(ctx, tx, &a.Links, TimelineEntry{At: a.CreatedAt, Type: TimelineActivity,
			Summary: summary, RefCollection: activitiesCollection, RefID: a.ID})
	}
	return k
}()

const activityName = "activity"

func checkActivity(ctx context.Context, tx storage.ReadTx, a, prev *Activity, p *problems) error {
	var was Activity
	if prev != nil {
		was = *prev
	}
	switch a.Type {
	case Task, Call, Meeting, Email:
	case "":
		p.add("type", "is required")
	default:
		p.add("type", "%q: want task, call, meeting or email", a.Type)
	}
	checkText(p, "subject", &a.Subject)
	if a.Subject == "" {
		p.add("subject", "is required")
	}
	checkLongText(p, "notes", a.Notes)
	if a.Assignee == "" {
		a.Assignee = a.Owner
	}
	if a.Assignee != "" {
		if err := storage.ValidateID("assignee", a.Assignee); err != nil {
			p.add("assignee", "%v", err)
		}
	}
	a.DueAt, a.RemindAt = a.DueAt.UTC(), a.RemindAt.UTC()
	checkTime(p, "due_at", a.DueAt)
	checkTime(p, "remind_at", a.RemindAt)
	switch {
	case !a.RemindAt.IsZero() && a.DueAt.IsZero():
		p.add("remind_at", "a reminder needs a due time")
	case !a.RemindAt.IsZero() && a.RemindAt.After(a.DueAt):
		p.add("remind_at", "%s is after due_at %s", a.RemindAt.Format(time.RFC3339), a.DueAt.Format(time.RFC3339))
	}
	return checkLinks(ctx, tx, p, &a.Links, was.Links)
}

// appendLinked adds a copy of e to the timeline of every record l links to.
func appendLinked(ctx context.Context, tx storage.Tx, l *Links, e TimelineEntry) error {
	for _, x := range l.linked() {
		entry := e
		entry.Collection, entry.RecordID = x[0], x[1]
		if err := appendTimeline(ctx, tx, &entry); err != nil {
			return err
		}
	}
	return nil
}

// Activities are the tenant's activities: the generic record operations
// plus completing them and listing what is due.
type Activities struct {
	*Records[Activity]
}

// Activities returns the tenant's activities.
func (t *Tenant) Activities() *Activities {
	return &Activities{Records: &Records[Activity]{t: t, k: activityKind}}
}

// Activities returns the activities of the default tenant.
func (e *Engine) Activities() *Activities { return e.Default().Activities() }

// Complete marks an open activity done at the engine clock's now, emits
// activity.completed and adds an entry to the linked records' timelines.
// version is the version the caller read (0: any). Completing a done
// activity fails with ErrInvalid.
func (a *Activities) Complete(ctx context.Context, id string, version uint64) (Activity, error) {
	var out Activity
	err := a.update(ctx, func(tx storage.Tx) error {
		cur, err := a.get(ctx, tx, id)
		if err != nil {
			return err
		}
		if version != 0 && version != cur.Version {
			return fmt.Errorf("%w: activity %s is at version %d, the call was based on version %d", ErrConflict, id, cur.Version, version)
		}
		if !cur.Open() {
			return fmt.Errorf("%w: activity %s was done at %s", ErrInvalid, id, cur.DoneAt.Format(time.RFC3339))
		}
		now := a.now()
		next := cur
		next.DoneAt, next.UpdatedAt, next.Version = now, now, cur.Version+1
		body, err := a.put(ctx, tx, &next, cur.Version)
		if err != nil {
			return err
		}
		err = appendLinked(ctx, tx, &next.Links, TimelineEntry{At: now, Type: TimelineActivityDone,
			Summary: string(next.Type) + " done: " + next.Subject, RefCollection: activitiesCollection, RefID: id})
		if err != nil {
			return err
		}
		out = next
		return a.appendEvent(ctx, tx, "completed", id, body, []string{"done_at"})
	})
	return out, err
}

// DueOptions select open activities by due time.
type DueOptions struct {
	// Until is the latest due time listed; activities due earlier,
	// including overdue ones, come first.
	Until time.Time
	// Limit is the page size; 0 means storage.DefaultScanLimit.
	Limit int
	// Cursor continues after the previous page.
	Cursor string
}

// Due lists the assignee's open activities due at or before opts.Until,
// earliest first, through an index of open activities by assignee and due
// time.
func (a *Activities) Due(ctx context.Context, assignee string, opts DueOptions) (Page[Activity], error) {
	if err := storage.ValidateID("assignee", assignee); err != nil {
		return Page[Activity]{}, fmt.Errorf("crm: activity: %w", err)
	}
	until := opts.Until.UTC()
	if until.After(maxTime) {
		until = maxTime
	}
	q := storage.Query{Index: "assignee_due", Start: assignee + sep,
		End: assignee + sep + until.Add(time.Nanosecond).Format(sortableTimeLayout), Limit: opts.Limit, Cursor: opts.Cursor}
	return a.page(ctx, q)
}

// DueToday returns everything the assignee has to do by the end of today
// (in Options.Location, at the engine clock's now): open activities due
// today and overdue ones, earliest first.
func (a *Activities) DueToday(ctx context.Context, assignee string) ([]Activity, error) {
	now := a.t.e.clock.Now().In(a.t.e.opts.Location)
	y, m, d := now.Date()
	end := time.Date(y, m, d+1, 0, 0, 0, 0, a.t.e.opts.Location).Add(-time.Nanosecond)
	var out []Activity
	opts := DueOptions{Until: end, Limit: storage.MaxScanLimit}
	for {
		pg, err := a.Due(ctx, assignee, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, pg.Items...)
		if pg.Next == "" {
			return out, nil
		}
		opts.Cursor = pg.Next
	}
}

// checkTimers emits activity.due for every open activity whose reminder
// time has passed and activity.overdue for every open activity whose due
// time has passed, once per activity and time.
func (a *Activities) checkTimers(ctx context.Context) (due, overdue int, err error) {
	// A reminder is due at its time; an activity is overdue after it.
	now := a.now()
	if due, err = a.fire(ctx, "open_remind", "due", now.Add(time.Nanosecond), func(v *Activity) time.Time { return v.RemindAt }); err != nil {
		return due, 0, err
	}
	overdue, err = a.fire(ctx, "open_due", "overdue", now, func(v *Activity) time.Time { return v.DueAt })
	return due, overdue, err
}

// fire emits "activity.<what>" once for every open activity whose time in
// index is before end.
func (a *Activities) fire(ctx context.Context, index, what string, end time.Time, at func(*Activity) time.Time) (int, error) {
	return a.fireOnce(ctx, index, end, func(v *Activity) string {
		return noticeID(activitiesCollection, v.ID, what, dueString(at(v)))
	}, func(tx storage.Tx, rec storage.Record, v *Activity) error {
		return a.appendEvent(ctx, tx, what, v.ID, rec.Body, nil)
	})
}

// Timers counts the events one CheckTimers call emitted.
type Timers struct {
	// Breaches counts sla.breached events, over leads, deals, cases and
	// accounts.
	Breaches int
	// Reminders counts activity.due events; Overdue activity.overdue.
	Reminders, Overdue int
	// Automations counts the automation runs that schedules, dates and
	// inactivity started.
	Automations int
}

// CheckTimers emits the timed events that are due at the engine clock's
// now and were not emitted before: sla.breached for records past their
// stage's norm, activity.due at activities' reminder times,
// activity.overdue for open activities past their due time. Each fires
// once per record and due time, however often CheckTimers runs; call it on
// a schedule, every minute say, for every tenant.
func (t *Tenant) CheckTimers(ctx context.Context) (Timers, error) {
	var out Timers
	for _, check := range []func(context.Context) (int, error){
		t.Leads().CheckDeadlines, t.Deals().CheckDeadlines, t.Cases().CheckDeadlines, t.Accounts().CheckDeadlines,
	} {
		n, err := check(ctx)
		out.Breaches += n
		if err != nil {
			return out, err
		}
	}
	var err error
	if out.Reminders, out.Overdue, err = t.Activities().checkTimers(ctx); err != nil {
		return out, err
	}
	if out.Automations, err = t.fireAlarms(ctx); err != nil {
		return out, fmt.Errorf("crm: automation alarms: %w", err)
	}
	// Runs that wait or retry are the runner's: tell it to look.
	t.e.autoTenants.Store(t.id, true)
	t.e.wakeAutomations()
	return out, nil
}

// CheckTimers runs Tenant.CheckTimers for the default tenant.
func (e *Engine) CheckTimers(ctx context.Context) (Timers, error) {
	return e.Default().CheckTimers(ctx)
}
