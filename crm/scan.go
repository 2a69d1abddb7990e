package crm

import (
	"context"
	"fmt"
	"strings"
	"time"

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
// here): fn gets each index value and record ID, page after page. A
// goroutine reads the next page while fn works through the last one, so
// that a scan of millions of keys takes about the longer of the two, not
// their sum; only that goroutine uses tx until scanKeys returns.
func scanKeys(ctx context.Context, tx storage.ReadTx, collection string, q storage.Query, fn func(key, id string) error) error {
	q.KeysOnly = true
	if q.Limit == 0 {
		q.Limit = storage.MaxScanLimit
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan storage.Page, 1)
	var scanErr error // set before pages is closed
	go func() {
		defer close(pages)
		for {
			pg, err := tx.Scan(ctx, collection, q)
			if err != nil {
				scanErr = err
				return
			}
			select {
			case pages <- pg:
			case <-ctx.Done():
				scanErr = ctx.Err()
				return
			}
			if pg.Next == "" {
				return
			}
			q.Cursor = pg.Next
		}
	}()
	var fnErr error
	for pg := range pages {
		if fnErr != nil {
			continue // draining, until the reader has stopped
		}
		for i, k := range pg.Keys {
			if fnErr = fn(k, pg.Records[i].ID); fnErr != nil {
				cancel()
				break
			}
		}
	}
	if fnErr != nil {
		return fnErr
	}
	return scanErr
}

// EachOptions select the records Records.Each visits.
type EachOptions struct {
	// By names the index to visit by, as in ListOptions; "" visits every
	// record in ID order.
	By string
	// Value keeps the records whose By value equals it. Empty with By set
	// visits every record that has a value, in value order.
	Value string
	// From and To bound the By values instead: From <= value < To, either
	// bound open when empty. They cannot be combined with Value. For a
	// time index such as an order's "ordered_at", use SortableTime.
	From, To string
	// Archived says whether archived records are visited, as in
	// ListOptions.
	Archived Archived
}

// indexQuery selects the records whose index by has the value, or a value
// in [from, to) (open ends when empty); "custom.<key>" names a custom
// field, whose values share one index behind the key.
func indexQuery(by, value, from, to string) storage.Query {
	key, custom := strings.CutPrefix(by, "custom.")
	if !custom {
		return storage.Query{Index: by, Equal: value, Start: from, End: to}
	}
	q := storage.Query{Index: "custom"}
	switch {
	case value != "":
		q.Equal = key + sep + value
	case from == "" && to == "":
		q.Prefix = key + sep
	default:
		q.Start, q.End = key+sep+from, key+sep+"\xff"
		if to != "" {
			q.End = key + sep + to
		}
	}
	return q
}

// SortableTime formats t as the engine's time indexes (for example an
// order's "ordered_at") hold it, for EachOptions.From and To.
func SortableTime(t time.Time) string { return t.UTC().Format(sortableTimeLayout) }

// Each calls fn for every record opts selects, in index order, in one
// snapshot, decoding one record at a time: a report can visit a whole
// collection without holding it. The snapshot is a read transaction: fn
// must not write through the engine, nor read through it (on bbolt a
// read inside the visit can wait on a writer that waits for the visit to
// end); collect what it needs and read after. fn must copy the record if
// it keeps a pointer: the value is reused. An error from fn stops the visit
// and is returned.
func (r *Records[T]) Each(ctx context.Context, opts EachOptions, fn func(*T) error) error {
	if opts.By == "" && (opts.Value != "" || opts.From != "" || opts.To != "") {
		return fmt.Errorf("crm: %s: %w: Value, From or To without By", r.k.name, ErrInvalid)
	}
	if opts.Value != "" && (opts.From != "" || opts.To != "") {
		return fmt.Errorf("crm: %s: %w: Value with From or To", r.k.name, ErrInvalid)
	}
	switch opts.Archived {
	case ArchivedExcluded, ArchivedIncluded, ArchivedOnly:
	default:
		return fmt.Errorf("crm: %s: %w: Archived %q: want \"\", include or only", r.k.name, ErrInvalid, opts.Archived)
	}
	q := indexQuery(opts.By, opts.Value, opts.From, opts.To)
	q.Limit = storage.MaxScanLimit
	if q.Start != "" && q.End != "" && q.Start >= q.End {
		return nil
	}
	return r.view(ctx, func(tx storage.ReadTx) error {
		return scanAll(ctx, tx, r.k.collection.Name, q, func(rec storage.Record) error {
			v, err := r.decode(rec)
			if err != nil {
				return err
			}
			if archived := !r.k.meta(&v).ArchivedAt.IsZero(); opts.Archived != ArchivedIncluded && archived != (opts.Archived == ArchivedOnly) {
				return nil
			}
			return fn(&v)
		})
	})
}
