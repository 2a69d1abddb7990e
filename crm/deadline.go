package crm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/rapportcrm/rapport/storage"
)

// OverdueDeal is a deal past its stage's time norm.
type OverdueDeal struct {
	Deal Deal
	// By is how long past the norm the deal is.
	By time.Duration
}

// OverdueOptions select overdue deals.
type OverdueOptions struct {
	// Owner keeps only the deals of one owner.
	Owner string
	// Limit is the page size (before the Owner filter); 0 means
	// storage.DefaultScanLimit.
	Limit int
	// Cursor continues after the previous page.
	Cursor string
}

// Overdue lists the deals that are longer in their stage than its norm,
// most overdue first, at the engine clock's now. It reads only the overdue
// deals, through an index on StageDueAt. With Owner set a page can hold
// fewer than Limit deals; follow Next until it is "".
func (d *Deals) Overdue(ctx context.Context, opts OverdueOptions) (Page[OverdueDeal], error) {
	now := d.now()
	var page Page[OverdueDeal]
	q := storage.Query{Index: "stage_due", End: now.Format(sortableTimeLayout), Limit: opts.Limit, Cursor: opts.Cursor}
	err := d.view(ctx, func(tx storage.ReadTx) error {
		pg, err := tx.Scan(ctx, dealsCollection, q)
		if err != nil {
			return err
		}
		page.Next = pg.Next
		for _, rec := range pg.Records {
			deal, err := d.decode(rec)
			if err != nil {
				return err
			}
			if opts.Owner != "" && deal.Owner != opts.Owner {
				continue
			}
			page.Items = append(page.Items, OverdueDeal{Deal: deal, By: now.Sub(deal.StageDueAt)})
		}
		return nil
	})
	return page, err
}

const breachesCollection = "sla_breaches"

var breachCollection = storage.Collection{Name: breachesCollection}

// breachID identifies one breach: a deal, a stage and the due time, so a
// deal that comes back to a stage can breach it again.
func breachID(d *Deal) string {
	sum := sha256.Sum256([]byte(d.ID + "\x00" + d.Stage + "\x00" + d.StageDueAt.Format(sortableTimeLayout)))
	return hex.EncodeToString(sum[:20])
}

// clearBreach forgets the breach marker of d's current stage, if any.
func clearBreach(ctx context.Context, tx storage.Tx, d *Deal) error {
	if d.StageDueAt.IsZero() {
		return nil
	}
	err := tx.Delete(ctx, breachesCollection, breachID(d), 0)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// CheckDeadlines emits one "sla.breached" event for every deal that has
// passed its stage's norm at the engine clock's now and has not been
// reported for that stage yet, and returns how many it emitted. Call it on
// a schedule (every minute, say); calling it again emits nothing new. The
// event's data is the deal.
func (d *Deals) CheckDeadlines(ctx context.Context) (int, error) {
	now := d.now()
	q := storage.Query{Index: "stage_due", End: now.Format(sortableTimeLayout), Limit: 1000}
	emitted := 0
	for {
		var next string
		err := d.update(ctx, func(tx storage.Tx) error {
			pg, err := tx.Scan(ctx, dealsCollection, q)
			if err != nil {
				return err
			}
			next = pg.Next
			for _, rec := range pg.Records {
				deal, err := d.decode(rec)
				if err != nil {
					return err
				}
				marker := storage.Record{ID: breachID(&deal), Body: []byte(fmt.Sprintf(`{"deal":%q,"stage":%q}`, deal.ID, deal.Stage))}
				if _, err := tx.Put(ctx, breachesCollection, marker); errors.Is(err, storage.ErrExists) {
					continue
				} else if err != nil {
					return err
				}
				err = tx.Append(ctx, storage.Event{Type: "sla.breached", Collection: dealsCollection, RecordID: deal.ID,
					Time: now, Body: append(append([]byte(`{"data":`), rec.Body...), '}')})
				if err != nil {
					return err
				}
				emitted++
			}
			return nil
		})
		if err != nil {
			return emitted, err
		}
		if next == "" {
			return emitted, nil
		}
		q.Cursor = next
	}
}
