// Package bolt is the embedded, single-file storage backend of Rapport, on
// go.etcd.io/bbolt. It is the default store of crm.Open.
//
// # Basics
//
// [Open] creates or opens the database file and takes an exclusive lock on
// it: one process at a time. Every committed Update is on disk (fsync)
// before it returns. Reads run in MVCC snapshots and do not block writes;
// writes are serialised.
//
// # Caveats
//
// A second process that opens a file already open elsewhere waits at most
// Options.Timeout (one second by default) and then fails with an error that
// wraps storage.ErrLocked. Do not run a View inside an Update on the same
// goroutine: bbolt may deadlock when it grows the file.
//
// The on-disk layout has a format version, stamped into new files. Open
// refuses a file stamped with another version (written by a newer version
// of Rapport) with an error that wraps storage.ErrFormat and leaves it as
// it was.
package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/internal/kvstore"
)

// Options configures Open. The zero value means the defaults below.
type Options struct {
	// Timeout is how long Open waits for the file lock held by another
	// process. Defaults to 1s; a negative value means fail at once.
	Timeout time.Duration
	// NoSync skips fsync on commit: faster, but a crash can lose recent
	// commits. Defaults to false. Only for tests and bulk loads you can redo.
	NoSync bool
	// Mode is the permission of a new file. Defaults to 0600.
	Mode os.FileMode
	// InitialMmapSize is the address space mapped for the file up front.
	// While the file fits in it, bbolt never remaps, so writes do not copy
	// their pending pages and readers never block a growing writer. It
	// reserves address space, not memory. Defaults to 1 GiB.
	InitialMmapSize int
	// PageSize is the page size of a new file, a power of two from 4096
	// to 65536. An existing file keeps the page size it was created with.
	// Defaults to 16384: bulk loads commit many pages, and larger pages
	// halve their cost (a 1,000,000-contact import writes in 3.4 s
	// instead of 7.0 s) while a durable single-record write, dominated by
	// fsync, takes the same time.
	PageSize int
}

// DefaultPageSize is the page size of new files when Options.PageSize is 0.
const DefaultPageSize = 16 << 10

// Store is a storage.Store on a bbolt file.
type Store struct {
	*kvstore.Store
	db   *bbolt.DB
	path string
}

var _ storage.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path.
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if path == "" {
		return nil, fmt.Errorf("bolt: %w: empty path", storage.ErrInvalid)
	}
	switch {
	case o.Timeout == 0:
		o.Timeout = time.Second
	case o.Timeout < 0:
		o.Timeout = time.Nanosecond
	}
	if o.Mode == 0 {
		o.Mode = 0o600
	}
	if o.InitialMmapSize == 0 {
		o.InitialMmapSize = 1 << 30
	}
	if o.PageSize == 0 {
		o.PageSize = DefaultPageSize
	}
	if o.PageSize < 4096 || o.PageSize > 65536 || o.PageSize&(o.PageSize-1) != 0 {
		return nil, fmt.Errorf("bolt: %w: page size %d: want a power of two from 4096 to 65536", storage.ErrInvalid, o.PageSize)
	}
	db, err := bbolt.Open(path, o.Mode, &bbolt.Options{
		Timeout: o.Timeout, NoSync: o.NoSync, InitialMmapSize: o.InitialMmapSize,
		FreelistType: bbolt.FreelistMapType, PageSize: o.PageSize,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("bolt: open %s: %w (waited %s)", path, storage.ErrLocked, o.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	ks, err := kvstore.Open(boltDB{db}, "bolt")
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	return &Store{Store: ks, db: db, path: path}, nil
}

// Path returns the file the store was opened on.
func (s *Store) Path() string { return s.path }

// Check verifies the consistency of the database file (bbolt's page-level
// check) and returns every problem found, joined.
func (s *Store) Check() error {
	var errs []error
	err := s.db.View(func(tx *bbolt.Tx) error {
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

type boltDB struct{ db *bbolt.DB }

func (d boltDB) View(fn func(kvstore.KVTx) error) error {
	return d.db.View(func(tx *bbolt.Tx) error { return fn(boltTx{tx}) })
}

func (d boltDB) Update(fn func(kvstore.KVTx) error) error {
	return d.db.Update(func(tx *bbolt.Tx) error { return fn(boltTx{tx}) })
}

func (d boltDB) Close() error { return d.db.Close() }

type boltTx struct{ tx *bbolt.Tx }

func (t boltTx) Bucket(name []byte) kvstore.Bucket {
	b := t.tx.Bucket(name)
	if b == nil {
		return nil
	}
	return fill(name, b)
}

func (t boltTx) CreateBucket(name []byte) (kvstore.Bucket, error) {
	if b := t.tx.Bucket(name); b != nil {
		return fill(name, b), nil
	}
	b, err := t.tx.CreateBucket(name)
	if err != nil {
		return nil, err
	}
	return fill(name, b), nil
}

// fill sets how full bbolt packs the pages of a bucket when it splits
// them. Its default, half full, suits keys that arrive in random order.
// The outbox (sequence keys) and record buckets (time-ordered IDs) are
// written in key order: with half-full pages they would take twice the
// pages, and twice the page writes, for the same data.
func fill(name []byte, b *bbolt.Bucket) boltBucket {
	switch {
	case string(name) == "outbox":
		b.FillPercent = 1.0
	case bytes.HasPrefix(name, []byte("r\x00")):
		b.FillPercent = 0.9
	}
	return boltBucket{b}
}

func (t boltTx) DeleteBucket(name []byte) error {
	err := t.tx.DeleteBucket(name)
	if errors.Is(err, bolterrors.ErrBucketNotFound) {
		return nil
	}
	return err
}

func (t boltTx) ForEachBucket(fn func(name []byte) error) error {
	return t.tx.ForEach(func(name []byte, _ *bbolt.Bucket) error { return fn(name) })
}

type boltBucket struct{ b *bbolt.Bucket }

func (b boltBucket) Get(k []byte) []byte           { return b.b.Get(k) }
func (b boltBucket) Put(k, v []byte) error         { return b.b.Put(k, v) }
func (b boltBucket) Delete(k []byte) error         { return b.b.Delete(k) }
func (b boltBucket) NextSequence() (uint64, error) { return b.b.NextSequence() }
func (b boltBucket) Sequence() uint64              { return b.b.Sequence() }

func (b boltBucket) Ascend(from []byte, fn func(k, v []byte) bool) {
	c := b.b.Cursor()
	var k, v []byte
	if from == nil {
		k, v = c.First()
	} else {
		k, v = c.Seek(from)
	}
	for ; k != nil; k, v = c.Next() {
		if !fn(k, v) {
			return
		}
	}
}

func (b boltBucket) Descend(from []byte, fn func(k, v []byte) bool) {
	c := b.b.Cursor()
	var k, v []byte
	if from == nil {
		k, v = c.Last()
	} else {
		k, v = c.Seek(from)
		switch {
		case k == nil:
			k, v = c.Last()
		case string(k) != string(from):
			k, v = c.Prev()
		}
	}
	for ; k != nil; k, v = c.Prev() {
		if !fn(k, v) {
			return
		}
	}
}
