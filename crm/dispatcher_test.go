package crm_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
)

// recorder collects delivered events.
type recorder struct {
	mu  sync.Mutex
	evs []crm.Event
	got chan struct{}
}

func newRecorder() *recorder { return &recorder{got: make(chan struct{}, 1000)} }

func (r *recorder) handle(_ context.Context, ev crm.Event) error {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
	r.got <- struct{}{}
	return nil
}

// wait blocks until n events have been recorded in total.
func (r *recorder) wait(t *testing.T, n int) []crm.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		if len(r.evs) >= n {
			out := append([]crm.Event(nil), r.evs...)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("timed out waiting for %d events; got %d", n, len(r.evs))
		}
	}
}

func typesOf(evs []crm.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}
	return out
}

func TestSubscribeDeliversEveryEventInOrder(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	// Written before the subscription exists: still delivered.
	early, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "Early"})
	require.NoError(t, err)

	all, contactsCreated, accountsAny := newRecorder(), newRecorder(), newRecorder()
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "all", Handler: all.handle}))
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "created", Events: []string{"contact.created"}, Handler: contactsCreated.handle}))
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "accounts", Events: []string{"account.*"}, Handler: accountsAny.handle}))

	acc, err := env.engine.Tenant("acme").Accounts().Create(ctx, crm.Account{Name: "Acme"})
	require.NoError(t, err)
	c, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", Email: "ada@example.com"})
	require.NoError(t, err)
	c.Title = "Countess"
	c.Email = "ada@lovelace.org"
	_, err = env.engine.Contacts().Update(ctx, c)
	require.NoError(t, err)
	require.NoError(t, env.engine.Contacts().Delete(ctx, early.ID))

	evs := all.wait(t, 5)
	assert.Equal(t, []string{"contact.created", "account.created", "contact.created", "contact.updated", "contact.deleted"}, typesOf(evs))
	for i := 1; i < len(evs); i++ {
		assert.Greater(t, evs[i].Seq, evs[i-1].Seq)
	}
	assert.Equal(t, "acme", evs[1].Tenant)
	assert.Equal(t, acc.ID, evs[1].ID)
	assert.Equal(t, "accounts", evs[1].Collection)
	assert.Equal(t, []string{"email", "title"}, evs[3].Changed)
	var updated crm.Contact
	require.NoError(t, evs[3].Decode(&updated))
	assert.Equal(t, "Countess", updated.Title)
	assert.Equal(t, uint64(2), updated.Version)
	assert.Equal(t, env.clock.Now(), evs[3].Time)
	var deleted crm.Contact
	require.NoError(t, evs[4].Decode(&deleted))
	assert.Equal(t, "Early", deleted.FirstName, "a delete event carries the last state")

	assert.Equal(t, []string{"contact.created", "contact.created"}, typesOf(contactsCreated.wait(t, 2)))
	assert.Equal(t, []string{"account.created"}, typesOf(accountsAny.wait(t, 1)))
}

func TestHandlerFailuresAreRetried(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	var calls atomic.Int32
	rec := newRecorder()
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "flaky", Handler: func(ctx context.Context, ev crm.Event) error {
		switch calls.Add(1) {
		case 1:
			return errors.New("temporary failure")
		case 2:
			panic("handler bug")
		}
		return rec.handle(ctx, ev)
	}}))
	_, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "A"})
	require.NoError(t, err)
	_, err = env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "B"})
	require.NoError(t, err)
	evs := rec.wait(t, 2)
	var first crm.Contact
	require.NoError(t, evs[0].Decode(&first))
	assert.Equal(t, "A", first.FirstName, "the failed event is retried before later ones")
	assert.Equal(t, int32(4), calls.Load())
}

func TestPoisonEventBecomesDeadLetter(t *testing.T) {
	st := newMemStore(t)
	ctx := context.Background()
	e, err := crm.Open(ctx, crm.Options{Store: st, MaxDeliveryAttempts: 3, RetryBackoff: time.Millisecond, PollInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	defer e.Close()
	var poisonCalls atomic.Int32
	rec := newRecorder()
	picky := strings.Repeat("p", crm.MaxSubscriptionNameLen) // the longest name still fits a dead letter
	require.NoError(t, e.Subscribe(crm.Subscription{Name: picky, Handler: func(ctx context.Context, ev crm.Event) error {
		var c crm.Contact
		if err := ev.Decode(&c); err != nil {
			return err
		}
		if c.FirstName == "Poison" {
			poisonCalls.Add(1)
			return fmt.Errorf("cannot handle %s", c.FirstName)
		}
		return rec.handle(ctx, ev)
	}}))
	poison, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Poison"})
	require.NoError(t, err)
	_, err = e.Contacts().Create(ctx, crm.Contact{FirstName: "Fine"})
	require.NoError(t, err)
	rec.wait(t, 1)
	assert.Equal(t, int32(3), poisonCalls.Load())

	dls, err := e.Default().DeadLetters(ctx, 0)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	assert.Equal(t, picky, dls[0].Subscription)
	assert.Equal(t, "contact.created", dls[0].EventType)
	assert.Equal(t, poison.ID, dls[0].RecordID)
	assert.Equal(t, 3, dls[0].Attempts)
	assert.Contains(t, dls[0].Error, "cannot handle Poison")
	assert.Contains(t, string(dls[0].EventBody), "Poison")
}

func TestSubscribeRejectsBadSubscriptions(t *testing.T) {
	env := setup(t)
	ok := func(context.Context, crm.Event) error { return nil }
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "one", Handler: ok}))
	require.ErrorIs(t, env.engine.Subscribe(crm.Subscription{Name: "one", Handler: ok}), crm.ErrExists)
	require.ErrorIs(t, env.engine.Subscribe(crm.Subscription{Name: "two"}), crm.ErrInvalid)
	require.ErrorIs(t, env.engine.Subscribe(crm.Subscription{Name: "", Handler: ok}), crm.ErrInvalid)
	require.ErrorIs(t, env.engine.Subscribe(crm.Subscription{Name: "bad\nname", Handler: ok}), crm.ErrInvalid)
	long := strings.Repeat("s", crm.MaxSubscriptionNameLen)
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: long, Handler: ok}))
	require.ErrorIs(t, env.engine.Subscribe(crm.Subscription{Name: long + "s", Handler: ok}), crm.ErrInvalid)
}

// TestRedeliveryAfterRestart interrupts a handler by closing the engine
// and checks that the next engine on the same file delivers the
// interrupted event again, and not the one already handled.
func TestRedeliveryAfterRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crm.db")
	opts := crm.Options{Path: path, RetryBackoff: time.Millisecond, PollInterval: 10 * time.Millisecond}

	e1, err := crm.Open(ctx, opts)
	require.NoError(t, err)
	for _, name := range []string{"first", "second", "third"} {
		_, err := e1.Contacts().Create(ctx, crm.Contact{FirstName: name})
		require.NoError(t, err)
	}
	blocked := make(chan struct{})
	var handled []string
	require.NoError(t, e1.Subscribe(crm.Subscription{Name: "mailer", Handler: func(ctx context.Context, ev crm.Event) error {
		var c crm.Contact
		require.NoError(t, ev.Decode(&c))
		if c.FirstName == "second" {
			close(blocked)
			<-ctx.Done() // interrupted by Close
			return ctx.Err()
		}
		handled = append(handled, c.FirstName)
		return nil
	}}))
	<-blocked
	require.NoError(t, e1.Close(), "Close waits for the running handler")
	assert.Equal(t, []string{"first"}, handled)

	e2, err := crm.Open(ctx, opts)
	require.NoError(t, err)
	defer e2.Close()
	rec := newRecorder()
	require.NoError(t, e2.Subscribe(crm.Subscription{Name: "mailer", Handler: rec.handle}))
	evs := rec.wait(t, 2)
	var names []string
	for _, ev := range evs {
		var c crm.Contact
		require.NoError(t, ev.Decode(&c))
		names = append(names, c.FirstName)
	}
	assert.Equal(t, []string{"second", "third"}, names)
	// Nothing more arrives.
	time.Sleep(100 * time.Millisecond)
	rec.mu.Lock()
	assert.Len(t, rec.evs, 2, "unexpected extra deliveries")
	rec.mu.Unlock()
}
