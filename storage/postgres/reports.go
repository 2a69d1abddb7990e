package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rapportcrm/rapport/analytics"
)

// The analytics pushdown (analytics.FunnelAggregator, StageAggregator and
// RFMAggregator): the funnel, the stage report and RFM computed in SQL
// over the typed tables of the crm facts indexes (see columns.go), so
// that a report moves a few rows out of the database instead of every
// fact. The numbers are those of the streaming path (a test runs both on
// the same data).

// Index names of the crm facts (their columns: crm.FactsCollections and
// crm.OrdersCollection).
const (
	movesIndex    = "moves"
	positionIndex = "position"
	factsIndex    = "customer_facts"
)

var (
	_ analytics.FunnelAggregator = (*Store)(nil)
	_ analytics.StageAggregator  = (*Store)(nil)
	_ analytics.RFMAggregator    = (*Store)(nil)
)

// nanos is a bound as Unix nanoseconds, nil when open.
func nanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixNano()
	return &n
}

// factsArgs returns the arguments shared by the facts queries:
// $1 tenant, $2 records collection, $3 pipeline, $4 stages, $5 from,
// $6 to, $7 owners (NULL: all), $8 group by owner.
func factsArgs(q analytics.FactsQuery) []any {
	stages := make([][]byte, len(q.Stages))
	for i, s := range q.Stages {
		stages[i] = []byte(s)
	}
	var owners [][]byte
	if q.Owners != nil {
		owners = make([][]byte, len(q.Owners))
		for i, o := range q.Owners {
			owners[i] = []byte(o)
		}
	}
	return []any{[]byte(q.Tenant), []byte(q.Records), []byte(q.Pipeline), stages, nanos(q.From), nanos(q.To), owners, q.ByOwner}
}

// movesSQL selects the moves of the query's period into a stage of the
// pipeline (on column stageCol: c_to_stage or c_from_stage) as g (the
// group), rec, pos (1-based stage position) and the move's in_previous.
func movesSQL(timeline, stageCol string) string {
	return `SELECT CASE WHEN $8 THEN m.c_owner ELSE ''::bytea END AS g, m.c_record_id AS rec, s.pos, m.c_in_previous AS in_prev
		FROM ` + columnsTable(timeline, movesIndex) + ` m
		JOIN unnest($4::bytea[]) WITH ORDINALITY AS s(stage, pos) ON m.` + stageCol + ` = s.stage
		WHERE m.tenant = $1 AND m.c_collection = $2 AND m.c_pipeline = $3
			AND ($5::bigint IS NULL OR m.c_at >= $5) AND ($6::bigint IS NULL OR m.c_at < $6)
			AND ($7::bytea[] IS NULL OR m.c_owner = ANY($7))`
}

// funnelSQL counts, per group, the records by the set of stages they
// entered (a bit mask of stage positions) and the highest path rank among
// them: one hash aggregation per record, then a handful of rows, which
// AggregateFunnel expands into per-stage counts. $9 holds the path ranks.
func funnelSQL(timeline string) string {
	return `WITH per AS (
			SELECT g, bit_or(1::bigint << (pos::int - 1)) AS mask, max(($9::int[])[pos]) AS best
			FROM (` + movesSQL(timeline, "c_to_stage") + `) m
			GROUP BY g, rec)
		SELECT g, mask, best, count(*) FROM per GROUP BY g, mask, best`
}

// AggregateFunnel implements analytics.FunnelAggregator. Pipelines of
// more than 63 stages are left to the streaming path.
func (s *Store) AggregateFunnel(ctx context.Context, q analytics.FunnelAggregate) ([]analytics.FunnelCounts, error) {
	if len(q.PathRank) != len(q.Stages) {
		return nil, fmt.Errorf("postgres: funnel: %d path ranks for %d stages", len(q.PathRank), len(q.Stages))
	}
	if len(q.Stages) > 63 {
		return nil, fmt.Errorf("postgres: funnel of %d stages: %w", len(q.Stages), errors.ErrUnsupported)
	}
	ranks := make([]int32, len(q.PathRank))
	byRank := map[int32]int{} // path rank → stage position
	for i, r := range q.PathRank {
		ranks[i] = int32(r)
		if r >= 0 {
			byRank[int32(r)] = i
		}
	}
	groups := map[string]*analytics.FunnelCounts{}
	var order []string
	err := s.query(ctx, "funnel", q.Tenant, funnelSQL(q.Timeline), append(factsArgs(q.FactsQuery), ranks), func(rows pgx.Rows) error {
		var g []byte
		var mask, n int64
		var best int32
		if err := rows.Scan(&g, &mask, &best, &n); err != nil {
			return err
		}
		fc, ok := groups[string(g)]
		if !ok {
			fc = &analytics.FunnelCounts{Group: string(g), Entered: make([]int, len(q.Stages)), Furthest: make([]int, len(q.Stages))}
			groups[string(g)] = fc
			order = append(order, string(g))
		}
		for st := range q.Stages {
			if mask&(1<<st) != 0 {
				fc.Entered[st] += int(n)
			}
		}
		if st, ok := byRank[best]; ok && best >= 0 {
			fc.Furthest[st] += int(n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]analytics.FunnelCounts, 0, len(order))
	for _, g := range order {
		out = append(out, *groups[g])
	}
	return out, nil
}

// AggregateStages implements analytics.StageAggregator.
func (s *Store) AggregateStages(ctx context.Context, q analytics.StageAggregate) ([]analytics.StageCounts, error) {
	n := len(q.Stages)
	groups := map[string]*analytics.StageCounts{}
	var order []string
	group := func(g string) *analytics.StageCounts {
		sc, ok := groups[g]
		if !ok {
			sc = &analytics.StageCounts{Group: g, Exits: make([]int, n), Average: make([]time.Duration, n),
				Median: make([]time.Duration, n), Current: make([]int, n), Overdue: make([]int, n)}
			groups[g] = sc
			order = append(order, g)
		}
		return sc
	}
	// Stays: the moves out of each stage in the period. The average is
	// the sum divided by the count, toward zero (numeric: a sum of many
	// long stays overflows bigint); the median the lower middle one.
	stays := `SELECT g, pos, count(*), sum(in_prev)::text, percentile_disc(0.5) WITHIN GROUP (ORDER BY in_prev)
		FROM (` + movesSQL(q.Timeline, "c_from_stage") + `) m GROUP BY g, pos`
	// Positions: where the records are now, by their owner now.
	current := `SELECT CASE WHEN $5 THEN p.c_owner ELSE ''::bytea END AS g, s.pos, count(*),
			count(*) FILTER (WHERE p.c_due_at IS NOT NULL AND p.c_due_at < $6)
		FROM ` + columnsTable(q.Records, positionIndex) + ` p
		JOIN unnest($3::bytea[]) WITH ORDINALITY AS s(stage, pos) ON p.c_stage = s.stage
		WHERE p.tenant = $1 AND p.c_pipeline = $2 AND ($4::bytea[] IS NULL OR p.c_owner = ANY($4))
		GROUP BY 1, 2`
	a := factsArgs(q.FactsQuery)
	stay := func(rows pgx.Rows) error {
		var g []byte
		var pos, count, median int64
		var sum string
		if err := rows.Scan(&g, &pos, &count, &sum, &median); err != nil {
			return err
		}
		total, ok := new(big.Int).SetString(sum, 10)
		if !ok {
			return fmt.Errorf("sum of stays %q", sum)
		}
		avg := total.Quo(total, big.NewInt(count))
		if !avg.IsInt64() {
			return fmt.Errorf("average stay in stage %d overflows", pos)
		}
		sc := group(string(g))
		sc.Exits[pos-1], sc.Average[pos-1], sc.Median[pos-1] = int(count), time.Duration(avg.Int64()), time.Duration(median)
		return nil
	}
	position := func(rows pgx.Rows) error {
		var g []byte
		var pos, count, overdue int64
		if err := rows.Scan(&g, &pos, &count, &overdue); err != nil {
			return err
		}
		sc := group(string(g))
		sc.Current[pos-1], sc.Overdue[pos-1] = int(count), int(overdue)
		return nil
	}
	// Both in one snapshot, as the streaming path reads them.
	err := s.snapshot(ctx, "stages", q.Tenant, func(each eachRow) error {
		if err := each(stays, a, stay); err != nil {
			return err
		}
		return each(current, []any{a[0], a[2], a[3], a[6], a[7], q.At.UnixNano()}, position)
	})
	if err != nil {
		return nil, err
	}
	out := make([]analytics.StageCounts, 0, len(order))
	for _, g := range order {
		out = append(out, *groups[g])
	}
	return out, nil
}

// rfmSQL sums each customer's orders per currency: $1 tenant, $2 the
// currency (NULL: all).
func rfmSQL(orders string) string {
	return `SELECT c_customer, c_currency, count(*) FILTER (WHERE c_refund = 0), max(c_ordered_at) FILTER (WHERE c_refund = 0), sum(c_total)::text
		FROM ` + columnsTable(orders, factsIndex) + `
		WHERE tenant = $1 AND ($2::bytea IS NULL OR c_currency = $2)
		GROUP BY c_customer, c_currency ORDER BY c_customer, c_currency`
}

// AggregateRFM implements analytics.RFMAggregator.
func (s *Store) AggregateRFM(ctx context.Context, q analytics.RFMAggregate) ([]analytics.CustomerTotals, error) {
	var currency []byte
	if q.Currency != "" {
		currency = []byte(q.Currency)
	}
	var out []analytics.CustomerTotals
	err := s.query(ctx, "rfm", q.Tenant, rfmSQL(q.Orders), []any{[]byte(q.Tenant), currency}, func(rows pgx.Rows) error {
		var customer, cur []byte
		var freq int64
		var last *int64
		var sum string
		if err := rows.Scan(&customer, &cur, &freq, &last, &sum); err != nil {
			return err
		}
		total, ok := new(big.Int).SetString(sum, 10)
		if !ok || !total.IsInt64() {
			return fmt.Errorf("customer %s: the total of their orders (%s) overflows", customer, sum)
		}
		t := analytics.CustomerTotals{CustomerID: string(customer), Currency: string(cur), Frequency: int(freq), Monetary: total.Int64()}
		if last != nil {
			t.Last = time.Unix(0, *last).UTC()
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// eachRow runs a query and calls fn for each row.
type eachRow func(sql string, args []any, fn func(pgx.Rows) error) error

// snapshot runs fn in one read-only snapshot, for a report whose queries
// must see the same data.
func (s *Store) snapshot(ctx context.Context, report, tenant string, fn func(each eachRow) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", report, mapErr(err))
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	if err := s.setTenant(ctx, tx, tenant); err != nil {
		return err
	}
	return fn(func(sql string, args []any, row func(pgx.Rows) error) error {
		// Unnamed, not a statement prepared once per connection: after
		// five runs PostgreSQL may keep a prepared statement's generic
		// plan, which does not know the tenant, and it scanned the
		// whole typed table (every tenant's rows) for a small tenant
		// once a large one had run the report on that connection. A
		// report is planned for its own arguments every time, at the
		// price of one more round trip.
		rows, err := tx.Query(ctx, sql, append([]any{pgx.QueryExecModeDescribeExec}, args...)...)
		if err != nil {
			return fmt.Errorf("postgres: %s: %w", report, mapErr(err))
		}
		defer rows.Close()
		for rows.Next() {
			if err := row(rows); err != nil {
				return fmt.Errorf("postgres: %s: %w", report, err)
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("postgres: %s: %w", report, mapErr(err))
		}
		return nil
	})
}

// query runs one report query in a read-only snapshot.
func (s *Store) query(ctx context.Context, report, tenant, sql string, args []any, fn func(pgx.Rows) error) error {
	return s.snapshot(ctx, report, tenant, func(each eachRow) error { return each(sql, args, fn) })
}
