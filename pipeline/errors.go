package pipeline

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; test for them with errors.Is.
var (
	// ErrInvalidDefinition matches every *DefinitionError.
	ErrInvalidDefinition = errors.New("pipeline: invalid definition")
	// ErrUnknownStage means a move named a stage the pipeline does not have.
	ErrUnknownStage = errors.New("pipeline: unknown stage")
	// ErrTransitionNotAllowed means the pipeline has no transition for the move.
	ErrTransitionNotAllowed = errors.New("pipeline: transition not allowed")
	// ErrReasonRequired means a move to a lost stage has no reason, or one
	// that is not in the definition's list.
	ErrReasonRequired = errors.New("pipeline: a valid lost reason is required")
)

// GuardError says which guard refused a move. If the guard failed to run
// (for example it read a field the record does not have), Err holds why.
type GuardError struct {
	Pipeline string
	From, To string
	When     string // the guard's expression
	Message  string // the guard's message
	Err      error  // set if the guard could not be evaluated
}

func (e *GuardError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("pipeline %s: %s → %s: guard %q failed to run: %v", e.Pipeline, e.From, e.To, e.When, e.Err)
	}
	return fmt.Sprintf("pipeline %s: %s → %s: %s", e.Pipeline, e.From, e.To, e.Message)
}

func (e *GuardError) Unwrap() error { return e.Err }

// MissingFieldsError lists the fields a record must have set to enter a
// stage.
type MissingFieldsError struct {
	Pipeline string
	Stage    string
	Fields   []string
}

func (e *MissingFieldsError) Error() string {
	return fmt.Sprintf("pipeline %s: entering %s needs %s", e.Pipeline, e.Stage, strings.Join(e.Fields, ", "))
}
