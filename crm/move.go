package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage"
)

// Deals are the tenant's deals: the generic record operations plus moves
// through pipelines.
type Deals struct {
	*Records[Deal]
}

// MoveOptions describe a stage change.
type MoveOptions struct {
	// Version is the deal version the move is based on; if the deal has
	// changed since, the move fails with ErrConflict. 0 moves whatever
	// version is stored.
	Version uint64
	// Reason is required when moving to a lost stage.
	Reason string
	// Comment is free text kept in the stage history.
	Comment string
	// Actor is who moves the deal; guards can see it.
	Actor pipeline.Actor
}

// StageChange is one entry of a record's stage history.
type StageChange struct {
	ID         string `json:"id"`
	Collection string `json:"collection"`
	RecordID   string `json:"record_id"`
	Pipeline   string `json:"pipeline"`
	// FromPipeline is set when the record came from another pipeline.
	FromPipeline string `json:"from_pipeline,omitempty"`
	From         string `json:"from,omitempty"`
	To           string `json:"to"`
	Actor        string `json:"actor,omitempty"`
	Reason       string `json:"reason,omitempty"`
	Comment      string `json:"comment,omitempty"`
	// At is when the move happened; InPrevious is how long the record had
	// been in From.
	At         time.Time     `json:"at"`
	InPrevious time.Duration `json:"in_previous,omitempty"`
}

const historyCollection = "stage_history"

var historyKind = storage.Collection{Name: historyCollection, Indexes: []storage.Index{
	{Name: "record", Field: "record_id"},
}}

// Move changes a deal's stage within its pipeline, after checking that the
// pipeline allows it now (transitions, lost reasons, required fields,
// guards). The new stage, a stage-history entry and a deal.stage_changed
// event are written in one transaction; a refused move changes nothing.
// Errors: ErrNotFound, ErrConflict, ErrInvalid (the deal has no pipeline),
// and the pipeline package's ErrTransitionNotAllowed, ErrReasonRequired,
// ErrUnknownStage, *pipeline.GuardError and *pipeline.MissingFieldsError.
func (d *Deals) Move(ctx context.Context, id, to string, opts MoveOptions) (Deal, error) {
	var out Deal
	err := d.update(ctx, func(tx storage.Tx) error {
		cur, record, err := d.load(ctx, tx, id, opts.Version)
		if err != nil {
			return err
		}
		if cur.Pipeline == "" {
			return fmt.Errorf("%w: deal %s is in no pipeline", ErrInvalid, id)
		}
		p, err := d.t.compiled(ctx, tx, cur.Pipeline)
		if err != nil {
			return err
		}
		if err := p.Check(pipeline.Move{From: cur.Stage, To: to, Record: record, Actor: opts.Actor, Reason: opts.Reason}); err != nil {
			return err
		}
		out, err = d.relocate(ctx, tx, cur, p, to, opts)
		return err
	})
	return out, err
}

// ChangePipeline moves a deal into another pipeline, at the stage given
// explicitly (stages do not map by themselves). The target stage's required
// fields, the lost reason and the target pipeline's "*" guards apply. The
// history entry records the old pipeline and stage.
func (d *Deals) ChangePipeline(ctx context.Context, id, pipelineName, stage string, opts MoveOptions) (Deal, error) {
	var out Deal
	err := d.update(ctx, func(tx storage.Tx) error {
		cur, record, err := d.load(ctx, tx, id, opts.Version)
		if err != nil {
			return err
		}
		p, err := d.t.compiled(ctx, tx, pipelineName)
		if err != nil {
			return err
		}
		if err := p.CheckEnter(pipeline.Move{From: cur.Stage, To: stage, Record: record, Actor: opts.Actor, Reason: opts.Reason}); err != nil {
			return err
		}
		out, err = d.relocate(ctx, tx, cur, p, stage, opts)
		return err
	})
	return out, err
}

// load reads a deal for a move, checks the version the move is based on
// (0: any), and returns the deal as guards see it.
func (d *Deals) load(ctx context.Context, tx storage.Tx, id string, version uint64) (Deal, map[string]any, error) {
	cur, err := d.get(ctx, tx, id)
	if err != nil {
		return Deal{}, nil, err
	}
	if version != 0 && version != cur.Version {
		return Deal{}, nil, fmt.Errorf("%w: deal %s is at version %d, the move was based on version %d", ErrConflict, id, cur.Version, version)
	}
	record, err := asMap(cur)
	return cur, record, err
}

// relocate puts cur into stage to of pipeline p, which the caller has
// checked, and writes the deal, its history entry and its event.
func (d *Deals) relocate(ctx context.Context, tx storage.Tx, cur Deal, p *pipeline.Pipeline, to string, opts MoveOptions) (Deal, error) {
	now := d.now()
	change := StageChange{
		Collection: dealsCollection, RecordID: cur.ID, Pipeline: p.Name(), To: to,
		Actor: opts.Actor.ID, Reason: opts.Reason, Comment: opts.Comment, At: now,
	}
	change.From = cur.Stage
	if cur.Pipeline != p.Name() {
		change.FromPipeline = cur.Pipeline
	}
	if !cur.StageEnteredAt.IsZero() {
		change.InPrevious = now.Sub(cur.StageEnteredAt)
	}
	next := cur
	next.Pipeline, next.Stage, next.StageEnteredAt, next.StageDueAt = p.Name(), to, now, time.Time{}
	if st, _ := p.Stage(to); st.Terminal == pipeline.Open {
		if due, ok := p.Deadline(to, now); ok {
			next.StageDueAt = due.UTC()
		}
	}
	if err := clearBreach(ctx, tx, &cur); err != nil {
		return Deal{}, err
	}
	next.UpdatedAt, next.Version = now, cur.Version+1
	body, err := d.put(ctx, tx, &next, cur.Version)
	if err != nil {
		return Deal{}, err
	}
	if err := appendHistory(ctx, tx, &change); err != nil {
		return Deal{}, err
	}
	changed, err := diff(&cur, &next)
	if err != nil {
		return Deal{}, err
	}
	if err := d.appendEvent(ctx, tx, "stage_changed", cur.ID, body, changed); err != nil {
		return Deal{}, err
	}
	return next, nil
}

// History returns the deal's stage changes, oldest first.
func (d *Deals) History(ctx context.Context, id string) ([]StageChange, error) {
	var out []StageChange
	err := d.view(ctx, func(tx storage.ReadTx) error {
		if _, err := tx.Get(ctx, dealsCollection, id); err != nil {
			return err
		}
		q := storage.Query{Index: "record", Equal: id, Limit: storage.MaxScanLimit}
		for {
			pg, err := tx.Scan(ctx, historyCollection, q)
			if err != nil {
				return err
			}
			for _, r := range pg.Records {
				var c StageChange
				if err := json.Unmarshal(r.Body, &c); err != nil {
					return err
				}
				out = append(out, c)
			}
			if pg.Next == "" {
				return nil
			}
			q.Cursor = pg.Next
		}
	})
	return out, err
}

func appendHistory(ctx context.Context, tx storage.Tx, c *StageChange) error {
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	c.ID = id.String()
	body, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = tx.Put(ctx, historyCollection, storage.Record{ID: c.ID, Body: body})
	return err
}

// asMap returns v's JSON fields as a map, the record guards see.
func asMap(v any) (map[string]any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errors.Join(errors.New("record as map"), err)
	}
	return m, nil
}
