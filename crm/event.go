package crm

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/rapportcrm/rapport/storage"
)

// Event is a domain event delivered to subscriptions: something that
// happened to a record, written in the same transaction as the change.
type Event struct {
	// Seq is the event's position in the outbox; it increases in commit
	// order. A redelivered event has the same Seq.
	Seq uint64
	// Tenant is the tenant of the record.
	Tenant string
	// Type is "<entity>.<what>", for example "contact.created".
	Type string
	// Collection and ID name the record.
	Collection string
	ID         string
	// Time is when the change was made, by the engine's clock.
	Time time.Time
	// Data is the record as JSON after the change (before it, for deletes).
	Data json.RawMessage
	// Changed lists the JSON names of the fields an update changed.
	Changed []string
	// From and To are the stages a "<kind>.stage_changed" record left
	// and entered.
	From, To string
	// Segment is the segment of segment.entered and segment.left.
	Segment string
	// Depth counts the automation runs that led to this event (0: none,
	// the change was made by a person or program); Run is the run that
	// wrote it. See Automations.
	Depth int
	Run   string
}

// Decode unmarshals the event's Data into v, for example a *Contact.
func (ev Event) Decode(v any) error {
	if err := json.Unmarshal(ev.Data, v); err != nil {
		return fmt.Errorf("crm: decoding %s event %d: %w", ev.Type, ev.Seq, err)
	}
	return nil
}

func eventFromStorage(se storage.Event) (Event, error) {
	ev := Event{Seq: se.Seq, Tenant: se.Tenant, Type: se.Type, Collection: se.Collection, ID: se.RecordID, Time: se.Time}
	if len(se.Body) > 0 {
		var b eventBody
		if err := json.Unmarshal(se.Body, &b); err != nil {
			return ev, fmt.Errorf("crm: event %d: %w", se.Seq, err)
		}
		ev.Data, ev.Changed, ev.From, ev.Depth, ev.Run = b.Data, b.Changed, b.From, b.Depth, b.Run
		if strings.HasSuffix(se.Type, ".stage_changed") {
			var st struct {
				Stage string `json:"stage"`
			}
			_ = json.Unmarshal(b.Data, &st)
			ev.To = st.Stage
		}
		if strings.HasPrefix(se.Type, "segment.") {
			var c struct {
				Segment string `json:"segment"`
			}
			_ = json.Unmarshal(se.Body, &c)
			ev.Segment = c.Segment
		}
	}
	return ev, nil
}

// Handler handles one event. A handler that returns an error is called
// again with the same event after a backoff (see Options.RetryBackoff), up
// to Options.MaxDeliveryAttempts times; a handler that panics counts as
// failed. Its context is cancelled when the engine closes. A handler must
// not call Engine.Close: Close waits for running handlers.
type Handler func(ctx context.Context, ev Event) error

// Subscription receives events from the outbox, at least once and in
// commit order, for every tenant.
type Subscription struct {
	// Name identifies the subscription durably: its position in the outbox
	// is stored under this name, so after a restart it resumes with the
	// first event it had not finished. A subscription with a new name starts
	// at the oldest event in the outbox. Names follow storage.ValidateID.
	Name string
	// Events lists the event types to deliver: an exact type such as
	// "contact.created", a prefix pattern such as "contact.*", or "*".
	// Empty means every event.
	Events []string
	// Handler is called for every matching event, one at a time.
	Handler Handler
}

func (s Subscription) matches(typ string) bool {
	if len(s.Events) == 0 {
		return true
	}
	for _, p := range s.Events {
		switch {
		case p == "*" || p == typ:
			return true
		case strings.HasSuffix(p, ".*") && strings.HasPrefix(typ, p[:len(p)-1]):
			return true
		}
	}
	return false
}
