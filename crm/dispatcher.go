package crm

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/rapportcrm/rapport/storage"
)

// MaxSubscriptionNameLen is the maximum length in bytes of a subscription
// name (the store's ID limit less room for the dead-letter key).
const MaxSubscriptionNameLen = 100

// dispatchBatch is how many events a subscription reads per outbox read;
// its position is acknowledged once per batch.
const dispatchBatch = 100

type subscription struct {
	Subscription
	consumer string // outbox consumer name
}

// Subscribe starts delivering events to s until the engine is closed.
// Each subscription runs in its own goroutine and handles its events one at
// a time, in commit order (so in order per record). Delivery is at least
// once: an event whose handling was interrupted by a crash or Close is
// delivered again by the next engine, so handlers should be idempotent
// (Event.Seq identifies an event). An event that fails
// Options.MaxDeliveryAttempts times is stored as a dead letter (see
// Tenant.DeadLetters), logged, and skipped.
func (e *Engine) Subscribe(s Subscription) error {
	if err := storage.ValidateID("subscription name", s.Name); err != nil {
		return fmt.Errorf("crm: subscribe: %w", err)
	}
	if len(s.Name) > MaxSubscriptionNameLen {
		return fmt.Errorf("crm: subscribe: %w: subscription name is %d bytes, the limit is %d", ErrInvalid, len(s.Name), MaxSubscriptionNameLen)
	}
	if s.Handler == nil {
		return fmt.Errorf("crm: subscribe %s: %w: nil Handler", s.Name, ErrInvalid)
	}
	consumer := "sub:" + s.Name
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if _, dup := e.subs[s.Name]; dup {
		return fmt.Errorf("crm: subscribe: %w: subscription %q already exists", ErrExists, s.Name)
	}
	sub := &subscription{Subscription: s, consumer: consumer}
	sub.Events = append([]string(nil), s.Events...)
	e.subs[s.Name] = sub
	e.workers.Go(func() { e.dispatch(sub) })
	return nil
}

// dispatch is the loop of one subscription.
func (e *Engine) dispatch(sub *subscription) {
	ctx := e.runCtx
	log := e.log.With("subscription", sub.Name)
	readFailures := 0
	for ctx.Err() == nil {
		signal := e.store.OutboxSignal()
		evs, err := e.store.ReadOutbox(ctx, sub.consumer, dispatchBatch)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			readFailures++
			log.Error("reading the outbox failed", "err", err, "failures", readFailures)
			e.sleep(ctx, e.backoff(readFailures))
			continue
		}
		readFailures = 0
		if len(evs) == 0 {
			select {
			case <-signal:
			case <-ctx.Done():
			case <-time.After(e.opts.PollInterval):
			}
			continue
		}
		var done uint64
		for _, se := range evs {
			if !sub.matches(se.Type) {
				done = se.Seq
				continue
			}
			if !e.deliver(ctx, sub, se) {
				break // not done: it and the rest come again
			}
			done = se.Seq
		}
		if done == 0 {
			continue
		}
		// Acknowledge even when closing: the handled events are done.
		ackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = e.store.AckOutbox(ackCtx, sub.consumer, done)
		cancel()
		if err != nil {
			log.Error("acknowledging events failed; they will be delivered again", "err", err, "seq", done)
		}
	}
}

// deliver calls the handler until it succeeds or runs out of attempts and
// the event is stored as a dead letter. It returns false if the event was
// neither handled nor stored (the engine is closing, or the dead letter
// could not be written): it must then not be acknowledged.
func (e *Engine) deliver(ctx context.Context, sub *subscription, se storage.Event) bool {
	log := e.log.With("subscription", sub.Name, "event", se.Type, "seq", se.Seq)
	ev, err := eventFromStorage(se)
	if err != nil {
		return e.deadLetter(ctx, log, sub.Name, se, 0, err)
	}
	for attempt := 1; ; attempt++ {
		err := callHandler(ctx, sub.Handler, ev)
		switch {
		case err == nil:
			return true
		case ctx.Err() != nil:
			return false
		case attempt >= e.opts.MaxDeliveryAttempts:
			return e.deadLetter(ctx, log, sub.Name, se, attempt, err)
		}
		log.Warn("handler failed; retrying", "err", err, "attempt", attempt)
		if !e.sleep(ctx, e.backoff(attempt)) {
			return false
		}
	}
}

// callHandler calls h and turns a panic into an error.
func callHandler(ctx context.Context, h Handler, ev Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return h(ctx, ev)
}

// backoff returns the wait before retry number n (1-based).
func (e *Engine) backoff(n int) time.Duration {
	d := e.opts.RetryBackoff
	for i := 1; i < n && d < e.opts.MaxRetryBackoff; i++ {
		d *= 2
	}
	return min(d, e.opts.MaxRetryBackoff)
}

// sleep waits for d or until ctx is done; it reports whether d passed.
func (e *Engine) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
