package postgres_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/postgres"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

// TestKeyedStatementsProbeTheKey checks that the statements that look
// up, remove or change the rows of many keys (keyed.go) read those rows
// and no others, whatever the statistics say: in a store whose tables
// were loaded and never analysed, so that the planner takes the tenant's
// collection for a few rows, each statement runs under EXPLAIN ANALYZE,
// with the plan made for its arguments and with the generic plan of a
// prepared statement, and its scans may read no more than a few rows and
// pages per key. Most of the forms they replace ("= ANY", or a join for
// the two that explain a failed commit) read the whole collection or
// index there, with one plan or both.
func TestKeyedStatementsProbeTheKey(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	raw := rawConn(t, st.Schema())
	visits := storage.Collection{Name: "visits", Indexes: []storage.Index{{Name: "visit", Field: "v", Columns: []storage.Column{{Name: "city"}}}}}
	require.NoError(t, st.Declare(ctx, append(storagetest.Collections(), visits)...))
	cols := storage.ColumnsTable("visits", "visit")
	for _, table := range []string{"records", "entries", "uniques", "outbox", cols} {
		_, err := raw.Exec(ctx, "ALTER TABLE "+pgx.Identifier{table}.Sanitize()+" SET (autovacuum_enabled = off)")
		require.NoError(t, err)
	}
	const n, keys = 20_000, 50
	people := make([]storage.Record, n)
	visitRecs := make([]storage.Record, n)
	events := make([]storage.Event, n)
	for i := range n {
		people[i] = storagetest.BenchRecord(i)
		visitRecs[i] = storage.Record{ID: people[i].ID, Body: fmt.Appendf(nil, `{"v":"city %d"}`, i)}
		events[i] = storage.Event{Type: "person.created", Collection: "people", RecordID: people[i].ID, Body: people[i].Body}
	}
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		bc := tx.(storage.BulkCreator)
		if _, err := bc.CreateMany(ctx, "people", people); err != nil {
			return err
		}
		if _, err := bc.CreateMany(ctx, "visits", visitRecs); err != nil {
			return err
		}
		return tx.Append(ctx, events...)
	}))
	var analysed int
	require.NoError(t, raw.QueryRow(ctx, `SELECT count(*) FROM pg_stat_user_tables
		WHERE schemaname = current_schema() AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)`).Scan(&analysed))
	require.Zero(t, analysed, "the tables are to be loaded and never analysed")

	// Keys spread over the collection, and the values they hold.
	var ids, emails [][]byte
	var colls, idxs []string
	for i := range keys {
		r := storagetest.BenchRecord(i * (n / keys))
		ids = append(ids, []byte(r.ID))
		emails = append(emails, fmt.Appendf(nil, "customer%d@example.com", i*(n/keys)))
		colls, idxs = append(colls, "people"), append(idxs, "email")
	}
	tenant := []byte("t")
	id := []byte(storagetest.BenchID(n / 2))
	cases := []struct {
		name  string
		sql   string
		args  []any
		keys  int
		found int // the rows the statement returns or changes
	}{
		{"GetMany", postgres.SQLGetMany, []any{tenant, "people", ids}, keys, keys},
		{"TakenIDs", postgres.SQLTakenIDs, []any{tenant, "people", ids}, keys, keys},
		{"HeldUniques", postgres.SQLHeldUniques, []any{tenant, "people", "email", emails}, keys, keys},
		{"TakenKeys", postgres.SQLTakenKeys, []any{tenant, colls, ids}, keys, keys},
		{"HeldKeys", postgres.SQLHeldKeys, []any{tenant, colls, idxs, emails}, keys, keys},
		{"DeleteEntries", postgres.SQLDeleteEntries, []any{tenant, "people", "email", id, [][]byte{fmt.Appendf(nil, "customer%d@example.com", n/2), []byte("gone")}}, 2, 1},
		{"DeleteUniques", postgres.SQLDeleteUniques, []any{tenant, "people", "email", id, [][]byte{fmt.Appendf(nil, "customer%d@example.com", n/2)}}, 1, 1},
		{"DeleteColumns", postgres.SQLDeleteColumns(pgx.Identifier{cols}.Sanitize()), []any{tenant, id, [][]byte{fmt.Appendf(nil, "city %d", n/2)}}, 1, 1},
		{"RedactEvents", postgres.SQLRedactEvents, []any{tenant, []byte("people"), ids, []byte(`{}`)}, keys, keys},
	}
	for _, c := range cases {
		for _, generic := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/generic=%v", c.name, generic), func(t *testing.T) {
				plan := explain(t, raw, c.sql, c.args, generic)
				read, pages, found := planRows(plan)
				t.Logf("%d keys: %d rows, %d pages read", c.keys, read, pages)
				assert.Equal(t, c.found, found, "rows returned or changed")
				assert.LessOrEqual(t, read, 2*c.keys, "rows read for %d keys:\n%s", c.keys, plan)
				assert.LessOrEqual(t, pages, 10*c.keys+10, "pages read for %d keys:\n%s", c.keys, plan)
			})
		}
	}
}

// explain runs sql with args under EXPLAIN ANALYZE in a transaction it
// rolls back, with the plan made for args or (generic) the generic plan
// of a prepared statement, and returns the plan in JSON.
func explain(t *testing.T, conn *pgx.Conn, sql string, args []any, generic bool) []byte {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	var plan []byte
	if !generic {
		require.NoError(t, tx.QueryRow(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+sql, args...).Scan(&plan))
		return plan
	}
	_, err = tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	sd, err := tx.Prepare(ctx, "keyed", sql)
	require.NoError(t, err)
	defer func() { _ = conn.Deallocate(ctx, sd.Name) }()
	// EXECUTE takes expressions, not parameters.
	lits := make([]string, len(args))
	for i, a := range args {
		lits[i] = literal(t, a)
	}
	require.NoError(t, tx.QueryRow(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE keyed("+strings.Join(lits, ", ")+")").Scan(&plan))
	return plan
}

// literal writes a as an SQL literal of its type.
func literal(t *testing.T, a any) string {
	var parts []string
	switch v := a.(type) {
	case string:
		return "'" + strings.ReplaceAll(v, "'", "''") + "'::text"
	case int:
		return fmt.Sprint(v)
	case []byte:
		return `'\x` + hex.EncodeToString(v) + "'::bytea"
	case []string:
		for _, s := range v {
			parts = append(parts, literal(t, s))
		}
		return "ARRAY[" + strings.Join(parts, ", ") + "]::text[]"
	case [][]byte:
		for _, b := range v {
			parts = append(parts, literal(t, b))
		}
		return "ARRAY[" + strings.Join(parts, ", ") + "]::bytea[]"
	}
	t.Fatalf("no literal for %T", a)
	return ""
}

// planRows returns the rows that the scans of plan read from tables and
// indexes (those returned, and those a filter or a recheck removed, in
// every loop), the pages they read (an index scan checks the columns
// after the first without an equality inside the index, unseen by the
// row counts), and the rows its top node returned or changed.
func planRows(plan []byte) (read, pages, found int) {
	nodes, err := planNodes(plan)
	if err != nil {
		return -1, -1, -1
	}
	num := func(node map[string]any, key string) int {
		f, _ := node[key].(float64)
		return int(f)
	}
	for _, node := range nodes {
		_, rel := node["Relation Name"]
		_, idx := node["Index Name"]
		if (rel || idx) && node["Node Type"] != "ModifyTable" {
			read += (num(node, "Actual Rows") + num(node, "Rows Removed by Filter") + num(node, "Rows Removed by Index Recheck")) * num(node, "Actual Loops")
		}
		if rel && node["Node Type"] != "ModifyTable" {
			// A scan's pages include those of the scans under it.
			pages += num(node, "Shared Hit Blocks") + num(node, "Shared Read Blocks")
		}
	}
	top := nodes[0]
	found = num(top, "Actual Rows")
	if top["Node Type"] == "ModifyTable" {
		// A DELETE or UPDATE returns nothing: what it changed is the
		// rows its scan passed up.
		for _, m := range children(top) {
			if m["Parent Relationship"] == "Outer" {
				found = num(m, "Actual Rows")
			}
		}
	}
	return read, pages, found
}

// planNodes returns the nodes of a plan in JSON (EXPLAIN (FORMAT JSON)),
// the top one first, each before those under it.
func planNodes(plan []byte) ([]map[string]any, error) {
	var out []struct{ Plan map[string]any }
	if err := json.Unmarshal(plan, &out); err != nil {
		return nil, err
	}
	if len(out) != 1 || out[0].Plan == nil {
		return nil, fmt.Errorf("%d plans", len(out))
	}
	var nodes []map[string]any
	var walk func(node map[string]any)
	walk = func(node map[string]any) {
		nodes = append(nodes, node)
		for _, c := range children(node) {
			walk(c)
		}
	}
	walk(out[0].Plan)
	return nodes, nil
}

// children returns the nodes right under node.
func children(node map[string]any) []map[string]any {
	list, _ := node["Plans"].([]any)
	var out []map[string]any
	for _, c := range list {
		if m, ok := c.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// TestScanFirstPageReadsOnlyIt checks that a scan by ID with no lower
// bound (the first page of a listing) reads that page in the primary
// key's order, whatever the statistics say: on a table never analysed,
// the planner took the tenant's collection for a few rows and read all
// of it to sort it (the plans made for the arguments; the test also
// runs the generic plans, and after a vacuum that did not analyse).
func TestScanFirstPageReadsOnlyIt(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	raw := rawConn(t, st.Schema())
	require.NoError(t, st.Declare(ctx, storagetest.Collections()...))
	_, err := raw.Exec(ctx, "ALTER TABLE records SET (autovacuum_enabled = off)")
	require.NoError(t, err)
	const n, limit = 20_000, 50
	for _, tenant := range []string{"t", "other"} {
		recs := make([]storage.Record, n)
		for i := range recs {
			recs[i] = storagetest.BenchRecord(i)
		}
		require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error {
			_, err := tx.(storage.BulkCreator).CreateMany(ctx, "people", recs)
			return err
		}))
	}
	queries := map[string]storage.Query{
		"first":          {Limit: limit},
		"last":           {Limit: limit, Reverse: true},
		"keys":           {Limit: limit, KeysOnly: true},
		"keys-last":      {Limit: limit, KeysOnly: true, Reverse: true},
		"before-the-end": {Limit: limit, End: storagetest.BenchID(n - 10)},
	}
	for _, vacuumed := range []bool{false, true} {
		if vacuumed {
			_, err := raw.Exec(ctx, "VACUUM records")
			require.NoError(t, err)
		}
		for name, q := range queries {
			sql, args, err := st.ScanSQL("t", "people", q)
			require.NoError(t, err)
			for _, generic := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/vacuumed=%v/generic=%v", name, vacuumed, generic), func(t *testing.T) {
					plan := explain(t, raw, sql, args, generic)
					read, pages, found := planRows(plan)
					t.Logf("%d rows, %d pages read", read, pages)
					assert.Equal(t, limit+1, found, "rows returned")
					assert.LessOrEqual(t, read, 2*(limit+1), "rows read:\n%s", plan)
					assert.LessOrEqual(t, pages, limit+20, "pages read:\n%s", plan)
				})
			}
		}
	}
}
