package storage

import (
	"errors"
	"fmt"
)

// Sentinel errors returned by every Store implementation. Test for them with
// errors.Is; implementations wrap them with context.
var (
	// ErrNotFound means the record does not exist in this tenant and collection.
	ErrNotFound = errors.New("storage: record not found")
	// ErrExists means a create used an ID that is already taken.
	ErrExists = errors.New("storage: record already exists")
	// ErrConflict means a write carried a version that is no longer current:
	// someone else changed the record since it was read. Read it again and retry.
	ErrConflict = errors.New("storage: version conflict")
	// ErrInvalid means the input (ID, tenant, body, query, declaration) breaks
	// the documented rules. The wrapping error says which rule.
	ErrInvalid = errors.New("storage: invalid input")
	// ErrUnknownCollection means the collection was not declared with Declare.
	ErrUnknownCollection = errors.New("storage: unknown collection")
	// ErrUnknownIndex means a query named an index its collection does not declare.
	ErrUnknownIndex = errors.New("storage: unknown index")
	// ErrReadOnly means a write was attempted in a read-only transaction.
	ErrReadOnly = errors.New("storage: read-only transaction")
	// ErrClosed means the store has been closed.
	ErrClosed = errors.New("storage: store is closed")
	// ErrLocked means the database file is held by another process and the
	// lock could not be taken within the configured timeout.
	ErrLocked = errors.New("storage: database is locked by another process")
	// ErrFormat means a durable backend found data in an on-disk format
	// version it cannot read, written by another version of Rapport. The
	// data is left as it was.
	ErrFormat = errors.New("storage: unsupported on-disk format")
	// ErrTxDone means a transaction was used after its function returned.
	ErrTxDone = errors.New("storage: transaction has already finished")
	// ErrUnavailable means a server store could not be reached or lost
	// its connection (the server restarted or shut down, the network
	// failed). A transaction that failed before its commit did not
	// happen; one whose commit failed this way may or may not have
	// happened. Retry later: writes carry versions and idempotency keys,
	// so a retried write does not apply twice.
	ErrUnavailable = errors.New("storage: store unavailable")
)

// UniqueError reports that a write would give a unique index a value that
// another record already holds. It matches ErrExists with errors.Is.
type UniqueError struct {
	Collection string // collection of the record being written
	Index      string // name of the unique index
	Value      string // the duplicated value
	ExistingID string // ID of the record that holds the value
}

func (e *UniqueError) Error() string {
	return fmt.Sprintf("storage: unique index %s.%s: value %q is already used by record %s",
		e.Collection, e.Index, e.Value, e.ExistingID)
}

// Is makes errors.Is(err, ErrExists) true for a unique violation.
func (e *UniqueError) Is(target error) bool { return target == ErrExists }

// invalidf returns an error wrapping ErrInvalid.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
