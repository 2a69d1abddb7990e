package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/postgres"
)

// A commit with events wakes the OutboxSignal of the other processes on
// the store (a NOTIFY sent after the commit) and its own at once, not a
// second time when its NOTIFY comes back; a NOTIFY asked for when the
// store closes is still sent.
func TestOutboxSignalAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	a := open(t)
	b := openAlso(t, a.Schema())
	appendEvent := func(s *postgres.Store) {
		t.Helper()
		require.NoError(t, s.Update(ctx, "t", func(tx storage.Tx) error { return tx.Append(ctx, storage.Event{Type: "x.one"}) }))
	}
	fired := func(sig <-chan struct{}, within time.Duration) bool {
		if within == 0 {
			select {
			case <-sig:
				return true
			default:
				return false
			}
		}
		select {
		case <-sig:
			return true
		case <-time.After(within):
			return false
		}
	}
	// wakes reports whether a commit of from wakes to, retrying while the
	// listener of to connects.
	wakes := func(from, to *postgres.Store) bool {
		for range 50 {
			sig := to.OutboxSignal()
			appendEvent(from)
			if fired(sig, 200*time.Millisecond) {
				return true
			}
		}
		return false
	}
	require.True(t, wakes(a, b), "a commit in a did not wake b")
	require.True(t, wakes(b, a), "a commit in b did not wake a")

	// Both listen now. A commit fires its own process's signal before
	// Update returns, and no NOTIFY of its own fires it again.
	own := a.OutboxSignal()
	sigB := b.OutboxSignal()
	appendEvent(a)
	require.True(t, fired(own, 0), "the committing process was not woken")
	again := a.OutboxSignal()
	require.True(t, fired(sigB, 5*time.Second), "the NOTIFY was not sent")
	require.False(t, fired(again, 300*time.Millisecond), "the committing process was woken by its own NOTIFY")

	// A store that closes right after a commit still tells the others.
	c := openAlso(t, a.Schema())
	sigB = b.OutboxSignal()
	appendEvent(c)
	require.NoError(t, c.Close())
	require.True(t, fired(sigB, 5*time.Second), "no NOTIFY after a commit just before Close")
}
