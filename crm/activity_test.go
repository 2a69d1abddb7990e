package crm_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/memory"
)

// TestActivityRemindersFireOnce walks the clock in 15-minute steps across
// two days and checks that each reminder and overdue notice fires once, at
// the first check after its time, and never for a done activity.
func TestActivityRemindersFireOnce(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	acts := env.engine.Activities()
	start := env.clock.Now() // Sunday 1 March 2026, 09:00 UTC
	call, err := acts.Create(ctx, crm.Activity{Type: crm.Call, Subject: "Call Hank", Meta: crm.Meta{Owner: "ann"},
		DueAt: start.Add(3 * time.Hour), RemindAt: start.Add(2 * time.Hour)})
	require.NoError(t, err)
	assert.Equal(t, "ann", call.Assignee, "the assignee defaults to the owner")
	done, err := acts.Create(ctx, crm.Activity{Type: crm.Task, Subject: "Send deck", Assignee: "ann",
		DueAt: start.Add(5 * time.Hour), RemindAt: start.Add(4 * time.Hour)})
	require.NoError(t, err)
	moved, err := acts.Create(ctx, crm.Activity{Type: crm.Meeting, Subject: "Demo", Assignee: "bob", DueAt: start.Add(6 * time.Hour)})
	require.NoError(t, err)

	type fired struct {
		typ, id string
		at      time.Time
	}
	var got []fired
	seen := uint64(0)
	for step := 1; step <= 2*24*4; step++ {
		env.clock.Advance(15 * time.Minute)
		now := env.clock.Now()
		switch now {
		case start.Add(4*time.Hour + 30*time.Minute): // reminded, then done before it is due
			_, err := acts.Complete(ctx, done.ID, 0)
			require.NoError(t, err)
		case start.Add(5 * time.Hour): // the demo is postponed by a day
			moved.DueAt = moved.DueAt.Add(24 * time.Hour)
			moved, err = acts.Update(ctx, moved)
			require.NoError(t, err)
		}
		_, err := env.engine.CheckTimers(ctx)
		require.NoError(t, err)
		evs, err := env.store.ReadOutbox(ctx, "timers-test", 1000)
		require.NoError(t, err)
		for _, ev := range evs {
			if ev.Seq <= seen {
				continue
			}
			seen = ev.Seq
			if ev.Type == "activity.due" || ev.Type == "activity.overdue" {
				got = append(got, fired{ev.Type, ev.RecordID, ev.Time})
			}
		}
		if len(evs) > 0 {
			require.NoError(t, env.store.AckOutbox(ctx, "timers-test", evs[len(evs)-1].Seq))
		}
	}
	assert.Equal(t, []fired{
		{"activity.due", call.ID, start.Add(2 * time.Hour)},
		{"activity.overdue", call.ID, start.Add(3*time.Hour + 15*time.Minute)},
		{"activity.due", done.ID, start.Add(4 * time.Hour)},
		{"activity.overdue", moved.ID, start.Add(30*time.Hour + 15*time.Minute)},
	}, got)
}

func TestDueToday(t *testing.T) {
	st := memory.New()
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	clock := newClock()                          // Sunday 1 March 2026, 09:00 UTC
	clock.Advance(37*time.Hour + 30*time.Minute) // Monday 22:30 UTC, 23:30 in Lagos
	lagos := time.FixedZone("WAT", 3600)
	e, err := crm.Open(context.Background(), crm.Options{Store: st, Clock: clock, Location: lagos})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	ctx := context.Background()
	acts := e.Activities()
	at := func(day, hour int) time.Time { return time.Date(2026, 3, day, hour, 0, 0, 0, lagos) }
	mk := func(subject, who string, due time.Time) crm.Activity {
		a, err := acts.Create(ctx, crm.Activity{Type: crm.Task, Subject: subject, Assignee: who, DueAt: due})
		require.NoError(t, err)
		return a
	}
	late := mk("late", "ann", at(1, 10))
	mk("tomorrow", "ann", at(3, 0).Add(time.Minute))
	today := mk("today", "ann", at(2, 23).Add(45*time.Minute))
	finished := mk("finished", "ann", at(2, 9))
	mk("someone else's", "bob", at(2, 9))
	mk("undated", "ann", time.Time{})
	midnight := mk("last nanosecond", "ann", at(3, 0).Add(-time.Nanosecond))
	_, err = acts.Complete(ctx, finished.ID, finished.Version)
	require.NoError(t, err)

	due, err := acts.DueToday(ctx, "ann")
	require.NoError(t, err)
	require.Len(t, due, 3)
	assert.Equal(t, late.ID, due[0].ID)
	assert.Equal(t, today.ID, due[1].ID)
	assert.Equal(t, midnight.ID, due[2].ID, "due at the day's last instant is due today")
	assert.True(t, due[0].Overdue(clock.Now()))
	assert.False(t, due[1].Overdue(clock.Now()))

	// Completing twice, or with a stale version, is refused.
	_, err = acts.Complete(ctx, finished.ID, 0)
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = acts.Complete(ctx, today.ID, today.Version+1)
	require.ErrorIs(t, err, crm.ErrConflict)
	_, err = acts.DueToday(ctx, "")
	require.ErrorIs(t, err, storage.ErrInvalid)
}

func TestActivityBadInput(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	now := env.clock.Now()
	before := snapshot(t, env.store, "default")
	for name, bad := range map[string]struct {
		a      crm.Activity
		fields []string
	}{
		"empty":            {crm.Activity{}, []string{"type", "subject"}},
		"unknown type":     {crm.Activity{Type: "lunch", Subject: "x"}, []string{"type"}},
		"remind after due": {crm.Activity{Type: crm.Call, Subject: "x", DueAt: now, RemindAt: now.Add(time.Hour)}, []string{"remind_at"}},
		"remind, no due":   {crm.Activity{Type: crm.Call, Subject: "x", RemindAt: now}, []string{"remind_at"}},
		"missing links": {crm.Activity{Type: crm.Call, Subject: "x", Links: crm.Links{DealID: "nope", ContactID: "gone"}},
			[]string{"deal_id", "contact_id"}},
		"bad assignee": {crm.Activity{Type: crm.Call, Subject: "x", Assignee: "a\tb"}, []string{"assignee"}},
		"notes":        {crm.Activity{Type: crm.Call, Subject: "x", Notes: "\x00"}, []string{"notes"}},
		"done given":   {crm.Activity{Type: crm.Call, Subject: "x", Meta: crm.Meta{Version: 3}}, []string{"version"}},
	} {
		_, err := env.engine.Activities().Create(ctx, bad.a)
		var ve *crm.ValidationError
		require.ErrorAs(t, err, &ve, name)
		var fields []string
		for _, f := range ve.Fields {
			fields = append(fields, f.Field)
		}
		assert.ElementsMatch(t, bad.fields, fields, name)
	}
	assert.Equal(t, before, snapshot(t, env.store, "default"))

	a, err := env.engine.Activities().Create(ctx, crm.Activity{Type: crm.Task, Subject: "x"})
	require.NoError(t, err)
	a.DoneAt = now
	_, err = env.engine.Activities().Update(ctx, a)
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve, "only Complete sets done_at")
}

func TestTimeline(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	d := dealInPipeline(t, env)
	contact, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "Hank", Email: "hank@globex.example"})
	require.NoError(t, err)
	start := env.clock.Now()

	env.clock.Advance(time.Hour)
	// An interaction logged late sorts at the time it occurred.
	call, err := env.engine.Interactions().Create(ctx, crm.Interaction{Channel: "phone", Direction: crm.Inbound,
		Summary: "Asked for a quote", OccurredAt: start.Add(30 * time.Minute),
		Links: crm.Links{DealID: d.ID, ContactID: contact.ID}})
	require.NoError(t, err)
	task, err := env.engine.Activities().Create(ctx, crm.Activity{Type: crm.Task, Subject: "Prepare the quote",
		DueAt: start.Add(48 * time.Hour), Links: crm.Links{DealID: d.ID}})
	require.NoError(t, err)
	env.clock.Advance(time.Hour)
	d.Amount = crm.Money{Amount: 100, Currency: "EUR"}
	d, err = env.engine.Deals().Update(ctx, d)
	require.NoError(t, err)
	_, err = env.engine.Deals().Move(ctx, d.ID, "proposal-prepared", crm.MoveOptions{})
	require.NoError(t, err)
	env.clock.Advance(time.Hour)
	_, err = env.engine.Activities().Complete(ctx, task.ID, 0)
	require.NoError(t, err)

	var all []crm.TimelineEntry
	opts := crm.TimelineOptions{Limit: 2}
	for {
		pg, err := env.engine.Deals().Timeline(ctx, d.ID, opts)
		require.NoError(t, err)
		require.LessOrEqual(t, len(pg.Items), 2)
		all = append(all, pg.Items...)
		if pg.Next == "" {
			break
		}
		opts.Cursor = pg.Next
	}
	var types []string
	for _, e := range all {
		types = append(types, e.Type)
		assert.Equal(t, d.ID, e.RecordID)
	}
	assert.Equal(t, []string{crm.TimelineStageChanged, crm.TimelineInteraction, crm.TimelineActivity,
		crm.TimelineStageChanged, crm.TimelineActivityDone}, types)
	assert.Equal(t, "phone inbound: Asked for a quote", all[1].Summary)
	assert.Equal(t, call.ID, all[1].RefID)
	assert.Equal(t, "proposal-prepared", all[3].StageChange.To)

	rev, err := env.engine.Deals().Timeline(ctx, d.ID, crm.TimelineOptions{Reverse: true, Limit: 1})
	require.NoError(t, err)
	assert.Equal(t, crm.TimelineActivityDone, rev.Items[0].Type)

	// The contact's timeline has the call only.
	ct, err := env.engine.Contacts().Timeline(ctx, contact.ID, crm.TimelineOptions{})
	require.NoError(t, err)
	require.Len(t, ct.Items, 1)
	assert.Equal(t, call.ID, ct.Items[0].RefID)

	_, err = env.engine.Deals().Timeline(ctx, "nope", crm.TimelineOptions{})
	require.ErrorIs(t, err, crm.ErrNotFound)

	// An interaction's links and time are fixed; the rest can be edited.
	call.Summary = "Asked for a quote for 40 units"
	call, err = env.engine.Interactions().Update(ctx, call)
	require.NoError(t, err)
	call.Links.DealID = ""
	_, err = env.engine.Interactions().Update(ctx, call)
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	_, err = env.engine.Interactions().Create(ctx, crm.Interaction{Direction: "sideways"})
	require.ErrorAs(t, err, &ve)
	assert.Len(t, ve.Fields, 3)
}

// TestEngineRunsTimers: with TimerInterval set, reminders fire without the
// host calling CheckTimers.
func TestEngineRunsTimers(t *testing.T) {
	st := memory.New()
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	clock := newClock()
	ctx := context.Background()
	e, err := crm.Open(ctx, crm.Options{Store: st, Clock: clock, TimerInterval: 5 * time.Millisecond,
		TimerTenants: []string{"acme"}, PollInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	rec := newRecorder()
	require.NoError(t, e.Subscribe(crm.Subscription{Name: "reminders", Events: []string{"activity.due"}, Handler: rec.handle}))
	a, err := e.Tenant("acme").Activities().Create(ctx, crm.Activity{Type: crm.Call, Subject: "Call back",
		DueAt: clock.Now().Add(2 * time.Hour), RemindAt: clock.Now().Add(time.Hour)})
	require.NoError(t, err)
	clock.Advance(time.Hour)
	evs := rec.wait(t, 1)
	assert.Equal(t, a.ID, evs[0].ID)
	assert.Equal(t, "acme", evs[0].Tenant)

	_, err = crm.Open(ctx, crm.Options{Store: st, TimerInterval: -1})
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = crm.Open(ctx, crm.Options{Store: st, TimerTenants: []string{"a\nb"}})
	require.ErrorIs(t, err, storage.ErrInvalid)
}

func TestLinksToDeletedRecords(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	c, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "Gone", Email: "gone@example.com"})
	require.NoError(t, err)
	in, err := env.engine.Interactions().Create(ctx, crm.Interaction{Channel: "email", Summary: "Hello", Links: crm.Links{ContactID: c.ID}})
	require.NoError(t, err)
	a, err := env.engine.Activities().Create(ctx, crm.Activity{Type: crm.Email, Subject: "Reply", Links: crm.Links{ContactID: c.ID}})
	require.NoError(t, err)
	require.NoError(t, env.engine.Contacts().Delete(ctx, c.ID))

	// Records linked to a deleted contact stay editable.
	in.Summary = "Hello again"
	_, err = env.engine.Interactions().Update(ctx, in)
	require.NoError(t, err)
	a.Subject = "Reply soon"
	a, err = env.engine.Activities().Update(ctx, a)
	require.NoError(t, err)
	// But an activity's links cannot change, and times must be sane.
	a.Links.ContactID = ""
	_, err = env.engine.Activities().Update(ctx, a)
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	_, ok := ve.Field("links")
	assert.True(t, ok)
	_, err = env.engine.Activities().Create(ctx, crm.Activity{Type: crm.Task, Subject: "Far", DueAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.ErrorAs(t, err, &ve)
	_, ok = ve.Field("due_at")
	assert.True(t, ok, "%v", err)

	// Asking for everything due until the end of time works.
	mine, err := env.engine.Activities().Create(ctx, crm.Activity{Type: crm.Task, Subject: "Someday", Assignee: "ann",
		DueAt: time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.NoError(t, err)
	page, err := env.engine.Activities().Due(ctx, "ann", crm.DueOptions{Until: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, mine.ID, page.Items[0].ID)
}
