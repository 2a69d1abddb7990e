// Package kvstore implements storage.Store once, over any ordered key-value
// database with buckets and serialised read-write transactions. The bolt and
// memory backends are thin adapters of their engine to the interfaces here,
// so that records, versions, indexes, scans and the outbox behave the same
// on both because they are the same code.
//
// # Layout
//
// Format 2. The records of one tenant's collection and the entries of all
// its indexes share one bucket:
//
//	meta                     "format" → "2"
//	                         "coll\x00<name>" → JSON index definitions
//	outbox                   big-endian seq → event (see encodeEvent)
//	consumers                consumer name → big-endian acked seq
//	c\x00<tenant>\x00<coll>  'r' ‖ record ID → big-endian version ‖ body
//	                         'i' ‖ index ‖ 0 ‖ value ‖ 0 ‖ record ID → empty
//
// The encoding is unambiguous and keeps the scan order because none of the
// parts can hold a NUL byte: tenant names and record IDs have no control
// characters (storage.ValidateID), collection and index names are
// [a-z0-9_], index values and query bounds are checked for NUL
// (storage.ValidateIndexValue, storage.ValidateQuery). So a bucket name
// stands for exactly one tenant and collection ("a" and "a\x00b" cannot
// both be tenants), 'i' ‖ index ‖ 0 starts the entries of that index only
// ("tag" and "tags" do not mix), and an index entry sorts by value, then by
// ID, as a Scan returns them. Transactions open only buckets named after
// their own tenant, and a scan never leaves the key range of its records
// ('r' …) or of its index ('i' ‖ index ‖ 0 …): both bounds are inside it, and
// cursors hold the key without that prefix, which is put back when they are
// used.
//
// Format 1 had a bucket per collection for records and one per index. A
// bbolt transaction writes every page on the path from the root of each
// bucket it changes to the changed leaves; while buckets are small that is
// one or two pages per bucket, so sharing the bucket saves pages on writes
// that touch records and indexes, and keeps far fewer buckets in the root
// tree when there are many tenants. Once a bucket is several levels deep,
// each key range a write touches (the record, each index) still costs its
// own leaf and branch pages, whichever bucket it is in: measured on the crm
// benchmark that moves a deal 1,000 times, format 1 wrote 10.5 pages per
// transaction and this layout 10.4. One bucket per tenant for all
// collections was measured as well and wrote 12 (the tenant's tree is
// deeper and a small collection no longer fits inline in its parent page),
// so collections keep buckets of their own.
//
// Open stamps an empty database with the format version and refuses data
// without it (format 1) or with another one, with storage.ErrFormat.
package kvstore

// DB is an ordered key-value database with buckets. Read-write transactions
// are serialised; read-only transactions see a consistent snapshot.
type DB interface {
	// View runs fn in a read-only transaction.
	View(fn func(KVTx) error) error
	// Update runs fn in a read-write transaction that commits durably when
	// fn returns nil and rolls back otherwise (also when fn panics).
	Update(fn func(KVTx) error) error
	// Close releases the database.
	Close() error
}

// KVTx is a transaction of a DB.
type KVTx interface {
	// Bucket returns the named bucket, or nil if it does not exist.
	Bucket(name []byte) Bucket
	// CreateBucket returns the named bucket, creating it if needed.
	CreateBucket(name []byte) (Bucket, error)
	// DeleteBucket removes the named bucket if it exists.
	DeleteBucket(name []byte) error
	// ForEachBucket calls fn with the name of every bucket, in order.
	ForEachBucket(fn func(name []byte) error) error
}

// Bucket is an ordered map of byte keys to byte values. Slices it returns
// are valid only until the transaction ends and must not be modified.
type Bucket interface {
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
	// Ascend calls fn for each key >= from (from the first key if from is
	// nil) in ascending order until fn returns false.
	Ascend(from []byte, fn func(k, v []byte) bool)
	// Descend calls fn for each key <= from (from the last key if from is
	// nil) in descending order until fn returns false.
	Descend(from []byte, fn func(k, v []byte) bool)
	// NextSequence increments and returns the bucket's sequence number.
	NextSequence() (uint64, error)
	// Sequence returns the bucket's current sequence number.
	Sequence() uint64
}
