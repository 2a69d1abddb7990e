package plugins

import (
	"errors"
	"fmt"
)

// Sentinel errors, testable with errors.Is on what the Manager's handles
// return.
var (
	// ErrTimeout: the plugin did not answer by the call's deadline.
	ErrTimeout = errors.New("plugin timed out")
	// ErrCrashed: the plugin process exited (or could not be started);
	// the manager starts it again, after a backoff, on a later call.
	ErrCrashed = errors.New("plugin crashed")
	// ErrRejected: the plugin refused the request for good (an unknown
	// template, a malformed address); retrying will not help.
	ErrRejected = errors.New("plugin rejected the request")
	// ErrChecksum: the plugin binary's SHA-256 is not the configured one.
	ErrChecksum = errors.New("plugin checksum mismatch")
	// ErrUnknown: no plugin of that name and kind is configured.
	ErrUnknown = errors.New("unknown plugin")
	// ErrClosed: the manager was closed.
	ErrClosed = errors.New("plugin manager closed")
)

// Error is an error from a plugin call, naming the plugin and the call.
type Error struct {
	// Plugin is the configured name of the plugin.
	Plugin string
	// Op is the call, e.g. "render" or "send".
	Op string
	// Err wraps one of the sentinels (ErrTimeout, ErrCrashed, ...) or the
	// plugin's own error.
	Err error
}

func (e *Error) Error() string { return fmt.Sprintf("plugin %s: %s: %v", e.Plugin, e.Op, e.Err) }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Reject marks err as a refusal for good: the host sees an error wrapping
// ErrRejected and does not retry. Plugin authors return it for requests
// that can never succeed.
func Reject(err error) error {
	if err == nil || errors.Is(err, ErrRejected) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrRejected, err)
}

// Rejectf is Reject(fmt.Errorf(format, args...)).
func Rejectf(format string, args ...any) error {
	return Reject(fmt.Errorf(format, args...))
}
