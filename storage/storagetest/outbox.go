package storagetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
)

// appendEvents commits n events of type typ, one record each, in one
// transaction per event.
func appendEvents(t *testing.T, st storage.Store, tenant, typ string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		id := fmt.Sprintf("%s-%03d", typ, i)
		require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error {
			if _, err := tx.Put(ctx, counters, storage.Record{ID: id, Body: body(t, map[string]int{"n": i})}); err != nil {
				return err
			}
			return tx.Append(ctx, storage.Event{Type: typ, Collection: counters, RecordID: id,
				Time: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), Body: body(t, map[string]int{"i": i})})
		}))
	}
}

func types(evs []storage.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%s/%s", e.Type, e.RecordID)
	}
	return out
}

func (s *suite) testOutbox(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	evs, err := st.ReadOutbox(ctx, "a", 10)
	require.NoError(t, err)
	assert.Empty(t, evs, "a new store has an empty outbox")
	head, err := st.OutboxHead(ctx)
	require.NoError(t, err)
	assert.Zero(t, head)

	appendEvents(t, st, tenant, "x.made", 5)
	// Several events in one transaction keep their order.
	require.NoError(t, st.Update(ctx, "t2", func(tx storage.Tx) error {
		return tx.Append(ctx, storage.Event{Type: "y.one"}, storage.Event{Type: "y.two"})
	}))

	evs, err = st.ReadOutbox(ctx, "a", 100)
	require.NoError(t, err)
	require.Len(t, evs, 7)
	for i, ev := range evs {
		assert.Equal(t, uint64(i+1), ev.Seq-evs[0].Seq+1, "sequence numbers increase by one")
		if i > 0 {
			assert.Greater(t, ev.Seq, evs[i-1].Seq)
		}
	}
	first := evs[0]
	assert.Equal(t, "x.made", first.Type)
	assert.Equal(t, tenant, first.Tenant)
	assert.Equal(t, counters, first.Collection)
	assert.Equal(t, "x.made-000", first.RecordID)
	assert.True(t, first.Time.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), "time %v", first.Time)
	assert.JSONEq(t, `{"i":0}`, string(first.Body))
	assert.Equal(t, []string{"y.one/", "y.two/"}, types(evs[5:]))
	head, err = st.OutboxHead(ctx)
	require.NoError(t, err)
	assert.Equal(t, evs[6].Seq, head, "the head is the newest event, of any tenant")

	// Without an acknowledgement the same events come again.
	again, err := st.ReadOutbox(ctx, "a", 100)
	require.NoError(t, err)
	assert.Equal(t, types(evs), types(again))

	// Limit and acknowledgement: consumer a reads in batches.
	batch, err := st.ReadOutbox(ctx, "a", 2)
	require.NoError(t, err)
	require.Len(t, batch, 2)
	require.NoError(t, st.AckOutbox(ctx, "a", batch[1].Seq))
	rest, err := st.ReadOutbox(ctx, "a", 100)
	require.NoError(t, err)
	assert.Equal(t, types(evs[2:]), types(rest))

	// Consumer b is independent and still gets everything.
	b, err := st.ReadOutbox(ctx, "b", 100)
	require.NoError(t, err)
	assert.Equal(t, types(evs), types(b))

	// Acknowledging backwards is a no-op; beyond the end is refused.
	require.NoError(t, st.AckOutbox(ctx, "a", batch[0].Seq))
	rest2, err := st.ReadOutbox(ctx, "a", 100)
	require.NoError(t, err)
	assert.Equal(t, types(rest), types(rest2))
	require.ErrorIs(t, st.AckOutbox(ctx, "a", evs[6].Seq+1), storage.ErrInvalid)

	require.NoError(t, st.AckOutbox(ctx, "a", evs[6].Seq))
	done, err := st.ReadOutbox(ctx, "a", 100)
	require.NoError(t, err)
	assert.Empty(t, done)
	appendEvents(t, st, tenant, "z.late", 1)
	late, err := st.ReadOutbox(ctx, "a", 100)
	require.NoError(t, err)
	assert.Equal(t, []string{"z.late/z.late-000"}, types(late))

	for _, bad := range []struct {
		consumer string
		limit    int
	}{{"", 1}, {"a", -1}, {"a", storage.MaxScanLimit + 1}, {"bad\x00name", 1}} {
		_, err := st.ReadOutbox(ctx, bad.consumer, bad.limit)
		assert.ErrorIs(t, err, storage.ErrInvalid, "consumer %q limit %d", bad.consumer, bad.limit)
	}
}

func (s *suite) testOutboxRollback(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	appendEvents(t, st, tenant, "kept", 1)
	err := st.Update(ctx, tenant, func(tx storage.Tx) error {
		require.NoError(t, tx.Append(ctx, storage.Event{Type: "lost"}))
		return errBoom
	})
	require.ErrorIs(t, err, errBoom)
	appendEvents(t, st, tenant, "after", 1)
	evs, err := st.ReadOutbox(ctx, "c", 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"kept/kept-000", "after/after-000"}, types(evs))
}

func (s *suite) testOutboxSignal(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	sig := st.OutboxSignal()
	// A commit without events does not fire.
	put(t, st, tenant, counters, storage.Record{ID: "quiet", Body: body(t, map[string]int{})})
	select {
	case <-sig:
		t.Fatal("signal fired for a commit without events")
	default:
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-sig:
		case <-time.After(10 * time.Second):
			t.Error("signal did not fire after events were committed")
		}
	}()
	require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error {
		return tx.Append(ctx, storage.Event{Type: "ping"})
	}))
	<-done
	// The next channel waits for the next commit.
	select {
	case <-st.OutboxSignal():
		t.Fatal("a fresh signal channel is already closed")
	default:
	}
}

func (s *suite) testOutboxAfterReopen(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	appendEvents(t, st, tenant, "e", 4)
	evs, err := st.ReadOutbox(ctx, "c", 100)
	require.NoError(t, err)
	require.Len(t, evs, 4)
	require.NoError(t, st.AckOutbox(ctx, "c", evs[1].Seq))
	// c read e-002 and e-003 but crashed before acknowledging them.
	st = s.reopen(t, st)
	require.NoError(t, st.Declare(ctx, Collections()...))
	again, err := st.ReadOutbox(ctx, "c", 100)
	require.NoError(t, err)
	assert.Equal(t, types(evs[2:]), types(again), "unacknowledged events must come again after a restart")
	// Sequence numbers continue after the reopen.
	appendEvents(t, st, tenant, "f", 1)
	all, err := st.ReadOutbox(ctx, "c", 100)
	require.NoError(t, err)
	require.Len(t, all, 3)
	assert.Greater(t, all[2].Seq, evs[3].Seq)
}

func (s *suite) testRedactEvents(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	appendOne := func(tenant, id string, i int) {
		require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error {
			return tx.Append(ctx, storage.Event{Type: "p.changed", Collection: counters, RecordID: id,
				Time: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), Body: body(t, map[string]string{"name": fmt.Sprint("secret", i)})})
		}))
	}
	appendOne(tenant, "r1", 1)
	appendOne(tenant, "r2", 2)
	appendOne(tenant, "r1", 3)
	appendOne("other", "r1", 4)
	evs, err := st.ReadOutbox(ctx, "c", 1)
	require.NoError(t, err)
	require.NoError(t, st.AckOutbox(ctx, "c", evs[0].Seq))
	before, err := st.ReadOutbox(ctx, "fresh", 100)
	require.NoError(t, err)

	// A redaction that rolls back changes nothing.
	boom := fmt.Errorf("boom")
	err = st.Update(ctx, tenant, func(tx storage.Tx) error {
		if _, err := tx.RedactEvents(ctx, counters, []string{"r1"}, []byte(`{"erased":true}`)); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	after, err := st.ReadOutbox(ctx, "fresh", 100)
	require.NoError(t, err)
	assert.Equal(t, before, after)

	var n int
	require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error {
		if err := tx.Append(ctx, storage.Event{Type: "p.erased", Collection: counters, RecordID: "r1", Body: []byte(`{"name":"secret5"}`)}); err != nil {
			return err
		}
		n, err = tx.RedactEvents(ctx, counters, []string{"r1"}, []byte(`{"erased":true}`))
		return err
	}))
	assert.Equal(t, 3, n, "two committed events and one from this transaction")
	after, err = st.ReadOutbox(ctx, "fresh", 100)
	require.NoError(t, err)
	require.Len(t, after, 5)
	for i, ev := range after[:4] {
		assert.Equal(t, before[i].Seq, ev.Seq)
		assert.Equal(t, before[i].Type, ev.Type)
		assert.True(t, before[i].Time.Equal(ev.Time))
		if ev.Tenant == tenant && ev.RecordID == "r1" {
			assert.JSONEq(t, `{"erased":true}`, string(ev.Body))
		} else {
			assert.Equal(t, before[i].Body, ev.Body, "other records and tenants keep their events")
		}
	}
	assert.JSONEq(t, `{"erased":true}`, string(after[4].Body))

	// A consumer's position is unchanged; redacting to no body works.
	evs, err = st.ReadOutbox(ctx, "c", 100)
	require.NoError(t, err)
	assert.Len(t, evs, 4)
	require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error {
		n, err = tx.RedactEvents(ctx, counters, []string{"r2", "nobody"}, nil)
		return err
	}))
	assert.Equal(t, 1, n)
	evs, err = st.ReadOutbox(ctx, "fresh", 100)
	require.NoError(t, err)
	assert.Empty(t, evs[1].Body)

	// Bad input fails; a read-only transaction cannot redact.
	for _, bad := range []struct{ id, body string }{{"", `{}`}, {"r1", `[1]`}, {"r1", `{`}} {
		err := st.Update(ctx, tenant, func(tx storage.Tx) error {
			_, err := tx.RedactEvents(ctx, counters, []string{bad.id}, []byte(bad.body))
			return err
		})
		require.ErrorIs(t, err, storage.ErrInvalid, "%+v", bad)
	}
}

// testOutboxConcurrent commits events from many writers at once while two
// consumers read and acknowledge as they go: each consumer gets every
// event once, in increasing sequence order (a lower number seen after a
// higher one was acknowledged would be lost), the events of a transaction
// together and in order, and each writer's transactions in the order it
// committed them.
func (s *suite) testOutboxConcurrent(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	const writers, txs = 6, 30
	var wg sync.WaitGroup
	writing := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			for i := range txs {
				n := 1 + (w+i)%3
				err := st.Update(ctx, tenant, func(tx storage.Tx) error {
					for k := range n {
						if err := tx.Append(ctx, storage.Event{Type: "w.tx", RecordID: fmt.Sprintf("%d/%03d/%d/%d", w, i, k, n)}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(writing) }()
	total := 0
	for w := range writers {
		for i := range txs {
			total += 1 + (w+i)%3
		}
	}
	consume := func(name string) []storage.Event {
		var got []storage.Event
		done := false
		for len(got) < total {
			evs, err := st.ReadOutbox(ctx, name, 7)
			if err != nil {
				t.Error(err)
				return got
			}
			for _, ev := range evs {
				if len(got) > 0 && ev.Seq <= got[len(got)-1].Seq {
					t.Errorf("%s: event %d after %d", name, ev.Seq, got[len(got)-1].Seq)
				}
				got = append(got, ev)
			}
			if len(evs) > 0 {
				if err := st.AckOutbox(ctx, name, evs[len(evs)-1].Seq); err != nil {
					t.Error(err)
					return got
				}
				continue
			}
			if done {
				break // everything committed has been read
			}
			select {
			case <-writing:
				done = true
			case <-time.After(time.Millisecond):
			}
		}
		return got
	}
	results := make([][]storage.Event, 2)
	var readers sync.WaitGroup
	for c := range results {
		readers.Go(func() { results[c] = consume(fmt.Sprintf("concurrent-%d", c)) })
	}
	readers.Wait()
	<-writing // so that no writer reports after the test
	for c, got := range results {
		require.Len(t, got, total, "consumer %d: every event once", c)
		next := make([]int, writers) // each writer's next transaction
		for j := 0; j < len(got); {
			var w, i, k, n int
			_, err := fmt.Sscanf(got[j].RecordID, "%d/%d/%d/%d", &w, &i, &k, &n)
			require.NoError(t, err)
			require.Equal(t, next[w], i, "consumer %d: writer %d's transactions in order", c, w)
			require.LessOrEqual(t, j+n, len(got))
			for k := range n {
				assert.Equal(t, fmt.Sprintf("%d/%03d/%d/%d", w, i, k, n), got[j+k].RecordID, "consumer %d: a transaction's events together, in order", c)
			}
			next[w]++
			j += n
		}
	}
}
