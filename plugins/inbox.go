package plugins

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Inbox queues a connector's inbound events until the host has stored
// them; it implements Connector.Receive. A connector's webhook handler
// calls Deliver, which returns once the host acknowledged the event, so
// the handler can answer the sender "stored" (2xx) or "try again" (5xx)
// truthfully. Events live in memory: those not yet acknowledged are lost
// if the plugin process dies, which is why Deliver waits.
//
// The zero Inbox is not usable; call NewInbox.
type Inbox struct {
	mu      sync.Mutex
	queue   []*inboxItem // in arrival order; delivered ones removed
	wake    chan struct{}
	maxSize int
	// receiving admits one Receive at a time, so that events go out in
	// order: a new stream waits until the old one has put back the event
	// it was delivering.
	receiving chan struct{}
}

type inboxItem struct {
	ev       InboundEvent
	inFlight bool
	done     chan struct{} // closed when acknowledged
}

// ErrInboxFull is returned by Deliver and Post when the inbox holds its
// maximum number of events the host has not acknowledged.
var ErrInboxFull = errors.New("plugins: inbox full")

// NewInbox returns an inbox holding at most max unacknowledged events (0
// means 10,000).
func NewInbox(max int) *Inbox {
	if max <= 0 {
		max = 10000
	}
	return &Inbox{wake: make(chan struct{}, 1), maxSize: max, receiving: make(chan struct{}, 1)}
}

// Post queues an event without waiting for the host. An empty ID gets a
// random one; a zero At gets the current time. It returns the event's ID.
func (b *Inbox) Post(ev InboundEvent) (string, error) {
	it, err := b.add(ev)
	if err != nil {
		return "", err
	}
	return it.ev.ID, nil
}

// Deliver queues an event and waits until the host has acknowledged it or
// ctx is done. When the wait ends with ctx, the event is taken back unless
// the host is storing it at that moment (then it is stored, and a sender
// who retries sends it twice: give events an ID derived from their
// content or the sender's own id, and the host stores them once).
func (b *Inbox) Deliver(ctx context.Context, ev InboundEvent) error {
	it, err := b.add(ev)
	if err != nil {
		return err
	}
	select {
	case <-it.done:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-it.done:
		return nil
	default:
	}
	if !it.inFlight {
		b.queue = slices.DeleteFunc(b.queue, func(q *inboxItem) bool { return q == it })
		return fmt.Errorf("plugins: event %s not stored by the host, taken back: %w", it.ev.ID, ctx.Err())
	}
	return fmt.Errorf("plugins: event %s not yet stored by the host (being stored): %w", it.ev.ID, ctx.Err())
}

// Pending returns the number of events not yet acknowledged.
func (b *Inbox) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

func (b *Inbox) add(ev InboundEvent) (*inboxItem, error) {
	if ev.ID == "" {
		var r [12]byte
		_, _ = rand.Read(r[:])
		ev.ID = hex.EncodeToString(r[:])
	}
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	if n := countSet(ev); n != 1 {
		return nil, fmt.Errorf("plugins: inbound event %s: %w: exactly one of Message, Form, Call and Delivery must be set, not %d", ev.ID, ErrRejected, n)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) >= b.maxSize {
		return nil, ErrInboxFull
	}
	it := &inboxItem{ev: ev, done: make(chan struct{})}
	b.queue = append(b.queue, it)
	b.signal()
	return it, nil
}

func countSet(ev InboundEvent) int {
	n := 0
	for _, set := range []bool{ev.Message != nil, ev.Form != nil, ev.Call != nil, ev.Delivery != nil} {
		if set {
			n++
		}
	}
	return n
}

func (b *Inbox) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// next returns the oldest event not in flight, marking it in flight.
func (b *Inbox) next() *inboxItem {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, it := range b.queue {
		if !it.inFlight {
			it.inFlight = true
			return it
		}
	}
	return nil
}

func (b *Inbox) finish(it *inboxItem, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	it.inFlight = false
	if !ok {
		b.signal()
		return
	}
	for i, q := range b.queue {
		if q == it {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			close(it.done)
			return
		}
	}
}

// Receive implements Connector.Receive: it hands queued events to deliver
// in arrival order, one at a time, and removes each once deliver returned
// nil. It returns when ctx is done or deliver fails; the event it was
// delivering stays queued. Calls run one at a time: a second Receive
// waits for the first to return, so that order holds when the host
// reconnects.
func (b *Inbox) Receive(ctx context.Context, deliver func(context.Context, InboundEvent) error) error {
	select {
	case b.receiving <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-b.receiving }()
	for {
		if it := b.next(); it != nil {
			err := deliver(ctx, it.ev)
			b.finish(it, err == nil)
			if err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.wake:
		}
	}
}
