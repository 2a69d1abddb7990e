package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Record is one document in a collection.
type Record struct {
	// ID identifies the record within its tenant and collection.
	ID string
	// Version is 0 for a record that has never been stored. The store sets it
	// to 1 on create and increments it on every update.
	Version uint64
	// Body is a JSON object of at most MaxBodySize bytes.
	Body json.RawMessage
}

// Event is one entry of the outbox.
type Event struct {
	// Seq is the event's position in the outbox, assigned by the store when
	// the transaction that appends it commits, or after (PostgreSQL), but
	// before any reader sees the event. Sequence numbers are never reused
	// and follow commit order: an event comes after the events of every
	// transaction that had committed when its own began to commit (those of
	// transactions that commit at the same moment may come either way).
	Seq uint64
	// Tenant is the tenant of the transaction that appended the event; the
	// store sets it, whatever the caller passed.
	Tenant string
	// Type names what happened, for example "contact.created". Required.
	Type string
	// Collection and RecordID name the record the event is about, if any.
	Collection string
	RecordID   string
	// Time is when the event happened, as the caller's clock saw it.
	Time time.Time
	// Body is optional JSON with the event's data.
	Body json.RawMessage
}

// Query selects records of one collection, in order, for Tx.Scan.
//
// Without Index the scan runs over record IDs; with Index it runs over that
// index's values, and records with the same value come in ID order. At most
// one of Equal, Prefix and the Start/End range may be used. The zero Query
// scans the whole collection.
type Query struct {
	// Index is the name of a declared index, or "" for the ID order.
	Index string
	// Equal selects the key (index value or ID) equal to this string.
	Equal string
	// Prefix selects keys that start with this string.
	Prefix string
	// Start and End select keys k with Start <= k < End. An empty Start means
	// from the first key, an empty End means to the last.
	Start, End string
	// Reverse scans from the last key to the first.
	Reverse bool
	// Limit is the maximum number of records in a page: 0 means
	// DefaultScanLimit, larger than MaxScanLimit is an error.
	Limit int
	// Cursor resumes a scan after the last record of a previous page: pass
	// the Page.Next of that page with the same query. It stays valid across
	// transactions; records written after the previous page was read are
	// included if they sort after the cursor.
	Cursor string
	// KeysOnly leaves the records out of the page: each Record carries only
	// its ID (Version 0, Body nil), and an index scan still fills Keys.
	// Reports use it to read what an index value carries without reading
	// and decoding bodies, which is many times faster.
	KeysOnly bool
}

// Page is one page of a scan.
type Page struct {
	// Records are the records of the page, in scan order.
	Records []Record
	// Keys holds, for an index scan, the index value that placed each record
	// (a record with several values appears once per matching value).
	Keys []string
	// Next is the cursor of the next page, or "" when the scan is complete.
	Next string
}

// ReadTx is a read-only view of one tenant's records in a consistent
// snapshot. A ReadTx must not be used after the function it was passed to
// returns, nor from several goroutines at once.
type ReadTx interface {
	// Tenant returns the tenant the transaction is bound to.
	Tenant() string
	// Get returns the record with the given ID, or an error wrapping
	// ErrNotFound.
	Get(ctx context.Context, collection, id string) (Record, error)
	// Scan returns one page of the records selected by q.
	Scan(ctx context.Context, collection string, q Query) (Page, error)
}

// Tx is a read-write transaction over one tenant. Its writes become visible
// to others, all together, only when the transaction commits.
type Tx interface {
	ReadTx
	// Put creates the record if rec.Version is 0 and updates it otherwise.
	// A create fails with ErrExists if the ID is taken; an update fails with
	// ErrNotFound if the record does not exist and with ErrConflict if its
	// stored version is not rec.Version. A unique index violation returns a
	// *UniqueError. Put returns the record as stored, with its new version.
	// A server store may send the write itself later in the transaction:
	// when a concurrent transaction takes the ID or a unique value between
	// Put's check and the write, the transaction fails at its next
	// statement or its commit, with an error wrapping ErrExists or
	// ErrConflict.
	Put(ctx context.Context, collection string, rec Record) (Record, error)
	// Delete removes the record and its index entries. If version is not 0
	// it must equal the stored version, or Delete fails with ErrConflict.
	Delete(ctx context.Context, collection, id string, version uint64) error
	// Append adds events to the outbox. They are committed with the
	// transaction and get their sequence numbers then.
	Append(ctx context.Context, events ...Event) error
	// RedactEvents replaces the body of every outbox event of this tenant
	// about one of the records ids of collection — delivered or not,
	// including those appended in this transaction — with body (which may
	// be nil), keeping each event's sequence number, type and time, and
	// returns how many it changed. It serves erasure of personal data; it
	// reads the whole outbox once, so it is not for frequent use. On
	// PostgreSQL an event committed but not yet numbered when the
	// transaction began may be numbered meanwhile, which fails the
	// transaction with ErrConflict: run it again.
	RedactEvents(ctx context.Context, collection string, ids []string, body []byte) (int, error)
}

// BulkCreator is implemented by the transactions of stores that create
// many new records faster together than with one Put each (PostgreSQL: a
// fixed number of round trips instead of two per record). CreateMany is
// Put with Version 0 for each record of recs, all or none: if a record is
// invalid (ErrInvalid), its ID is taken (ErrExists) or one of its unique
// values is taken, by a stored record or an earlier one of recs (a
// *UniqueError), CreateMany writes nothing, returns a *RecordError that
// says which record, and the transaction stays usable. It returns the
// records as stored.
type BulkCreator interface {
	CreateMany(ctx context.Context, collection string, recs []Record) ([]Record, error)
}

// MultiGetter is implemented by the read transactions of stores that read
// many records faster together than with one Get each (PostgreSQL: one
// round trip instead of one per record). GetMany returns the records of
// ids that exist, in the order of ids (an ID given twice comes once);
// the others are left out. It sees what Get would.
type MultiGetter interface {
	GetMany(ctx context.Context, collection string, ids []string) ([]Record, error)
}

// MultiScanner is implemented by the read transactions of stores that run
// many scans faster together than one by one (PostgreSQL: one round trip
// instead of one per scan). ScanMany returns the page of each query of
// collection, in the order of qs, as Scan would return it in the
// transaction; an invalid query fails the call, and no query runs.
type MultiScanner interface {
	ScanMany(ctx context.Context, collection string, qs []Query) ([]Page, error)
}

// Deferrer is implemented by the write transactions of server stores
// that can send a write, or a check of what the transaction read, with
// the transaction's next statement or its commit instead of waiting for
// an answer (PostgreSQL: a transaction that creates a record and appends
// its event commits in one round trip instead of three).
//
// Create is Put with Version 0, except for when its failures are
// reported. A record Create refuses at once (ErrInvalid, a clash with
// another record this transaction created) is not written and the
// transaction goes on. But a taken ID (ErrExists) or unique value
// (*UniqueError, naming the record's collection) may instead fail any
// later call of the transaction that goes to the store (a Get, a Scan, a
// Put of another record) or its commit; the transaction then writes
// nothing. When the holder of the value is gone by the time the store
// looks, the error wraps ErrConflict instead, and a retry may succeed. A
// caller that must know at once uses Put.
//
// Replace is Put with a Version other than 0 (0 is ErrInvalid), with the
// same freedom: a store that holds what it needs (PostgreSQL: the record
// as this transaction read it, at rec.Version, before it wrote anything
// else to the collection) sends the write unchecked, and a unique value
// taken (*UniqueError) or a record changed or deleted by a concurrent
// transaction (ErrConflict) may fail a later call or the commit instead
// of Replace. Otherwise Replace checks as Put does.
//
// Expect makes the transaction fail, with nothing written, unless record
// id of collection has version (0: does not exist) in the transaction's
// snapshot, which is what Get would return there. It lets a caller use a
// copy it read in an earlier transaction without reading it again; like
// Get, it does not see a change committed after the snapshot was taken.
// The failure, an *ExpectError, comes from a later call or the commit,
// as for Create. Versions restart at 1 when a record is deleted and
// created again, so Expect suits records that are never deleted.
type Deferrer interface {
	Create(ctx context.Context, collection string, rec Record) (Record, error)
	Replace(ctx context.Context, collection string, rec Record) (Record, error)
	Expect(ctx context.Context, collection, id string, version uint64) error
}

// ExpectError is the failure of a transaction whose Expect did not hold:
// the record is not at the expected version. It matches ErrConflict with
// errors.Is; the caller reads the record again and retries.
type ExpectError struct {
	Collection string
	ID         string
	Version    uint64 // the version expected
}

func (e *ExpectError) Error() string {
	return fmt.Sprintf("storage: %s %q is no longer at version %d", e.Collection, e.ID, e.Version)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ExpectError) Is(target error) bool { return target == ErrConflict }

// RecordError says which record of a CreateMany failed, and why.
type RecordError struct {
	Index int // position in recs
	ID    string
	Err   error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("record %d (%s): %v", e.Index, e.ID, e.Err)
}

func (e *RecordError) Unwrap() error { return e.Err }

// Store is a transactional multi-tenant document store with secondary
// indexes and an outbox. Implementations are safe for concurrent use.
type Store interface {
	// Declare registers collections and their indexes. Declaring a
	// collection again with the same indexes is a no-op; an index that is
	// new or whose definition changed is (re)built from the stored records
	// of every tenant, and an index no longer declared is dropped. If
	// building fails (for example a unique index meets a duplicate) nothing
	// changes and the error says why.
	Declare(ctx context.Context, collections ...Collection) error
	// View runs fn in a read-only transaction bound to tenant.
	View(ctx context.Context, tenant string, fn func(ReadTx) error) error
	// Update runs fn in a read-write transaction bound to tenant. The
	// transaction commits if fn returns nil and rolls back if fn returns an
	// error or panics (the panic is then propagated). An error from fn is
	// returned unchanged. Once Update returns nil the writes are durable (for
	// backends that are durable at all).
	Update(ctx context.Context, tenant string, fn func(Tx) error) error
	// ReadOutbox returns, in order, up to limit events that follow the last
	// event consumer has acknowledged. A consumer that has never
	// acknowledged anything starts at the first event. Consumer names follow
	// the rules for IDs.
	ReadOutbox(ctx context.Context, consumer string, limit int) ([]Event, error)
	// OutboxHead returns the sequence number of the newest committed event,
	// 0 when there is none: a consumer that has handled every event up to
	// it has seen every write committed before the call.
	OutboxHead(ctx context.Context) (uint64, error)
	// AckOutbox records that consumer has handled every event up to and
	// including seq. Acknowledging a position at or before the current one
	// is a no-op.
	AckOutbox(ctx context.Context, consumer string, seq uint64) error
	// OutboxSignal returns a channel that is closed when events are next
	// committed. Take the channel before ReadOutbox so that no commit is
	// missed; take a new one after it fires.
	OutboxSignal() <-chan struct{}
	// Close releases the store. It waits for running transactions and is
	// safe to call more than once; afterwards every call fails with ErrClosed.
	Close() error
}
