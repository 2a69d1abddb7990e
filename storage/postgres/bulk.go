package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/rapportcrm/rapport/storage"
)

var _ storage.BulkCreator = (*tx)(nil)

// CreateMany implements storage.BulkCreator: the records are checked in
// Go and against the database in one round trip (IDs and unique values
// taken), then written with COPY (one round trip per table), instead of
// two round trips per record.
func (t *tx) CreateMany(ctx context.Context, collection string, recs []storage.Record) ([]storage.Record, error) {
	if err := t.check(ctx, true); err != nil {
		return nil, err
	}
	c, err := t.s.collection(collection)
	if err != nil {
		return nil, err
	}
	tenant := []byte(t.tenant)
	bad := func(i int, err error) error { return &storage.RecordError{Index: i, ID: recs[i].ID, Err: err} }

	// In Go: each record valid, IDs and unique values distinct.
	vals := make([][][]string, len(recs))
	ids := make([][]byte, len(recs))
	seenID := make(map[string]int, len(recs))
	type uniq struct{ idx, value string }
	seenU := map[uniq]int{}
	byIndex := map[string][][]byte{} // unique values to probe, by index
	for i, r := range recs {
		if r.Version != 0 {
			return nil, bad(i, fmt.Errorf("%w: CreateMany creates: version %d", storage.ErrInvalid, r.Version))
		}
		if err := storage.ValidateID("record ID", r.ID); err != nil {
			return nil, bad(i, err)
		}
		if err := storage.ValidateBody(r.Body); err != nil {
			return nil, bad(i, err)
		}
		if j, ok := seenID[r.ID]; ok {
			return nil, bad(i, fmt.Errorf("%w: %s %q (record %d)", storage.ErrExists, collection, r.ID, j))
		}
		seenID[r.ID] = i
		v, err := c.IndexValues(r.Body)
		if err != nil {
			return nil, bad(i, err)
		}
		vals[i], ids[i] = v, []byte(r.ID)
		for k, ix := range c.Indexes {
			if !ix.Unique {
				continue
			}
			for _, value := range v[k] {
				u := uniq{ix.Name, value}
				if j, ok := seenU[u]; ok {
					return nil, bad(i, &storage.UniqueError{Collection: collection, Index: ix.Name, Value: value, ExistingID: recs[j].ID})
				}
				seenU[u] = i
				byIndex[ix.Name] = append(byIndex[ix.Name], []byte(value))
			}
		}
	}
	if len(recs) == 0 {
		return nil, nil
	}

	// One round trip: the IDs taken and the unique values held, each
	// probed in the primary key (see keyed.go). The first record in recs
	// that clashes is reported.
	b := t.queue()
	first := -1
	var firstErr error
	clash := func(i int, err error) {
		if first < 0 || i < first {
			first, firstErr = i, err
		}
	}
	b.Queue(sqlTakenIDs, tenant, collection, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id []byte
			if err := rows.Scan(&id); err != nil {
				return err
			}
			i := seenID[string(id)]
			clash(i, fmt.Errorf("%w: %s %q", storage.ErrExists, collection, recs[i].ID))
		}
		return rows.Err()
	})
	for name, values := range byIndex {
		b.Queue(sqlHeldUniques,
			tenant, collection, name, values).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var value, holder []byte
				if err := rows.Scan(&value, &holder); err != nil {
					return err
				}
				clash(seenU[uniq{name, string(value)}], &storage.UniqueError{Collection: collection, Index: name, Value: string(value), ExistingID: string(holder)})
			}
			return rows.Err()
		})
	}
	if err := t.send(ctx); err != nil {
		return nil, err
	}
	if t.stale() {
		// A Declare switched the definitions before the lock was granted.
		return t.CreateMany(ctx, collection, recs)
	}
	if first >= 0 {
		return nil, bad(first, firstErr)
	}

	// The writes. A record created meanwhile by another transaction makes
	// them fail on a primary key: the transaction is then lost
	// (ErrExists), as with Put.
	rows := make([][]any, len(recs))
	for i, r := range recs {
		rows[i] = []any{tenant, collection, ids[i], int64(1), []byte(r.Body)}
	}
	if err := copyRows(ctx, t.conn, t.s.rls, "records", []string{"tenant", "coll", "id", "version", "body"}, rows); err != nil {
		return nil, t.fail(err)
	}
	for k, ix := range c.Indexes {
		var entries, uniques, typed [][]any
		for i := range recs {
			for _, v := range vals[i][k] {
				e := []any{tenant, collection, ix.Name, []byte(v), ids[i]}
				entries = append(entries, e)
				if ix.Unique {
					uniques = append(uniques, e)
				}
			}
			if len(ix.Columns) > 0 {
				r, err := columnRows(ix, tenant, ids[i], toBytes(vals[i][k]))
				if err != nil {
					return nil, t.fail(err) // IndexValues parsed them already
				}
				typed = append(typed, r...)
			}
		}
		cols := []string{"tenant", "coll", "idx", "value", "id"}
		for _, w := range []struct {
			table string
			rows  [][]any
		}{{"entries", entries}, {"uniques", uniques}} {
			if len(w.rows) > 0 {
				if err := copyRows(ctx, t.conn, t.s.rls, w.table, cols, w.rows); err != nil {
					return nil, t.fail(err)
				}
			}
		}
		if len(typed) > 0 {
			names := []string{"tenant", "value", "id"}
			for _, col := range ix.Columns {
				names = append(names, "c_"+col.Name)
			}
			if err := copyRows(ctx, t.conn, t.s.rls, storage.ColumnsTable(collection, ix.Name), names, typed); err != nil {
				return nil, t.fail(err)
			}
		}
	}
	t.wrote(collection)
	out := make([]storage.Record, len(recs))
	for i, r := range recs {
		out[i] = storage.Record{ID: r.ID, Version: 1, Body: r.Body}
	}
	return out, nil
}
