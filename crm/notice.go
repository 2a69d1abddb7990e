package crm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/rapportcrm/rapport/storage"
)

// Notices are markers that make timed events fire once: an SLA breach per
// record, stage and due time; an activity's reminder and its overdue
// notice per due time. A marker's ID is a hash of what it marks.
const noticesCollection = "notices"

var noticeCollection = storage.Collection{Name: noticesCollection}

// noticeID identifies one notice by its parts.
func noticeID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:20])
}

// dueString formats a due time for noticeID.
func dueString(t time.Time) string { return t.UTC().Format(sortableTimeLayout) }

// markOnce stores the notice marker id and reports whether it is new.
func markOnce(ctx context.Context, tx storage.Tx, id string) (bool, error) {
	_, err := tx.Put(ctx, noticesCollection, storage.Record{ID: id, Body: []byte(`{}`)})
	switch {
	case errors.Is(err, storage.ErrExists):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// forget removes the notice marker id, if stored.
func forget(ctx context.Context, tx storage.Tx, id string) error {
	err := tx.Delete(ctx, noticesCollection, id, 0)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// slaNotice identifies the breach of a record's stage due at due.
func slaNotice(collection, id, stage string, due time.Time) string {
	return noticeID(collection, id, "sla", stage, dueString(due))
}

// clearBreach forgets the breach marker of a record's stage, if any, so
// that the record can breach the stage again when it comes back.
func clearBreach(ctx context.Context, tx storage.Tx, collection, id, stage string, due time.Time) error {
	if due.IsZero() {
		return nil
	}
	return forget(ctx, tx, slaNotice(collection, id, stage, due))
}
