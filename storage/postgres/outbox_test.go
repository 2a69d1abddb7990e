package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
)

// Events are written pending and numbered by readers, one numbering
// transaction at a time: a reader that comes while another numbering is
// uncommitted waits for it, so it never reads an event numbered after
// one that is not visible yet (and would be skipped once acknowledged
// past).
func TestOutboxNumberingTakesTurns(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	appendOne := func(typ string) {
		t.Helper()
		require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error { return tx.Append(ctx, storage.Event{Type: typ}) }))
	}
	appendOne("x.first")

	// Another process's reader numbers the first event and has not
	// committed yet.
	cfg, err := pgx.ParseConfig(server.URL)
	require.NoError(t, err)
	cfg.RuntimeParams["search_path"] = st.Schema()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer conn.Close(ctx)
	b := &pgx.Batch{}
	st.QueueSequencing(b)
	b.QueuedQueries = b.QueuedQueries[:len(b.QueuedQueries)-1] // all but COMMIT
	require.NoError(t, conn.SendBatch(ctx, b).Close())

	appendOne("x.second")
	read := make(chan []storage.Event, 1)
	go func() {
		evs, err := st.ReadOutbox(ctx, "c", 10)
		assert.NoError(t, err)
		read <- evs
	}()
	select {
	case evs := <-read:
		t.Fatalf("read while another numbering was uncommitted: %v", evs)
	case <-time.After(300 * time.Millisecond):
	}
	_, err = conn.Exec(ctx, "COMMIT")
	require.NoError(t, err)
	evs := <-read
	require.Len(t, evs, 2)
	assert.Equal(t, "x.first", evs[0].Type)
	assert.Equal(t, "x.second", evs[1].Type)
	assert.Equal(t, evs[0].Seq+1, evs[1].Seq)
}
