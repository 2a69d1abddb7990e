package postgres

// The SQL of the pushdown, for benchmarks that run it raw.
var (
	FunnelSQL = funnelSQL
	RFMSQL    = rfmSQL
)

// FactsArgs are the arguments of FunnelSQL (without the path ranks).
var FactsArgs = factsArgs

// DeclareLock returns the key of the store's declare lock.
func DeclareLock(s *Store) int64 { return s.lock(lockDeclare) }
