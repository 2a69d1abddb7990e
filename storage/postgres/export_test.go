package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/rapportcrm/rapport/storage"
)

// The SQL of the pushdown, for benchmarks that run it raw.
var (
	FunnelSQL = funnelSQL
	RFMSQL    = rfmSQL
)

// FactsArgs are the arguments of FunnelSQL (without the path ranks).
var FactsArgs = factsArgs

// SetSeenVersion changes the version at which a write transaction
// remembers reading a record, to test what guards Replace against a
// memory that does not match the row.
func SetSeenVersion(wtx any, collection, id string, version uint64) {
	t := wtx.(*tx)
	k := [2]string{collection, id}
	r := t.seen[k]
	r.Version = version
	t.seen[k] = r
}

// QueueSequencing queues on b the transaction by which readers number
// pending events, for tests that hold one open.
func (s *Store) QueueSequencing(b *pgx.Batch) { queueSequencing(b, s.lock(lockOutbox), nil, nil) }

// CopyEventsMin is the least number of events a transaction writes with
// COPY.
const CopyEventsMin = copyEventsMin

// SetPendingGroup makes n events of a transaction share a draw of a
// pending number, so that tests need not write a million.
func (s *Store) SetPendingGroup(n int) { s.pendingGroup = n }

// The statements of keyed.go, for the test of their plans.
var (
	SQLGetMany       = sqlGetMany
	SQLTakenIDs      = sqlTakenIDs
	SQLHeldUniques   = sqlHeldUniques
	SQLTakenKeys     = sqlTakenKeys
	SQLHeldKeys      = sqlHeldKeys
	SQLDeleteEntries = sqlDeleteEntries
	SQLDeleteUniques = sqlDeleteUniques
	SQLDeleteColumns = sqlDeleteColumns
	SQLRedactEvents  = sqlRedactEvents
)

// PreparedStatements returns the statements prepared on a connection of
// the store's pool (with a pool of one free connection, the one every
// call uses).
func (s *Store) PreparedStatements(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT statement FROM pg_prepared_statements")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// ScanSQL returns the statement and arguments by which a transaction of
// tenant scans collection with q.
func (s *Store) ScanSQL(tenant, collection string, q storage.Query) (string, []any, error) {
	t := &tx{s: s, tenant: tenant}
	b := &pgx.Batch{}
	if err := t.queueScan(b, collection, q, &storage.Page{}); err != nil {
		return "", nil, err
	}
	return b.QueuedQueries[0].SQL, b.QueuedQueries[0].Arguments, nil
}
