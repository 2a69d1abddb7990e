package crm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rapportcrm/rapport/storage"
)

// Errors returned by the engine. They are the storage sentinels, so a test
// with errors.Is works whichever layer produced the error.
var (
	// ErrNotFound means the record does not exist in this tenant.
	ErrNotFound = storage.ErrNotFound
	// ErrConflict means the record was changed by someone else since it was
	// read (its version is stale). Get it again and reapply the change.
	ErrConflict = storage.ErrConflict
	// ErrExists means the record, or a unique value such as a contact's
	// email, already exists.
	ErrExists = storage.ErrExists
	// ErrInvalid means the input breaks a rule; a *ValidationError says which.
	ErrInvalid = storage.ErrInvalid
	// ErrClosed means the engine has been closed.
	ErrClosed = errors.New("crm: engine is closed")
	// ErrInUse means a record cannot be deleted because others refer to it.
	ErrInUse = errors.New("crm: record is in use")
)

// FieldError says what is wrong with one field.
type FieldError struct {
	Field   string // JSON name of the field, e.g. "email" or "custom.tier"
	Message string // what is wrong, e.g. "not an email address"
}

func (f FieldError) String() string { return f.Field + ": " + f.Message }

// ValidationError lists every invalid field of a record. It matches
// ErrInvalid with errors.Is; when a field clashes with another record (a
// unique value), Err holds the *storage.UniqueError and errors.Is(err,
// ErrExists) is true as well.
type ValidationError struct {
	Entity string // "contact", "account", ...
	ID     string // the record's ID, if it has one
	Fields []FieldError
	Err    error // underlying cause, if any
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.String()
	}
	id := ""
	if e.ID != "" {
		id = " " + e.ID
	}
	return fmt.Sprintf("crm: invalid %s%s: %s", e.Entity, id, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Unwrap returns the underlying cause.
func (e *ValidationError) Unwrap() error { return e.Err }

// Field returns the error for the named field, if there is one.
func (e *ValidationError) Field(name string) (FieldError, bool) {
	for _, f := range e.Fields {
		if f.Field == name {
			return f, true
		}
	}
	return FieldError{}, false
}

// problems collects field errors while a record is validated.
type problems []FieldError

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// has reports whether a problem with field was added.
func (p problems) has(field string) bool {
	for _, f := range p {
		if f.Field == field {
			return true
		}
	}
	return false
}

func (p problems) err(entity, id string) error {
	if len(p) == 0 {
		return nil
	}
	return &ValidationError{Entity: entity, ID: id, Fields: p}
}
