package crm_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage/bolt"
)

// TestSimulatedYear runs a year of schedules and dates over 10,000
// contacts on bbolt, with a fake clock stepped hour by hour, calling
// CheckTimers each hour as Options.TimerInterval would. Every birthday,
// renewal and weekly and monthly schedule runs exactly once, within the
// hour it is due (in the tenant's time zone).
func TestSimulatedYear(t *testing.T) {
	if testing.Short() {
		t.Skip("a simulated year")
	}
	const contacts, contracts = 10_000, 1_000
	ctx := context.Background()
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	clock := &fakeClock{now: time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC)} // 1 January 2027, 00:00 in Berlin
	st, err := bolt.Open(filepath.Join(t.TempDir(), "year.db"), nil)
	require.NoError(t, err)
	defer st.Close()
	e, err := crm.Open(ctx, crm.Options{Store: st, Clock: clock, Location: berlin, PollInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	defer e.Close()
	rep, err := e.Default().Users().Create(ctx, crm.User{Name: "Rita Rep"})
	require.NoError(t, err)

	start := time.Date(2027, 1, 1, 0, 0, 0, 0, berlin)
	birthday := func(i int) time.Time { return start.AddDate(0, 0, i%365).AddDate(-30-i%40, 0, 0) }
	var cs []crm.Contact
	for i := range contacts {
		cs = append(cs, crm.Contact{Meta: crm.Meta{Owner: rep.ID, Custom: map[string]any{"birthday": birthday(i).Format(time.DateOnly)}},
			FirstName: fmt.Sprintf("C%05d", i)})
	}
	var ids []string
	for chunk := range 10 {
		got, err := e.Contacts().CreateMany(ctx, cs[chunk*1000:(chunk+1)*1000])
		require.NoError(t, err)
		for _, c := range got {
			ids = append(ids, c.ID)
		}
	}
	// Contracts end through 2027 and into 2028.
	ends := map[string]string{}
	var ks []crm.Contract
	for i := range contracts {
		end := start.AddDate(0, 0, 31+i%400).Format(time.DateOnly)
		ks = append(ks, crm.Contract{Meta: crm.Meta{Owner: rep.ID}, Title: fmt.Sprintf("K%04d", i), ContactID: ids[i], EndsOn: end})
	}
	created, err := e.Default().Contracts().CreateMany(ctx, ks)
	require.NoError(t, err)
	for _, k := range created {
		ends[k.ID] = k.EndsOn
	}
	set, err := automation.Load("year.yaml", []byte(`
automations:
  - name: birthday
    on: {date: {of: contact, field: custom.birthday, yearly: true, at: "10:00"}}
    do:
      - tag: {add: [greeted-2027]}
  - name: renewal
    on: {date: {of: contract, field: ends_on, offset: -30d}}
    do:
      - update: {set: {custom.renewal_due: true}}
  - name: weekly-report
    on: {schedule: "0 8 * * 1"}
    do:
      - emit: {event: weekly_report}
  - name: month-end
    on: {schedule: "30 18 28 * *"}
    do:
      - emit: {event: month_end}
`), clock.Now)
	require.NoError(t, err)
	require.NoError(t, e.Automations().Save(ctx, set))

	began := time.Now()
	end := start.AddDate(1, 0, 0)
	runs := 0
	for clock.Now().Before(end) {
		clock.Advance(time.Hour)
		n, err := e.CheckTimers(ctx)
		require.NoError(t, err)
		runs += n.Automations
	}
	elapsed := time.Since(began)
	t.Logf("a simulated year: %d runs from alarms in %s (%d CheckTimers calls)", runs, elapsed.Round(time.Millisecond), 365*24)

	byAuto := map[string][]crm.AutomationRun{}
	require.NoError(t, e.Automations().AllRuns(ctx, func(r crm.AutomationRun) error {
		byAuto[r.Automation] = append(byAuto[r.Automation], r)
		return nil
	}))
	// Birthdays: one run per contact, on its day at 10:00 Berlin time,
	// run within the hour.
	require.Len(t, byAuto["birthday"], contacts)
	seen := map[string]bool{}
	for _, r := range byAuto["birthday"] {
		require.False(t, seen[r.RecordID], "twice for %s", r.RecordID)
		seen[r.RecordID] = true
		assert.Equal(t, 10, r.Event.Time.In(berlin).Hour())
		lag := r.CreatedAt.Sub(r.Event.Time)
		require.True(t, lag >= 0 && lag < time.Hour, "ran %s after it was due", lag)
		require.Equal(t, crm.RunDone, r.Status)
	}
	// Renewals: the contracts ending from 31 January 2027 to 31 January
	// 2028 are due within the year (30 days before, 09:00).
	inYear := 0
	for _, r := range byAuto["renewal"] {
		endDay, err := time.ParseInLocation(time.DateOnly, ends[r.RecordID], berlin)
		require.NoError(t, err)
		due := endDay.AddDate(0, 0, -30)
		require.Equal(t, time.Date(due.Year(), due.Month(), due.Day(), 9, 0, 0, 0, berlin), r.Event.Time.In(berlin))
		require.Less(t, r.CreatedAt.Sub(r.Event.Time), time.Hour)
		inYear++
	}
	wantRenewals := 0
	for _, d := range ends {
		endDay, _ := time.ParseInLocation(time.DateOnly, d, berlin)
		due := endDay.AddDate(0, 0, -30)
		if time.Date(due.Year(), due.Month(), due.Day(), 9, 0, 0, 0, berlin).Before(end) {
			wantRenewals++
		}
	}
	assert.Equal(t, wantRenewals, inYear)
	// Weekly: every Monday of 2027 at 08:00, once.
	assert.Len(t, byAuto["weekly-report"], 52)
	for _, r := range byAuto["weekly-report"] {
		at := r.Event.Time.In(berlin)
		require.Equal(t, time.Monday, at.Weekday())
		require.Equal(t, 8, at.Hour())
	}
	assert.Len(t, byAuto["month-end"], 12)
	// Runs of a year: nothing left pending.
	assert.Equal(t, contacts+wantRenewals+52+12, runs)
}
