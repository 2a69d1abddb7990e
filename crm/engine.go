package crm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/bolt"
)

// Engine is an open Rapport engine: a store, the entities on it, and the
// dispatcher that delivers events to subscriptions. It is safe for
// concurrent use. Create one with Open and release it with Close.
type Engine struct {
	opts     Options
	store    storage.Store
	ownStore bool
	log      *slog.Logger
	clock    Clock

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // running calls
	subs     map[string]*subscription
	// pipelines caches compiled pipeline definitions; schemas custom-field
	// schemas.
	pipelines pipelineCache
	schemas   sync.Map
	// lookup indexes contacts, accounts and leads for search and
	// duplicate detection.
	lookup *indexer
	kinds  sync.Map // connector name → channel kind (Describe)
	// autoSets caches compiled automation sets by tenant; autoWake
	// tells the automation runner that runs are waiting.
	autoSets sync.Map
	autoWake chan struct{}
	// autoSlots bounds the runs continued at once; autoTenants are the
	// tenants whose pending runs the runner looks at.
	autoSlots   chan struct{}
	autoTenants sync.Map
	httpClient  *http.Client
	runCtx      context.Context // cancelled by Close; dispatchers run under it
	stop        context.CancelFunc
	workers     sync.WaitGroup // dispatcher goroutines
}

// Open opens an engine. With no Options.Store it opens (creating if needed)
// the bbolt file at Options.Path. Open declares the engine's collections on
// the store, building any index that is missing.
func Open(ctx context.Context, opts Options) (*Engine, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("crm: open: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("crm: open: %w", err)
	}
	e := &Engine{
		opts:  opts,
		store: opts.Store,
		log:   opts.Logger,
		clock: opts.Clock,
		subs:  map[string]*subscription{},

		autoWake:   make(chan struct{}, 1),
		autoSlots:  make(chan struct{}, runWorkers),
		httpClient: opts.HTTPClient,
	}
	if e.store == nil {
		s, err := bolt.Open(opts.Path, &bolt.Options{Timeout: opts.LockTimeout})
		if err != nil {
			return nil, fmt.Errorf("crm: open: %w", err)
		}
		e.store, e.ownStore = s, true
	}
	if err := e.store.Declare(ctx, collections()...); err != nil {
		return nil, errors.Join(fmt.Errorf("crm: open: %w", err), e.closeStore())
	}
	e.runCtx, e.stop = context.WithCancel(context.Background())
	e.lookup = &indexer{e: e, kinds: lookupKinds()}
	e.workers.Go(e.lookup.run)
	e.workers.Go(e.runAutomations)
	if opts.TimerInterval > 0 {
		e.workers.Add(1)
		go e.runTimers()
	}
	if err := e.startPlugins(); err != nil {
		return nil, errors.Join(fmt.Errorf("crm: open: %w", err), e.Close())
	}
	e.log.Debug("engine opened", "path", opts.Path, "own_store", e.ownStore)
	return e, nil
}

// Close stops the subscriptions (cancelling the context of running
// handlers and waiting for them to return), waits for running calls, and
// closes the store if the engine opened it. Events not yet acknowledged
// are delivered again by the next engine. Close is safe to call more than
// once; later calls return nil.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.stop()
	e.workers.Wait()
	e.inflight.Wait()
	err := e.closeStore()
	e.log.Debug("engine closed")
	return err
}

// catchUpLookup brings the lookup index up to date with every committed
// write.
func (e *Engine) catchUpLookup(ctx context.Context) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	if err := e.lookup.catchUp(ctx); err != nil {
		return fmt.Errorf("crm: search index: %w", err)
	}
	return nil
}

// runTimers calls CheckTimers for the timer tenants every TimerInterval
// until Close.
func (e *Engine) runTimers() {
	defer e.workers.Done()
	tick := time.NewTicker(e.opts.TimerInterval)
	defer tick.Stop()
	for {
		select {
		case <-e.runCtx.Done():
			return
		case <-tick.C:
		}
		for _, id := range e.opts.TimerTenants {
			n, err := e.Tenant(id).CheckTimers(e.runCtx)
			switch {
			case err != nil && e.runCtx.Err() == nil && !errors.Is(err, ErrClosed):
				e.log.Error("checking timers", "tenant", id, "err", err)
			case n != Timers{}:
				e.log.Debug("timers fired", "tenant", id, "breaches", n.Breaches, "reminders", n.Reminders, "overdue", n.Overdue)
			}
		}
	}
}

func (e *Engine) closeStore() error {
	if !e.ownStore {
		return nil
	}
	if err := e.store.Close(); err != nil {
		return fmt.Errorf("crm: close: %w", err)
	}
	return nil
}

// enter registers a running call, or fails if the engine is closed.
func (e *Engine) enter() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.inflight.Add(1)
	return nil
}

func (e *Engine) leave() { e.inflight.Done() }

// Store returns the engine's store, for tools that need raw access.
func (e *Engine) Store() storage.Store { return e.store }

// Tenant returns a view of the engine scoped to one tenant. The tenant name
// follows the rules for storage IDs; an invalid name makes every call of the
// returned Tenant fail with an error that wraps ErrInvalid.
func (e *Engine) Tenant(id string) *Tenant { return &Tenant{e: e, id: id} }

// Default returns the tenant named by Options.DefaultTenant. The Engine's
// own Contacts and Accounts are shortcuts for it.
func (e *Engine) Default() *Tenant { return e.Tenant(e.opts.DefaultTenant) }

// Contacts returns the contacts of the default tenant.
func (e *Engine) Contacts() *Records[Contact] { return e.Default().Contacts() }

// Accounts returns the accounts of the default tenant.
func (e *Engine) Accounts() *Accounts { return e.Default().Accounts() }

// Leads returns the leads of the default tenant.
func (e *Engine) Leads() *Leads { return e.Default().Leads() }

// Deals returns the deals of the default tenant.
func (e *Engine) Deals() *Deals { return e.Default().Deals() }

// Cases returns the service cases of the default tenant.
func (e *Engine) Cases() *Cases { return e.Default().Cases() }

// Contracts returns the service contracts of the default tenant.
func (e *Engine) Contracts() *Records[Contract] { return e.Default().Contracts() }

// Tenant is the engine scoped to one tenant: every record it reads or
// writes belongs to that tenant and no other.
type Tenant struct {
	e  *Engine
	id string
}

// ID returns the tenant's name.
func (t *Tenant) ID() string { return t.id }

// Store returns the store the tenant's records live in, so that callers
// can use a capability some stores add (such as analytics pushdown).
// Writing through it bypasses the engine's validation, indexes and
// events: read only.
func (t *Tenant) Store() storage.Store { return t.e.store }

// Now returns the engine clock's time, in UTC.
func (t *Tenant) Now() time.Time { return t.e.clock.Now().UTC() }

// Location returns the time zone days are counted in (Options.Location).
func (t *Tenant) Location() *time.Location { return t.e.opts.Location }

// Contacts returns the tenant's contacts.
func (t *Tenant) Contacts() *Records[Contact] { return &Records[Contact]{t: t, k: contactKind} }

// Accounts returns the tenant's accounts.
func (t *Tenant) Accounts() *Accounts { return &Accounts{staged(t, accountKind)} }

// Leads returns the tenant's leads.
func (t *Tenant) Leads() *Leads { return &Leads{staged(t, leadKind)} }

// Deals returns the tenant's deals.
func (t *Tenant) Deals() *Deals { return &Deals{staged(t, dealKind)} }

// Cases returns the tenant's service cases.
func (t *Tenant) Cases() *Cases { return &Cases{staged(t, caseKind)} }

// Contracts returns the tenant's service contracts.
func (t *Tenant) Contracts() *Records[Contract] { return &Records[Contract]{t: t, k: contractKind} }

func staged[T any](t *Tenant, k *kind[T]) *Staged[T] {
	return &Staged[T]{Records: &Records[T]{t: t, k: k}}
}

// Accounts are the tenant's accounts, which can move through lifecycle
// pipelines.
type Accounts struct{ *Staged[Account] }

// Leads are the tenant's leads, which move through lead pipelines.
type Leads struct{ *Staged[Lead] }

// Deals are the tenant's deals, which move through sales pipelines.
type Deals struct{ *Staged[Deal] }

// Cases are the tenant's service cases, which move through case pipelines.
type Cases struct{ *Staged[Case] }
