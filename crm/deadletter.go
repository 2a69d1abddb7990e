package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/storage"
)

// DeadLetter records an event that a subscription could not handle in
// Options.MaxDeliveryAttempts attempts. The subscription moved on; the
// event stays here so that nothing is lost silently.
type DeadLetter struct {
	ID           string          `json:"id"`
	Subscription string          `json:"subscription"`
	EventSeq     uint64          `json:"event_seq"`
	EventType    string          `json:"event_type"`
	Collection   string          `json:"collection,omitempty"`
	RecordID     string          `json:"record_id,omitempty"`
	EventBody    json.RawMessage `json:"event_body,omitempty"`
	Error        string          `json:"error"`
	Attempts     int             `json:"attempts"`
	FailedAt     time.Time       `json:"failed_at"`
}

const deadLettersCollection = "dead_letters"

var deadLetterCollection = storage.Collection{Name: deadLettersCollection, Indexes: []storage.Index{
	{Name: "subscription", Field: "subscription"},
}}

// deadLetter stores a dead letter in the event's tenant and logs it. It
// reports whether the dead letter is stored; if not, it waits a backoff so
// that the caller's retry of the event does not spin.
func (e *Engine) deadLetter(ctx context.Context, log *slog.Logger, sub string, se storage.Event, attempts int, cause error) bool {
	log.Error("event not handled; stored as a dead letter", "err", cause, "attempts", attempts)
	dl := DeadLetter{
		ID:           fmt.Sprintf("%s/%020d", sub, se.Seq),
		Subscription: sub,
		EventSeq:     se.Seq,
		EventType:    se.Type,
		Collection:   se.Collection,
		RecordID:     se.RecordID,
		EventBody:    se.Body,
		Error:        cause.Error(),
		Attempts:     attempts,
		FailedAt:     e.clock.Now().UTC(),
	}
	if err := e.storeDeadLetter(ctx, se.Tenant, dl); err != nil {
		log.Error("storing the dead letter failed; the event will be delivered again", "err", err)
		e.sleep(ctx, e.opts.MaxRetryBackoff)
		return false
	}
	return true
}

// DeadLetters returns up to limit dead letters of the tenant, oldest
// subscription name and event first (limit 0 means
// storage.DefaultScanLimit).
func (t *Tenant) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	if err := t.e.enter(); err != nil {
		return nil, err
	}
	defer t.e.leave()
	var out []DeadLetter
	err := t.e.store.View(ctx, t.id, func(tx storage.ReadTx) error {
		p, err := tx.Scan(ctx, deadLettersCollection, storage.Query{Limit: limit})
		if err != nil {
			return err
		}
		for _, r := range p.Records {
			var dl DeadLetter
			if err := json.Unmarshal(r.Body, &dl); err != nil {
				return err
			}
			out = append(out, dl)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("crm: dead letters: %w", err)
	}
	return out, nil
}

// storeDeadLetter writes a dead letter once: one stored by an earlier
// delivery of the same event stays.
func (e *Engine) storeDeadLetter(ctx context.Context, tenant string, dl DeadLetter) error {
	body, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	dctx := context.WithoutCancel(ctx)
	return e.store.Update(dctx, tenant, func(tx storage.Tx) error {
		_, err := tx.Put(dctx, deadLettersCollection, storage.Record{ID: dl.ID, Body: body})
		if errors.Is(err, storage.ErrExists) {
			return nil
		}
		return err
	})
}

// inboundDeadLetter keeps an inbound event the domain refused, under the
// subscription name "inbound:<connector>", so that nothing received is
// lost; it returns nil once stored, so the event is acknowledged.
func (e *Engine) inboundDeadLetter(ctx context.Context, tenant, connector string, ev plugins.InboundEvent, cause error) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	typ := "inbound.delivery"
	switch {
	case ev.Form != nil:
		typ = "inbound.form"
	case ev.Message != nil:
		typ = "inbound.message"
	case ev.Call != nil:
		typ = "inbound.call"
	}
	return e.storeDeadLetter(ctx, tenant, DeadLetter{
		ID:           inboundID("inbound/", connector, ev.ID),
		Subscription: "inbound:" + connector,
		EventType:    typ,
		EventBody:    body,
		Error:        cause.Error(),
		Attempts:     1,
		FailedAt:     e.clock.Now().UTC(),
	})
}
