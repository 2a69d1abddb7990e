// Package storage defines Rapport's storage contract: a transactional,
// multi-tenant document store with secondary indexes and an outbox.
//
// # Model
//
// A [Store] holds collections of records. A record is an ID, a version and a
// JSON object body; it lives in exactly one tenant and one collection.
// Collections are declared with [Store.Declare] before use, together with
// their secondary indexes. An index extracts zero or more string values from
// a record body; a unique index allows each value at most once per tenant and
// collection.
//
// All reads and writes happen inside a transaction that is bound to one
// tenant: [Store.View] runs a read-only transaction over a consistent
// snapshot, [Store.Update] runs a read-write transaction that commits when its
// function returns nil and rolls back when it returns an error or panics. A
// transaction never sees another tenant's records.
//
// Writes use optimistic concurrency. [Tx.Put] with Version 0 creates a record
// (and fails with [ErrExists] if the ID is taken); with a non-zero Version it
// updates the record only if the stored version is the same, and otherwise
// fails with [ErrConflict]. Every successful write increments the version.
//
// The outbox is a single ordered log of [Event] values per store. Events are
// appended with [Tx.Append] in the same transaction as the records they
// describe, so they are committed or lost together. Consumers read the log by
// name with [Store.ReadOutbox] and move their position forward with
// [Store.AckOutbox]; whatever a consumer has not acknowledged it reads again,
// including after the store is closed and reopened.
//
// Do not start a transaction inside another on the same goroutine (for
// example a View inside an Update's function): backends serialise writers
// and may deadlock. Do everything that must be consistent in one
// transaction instead.
//
// # Backends
//
// storage/bolt is the embedded default, storage/memory keeps everything in
// memory for tests. Every backend passes the conformance suite in
// storage/storagetest unchanged.
//
// # Limits
//
// IDs and tenant names are 1 to [MaxIDLen] bytes of valid UTF-8 without
// control characters; bodies are JSON objects of at most [MaxBodySize] bytes;
// index values are at most [MaxIndexValueLen] bytes and contain no NUL byte.
// Input outside these limits is rejected with an error that wraps
// [ErrInvalid], and nothing is written.
package storage
