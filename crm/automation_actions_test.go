package crm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage/memory"
)

func TestAutomationActions(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	rep1, rep2, lead := salesTeam(t, e)
	team, err := e.Default().Users().Get(ctx, rep1)
	require.NoError(t, err)
	saveAutomations(t, e, `
automations:
  - name: welcome
    on: {event: contact.created}
    when: contact.email endsWith "@example.com"
    do:
      - update: {set: {title: Customer, custom.source: automation}}
      - assign: {to: "team:`+team.TeamID+`"}
      - tag: {add: [welcomed, new], remove: [prospect]}
      - points: {program: stars, points: 50, reason: welcome}
      - activity: {type: email, subject: "Welcome {{.Contact.FirstName}} ({{.Contact.Title}})", for: "role:team-lead", due: 1d}
  - name: unwelcome
    on: {event: contact.updated}
    when: '"welcomed" in event.changed || "tags" in event.changed'
    do:
      - points: {program: stars, points: -20}
`)
	var contacts []crm.Contact
	for _, name := range []string{"Ann", "Bob", "Cy"} {
		c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: name, Email: name + "@example.com", Meta: crm.Meta{Tags: []string{"prospect"}}})
		require.NoError(t, err)
		contacts = append(contacts, c)
	}
	other, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Dee", Email: "dee@elsewhere.example"})
	require.NoError(t, err)

	var owners []string
	for _, c := range contacts {
		eventually(t, func() bool { return len(linked(t, e, "contact", c.ID)) == 1 }, "no activity for %s", c.FirstName)
		got, err := e.Contacts().Get(ctx, c.ID)
		require.NoError(t, err)
		assert.Equal(t, "Customer", got.Title)
		assert.Equal(t, "automation", got.Custom["source"])
		assert.ElementsMatch(t, []string{"welcomed", "new"}, got.Tags)
		owners = append(owners, got.Owner)
		a := linked(t, e, "contact", c.ID)[0]
		assert.Equal(t, "Welcome "+c.FirstName+" (Customer)", a.Subject)
		assert.Equal(t, lead, a.Assignee, "role:team-lead")
		assert.Equal(t, crm.Email, a.Type)
	}
	// Round robin over the team's members (the lead, and two reps), in
	// ID order, one each.
	assert.ElementsMatch(t, []string{rep1, rep2, lead}, owners)
	// The update the first automation made changed tags: the second
	// automation deducted 20 of the 50 points.
	for _, c := range contacts {
		eventually(t, func() bool {
			st, err := e.Default().Ledger("stars", false).State(ctx, c.ID)
			require.NoError(t, err)
			return st.Balance == 30
		}, "points of %s", c.FirstName)
	}
	got, err := e.Contacts().Get(ctx, other.ID)
	require.NoError(t, err)
	assert.Empty(t, got.Tags, "the condition is false for other domains")
	st, err := e.Default().Ledger("stars", false).State(ctx, other.ID)
	require.NoError(t, err)
	assert.Zero(t, st.Balance)
}

// hook is an HTTP endpoint that fails its first calls.
type hook struct {
	mu     sync.Mutex
	fail   int // answer 503 this many more times
	status int // then this (200 when 0)
	calls  []*http.Request
	bodies []string
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, r)
	h.bodies = append(h.bodies, string(b))
	if h.fail > 0 {
		h.fail--
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	if h.status != 0 {
		http.Error(w, "no", h.status)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (h *hook) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.calls)
}

func TestWebhookRetriedThenDone(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	h := &hook{fail: 2}
	srv := httptest.NewServer(h)
	defer srv.Close()
	saveAutomations(t, e, `
automations:
  - name: notify
    on: {event: contact.created}
    do:
      - tag: {add: [notified]}
      - webhook: {url: "`+srv.URL+`/hook", headers: {X-Token: s3cret}}
      - tag: {add: [after-hook]}
`)
	c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Ann"})
	require.NoError(t, err)
	// The backoff is by the engine's clock: move it on while waiting.
	eventually(t, func() bool {
		env.clock.Advance(time.Second)
		runs, err := e.Automations().Runs(ctx, "contacts", c.ID)
		require.NoError(t, err)
		return len(runs) == 1 && runs[0].Status == crm.RunDone
	}, "the run did not finish")
	runs, err := e.Automations().Runs(ctx, "contacts", c.ID)
	require.NoError(t, err)
	assert.Equal(t, 2, runs[0].Attempts)
	assert.Len(t, runs[0].Done, 3)
	require.Equal(t, 3, h.count())
	keys := map[string]bool{}
	for _, r := range h.calls {
		keys[r.Header.Get("Idempotency-Key")] = true
		assert.Equal(t, "s3cret", r.Header.Get("X-Token"))
	}
	assert.Len(t, keys, 1, "one key for every try of one webhook")
	var body struct {
		Automation string          `json:"automation"`
		Record     json.RawMessage `json:"record"`
	}
	require.NoError(t, json.Unmarshal([]byte(h.bodies[2]), &body))
	assert.Equal(t, "notify", body.Automation)
	assert.Contains(t, string(body.Record), c.ID)
	got, err := e.Contacts().Get(ctx, c.ID)
	require.NoError(t, err)
	assert.Equal(t, []string{"notified", "after-hook"}, got.Tags, "each tag once, in order")
}

func TestFailingRunIsRecordedAndOthersGoOn(t *testing.T) {
	st := memory.New()
	defer st.Close()
	clock := newClock()
	e, err := crm.Open(context.Background(), crm.Options{Store: st, Clock: clock, MaxAutomationAttempts: 3,
		RetryBackoff: time.Millisecond, MaxRetryBackoff: 5 * time.Millisecond, PollInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	defer e.Close()
	ctx := context.Background()
	h := &hook{fail: 1000}
	srv := httptest.NewServer(h)
	defer srv.Close()
	var failed []crm.Event
	var mu sync.Mutex
	require.NoError(t, e.Subscribe(crm.Subscription{Name: "failures", Events: []string{"automation.failed"}, Handler: func(_ context.Context, ev crm.Event) error {
		mu.Lock()
		defer mu.Unlock()
		failed = append(failed, ev)
		return nil
	}}))
	saveAutomations(t, e, `
automations:
  - name: broken-hook
    on: {event: contact.created}
    do:
      - webhook: {url: "`+srv.URL+`"}
  - name: bad-move
    on: {event: contact.created}
    do:
      - tag: {add: [moved]}
      - move: {stage: won}
  - name: fine
    on: {event: contact.created}
    do:
      - activity: {subject: "Call {{.Contact.FirstName}}", for: "user:u1"}
`)
	c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Ann"})
	require.NoError(t, err)
	eventually(t, func() bool {
		clock.Advance(time.Second)
		runs, err := e.Automations().Runs(ctx, "contacts", c.ID)
		require.NoError(t, err)
		n := 0
		for _, r := range runs {
			if r.Status == crm.RunFailed || r.Status == crm.RunDone {
				n++
			}
		}
		return n == 3
	}, "runs did not end")
	runs, err := e.Automations().Runs(ctx, "contacts", c.ID)
	require.NoError(t, err)
	byName := map[string]crm.AutomationRun{}
	for _, r := range runs {
		byName[r.Automation] = r
	}
	assert.Equal(t, crm.RunDone, byName["fine"].Status)
	assert.Len(t, linked(t, e, "contact", c.ID), 1)

	hookRun := byName["broken-hook"]
	assert.Equal(t, crm.RunFailed, hookRun.Status)
	assert.Equal(t, 3, hookRun.Attempts, "MaxAutomationAttempts")
	assert.Contains(t, hookRun.LastError, "webhook answered 503")
	assert.Equal(t, 3, h.count())

	moveRun := byName["bad-move"]
	assert.Equal(t, crm.RunFailed, moveRun.Status)
	assert.Equal(t, 1, moveRun.Attempts, "a refused move is not retried")
	assert.Contains(t, moveRun.LastError, "action 2 (move)")
	got, err := e.Contacts().Get(ctx, c.ID)
	require.NoError(t, err)
	assert.Empty(t, got.Tags, "the failed run's tag was rolled back with it")

	tl, err := e.Contacts().Timeline(ctx, c.ID, crm.TimelineOptions{})
	require.NoError(t, err)
	var reasons []string
	for _, en := range tl.Items {
		if en.Type == crm.TimelineAutomationFailed {
			reasons = append(reasons, en.Summary)
		}
	}
	require.Len(t, reasons, 2)
	assert.Contains(t, reasons[0]+reasons[1], "automation broken-hook failed after 3 attempt(s): action 1 (webhook): webhook answered 503")
	eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(failed) == 2 }, "automation.failed events")
}

func TestSimulateAutomationsWritesNothing(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	rep, _, _ := salesTeam(t, e)
	d := b2bDeal(t, e, rep)
	saveAutomations(t, e, `
automations:
  - name: big-deal
    on: {event: deal.stage_changed, to: contract}
    when: record.amount.amount > 500000
    do:
      - activity: {subject: "Legal review of {{.Deal.Title}}", due: 2d}
      - tag: {add: [legal]}
      - webhook: {url: "https://erp.example.com/deals"}
  - name: small-deal
    on: {event: deal.stage_changed, to: contract}
    when: record.amount.amount <= 500000
    do:
      - tag: {add: [fast-track]}
  - name: other-stage
    on: {event: deal.stage_changed, to: won}
    do:
      - tag: {add: [won]}
`)
	sims, err := e.SimulateAutomations(ctx, crm.Event{Type: "deal.stage_changed", Collection: "deals", ID: d.ID, From: "proposal-defended"})
	require.NoError(t, err)
	assert.Empty(t, sims, "the deal's stage is needs-clarification, so to is that: nothing matches")

	data, err := json.Marshal(map[string]any{"id": d.ID, "stage": "contract", "amount": map[string]any{"amount": 1_000_000, "currency": "EUR"}, "owner": rep})
	require.NoError(t, err)
	sims, err = e.SimulateAutomations(ctx, crm.Event{Type: "deal.stage_changed", Collection: "deals", ID: d.ID, Data: data})
	require.NoError(t, err)
	require.Len(t, sims, 2)
	assert.Equal(t, "big-deal", sims[0].Automation)
	assert.True(t, sims[0].Ran)
	require.Len(t, sims[0].Actions, 3)
	assert.Contains(t, sims[0].Actions[0], `"Legal review of Robot arms" for `+rep)
	assert.Contains(t, sims[0].Actions[1], "legal")
	assert.Equal(t, "would call POST https://erp.example.com/deals", sims[0].Actions[2])
	assert.Equal(t, "small-deal", sims[1].Automation)
	assert.False(t, sims[1].Ran)
	assert.Equal(t, "the condition is false", sims[1].Reason)

	// Nothing was written.
	assert.Empty(t, linked(t, e, "deal", d.ID))
	got, err := e.Deals().Get(ctx, d.ID)
	require.NoError(t, err)
	assert.Empty(t, got.Tags)
	assert.Equal(t, d.Version, got.Version)
	runs, err := e.Automations().Runs(ctx, "deals", d.ID)
	require.NoError(t, err)
	assert.Empty(t, runs)

	_, err = e.SimulateAutomations(ctx, crm.Event{})
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = e.SimulateAutomations(ctx, crm.Event{Type: "deal.stage_changed", Collection: "deals", ID: "nope"})
	require.ErrorIs(t, err, crm.ErrNotFound)
}

func TestScheduleForEveryRecord(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	rep, _, _ := salesTeam(t, e)
	d := b2bDeal(t, e, rep)
	_, err := e.Deals().Move(ctx, d.ID, "proposal-prepared", crm.MoveOptions{})
	require.NoError(t, err)
	d2, err := e.Deals().Create(ctx, crm.Deal{Meta: crm.Meta{Owner: rep}, Title: "Spare parts", Pipeline: "b2b-deal", Stage: "needs-clarification"})
	require.NoError(t, err)
	// 1 March 2026 is a Sunday, 09:00 UTC.
	saveAutomations(t, e, `
automations:
  - name: weekly-review
    on: {schedule: "0 8 * * 1", for: deal}
    when: record.stage == "proposal-prepared"
    do:
      - activity: {subject: "Weekly: push {{.Deal.Title}}"}
`)
	check := func() crm.Timers {
		n, err := e.CheckTimers(ctx)
		require.NoError(t, err)
		return n
	}
	env.clock.Advance(22 * time.Hour) // Monday 07:00
	assert.Zero(t, check().Automations)
	env.clock.Advance(time.Hour) // Monday 08:00
	assert.Equal(t, 1, check().Automations, "of both deals, one is in the stage")
	assert.Zero(t, check().Automations, "once per week")
	require.Len(t, linked(t, e, "deal", d.ID), 1)
	assert.Empty(t, linked(t, e, "deal", d2.ID))
	// Two weeks later (the engine was not checking meanwhile): both
	// Mondays run, each once.
	env.clock.Advance(15 * 24 * time.Hour)
	assert.Equal(t, 2, check().Automations)
	assert.Len(t, linked(t, e, "deal", d.ID), 3)
}

func TestInactivity(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	rep, _, _ := salesTeam(t, e)
	saveAutomations(t, e, `
automations:
  - name: quiet
    on: {inactivity: {after: 30d}}
    do:
      - activity: {subject: "{{.Contact.FirstName}} has been quiet for a month"}
`)
	ann, err := e.Contacts().Create(ctx, crm.Contact{Meta: crm.Meta{Owner: rep}, FirstName: "Ann"})
	require.NoError(t, err)
	bob, err := e.Contacts().Create(ctx, crm.Contact{Meta: crm.Meta{Owner: rep}, FirstName: "Bob"})
	require.NoError(t, err)
	// The runner sets the alarms from contact.created: wait for it.
	eventually(t, func() bool { n := 0; _ = e.Automations(); return n == 0 }, "")
	time.Sleep(50 * time.Millisecond)
	env.clock.Advance(10 * 24 * time.Hour)
	_, err = e.Default().Interactions().Create(ctx, crm.Interaction{Channel: "phone", Summary: "Chat with Bob", Links: crm.Links{ContactID: bob.ID}})
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	env.clock.Advance(21 * 24 * time.Hour) // day 31
	eventually(t, func() bool {
		_, err := e.CheckTimers(ctx)
		require.NoError(t, err)
		return len(linked(t, e, "contact", ann.ID)) == 1
	}, "Ann is quiet")
	assert.Empty(t, linked(t, e, "contact", bob.ID), "Bob talked on day 10")
	env.clock.Advance(10 * 24 * time.Hour) // day 41
	eventually(t, func() bool {
		_, err := e.CheckTimers(ctx)
		require.NoError(t, err)
		return len(linked(t, e, "contact", bob.ID)) == 1
	}, "Bob is quiet")
	assert.Len(t, linked(t, e, "contact", ann.ID), 1, "once per quiet spell")
}

// TestDueDateSurvivesAnUnrelatedUpdate: a birthday that is due but not
// fired yet when the contact changes (a new title) still fires.
func TestDueDateSurvivesAnUnrelatedUpdate(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	rep, _, _ := salesTeam(t, e)
	saveAutomations(t, e, `
automations:
  - name: birthday
    on: {date: {of: contact, field: custom.birthday, yearly: true, at: "10:00"}}
    do:
      - activity: {subject: "Congratulate {{.Contact.FirstName}}"}
`)
	ann, err := e.Contacts().Create(ctx, crm.Contact{Meta: crm.Meta{Owner: rep, Custom: map[string]any{"birthday": "1990-03-02"}}, FirstName: "Ann"})
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // the runner sees contact.created
	env.clock.Advance(26 * time.Hour) // 2 March 11:00: due, not fired
	ann.Title = "Dr"
	_, err = e.Contacts().Update(ctx, ann)
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // the runner sees contact.updated
	n, err := e.CheckTimers(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n.Automations)
	require.Len(t, linked(t, e, "contact", ann.ID), 1)
}

// TestCaseAndSurveyTriggers: a case opened goes round-robin to the
// support team; a detractor's survey answer gets a call from the
// contact's owner.
func TestCaseAndSurveyTriggers(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	rep1, rep2, lead := salesTeam(t, e)
	u, err := e.Default().Users().Get(ctx, rep1)
	require.NoError(t, err)
	saveAutomations(t, e, `
automations:
  - name: triage
    on: {event: case.opened}
    do:
      - assign: {to: "team:`+u.TeamID+`"}
  - name: detractor
    on: {event: survey.received}
    when: record.nps != nil && record.nps <= 6
    do:
      - activity: {type: call, subject: "Detractor ({{.Event.Type}}): call {{.Contact.FirstName}}", for: owner}
`)
	ann, err := e.Contacts().Create(ctx, crm.Contact{Meta: crm.Meta{Owner: rep2}, FirstName: "Ann"})
	require.NoError(t, err)
	var owners []string
	for i := range 3 {
		c, err := e.Default().Cases().Create(ctx, crm.Case{Subject: fmt.Sprintf("Broken %d", i), ContactID: ann.ID})
		require.NoError(t, err)
		eventually(t, func() bool {
			got, err := e.Default().Cases().Get(ctx, c.ID)
			require.NoError(t, err)
			if got.Owner != "" {
				owners = append(owners, got.Owner)
			}
			return got.Owner != ""
		}, "case %d not assigned", i)
	}
	assert.ElementsMatch(t, []string{rep1, rep2, lead}, owners, "one each, in turn")

	low, high := 3, 9
	_, err = e.Default().SurveyResponses().Create(ctx, crm.SurveyResponse{Survey: "nps", ContactID: ann.ID, NPS: &high})
	require.NoError(t, err)
	r, err := e.Default().SurveyResponses().Create(ctx, crm.SurveyResponse{Survey: "nps", ContactID: ann.ID, NPS: &low})
	require.NoError(t, err)
	eventually(t, func() bool { return len(linked(t, e, "contact", ann.ID)) == 1 }, "no call for the detractor")
	a := linked(t, e, "contact", ann.ID)[0]
	assert.Equal(t, "Detractor (survey.received): call Ann", a.Subject)
	assert.Equal(t, rep2, a.Assignee, "the response has no owner: its contact's")
	assert.Equal(t, r.ContactID, a.ContactID)
}

// TestInactivityRechecksWhenDue: a contact who talked after the runner
// last looked is not quiet when the alarm falls due; the alarm moves to
// the end of the new spell.
func TestInactivityRechecksWhenDue(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	rep, _, _ := salesTeam(t, e)
	saveAutomations(t, e, `
automations:
  - name: quiet
    on: {inactivity: {after: 30d}}
    do:
      - activity: {subject: "{{.Contact.FirstName}} is quiet"}
`)
	ann, err := e.Contacts().Create(ctx, crm.Contact{Meta: crm.Meta{Owner: rep}, FirstName: "Ann"})
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // the runner sets the alarm
	env.clock.Advance(31 * 24 * time.Hour)
	// An interaction of day 20, entered now: CheckTimers runs before the
	// runner can see it.
	_, err = e.Default().Interactions().Create(ctx, crm.Interaction{Channel: "phone", Summary: "Chat",
		OccurredAt: env.clock.Now().Add(-11 * 24 * time.Hour), Links: crm.Links{ContactID: ann.ID}})
	require.NoError(t, err)
	n, err := e.CheckTimers(ctx)
	require.NoError(t, err)
	assert.Zero(t, n.Automations)
	assert.Empty(t, linked(t, e, "contact", ann.ID))
	env.clock.Advance(20 * 24 * time.Hour) // day 51: 31 days after the chat
	eventually(t, func() bool {
		_, err := e.CheckTimers(ctx)
		require.NoError(t, err)
		return len(linked(t, e, "contact", ann.ID)) == 1
	}, "quiet after the new spell")
}
