package crm

import (
	"context"
	"errors"
	"fmt"

	"github.com/rapportcrm/rapport/storage"
)

// FindBy returns the records whose value in index equals one of values,
// keyed by that value, in one read transaction; values with no record are
// absent from the map. With a non-unique index, one of the records holding
// a value is returned. It is meant for lookups by a unique index such as
// "email", "external_id", "sku" or "number".
func (r *Records[T]) FindBy(ctx context.Context, index string, values []string) (map[string]T, error) {
	out := make(map[string]T, len(values))
	err := r.view(ctx, func(tx storage.ReadTx) error {
		for _, v := range values {
			if _, seen := out[v]; seen || v == "" {
				continue
			}
			pg, err := tx.Scan(ctx, r.k.collection.Name, storage.Query{Index: index, Equal: v, Limit: 1})
			if err != nil {
				return err
			}
			if len(pg.Records) == 0 {
				continue
			}
			rec, err := r.decode(pg.Records[0])
			if err != nil {
				return err
			}
			out[v] = rec
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CreateEach stores the valid records of recs in one transaction and
// reports the others: created[i] is the stored record when errs[i] is
// nil; errs[i] is a *ValidationError (a bad or duplicate value) or wraps
// ErrExists (the ID is taken) for a record that was left out. The error
// return is for failures that stop the whole batch, which then writes
// nothing. Use it for imports, where one bad row should not stop the rest.
// Validation happens before a record's first write (including the check
// that its events will fit), so a record left out leaves nothing behind.
//
// On a store whose transactions create many records at once
// (storage.BulkCreator, PostgreSQL), the valid records are sent in bulk.
// A record the store refuses (an ID or unique value taken) is then left
// out and the transaction run again without it; after maxBulkRetries
// such refusals the rest goes one record at a time.
func (r *Records[T]) CreateEach(ctx context.Context, recs []T) (created []T, errs []error, err error) {
	refused := map[int]error{} // by the store, in an earlier attempt
	for attempt := 0; ; attempt++ {
		var again *heldError
		err = r.update(ctx, func(tx storage.Tx) error {
			created, errs = make([]T, len(recs)), make([]error, len(recs))
			again = nil
			var held *heldTx
			if bulk, ok := tx.(storage.BulkCreator); ok && attempt < maxBulkRetries {
				held = &heldTx{Tx: tx, bulk: bulk, coll: r.k.collection.Name}
				tx = held
			}
			now := r.now()
			for i, rec := range recs {
				if e, ok := refused[i]; ok {
					errs[i] = e
					continue
				}
				if held != nil {
					held.current = i
				}
				stored, err := r.create(ctx, tx, rec, now)
				var ve *ValidationError
				switch {
				case errors.As(err, &again):
					return err // a held creation refused when sent
				case errors.As(err, &ve):
					errs[i] = err
				case errors.Is(err, storage.ErrExists):
					errs[i] = fmt.Errorf("crm: %s: %w", r.k.name, err)
				case err != nil:
					return fmt.Errorf("record %d of %d: %w", i, len(recs), err)
				default:
					created[i] = stored
				}
			}
			if held != nil {
				if err := held.flush(ctx); err != nil {
					errors.As(err, &again)
					return err
				}
			}
			return nil
		})
		if again == nil {
			break
		}
		// The transaction was rolled back: leave the refused record out
		// and run it again.
		e := r.putError(again.id, again.err)
		var ve *ValidationError
		if !errors.As(e, &ve) {
			if !errors.Is(e, storage.ErrExists) {
				return nil, nil, fmt.Errorf("record %d of %d: %w", again.index, len(recs), e)
			}
			e = fmt.Errorf("crm: %s: %w", r.k.name, e)
		}
		refused[again.index] = e
	}
	if err != nil {
		return nil, nil, err
	}
	return created, errs, nil
}

// maxBulkRetries bounds the bulk attempts of a CreateEach whose records
// the store refuses, before it writes the rest one record at a time.
const maxBulkRetries = 3
