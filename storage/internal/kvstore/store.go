package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/internal/broadcast"
)

var _ storage.Store = (*Store)(nil)

// Store implements storage.Store over a DB.
type Store struct {
	db     DB
	name   string // backend name for error messages, e.g. "bolt"
	signal broadcast.Signal

	declareMu sync.Mutex // serialises Declare

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
	colls    map[string]storage.Collection // replaced, never modified
}

// formatVersion is the version of the on-disk layout described in the
// package doc, stored in meta under "format".
const formatVersion = "1"

// newStore returns a Store over db without looking at what db holds.
func newStore(db DB, name string) *Store {
	s := &Store{db: db, name: name, colls: map[string]storage.Collection{}}
	return s
}

// Open returns a Store over db after checking its on-disk format: an empty
// db is stamped with the format version, data stamped with this version or
// not stamped at all (written before the stamp, in the same layout) is
// used as it is, and data stamped with another version (written by a newer
// version of this package) is refused with an error that wraps
// storage.ErrFormat, leaving db as it was. Open does not close db on error.
// name identifies the backend in errors.
func Open(db DB, name string) (*Store, error) {
	var empty bool
	err := db.View(func(kt KVTx) error {
		var err error
		empty, err = checkFormat(kt)
		return err
	})
	if err == nil && empty {
		err = db.Update(func(kt KVTx) error {
			empty, err := checkFormat(kt)
			if err != nil || !empty {
				return err
			}
			meta, err := kt.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return meta.Put(metaFormat, []byte(formatVersion))
		})
	}
	if err != nil {
		return nil, err
	}
	return newStore(db, name), nil
}

var errStop = errors.New("stop")

// checkFormat returns an error if db holds data of another format version,
// and reports whether it holds no bucket at all.
func checkFormat(kt KVTx) (empty bool, err error) {
	if meta := kt.Bucket(bucketMeta); meta != nil {
		if v := meta.Get(metaFormat); v != nil && string(v) != formatVersion {
			return false, fmt.Errorf("%w: the data is in format %q, written by a newer version; this version reads format %s",
				storage.ErrFormat, v, formatVersion)
		}
		return false, nil
	}
	empty = true
	err = kt.ForEachBucket(func([]byte) error {
		empty = false
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return false, err
	}
	return empty, nil
}

// enter registers a running call; it fails once the store is closed.
func (s *Store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	s.inflight.Add(1)
	return nil
}

func (s *Store) leave() { s.inflight.Done() }

// Close waits for running calls and closes the database. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.inflight.Wait()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", s.name, err)
	}
	return nil
}

func (s *Store) collection(name string) (storage.Collection, error) {
	s.mu.Lock()
	c, ok := s.colls[name]
	s.mu.Unlock()
	if !ok {
		return c, fmt.Errorf("%w: %q", storage.ErrUnknownCollection, name)
	}
	return c, nil
}

// View implements storage.Store.
func (s *Store) View(ctx context.Context, tenant string, fn func(storage.ReadTx) error) error {
	if err := s.begin(ctx, tenant); err != nil {
		return err
	}
	defer s.leave()
	return s.db.View(func(kt KVTx) error {
		t := &tx{s: s, kv: kt, tenant: tenant}
		defer t.finish()
		return fn(t)
	})
}

// Update implements storage.Store.
func (s *Store) Update(ctx context.Context, tenant string, fn func(storage.Tx) error) error {
	if err := s.begin(ctx, tenant); err != nil {
		return err
	}
	defer s.leave()
	var appended bool
	err := s.db.Update(func(kt KVTx) error {
		t := &tx{s: s, kv: kt, tenant: tenant, writable: true}
		defer t.finish()
		if err := fn(t); err != nil {
			return err
		}
		if t.failed != nil {
			return fmt.Errorf("%s: transaction rolled back after a failed write: %w", s.name, t.failed)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: transaction rolled back: %w", s.name, err)
		}
		appended = t.appended
		return nil
	})
	if err != nil {
		return err
	}
	if appended {
		s.signal.Fire()
	}
	return nil
}

func (s *Store) begin(ctx context.Context, tenant string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storage.ValidateID("tenant", tenant); err != nil {
		return err
	}
	return s.enter()
}

// Declare implements storage.Store.
func (s *Store) Declare(ctx context.Context, collections ...storage.Collection) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storage.ValidateCollections(collections...); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.declareMu.Lock()
	defer s.declareMu.Unlock()
	s.mu.Lock()
	old := s.colls
	s.mu.Unlock()
	err := s.db.Update(func(kt KVTx) error {
		meta, err := kt.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		for _, c := range collections {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := declare(kt, meta, c); err != nil {
				return err
			}
		}
		// Switch to the new definitions while this transaction still
		// holds the write lock, so that no write commits between the
		// rebuilt indexes and the definitions that maintain them.
		colls := maps.Clone(old)
		for _, c := range collections {
			c.Indexes = append([]storage.Index(nil), c.Indexes...)
			colls[c.Name] = c
		}
		s.mu.Lock()
		s.colls = colls
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		s.mu.Lock()
		s.colls = old
		s.mu.Unlock()
		return fmt.Errorf("%s: declare: %w", s.name, err)
	}
	return nil
}

// declare brings the stored indexes of c in line with its declaration.
func declare(kt KVTx, meta Bucket, c storage.Collection) error {
	key := []byte("coll\x00" + c.Name)
	stored := map[string]string{}
	if raw := meta.Get(key); raw != nil {
		if err := json.Unmarshal(raw, &stored); err != nil {
			return fmt.Errorf("collection %s: reading index definitions: %w", c.Name, err)
		}
	}
	want := make(map[string]string, len(c.Indexes))
	var rebuild []int
	for i, ix := range c.Indexes {
		want[ix.Name] = ix.Definition()
		if stored[ix.Name] != want[ix.Name] {
			rebuild = append(rebuild, i)
		}
	}
	var drop []string
	for name := range stored {
		if _, ok := want[name]; !ok {
			drop = append(drop, name)
		}
	}
	if len(rebuild) == 0 && len(drop) == 0 && len(stored) == len(want) && meta.Get(key) != nil {
		return nil
	}
	// Find the tenants that hold records of c.
	var tenants []string
	err := kt.ForEachBucket(func(name []byte) error {
		if t, coll, ok := parseRecordBucket(name); ok && coll == c.Name {
			tenants = append(tenants, t)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, tenant := range tenants {
		for _, name := range drop {
			if err := kt.DeleteBucket(indexBucket(tenant, c.Name, name)); err != nil {
				return err
			}
		}
		for _, i := range rebuild {
			if err := rebuildIndex(kt, tenant, c, i); err != nil {
				return err
			}
		}
	}
	raw, err := json.Marshal(want)
	if err != nil {
		return err
	}
	return meta.Put(key, raw)
}

func rebuildIndex(kt KVTx, tenant string, c storage.Collection, i int) error {
	ix := c.Indexes[i]
	name := indexBucket(tenant, c.Name, ix.Name)
	if err := kt.DeleteBucket(name); err != nil {
		return err
	}
	ib, err := kt.CreateBucket(name)
	if err != nil {
		return err
	}
	rb := kt.Bucket(recordBucket(tenant, c.Name))
	if rb == nil {
		return nil
	}
	one := storage.Collection{Name: c.Name, Indexes: []storage.Index{ix}}
	var ferr error
	rb.Ascend(nil, func(k, v []byte) bool {
		_, body, err := decodeRecord(v)
		if err != nil {
			ferr = err
			return false
		}
		vals, err := one.IndexValues(body)
		if err != nil {
			ferr = fmt.Errorf("record %s: %w", k, err)
			return false
		}
		for _, val := range vals[0] {
			if ix.Unique {
				if other, ok := holder(ib, val); ok && other != string(k) {
					ferr = &storage.UniqueError{Collection: c.Name, Index: ix.Name, Value: val, ExistingID: other}
					return false
				}
			}
			if err := ib.Put(indexKey(val, string(k)), nil); err != nil {
				ferr = err
				return false
			}
		}
		return true
	})
	return ferr
}

// OutboxHead implements storage.Store.
func (s *Store) OutboxHead(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	var head uint64
	err := s.db.View(func(kt KVTx) error {
		if ob := kt.Bucket(bucketOutbox); ob != nil {
			head = ob.Sequence()
		}
		return nil
	})
	return head, err
}

// ReadOutbox implements storage.Store.
func (s *Store) ReadOutbox(ctx context.Context, consumer string, limit int) ([]storage.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := storage.ValidateID("consumer", consumer); err != nil {
		return nil, err
	}
	if limit < 0 || limit > storage.MaxScanLimit {
		return nil, fmt.Errorf("%w: outbox read limit %d: want 0 to %d", storage.ErrInvalid, limit, storage.MaxScanLimit)
	}
	if limit == 0 {
		limit = storage.DefaultScanLimit
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	var out []storage.Event
	err := s.db.View(func(kt KVTx) error {
		ob := kt.Bucket(bucketOutbox)
		if ob == nil {
			return nil
		}
		acked := ackedSeq(kt, consumer)
		var derr error
		ob.Ascend(seqKey(acked+1), func(k, v []byte) bool {
			ev, err := decodeEvent(v)
			if err != nil {
				derr = fmt.Errorf("outbox event %d: %w", seqFromKey(k), err)
				return false
			}
			out = append(out, ev)
			return len(out) < limit
		})
		return derr
	})
	if err != nil {
		return nil, fmt.Errorf("%s: read outbox: %w", s.name, err)
	}
	return out, nil
}

// AckOutbox implements storage.Store.
func (s *Store) AckOutbox(ctx context.Context, consumer string, seq uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storage.ValidateID("consumer", consumer); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	err := s.db.Update(func(kt KVTx) error {
		var last uint64
		if ob := kt.Bucket(bucketOutbox); ob != nil {
			last = ob.Sequence()
		}
		if seq > last {
			return fmt.Errorf("%w: acknowledging event %d, but the outbox ends at %d", storage.ErrInvalid, seq, last)
		}
		if seq <= ackedSeq(kt, consumer) {
			return nil
		}
		cb, err := kt.CreateBucket(bucketConsumers)
		if err != nil {
			return err
		}
		return cb.Put([]byte(consumer), seqKey(seq))
	})
	if err != nil {
		return fmt.Errorf("%s: ack outbox: %w", s.name, err)
	}
	return nil
}

// OutboxSignal implements storage.Store.
func (s *Store) OutboxSignal() <-chan struct{} { return s.signal.Wait() }

func ackedSeq(kt KVTx, consumer string) uint64 {
	cb := kt.Bucket(bucketConsumers)
	if cb == nil {
		return 0
	}
	v := cb.Get([]byte(consumer))
	if len(v) != 8 {
		return 0
	}
	return seqFromKey(v)
}
