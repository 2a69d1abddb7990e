package postgres

// Statements that look up, delete or change the rows of many keys at
// once probe the key's index once per key: the keys are unnested and each
// is looked up in a LATERAL subquery that PostgreSQL cannot merge into a
// join (it has LIMIT 1, or OFFSET 0 where a key may match many rows), and
// DELETE and UPDATE then take the rows by their ctid.
//
// The plainer "key = ANY($n)" leaves the plan to the statistics.
// PostgreSQL 15, when they say that a tenant's collection (or index) is
// small, as they do for a table never analysed or for a tenant absent or
// small at the last ANALYZE, may scan the whole (tenant, collection)
// range of the index and filter it with the array: a GetMany of 1,000
// IDs in a collection of 200,000 records that had not been analysed read
// all 200,000 (90 ms; 1.9 s once the prepared statement switched to its
// generic plan) instead of 1,000 (5 ms), and removing one index value of
// one record read every entry of the index (20 ms). A join of the keys
// against the table fares no better: the planner may hash the whole
// range. See TestKeyedStatementsProbeTheKey and BenchmarkNewTenant.

// sqlGetMany reads the records of IDs $3 of collection $2.
const sqlGetMany = `SELECT r.id, r.version, r.body FROM unnest($3::bytea[]) AS k(id),
	LATERAL (SELECT id, version, body FROM records WHERE tenant = $1 AND coll = $2 AND id = k.id LIMIT 1) r`

// sqlTakenIDs returns which of IDs $3 collection $2 holds.
const sqlTakenIDs = `SELECT r.id FROM unnest($3::bytea[]) AS k(id),
	LATERAL (SELECT id FROM records WHERE tenant = $1 AND coll = $2 AND id = k.id LIMIT 1) r`

// sqlTakenKeys returns which of the records (collection $2[i], ID $3[i])
// are stored.
const sqlTakenKeys = `SELECT k.coll, k.id FROM unnest($2::text[], $3::bytea[]) AS k(coll, id),
	LATERAL (SELECT 1 FROM records WHERE tenant = $1 AND coll = k.coll AND id = k.id LIMIT 1) r`

// sqlHeldKeys returns which of the unique values (collection $2[i], index
// $3[i], value $4[i]) are held, and by which record.
const sqlHeldKeys = `SELECT k.coll, k.idx, k.value, u.id FROM unnest($2::text[], $3::text[], $4::bytea[]) AS k(coll, idx, value),
	LATERAL (SELECT id FROM uniques WHERE tenant = $1 AND coll = k.coll AND idx = k.idx AND value = k.value LIMIT 1) u`

// sqlHeldUniques returns which of values $4 of unique index $3 are held,
// and by which record.
const sqlHeldUniques = `SELECT u.value, u.id FROM unnest($4::bytea[]) AS k(value),
	LATERAL (SELECT value, id FROM uniques WHERE tenant = $1 AND coll = $2 AND idx = $3 AND value = k.value LIMIT 1) u`

// sqlDeleteEntries removes the entries of values $5 of index $3 of record $4.
const sqlDeleteEntries = `DELETE FROM entries WHERE ctid = ANY(ARRAY(
	SELECT e.ctid FROM unnest($5::bytea[]) AS k(value),
	LATERAL (SELECT ctid FROM entries WHERE tenant = $1 AND coll = $2 AND idx = $3 AND value = k.value AND id = $4 LIMIT 1) e))`

// sqlDeleteUniques removes the values $5 of unique index $3 that record
// $4 holds.
const sqlDeleteUniques = `DELETE FROM uniques WHERE ctid = ANY(ARRAY(
	SELECT u.ctid FROM unnest($5::bytea[]) AS k(value),
	LATERAL (SELECT ctid FROM uniques WHERE tenant = $1 AND coll = $2 AND idx = $3 AND value = k.value AND id = $4 LIMIT 1) u))`

// sqlDeleteColumns returns the statement that removes the rows of values
// $3 of record $2 from a columns table (see columnsTable).
func sqlDeleteColumns(table string) string {
	return `DELETE FROM ` + table + ` WHERE ctid = ANY(ARRAY(
	SELECT c.ctid FROM unnest($3::bytea[]) AS k(value),
	LATERAL (SELECT ctid FROM ` + table + ` WHERE tenant = $1 AND value = k.value AND id = $2 LIMIT 1) c))`
}

// sqlRedactEvents sets the body of the events of records $3 of collection
// $2 to $4.
const sqlRedactEvents = `UPDATE outbox SET body = $4 WHERE ctid = ANY(ARRAY(
	SELECT o.ctid FROM unnest($3::bytea[]) AS k(id),
	LATERAL (SELECT ctid FROM outbox WHERE tenant = $1 AND coll = $2 AND record_id = k.id OFFSET 0) o))`
