package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/rapportcrm/rapport/storage"
)

// Indexes with Columns (storage.Index.Columns) are kept twice: as plain
// entries, for scans, and split into typed columns in a table of their
// own (storage.ColumnsTable), for reports that aggregate in SQL. Text is
// bytea (byte order, like every key here), integers bigint, times bigint
// Unix nanoseconds (timestamptz would drop the nanoseconds), NULL for no
// time. Each column is named c_ and its name.

func columnsTable(coll, idx string) string {
	return pgx.Identifier{storage.ColumnsTable(coll, idx)}.Sanitize()
}

func columnName(c storage.Column) string { return pgx.Identifier{"c_" + c.Name}.Sanitize() }

func columnSQLType(t storage.ColumnType) string {
	switch t {
	case storage.ColumnInt:
		return "bigint NOT NULL"
	case storage.ColumnTime:
		return "bigint"
	}
	return "bytea NOT NULL"
}

// createColumnsTable (re)creates the typed table of ix, empty.
func createColumnsTable(ctx context.Context, ptx pgx.Tx, coll string, ix storage.Index, rls bool) error {
	if _, err := ptx.Exec(ctx, "DROP TABLE IF EXISTS "+columnsTable(coll, ix.Name)); err != nil {
		return err
	}
	if len(ix.Columns) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE %s (tenant bytea NOT NULL, value bytea NOT NULL, id bytea NOT NULL", columnsTable(coll, ix.Name))
	for _, c := range ix.Columns {
		fmt.Fprintf(&b, ", %s %s", columnName(c), columnSQLType(c.Type))
	}
	b.WriteString(", PRIMARY KEY (tenant, value, id))")
	if _, err := ptx.Exec(ctx, b.String()); err != nil || !rls {
		return err
	}
	return fence(ctx, ptx, columnsTable(coll, ix.Name))
}

// columnRows splits values of ix into rows (tenant, value, id, columns...).
func columnRows(ix storage.Index, tenant, id []byte, values [][]byte) ([][]any, error) {
	rows := make([][]any, 0, len(values))
	for _, v := range values {
		fields, err := storage.ParseColumns(ix, string(v))
		if err != nil {
			return nil, err
		}
		rows = append(rows, append([]any{tenant, v, id}, fields...))
	}
	return rows, nil
}

// queueColumns queues, in w, the removal of gone and the insertion of
// added values of ix for one record.
func queueColumns(w *pgx.Batch, coll string, ix storage.Index, tenant, id []byte, gone, added [][]byte) error {
	table := columnsTable(coll, ix.Name)
	if len(gone) > 0 {
		w.Queue(sqlDeleteColumns(table), tenant, id, gone)
	}
	if len(added) == 0 {
		return nil
	}
	rows, err := columnRows(ix, tenant, id, added)
	if err != nil {
		return err
	}
	names := []string{"tenant", "value", "id"}
	for _, c := range ix.Columns {
		names = append(names, columnName(c))
	}
	for _, r := range rows {
		ph := make([]string, len(r))
		for i := range r {
			ph[i] = fmt.Sprintf("$%d", i+1)
		}
		w.Queue("INSERT INTO "+table+" ("+strings.Join(names, ", ")+") VALUES ("+strings.Join(ph, ", ")+")", r...)
	}
	return nil
}

func toBytes(vs []string) [][]byte {
	out := make([][]byte, len(vs))
	for i, v := range vs {
		out[i] = []byte(v)
	}
	return out
}
