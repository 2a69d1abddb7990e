package crm

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/rapportcrm/rapport/storage"
)

// Timeline entry types.
const (
	TimelineStageChanged = "stage_changed" // StageChange is set
	TimelineInteraction  = "interaction"   // Ref is the interaction
	TimelineActivity     = "activity"      // an activity was planned; Ref is the activity
	TimelineActivityDone = "activity_done" // an activity was done; Ref is the activity
	TimelineOrder        = "order"         // an order or refund was placed; Ref is the order
)

// TimelineEntry is one item of a record's chronological history. Entries
// are written in the same transaction as what they record and are never
// changed; they stay when the record they belong to is deleted, for
// analytics.
type TimelineEntry struct {
	// ID starts with At (UTC, sortable), so entries listed in ID order are
	// in time order: a period's entries are an ID range.
	ID string `json:"id"`
	// Collection and RecordID name the record whose timeline holds the
	// entry, for example "deals" and the deal's ID.
	Collection string `json:"collection"`
	RecordID   string `json:"record_id"`
	// At is when it happened (for an interaction, when it occurred).
	At time.Time `json:"at"`
	// Type is one of the Timeline* constants.
	Type string `json:"type"`
	// Summary is one line for people to read.
	Summary string `json:"summary,omitempty"`
	// RefCollection and RefID name the record the entry is about, if it is
	// not the timeline's own record (an interaction, an activity).
	RefCollection string `json:"ref_collection,omitempty"`
	RefID         string `json:"ref_id,omitempty"`
	// StageChange is set on stage_changed entries.
	StageChange *StageChange `json:"stage_change,omitempty"`
}

// StageChange is one entry of a record's stage history.
type StageChange struct {
	Collection string `json:"collection"`
	RecordID   string `json:"record_id"`
	Pipeline   string `json:"pipeline"`
	// PipelineVersion is the version of the definition the move was made
	// under (see Pipelines.Versions).
	PipelineVersion uint64 `json:"pipeline_version,omitempty"`
	// FromPipeline is set when the record came from another pipeline.
	FromPipeline string `json:"from_pipeline,omitempty"`
	// From is empty when the record entered its first pipeline.
	From string `json:"from,omitempty"`
	To   string `json:"to"`
	// Owner is the record's owner when it moved, for reports by owner.
	Owner   string `json:"owner,omitempty"`
	Actor   string `json:"actor,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Comment string `json:"comment,omitempty"`
	// At is when the move happened; InPrevious is how long the record had
	// been in From.
	At         time.Time     `json:"at"`
	InPrevious time.Duration `json:"in_previous,omitempty"`
}

const timelineCollection = "timeline"

// timelineKind indexes entries by record, in time order: "record" is
// collection ‖ sep ‖ record ID ‖ sep ‖ at. Entry IDs start with the time,
// so the collection itself is in time order; one index keeps a move's
// writes (and its fsync) small.
// "moves" holds every stage change in a form reports read without
// decoding bodies (see moveKey).
var timelineKind = storage.Collection{Name: timelineCollection, Indexes: []storage.Index{
	{Name: "record", Extract: func(body []byte) ([]string, error) {
		at, err := sortableTime("at")(body)
		if err != nil || len(at) == 0 {
			return nil, err
		}
		return []string{gjsonString(body, "collection") + sep + gjsonString(body, "record_id") + sep + at[0]}, nil
	}},
	{Name: "moves", Extract: moveKey, Columns: moveColumns},
}}

// TimelineOptions select a page of a timeline.
type TimelineOptions struct {
	// Limit is the page size; 0 means storage.DefaultScanLimit.
	Limit int
	// Cursor continues after the previous page.
	Cursor string
	// Reverse lists the newest entries first.
	Reverse bool
}

// Timeline returns one page of the record's timeline, oldest first unless
// opts.Reverse: its stage changes, the interactions and activities linked
// to it. The record must exist.
func (r *Records[T]) Timeline(ctx context.Context, id string, opts TimelineOptions) (Page[TimelineEntry], error) {
	var page Page[TimelineEntry]
	err := r.view(ctx, func(tx storage.ReadTx) error {
		if _, err := tx.Get(ctx, r.k.collection.Name, id); err != nil {
			return err
		}
		q := storage.Query{Index: "record", Prefix: r.k.collection.Name + sep + id + sep,
			Limit: opts.Limit, Cursor: opts.Cursor, Reverse: opts.Reverse}
		pg, err := tx.Scan(ctx, timelineCollection, q)
		if err != nil {
			return err
		}
		page.Next = pg.Next
		page.Items = make([]TimelineEntry, 0, len(pg.Records))
		for _, rec := range pg.Records {
			var e TimelineEntry
			if err := json.Unmarshal(rec.Body, &e); err != nil {
				return fmt.Errorf("timeline entry %s: %w", rec.ID, err)
			}
			page.Items = append(page.Items, e)
		}
		return nil
	})
	return page, err
}

// scanTimeline calls fn for every entry of a record's timeline, oldest
// first.
func scanTimeline(ctx context.Context, tx storage.ReadTx, collection, id string, fn func(*TimelineEntry) error) error {
	q := storage.Query{Index: "record", Prefix: collection + sep + id + sep}
	return scanAll(ctx, tx, timelineCollection, q, func(rec storage.Record) error {
		var e TimelineEntry
		if err := json.Unmarshal(rec.Body, &e); err != nil {
			return fmt.Errorf("timeline entry %s: %w", rec.ID, err)
		}
		return fn(&e)
	})
}

// appendTimeline stores entries, assigning their IDs: the entry's time,
// then a UUIDv7 for uniqueness.
func appendTimeline(ctx context.Context, tx storage.Tx, entries ...*TimelineEntry) error {
	for _, e := range entries {
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		e.At = e.At.UTC()
		e.ID = e.At.Format(sortableTimeLayout) + "-" + id.String()
		body, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if _, err := tx.Put(ctx, timelineCollection, storage.Record{ID: e.ID, Body: body}); err != nil {
			return err
		}
	}
	return nil
}

// appendStageChange stores c on its record's timeline.
func appendStageChange(ctx context.Context, tx storage.Tx, c *StageChange) error {
	summary := c.Pipeline + ": " + c.To
	if c.From != "" {
		summary = c.Pipeline + ": " + c.From + " → " + c.To
	}
	return appendTimeline(ctx, tx, &TimelineEntry{
		Collection: c.Collection, RecordID: c.RecordID, At: c.At,
		Type: TimelineStageChanged, Summary: summary, StageChange: c,
	})
}
