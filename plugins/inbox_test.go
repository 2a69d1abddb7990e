package plugins_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
)

func form(id string) plugins.InboundEvent {
	return plugins.InboundEvent{ID: id, Form: &plugins.FormSubmission{Form: "f"}}
}

func TestInbox(t *testing.T) {
	b := plugins.NewInbox(2)
	id, err := b.Post(plugins.InboundEvent{Call: &plugins.CallEvent{CallID: "c1", State: "started"}})
	require.NoError(t, err)
	assert.Len(t, id, 24, "an empty ID gets a random one")
	_, err = b.Post(form("f1"))
	require.NoError(t, err)
	_, err = b.Post(form("f2"))
	require.ErrorIs(t, err, plugins.ErrInboxFull)

	_, err = b.Post(plugins.InboundEvent{ID: "both", Form: &plugins.FormSubmission{}, Call: &plugins.CallEvent{}})
	require.ErrorIs(t, err, plugins.ErrRejected)
	_, err = b.Post(plugins.InboundEvent{ID: "none"})
	require.ErrorIs(t, err, plugins.ErrRejected)

	// A failed delivery keeps the event; the next Receive starts with it.
	boom := errors.New("boom")
	err = b.Receive(context.Background(), func(context.Context, plugins.InboundEvent) error { return boom })
	require.ErrorIs(t, err, boom)
	assert.Equal(t, 2, b.Pending())

	ctx, cancel := context.WithCancel(context.Background())
	var got []string
	err = b.Receive(ctx, func(_ context.Context, ev plugins.InboundEvent) error {
		got = append(got, ev.ID)
		if len(got) == 2 {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, []string{id, "f1"}, got)
	assert.Zero(t, b.Pending())

	// Deliver gives up waiting with its context and takes the event back:
	// the sender, told to retry, is the one copy.
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	err = b.Deliver(short, form("late"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "event late not stored by the host, taken back")
	assert.Zero(t, b.Pending())
}

// A second Receive (a host reconnecting) waits for the first to put back
// the event it was delivering, so events keep their order.
func TestInboxReceivesOneAtATime(t *testing.T) {
	b := plugins.NewInbox(0)
	for _, id := range []string{"a", "b"} {
		_, err := b.Post(form(id))
		require.NoError(t, err)
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	inA := make(chan struct{})
	done1 := make(chan error, 1)
	go func() {
		done1 <- b.Receive(ctx1, func(ctx context.Context, ev plugins.InboundEvent) error {
			close(inA)
			<-ctx.Done() // the host went away mid-delivery
			return ctx.Err()
		})
	}()
	<-inA
	var got []string
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	done2 := make(chan error, 1)
	go func() {
		done2 <- b.Receive(ctx2, func(_ context.Context, ev plugins.InboundEvent) error {
			got = append(got, ev.ID)
			if len(got) == 2 {
				cancel2()
			}
			return nil
		})
	}()
	time.Sleep(20 * time.Millisecond) // the second waits
	cancel1()
	require.ErrorIs(t, <-done1, context.Canceled)
	require.ErrorIs(t, <-done2, context.Canceled)
	assert.Equal(t, []string{"a", "b"}, got)
}
