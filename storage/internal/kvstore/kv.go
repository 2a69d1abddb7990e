// Package kvstore implements storage.Store once, over any ordered key-value
// database with buckets and serialised read-write transactions. The bolt and
// memory backends are thin adapters of their engine to the interfaces here,
// so that records, versions, indexes, scans and the outbox behave the same
// on both because they are the same code.
//
// Layout, one bucket per name:
//
//	meta                              "coll\x00<name>" → JSON index definitions
//	outbox                            big-endian seq → JSON storage.Event
//	consumers                         consumer name → big-endian acked seq
//	r\x00<tenant>\x00<coll>           record ID → big-endian version ‖ body
//	i\x00<tenant>\x00<coll>\x00<idx>  value ‖ \x00 ‖ record ID → empty
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
