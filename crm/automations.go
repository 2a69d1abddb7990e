package crm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/storage"
)

// Automations run the routine by themselves: a tenant's automation set
// (package automation) is stored with Save and then run by the engine.
//
// How runs happen, and what is guaranteed:
//   - Event triggers are read from the outbox by the engine's own
//     consumer ("rapport-automations"), in commit order, a batch at a
//     time. Each (automation, event) pair is one run with an ID derived
//     from both, so an event delivered again after a crash runs nothing
//     twice.
//   - Schedules, dates and inactivity are alarms stored per automation
//     and record, kept up to date from the outbox and fired by
//     CheckTimers (Options.TimerInterval runs it by itself). A fired
//     alarm's runs are stored before the alarm moves on; each run's ID
//     names its occurrence, so none is lost or repeated.
//   - A run's store actions (activities, updates, moves, owners, tags,
//     points, messages and events) commit in one transaction with the
//     run's record: all or nothing. Messages are Sends, delivered by the
//     sender with their idempotency key. Documents and webhooks happen
//     outside the transaction, by a pool of workers, after the run is
//     claimed for twice the HTTP timeout (so no two engines do it at
//     once); the document's Send ID and the webhook's Idempotency-Key
//     header come from the run, so a call repeated after a crash is
//     recognisable.
//   - A run that fails is retried with backoff (Options.RetryBackoff) up
//     to Options.MaxAutomationAttempts times, then recorded as failed
//     with the reason on the record's timeline and an automation.failed
//     event. Other runs go on meanwhile.
//   - Events caused by a run carry its depth; a run deeper than
//     Options.MaxAutomationDepth is stopped, recorded, and reported with
//     an automation.loop_stopped event. automation.* events trigger no
//     automation.
type Automations struct{ t *Tenant }

// Automations returns the tenant's automations.
func (t *Tenant) Automations() *Automations { return &Automations{t: t} }

// Automations returns the default tenant's automations.
func (e *Engine) Automations() *Automations { return e.Default().Automations() }

const (
	automationSetsCollection   = "automation_sets"
	automationRunsCollection   = "automation_runs"
	automationAlarmsCollection = "automation_alarms"
	automationStateCollection  = "automation_state"
	// automationSetID is the ID of a tenant's one set record.
	automationSetID = "set"
	// automationConsumer is the outbox consumer of the automation runner.
	automationConsumer = "sub:rapport-automations"
)

var automationCollections = []storage.Collection{
	{Name: automationSetsCollection},
	{Name: automationRunsCollection, Indexes: []storage.Index{
		{Name: "pending", Extract: pendingRun},
		{Name: "record", Extract: runRecord},
	}},
	{Name: automationAlarmsCollection, Indexes: []storage.Index{
		{Name: "at", Extract: sortableTime("at")},
	}},
	{Name: automationStateCollection},
}

// RunStatus is how far an automation run got.
type RunStatus string

// Run statuses.
const (
	// RunDone: every action ran.
	RunDone RunStatus = "done"
	// RunWaiting: the run has actions left that happen outside the
	// store (a document, a webhook); the runner does them next.
	RunWaiting RunStatus = "waiting"
	// RunRetrying: an action failed; the run is tried again at NextAt.
	RunRetrying RunStatus = "retrying"
	// RunFailed: the run failed MaxAutomationAttempts times, or for good.
	RunFailed RunStatus = "failed"
	// RunStopped: the run was deeper than MaxAutomationDepth.
	RunStopped RunStatus = "stopped"
)

// AutomationRun is one run of an automation: for one event, or one
// occurrence of a schedule, date or inactivity alarm.
type AutomationRun struct {
	// ID is derived from the automation and what triggered it; it is the
	// run's idempotency key.
	ID         string `json:"id"`
	Automation string `json:"automation"`
	// Trigger is "event", "schedule", "date" or "inactivity".
	Trigger string `json:"trigger"`
	// Collection and RecordID name the record the run is about.
	Collection string `json:"collection,omitempty"`
	RecordID   string `json:"record_id,omitempty"`
	// Event is what the condition saw; Event.Time is when the event
	// happened or the alarm was due.
	Event    automation.EventInfo `json:"event"`
	EventSeq uint64               `json:"event_seq,omitempty"`
	Status   RunStatus            `json:"status"`
	// Step is the index of the next action to run.
	Step      int       `json:"step"`
	Attempts  int       `json:"attempts,omitempty"`
	NextAt    time.Time `json:"next_at,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// FinishedAt is when it was done, failed or stopped.
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Done says what each action that ran did.
	Done []string `json:"done,omitempty"`
	// Def identifies the automation's definition the run began under.
	Def string `json:"def,omitempty"`

	version uint64
}

// pendingRun indexes waiting and retrying runs by when they are next due.
func pendingRun(body []byte) ([]string, error) {
	switch RunStatus(gjsonString(body, "status")) {
	case RunWaiting, RunRetrying:
		return sortableTime("next_at")(body)
	}
	return nil, nil
}

// runRecord indexes runs by "<collection>/<record>".
func runRecord(body []byte) ([]string, error) {
	c, id := gjsonString(body, "collection"), gjsonString(body, "record_id")
	if id == "" {
		return nil, nil
	}
	return []string{c + "/" + id}, nil
}

// setRec is the stored form of a tenant's set: its YAML.
type setRec struct {
	File    string    `json:"file,omitempty"`
	Source  string    `json:"source"`
	SavedAt time.Time `json:"saved_at"`
	// FromSeq is the outbox position when the set was saved: events up
	// to it happened before the set and trigger nothing.
	FromSeq uint64 `json:"from_seq,omitempty"`
}

// Save checks the set (conditions, schedules, templates against
// MessageData) and makes it the tenant's automations, replacing the
// previous set. A tenant's first set takes up the events committed after
// it is saved; a new version takes up those the previous one had not
// handled yet. It (re)builds the alarms of schedule, date and
// inactivity triggers from the records as they are, in the same
// transaction; that reads every record of the entities those triggers
// are about. A set with message or document actions needs
// Options.Plugins. An invalid set is an *automation.DefinitionError (or
// wraps ErrInvalid) and changes nothing.
func (a *Automations) Save(ctx context.Context, set *automation.Set) error {
	if set == nil {
		return fmt.Errorf("crm: save automations: %w: nil set", ErrInvalid)
	}
	if !set.Compiled() {
		if err := set.Compile(a.t.e.clock.Now); err != nil {
			return fmt.Errorf("crm: save automations: %w", err)
		}
	}
	if err := CheckAutomations(set); err != nil {
		return fmt.Errorf("crm: save automations: %w", err)
	}
	if a.t.e.opts.Plugins == nil {
		for _, x := range set.Automations {
			for _, act := range x.Do {
				if act.Message != nil || act.Document != nil {
					return fmt.Errorf("crm: save automations: %w: automation %s sends a %s, but the engine has no plugins (Options.Plugins) to send it with", ErrInvalid, x.Name, act.Kind())
				}
			}
		}
	}
	src, err := set.Marshal()
	if err != nil {
		return fmt.Errorf("crm: save automations: %w", err)
	}
	// Load what will be stored, so that what runs is what Get returns.
	cs, err := a.t.e.compileSet(set.File(), src, 0)
	if err != nil {
		return fmt.Errorf("crm: save automations: %w", err)
	}
	now := a.t.Now()
	head, err := a.t.e.store.OutboxHead(ctx)
	if err != nil {
		return fmt.Errorf("crm: save automations: %w", err)
	}
	sr := setRec{File: set.File(), Source: string(src), SavedAt: now, FromSeq: head}
	if err := a.t.register(ctx); err != nil {
		return fmt.Errorf("crm: save automations: %w", err)
	}
	err = a.t.update(ctx, func(tx storage.Tx) error {
		cur, err := tx.Get(ctx, automationSetsCollection, automationSetID)
		var version uint64
		switch {
		case err == nil:
			// A new version of the set takes up the events the previous
			// one had not handled yet: none is dropped.
			var prev setRec
			if err := json.Unmarshal(cur.Body, &prev); err != nil {
				return fmt.Errorf("automation set: %w", err)
			}
			version, sr.FromSeq = cur.Version, prev.FromSeq
		case !errors.Is(err, storage.ErrNotFound):
			return err
		}
		body, err := json.Marshal(sr)
		if err != nil {
			return err
		}
		if _, err := tx.Put(ctx, automationSetsCollection, storage.Record{ID: automationSetID, Version: version, Body: body}); err != nil {
			return err
		}
		if err := a.t.rebuildAlarms(ctx, tx, cs, now); err != nil {
			return err
		}
		return tx.Append(ctx, storage.Event{Type: "automation.saved", Collection: automationSetsCollection, RecordID: automationSetID, Time: now})
	})
	if err != nil {
		return fmt.Errorf("crm: save automations: %w", err)
	}
	return nil
}

// Get returns the tenant's set as stored (compiled with the engine's
// clock), or an error wrapping ErrNotFound.
func (a *Automations) Get(ctx context.Context) (*automation.Set, error) {
	var cs *compiledSet
	err := a.t.view(ctx, func(tx storage.ReadTx) error {
		var err error
		cs, err = a.t.compiledSet(ctx, tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("crm: automations: %w", err)
	}
	if cs == nil {
		return nil, fmt.Errorf("crm: automations: %w: the tenant has none", ErrNotFound)
	}
	return cs.set, nil
}

// Delete removes the tenant's automations and their alarms; runs
// already recorded are kept.
func (a *Automations) Delete(ctx context.Context) error {
	err := a.t.update(ctx, func(tx storage.Tx) error {
		if err := tx.Delete(ctx, automationSetsCollection, automationSetID, 0); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		return deleteAll(ctx, tx, automationAlarmsCollection)
	})
	if err != nil {
		return fmt.Errorf("crm: delete automations: %w", err)
	}
	return nil
}

// Run returns the run with the given ID, or an error wrapping
// ErrNotFound.
func (a *Automations) Run(ctx context.Context, id string) (AutomationRun, error) {
	var r AutomationRun
	err := a.t.view(ctx, func(tx storage.ReadTx) error {
		var err error
		r, err = getRun(ctx, tx, id)
		return err
	})
	if errors.Is(err, storage.ErrNotFound) {
		err = fmt.Errorf("%w: automation run %s", ErrNotFound, id)
	}
	return r, err
}

// Runs returns the runs about one record ("deals", id), oldest first.
func (a *Automations) Runs(ctx context.Context, collection, id string) ([]AutomationRun, error) {
	var out []AutomationRun
	err := a.t.view(ctx, func(tx storage.ReadTx) error {
		return scanAll(ctx, tx, automationRunsCollection, storage.Query{Index: "record", Equal: collection + "/" + id}, func(rec storage.Record) error {
			r, err := decodeRun(rec)
			out = append(out, r)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("crm: automation runs: %w", err)
	}
	sortRuns(out)
	return out, nil
}

// AllRuns calls fn for every run of the tenant, in ID order.
func (a *Automations) AllRuns(ctx context.Context, fn func(AutomationRun) error) error {
	return a.t.view(ctx, func(tx storage.ReadTx) error {
		return scanAll(ctx, tx, automationRunsCollection, storage.Query{}, func(rec storage.Record) error {
			r, err := decodeRun(rec)
			if err != nil {
				return err
			}
			return fn(r)
		})
	})
}

func decodeRun(rec storage.Record) (AutomationRun, error) {
	var r AutomationRun
	if err := json.Unmarshal(rec.Body, &r); err != nil {
		return r, fmt.Errorf("automation run %s: %w", rec.ID, err)
	}
	r.version = rec.Version
	return r, nil
}

func getRun(ctx context.Context, tx storage.ReadTx, id string) (AutomationRun, error) {
	rec, err := tx.Get(ctx, automationRunsCollection, id)
	if err != nil {
		return AutomationRun{}, err
	}
	return decodeRun(rec)
}

func putRun(ctx context.Context, tx storage.Tx, r *AutomationRun) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	rec, err := tx.Put(ctx, automationRunsCollection, storage.Record{ID: r.ID, Version: r.version, Body: body})
	if err != nil {
		return err
	}
	r.version = rec.Version
	return nil
}

// deleteAll deletes every record of a collection of the tenant.
func deleteAll(ctx context.Context, tx storage.Tx, collection string) error {
	var ids []string
	err := scanAll(ctx, tx, collection, storage.Query{KeysOnly: true}, func(rec storage.Record) error {
		ids = append(ids, rec.ID)
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := tx.Delete(ctx, collection, id, 0); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
	}
	return nil
}

// compiledSet returns the tenant's compiled set (nil if it has none),
// from the engine's cache when the stored version is the cached one.
func (t *Tenant) compiledSet(ctx context.Context, tx storage.ReadTx) (*compiledSet, error) {
	rec, err := tx.Get(ctx, automationSetsCollection, automationSetID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// The whole stored body, not the version: a set deleted and saved
	// again starts at version 1 again.
	if c, ok := t.e.autoSets.Load(t.id); ok && bytes.Equal(c.(*compiledSet).raw, rec.Body) {
		return c.(*compiledSet), nil
	}
	var sr setRec
	if err := json.Unmarshal(rec.Body, &sr); err != nil {
		return nil, fmt.Errorf("automation set: %w", err)
	}
	cs, err := t.e.compileSet(sr.File, []byte(sr.Source), rec.Version)
	if err != nil {
		return nil, err
	}
	cs.fromSeq, cs.raw = sr.FromSeq, rec.Body
	t.e.autoSets.Store(t.id, cs)
	return cs, nil
}

func (e *Engine) compileSet(file string, src []byte, version uint64) (*compiledSet, error) {
	set, err := automation.Load(file, src, e.clock.Now)
	if err != nil {
		return nil, err
	}
	tmpl, err := compileTemplates(set)
	if err != nil {
		return nil, err
	}
	defs := make([]string, len(set.Automations))
	for i := range set.Automations {
		b, err := json.Marshal(&set.Automations[i])
		if err != nil {
			return nil, err
		}
		defs[i] = noticeID(string(b))
	}
	return &compiledSet{set: set, version: version, tmpl: tmpl, defs: defs}, nil
}

// registryTenant holds, in the store, the tenants that have automations,
// so that a new engine resumes their pending runs before any event of
// theirs arrives.
const registryTenant = "_rapport"

// register records the tenant in the registry (its own transaction: the
// registry is another tenant).
func (t *Tenant) register(ctx context.Context) error {
	t.e.autoTenants.Store(t.id, true)
	return t.e.store.Update(ctx, registryTenant, func(tx storage.Tx) error {
		_, err := tx.Put(ctx, automationStateCollection, storage.Record{ID: "tenant/" + t.id, Body: []byte(`{}`)})
		if errors.Is(err, storage.ErrExists) {
			return nil
		}
		return err
	})
}

// loadRegistry adds the tenants of the registry to those the runner
// looks at.
func (e *Engine) loadRegistry(ctx context.Context) error {
	return e.store.View(ctx, registryTenant, func(tx storage.ReadTx) error {
		return scanAll(ctx, tx, automationStateCollection, storage.Query{Prefix: "tenant/", KeysOnly: true}, func(rec storage.Record) error {
			e.autoTenants.Store(strings.TrimPrefix(rec.ID, "tenant/"), true)
			return nil
		})
	})
}
