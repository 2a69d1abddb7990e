package postgres_test

import (
	"context"
	"encoding/json"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/postgres"
	"github.com/rapportcrm/rapport/storage/postgres/pgtest"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

func execSQL(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, server.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	require.NoError(t, err)
}

func TestOpenConcurrentlyMigratesOnce(t *testing.T) {
	pgtest.Need(t, startErr)
	schema := pgtest.Schema(t)
	var wg sync.WaitGroup
	stores := make([]*postgres.Store, 4)
	errs := make([]error, 4)
	for i := range stores {
		wg.Go(func() {
			stores[i], errs[i] = postgres.Open(context.Background(), server.URL, &postgres.Options{Schema: schema})
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, s := range stores {
			if s != nil {
				_ = s.Close()
			}
		}
		dropSchema(t, schema)
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, server.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var n, maxV int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*), max(version) FROM "+pgx.Identifier{schema, "migrations"}.Sanitize()).Scan(&n, &maxV))
	assert.Equal(t, postgres.Migrations(), n)
	assert.Equal(t, postgres.Migrations(), maxV)
}

func TestOpenRefusesOtherFormats(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	s := open(t)
	schema := s.Schema()
	require.NoError(t, s.Close())

	execSQL(t, "UPDATE "+pgx.Identifier{schema, "meta"}.Sanitize()+" SET value = '2' WHERE key = 'format'")
	_, err := postgres.Open(ctx, server.URL, &postgres.Options{Schema: schema})
	require.ErrorIs(t, err, storage.ErrFormat)
	execSQL(t, "UPDATE "+pgx.Identifier{schema, "meta"}.Sanitize()+" SET value = '1' WHERE key = 'format'")

	execSQL(t, "INSERT INTO "+pgx.Identifier{schema, "migrations"}.Sanitize()+" (version) VALUES (999)")
	_, err = postgres.Open(ctx, server.URL, &postgres.Options{Schema: schema})
	require.ErrorIs(t, err, storage.ErrFormat)
	assert.Contains(t, err.Error(), "migration 999")
}

func TestOpenBadInput(t *testing.T) {
	ctx := context.Background()
	for _, schema := range []string{"Upper", "1x", "a-b", "x y", "a;drop"} {
		_, err := postgres.Open(ctx, "postgres://localhost/x", &postgres.Options{Schema: schema})
		require.ErrorIs(t, err, storage.ErrInvalid, schema)
	}
	_, err := postgres.Open(ctx, "postgres://localhost/x", &postgres.Options{Lease: -time.Second})
	require.ErrorIs(t, err, storage.ErrInvalid)
	_, err = postgres.Open(ctx, "not a url ::: =", nil)
	require.ErrorIs(t, err, storage.ErrInvalid)
}

// TestConsumerLease checks that one process at a time reads a consumer,
// and that another takes over when the first closes.
func TestConsumerLease(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	a := open(t)
	require.NoError(t, a.Declare(ctx, storagetest.Collections()...))
	b := openAlso(t, a.Schema())
	require.NoError(t, b.Declare(ctx, storagetest.Collections()...))
	require.NoError(t, a.Update(ctx, "t", func(tx storage.Tx) error {
		return tx.Append(ctx, storage.Event{Type: "x.one"}, storage.Event{Type: "x.two"}, storage.Event{Type: "x.three"})
	}))

	evs, err := a.ReadOutbox(ctx, "group", 10)
	require.NoError(t, err)
	require.Len(t, evs, 3)
	other, err := b.ReadOutbox(ctx, "group", 10)
	require.NoError(t, err)
	assert.Empty(t, other, "the consumer is leased to a")
	require.ErrorIs(t, b.AckOutbox(ctx, "group", evs[0].Seq), storage.ErrConflict)
	require.NoError(t, a.AckOutbox(ctx, "group", evs[0].Seq))

	mine, err := b.ReadOutbox(ctx, "b-only", 10)
	require.NoError(t, err)
	assert.Len(t, mine, 3, "other consumers are not affected")

	require.NoError(t, a.Close())
	other, err = b.ReadOutbox(ctx, "group", 10)
	require.NoError(t, err)
	require.Len(t, other, 2, "b takes over after a's acknowledged position")
	assert.Equal(t, evs[1].Seq, other[0].Seq)
}

// TestConsumerLeaseStandby checks that a process reading a consumer
// leased to another, as every engine standing by on the store does on
// each commit, neither waits for the numbering of the outbox nor locks
// the consumer's row: it reads nothing at once and leaves the row as it
// was (a lock would mark it with the reader's transaction).
func TestConsumerLeaseStandby(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	a := open(t)
	require.NoError(t, a.Declare(ctx, storagetest.Collections()...))
	b := openAlso(t, a.Schema())
	appendOne := func(typ string) {
		t.Helper()
		require.NoError(t, a.Update(ctx, "t", func(tx storage.Tx) error { return tx.Append(ctx, storage.Event{Type: typ}) }))
	}
	appendOne("x.one")
	evs, err := a.ReadOutbox(ctx, "group", 10)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	appendOne("x.two")

	// Another reader numbers x.two and has not committed yet.
	conn := rawConn(t, a.Schema())
	batch := &pgx.Batch{}
	a.QueueSequencing(batch)
	batch.QueuedQueries = batch.QueuedQueries[:len(batch.QueuedQueries)-1] // all but COMMIT
	require.NoError(t, conn.SendBatch(ctx, batch).Close())

	row := func() (xmax, lease string) {
		t.Helper()
		require.NoError(t, conn.QueryRow(ctx, "SELECT xmax::text, lease_until::text FROM consumers WHERE name = 'group'").Scan(&xmax, &lease))
		return xmax, lease
	}
	xmax, lease := row()
	quick, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	other, err := b.ReadOutbox(quick, "group", 10)
	require.NoError(t, err, "the standby waited for the numbering")
	assert.Empty(t, other, "the consumer is leased to a")
	x, l := row()
	assert.Equal(t, xmax, x, "the standby locked the consumer's row")
	assert.Equal(t, lease, l)

	_, err = conn.Exec(ctx, "COMMIT")
	require.NoError(t, err)
	evs, err = a.ReadOutbox(ctx, "group", 10)
	require.NoError(t, err)
	require.Len(t, evs, 2, "the holder reads on")
	assert.Equal(t, "x.two", evs[1].Type)
	require.NoError(t, a.Close())
	other, err = b.ReadOutbox(ctx, "group", 10)
	require.NoError(t, err)
	assert.Len(t, other, 2, "the standby takes over as soon as the holder closes")
}

// TestConsumerLeaseCloseWakes checks that closing the process that holds
// a consumer's lease wakes the others on the store (OutboxSignal), so a
// standby takes the consumer over at once rather than at its next poll,
// and that closing one that holds no lease wakes nobody.
func TestConsumerLeaseCloseWakes(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	a := open(t)
	require.NoError(t, a.Declare(ctx, storagetest.Collections()...))
	b := openAlso(t, a.Schema())
	idle := openAlso(t, a.Schema())

	woken := b.OutboxSignal()
	require.NoError(t, a.Update(ctx, "t", func(tx storage.Tx) error { return tx.Append(ctx, storage.Event{Type: "x.one"}) }))
	select {
	case <-woken: // a's commit reached b
	case <-time.After(10 * time.Second):
		t.Fatal("b was not told of a's commit")
	}
	evs, err := a.ReadOutbox(ctx, "group", 10)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	other, err := b.ReadOutbox(ctx, "group", 10)
	require.NoError(t, err)
	require.Empty(t, other, "the consumer is leased to a")

	// Reads and acknowledgements send no NOTIFY, nor does closing a
	// store that holds no lease.
	woken = b.OutboxSignal()
	require.NoError(t, idle.Close())
	select {
	case <-woken:
		t.Fatal("closing a store that holds no lease woke b")
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, a.Close())
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatal("closing the holder did not wake b")
	}
	other, err = b.ReadOutbox(ctx, "group", 10)
	require.NoError(t, err)
	assert.Len(t, other, 1, "b takes over")
}

// TestConsumerLeaseExpires checks that a lease left by a process that did
// not close (it crashed) runs out.
func TestConsumerLeaseExpires(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	schema := pgtest.Schema(t)
	a := openSchema(t, schema)
	require.NoError(t, a.Declare(ctx, storagetest.Collections()...))
	require.NoError(t, a.Update(ctx, "t", func(tx storage.Tx) error { return tx.Append(ctx, storage.Event{Type: "x.one"}) }))
	execSQL(t, "INSERT INTO "+pgx.Identifier{schema, "consumers"}.Sanitize()+" (name, acked, owner, lease_until) VALUES ('dead', 0, 'gone', now() + interval '300 milliseconds')")
	evs, err := a.ReadOutbox(ctx, "dead", 10)
	require.NoError(t, err)
	assert.Empty(t, evs, "leased to a process that is gone")
	time.Sleep(400 * time.Millisecond)
	evs, err = a.ReadOutbox(ctx, "dead", 10)
	require.NoError(t, err)
	assert.Len(t, evs, 1, "taken over once the lease ran out")
}

// TestColumnsTable checks that the typed table of an index with Columns
// follows every write and is rebuilt by Declare.
func TestColumnsTable(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	st := open(t)
	cols := []storage.Column{{Name: "city"}, {Name: "at", Type: storage.ColumnTime}, {Name: "amount", Type: storage.ColumnInt}}
	c := storage.Collection{Name: "visits", Indexes: []storage.Index{{Name: "visit", Field: "v"}}}
	require.NoError(t, st.Declare(ctx, c))
	v := func(city, at, amount string) []byte {
		b, err := json.Marshal(map[string]any{"v": []string{city + storage.FieldSep + at + storage.FieldSep + amount}})
		require.NoError(t, err)
		return b
	}
	put := func(id string, version uint64, body []byte) {
		require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
			_, err := tx.Put(ctx, "visits", storage.Record{ID: id, Version: version, Body: body})
			return err
		}))
	}
	put("1", 0, v("Oslo", "2026-01-02T03:04:05.000000006Z", "7"))
	// Declaring the columns builds the table from the stored records.
	c.Indexes[0].Columns = cols
	require.NoError(t, st.Declare(ctx, c))
	put("2", 0, v("Bergen", "", "-3"))
	put("1", 1, v("Oslo", "2026-01-02T03:04:05.000000006Z", "8"))
	put("3", 0, v("Tromsø", "", "1"))
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error { return tx.Delete(ctx, "visits", "3", 1) }))

	conn, err := pgx.Connect(ctx, server.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT id, c_city, c_at, c_amount FROM "+pgx.Identifier{st.Schema(), storage.ColumnsTable("visits", "visit")}.Sanitize()+
		" WHERE tenant = 't' ORDER BY id")
	require.NoError(t, err)
	type row struct {
		ID, City string
		At       *int64
		Amount   int64
	}
	var got []row
	for rows.Next() {
		var r row
		var id, city []byte
		require.NoError(t, rows.Scan(&id, &city, &r.At, &r.Amount))
		r.ID, r.City = string(id), string(city)
		got = append(got, r)
	}
	require.NoError(t, rows.Err())
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano()
	assert.Equal(t, []row{{ID: "1", City: "Oslo", At: &at, Amount: 8}, {ID: "2", City: "Bergen", Amount: -3}}, got)

	// Dropping the columns drops the table.
	c.Indexes[0].Columns = nil
	require.NoError(t, st.Declare(ctx, c))
	var n int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2", st.Schema(), storage.ColumnsTable("visits", "visit")).Scan(&n))
	assert.Zero(t, n)
}

// TestConnectionLoss terminates the store's sessions in the middle of a
// transaction: the transaction fails with storage.ErrUnavailable and
// leaves nothing behind, and the next one runs on a new connection.
func TestConnectionLoss(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	schema := pgtest.Schema(t)
	u, err := url.Parse(server.URL)
	require.NoError(t, err)
	q := u.Query()
	q.Set("application_name", "connloss")
	u.RawQuery = q.Encode()
	st, err := postgres.Open(ctx, u.String(), &postgres.Options{Schema: schema})
	require.NoError(t, err)
	defer dropSchema(t, schema)
	defer st.Close()
	require.NoError(t, st.Declare(ctx, storagetest.Collections()...))
	conn, err := pgx.Connect(ctx, server.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)

	err = st.Update(ctx, "t", func(tx storage.Tx) error {
		if _, err := tx.Put(ctx, "counters", storage.Record{ID: "lost", Body: []byte(`{"n":1}`)}); err != nil {
			return err
		}
		_, err := conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'connloss'")
		require.NoError(t, err)
		_, err = tx.Get(ctx, "counters", "lost")
		require.ErrorIs(t, err, storage.ErrUnavailable)
		return err
	})
	require.ErrorIs(t, err, storage.ErrUnavailable)

	require.Eventually(t, func() bool {
		return st.Update(ctx, "t", func(tx storage.Tx) error {
			_, err := tx.Put(ctx, "counters", storage.Record{ID: "kept", Body: []byte(`{"n":2}`)})
			return err
		}) == nil
	}, 10*time.Second, 50*time.Millisecond, "a new transaction gets a new connection")
	require.NoError(t, st.View(ctx, "t", func(tx storage.ReadTx) error {
		_, err := tx.Get(ctx, "counters", "lost")
		require.ErrorIs(t, err, storage.ErrNotFound, "the lost transaction left nothing")
		_, err = tx.Get(ctx, "counters", "kept")
		return err
	}))
}

// TestCreateMany checks the bulk create: the records land as Put would
// put them (indexes, unique values, typed columns), and a bad batch writes
// nothing, says which record failed and leaves the transaction usable.
func TestCreateMany(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	st := open(t)
	visits := storage.Collection{Name: "visits", Indexes: []storage.Index{{Name: "visit", Field: "v", Columns: []storage.Column{{Name: "city"}, {Name: "n", Type: storage.ColumnInt}}}}}
	require.NoError(t, st.Declare(ctx, append(storagetest.Collections(), visits)...))
	person := func(id, email string) storage.Record {
		return storage.Record{ID: id, Body: []byte(`{"email":"` + email + `","tags":["a","b"],"address":{"city":"Oslo"}}`)}
	}
	createMany := func(tx storage.Tx, coll string, recs ...storage.Record) ([]storage.Record, error) {
		return tx.(storage.BulkCreator).CreateMany(ctx, coll, recs)
	}
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		out, err := createMany(tx, "people", person("p1", "a@x"), person("p2", "b@x"))
		require.NoError(t, err)
		require.Len(t, out, 2)
		assert.Equal(t, uint64(1), out[1].Version)
		body, err := json.Marshal(map[string]string{"v": "Oslo" + storage.FieldSep + "3"})
		require.NoError(t, err)
		_, err = createMany(tx, "visits", storage.Record{ID: "v1", Body: body})
		return err
	}))

	for name, c := range map[string]struct {
		recs  []storage.Record
		index int
		is    error
	}{
		"ID taken":              {[]storage.Record{person("p3", "c@x"), person("p1", "d@x")}, 1, storage.ErrExists},
		"ID twice":              {[]storage.Record{person("p3", "c@x"), person("p3", "d@x")}, 1, storage.ErrExists},
		"unique value held":     {[]storage.Record{person("p3", "c@x"), person("p4", "a@x")}, 1, storage.ErrExists},
		"unique value twice":    {[]storage.Record{person("p3", "c@x"), person("p4", "c@x")}, 1, storage.ErrExists},
		"bad body":              {[]storage.Record{person("p3", "c@x"), {ID: "p4", Body: []byte(`[1]`)}}, 1, storage.ErrInvalid},
		"version on a creation": {[]storage.Record{{ID: "p3", Version: 2, Body: []byte(`{}`)}}, 0, storage.ErrInvalid},
	} {
		err := st.Update(ctx, "t", func(tx storage.Tx) error {
			_, err := createMany(tx, "people", c.recs...)
			var re *storage.RecordError
			require.ErrorAs(t, err, &re, name)
			assert.Equal(t, c.index, re.Index, name)
			require.ErrorIs(t, err, c.is, name)
			// The transaction goes on.
			_, err = tx.Put(ctx, "counters", storage.Record{ID: name, Body: []byte(`{}`)})
			return err
		})
		require.NoError(t, err, name)
	}
	var ue *storage.UniqueError
	err := st.Update(ctx, "t", func(tx storage.Tx) error {
		_, err := createMany(tx, "people", person("p5", "z@x"), person("p6", "a@x"))
		return err
	})
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, "p1", ue.ExistingID)

	// Nothing of the refused batches was written; what was is indexed.
	require.NoError(t, st.View(ctx, "t", func(tx storage.ReadTx) error {
		pg, err := tx.Scan(ctx, "people", storage.Query{})
		require.NoError(t, err)
		assert.Len(t, pg.Records, 2)
		pg, err = tx.Scan(ctx, "people", storage.Query{Index: "email", Equal: "b@x"})
		require.NoError(t, err)
		require.Len(t, pg.Records, 1)
		assert.Equal(t, "p2", pg.Records[0].ID)
		pg, err = tx.Scan(ctx, "people", storage.Query{Index: "tags", Equal: "a"})
		require.NoError(t, err)
		assert.Len(t, pg.Records, 2)
		return nil
	}))
	conn, err := pgx.Connect(ctx, server.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var n int64
	require.NoError(t, conn.QueryRow(ctx, "SELECT c_n FROM "+pgx.Identifier{st.Schema(), storage.ColumnsTable("visits", "visit")}.Sanitize()).Scan(&n))
	assert.Equal(t, int64(3), n)
}
