package crm

import (
	"context"

	"github.com/rapportcrm/rapport/storage"
)

// scanAll calls fn for every record of collection that q selects, page
// after page, within tx (q.Limit is the page size; 0 means the largest).
// fn may write to the collection: pages are read before fn sees them, and
// the cursor stays valid.
func scanAll(ctx context.Context, tx storage.ReadTx, collection string, q storage.Query, fn func(storage.Record) error) error {
	if q.Limit == 0 {
		q.Limit = storage.MaxScanLimit
	}
	for {
		pg, err := tx.Scan(ctx, collection, q)
		if err != nil {
			return err
		}
		for _, rec := range pg.Records {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if pg.Next == "" {
			return nil
		}
		q.Cursor = pg.Next
	}
}

// scanKeys is scanAll for a keys-only index scan (q.KeysOnly is set
// here): fn gets each index value and record ID, page after page.
func scanKeys(ctx context.Context, tx storage.ReadTx, collection string, q storage.Query, fn func(key, id string) error) error {
	q.KeysOnly = true
	if q.Limit == 0 {
		q.Limit = storage.MaxScanLimit
	}
	for {
		pg, err := tx.Scan(ctx, collection, q)
		if err != nil {
			return err
		}
		for i, k := range pg.Keys {
			if err := fn(k, pg.Records[i].ID); err != nil {
				return err
			}
		}
		if pg.Next == "" {
			return nil
		}
		q.Cursor = pg.Next
	}
}
