// Package kvstore implements storage.Store once, over any ordered key-value
// database with buckets and serialised read-write transactions. The bolt and
// memory backends are thin adapters of their engine to the interfaces here,
// so that records, versions, indexes, scans and the outbox behave the same
// on both because they are the same code.
//
// # Layout
//
// Format 1, one bucket per name:
//
//	meta                              "format" → "1"
//	                                  "coll\x00<name>" → JSON index definitions
//	outbox                            big-endian seq → JSON storage.Event
//	consumers                         consumer name → big-endian acked seq
//	r\x00<tenant>\x00<coll>           record ID → big-endian version ‖ body
//	i\x00<tenant>\x00<coll>\x00<idx>  value ‖ \x00 ‖ record ID → empty
//
// None of the parts can hold a NUL byte: tenant names and record IDs have
// no control characters (storage.ValidateID), collection and index names
// are [a-z0-9_], index values and query bounds are checked for NUL
// (storage.ValidateIndexValue, storage.ValidateQuery). So a bucket name
// stands for exactly one tenant, collection and index ("a" and "a\x00b"
// cannot both be tenants), index entries sort by value, then by ID, and a
// transaction, which opens only buckets named after its own tenant, cannot
// reach another tenant's keys.
//
// Sharing one bucket per tenant and collection between the records and all
// index entries ('r' ‖ id and 'i' ‖ index ‖ 0 ‖ value ‖ 0 ‖ id) was tried
// and measured, and so was one bucket per tenant; both were dropped:
//
//   - Neither makes a durable write cheaper once buckets are more than a
//     page deep. A bbolt commit writes the path from a bucket's root to each
//     changed leaf, and every key range a write touches (the record, each
//     index) needs its own leaf and branch pages whichever bucket holds it.
//     Over 1,000 deal moves in the crm benchmark, a transaction wrote 10.5
//     pages with this layout, 10.4 with a bucket per collection and 12 with
//     a bucket per tenant; the time per move did not change measurably.
//   - A shared bucket makes large transactions into a new or small
//     collection quadratic: bbolt splits nodes only at commit, so every key
//     of the transaction goes into one in-memory leaf, and each index entry,
//     sorting before the records, shifts all the keys after it. Creating
//     10,000 records with three indexes in one transaction fell from about
//     60,000 to under 9,000 records/s.
//
// # Format version
//
// Open stamps an empty database with the format version in meta. Data
// without a stamp predates it and is in this same layout. Data stamped with
// another version is refused with storage.ErrFormat, so that a file written
// by a later layout is never read as this one.
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
