package postgres

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
