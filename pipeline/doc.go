// Package pipeline is Rapport's configurable state machine for leads,
// deals, service cases and accounts. It is pure logic: it stores nothing,
// and the crm engine persists records, stages and history.
//
// # Model
//
// A [Definition] names a pipeline, the kind of record it applies to, its
// stages in order (each with a probability for weighted forecasts, a time
// norm, fields required to enter it, and a terminal kind such as won or
// lost), the allowed transitions, guard expressions, and the reasons a
// record may be lost for. Definitions are built in Go or loaded from YAML or
// JSON with [Load]; loading validates everything and reports every problem
// with the file, line and stage.
//
// [Definition.Compile] returns a [Pipeline], which answers the questions a
// CRM asks: may this record move to stage X now, and if not why
// ([ErrTransitionNotAllowed], [*GuardError], [*MissingFieldsError], ...);
// which moves are allowed now; when is the record due to leave its stage,
// and is it overdue.
//
// Without explicit transitions a record may move forward to the next open
// stage, to any terminal stage, and back one stage; terminal stages are
// final unless the definition allows reopening.
//
// Guards are expressions in the shared rule language (internal/expression)
// over record (the record's fields by JSON name), actor, from, to and
// reason; time comes from the clock given to Compile.
//
// Ready-made definitions from classic CRM practice ship with the package:
// see [Builtins] and [Builtin].
package pipeline
