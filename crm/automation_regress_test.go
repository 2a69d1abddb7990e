package crm_test

// Regression tests for bugs a review of the automations found: each
// comment says what went wrong before the fix; each test failed then.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/memory"
)

// TestRegressionConditionErrorDoesNotRunActions: a condition that cannot be
// evaluated on a record (a contact without custom fields, for
// record.custom.score) is recorded as a failed attempt, retrying; the
// retry (continueRun) never evaluates the condition again and runs every
// action. A condition that did not hold must never lead to the actions.
func TestRegressionConditionErrorDoesNotRunActions(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	saveAutomations(t, e, `
automations:
  - name: vip
    on: {event: contact.created}
    when: record.custom.score > 10
    do:
      - tag: {add: [vip]}
`)
	c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Ann"})
	require.NoError(t, err)
	eventually(t, func() bool {
		env.clock.Advance(time.Second)
		runs, err := e.Automations().Runs(ctx, "contacts", c.ID)
		require.NoError(t, err)
		return len(runs) == 1 && (runs[0].Status == crm.RunDone || runs[0].Status == crm.RunFailed)
	}, "the run did not end")
	got, err := e.Contacts().Get(ctx, c.ID)
	require.NoError(t, err)
	runs, err := e.Automations().Runs(ctx, "contacts", c.ID)
	require.NoError(t, err)
	assert.Empty(t, got.Tags, "the condition never held, yet the retry tagged the contact (run %s: %v)", runs[0].Status, runs[0].Done)
	assert.Equal(t, crm.RunFailed, runs[0].Status)
}

// TestRegressionDeleteThenSaveUsesNewSet: the compiled set cache is keyed by
// the set record's version, which starts at 1 again after Delete, so a
// set saved after Delete is never loaded: the old one keeps running.
func TestRegressionDeleteThenSaveUsesNewSet(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	saveAutomations(t, e, `
automations:
  - name: tag-new
    on: {event: contact.created}
    do:
      - tag: {add: [v1]}
`)
	tags := func(id string) []string {
		c, err := e.Contacts().Get(ctx, id)
		require.NoError(t, err)
		return c.Tags
	}
	c1, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "One"})
	require.NoError(t, err)
	eventually(t, func() bool { return len(tags(c1.ID)) == 1 }, "One not tagged")

	require.NoError(t, e.Automations().Delete(ctx))
	saveAutomations(t, e, `
automations:
  - name: tag-new
    on: {event: contact.created}
    do:
      - tag: {add: [v2]}
`)
	c2, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Two"})
	require.NoError(t, err)
	eventually(t, func() bool { return len(tags(c2.ID)) == 1 }, "Two not tagged")
	assert.Equal(t, []string{"v2"}, tags(c2.ID), "the set saved after Delete must run, not the cached old one")
}

// TestRegressionLoopThroughDocumentsIsStopped: a document action is a Send
// stored by SendDocumentWith in a transaction of its own, outside the
// run's causedTx, so its send.created carries depth 0; the sender then
// writes the outbound interaction.created at depth 0 too (causedBy of a
// depth-0 event). A chain document → interaction.created → document ...
// is never stopped by MaxAutomationDepth: the customer gets documents
// forever. (The message path was fixed in 321872e; documents were not.)
func TestRegressionLoopThroughDocumentsIsStopped(t *testing.T) {
	conn := newTestConnector(t)
	e := openWithPlugins(t, memory.New(), conn)
	ctx := context.Background()
	d := sampleDeal(t, e)
	saveAutomations(t, e, `
automations:
  - name: proposal-after-contact
    on: {event: interaction.created}
    do:
      - document: {template: proposal, via: mail}
`)
	_, err := e.Default().Interactions().Create(ctx, crm.Interaction{Channel: "phone", Summary: "call", Links: crm.Links{ContactID: d.ContactID, DealID: d.ID}})
	require.NoError(t, err)
	waitSent(t, conn, 1)
	time.Sleep(2 * time.Second)
	n := len(conn.sent())
	assert.LessOrEqual(t, n, 6, "the loop was not stopped: %d documents sent", n)
}

// blockingHook blocks every call until released and counts calls.
type blockingHook struct {
	calls   atomic.Int32
	release chan struct{}
}

func (h *blockingHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.calls.Add(1)
	<-h.release
	w.WriteHeader(http.StatusOK)
}

// TestRegressionWebhookCalledOnceWhenCheckTimersOverlaps: the runner's
// runPending and CheckTimers' runPending (runTimers, or a caller) both
// take up a waiting run and call its webhook, concurrently, in one
// process and without any crash. Nothing claims a run before its
// external action.
func TestRegressionWebhookCalledOnceWhenCheckTimersOverlaps(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	h := &blockingHook{release: make(chan struct{})}
	srv := httptest.NewServer(h)
	defer srv.Close()
	var once sync.Once
	release := func() { once.Do(func() { close(h.release) }) }
	defer release()
	saveAutomations(t, e, `
automations:
  - name: notify
    on: {event: contact.created}
    do:
      - webhook: {url: "`+srv.URL+`"}
`)
	_, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Ann"})
	require.NoError(t, err)
	eventually(t, func() bool { return h.calls.Load() == 1 }, "the runner did not call the hook")
	done := make(chan error, 1)
	go func() { _, err := e.CheckTimers(ctx); done <- err }()
	time.Sleep(300 * time.Millisecond)
	calls := h.calls.Load()
	release()
	require.NoError(t, <-done)
	assert.Equal(t, int32(1), calls, "one run, one call: the webhook was called %d times at once", calls)
}

// TestRegressionSlowWebhookBlocksOtherAutomations: the runner takes events
// from the outbox and calls webhooks in one goroutine, so a slow webhook
// (up to the 30 s timeout, times the retries) stops every other
// automation of every tenant meanwhile.
func TestRegressionSlowWebhookBlocksOtherAutomations(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	h := &blockingHook{release: make(chan struct{})}
	srv := httptest.NewServer(h)
	defer srv.Close()
	var once sync.Once
	release := func() { once.Do(func() { close(h.release) }) }
	defer release()
	saveAutomations(t, e, `
automations:
  - name: sync
    on: {event: contact.created}
    when: record.first_name == "Hook"
    do:
      - webhook: {url: "`+srv.URL+`"}
  - name: tag
    on: {event: contact.created}
    when: record.first_name == "Other"
    do:
      - tag: {add: [seen]}
`)
	_, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Hook"})
	require.NoError(t, err)
	eventually(t, func() bool { return h.calls.Load() == 1 }, "the runner did not call the hook")
	other, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Other"})
	require.NoError(t, err)
	ok := assert.Eventually(t, func() bool {
		c, err := e.Contacts().Get(ctx, other.ID)
		require.NoError(t, err)
		return len(c.Tags) == 1
	}, 3*time.Second, 10*time.Millisecond)
	assert.True(t, ok, "another automation waited for a webhook it has nothing to do with")
}

// switchHook answers 503 until ok is set, then 200.
type switchHook struct {
	ok    atomic.Bool
	calls atomic.Int32
}

func (h *switchHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.calls.Add(1)
	if !h.ok.Load() {
		http.Error(w, "later", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// TestRegressionEditedSetDoesNotRepeatActions: a run in flight records only
// the index of its next action; when the set is saved again with an
// action inserted before it, the run goes on with the new set's action at
// that index, and does a store action again (here: a second "First"
// activity, under a new child ID).
func TestRegressionEditedSetDoesNotRepeatActions(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	h := &switchHook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	v1 := `
automations:
  - name: flow
    on: {event: contact.created}
    do:
      - activity: {subject: "First", for: "user:u1"}
      - webhook: {url: "` + srv.URL + `"}
      - activity: {subject: "Second", for: "user:u1"}
`
	saveAutomations(t, e, v1)
	c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Ann"})
	require.NoError(t, err)
	eventually(t, func() bool {
		runs, err := e.Automations().Runs(ctx, "contacts", c.ID)
		require.NoError(t, err)
		return len(runs) == 1 && runs[0].Status == crm.RunRetrying
	}, "the run is not retrying its webhook")
	// The ISV adds a tag in front.
	saveAutomations(t, e, strings.Replace(v1, `    do:
      - activity: {subject: "First"`, `    do:
      - tag: {add: [x]}
      - activity: {subject: "First"`, 1))
	h.ok.Store(true)
	eventually(t, func() bool {
		env.clock.Advance(time.Second)
		runs, err := e.Automations().Runs(ctx, "contacts", c.ID)
		require.NoError(t, err)
		return runs[0].Status == crm.RunDone || runs[0].Status == crm.RunFailed
	}, "the run did not end")
	var subjects []string
	for _, a := range linked(t, e, "contact", c.ID) {
		subjects = append(subjects, a.Subject)
	}
	assert.Equal(t, []string{"First"}, subjects, "nothing repeated: the run stops")
	runs, err := e.Automations().Runs(ctx, "contacts", c.ID)
	require.NoError(t, err)
	assert.Equal(t, crm.RunFailed, runs[0].Status)
	assert.Contains(t, runs[0].LastError, "was changed after this run began")
}

// TestRegressionResaveKeepsDueBirthday: saving the set again (an ISV pushing
// its configuration at start-up, or editing another automation) rebuilds
// the alarms from now: a birthday that is due but not fired yet (the
// engine was down, or CheckTimers has not run since) moves to next year.
func TestRegressionResaveKeepsDueBirthday(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	rep, _, _ := salesTeam(t, e)
	src := `
automations:
  - name: birthday
    on: {date: {of: contact, field: custom.birthday, yearly: true, at: "10:00"}}
    do:
      - activity: {subject: "Congratulate {{.Contact.FirstName}}"}
`
	saveAutomations(t, e, src)
	ann, err := e.Contacts().Create(ctx, crm.Contact{Meta: crm.Meta{Owner: rep, Custom: map[string]any{"birthday": "1990-03-02"}}, FirstName: "Ann"})
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // the runner sees contact.created
	env.clock.Advance(26 * time.Hour) // 2 March 11:00: due, not fired
	saveAutomations(t, e, src)        // the same set, saved again
	n, err := e.CheckTimers(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n.Automations, "this year's birthday was skipped")
	assert.Len(t, linked(t, e, "contact", ann.ID), 1)
}

// flakyStore fails, once, the transaction that stores the run whose body
// contains target (as a PostgreSQL serialization failure, a closed engine
// or a cancelled context would).
type flakyStore struct {
	storage.Store
	target atomic.Pointer[string]
}

func (s *flakyStore) Update(ctx context.Context, tenant string, fn func(storage.Tx) error) error {
	return s.Store.Update(ctx, tenant, func(tx storage.Tx) error { return fn(&flakyTx{Tx: tx, s: s}) })
}

type flakyTx struct {
	storage.Tx
	s *flakyStore
}

func (t *flakyTx) Put(ctx context.Context, collection string, rec storage.Record) (storage.Record, error) {
	if p := t.s.target.Load(); p != nil && collection == "automation_runs" && strings.Contains(string(rec.Body), *p) {
		if t.s.target.CompareAndSwap(p, nil) {
			return storage.Record{}, storage.ErrConflict
		}
	}
	return t.Tx.Put(ctx, collection, rec)
}

// TestRegressionAlarmRunsNotLostWhenIsolatedRunFails: when one run of an
// alarm fails (a contact without owner), fireAlarms isolates: it moves
// the alarm on in a transaction of its own first (mode -2), then stores
// each run in its own transaction. If one of those fails (a conflict, a
// crash, Close) the alarm has moved on already and the run is lost for
// good: no later CheckTimers does it.
func TestRegressionAlarmRunsNotLostWhenIsolatedRunFails(t *testing.T) {
	st := &flakyStore{Store: memory.New()}
	defer st.Store.Close()
	clock := newClock()
	e, err := crm.Open(context.Background(), crm.Options{Store: st, Clock: clock,
		RetryBackoff: time.Millisecond, MaxRetryBackoff: 5 * time.Millisecond, PollInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	defer e.Close()
	ctx := context.Background()
	rep, _, _ := salesTeam(t, e)
	ownerless, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Nobody"})
	require.NoError(t, err)
	owned, err := e.Contacts().Create(ctx, crm.Contact{Meta: crm.Meta{Owner: rep}, FirstName: "Ann"})
	require.NoError(t, err)
	saveAutomations(t, e, `
automations:
  - name: weekly
    on: {schedule: "0 8 * * 1", for: contact}
    do:
      - activity: {subject: "Weekly call with {{.Contact.FirstName}}"}
`)
	target := owned.ID
	st.target.Store(&target)
	clock.Advance(23 * time.Hour) // Monday 08:00
	_, err = e.CheckTimers(ctx)
	require.Error(t, err, "the injected failure")
	_, err = e.CheckTimers(ctx)
	require.NoError(t, err)
	_, err = e.CheckTimers(ctx)
	require.NoError(t, err)
	assert.Len(t, linked(t, e, "contact", owned.ID), 1, "Ann's weekly run was lost")
	runs, err := e.Automations().Runs(ctx, "contacts", ownerless.ID)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	assert.Equal(t, crm.RunFailed, runs[0].Status)
}

// TestRegressionPendingRunsOfOtherTenantsResume: the runner continues pending
// runs only of the timer tenants and of tenants whose set it has loaded
// since it started (from their events). After a restart, a retrying run
// of another tenant waits for that tenant's next event, possibly forever.
func TestRegressionPendingRunsOfOtherTenantsResume(t *testing.T) {
	st := memory.New()
	defer st.Close()
	clock := newClock()
	opts := crm.Options{Store: st, Clock: clock,
		RetryBackoff: time.Millisecond, MaxRetryBackoff: 5 * time.Millisecond, PollInterval: 10 * time.Millisecond}
	ctx := context.Background()
	h := &switchHook{}
	srv := httptest.NewServer(h)
	defer srv.Close()

	e1, err := crm.Open(ctx, opts)
	require.NoError(t, err)
	acme := e1.Tenant("acme")
	set, err := automation.Load("acme.yaml", []byte(`
automations:
  - name: notify
    on: {event: contact.created}
    do:
      - webhook: {url: "`+srv.URL+`"}
`), nil)
	require.NoError(t, err)
	require.NoError(t, acme.Automations().Save(ctx, set))
	c, err := acme.Contacts().Create(ctx, crm.Contact{FirstName: "Ann"})
	require.NoError(t, err)
	eventually(t, func() bool {
		runs, err := acme.Automations().Runs(ctx, "contacts", c.ID)
		require.NoError(t, err)
		return len(runs) == 1 && runs[0].Status == crm.RunRetrying
	}, "the run is not retrying")
	require.NoError(t, e1.Close())

	h.ok.Store(true)
	e2, err := crm.Open(ctx, opts)
	require.NoError(t, err)
	defer e2.Close()
	acme = e2.Tenant("acme")
	ok := assert.Eventually(t, func() bool {
		clock.Advance(time.Second)
		runs, err := acme.Automations().Runs(ctx, "contacts", c.ID)
		require.NoError(t, err)
		return runs[0].Status == crm.RunDone
	}, 3*time.Second, 10*time.Millisecond)
	assert.True(t, ok, "acme's retrying run was not taken up after the restart")
}

// TestRegressionLoopThroughSegmentsIsStopped: WatchSegments writes
// segment.entered and segment.left in its own transaction, at depth 0,
// whatever the depth of the contact.updated that caused them. Two
// automations that undo each other's segment change loop forever.
func TestRegressionLoopThroughSegmentsIsStopped(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	require.NoError(t, e.WatchSegments("marketing", exampleSegments(t, env.clock.Now), "EUR", nil))
	saveAutomations(t, e, `
automations:
  - name: demote
    on: {event: segment.entered, segment: vip}
    do:
      - tag: {remove: [VIP]}
  - name: promote
    on: {event: segment.left, segment: vip}
    do:
      - tag: {add: [VIP]}
`)
	c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Ann", Meta: crm.Meta{Tags: []string{"VIP"}}})
	require.NoError(t, err)
	time.Sleep(2 * time.Second)
	runs, err := e.Automations().Runs(ctx, "contacts", c.ID)
	require.NoError(t, err)
	assert.LessOrEqual(t, len(runs), 6, "the loop was not stopped: %d runs", len(runs))
}

// TestRegressionIsolatedScheduleIsNotQuadratic: one failing run of a
// schedule "for: contact" (a contact without owner) sends fireAlarm into
// isolate, which rescans the whole collection once per run: N records
// cost N scans of N records. Measured on the memory store: 1,000
// contacts take 66 ms without the ownerless one and 6.7 s with it.
func TestRegressionIsolatedScheduleIsNotQuadratic(t *testing.T) {
	const n = 1000
	took := map[bool]time.Duration{}
	for _, ownerless := range []bool{false, true} {
		env := setup(t)
		e := env.engine
		ctx := context.Background()
		rep, _, _ := salesTeam(t, e)
		if ownerless {
			_, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Nobody"})
			require.NoError(t, err)
		}
		for i := range n {
			_, err := e.Contacts().Create(ctx, crm.Contact{Meta: crm.Meta{Owner: rep}, FirstName: "C" + strings.Repeat("x", i%7)})
			require.NoError(t, err)
		}
		saveAutomations(t, e, `
automations:
  - name: weekly
    on: {schedule: "0 8 * * 1", for: contact}
    do:
      - activity: {subject: "Weekly call with {{.Contact.FirstName}}"}
`)
		env.clock.Advance(23 * time.Hour)
		start := time.Now()
		got, err := e.CheckTimers(ctx)
		require.NoError(t, err)
		took[ownerless] = time.Since(start)
		require.Equal(t, n, got.Automations)
	}
	assert.Less(t, took[true], 10*took[false], "one failing run made the schedule %s instead of %s", took[true], took[false])
}

// TestRegressionScheduleWithoutRecordDoesNotPanic: a schedule without "for"
// starts its run with a nil subject (fireAlarm: plan{sub: nil}); an
// activity for its owner (the default) now resolves the owner through
// runExec.owner (e2929a0), which calls x.sub.contactID() on the nil
// subject: a nil pointer dereference in CheckTimers, that is in the
// engine's timer goroutine, which kills the process, and again at every
// start while the alarm stays due.
func TestRegressionScheduleWithoutRecordDoesNotPanic(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	saveAutomations(t, e, `
automations:
  - name: monday
    on: {schedule: "0 8 * * 1"}
    do:
      - activity: {subject: "Plan the week"}
`)
	env.clock.Advance(23 * time.Hour) // Monday 08:00
	var err error
	require.NotPanics(t, func() { _, err = e.CheckTimers(ctx) })
	require.NoError(t, err)
	var runs []crm.AutomationRun
	require.NoError(t, e.Automations().AllRuns(ctx, func(r crm.AutomationRun) error { runs = append(runs, r); return nil }))
	require.Len(t, runs, 1)
	assert.Equal(t, crm.RunFailed, runs[0].Status, "refused: no record, so no owner")
}

// countingStore counts write transactions.
type countingStore struct {
	storage.Store
	n atomic.Int64
}

func (s *countingStore) Update(ctx context.Context, tenant string, fn func(storage.Tx) error) error {
	s.n.Add(1)
	return s.Store.Update(ctx, tenant, fn)
}

// TestRegressionTwoWritingAutomationsStayBatched: automateEvent hands the
// same *subject to every run of an event; the first run's write mutates
// sub.body in place and bumps the record's version, so the second run
// writes with the stale version, fails with ErrConflict (an actionError)
// and the whole batch falls back to isolate: 100 events cost 403
// transactions (each an fsync on bbolt) instead of 3.
func TestRegressionTwoWritingAutomationsStayBatched(t *testing.T) {
	st := &countingStore{Store: memory.New()}
	defer st.Store.Close()
	e, err := crm.Open(context.Background(), crm.Options{Store: st, Clock: newClock(), PollInterval: time.Hour})
	require.NoError(t, err)
	defer e.Close()
	ctx := context.Background()
	saveAutomations(t, e, `
automations:
  - name: a
    on: {event: contact.created}
    do:
      - tag: {add: [a]}
  - name: b
    on: {event: contact.created}
    do:
      - tag: {add: [b]}
`)
	cs := make([]crm.Contact, 100)
	for i := range cs {
		cs[i] = crm.Contact{FirstName: "C"}
	}
	time.Sleep(100 * time.Millisecond)
	created, err := e.Contacts().CreateMany(ctx, cs)
	require.NoError(t, err)
	before := st.n.Load()
	eventually(t, func() bool {
		c, err := e.Contacts().Get(ctx, created[len(created)-1].ID)
		require.NoError(t, err)
		return len(c.Tags) == 2
	}, "not tagged")
	time.Sleep(100 * time.Millisecond)
	assert.LessOrEqual(t, st.n.Load()-before, int64(10), "transactions the runner needed for 100 events")
}
