package crm

import (
	"context"
	"fmt"
	"time"

	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage"
)

// Archived selects archived records in List.
type Archived string

// Archived filters. The zero value leaves archived records out.
const (
	ArchivedExcluded Archived = ""
	ArchivedIncluded Archived = "include"
	ArchivedOnly     Archived = "only"
)

// Timeline entry types for lifecycle changes.
const (
	TimelineArchived = "archived"
	TimelineRestored = "restored"
	TimelineAssigned = "assigned"
)

// ChangeOptions describe an administrative change (archive, restore,
// reassign).
type ChangeOptions struct {
	// Version is the version the change is based on (0: any).
	Version uint64
	// Reason is kept on the timeline.
	Reason string
	// Actor is who makes the change.
	Actor string
}

// Archive marks a record archived: it drops out of List (unless
// ListOptions.Archived asks for it) and Search, and stays stored, with its
// history, for analytics. Archiving emits "<kind>.archived" and adds a
// timeline entry. Archiving an archived record fails with ErrInvalid.
func (r *Records[T]) Archive(ctx context.Context, id string, opts ChangeOptions) (T, error) {
	return r.setArchived(ctx, id, opts, true)
}

// Restore brings an archived record back, emitting "<kind>.restored".
func (r *Records[T]) Restore(ctx context.Context, id string, opts ChangeOptions) (T, error) {
	return r.setArchived(ctx, id, opts, false)
}

func (r *Records[T]) setArchived(ctx context.Context, id string, opts ChangeOptions, archive bool) (T, error) {
	var out T
	err := r.update(ctx, func(tx storage.Tx) error {
		cur, err := r.get(ctx, tx, id)
		if err != nil {
			return err
		}
		m := r.k.meta(&cur)
		if opts.Version != 0 && opts.Version != m.Version {
			return fmt.Errorf("%w: %s %s is at version %d, the change was based on version %d", ErrConflict, r.k.name, id, m.Version, opts.Version)
		}
		if !archive && mergedInto(&cur) != "" {
			return fmt.Errorf("%w: %s %s was merged into %s; a merge cannot be undone by Restore", ErrInvalid, r.k.name, id, mergedInto(&cur))
		}
		if archive == !m.ArchivedAt.IsZero() {
			state := "not archived"
			if archive {
				state = "archived already"
			}
			return fmt.Errorf("%w: %s %s is %s", ErrInvalid, r.k.name, id, state)
		}
		now := r.now()
		what, entry := "restored", TimelineRestored
		m.ArchivedAt = time.Time{}
		if archive {
			what, entry = "archived", TimelineArchived
			m.ArchivedAt = now
		}
		out, err = r.rewrite(ctx, tx, cur, now, what, []string{"archived_at"})
		if err != nil {
			return err
		}
		return appendTimeline(ctx, tx, &TimelineEntry{Collection: r.k.collection.Name, RecordID: id, At: now,
			Type: entry, Summary: joinNonEmpty(what, opts.Reason, opts.Actor)})
	})
	return out, err
}

// rewrite stores rec, changed by an engine operation, as the next version
// and emits "<kind>.<what>".
func (r *Records[T]) rewrite(ctx context.Context, tx storage.Tx, rec T, now time.Time, what string, changed []string) (T, error) {
	m := r.k.meta(&rec)
	version := m.Version
	m.UpdatedAt, m.Version = now, version+1
	body, err := r.put(ctx, tx, &rec, version)
	if err != nil {
		var zero T
		return zero, err
	}
	return rec, r.appendEvent(ctx, tx, what, m.ID, body, changed)
}

// ReassignOptions select the records Reassign moves.
type ReassignOptions struct {
	// OpenOnly leaves out archived records, records in a terminal stage
	// (won, lost, converted, ...) and done activities.
	OpenOnly bool
	// Reason and Actor are kept on the timeline.
	Reason, Actor string
}

// Reassign gives every record owned by from to to (and, for activities,
// those assigned to from), a page of records per transaction, emitting
// "<kind>.assigned" and a timeline entry for each. It returns how many it
// moved. Run again after a failure, it carries on where it stopped.
func (r *Records[T]) Reassign(ctx context.Context, from, to string, opts ReassignOptions) (int, error) {
	for _, u := range []struct{ what, id string }{{"from", from}, {"to", to}} {
		if err := storage.ValidateID("owner "+u.what, u.id); err != nil {
			return 0, fmt.Errorf("crm: reassign %ss: %w", r.k.name, err)
		}
	}
	if from == to {
		return 0, fmt.Errorf("crm: reassign %ss: %w: from and to are both %q", r.k.name, ErrInvalid, from)
	}
	indexes := []string{"owner"}
	if r.k == any(activityKind) {
		indexes = append(indexes, "assignee") // activities move by either
	}
	moved := 0
	for _, index := range indexes {
		n, err := r.reassignBy(ctx, index, from, to, opts)
		moved += n
		if err != nil {
			return moved, err
		}
	}
	return moved, nil
}

// reassignBy reassigns the records whose index value is from.
func (r *Records[T]) reassignBy(ctx context.Context, index, from, to string, opts ReassignOptions) (int, error) {
	q := storage.Query{Index: index, Equal: from, Limit: 500}
	return r.updatePages(ctx, q, func(tx storage.Tx, _ storage.Record, v *T) (bool, error) {
		if opts.OpenOnly {
			open, err := r.open(ctx, tx, v)
			if err != nil || !open {
				return false, err
			}
		}
		m := r.k.meta(v)
		a, isActivity := any(v).(*Activity)
		if isActivity && a.Assignee != from && m.Owner != from {
			return false, nil // moved already by the other index
		}
		var changed []string
		if m.Owner == from {
			m.Owner = to
			changed = append(changed, "owner")
		}
		if isActivity && a.Assignee == from {
			a.Assignee = to
			changed = append(changed, "assignee")
		}
		now := r.now()
		if _, err := r.rewrite(ctx, tx, *v, now, "assigned", changed); err != nil {
			return false, err
		}
		return true, appendTimeline(ctx, tx, &TimelineEntry{Collection: r.k.collection.Name, RecordID: m.ID, At: now,
			Type: TimelineAssigned, Summary: joinNonEmpty(from+" → "+to, opts.Reason, opts.Actor)})
	})
}

// open reports whether rec is open: not archived, not in a terminal stage,
// not a done activity.
func (r *Records[T]) open(ctx context.Context, tx storage.ReadTx, rec *T) (bool, error) {
	if !r.k.meta(rec).ArchivedAt.IsZero() {
		return false, nil
	}
	if a, ok := any(rec).(*Activity); ok {
		return a.Open(), nil
	}
	if r.k.staging == nil {
		return true, nil
	}
	ref := r.k.staging.ref(rec)
	if *ref.pipeline == "" {
		return true, nil
	}
	p, err := r.t.compiled(ctx, tx, *ref.pipeline)
	if err != nil {
		return false, err
	}
	st, ok := p.Stage(*ref.stage)
	return !ok || st.Terminal == pipeline.Open, nil
}

// Reassign moves the records of every kind that has owners — contacts,
// accounts, leads, deals, cases, contracts, activities (by owner or
// assignee), interactions, products and orders — from one owner to
// another, and returns how many of each kind it moved. With OpenOnly,
// closed deals, converted leads, done activities and so on stay with
// their owner.
func (t *Tenant) Reassign(ctx context.Context, from, to string, opts ReassignOptions) (map[string]int, error) {
	out := map[string]int{}
	for _, k := range []struct {
		name string
		run  func(context.Context, string, string, ReassignOptions) (int, error)
	}{
		{"contact", t.Contacts().Reassign}, {"account", t.Accounts().Reassign}, {"lead", t.Leads().Reassign},
		{"deal", t.Deals().Reassign}, {"case", t.Cases().Reassign}, {"contract", t.Contracts().Reassign},
		{"activity", t.Activities().Reassign}, {"interaction", t.Interactions().Reassign},
		{"product", t.Products().Reassign}, {"order", t.Orders().Reassign},
	} {
		n, err := k.run(ctx, from, to, opts)
		if n > 0 {
			out[k.name] = n
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// mergedInto returns the survivor a contact or account was merged into.
func mergedInto(rec any) string {
	switch v := rec.(type) {
	case *Contact:
		return v.MergedInto
	case *Account:
		return v.MergedInto
	}
	return ""
}

func joinNonEmpty(parts ...string) string {
	out := ""
	for _, p := range parts {
		if p == "" {
			continue
		}
		if out != "" {
			out += "; "
		}
		out += p
	}
	return out
}
