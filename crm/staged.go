package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage"
)

// stageRef points at the pipeline fields of a record that moves through
// pipelines (a lead, deal, case or account).
type stageRef struct {
	pipeline, stage  *string
	enteredAt, dueAt *time.Time
}

// staging describes how a kind moves through pipelines.
type staging[T any] struct {
	kind pipeline.Kind
	ref  func(*T) stageRef
	// sla, if set, returns the norm that replaces a stage's own when the
	// stage names an SLA term, and the time the norm counts from; ok is
	// false when the record has no such term (a case without a contract).
	sla func(ctx context.Context, tx storage.ReadTx, rec *T, term pipeline.SLATerm, entered time.Time) (norm pipeline.Norm, from time.Time, ok bool, err error)
}

// stagedIndexes are the indexes every staged kind has:
//   - "stage": "<pipeline>/<stage>";
//   - "stage_due": StageDueAt, for overdue scans;
//   - "owner_due": owner ‖ 0x1F ‖ StageDueAt, for one owner's overdue
//     records (IDs cannot hold control characters, so the separator is
//     unambiguous);
//   - "position": the record's place for reports (see positionKey).
func stagedIndexes() []storage.Index {
	return []storage.Index{
		{Name: "stage", Extract: pipelineStage},
		{Name: "position", Extract: positionKey, Columns: positionColumns},
		{Name: "stage_due", Extract: sortableTime("stage_due_at")},
		{Name: "owner_due", Extract: ownerDue},
	}
}

// Staged holds the records of a kind that moves through pipelines: the
// generic record operations plus moves, stage history, overdue lists and
// deadline checks. Leads, deals, cases and accounts are staged.
//
// A record enters a pipeline when it is created with Pipeline set (at
// Stage, or at the first stage if Stage is empty; StageEnteredAt may be
// given, not in the future, for imports). Creating a record at a stage is
// not a move: transitions, guards and required fields are not checked.
// From then on its stage changes only through Move, ChangePipeline, or a
// pipeline change that migrates it (Pipelines.SaveWith); Update refuses to
// change it. Due times follow the stage's norm, or a contract's SLA, and
// are recomputed when the definition or the contract changes.
//
// Timed events: sla.breached fires once per record, stage and due time
// (Tenant.CheckTimers), so a record that comes back to a stage can breach
// it again, while a deadline that does not move (a case's resolution
// time) fires once however often the case comes back.
type Staged[T any] struct {
	*Records[T]
}

// MoveOptions describe a stage change.
type MoveOptions struct {
	// Version is the record version the move is based on; if the record
	// has changed since, the move fails with ErrConflict. 0 moves whatever
	// version is stored.
	Version uint64
	// Reason is required when moving to a lost stage.
	Reason string
	// Comment is free text kept in the stage history.
	Comment string
	// Actor is who moves the record; guards can see it.
	Actor pipeline.Actor
}

// Move changes a record's stage within its pipeline, after checking that
// the pipeline allows it now (transitions, lost reasons, required fields,
// guards). The new stage, a stage-history entry on the record's timeline
// and a "<kind>.stage_changed" event are written in one transaction; a
// refused move changes nothing. Errors: ErrNotFound, ErrConflict,
// ErrInvalid (the record is in no pipeline), and the pipeline package's
// ErrTransitionNotAllowed, ErrReasonRequired, ErrUnknownStage,
// *pipeline.GuardError and *pipeline.MissingFieldsError.
func (s *Staged[T]) Move(ctx context.Context, id, to string, opts MoveOptions) (T, error) {
	var out T
	err := s.update(ctx, func(tx storage.Tx) error {
		cur, p, err := s.checkMove(ctx, tx, id, to, opts)
		if err != nil {
			return err
		}
		out, err = s.relocate(ctx, tx, cur, p, to, opts)
		return err
	})
	return out, err
}

// checkMove loads record id and checks that its pipeline allows the move
// to stage to now; it writes nothing.
func (s *Staged[T]) checkMove(ctx context.Context, tx storage.Tx, id, to string, opts MoveOptions) (T, *pipeline.Pipeline, error) {
	var zero T
	cur, record, err := s.load(ctx, tx, id, opts.Version)
	if err != nil {
		return zero, nil, err
	}
	ref := s.k.staging.ref(&cur)
	if *ref.pipeline == "" {
		return zero, nil, fmt.Errorf("%w: %s %s is in no pipeline", ErrInvalid, s.k.name, id)
	}
	p, err := s.t.compiled(ctx, tx, *ref.pipeline)
	if err != nil {
		return zero, nil, err
	}
	if err := p.Check(pipeline.Move{From: *ref.stage, To: to, Record: record, Actor: opts.Actor, Reason: opts.Reason}); err != nil {
		return zero, nil, err
	}
	return cur, p, nil
}

// MoveRequest is one move of a MoveEach batch.
type MoveRequest struct {
	// ID is the record to move; To the stage it moves to, in its pipeline.
	ID, To string
	MoveOptions
}

// MoveEach makes the allowed moves of reqs in one transaction, in order,
// and reports the others: moved[i] is the moved record when errs[i] is
// nil; errs[i] is the error Move would return for a move that was
// refused (ErrNotFound, ErrConflict, ErrInvalid, and the pipeline
// package's errors) and that changed nothing. A later request for the same
// record sees the earlier move. All moves of a batch happen at the same
// instant, the clock's time when the transaction starts. The error return
// is for failures that stop the whole batch, which then writes nothing.
// Use it for mass updates and imports of stage history, where one refused
// move should not stop the rest.
func (s *Staged[T]) MoveEach(ctx context.Context, reqs []MoveRequest) (moved []T, errs []error, err error) {
	err = s.update(ctx, func(tx storage.Tx) error {
		moved, errs = make([]T, len(reqs)), make([]error, len(reqs))
		for i, r := range reqs {
			cur, p, err := s.checkMove(ctx, tx, r.ID, r.To, r.MoveOptions)
			if err != nil {
				if !refused(err) {
					return fmt.Errorf("move %d of %d: %w", i, len(reqs), err)
				}
				errs[i] = err
				continue
			}
			if moved[i], err = s.relocate(ctx, tx, cur, p, r.To, r.MoveOptions); err != nil {
				return fmt.Errorf("move %d of %d: %w", i, len(reqs), err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return moved, errs, nil
}

// refused reports whether err refuses one move, rather than failing the
// store.
func refused(err error) bool {
	var guard *pipeline.GuardError
	var missing *pipeline.MissingFieldsError
	for _, target := range []error{ErrNotFound, ErrConflict, ErrInvalid, pipeline.ErrTransitionNotAllowed,
		pipeline.ErrReasonRequired, pipeline.ErrUnknownStage} {
		if errors.Is(err, target) {
			return true
		}
	}
	return errors.As(err, &guard) || errors.As(err, &missing)
}

// Allowed returns the stages the record may move to now, by its
// pipeline's transitions, required fields and guards, as actor; a lost
// stage is listed if some configured reason would be accepted. A record in
// no pipeline has none.
func (s *Staged[T]) Allowed(ctx context.Context, id string, actor pipeline.Actor) ([]pipeline.Stage, error) {
	var out []pipeline.Stage
	err := s.view(ctx, func(tx storage.ReadTx) error {
		cur, err := s.get(ctx, tx, id)
		if err != nil {
			return err
		}
		ref := s.k.staging.ref(&cur)
		if *ref.pipeline == "" {
			return nil
		}
		p, err := s.t.compiled(ctx, tx, *ref.pipeline)
		if err != nil {
			return err
		}
		record, err := asMap(&cur)
		if err != nil {
			return err
		}
		out = p.Allowed(pipeline.Move{From: *ref.stage, Record: record, Actor: actor})
		return nil
	})
	return out, err
}

// ChangePipeline moves a record into another pipeline of its kind, at the
// stage given explicitly (stages do not map by themselves). The target
// stage's required fields, the lost reason and the target pipeline's "*"
// guards apply. The history entry records the old pipeline and stage.
func (s *Staged[T]) ChangePipeline(ctx context.Context, id, pipelineName, stage string, opts MoveOptions) (T, error) {
	var out T
	err := s.update(ctx, func(tx storage.Tx) error {
		cur, record, err := s.load(ctx, tx, id, opts.Version)
		if err != nil {
			return err
		}
		ref := s.k.staging.ref(&cur)
		if pipelineName == *ref.pipeline {
			return fmt.Errorf("%w: %s %s is in pipeline %s already; use Move, which checks the transitions", ErrInvalid, s.k.name, id, pipelineName)
		}
		p, err := s.t.compiled(ctx, tx, pipelineName)
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("%w: no pipeline %q in this tenant", ErrInvalid, pipelineName)
		}
		if err != nil {
			return err
		}
		if p.Kind() != s.k.staging.kind {
			return fmt.Errorf("%w: pipeline %s is for %ss, not %ss", ErrInvalid, pipelineName, p.Kind(), s.k.staging.kind)
		}
		if err := p.CheckEnter(pipeline.Move{From: *ref.stage, To: stage, Record: record, Actor: opts.Actor, Reason: opts.Reason}); err != nil {
			return err
		}
		out, err = s.relocate(ctx, tx, cur, p, stage, opts)
		return err
	})
	return out, err
}

// load reads a record for a move, checks the version the move is based on
// (0: any), and returns the record as guards see it.
func (s *Staged[T]) load(ctx context.Context, tx storage.Tx, id string, version uint64) (T, map[string]any, error) {
	cur, err := s.get(ctx, tx, id)
	if err != nil {
		var zero T
		return zero, nil, err
	}
	if v := s.k.meta(&cur).Version; version != 0 && version != v {
		var zero T
		return zero, nil, fmt.Errorf("%w: %s %s is at version %d, the move was based on version %d", ErrConflict, s.k.name, id, v, version)
	}
	record, err := asMap(&cur)
	return cur, record, err
}

// relocate puts cur into stage to of pipeline p, which the caller has
// checked, and writes the record, its history entry and its event.
func (s *Staged[T]) relocate(ctx context.Context, tx storage.Tx, cur T, p *pipeline.Pipeline, to string, opts MoveOptions) (T, error) {
	var zero T
	now := s.now()
	m := s.k.meta(&cur)
	ref := s.k.staging.ref(&cur)
	change := StageChange{
		Collection: s.k.collection.Name, RecordID: m.ID, Pipeline: p.Name(), From: *ref.stage, To: to,
		Owner: m.Owner, Actor: opts.Actor.ID, Reason: opts.Reason, Comment: opts.Comment, At: now,
	}
	if *ref.pipeline != p.Name() {
		change.FromPipeline = *ref.pipeline
	}
	if !ref.enteredAt.IsZero() {
		change.InPrevious = now.Sub(*ref.enteredAt)
	}
	var err error
	if change.PipelineVersion, err = latestVersion(ctx, tx, p.Name()); err != nil {
		return zero, err
	}
	next := cur
	nref := s.k.staging.ref(&next)
	nm := s.k.meta(&next)
	*nref.pipeline, *nref.stage, *nref.enteredAt = p.Name(), to, now
	due, err := s.deadline(ctx, tx, &next, p, to, now)
	if err != nil {
		return zero, err
	}
	*nref.dueAt = due
	nm.UpdatedAt, nm.Version = now, m.Version+1
	body, err := s.put(ctx, tx, &next, m.Version)
	if err != nil {
		return zero, err
	}
	if err := appendStageChange(ctx, tx, &change); err != nil {
		return zero, err
	}
	changed := []string{"stage_entered_at"}
	if *ref.stage != *nref.stage {
		changed = append(changed, "stage")
	}
	if *ref.pipeline != *nref.pipeline {
		changed = append(changed, "pipeline")
	}
	if !ref.dueAt.Equal(*nref.dueAt) {
		changed = append(changed, "stage_due_at")
	}
	slices.Sort(changed)
	if err := s.appendEventFrom(ctx, tx, "stage_changed", m.ID, body, changed, change.From); err != nil {
		return zero, err
	}
	return next, nil
}

// deadline returns when rec, entering stage at entered, is due to leave
// it: by the stage's norm, or by the SLA term the stage names when the
// record has one; zero if the stage is terminal or has no norm.
func (s *Staged[T]) deadline(ctx context.Context, tx storage.ReadTx, rec *T, p *pipeline.Pipeline, stage string, entered time.Time) (time.Time, error) {
	st, ok := p.Stage(stage)
	if !ok || st.Terminal != pipeline.Open {
		return time.Time{}, nil
	}
	norm, from := st.Norm, entered
	if st.SLA != "" && s.k.staging.sla != nil {
		n, f, ok, err := s.k.staging.sla(ctx, tx, rec, st.SLA, entered)
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			norm, from = n, f
		}
	}
	due, ok := p.DeadlineWith(norm, from)
	if !ok {
		return time.Time{}, nil
	}
	return due.UTC(), nil
}

// checkStage validates a record's pipeline and stage against the tenant's
// stored definitions, on create and update: a record given only a pipeline
// starts in its first stage; its due time follows the stage's norm.
func (r *Records[T]) checkStage(ctx context.Context, tx storage.ReadTx, rec *T, p *problems) error {
	ref := r.k.staging.ref(rec)
	checkText(p, "pipeline", ref.pipeline)
	checkText(p, "stage", ref.stage)
	switch {
	case *ref.pipeline == "" && *ref.stage == "":
		*ref.enteredAt, *ref.dueAt = time.Time{}, time.Time{}
		return nil
	case *ref.pipeline == "":
		p.add("pipeline", "a %s with a stage needs a pipeline", r.k.name)
		return nil
	}
	pl, err := r.t.compiled(ctx, tx, *ref.pipeline)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalid) {
		p.add("pipeline", "no pipeline %q in this tenant", *ref.pipeline)
		return nil
	}
	if err != nil {
		return err
	}
	if pl.Kind() != r.k.staging.kind {
		p.add("pipeline", "pipeline %s is for %ss, not %ss", *ref.pipeline, pl.Kind(), r.k.staging.kind)
		return nil
	}
	if *ref.stage == "" {
		*ref.stage = pl.First().Key
	}
	if _, ok := pl.Stage(*ref.stage); !ok {
		p.add("stage", "pipeline %s has no stage %q", *ref.pipeline, *ref.stage)
		return nil
	}
	now := r.k.meta(rec).UpdatedAt
	switch {
	case ref.enteredAt.IsZero():
		*ref.enteredAt = now
	case ref.enteredAt.After(now):
		p.add("stage_entered_at", "%s is in the future", ref.enteredAt.Format(time.RFC3339))
		return nil
	case ref.enteredAt.Before(minTime):
		p.add("stage_entered_at", "%s is before the year 1", ref.enteredAt.Format(time.RFC3339))
		return nil
	}
	*ref.enteredAt = ref.enteredAt.UTC()
	due, err := (&Staged[T]{Records: r}).deadline(ctx, tx, rec, pl, *ref.stage, *ref.enteredAt)
	if err != nil {
		return err
	}
	*ref.dueAt = due
	return nil
}

// checkStageUnchanged refuses updates that change a staged record's place.
func checkStageUnchanged[T any](s *staging[T]) func(cur, next *T, p *problems) {
	return func(cur, next *T, p *problems) {
		a, b := s.ref(cur), s.ref(next)
		if *a.pipeline != *b.pipeline || *a.stage != *b.stage || !a.enteredAt.Equal(*b.enteredAt) {
			p.add("stage", "change the stage with Move or ChangePipeline, which check the pipeline and keep the history")
		}
	}
}

// History returns the record's stage changes, oldest first, including the
// entry into its first pipeline.
func (s *Staged[T]) History(ctx context.Context, id string) ([]StageChange, error) {
	var out []StageChange
	err := s.view(ctx, func(tx storage.ReadTx) error {
		if _, err := tx.Get(ctx, s.k.collection.Name, id); err != nil {
			return err
		}
		return scanTimeline(ctx, tx, s.k.collection.Name, id, func(e *TimelineEntry) error {
			if e.StageChange != nil {
				out = append(out, *e.StageChange)
			}
			return nil
		})
	})
	return out, err
}

// OverdueRecord is a record past its stage's time norm.
type OverdueRecord[T any] struct {
	Record T
	// By is how long past the norm the record is.
	By time.Duration
}

// OverdueOptions select overdue records.
type OverdueOptions struct {
	// Owners keeps only the records of these owners (one person, or the
	// members of a team). With one owner the list is read through an
	// index of that owner's records; with several, pages are filtered and
	// can hold fewer than Limit records: follow Next until it is "".
	Owners []string
	// Limit is the page size; 0 means storage.DefaultScanLimit.
	Limit int
	// Cursor continues after the previous page.
	Cursor string
}

// Overdue lists the records that are longer in their stage than its norm
// at the engine clock's now, most overdue first. It reads only overdue
// records, through an index on StageDueAt.
func (s *Staged[T]) Overdue(ctx context.Context, opts OverdueOptions) (Page[OverdueRecord[T]], error) {
	now := s.now()
	var page Page[OverdueRecord[T]]
	end := now.Format(sortableTimeLayout)
	q := storage.Query{Index: "stage_due", End: end, Limit: opts.Limit, Cursor: opts.Cursor}
	var keep map[string]bool
	switch len(opts.Owners) {
	case 0:
	case 1:
		if opts.Owners[0] == "" {
			return page, fmt.Errorf("crm: %s overdue: %w: empty owner", s.k.name, ErrInvalid)
		}
		q.Index, q.Start, q.End = "owner_due", opts.Owners[0]+sep, opts.Owners[0]+sep+end
	default:
		keep = make(map[string]bool, len(opts.Owners))
		for _, o := range opts.Owners {
			keep[o] = true
		}
	}
	err := s.view(ctx, func(tx storage.ReadTx) error {
		pg, err := tx.Scan(ctx, s.k.collection.Name, q)
		if err != nil {
			return err
		}
		page.Next = pg.Next
		page.Items = make([]OverdueRecord[T], 0, len(pg.Records))
		for _, rec := range pg.Records {
			v, err := s.decode(rec)
			if err != nil {
				return err
			}
			if keep != nil && !keep[s.k.meta(&v).Owner] {
				continue
			}
			page.Items = append(page.Items, OverdueRecord[T]{Record: v, By: now.Sub(*s.k.staging.ref(&v).dueAt)})
		}
		return nil
	})
	return page, err
}

// CheckDeadlines emits one "sla.breached" event for every record that has
// passed its stage's norm at the engine clock's now and has not been
// reported for that stage yet, and returns how many it emitted. Call it on
// a schedule (Tenant.CheckTimers does, for every kind); calling it again
// emits nothing new. The event's data is the record.
func (s *Staged[T]) CheckDeadlines(ctx context.Context) (int, error) {
	now := s.now()
	coll := s.k.collection.Name
	return s.fireOnce(ctx, "stage_due", now, func(v *T) string {
		ref := s.k.staging.ref(v)
		return slaNotice(coll, s.k.meta(v).ID, *ref.stage, *ref.dueAt)
	}, func(tx storage.Tx, rec storage.Record, _ *T) error {
		return tx.Append(ctx, storage.Event{Type: "sla.breached", Collection: coll, RecordID: rec.ID,
			Time: now, Body: append(append([]byte(`{"data":`), rec.Body...), '}')})
	})
}

// fireOnce pages through the records whose value in index (a sortable
// time) is before end, one write transaction per page, and calls emit for
// each record whose notice marker, notice(record), is new; it returns how
// many it emitted. Marker and event commit together, so each fires once.
func (r *Records[T]) fireOnce(ctx context.Context, index string, end time.Time, notice func(*T) string,
	emit func(tx storage.Tx, rec storage.Record, v *T) error) (int, error) {
	q := storage.Query{Index: index, End: end.Format(sortableTimeLayout), Limit: 1000}
	return r.updatePages(ctx, q, func(tx storage.Tx, rec storage.Record, v *T) (bool, error) {
		fresh, err := markOnce(ctx, tx, notice(v))
		if err != nil || !fresh {
			return false, err
		}
		return true, emit(tx, rec, v)
	})
}

// updatePages pages through the records q selects, one write transaction
// per page, and calls fn for each; it returns how many fn counted, in
// committed pages. fn may change the records (the cursor stays valid).
func (r *Records[T]) updatePages(ctx context.Context, q storage.Query,
	fn func(tx storage.Tx, rec storage.Record, v *T) (counted bool, err error)) (int, error) {
	// Most calls (timers checked every minute) find nothing: look in a
	// read transaction first, which costs no commit (and no fsync).
	peek := q
	peek.Limit, peek.KeysOnly = 1, true
	var found bool
	if err := r.view(ctx, func(tx storage.ReadTx) error {
		pg, err := tx.Scan(ctx, r.k.collection.Name, peek)
		found = len(pg.Records) > 0
		return err
	}); err != nil {
		return 0, err
	}
	if !found {
		return 0, nil
	}
	total := 0
	for {
		var next string
		n := 0
		err := r.update(ctx, func(tx storage.Tx) error {
			n = 0
			pg, err := tx.Scan(ctx, r.k.collection.Name, q)
			if err != nil {
				return err
			}
			next = pg.Next
			for _, rec := range pg.Records {
				v, err := r.decode(rec)
				if err != nil {
					return err
				}
				counted, err := fn(tx, rec, &v)
				if err != nil {
					return err
				}
				if counted {
					n++
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if next == "" {
			return total, nil
		}
		q.Cursor = next
	}
}

// relocateRecord moves a stored record of kind k to stage to of p as an
// administrative change (a pipeline migration), without checks.
func (k *kind[T]) relocateRecord(ctx context.Context, tx storage.Tx, t *Tenant, rec storage.Record, p *pipeline.Pipeline, to string, opts MoveOptions) error {
	s := &Staged[T]{Records: &Records[T]{t: t, k: k}}
	cur, err := s.decode(rec)
	if err != nil {
		return err
	}
	_, err = s.relocate(ctx, tx, cur, p, to, opts)
	return err
}

// redueRecord recomputes the due time of a stored record of kind k in its
// current stage of p (after the pipeline's norms or a contract's terms
// changed) and, if it moved, stores the record with a "<kind>.updated"
// event.
func (k *kind[T]) redueRecord(ctx context.Context, tx storage.Tx, t *Tenant, rec storage.Record, p *pipeline.Pipeline) error {
	s := &Staged[T]{Records: &Records[T]{t: t, k: k}}
	cur, err := s.decode(rec)
	if err != nil {
		return err
	}
	ref := k.staging.ref(&cur)
	due, err := s.deadline(ctx, tx, &cur, p, *ref.stage, *ref.enteredAt)
	if err != nil || due.Equal(*ref.dueAt) {
		return err
	}
	*ref.dueAt = due
	m := k.meta(&cur)
	m.UpdatedAt = s.now()
	m.Version++
	body, err := s.put(ctx, tx, &cur, rec.Version)
	if err != nil {
		return err
	}
	return s.appendEvent(ctx, tx, "updated", m.ID, body, []string{"stage_due_at"})
}

// stagedKind is what pipeline management needs of a staged kind.
type stagedKind interface {
	collectionName() string
	relocateRecord(ctx context.Context, tx storage.Tx, t *Tenant, rec storage.Record, p *pipeline.Pipeline, to string, opts MoveOptions) error
	redueRecord(ctx context.Context, tx storage.Tx, t *Tenant, rec storage.Record, p *pipeline.Pipeline) error
}

// redueStage recomputes the due times of every record of kind k in stage
// of pipeline p.
func redueStage(ctx context.Context, tx storage.Tx, t *Tenant, k stagedKind, p *pipeline.Pipeline, stage string) error {
	q := storage.Query{Index: "stage", Equal: p.Name() + "/" + stage, Limit: 1000}
	return scanAll(ctx, tx, k.collectionName(), q, func(rec storage.Record) error {
		return k.redueRecord(ctx, tx, t, rec, p)
	})
}

func (k *kind[T]) collectionName() string { return k.collection.Name }

// stagedKindOf returns the staged kind a pipeline kind applies to.
func stagedKindOf(k pipeline.Kind) (stagedKind, error) {
	switch k {
	case pipeline.KindLead:
		return leadKind, nil
	case pipeline.KindDeal:
		return dealKind, nil
	case pipeline.KindCase:
		return caseKind, nil
	case pipeline.KindAccount:
		return accountKind, nil
	}
	return nil, fmt.Errorf("%w: pipeline kind %q", ErrInvalid, k)
}

// sep separates the parts of composite index values. IDs cannot contain
// it (storage.ValidateID refuses control characters), so a prefix of
// "<id>"+sep never matches another ID.
const sep = storage.FieldSep

// ownerDue indexes a record with an owner and a due time under
// owner ‖ sep ‖ due.
func ownerDue(body []byte) ([]string, error) {
	owner := gjsonString(body, "owner")
	if owner == "" {
		return nil, nil
	}
	due, err := sortableTime("stage_due_at")(body)
	if err != nil || len(due) == 0 {
		return nil, err
	}
	return []string{owner + sep + due[0]}, nil
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
