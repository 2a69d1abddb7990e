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

	// Deliver gives up waiting with its context but the event stays.
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	err = b.Deliver(short, form("late"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "event late not yet stored by the host")
	assert.Equal(t, 1, b.Pending())
}
