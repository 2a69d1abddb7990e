package crm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/storage"
)

// Timeline entry types of automations.
const (
	// TimelineAutomationFailed: a run failed for good; Summary says why,
	// Ref is the run.
	TimelineAutomationFailed = "automation_failed"
	// TimelineAutomationStopped: a run was stopped as a loop.
	TimelineAutomationStopped = "automation_stopped"
)

// automationBatch is how many events the runner reads per outbox read.
const automationBatch = 200

// automationPace is the least time between two reads that found events:
// an event that comes alone is read at once, a stream of them in
// batches, at one read (and one acknowledgement) per pace instead of one
// per write.
const automationPace = 5 * time.Millisecond

// runAutomations is the runner's loop: it takes events from the outbox
// and runs what they trigger, and runs the runs that are due again.
func (e *Engine) runAutomations() {
	ctx := e.runCtx
	log := e.log.With("subscription", "rapport-automations")
	if err := e.loadRegistry(ctx); err != nil && ctx.Err() == nil {
		log.Error("automations: reading the tenants with automations; their pending runs wait for their next event", "err", err)
	}
	failures := 0
	// Pending runs are looked at when a run was queued, when the earliest
	// is due and at least every PollInterval, not on every event: an
	// event that starts no run costs no look.
	lookedAt, lookIn := time.Time{}, time.Duration(0)
	// noSet holds the tenants the runner found without a set, so that
	// their events cost no read. A tenant leaves it when its
	// automation.saved event comes by, which precedes the events its set
	// takes up. Another process may have handled events (and so seen that
	// event) while holding the subscription: when the events read do not
	// follow those acknowledged here, noSet starts over.
	noSet := map[string]bool{}
	var acked uint64
	for ctx.Err() == nil {
		signal := e.store.OutboxSignal()
		evs, err := e.store.ReadOutbox(ctx, automationConsumer, automationBatch)
		if err == nil && len(evs) > 0 {
			if evs[0].Seq != acked+1 {
				clear(noSet)
			}
			err = e.automateBatch(ctx, evs, noSet)
			if err == nil {
				ackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				err = e.store.AckOutbox(ackCtx, automationConsumer, evs[len(evs)-1].Seq)
				cancel()
			}
			if err == nil {
				acked = evs[len(evs)-1].Seq
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			log.Error("automations: handling events failed; trying again", "err", err, "failures", failures)
			e.sleep(ctx, e.backoff(failures))
			continue
		}
		failures = 0
		woken := false
		select {
		case <-e.autoWake:
			woken = true
		default:
		}
		if woken || time.Since(lookedAt) >= lookIn {
			lookedAt, lookIn = time.Now(), e.opts.PollInterval
			for _, id := range e.automationTenants() {
				next, err := e.Tenant(id).runPending(ctx)
				if err != nil && ctx.Err() == nil && !errors.Is(err, ErrClosed) {
					log.Error("automations: pending runs", "tenant", id, "err", err)
				}
				if !next.IsZero() {
					lookIn = min(lookIn, max(next.Sub(e.clock.Now()), time.Millisecond))
				}
			}
		}
		if len(evs) == automationBatch {
			continue // more may be waiting
		}
		if len(evs) > 0 && !e.sleep(ctx, automationPace) {
			return
		}
		// Everything committed before the read was read; a later commit
		// has fired signal.
		select {
		case <-signal:
		case <-e.autoWake:
			lookIn = 0
		case <-ctx.Done():
		case <-time.After(lookIn - time.Since(lookedAt)):
		}
	}
}

// wakeAutomations makes the runner look at pending runs now.
func (e *Engine) wakeAutomations() {
	select {
	case e.autoWake <- struct{}{}:
	default:
	}
}

// automationTenants are the tenants whose pending runs the runner
// looks at: the timer tenants and every tenant it has seen a set of.
func (e *Engine) automationTenants() []string {
	out := slices.Clone(e.opts.TimerTenants)
	add := func(k, _ any) bool {
		if id := k.(string); !slices.Contains(out, id) {
			out = append(out, id)
		}
		return true
	}
	e.autoSets.Range(add)
	e.autoTenants.Range(add)
	return out
}

// automateBatch runs what a batch of events triggers, tenant by tenant,
// skipping the tenants of noSet (which it keeps up to date).
func (e *Engine) automateBatch(ctx context.Context, evs []storage.Event, noSet map[string]bool) error {
	var order []string
	byTenant := map[string][]storage.Event{}
	for _, se := range evs {
		if se.Type == "automation.saved" {
			delete(noSet, se.Tenant)
		}
	}
	for _, se := range evs {
		if strings.HasPrefix(se.Type, "automation.") || noSet[se.Tenant] {
			continue
		}
		if _, ok := byTenant[se.Tenant]; !ok {
			order = append(order, se.Tenant)
		}
		byTenant[se.Tenant] = append(byTenant[se.Tenant], se)
	}
	for _, id := range order {
		found, err := e.Tenant(id).automateEvents(ctx, byTenant[id])
		if err != nil {
			return err
		}
		if !found {
			noSet[id] = true
		}
	}
	return nil
}

// mode says what automateEvent and start do: everything (run -1), only
// the alarms an event updates (-2), or only one run (its index among
// those planned), which is executed or, with fail set, recorded as failed
// with it; dry collects simulations instead of writing runs.
type mode struct {
	run  int
	fail error
	dry  *[]Simulation
	// started, if set, counts the runs stored.
	started *int
}

var all = mode{run: -1}

// automateEvents runs what events trigger: in one transaction when no
// action fails, else event by event and run by run, so that a failing
// run is recorded (and retried) and the others are done. It reports
// whether the tenant has a set.
func (t *Tenant) automateEvents(ctx context.Context, evs []storage.Event) (bool, error) {
	var cs *compiledSet
	if err := t.view(ctx, func(tx storage.ReadTx) error {
		var err error
		cs, err = t.compiledSet(ctx, tx)
		return err
	}); err != nil || cs == nil {
		return cs != nil, err
	}
	t.e.resolveKinds(ctx, cs)
	queued := false
	err := t.update(ctx, func(tx storage.Tx) error {
		queued = false
		for _, se := range evs {
			_, q, err := t.automateEvent(ctx, tx, cs, se, all)
			queued = queued || q
			if err != nil {
				return err
			}
		}
		return nil
	})
	var ae *actionError
	if err == nil || !errors.As(err, &ae) {
		if queued {
			t.e.wakeAutomations()
		}
		return true, err
	}
	// Runs failed here are retried: the runner looks at them when due.
	defer t.e.wakeAutomations()
	for _, se := range evs {
		if err := t.isolate(ctx, func(tx storage.Tx, m mode) (int, bool, error) {
			return t.automateEvent(ctx, tx, cs, se, m)
		}); err != nil {
			return true, err
		}
	}
	return true, nil
}

// isolate does the work of fn (one event) in one transaction, or, when an
// action fails, the alarms it updates and each of its runs in a
// transaction of its own, recording the failing runs.
func (t *Tenant) isolate(ctx context.Context, fn func(storage.Tx, mode) (int, bool, error)) error {
	n, queued := 0, false
	err := t.update(ctx, func(tx storage.Tx) error {
		var err error
		n, queued, err = fn(tx, all)
		return err
	})
	var ae *actionError
	if err != nil && !errors.As(err, &ae) {
		return err
	}
	if err != nil {
		// The alarms, and each run alone.
		if err := t.update(ctx, func(tx storage.Tx) error { _, _, err := fn(tx, mode{run: -2}); return err }); err != nil {
			return err
		}
		for i := range n {
			err := t.update(ctx, func(tx storage.Tx) error {
				_, q, err := fn(tx, mode{run: i})
				queued = queued || q
				return err
			})
			if errors.As(err, &ae) {
				err = t.update(ctx, func(tx storage.Tx) error { _, _, err := fn(tx, mode{run: i, fail: ae}); return err })
			}
			if err != nil {
				return err
			}
		}
	}
	if queued {
		t.e.wakeAutomations()
	}
	return nil
}

// eventCause is what the engine adds to the body of an event written by
// an automation run.
type eventCause struct {
	From  string `json:"from,omitempty"`
	Depth int    `json:"depth,omitempty"`
	Run   string `json:"run,omitempty"`
	// Segment change events carry these.
	Segment string `json:"segment,omitempty"`
	Contact string `json:"contact,omitempty"`
}

// eventInfo reads what a condition knows about a stored event.
func eventInfo(se storage.Event) (automation.EventInfo, eventBody, eventCause) {
	var b eventBody
	var c eventCause
	if len(se.Body) > 0 {
		_ = json.Unmarshal(se.Body, &b)
		_ = json.Unmarshal(se.Body, &c)
	}
	info := automation.EventInfo{Type: se.Type, Changed: b.Changed, Depth: c.Depth, Segment: c.Segment, From: c.From, Time: se.Time}
	if strings.HasSuffix(se.Type, ".stage_changed") && len(b.Data) > 0 {
		var st struct {
			Stage string `json:"stage"`
		}
		_ = json.Unmarshal(b.Data, &st)
		info.To = st.Stage
	}
	return info, b, c
}

// automateEvent plans the runs one event triggers, keeps the alarms its
// record has up to date, and executes the runs (see mode). It returns
// how many runs it planned and whether any waits for the runner.
func (t *Tenant) automateEvent(ctx context.Context, tx storage.Tx, cs *compiledSet, se storage.Event, m mode) (int, bool, error) {
	if se.Seq != 0 && se.Seq <= cs.fromSeq {
		return 0, false, nil // before the set was saved
	}
	info, body, cause := eventInfo(se)
	collection, id := se.Collection, se.RecordID
	if strings.HasPrefix(se.Type, "segment.") {
		collection, id = contactsCollection, cause.Contact
	}
	now := t.Now()
	if m.run == -1 || m.run == -2 {
		if err := t.alarmsFor(ctx, tx, cs, se, collection, id, now); err != nil {
			return 0, false, err
		}
		if m.run == -2 {
			return 0, false, nil
		}
	}
	var plans []int
	for i := range cs.set.Automations {
		if cs.set.Automations[i].MatchesEvent(info) {
			plans = append(plans, i)
		}
	}
	if len(plans) == 0 {
		return 0, false, nil
	}
	sub, err := loadSubject(ctx, tx, collection, id)
	if err != nil {
		return 0, false, err
	}
	if sub == nil && len(body.Data) > 0 && !strings.HasPrefix(se.Type, "segment.") {
		if sub, err = subjectFrom(collection, id, body.Data, 0); err != nil {
			return 0, false, err
		}
	}
	record := map[string]any(nil)
	if len(body.Data) > 0 && !strings.HasPrefix(se.Type, "segment.") {
		record = (&subject{raw: body.Data}).env()
	} else if sub != nil {
		record = sub.env()
	}
	queued := false
	for n, i := range plans {
		if m.run >= 0 && n != m.run {
			continue
		}
		run := AutomationRun{ID: noticeID("event", cs.set.Automations[i].Name, strconv.FormatUint(se.Seq, 10)),
			Automation: cs.set.Automations[i].Name, Trigger: "event", Collection: collection, RecordID: id,
			Event: info, EventSeq: se.Seq, CreatedAt: now}
		s := sub
		if n > 0 && sub != nil && sub.id != "" {
			// An earlier run may have changed the record: read it again.
			fresh, err := loadSubject(ctx, tx, collection, id)
			if err != nil {
				return len(plans), false, err
			}
			if fresh != nil {
				s = fresh
			}
		}
		q, err := t.start(ctx, tx, cs, i, &run, s, record, m)
		if err != nil {
			return len(plans), false, err
		}
		queued = queued || q
	}
	return len(plans), queued, nil
}

// start runs a new run: unless it exists, checks its depth and condition
// and executes its store actions, storing it done, or waiting for the
// runner when an external action is next.
func (t *Tenant) start(ctx context.Context, tx storage.Tx, cs *compiledSet, i int, run *AutomationRun,
	sub *subject, record map[string]any, m mode) (bool, error) {
	a := &cs.set.Automations[i]
	sim := func(s Simulation) {
		if m.dry != nil {
			*m.dry = append(*m.dry, s)
		}
	}
	if m.dry == nil {
		if _, err := getRun(ctx, tx, run.ID); err == nil {
			return false, nil // ran before
		} else if !errors.Is(err, storage.ErrNotFound) {
			return false, err
		}
	}
	env := automation.Env{Record: record, Event: run.Event, Vars: a.Vars}
	if sub != nil {
		if cid := sub.contactID(); cid == sub.id && sub.collection == contactsCollection {
			env.Contact = sub.env()
		} else if cid != "" {
			c, err := loadSubject(ctx, tx, contactsCollection, cid)
			if err != nil {
				return false, err
			}
			if c != nil {
				env.Contact = c.env()
			}
		}
	}
	ok, err := a.Holds(env)
	if err != nil {
		// A condition that cannot be evaluated on this record is the
		// automation's problem, not the store's: record it.
		// Retrying cannot make it evaluable, and a retry would run the
		// actions without it: it fails for good.
		err = &actionError{step: -1, kind: "when", err: fmt.Errorf("%w: the condition cannot be evaluated on this record: %w", errRefused, err)}
		if m.dry != nil {
			sim(Simulation{Automation: a.Name, Matched: true, Reason: err.Error()})
			return false, nil
		}
		if m.fail == nil {
			return false, err
		}
	}
	if !ok && err == nil {
		sim(Simulation{Automation: a.Name, Matched: true, Reason: "the condition is false"})
		return false, nil
	}
	run.Event.Depth++
	if run.Event.Depth > t.e.opts.MaxAutomationDepth {
		sim(Simulation{Automation: a.Name, Matched: true, Ran: false, Reason: fmt.Sprintf("stopped: depth %d is over MaxAutomationDepth %d", run.Event.Depth, t.e.opts.MaxAutomationDepth)})
		if m.dry != nil {
			return false, nil
		}
		return false, t.stopRun(ctx, tx, run)
	}
	if m.fail != nil {
		return false, t.failRun(ctx, tx, run, m.fail)
	}
	run.Def = cs.defs[i]
	x := &runExec{t: t, tx: causedTx{Tx: tx, depth: run.Event.Depth, run: run.ID}, cs: cs, ai: i, a: a, run: run, sub: sub, now: t.Now()}
	if err := x.local(ctx); err != nil {
		if m.dry != nil {
			sim(Simulation{Automation: a.Name, Matched: true, Ran: true, Actions: run.Done, Reason: err.Error()})
			return false, nil
		}
		return false, err
	}
	if x.external {
		run.Status, run.NextAt = RunWaiting, x.now
	} else {
		run.Status, run.FinishedAt = RunDone, x.now
	}
	if m.dry != nil {
		s := Simulation{Automation: a.Name, Matched: true, Ran: true, Actions: run.Done}
		for _, act := range a.Do[run.Step:] {
			s.Actions = append(s.Actions, describeExternal(&act))
		}
		sim(s)
		return false, nil
	}
	if m.started != nil {
		*m.started++
	}
	return x.external, putRun(ctx, tx, run)
}

// describeExternal says what an external action would do.
func describeExternal(a *automation.Action) string {
	switch {
	case a.Document != nil:
		return fmt.Sprintf("would render %s and send it via %s", a.Document.Template, a.Document.Via)
	case a.Webhook != nil:
		return fmt.Sprintf("would call %s %s", cmpOr(a.Webhook.Method, "POST"), a.Webhook.URL)
	}
	return a.Kind()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// failRun records a failed attempt of a run: retrying after a backoff, or
// failed for good with the reason on the record's timeline and an
// automation.failed event.
func (t *Tenant) failRun(ctx context.Context, tx storage.Tx, run *AutomationRun, cause error) error {
	now := t.Now()
	run.Attempts++
	run.LastError = truncate(cause.Error(), 2000)
	if permanent(cause) || run.Attempts >= t.e.opts.MaxAutomationAttempts {
		run.Status, run.FinishedAt, run.NextAt = RunFailed, now, time.Time{}
		if err := putRun(ctx, tx, run); err != nil {
			return err
		}
		t.e.log.Warn("automation failed", "tenant", t.id, "automation", run.Automation, "run", run.ID, "err", cause)
		return t.reportRun(ctx, tx, run, TimelineAutomationFailed, "automation.failed",
			fmt.Sprintf("automation %s failed after %d attempt(s): %s", run.Automation, run.Attempts, firstLineOf(run.LastError)))
	}
	run.Status, run.NextAt = RunRetrying, now.Add(t.e.backoff(run.Attempts))
	t.e.log.Info("automation run failed; retrying", "tenant", t.id, "automation", run.Automation, "run", run.ID, "attempt", run.Attempts, "err", cause)
	return putRun(ctx, tx, run)
}

// stopRun records a run stopped as a loop.
func (t *Tenant) stopRun(ctx context.Context, tx storage.Tx, run *AutomationRun) error {
	now := t.Now()
	run.Status, run.FinishedAt = RunStopped, now
	run.LastError = fmt.Sprintf("stopped: the chain of automation runs reached depth %d (MaxAutomationDepth is %d); an automation probably triggers itself", run.Event.Depth, t.e.opts.MaxAutomationDepth)
	if err := putRun(ctx, tx, run); err != nil {
		return err
	}
	t.e.log.Warn("automation loop stopped", "tenant", t.id, "automation", run.Automation, "run", run.ID, "depth", run.Event.Depth)
	return t.reportRun(ctx, tx, run, TimelineAutomationStopped, "automation.loop_stopped", run.LastError)
}

// reportRun puts a run's outcome on its record's timeline and appends an
// event about it.
func (t *Tenant) reportRun(ctx context.Context, tx storage.Tx, run *AutomationRun, entry, event, summary string) error {
	if run.RecordID != "" {
		if err := appendTimeline(ctx, tx, &TimelineEntry{Collection: run.Collection, RecordID: run.RecordID, At: run.FinishedAt,
			Type: entry, Summary: summary, RefCollection: automationRunsCollection, RefID: run.ID}); err != nil {
			return err
		}
	}
	body, err := json.Marshal(struct {
		Data *AutomationRun `json:"data"`
	}{run})
	if err != nil {
		return err
	}
	return tx.Append(ctx, storage.Event{Type: event, Collection: automationRunsCollection, RecordID: run.ID, Time: run.FinishedAt, Body: body})
}

// causedTx is a run's transaction: the events written through it carry
// the run and its depth, so that the runs they trigger are one deeper.
type causedTx struct {
	storage.Tx
	depth int
	run   string
}

// causedBy is tx writing events as consequences of ev: with its depth
// and run, when an automation run caused it.
func causedBy(tx storage.Tx, ev Event) storage.Tx {
	if ev.Depth == 0 {
		return tx
	}
	return causedTx{Tx: tx, depth: ev.Depth, run: ev.Run}
}

func (c causedTx) Append(ctx context.Context, events ...storage.Event) error {
	out := make([]storage.Event, len(events))
	for i, ev := range events {
		extra := fmt.Sprintf(`"depth":%d,"run":%q`, c.depth, c.run)
		b := bytes.TrimSpace(ev.Body)
		switch {
		case len(b) == 0:
			ev.Body = []byte("{" + extra + "}")
		case b[0] == '{' && b[len(b)-1] == '}':
			nb := make([]byte, 0, len(b)+len(extra)+1)
			nb = append(nb, b[:len(b)-1]...)
			if len(bytes.TrimSpace(b[1:len(b)-1])) > 0 {
				nb = append(nb, ',')
			}
			nb = append(append(nb, extra...), '}')
			ev.Body = nb
		}
		out[i] = ev
	}
	return c.Tx.Append(ctx, out...)
}

// callTimeout bounds an external call of a run: HTTPClient's timeout,
// at most (and by default) 30s.
func (e *Engine) callTimeout() time.Duration {
	d := e.httpClient.Timeout
	if d <= 0 || d > 30*time.Second {
		d = 30 * time.Second
	}
	return d
}

// runLease is how long a claimed run is left to the engine that claimed
// it (see claimRun): if that engine dies, another takes the run up after
// it. It is twice the longest external call.
func (e *Engine) runLease() time.Duration { return 2 * e.callTimeout() }

// runWorkers is how many runs an engine continues at once; each may be
// waiting for a webhook, so that a slow endpoint holds one worker, not
// the runner.
const runWorkers = 4

// runPending hands the tenant's runs that are due (waiting for an
// external action, or retrying) to the engine's workers, as many as are
// free, claiming each first; it returns when the next one is due (zero:
// none pending, or none due that a free worker could take).
func (t *Tenant) runPending(ctx context.Context) (time.Time, error) {
	now := t.Now()
	var ids []string
	var next time.Time
	err := t.view(ctx, func(tx storage.ReadTx) error {
		pg, err := tx.Scan(ctx, automationRunsCollection, storage.Query{Index: "pending", Limit: 100})
		if err != nil {
			return err
		}
		for i, rec := range pg.Records {
			due, err := time.Parse(sortableTimeLayout, pg.Keys[i])
			if err != nil {
				return err
			}
			if due.After(now) {
				next = due
				break
			}
			ids = append(ids, rec.ID)
		}
		return nil
	})
	if err != nil {
		return time.Time{}, err
	}
	for _, id := range ids {
		select {
		case t.e.autoSlots <- struct{}{}:
		default:
			return time.Time{}, nil // every worker is busy; one wakes the runner when done
		}
		run, ok, err := t.claimRun(ctx, id, now)
		if err != nil || !ok {
			<-t.e.autoSlots
			if err != nil {
				return time.Time{}, err
			}
			continue
		}
		t.e.workers.Go(func() {
			defer func() {
				<-t.e.autoSlots
				t.e.wakeAutomations()
			}()
			if err := t.continueRun(t.e.runCtx, run); err != nil && t.e.runCtx.Err() == nil {
				t.e.log.Error("automations: continuing a run", "tenant", t.id, "run", run.ID, "err", err)
			}
		})
	}
	return next, nil
}

// claimRun takes a due run for this engine: it moves the run's NextAt a
// lease ahead, so that no other worker or engine takes it up meanwhile.
func (t *Tenant) claimRun(ctx context.Context, id string, now time.Time) (AutomationRun, bool, error) {
	var run AutomationRun
	ok := false
	err := t.update(ctx, func(tx storage.Tx) error {
		ok = false
		r, err := getRun(ctx, tx, id)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if (r.Status != RunWaiting && r.Status != RunRetrying) || r.NextAt.After(now) {
			return nil
		}
		r.NextAt = now.Add(t.e.runLease())
		if err := putRun(ctx, tx, &r); err != nil {
			return err
		}
		run, ok = r, true
		return nil
	})
	return run, ok, err
}

// continueRun takes a claimed run one step further: its external action,
// or its store actions up to the next external one. Every write checks
// that the run is still where the claim found it.
func (t *Tenant) continueRun(ctx context.Context, run AutomationRun) error {
	id := run.ID
	var cs *compiledSet
	err := t.view(ctx, func(tx storage.ReadTx) error {
		var err error
		cs, err = t.compiledSet(ctx, tx)
		return err
	})
	if err != nil {
		return err
	}
	step0 := run.Step
	// same re-reads the run in tx and reports whether it is still as
	// claimed.
	same := func(tx storage.Tx) (AutomationRun, bool, error) {
		r, err := getRun(ctx, tx, id)
		if err != nil {
			return r, false, err
		}
		return r, r.Step == step0 && (r.Status == RunWaiting || r.Status == RunRetrying), nil
	}
	ai := -1
	if cs != nil {
		ai = slices.IndexFunc(cs.set.Automations, func(a automation.Automation) bool { return a.Name == run.Automation })
	}
	if ai < 0 || (run.Def != "" && cs.defs[ai] != run.Def) {
		why := fmt.Errorf("%w: automation %s is no longer in the tenant's set", ErrNotFound, run.Automation)
		if ai >= 0 {
			why = fmt.Errorf("%w: automation %s was changed after this run began; its remaining actions are not run", errRefused, run.Automation)
		}
		return t.update(ctx, func(tx storage.Tx) error {
			r, ok, err := same(tx)
			if err != nil || !ok {
				return err
			}
			return t.failRun(ctx, tx, &r, why)
		})
	}
	a := &cs.set.Automations[ai]
	t.e.resolveKinds(ctx, cs)
	if run.Step < len(a.Do) && isExternal(&a.Do[run.Step]) {
		if extErr := t.external(ctx, cs, ai, &run); extErr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return t.update(ctx, func(tx storage.Tx) error {
				r, ok, err := same(tx)
				if err != nil || !ok {
					return err
				}
				return t.failRun(ctx, tx, &r, &actionError{step: run.Step, kind: a.Do[run.Step].Kind(), err: extErr})
			})
		}
	}
	var failed error
	err = t.update(ctx, func(tx storage.Tx) error {
		r, ok, err := same(tx)
		if err != nil || !ok {
			return err // or another engine moved it on
		}
		r.Step, r.Done = run.Step, run.Done
		sub, err := loadSubject(ctx, tx, r.Collection, r.RecordID)
		if err != nil {
			return err
		}
		if sub == nil && r.RecordID != "" {
			return t.failRun(ctx, tx, &r, fmt.Errorf("%w: %s %s was deleted", ErrNotFound, r.Collection, r.RecordID))
		}
		x := &runExec{t: t, tx: causedTx{Tx: tx, depth: r.Event.Depth, run: r.ID}, cs: cs, ai: ai, a: a, run: &r, sub: sub, now: t.Now()}
		if err := x.local(ctx); err != nil {
			failed = err
			return err
		}
		if x.external {
			r.Status, r.NextAt = RunWaiting, x.now
		} else {
			r.Status, r.FinishedAt, r.NextAt = RunDone, x.now, time.Time{}
		}
		return putRun(ctx, tx, &r)
	})
	if failed != nil {
		return t.update(ctx, func(tx storage.Tx) error {
			r, ok, err := same(tx)
			if err != nil || !ok {
				return err
			}
			r.Step, r.Done = run.Step, run.Done
			return t.failRun(ctx, tx, &r, failed)
		})
	}
	return err
}

// external does the external action at run.Step and moves run.Step on.
// A document is a Send whose ID comes from the run, so it is stored once
// however often this is tried; a webhook carries an Idempotency-Key.
func (t *Tenant) external(ctx context.Context, cs *compiledSet, ai int, run *AutomationRun) error {
	act := &cs.set.Automations[ai].Do[run.Step]
	switch {
	case act.Document != nil:
		dealID := ""
		if run.Collection == dealsCollection {
			dealID = run.RecordID
		} else if run.RecordID != "" {
			var sub *subject
			if err := t.view(ctx, func(tx storage.ReadTx) error {
				var err error
				sub, err = loadSubject(ctx, tx, run.Collection, run.RecordID)
				return err
			}); err != nil {
				return err
			}
			dealID = sub.str("deal_id")
		}
		if dealID == "" {
			return fmt.Errorf("%w: a document needs a deal, and the run's record has none", errRefused)
		}
		sendID := runChildID(run.ID, run.Step)
		if _, err := t.Sends().Get(ctx, sendID); err == nil {
			// Queued by an earlier try; the deal may have changed since.
			run.Done = append(run.Done, "document "+act.Document.Template+" (queued before)")
			run.Step++
			return nil
		}
		s, err := t.SendDocumentWith(ctx, DocumentSend{ID: sendID, DealID: dealID,
			Template: act.Document.Template, Via: act.Document.Via, Format: docFormat(act.Document.Format),
			cause: Event{Depth: run.Event.Depth, Run: run.ID}})
		switch {
		case errors.Is(err, ErrExists):
			run.Done = append(run.Done, "document "+act.Document.Template+" (queued before)")
		case err != nil:
			return err
		default:
			run.Done = append(run.Done, fmt.Sprintf("document %s via %s (send %s)", act.Document.Template, act.Document.Via, s.ID))
		}
	case act.Webhook != nil:
		status, err := t.callWebhook(ctx, cs, ai, run)
		if err != nil {
			return err
		}
		run.Done = append(run.Done, fmt.Sprintf("webhook %s answered %d", act.Webhook.URL, status))
	}
	run.Step++
	return nil
}

// webhookError is a webhook's answer other than 2xx.
type webhookError struct {
	Status int
	Body   string
}

func (e *webhookError) Error() string {
	return fmt.Sprintf("webhook answered %d: %s", e.Status, e.Body)
}

// callWebhook calls the webhook at run.Step.
func (t *Tenant) callWebhook(ctx context.Context, cs *compiledSet, ai int, run *AutomationRun) (int, error) {
	w := cs.set.Automations[ai].Do[run.Step].Webhook
	var body []byte
	var err error
	err = t.view(ctx, func(tx storage.ReadTx) error {
		sub, err := loadSubject(ctx, tx, run.Collection, run.RecordID)
		if err != nil {
			return err
		}
		if tm := cs.tmpl[ai][run.Step]; tm.body != nil {
			// Template data is read in a read transaction; runExec
			// only reads through tx here.
			x := &runExec{t: t, tx: readOnlyTx{tx}, cs: cs, ai: ai, a: &cs.set.Automations[ai], run: run, sub: sub, now: t.Now()}
			d, err := x.messageData(ctx)
			if err != nil {
				return err
			}
			s, err := render(tm.body, tm.custom, d)
			body = []byte(s)
			return err
		}
		var rec json.RawMessage
		if sub != nil && sub.raw != nil {
			rec = sub.raw
		}
		body, err = json.Marshal(struct {
			Run    string               `json:"run"`
			Auto   string               `json:"automation"`
			Event  automation.EventInfo `json:"event"`
			Coll   string               `json:"collection,omitempty"`
			Record json.RawMessage      `json:"record,omitempty"`
		}{run.ID, run.Automation, run.Event, run.Collection, rec})
		return err
	})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.e.callTimeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, cmpOr(w.Method, http.MethodPost), w.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errRefused, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", t.id+"/"+runChildID(run.ID, run.Step))
	req.Header.Set("User-Agent", "rapport-automations")
	for k, v := range w.Headers {
		req.Header.Set(k, v)
	}
	resp, err := t.e.httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, nil
	}
	werr := &webhookError{Status: resp.StatusCode, Body: strings.TrimSpace(string(msg))}
	if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return 0, fmt.Errorf("%w: %w", errRefused, werr) // refused: retrying will not help
	}
	return 0, werr
}

// readOnlyTx lets runExec read in a read transaction; writes fail.
type readOnlyTx struct{ storage.ReadTx }

func (readOnlyTx) Put(context.Context, string, storage.Record) (storage.Record, error) {
	return storage.Record{}, errors.New("read-only")
}
func (readOnlyTx) Delete(context.Context, string, string, uint64) error {
	return errors.New("read-only")
}
func (readOnlyTx) Append(context.Context, ...storage.Event) error { return errors.New("read-only") }
func (readOnlyTx) RedactEvents(context.Context, string, []string, []byte) (int, error) {
	return 0, errors.New("read-only")
}

// resolveKinds learns the channel of the connectors the set's messages go
// through (asking each once), so that runs address them without calling
// a plugin inside a transaction.
func (e *Engine) resolveKinds(ctx context.Context, cs *compiledSet) {
	if e.opts.Plugins == nil {
		return
	}
	for _, a := range cs.set.Automations {
		for _, act := range a.Do {
			if act.Message == nil {
				continue
			}
			if _, ok := e.kinds.Load(act.Message.Via); ok {
				continue
			}
			c, err := e.opts.Plugins.Connector(act.Message.Via)
			if err != nil {
				continue
			}
			e.channelKind(ctx, act.Message.Via, c)
		}
	}
}

// sortRuns sorts runs by creation, then ID.
func sortRuns(runs []AutomationRun) {
	slices.SortFunc(runs, func(a, b AutomationRun) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// Simulation is what SimulateAutomations found for one automation whose
// trigger takes up the event.
type Simulation struct {
	Automation string
	// Matched: the trigger takes up the event (always true in results).
	Matched bool
	// Ran: the condition held; Actions says what each action did, in a
	// transaction that was then rolled back.
	Ran     bool
	Actions []string
	// Reason says why it did not run, or which action failed.
	Reason string
}

// errDryRun rolls back a simulation's transaction.
var errDryRun = errors.New("dry run")

// SimulateAutomations returns what the tenant's automations would do
// for ev (Type, Collection and ID; Data defaults to the record as it is
// now, in stage ev.To when set, for a stage change; From, Segment and
// Changed as the event would have them): which triggers take it up, whether their conditions hold, and
// what each action would do, found by running them in a transaction that
// is rolled back, so nothing is written (documents and webhooks are only
// described). A tenant without automations gives no simulations.
func (t *Tenant) SimulateAutomations(ctx context.Context, ev Event) ([]Simulation, error) {
	if ev.Type == "" {
		return nil, fmt.Errorf("crm: simulate automations: %w: the event has no type", ErrInvalid)
	}
	var out []Simulation
	err := t.update(ctx, func(tx storage.Tx) error {
		cs, err := t.compiledSet(ctx, tx)
		if err != nil || cs == nil {
			return err
		}
		data := ev.Data
		if len(data) == 0 && ev.ID != "" && ev.Collection != "" && !strings.HasPrefix(ev.Type, "segment.") {
			rec, err := tx.Get(ctx, ev.Collection, ev.ID)
			if err != nil {
				return fmt.Errorf("%s %s: %w", ev.Collection, ev.ID, err)
			}
			data = rec.Body
		}
		if ev.To != "" && len(data) > 0 {
			// "What if it moved to To": the record, in that stage.
			var m map[string]any
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			if err := dec.Decode(&m); err != nil {
				return err
			}
			m["stage"] = ev.To
			if data, err = json.Marshal(m); err != nil {
				return err
			}
		}
		body, err := json.Marshal(struct {
			Data    json.RawMessage `json:"data,omitempty"`
			Changed []string        `json:"changed,omitempty"`
			From    string          `json:"from,omitempty"`
			Depth   int             `json:"depth,omitempty"`
			Segment string          `json:"segment,omitempty"`
			Contact string          `json:"contact,omitempty"`
		}{data, ev.Changed, ev.From, ev.Depth, ev.Segment, ev.ID})
		if err != nil {
			return err
		}
		se := storage.Event{Seq: ev.Seq, Tenant: t.id, Type: ev.Type, Collection: ev.Collection, RecordID: ev.ID, Time: t.Now(), Body: body}
		if _, _, err := t.automateEvent(ctx, tx, cs, se, mode{run: -3, dry: &out}); err != nil {
			return err
		}
		return errDryRun
	})
	if err != nil && !errors.Is(err, errDryRun) {
		return nil, fmt.Errorf("crm: simulate automations: %w", err)
	}
	return out, nil
}

// SimulateAutomations is Tenant.SimulateAutomations on the default tenant.
func (e *Engine) SimulateAutomations(ctx context.Context, ev Event) ([]Simulation, error) {
	return e.Default().SimulateAutomations(ctx, ev)
}
