package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/postgres"
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
	conn := rawConn(t, st.Schema())
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
	_, err := conn.Exec(ctx, "COMMIT")
	require.NoError(t, err)
	evs := <-read
	require.Len(t, evs, 2)
	assert.Equal(t, "x.first", evs[0].Type)
	assert.Equal(t, "x.second", evs[1].Type)
	assert.Equal(t, evs[0].Seq+1, evs[1].Seq)
}

// Events not numbered yet do not count as the end of the outbox: with
// only pending events, acknowledging 0 is a no-op and beyond it is
// refused. (OutboxHead numbers them first.)
func TestOutboxPendingIsNotTheEnd(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error { return tx.Append(ctx, storage.Event{Type: "x.pending"}) }))
	require.NoError(t, st.AckOutbox(ctx, "c", 0))
	require.ErrorIs(t, st.AckOutbox(ctx, "c", 5), storage.ErrInvalid)
	head, err := st.OutboxHead(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), head, "numbered by the call")
}

// A redacted event keeps its place: events are numbered in the order
// their transactions wrote them, whoever changed them since.
func TestOutboxOrderAfterRedaction(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	require.NoError(t, st.Declare(ctx, storage.Collection{Name: "things"}))
	write := func(typ, id string, redact ...string) {
		t.Helper()
		require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
			if len(redact) > 0 {
				if _, err := tx.RedactEvents(ctx, "things", redact, nil); err != nil {
					return err
				}
			}
			return tx.Append(ctx, storage.Event{Type: typ, Collection: "things", RecordID: id, Body: []byte(`{"secret":1}`)})
		}))
	}
	write("a.first", "x")
	write("b.second", "y")
	write("c.third", "z", "x") // redacts x's pending event
	evs, err := st.ReadOutbox(ctx, "c", 10)
	require.NoError(t, err)
	require.Len(t, evs, 3)
	for i, typ := range []string{"a.first", "b.second", "c.third"} {
		assert.Equal(t, typ, evs[i].Type)
		assert.Equal(t, uint64(i+1), evs[i].Seq)
	}
	assert.Empty(t, evs[0].Body, "redacted")
	assert.JSONEq(t, `{"secret":1}`, string(evs[1].Body))
}

// A transaction that redacts an event another reader numbered after the
// transaction began fails with ErrConflict (it would not see the
// numbered event), and redacts it when run again.
func TestRedactEventsNumberedMeanwhile(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	require.NoError(t, st.Declare(ctx, storage.Collection{Name: "things"}))
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		return tx.Append(ctx, storage.Event{Type: "x.made", Collection: "things", RecordID: "x", Body: []byte(`{"secret":1}`)})
	}))
	redact := func(meanwhile func()) (int, error) {
		n := 0
		err := st.Update(ctx, "t", func(tx storage.Tx) error {
			if _, err := tx.Get(ctx, "things", "other"); !errors.Is(err, storage.ErrNotFound) { // takes the snapshot
				return err
			}
			meanwhile()
			var err error
			n, err = tx.RedactEvents(ctx, "things", []string{"x"}, nil)
			return err
		})
		return n, err
	}
	_, err := redact(func() {
		_, err := st.OutboxHead(ctx) // numbers the event
		require.NoError(t, err)
	})
	require.ErrorIs(t, err, storage.ErrConflict)
	n, err := redact(func() {})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	evs, err := st.ReadOutbox(ctx, "c", 10)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	assert.Empty(t, evs[0].Body)
}

// A transaction of more events than share a draw of a pending number
// (2^20; 3 here) keeps its events in order.
func TestOutboxLargeTransaction(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	st.SetPendingGroup(3)
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		for i := range 7 {
			if err := tx.Append(ctx, storage.Event{Type: "x.made", RecordID: strconv.Itoa(i)}); err != nil {
				return err
			}
		}
		return nil
	}))
	evs, err := st.ReadOutbox(ctx, "c", 10)
	require.NoError(t, err)
	require.Len(t, evs, 7)
	for i, ev := range evs {
		assert.Equal(t, strconv.Itoa(i), ev.RecordID)
		assert.Equal(t, uint64(i+1), ev.Seq)
	}
}

// A transaction that redacts pending events of several collections and a
// reader that numbers them meanwhile do not deadlock: the numbering locks
// pending rows in an order of its own (here the one with the lower
// pending number, of the second collection, first), so the redaction
// takes the outbox lock before it locks any.
func TestRedactEventsWhileNumbering(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	for _, c := range []string{"a", "b"} {
		require.NoError(t, st.Declare(ctx, storage.Collection{Name: c}))
	}
	// Enough numbered events that numbering scans the primary key.
	for range 20 {
		require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
			for range 500 {
				if err := tx.Append(ctx, storage.Event{Type: "z.filler"}); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	_, err := st.OutboxHead(ctx)
	require.NoError(t, err)
	conn := rawConn(t, st.Schema())
	_, err = conn.Exec(ctx, "ANALYZE outbox")
	require.NoError(t, err)
	for _, c := range []string{"b", "a"} {
		require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
			return tx.Append(ctx, storage.Event{Type: c + ".made", Collection: c, RecordID: "r", Body: []byte(`{"secret":1}`)})
		}))
	}

	numbered := make(chan error, 1)
	err = st.Update(ctx, "t", func(tx storage.Tx) error {
		if _, err := tx.RedactEvents(ctx, "b", []string{"r"}, nil); err != nil {
			return err
		}
		go func() {
			b := &pgx.Batch{}
			st.QueueSequencing(b)
			numbered <- conn.SendBatch(ctx, b).Close()
		}()
		time.Sleep(200 * time.Millisecond) // the numbering waits
		_, err := tx.RedactEvents(ctx, "a", []string{"r"}, nil)
		return err
	})
	require.NoError(t, err)
	require.NoError(t, <-numbered)
	evs, err := st.ReadOutbox(ctx, "c", storage.MaxScanLimit)
	require.NoError(t, err)
	for _, ev := range evs {
		if ev.Collection != "" {
			assert.Empty(t, ev.Body, "%s redacted", ev.Type)
		}
	}
}

// rawConn is a connection of its own to the server, in schema.
func rawConn(t *testing.T, schema string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(server.URL)
	require.NoError(t, err)
	cfg.RuntimeParams["search_path"] = schema
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(ctx) })
	return conn
}

// TestNumberingFindsPendingByKey checks that the numbering that readers
// run finds the pending events by a plain scan of the primary key,
// whatever the statistics say, on an outbox of 20,000 events numbered
// and never analysed: before a vacuum, when the entries of the rows the
// last numbering moved are still in the key (a bitmap scan visited those
// rows again on every read; an index scan marks them dead once), and
// after one that did not analyse (the planner, taking a third of the
// rows for pending, scanned the whole outbox). It checks the plan's
// scans, not the pages read: a snapshot older than the move, in any
// session on the server, keeps the moved rows from being marked or
// vacuumed.
func TestNumberingFindsPendingByKey(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	conn := rawConn(t, st.Schema())
	_, err := conn.Exec(ctx, "ALTER TABLE outbox SET (autovacuum_enabled = off)")
	require.NoError(t, err)
	appendEvents := func(n int) {
		require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
			evs := make([]storage.Event, n)
			for i := range evs {
				evs[i] = storage.Event{Type: "z.filler", Body: []byte(`{"note":"an event of a realistic size, with a body of some hundred bytes or so"}`)}
			}
			return tx.Append(ctx, evs...)
		}))
	}
	// scans runs the numbering's statements as a reader sends them, the
	// numbering explained, in a transaction rolled back, and returns the
	// scans of its plan (node type and index or table).
	scans := func() []string {
		b := &pgx.Batch{}
		st.QueueSequencing(b)
		var plan []byte
		for _, q := range b.QueuedQueries {
			var err error
			switch {
			case q.SQL == "COMMIT":
				_, err = conn.Exec(ctx, "ROLLBACK")
			case strings.Contains(q.SQL, "DELETE FROM outbox"):
				err = conn.QueryRow(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+q.SQL, q.Arguments...).Scan(&plan)
			default:
				_, err = conn.Exec(ctx, q.SQL, q.Arguments...)
			}
			require.NoError(t, err, q.SQL)
		}
		require.NotNil(t, plan, "no numbering statement in %v", b.QueuedQueries)
		nodes, err := planNodes(plan)
		require.NoError(t, err)
		var found []string
		for _, node := range nodes {
			if name, ok := node["Index Name"].(string); ok {
				found = append(found, fmt.Sprint(node["Node Type"], " ", name))
			} else if rel, ok := node["Relation Name"].(string); ok && node["Node Type"] != "ModifyTable" {
				found = append(found, fmt.Sprint(node["Node Type"], " ", rel))
			}
		}
		return found
	}
	appendEvents(20_000)
	head, err := st.OutboxHead(ctx) // numbers them
	require.NoError(t, err)
	require.Equal(t, uint64(20_000), head)
	var stats int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'outbox'").Scan(&stats))
	require.Zero(t, stats, "the outbox is to have no statistics")

	// Not vacuumed: the first numbering after the move visits the moved
	// rows once; the next ones skip their entries.
	appendEvents(10)
	_, err = st.OutboxHead(ctx)
	require.NoError(t, err)
	appendEvents(10)
	assert.Equal(t, []string{"Index Scan outbox_pkey"}, scans(), "before a vacuum")

	_, err = conn.Exec(ctx, "VACUUM outbox")
	require.NoError(t, err)
	assert.Equal(t, []string{"Index Scan outbox_pkey"}, scans(), "after a vacuum")
}

// readAll reads every event of the outbox for consumer c, acknowledging
// as it goes.
func readAll(t *testing.T, st storage.Store, c string) []storage.Event {
	t.Helper()
	ctx := context.Background()
	var all []storage.Event
	for {
		evs, err := st.ReadOutbox(ctx, c, 1000)
		require.NoError(t, err)
		if len(evs) == 0 {
			return all
		}
		all = append(all, evs...)
		require.NoError(t, st.AckOutbox(ctx, c, evs[len(evs)-1].Seq))
	}
}

// A transaction of many events (CopyEventsMin or more) writes them with
// COPY, and a store under row-level security with an INSERT, as it
// writes fewer: either way they read back as appended, in order, each
// field intact, after the events of a transaction committed before and
// before those of one committed after, across draws of pending numbers.
func TestOutboxManyEvents(t *testing.T) {
	ctx := context.Background()
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	base := time.Date(2026, 12, 4, 8, 0, 0, 123456789, zone)
	for _, tc := range []struct {
		name  string
		n     int
		group int // events per draw of a pending number, 0: the store's
		rls   bool
	}{
		{"insert", postgres.CopyEventsMin - 1, 0, false},
		{"copy", postgres.CopyEventsMin, 0, false},
		{"copy-three-draws", 2*postgres.CopyEventsMin + 7, postgres.CopyEventsMin, false},
		{"row-level-security", postgres.CopyEventsMin + 1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st *postgres.Store
			if tc.rls {
				st, _ = rlsStore(t)
			} else {
				st = open(t)
			}
			if tc.group > 0 {
				st.SetPendingGroup(tc.group)
			}
			one := func(id string) {
				require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
					return tx.Append(ctx, storage.Event{Type: "x.single", RecordID: id, Time: base})
				}))
			}
			one("before")
			want := make([]storage.Event, tc.n)
			for i := range want {
				want[i] = storage.Event{Tenant: "t", Type: "x.made", Collection: "things", RecordID: "r" + strconv.Itoa(i),
					Time: base.Add(time.Duration(i) * time.Nanosecond)}
				if i%7 != 0 {
					want[i].Body = []byte(`{"i":` + strconv.Itoa(i) + `}`)
				}
			}
			require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error { return tx.Append(ctx, want...) }))
			one("after")

			got := readAll(t, st, "c")
			require.Len(t, got, tc.n+2)
			assert.Equal(t, "before", got[0].RecordID)
			assert.Equal(t, "after", got[tc.n+1].RecordID)
			for i, ev := range got {
				require.Equal(t, uint64(i+1), ev.Seq, "event %d", i)
			}
			for i, w := range want {
				ev := got[i+1]
				require.Equal(t, w.RecordID, ev.RecordID, "event %d", i)
				assert.Equal(t, w.Tenant, ev.Tenant)
				assert.Equal(t, w.Type, ev.Type)
				assert.Equal(t, w.Collection, ev.Collection)
				assert.True(t, w.Time.Equal(ev.Time), "event %d: time %v, want %v", i, ev.Time, w.Time)
				_, off := ev.Time.Zone()
				assert.Equal(t, 5*3600+1800, off, "event %d keeps its offset", i)
				if w.Body == nil {
					assert.Empty(t, ev.Body, "event %d", i)
				} else {
					assert.JSONEq(t, string(w.Body), string(ev.Body), "event %d", i)
				}
			}
		})
	}
}

// A transaction of many events that fails, at the send before the COPY
// (a deferred create of a taken ID) or before anything is sent (an event
// time JSON cannot carry), reports why and stores none of them.
func TestOutboxManyEventsRefused(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	require.NoError(t, st.Declare(ctx, storage.Collection{Name: "things"}))
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		_, err := tx.Put(ctx, "things", storage.Record{ID: "a", Body: []byte(`{"n":1}`)})
		return err
	}))
	many := func(last time.Time) []storage.Event {
		evs := make([]storage.Event, postgres.CopyEventsMin+10)
		for i := range evs {
			evs[i] = storage.Event{Type: "x.made", RecordID: strconv.Itoa(i), Time: time.Now()}
		}
		evs[len(evs)-1].Time = last
		return evs
	}

	err := st.Update(ctx, "t", func(tx storage.Tx) error {
		if _, err := tx.(storage.Deferrer).Create(ctx, "things", storage.Record{ID: "a", Body: []byte(`{"n":2}`)}); err != nil {
			return err
		}
		return tx.Append(ctx, many(time.Now())...)
	})
	require.ErrorIs(t, err, storage.ErrExists)

	err = st.Update(ctx, "t", func(tx storage.Tx) error {
		if _, err := tx.(storage.Deferrer).Create(ctx, "things", storage.Record{ID: "b", Body: []byte(`{"n":3}`)}); err != nil {
			return err
		}
		return tx.Append(ctx, many(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))...)
	})
	require.ErrorIs(t, err, storage.ErrInvalid)

	assert.Empty(t, readAll(t, st, "c"))
	head, err := st.OutboxHead(ctx)
	require.NoError(t, err)
	assert.Zero(t, head)
	require.NoError(t, st.View(ctx, "t", func(tx storage.ReadTx) error {
		a, err := tx.Get(ctx, "things", "a")
		require.NoError(t, err)
		assert.Equal(t, uint64(1), a.Version)
		assert.JSONEq(t, `{"n":1}`, string(a.Body))
		_, err = tx.Get(ctx, "things", "b")
		assert.ErrorIs(t, err, storage.ErrNotFound)
		return nil
	}))
}
