// Package memory is an in-memory storage backend with the same semantics as
// the durable ones, minus durability: everything is gone when the Store is
// closed or the process exits. Use it in tests and for ephemeral engines.
//
// Transactions are serialisable: a read-write transaction excludes all
// others for its duration, read-only transactions run concurrently with each
// other. A read-write transaction works on copy-on-write clones of the
// B-trees it touches, so a rollback simply drops them.
package memory

import (
	"bytes"
	"maps"
	"slices"
	"sync"

	"github.com/google/btree"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/internal/kvstore"
)

// Store is a storage.Store in memory.
type Store struct {
	*kvstore.Store
}

var _ storage.Store = (*Store)(nil)

// New returns an empty in-memory store.
func New() *Store {
	ks, err := kvstore.Open(&db{buckets: map[string]*bucket{}}, "memory")
	if err != nil {
		panic(err) // an empty database always has the current format
	}
	return &Store{Store: ks}
}

type item struct{ k, v []byte }

func less(a, b item) bool { return bytes.Compare(a.k, b.k) < 0 }

type bucket struct {
	tree *btree.BTreeG[item]
	seq  uint64
}

type db struct {
	mu      sync.RWMutex
	buckets map[string]*bucket // committed state, replaced on commit
}

func (d *db) View(fn func(kvstore.KVTx) error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return fn(&memTx{base: d.buckets})
}

func (d *db) Update(fn func(kvstore.KVTx) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := &memTx{base: d.buckets, dirty: map[string]*bucket{}, writable: true}
	if err := fn(t); err != nil {
		return err
	}
	next := maps.Clone(d.buckets)
	for name, b := range t.dirty {
		if b == nil {
			delete(next, name)
		} else {
			next[name] = b
		}
	}
	d.buckets = next
	return nil
}

func (d *db) Close() error { return nil }

// memTx reads the committed state and writes to clones in dirty; a nil
// entry in dirty marks a deleted bucket.
type memTx struct {
	base     map[string]*bucket
	dirty    map[string]*bucket
	writable bool
}

func (t *memTx) lookup(name string) *bucket {
	if b, ok := t.dirty[name]; ok {
		return b
	}
	return t.base[name]
}

func (t *memTx) Bucket(name []byte) kvstore.Bucket {
	b := t.lookup(string(name))
	if b == nil {
		return nil
	}
	return &memBucket{tx: t, name: string(name), b: b}
}

func (t *memTx) CreateBucket(name []byte) (kvstore.Bucket, error) {
	if !t.writable {
		return nil, storage.ErrReadOnly
	}
	if b := t.Bucket(name); b != nil {
		return b, nil
	}
	b := &bucket{tree: btree.NewG(32, less)}
	t.dirty[string(name)] = b
	return &memBucket{tx: t, name: string(name), b: b}, nil
}

func (t *memTx) DeleteBucket(name []byte) error {
	if !t.writable {
		return storage.ErrReadOnly
	}
	t.dirty[string(name)] = nil
	return nil
}

func (t *memTx) ForEachBucket(fn func(name []byte) error) error {
	names := make(map[string]bool, len(t.base)+len(t.dirty))
	for n := range t.base {
		names[n] = true
	}
	for n, b := range t.dirty {
		names[n] = b != nil
	}
	for _, n := range sortedTrue(names) {
		if err := fn([]byte(n)); err != nil {
			return err
		}
	}
	return nil
}

func sortedTrue(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for n, ok := range m {
		if ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

type memBucket struct {
	tx   *memTx
	name string
	b    *bucket
}

// cur returns the newest version of the bucket in this transaction, so that
// two handles on the same bucket see each other's writes.
func (m *memBucket) cur() *bucket {
	if m.tx.dirty != nil {
		if own, ok := m.tx.dirty[m.name]; ok {
			if own == nil { // deleted in this transaction: empty from now on
				own = &bucket{tree: btree.NewG(32, less)}
			}
			m.b = own
		}
	}
	return m.b
}

// writable returns this transaction's own copy of the bucket.
func (m *memBucket) writable() (*bucket, error) {
	if !m.tx.writable {
		return nil, storage.ErrReadOnly
	}
	if own := m.tx.dirty[m.name]; own != nil {
		m.b = own
		return own, nil
	}
	base := m.cur()
	own := &bucket{tree: base.tree.Clone(), seq: base.seq}
	m.tx.dirty[m.name] = own
	m.b = own
	return own, nil
}

func (m *memBucket) Get(k []byte) []byte {
	it, ok := m.cur().tree.Get(item{k: k})
	if !ok {
		return nil
	}
	if it.v == nil {
		return []byte{}
	}
	return it.v
}

func (m *memBucket) Put(k, v []byte) error {
	b, err := m.writable()
	if err != nil {
		return err
	}
	b.tree.ReplaceOrInsert(item{k: bytes.Clone(k), v: bytes.Clone(v)})
	return nil
}

func (m *memBucket) Delete(k []byte) error {
	b, err := m.writable()
	if err != nil {
		return err
	}
	b.tree.Delete(item{k: k})
	return nil
}

func (m *memBucket) NextSequence() (uint64, error) {
	b, err := m.writable()
	if err != nil {
		return 0, err
	}
	b.seq++
	return b.seq, nil
}

func (m *memBucket) Sequence() uint64 { return m.cur().seq }

func (m *memBucket) Ascend(from []byte, fn func(k, v []byte) bool) {
	iter := func(it item) bool { return fn(it.k, it.v) }
	t := m.cur().tree
	if from == nil {
		t.Ascend(iter)
		return
	}
	t.AscendGreaterOrEqual(item{k: from}, iter)
}

func (m *memBucket) Descend(from []byte, fn func(k, v []byte) bool) {
	iter := func(it item) bool { return fn(it.k, it.v) }
	t := m.cur().tree
	if from == nil {
		t.Descend(iter)
		return
	}
	t.DescendLessOrEqual(item{k: from}, iter)
}
