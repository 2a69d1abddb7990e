package storagetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
)

var errBoom = errors.New("boom")

func (s *suite) testRollback(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	put(t, st, tenant, people, storage.Record{ID: "keep", Body: body(t, person{Name: "keep", Email: "k@x.io", Tags: []string{"a"}})})
	before := dump(t, st, tenant)

	err := st.Update(ctx, tenant, func(tx storage.Tx) error {
		_, err := tx.Put(ctx, people, storage.Record{ID: "new", Body: body(t, person{Email: "n@x.io", Tags: []string{"a"}})})
		require.NoError(t, err)
		_, err = tx.Put(ctx, people, storage.Record{ID: "keep", Version: 1, Body: body(t, person{Name: "changed", Email: "other@x.io"})})
		require.NoError(t, err)
		require.NoError(t, tx.Append(ctx, storage.Event{Type: "rolled.back"}))
		// Reads inside the transaction see its own writes.
		got, err := tx.Get(ctx, people, "keep")
		require.NoError(t, err)
		assert.Equal(t, "changed", decode[person](t, got.Body).Name)
		p, err := tx.Scan(ctx, people, storage.Query{Index: "tags", Equal: "a"})
		require.NoError(t, err)
		assert.Equal(t, []string{"new"}, ids(p))
		return errBoom
	})
	require.ErrorIs(t, err, errBoom, "Update returns fn's error")
	assert.Equal(t, before, dump(t, st, tenant), "a rolled-back transaction left something behind")
	// The freed unique value of the rolled-back update is still taken.
	err = putErr(st, tenant, people, storage.Record{ID: "x", Body: body(t, person{Email: "k@x.io"})})
	require.ErrorIs(t, err, storage.ErrExists)

	// Several records commit together.
	require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error {
		for i := range 3 {
			if _, err := tx.Put(ctx, counters, storage.Record{ID: strconv.Itoa(i), Body: body(t, map[string]int{"n": i})}); err != nil {
				return err
			}
		}
		return nil
	}))
	assert.Len(t, scan(t, st, tenant, counters, storage.Query{}).Records, 3)
}

func (s *suite) testRollbackOnPanic(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	before := dump(t, st, tenant)
	func() {
		defer func() {
			r := recover()
			assert.Equal(t, "boom", r, "the panic must propagate")
		}()
		_ = st.Update(ctx, tenant, func(tx storage.Tx) error {
			_, err := tx.Put(ctx, people, storage.Record{ID: "p", Body: body(t, person{Email: "p@x.io"})})
			require.NoError(t, err)
			require.NoError(t, tx.Append(ctx, storage.Event{Type: "panicked"}))
			panic("boom")
		})
	}()
	assert.Equal(t, before, dump(t, st, tenant))
	// The store still works.
	put(t, st, tenant, people, storage.Record{ID: "p", Body: body(t, person{Email: "p@x.io"})})
}

func (s *suite) testTxAfterReturn(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	var leaked storage.Tx
	require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error { leaked = tx; return nil }))
	_, err := leaked.Put(ctx, people, storage.Record{ID: "late", Body: body(t, person{})})
	require.ErrorIs(t, err, storage.ErrTxDone)
	_, err = leaked.Get(ctx, people, "late")
	require.ErrorIs(t, err, storage.ErrTxDone)
	var leakedRead storage.ReadTx
	require.NoError(t, st.View(ctx, tenant, func(tx storage.ReadTx) error { leakedRead = tx; return nil }))
	_, err = leakedRead.Scan(ctx, people, storage.Query{})
	require.ErrorIs(t, err, storage.ErrTxDone)
	// A read-only transaction refuses writes even through a type assertion.
	err = st.View(ctx, tenant, func(tx storage.ReadTx) error {
		w, ok := tx.(storage.Tx)
		if !ok {
			return storage.ErrReadOnly
		}
		_, err := w.Put(ctx, people, storage.Record{ID: "ro", Body: body(t, person{})})
		return err
	})
	require.ErrorIs(t, err, storage.ErrReadOnly)
	_, err = get(t, st, tenant, people, "ro")
	require.ErrorIs(t, err, storage.ErrNotFound)
}

// testConcurrentIncrements: 8 goroutines × 1,000 read-modify-write
// increments of one counter, retrying on ErrConflict, end at exactly 8,000.
func (s *suite) testConcurrentIncrements(t *testing.T) {
	const workers, each = 8, 1000
	st := s.open(t)
	ctx := context.Background()
	put(t, st, tenant, counters, storage.Record{ID: "c", Body: body(t, map[string]int{"n": 0})})
	var conflicts atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				for {
					var rec storage.Record
					err := st.View(ctx, tenant, func(tx storage.ReadTx) error {
						var err error
						rec, err = tx.Get(ctx, counters, "c")
						return err
					})
					if err != nil {
						errs <- err
						return
					}
					var v map[string]int
					if err := json.Unmarshal(rec.Body, &v); err != nil {
						errs <- err
						return
					}
					v["n"]++
					rec.Body, _ = json.Marshal(v)
					err = st.Update(ctx, tenant, func(tx storage.Tx) error {
						_, err := tx.Put(ctx, counters, rec)
						return err
					})
					if errors.Is(err, storage.ErrConflict) {
						conflicts.Add(1)
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	rec, err := get(t, st, tenant, counters, "c")
	require.NoError(t, err)
	assert.Equal(t, workers*each, decode[map[string]int](t, rec.Body)["n"])
	assert.Equal(t, uint64(workers*each+1), rec.Version)
	t.Logf("%d conflicts retried", conflicts.Load())
}

// testSnapshot moves amounts between accounts while readers scan them all:
// every scan must see the same total, and so a consistent snapshot.
func (s *suite) testSnapshot(t *testing.T) {
	const accounts, total = 20, 20 * 100
	st := s.open(t)
	ctx := context.Background()
	require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error {
		for i := range accounts {
			if _, err := tx.Put(ctx, counters, storage.Record{ID: fmt.Sprintf("a%02d", i), Body: body(t, map[string]int{"n": 100})}); err != nil {
				return err
			}
		}
		return nil
	}))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var writes, reads atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	wg.Go(func() { // writer
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			from, to := fmt.Sprintf("a%02d", i%accounts), fmt.Sprintf("a%02d", (i*7+3)%accounts)
			if from == to {
				continue
			}
			err := st.Update(ctx, tenant, func(tx storage.Tx) error {
				for _, d := range []struct {
					id    string
					delta int
				}{{from, -1}, {to, +1}} {
					rec, err := tx.Get(ctx, counters, d.id)
					if err != nil {
						return err
					}
					var v map[string]int
					if err := json.Unmarshal(rec.Body, &v); err != nil {
						return err
					}
					v["n"] += d.delta
					rec.Body, _ = json.Marshal(v)
					if _, err := tx.Put(ctx, counters, rec); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				errs <- err
				return
			}
			writes.Add(1)
		}
	})
	for range 2 { // readers
		wg.Go(func() {
			for reads.Load() < 300 {
				err := st.View(ctx, tenant, func(tx storage.ReadTx) error {
					sum, n := 0, 0
					q := storage.Query{Limit: 3} // several pages in one snapshot
					for {
						p, err := tx.Scan(ctx, counters, q)
						if err != nil {
							return err
						}
						for _, r := range p.Records {
							var v map[string]int
							if err := json.Unmarshal(r.Body, &v); err != nil {
								return err
							}
							sum += v["n"]
							n++
						}
						if p.Next == "" {
							break
						}
						q.Cursor = p.Next
					}
					if sum != total || n != accounts {
						return fmt.Errorf("inconsistent snapshot: %d accounts summing to %d, want %d and %d", n, sum, accounts, total)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				reads.Add(1)
			}
		})
	}
	time.Sleep(10 * time.Millisecond)
	for reads.Load() < 300 && ctx.Err() == nil && len(errs) == 0 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Logf("%d reads during %d writes", reads.Load(), writes.Load())
}

func (s *suite) testCloseWaits(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	inside, release := make(chan struct{}), make(chan struct{})
	updated := make(chan error, 1)
	go func() {
		updated <- st.Update(ctx, tenant, func(tx storage.Tx) error {
			close(inside)
			<-release
			_, err := tx.Put(ctx, people, storage.Record{ID: "last", Body: body(t, person{})})
			return err
		})
	}()
	<-inside
	closed := make(chan error, 1)
	go func() { closed <- st.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a transaction was running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-updated, "the running transaction must commit")
	require.NoError(t, <-closed)
	require.NoError(t, st.Close(), "a second Close is a no-op")
}

func (s *suite) testClosed(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	put(t, st, tenant, people, storage.Record{ID: "p", Body: body(t, person{})})
	require.NoError(t, st.Close())
	require.NoError(t, st.Close())
	err := st.View(ctx, tenant, func(storage.ReadTx) error { return nil })
	require.ErrorIs(t, err, storage.ErrClosed)
	err = st.Update(ctx, tenant, func(storage.Tx) error { return nil })
	require.ErrorIs(t, err, storage.ErrClosed)
	require.ErrorIs(t, st.Declare(ctx, Collections()...), storage.ErrClosed)
	_, err = st.ReadOutbox(ctx, "c", 1)
	require.ErrorIs(t, err, storage.ErrClosed)
	require.ErrorIs(t, st.AckOutbox(ctx, "c", 1), storage.ErrClosed)
	_, err = st.OutboxHead(ctx)
	require.ErrorIs(t, err, storage.ErrClosed)
}

func (s *suite) testCancelledContext(t *testing.T) {
	st := s.open(t)
	put(t, st, tenant, people, storage.Record{ID: "p", Body: body(t, person{Name: "before"})})
	before := dump(t, st, tenant)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	ctx := context.Background()

	called := false
	err := st.Update(cancelled, tenant, func(storage.Tx) error { called = true; return nil })
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, called, "fn must not run with a cancelled context")
	err = st.View(cancelled, tenant, func(storage.ReadTx) error { called = true; return nil })
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, called)
	_, err = st.ReadOutbox(cancelled, "c", 1)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, st.AckOutbox(cancelled, "c", 1), context.Canceled)

	// Cancelled while the transaction runs: it rolls back.
	mid, cancelMid := context.WithCancel(ctx)
	err = st.Update(mid, tenant, func(tx storage.Tx) error {
		if _, err := tx.Put(mid, people, storage.Record{ID: "p", Version: 1, Body: body(t, person{Name: "after"})}); err != nil {
			return err
		}
		cancelMid()
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	// Operations given a cancelled context inside a live transaction fail.
	err = st.Update(ctx, tenant, func(tx storage.Tx) error {
		_, err := tx.Put(cancelled, people, storage.Record{ID: "q", Body: body(t, person{})})
		return err
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, before, dump(t, st, tenant))
}
