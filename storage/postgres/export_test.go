package postgres

// The SQL of the pushdown, for benchmarks that run it raw.
var (
	FunnelSQL = funnelSQL
	RFMSQL    = rfmSQL
)

// FactsArgs are the arguments of FunnelSQL (without the path ranks).
var FactsArgs = factsArgs
