package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/postgres/pgtest"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

// A Put's writes go with the transaction's next round trip. When a
// concurrent transaction takes the unique value between the Put's check
// and its writes, the transaction fails at commit with a conflict and
// writes nothing.
func TestDeferredWriteLosesUniqueValue(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	st := open(t)
	require.NoError(t, st.Declare(ctx, storagetest.Collections()...))
	person := func(id string) storage.Record {
		return storage.Record{ID: id, Body: []byte(`{"email":"same@x","tags":["a"],"address":{"city":"Oslo"}}`)}
	}

	checked := make(chan struct{})
	committed := make(chan error, 1)
	go func() {
		<-checked
		committed <- st.Update(ctx, "t", func(tx storage.Tx) error {
			_, err := tx.Put(ctx, "people", person("first"))
			return err
		})
	}()
	err := st.Update(ctx, "t", func(tx storage.Tx) error {
		if _, err := tx.Put(ctx, "people", person("second")); err != nil {
			return err // the value was free when checked
		}
		close(checked)
		require.NoError(t, <-committed) // "first" now holds the value
		return tx.Append(ctx, storage.Event{Type: "person.created", Collection: "people", RecordID: "second", Time: time.Now()})
	})
	require.ErrorIs(t, err, storage.ErrConflict)
	assert.Contains(t, err.Error(), "taken by a concurrent transaction")

	// Nothing of the losing transaction was written.
	require.NoError(t, st.View(ctx, "t", func(tx storage.ReadTx) error {
		_, err := tx.Get(ctx, "people", "second")
		require.ErrorIs(t, err, storage.ErrNotFound)
		pg, err := tx.Scan(ctx, "people", storage.Query{Index: "tags", Equal: "a"})
		require.NoError(t, err)
		require.Len(t, pg.Records, 1)
		assert.Equal(t, "first", pg.Records[0].ID)
		return nil
	}))
	head, err := st.OutboxHead(ctx)
	require.NoError(t, err)
	assert.Zero(t, head, "the losing transaction's event was not written")

	// Retried, the write gets the UniqueError it would have had.
	err = st.Update(ctx, "t", func(tx storage.Tx) error {
		_, err := tx.Put(ctx, "people", person("second"))
		return err
	})
	var ue *storage.UniqueError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, "first", ue.ExistingID)
}

// A write transaction that waits for a Declare sees the index rows the
// Declare rebuilt (its snapshot is taken after the lock), and maintains
// the indexes as declared now: a new record is in the new index, and an
// updated one leaves its old value there.
func TestWriteWaitingForDeclare(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	st := open(t)
	old := storage.Collection{Name: "people", Indexes: []storage.Index{{Name: "email", Field: "email", Unique: true}}}
	require.NoError(t, st.Declare(ctx, old))
	// Enough records that rebuilding an index takes a while.
	const n = 30_000
	recs := make([]storage.Record, n)
	for i := range recs {
		recs[i] = storagetest.BenchRecord(i)
	}
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		_, err := tx.(storage.BulkCreator).CreateMany(ctx, "people", recs)
		return err
	}))
	declared := make(chan error, 1)
	go func() { declared <- st.Declare(ctx, storagetest.Collections()[0]) }() // adds tags and city
	// Wait until the Declare holds its lock (a write then waits for it).
	conn, err := pgx.Connect(ctx, server.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.Eventually(t, func() bool {
		var held bool
		err := conn.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			JOIN pg_namespace s ON s.oid = c.relnamespace
			WHERE s.nspname = $1 AND c.relname = 'declare_lock' AND l.mode = 'AccessExclusiveLock' AND l.granted`, st.Schema()).Scan(&held)
		return err == nil && held
	}, 10*time.Second, time.Millisecond)
	// A new record, and one that moves from City 07 to Nowhere.
	moved := storagetest.BenchRecord(7)
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		if _, err := tx.Put(ctx, "people", storagetest.BenchRecord(n)); err != nil {
			return err
		}
		cur, err := tx.Get(ctx, "people", moved.ID)
		if err != nil {
			return err
		}
		_, err = tx.Put(ctx, "people", storage.Record{ID: moved.ID, Version: cur.Version,
			Body: []byte(`{"email":"customer7@example.com","tags":["t7"],"address":{"city":"Nowhere"}}`)})
		return err
	}))
	require.NoError(t, <-declared)

	require.NoError(t, st.View(ctx, "t", func(tx storage.ReadTx) error {
		want := storagetest.BenchRecord(n)
		pg, err := tx.Scan(ctx, "people", storage.Query{Index: "city", Equal: fmt.Sprintf("City %02d", n%50), Limit: storage.MaxScanLimit})
		require.NoError(t, err)
		found := slices.ContainsFunc(pg.Records, func(r storage.Record) bool { return r.ID == want.ID })
		assert.True(t, found, "the new record is in the rebuilt index")
		assert.Equal(t, n/50+1, len(pg.Records))
		pg, err = tx.Scan(ctx, "people", storage.Query{Index: "city", Equal: "City 07", Limit: storage.MaxScanLimit})
		require.NoError(t, err)
		gone := !slices.ContainsFunc(pg.Records, func(r storage.Record) bool { return r.ID == moved.ID })
		assert.True(t, gone, "the updated record left its old city")
		pg, err = tx.Scan(ctx, "people", storage.Query{Index: "city", Equal: "Nowhere"})
		require.NoError(t, err)
		require.Len(t, pg.Records, 1)
		assert.Equal(t, moved.ID, pg.Records[0].ID)
		return nil
	}))
}

// A Declare that changes nothing takes no lock: an engine starting while
// something holds the declare table (pg_dump holds every table it
// dumps) neither waits nor makes the writes queue behind it.
func TestDeclareUnchangedTakesNoLock(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	st := open(t)
	require.NoError(t, st.Declare(ctx, storagetest.Collections()...))
	conn, err := pgx.Connect(ctx, server.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	dump, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer dump.Rollback(ctx) //nolint:errcheck
	_, err = dump.Exec(ctx, "LOCK TABLE "+pgx.Identifier{st.Schema(), "declare_lock"}.Sanitize()+" IN ACCESS SHARE MODE")
	require.NoError(t, err)

	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, st.Declare(dctx, storagetest.Collections()...), "the same declaration again")
	require.NoError(t, st.Update(dctx, "t", func(tx storage.Tx) error {
		_, err := tx.Put(ctx, "people", storagetest.BenchRecord(1))
		return err
	}))
	// A declaration that changes an index waits for the lock.
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	changed := storage.Collection{Name: "people", Indexes: []storage.Index{{Name: "email", Field: "email", Unique: true}}}
	require.Error(t, st.Declare(short, changed))
	require.NoError(t, dump.Rollback(ctx))
	require.NoError(t, st.Declare(ctx, changed))
}
