package crm_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/memory"
)

// benchDirs are directories that benchmarks share across runs; TestMain
// removes them at the end.
var benchDirs []string

func TestMain(m *testing.M) {
	if path := os.Getenv(automationChildEnv); path != "" {
		if err := automationChild(path, os.Getenv(automationHookEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "automation child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		for _, dir := range benchDirs {
			if err := os.RemoveAll(dir); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}
		os.Exit(code)
	}))
}

// fakeClock is a settable clock for tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	engine *crm.Engine
	store  storage.Store
	clock  *fakeClock
}

// setup opens an engine on a memory store with a fake clock and fast retries.
func setup(t *testing.T) env {
	t.Helper()
	st := memory.New()
	clock := newClock()
	e, err := crm.Open(context.Background(), crm.Options{
		Store: st, Clock: clock,
		RetryBackoff: time.Millisecond, MaxRetryBackoff: 5 * time.Millisecond,
		PollInterval: 10 * time.Millisecond,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, e.Close())
		require.NoError(t, st.Close())
	})
	return env{engine: e, store: st, clock: clock}
}

func TestOpenDefaultsToBoltAtPath(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crm.db")
	e, err := crm.Open(ctx, crm.Options{Path: path})
	require.NoError(t, err)
	c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", Email: "ada@example.com"})
	require.NoError(t, err)
	assert.Equal(t, "default", c.Tenant)
	require.NoError(t, e.Close())
	require.NoError(t, e.Close(), "Close is idempotent")

	// A second engine on the same file while the first is open fails fast.
	e1, err := crm.Open(ctx, crm.Options{Path: path})
	require.NoError(t, err)
	start := time.Now()
	_, err = crm.Open(ctx, crm.Options{Path: path, LockTimeout: 100 * time.Millisecond})
	require.ErrorIs(t, err, storage.ErrLocked)
	assert.Less(t, time.Since(start), 5*time.Second)
	got, err := e1.Contacts().Get(ctx, c.ID)
	require.NoError(t, err, "the record survived close and reopen")
	assert.Equal(t, c, got)
	require.NoError(t, e1.Close())
}

func TestOpenRejectsBadOptions(t *testing.T) {
	ctx := context.Background()
	for name, o := range map[string]crm.Options{
		"bad default tenant": {Store: memory.New(), DefaultTenant: "a\nb"},
		"negative timeout":   {Store: memory.New(), LockTimeout: -time.Second},
		"negative attempts":  {Store: memory.New(), MaxDeliveryAttempts: -1},
		"negative backoff":   {Store: memory.New(), RetryBackoff: -1},
		"negative poll":      {Store: memory.New(), PollInterval: -1},
		"closed store": {Store: func() storage.Store {
			s := memory.New()
			_ = s.Close()
			return s
		}()},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := crm.Open(ctx, o)
			require.Error(t, err)
		})
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err := crm.Open(cancelled, crm.Options{Store: memory.New()})
	require.ErrorIs(t, err, context.Canceled)
}

func TestClosedEngine(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	defer st.Close()
	e, err := crm.Open(ctx, crm.Options{Store: st})
	require.NoError(t, err)
	c, err := e.Contacts().Create(ctx, crm.Contact{Email: "a@example.com"})
	require.NoError(t, err)
	require.NoError(t, e.Close())

	_, err = e.Contacts().Create(ctx, crm.Contact{Email: "b@example.com"})
	require.ErrorIs(t, err, crm.ErrClosed)
	_, err = e.Contacts().Get(ctx, c.ID)
	require.ErrorIs(t, err, crm.ErrClosed)
	_, err = e.Contacts().Update(ctx, c)
	require.ErrorIs(t, err, crm.ErrClosed)
	require.ErrorIs(t, e.Contacts().Delete(ctx, c.ID), crm.ErrClosed)
	_, err = e.Accounts().List(ctx, crm.ListOptions{})
	require.ErrorIs(t, err, crm.ErrClosed)
	err = e.Subscribe(crm.Subscription{Name: "late", Handler: func(context.Context, crm.Event) error { return nil }})
	require.ErrorIs(t, err, crm.ErrClosed)
	_, err = e.Default().DeadLetters(ctx, 0)
	require.ErrorIs(t, err, crm.ErrClosed)

	// The engine did not close a store it was given.
	e2, err := crm.Open(ctx, crm.Options{Store: st})
	require.NoError(t, err)
	got, err := e2.Contacts().Get(ctx, c.ID)
	require.NoError(t, err)
	assert.Equal(t, c.Email, got.Email)
	require.NoError(t, e2.Close())
}

func TestCloseWaitsForRunningCalls(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	const n = 50
	var wg sync.WaitGroup
	results := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "C", Meta: crm.Meta{Tags: []string{string(rune('a' + i%26))}}})
			results <- err
		})
	}
	require.NoError(t, env.engine.Close())
	wg.Wait()
	close(results)
	var ok int
	for err := range results {
		if err == nil {
			ok++
		} else {
			require.ErrorIs(t, err, crm.ErrClosed)
		}
	}
	// Every call that succeeded is in the store, and no other.
	var stored int
	require.NoError(t, env.store.View(ctx, "default", func(tx storage.ReadTx) error {
		p, err := tx.Scan(ctx, "contacts", storage.Query{Limit: storage.MaxScanLimit})
		stored = len(p.Records)
		return err
	}))
	assert.Equal(t, ok, stored)
}

func newMemStore(t *testing.T) storage.Store {
	t.Helper()
	st := memory.New()
	t.Cleanup(func() { _ = st.Close() })
	return st
}
