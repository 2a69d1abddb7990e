// Package crm is the Rapport engine: customer records and everything that
// happens to them, on a pluggable store.
//
// # Basics
//
// [Open] returns an [Engine]. With zero [Options] it stores everything in a
// bbolt file named rapport.db; pass Options.Store to use another backend
// (storage/memory for tests). [Engine.Close] stops the engine and is safe to
// call twice.
//
// Records live in tenants. [Engine.Tenant] scopes every call to one tenant;
// a single-tenant program uses the Engine's own methods, which work on
// Options.DefaultTenant. Each entity kind (Contact, Account, ...) has a
// [Records] value with Create, Get, Update, Delete and List:
//
//	acme := engine.Tenant("acme")
//	c, err := acme.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", Email: "ada@example.com"})
//
// Every entity embeds [Meta]: ID (a time-ordered UUIDv7), tenant, owner,
// tags, custom fields, creation and update times, and a version. Updates
// carry the version they were based on; a stale version fails with
// [ErrConflict], so concurrent edits are never lost silently. Invalid input
// fails with a [*ValidationError] that names every bad field, and nothing
// is written.
//
// # Events
//
// Every write appends a domain event ("contact.created",
// "account.updated", ...) to the store's outbox in the same transaction, so
// a change and its event are committed together or not at all.
// [Engine.Subscribe] delivers events to a handler at least once, in commit
// order, resuming after a restart where the subscription left off.
//
// # Automations
//
// A tenant's automations (package automation: triggers, conditions,
// actions, as YAML) are stored with [Automations.Save] and run by the
// engine itself: from the outbox for event triggers, from stored alarms
// fired by [Tenant.CheckTimers] for schedules, dates and inactivity. Runs
// are exactly once for their store actions, retried and then recorded as
// failed, stopped when they loop; [Tenant.SimulateAutomations] is a dry
// run. See [Automations] for the guarantees.
//
// # Errors
//
// Errors are values: test them with errors.Is against [ErrNotFound],
// [ErrConflict], [ErrExists], [ErrInvalid], [ErrInUse] and [ErrClosed], or
// with errors.As against [*ValidationError].
package crm
