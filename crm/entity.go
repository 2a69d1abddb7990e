package crm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/rapportcrm/rapport/storage"
)

// Meta holds the fields every entity has. Entities embed it, so its fields
// appear at the top level of their JSON.
type Meta struct {
	// ID is a time-ordered UUIDv7 assigned on create, unless the caller
	// sets one (for example when importing). IDs follow storage.ValidateID.
	ID string `json:"id"`
	// Tenant is set by the engine to the tenant the record belongs to.
	Tenant string `json:"tenant"`
	// Owner is the ID of the user responsible for the record.
	Owner string `json:"owner,omitempty"`
	// Tags are free labels; the engine trims them and drops duplicates.
	Tags []string `json:"tags,omitempty"`
	// Custom holds custom field values by key (lower-case letters, digits
	// and '_'); values must be JSON-encodable. Read back, numbers are
	// json.Number, so large integers stay exact.
	Custom map[string]any `json:"custom,omitempty"`
	// CreatedAt and UpdatedAt are set by the engine from its Clock.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Version counts the record's writes. Pass the version you read to
	// Update; a stale version fails with ErrConflict.
	Version uint64 `json:"version"`
	// ArchivedAt is set by Archive and cleared by Restore. Archived records
	// are left out of List unless asked for, and kept for analytics.
	ArchivedAt time.Time `json:"archived_at,omitzero"`
}

func (m *Meta) meta() *Meta { return m }

// entity is implemented by pointers to entity structs through Meta.
type entity[T any] interface {
	*T
	meta() *Meta
}

// kind describes one entity type to the generic Records code: adding an
// entity means writing its struct, its checks and one kind value.
type kind[T any] struct {
	name       string // "contact": event types are name + ".created", ...
	collection storage.Collection
	meta       func(*T) *Meta
	// check normalises and validates the entity-specific fields, adding
	// problems to p. It may read other records through tx (references). Its
	// error return is for failures of the read itself.
	// prev is the stored record on update, nil on create: references that
	// did not change are not checked again, so a record whose referent was
	// deleted stays editable.
	check func(ctx context.Context, tx storage.ReadTx, rec, prev *T, p *problems) error
	// beforeDelete may refuse a delete, for example when others refer to
	// the record.
	beforeDelete func(ctx context.Context, tx storage.ReadTx, id string) error
	// checkUpdate, if set, may refuse changes an Update must not make.
	checkUpdate func(cur, next *T, p *problems)
	// search and dupKeys, when set, give a record's search terms and
	// duplicate match keys, which the indexer keeps in the lookup
	// collection.
	search, dupKeys func([]byte) ([]string, error)
	// phones, if set, points at the record's phone fields by JSON name,
	// for E.164 normalisation.
	phones func(*T) map[string]*string
	// createdVerb names the create event, "<name>.<createdVerb>"; it
	// defaults to "created" (orders are "placed", cases "opened",
	// survey responses "received").
	createdVerb string
	// event is the prefix of the kind's event types when it is not name
	// ("survey" for survey responses).
	event string
	// staging is set for kinds that move through pipelines.
	staging *staging[T]
	// afterCreate, if set, writes what goes with a new record (timeline
	// entries) in the create's transaction.
	afterCreate func(ctx context.Context, tx storage.Tx, rec *T) error
	// afterUpdate, if set, writes what follows from a changed record (due
	// times of the cases under a contract) in the update's transaction.
	afterUpdate func(ctx context.Context, tx storage.Tx, t *Tenant, cur, next *T) error
}

func newKind[T any, P entity[T]](name string, c storage.Collection,
	check func(context.Context, storage.ReadTx, *T, *T, *problems) error,
	beforeDelete func(context.Context, storage.ReadTx, string) error) *kind[T] {
	// Every kind lists its archived records by the time they were archived,
	// and its records by custom values (ListOptions.By "custom.<key>").
	c.Indexes = append(c.Indexes, storage.Index{Name: "archived", Extract: sortableTime("archived_at")},
		storage.Index{Name: "custom", Extract: customIndex})
	return &kind[T]{name: name, collection: c, meta: func(t *T) *Meta { return P(t).meta() }, check: check, beforeDelete: beforeDelete}
}

// eventsAs names a kind's events: "<prefix>.<what>", with createdVerb
// for creation; empty arguments keep the defaults.
func eventsAs[T any](k *kind[T], prefix, createdVerb string) *kind[T] {
	k.event, k.createdVerb = prefix, createdVerb
	return k
}

// newStagedKind is newKind for a kind that moves through pipelines: it adds
// the staged indexes and refuses stage changes by Update.
func newStagedKind[T any, P entity[T]](name string, c storage.Collection,
	check func(context.Context, storage.ReadTx, *T, *T, *problems) error,
	beforeDelete func(context.Context, storage.ReadTx, string) error, s *staging[T]) *kind[T] {
	c.Indexes = append(c.Indexes, stagedIndexes()...)
	k := newKind[T, P](name, c, check, beforeDelete)
	k.staging, k.checkUpdate = s, checkStageUnchanged(s)
	return k
}

// collections returns the collections the engine declares on its store:
// one per entity kind, plus the engine's own.
func collections() []storage.Collection {
	return append(append(append(lookupCollections(), loyaltyCollections...), contactKind.collection, accountKind.collection, leadKind.collection, dealKind.collection,
		contractKind.collection, caseKind.collection, activityKind.collection, interactionKind.collection,
		productKind.collection, orderKind.collection, userKind.collection, teamKind.collection, territoryKind.collection,
		targetKind.collection, campaignKind.collection, surveyKind.collection, priceListKind.collection, sendKind.collection, earlyDeliveryCollection,
		pipelineCollection, versionCollection, timelineKind, erasureCollection, schemaCollection, noticeCollection, deadLetterCollection,
		ledgerAccountCollection, ledgerEntryCollection, ledgerLotCollection, segmentMemberCollection), automationCollections...)
}

// Records reads and writes the entities of one kind in one tenant.
type Records[T any] struct {
	t *Tenant
	k *kind[T]
}

// ListOptions selects a page of records for List.
type ListOptions struct {
	// By names the index to list by, for example "owner" or "tag" (each
	// entity documents its indexes). "" lists in ID order, which is
	// creation order for engine-assigned IDs.
	By string
	// Value selects the records whose By value equals it. With By set and
	// Value empty, every record with a value is listed, in value order.
	Value string
	// Limit is the page size; 0 means storage.DefaultScanLimit.
	Limit int
	// Cursor continues after the previous page (Page.Next).
	Cursor string
	// Reverse lists from the last record to the first.
	Reverse bool
	// Archived says whether archived records are listed: not at all (the
	// default), as well, or only them. Filtering can leave a page with
	// fewer than Limit records; follow Next until it is "".
	Archived Archived
}

// Page is one page of a List.
type Page[T any] struct {
	Items []T
	// Next is the Cursor of the next page, or "" after the last page.
	Next string
}

// eventBody is the JSON body of an entity event in the outbox.
type eventBody struct {
	Data    json.RawMessage `json:"data"`
	Changed []string        `json:"changed,omitempty"`
	// From is the stage a stage_changed record left.
	From string `json:"from,omitempty"`
	// Depth and Run are set on events an automation run wrote.
	Depth int    `json:"depth,omitempty"`
	Run   string `json:"run,omitempty"`
}

// Get returns the record with the given ID, or an error wrapping ErrNotFound.
func (r *Records[T]) Get(ctx context.Context, id string) (T, error) {
	var out T
	err := r.view(ctx, func(tx storage.ReadTx) error {
		var err error
		out, err = r.get(ctx, tx, id)
		return err
	})
	return out, err
}

// Create stores a new record and appends a "<kind>.created" event in the
// same transaction. It sets the ID (unless given), tenant, timestamps and
// version, and returns the record as stored. Invalid input gives a
// *ValidationError listing every bad field; an ID that is taken gives
// ErrExists.
//
// On a store that defers checks to the commit (storage.Deferrer,
// PostgreSQL), the create, its event and the commit go in one round trip:
// a taken unique value is then found at the commit, and reported the same
// way, as a *ValidationError.
func (r *Records[T]) Create(ctx context.Context, rec T) (T, error) {
	var out T
	var id string // of the record created without checks
	err := r.updateDeferring(ctx, func(tx storage.Tx) error {
		var err error
		out, err = r.create(ctx, tx, rec, r.now())
		if dt, ok := tx.(*deferTx); ok {
			id = dt.created
		}
		return err
	})
	if err != nil {
		// A unique value of the record found taken by a later statement
		// (what goes with the record, as an order's timeline entry) or
		// at the commit.
		var ue *storage.UniqueError
		if id != "" && errors.As(err, &ue) && ue.Collection == r.k.collection.Name && !errors.As(err, new(*ValidationError)) {
			err = r.putError(id, ue)
		}
		return *new(T), err
	}
	return out, nil
}

// updateDeferring is update through a deferTx, on a store that defers
// checks to the commit: fn runs again, with the schema read, if the
// cached custom-field schema it used had changed, whether fn succeeded
// (the commit's check fails) or failed (perhaps because of that schema).
func (r *Records[T]) updateDeferring(ctx context.Context, fn func(tx storage.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := r.update(ctx, func(tx storage.Tx) error {
			dtx := deferring(tx, r.k.collection.Name)
			err := fn(dtx)
			if dt, ok := dtx.(*deferTx); ok && err != nil {
				if stale := dt.staleCache(ctx); stale != nil {
					return stale
				}
			}
			return err
		})
		if err != nil && attempt < maxExpectRetries && r.t.staleSchema(err) {
			continue
		}
		return err
	}
}

// CreateMany stores several new records in one transaction: all of them or,
// if any is invalid, none. The error names the position of the bad record.
//
// On a store whose transactions create many records at once
// (storage.BulkCreator, PostgreSQL), the records are written together at
// the end, in a few round trips instead of two each.
func (r *Records[T]) CreateMany(ctx context.Context, recs []T) ([]T, error) {
	out := make([]T, 0, len(recs))
	err := r.update(ctx, func(tx storage.Tx) error {
		out = out[:0]
		now := r.now()
		// fail names the record that failed: a held creation refused
		// when sent names its own.
		fail := func(i int, err error) error {
			var he *heldError
			if errors.As(err, &he) {
				i, err = he.index, r.putError(he.id, he.err)
			}
			return fmt.Errorf("record %d of %d: %w", i, len(recs), err)
		}
		var held *heldTx
		if bulk, ok := tx.(storage.BulkCreator); ok {
			held = &heldTx{Tx: tx, bulk: bulk, coll: r.k.collection.Name}
			tx = held
		}
		for i, rec := range recs {
			if held != nil {
				held.current = i
			}
			stored, err := r.create(ctx, tx, rec, now)
			if err != nil {
				return fail(i, err)
			}
			out = append(out, stored)
		}
		if held != nil {
			if err := held.flush(ctx); err != nil {
				return fail(len(recs)-1, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Update replaces a stored record with rec, which must carry the ID and the
// Version it was read at: if the record changed since, Update fails with
// ErrConflict. ID, tenant and creation time cannot change. An update that
// changes nothing writes nothing and returns the stored record; otherwise a
// "<kind>.updated" event lists the changed fields.
//
// On a store that defers checks to the commit (storage.Deferrer,
// PostgreSQL), the write goes unchecked and the custom-field schema comes
// from the engine's cache, both checked at commit: an update is two round
// trips (the read, then the write with the commit). A unique value taken
// is then found at the commit and reported the same way, as a
// *ValidationError; a concurrent change, as ErrConflict.
func (r *Records[T]) Update(ctx context.Context, rec T) (T, error) {
	var out T
	err := r.updateDeferring(ctx, func(tx storage.Tx) error {
		var err error
		out, err = r.replace(ctx, tx, rec)
		return err
	})
	if err != nil {
		// A unique value found taken at the commit, as by Create.
		var ue *storage.UniqueError
		if id := r.k.meta(&rec).ID; errors.As(err, &ue) && ue.Collection == r.k.collection.Name && !errors.As(err, new(*ValidationError)) {
			err = r.putError(id, ue)
		}
		return *new(T), err
	}
	return out, nil
}

// Delete removes the record and appends a "<kind>.deleted" event carrying
// its last state.
func (r *Records[T]) Delete(ctx context.Context, id string) error {
	return r.update(ctx, func(tx storage.Tx) error {
		cur, err := r.get(ctx, tx, id)
		if err != nil {
			return err
		}
		if r.k.beforeDelete != nil {
			if err := r.k.beforeDelete(ctx, tx, id); err != nil {
				return err
			}
		}
		m := r.k.meta(&cur)
		if err := tx.Delete(ctx, r.k.collection.Name, id, m.Version); err != nil {
			return err
		}
		if r.k.staging != nil {
			ref := r.k.staging.ref(&cur)
			if err := clearBreach(ctx, tx, r.k.collection.Name, id, *ref.stage, *ref.dueAt); err != nil {
				return err
			}
		}
		body, err := json.Marshal(&cur)
		if err != nil {
			return err
		}
		return r.appendEvent(ctx, tx, "deleted", id, body, nil)
	})
}

// List returns one page of records, selected and ordered by opts.
func (r *Records[T]) List(ctx context.Context, opts ListOptions) (Page[T], error) {
	q := indexQuery(opts.By, opts.Value, "", "")
	q.Limit, q.Cursor, q.Reverse = opts.Limit, opts.Cursor, opts.Reverse
	if opts.By == "" && opts.Value != "" {
		return Page[T]{}, fmt.Errorf("crm: list %s: %w: Value %q without By", r.k.name, ErrInvalid, opts.Value)
	}
	switch opts.Archived {
	case ArchivedExcluded, ArchivedIncluded:
	case ArchivedOnly:
		if q.Index == "" {
			q.Index = "archived" // in the order they were archived
		}
	default:
		return Page[T]{}, fmt.Errorf("crm: list %s: %w: Archived %q: want \"\", include or only", r.k.name, ErrInvalid, opts.Archived)
	}
	page, err := r.page(ctx, q)
	if err != nil || opts.Archived == ArchivedIncluded {
		return page, err
	}
	page.Items = slices.DeleteFunc(page.Items, func(v T) bool {
		return r.k.meta(&v).ArchivedAt.IsZero() == (opts.Archived == ArchivedOnly)
	})
	return page, nil
}

// page reads one page of the kind's records selected by q.
func (r *Records[T]) page(ctx context.Context, q storage.Query) (Page[T], error) {
	var page Page[T]
	err := r.view(ctx, func(tx storage.ReadTx) error {
		p, err := tx.Scan(ctx, r.k.collection.Name, q)
		if err != nil {
			return err
		}
		page.Next = p.Next
		page.Items = make([]T, 0, len(p.Records))
		for _, rec := range p.Records {
			v, err := r.decode(rec)
			if err != nil {
				return err
			}
			page.Items = append(page.Items, v)
		}
		return nil
	})
	return page, err
}

func (r *Records[T]) now() time.Time { return r.t.e.clock.Now().UTC() }

func (r *Records[T]) view(ctx context.Context, fn func(storage.ReadTx) error) error {
	if err := r.t.view(ctx, fn); err != nil {
		if errors.Is(err, ErrClosed) {
			return err
		}
		return fmt.Errorf("crm: %s: %w", r.k.name, err)
	}
	return nil
}

func (r *Records[T]) update(ctx context.Context, fn func(storage.Tx) error) error {
	if err := r.t.update(ctx, fn); err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) || errors.Is(err, ErrClosed) {
			return err
		}
		return fmt.Errorf("crm: %s: %w", r.k.name, err)
	}
	return nil
}

func (r *Records[T]) get(ctx context.Context, tx storage.ReadTx, id string) (T, error) {
	rec, err := tx.Get(ctx, r.k.collection.Name, id)
	if err != nil {
		var zero T
		return zero, err
	}
	return r.decode(rec)
}

func (r *Records[T]) decode(rec storage.Record) (T, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(rec.Body))
	dec.UseNumber() // custom numbers stay exact (json.Number), not float64
	if err := dec.Decode(&v); err != nil {
		return v, fmt.Errorf("decoding %s %s: %w", r.k.name, rec.ID, err)
	}
	r.k.meta(&v).Version = rec.Version
	return v, nil
}

func (r *Records[T]) create(ctx context.Context, tx storage.Tx, rec T, now time.Time) (T, error) {
	var zero T
	m := r.k.meta(&rec)
	var p problems
	if m.Version != 0 {
		p.add("version", "must be 0 for a new record, not %d", m.Version)
	}
	if !m.ArchivedAt.IsZero() {
		p.add("archived_at", "is set by Archive")
	}
	m.Tenant = r.t.id
	m.CreatedAt, m.UpdatedAt = now, now
	if err := r.validate(ctx, tx, &rec, nil, &p); err != nil {
		return zero, err
	}
	if err := p.err(r.k.name, m.ID); err != nil {
		return zero, err
	}
	if m.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return zero, fmt.Errorf("generating ID: %w", err)
		}
		m.ID = id.String()
	}
	m.Version = 1
	body, err := r.put(ctx, tx, &rec, 0)
	if err != nil {
		return zero, err
	}
	if r.k.staging != nil {
		if ref := r.k.staging.ref(&rec); *ref.pipeline != "" {
			version, err := latestVersion(ctx, tx, *ref.pipeline)
			if err != nil {
				return zero, err
			}
			err = appendStageChange(ctx, tx, &StageChange{Collection: r.k.collection.Name, RecordID: m.ID,
				Pipeline: *ref.pipeline, PipelineVersion: version, To: *ref.stage, Owner: m.Owner, At: *ref.enteredAt})
			if err != nil {
				return zero, err
			}
		}
	}
	if r.k.afterCreate != nil {
		if err := r.k.afterCreate(ctx, tx, &rec); err != nil {
			return zero, err
		}
	}
	verb := r.k.createdVerb
	if verb == "" {
		verb = "created"
	}
	return rec, r.appendEvent(ctx, tx, verb, m.ID, body, nil)
}

func (r *Records[T]) replace(ctx context.Context, tx storage.Tx, rec T) (T, error) {
	var zero T
	m := r.k.meta(&rec)
	if m.ID == "" {
		return zero, (problems{{Field: "id", Message: "is required for an update"}}).err(r.k.name, "")
	}
	cur, err := r.get(ctx, tx, m.ID)
	if err != nil {
		return zero, err
	}
	cm := r.k.meta(&cur)
	if m.Version != cm.Version {
		return zero, fmt.Errorf("%w: %s %s is at version %d, the update was based on version %d",
			ErrConflict, r.k.name, m.ID, cm.Version, m.Version)
	}
	m.Tenant, m.CreatedAt, m.UpdatedAt = cm.Tenant, cm.CreatedAt, cm.UpdatedAt
	if !m.ArchivedAt.Equal(cm.ArchivedAt) {
		return zero, (problems{{Field: "archived_at", Message: "is set by Archive and Restore"}}).err(r.k.name, m.ID)
	}
	var p problems
	if r.k.checkUpdate != nil {
		r.k.checkUpdate(&cur, &rec, &p)
	}
	if err := r.validate(ctx, tx, &rec, &cur, &p); err != nil {
		return zero, err
	}
	if err := p.err(r.k.name, m.ID); err != nil {
		return zero, err
	}
	changed, err := diff(&cur, &rec)
	if err != nil {
		return zero, err
	}
	if len(changed) == 0 {
		return cur, nil
	}
	m.UpdatedAt = r.now()
	m.Version = cm.Version + 1
	body, err := r.put(ctx, tx, &rec, cm.Version)
	if err != nil {
		return zero, err
	}
	if r.k.afterUpdate != nil {
		if err := r.k.afterUpdate(ctx, tx, r.t, &cur, &rec); err != nil {
			return zero, err
		}
	}
	return rec, r.appendEvent(ctx, tx, "updated", m.ID, body, changed)
}

// validate runs the checks common to all entities, then the kind's own.
func (r *Records[T]) validate(ctx context.Context, tx storage.ReadTx, rec, prev *T, p *problems) error {
	checkMeta(r.k.meta(rec), p)
	if err := r.k.check(ctx, tx, rec, prev, p); err != nil {
		return err
	}
	if r.k.phones != nil {
		for field, phone := range r.k.phones(rec) {
			normalisePhone(p, field, phone, r.t.e.opts.PhoneRegion)
		}
	}
	var prevMeta *Meta
	if prev != nil {
		prevMeta = r.k.meta(prev)
	}
	if err := r.checkCustom(ctx, tx, r.k.meta(rec), prevMeta, p); err != nil {
		return err
	}
	if r.k.staging != nil {
		return r.checkStage(ctx, tx, rec, p)
	}
	return nil
}

// put stores rec at the given expected version and returns its JSON body.
func (r *Records[T]) put(ctx context.Context, tx storage.Tx, rec *T, version uint64) ([]byte, error) {
	m := r.k.meta(rec)
	body, err := json.Marshal(rec)
	if err != nil {
		field := "record"
		if _, cerr := json.Marshal(m.Custom); cerr != nil {
			field = "custom"
		}
		return nil, (problems{{Field: field, Message: "cannot be encoded as JSON: " + err.Error()}}).err(r.k.name, m.ID)
	}
	// The record travels in its events ({"data": record, "changed": [...]}),
	// so refuse it now if they could not hold it, before anything is
	// written; a refused record must not leave a half-done transaction.
	if len(body) > storage.MaxBodySize-eventOverhead {
		return nil, (problems{{Field: "record", Message: fmt.Sprintf("is %d bytes as JSON, the limit is %d", len(body), storage.MaxBodySize-eventOverhead)}}).err(r.k.name, m.ID)
	}
	r2 := storage.Record{ID: m.ID, Version: version, Body: body}
	switch dt, ok := tx.(*deferTx); {
	case ok && dt.coll == r.k.collection.Name && version == 0:
		_, err = dt.d.Create(ctx, r.k.collection.Name, r2)
		if err == nil {
			dt.created = m.ID
		}
	case ok && dt.coll == r.k.collection.Name:
		_, err = dt.d.Replace(ctx, r.k.collection.Name, r2)
	default:
		_, err = tx.Put(ctx, r.k.collection.Name, r2)
	}
	if err != nil {
		return nil, r.putError(m.ID, err)
	}
	return body, nil
}

// putError turns the error of writing record id into what the engine
// reports: a unique value taken or an invalid record is a
// ValidationError.
func (r *Records[T]) putError(id string, err error) error {
	var ue *storage.UniqueError
	switch {
	case errors.As(err, &ue):
		field := ue.Index
		if ix, ok := r.k.collection.Index(ue.Index); ok && ix.Field != "" {
			field = ix.Field
		}
		return &ValidationError{Entity: r.k.name, ID: id, Err: ue, Fields: []FieldError{{
			Field: field, Message: fmt.Sprintf("%q is already used by %s %s", ue.Value, r.k.name, ue.ExistingID),
		}}}
	case errors.Is(err, storage.ErrInvalid):
		return &ValidationError{Entity: r.k.name, ID: id, Err: err, Fields: []FieldError{{Field: "record", Message: err.Error()}}}
	}
	return err
}

// eventOverhead is room left in an event body for its envelope and the
// list of changed fields.
const eventOverhead = 16 << 10

// appendEvent appends "<kind>.<what>" for the record whose JSON is data.
// The body is {"data":<data>,"changed":[...]}, assembled without
// re-encoding data.
func (r *Records[T]) appendEvent(ctx context.Context, tx storage.Tx, what, id string, data []byte, changed []string) error {
	return r.appendEventFrom(ctx, tx, what, id, data, changed, "")
}

// appendEventFrom is appendEvent for a stage change from stage from.
func (r *Records[T]) appendEventFrom(ctx context.Context, tx storage.Tx, what, id string, data []byte, changed []string, from string) error {
	body := make([]byte, 0, len(data)+64)
	body = append(body, `{"data":`...)
	body = append(body, data...)
	if from != "" {
		f, err := json.Marshal(from)
		if err != nil {
			return err
		}
		body = append(body, `,"from":`...)
		body = append(body, f...)
	}
	if len(changed) > 0 {
		ch, err := json.Marshal(changed)
		if err != nil {
			return err
		}
		body = append(body, `,"changed":`...)
		body = append(body, ch...)
	}
	body = append(body, '}')
	err := tx.Append(ctx, storage.Event{
		Type:       cmpOr(r.k.event, r.k.name) + "." + what,
		Collection: r.k.collection.Name,
		RecordID:   id,
		Time:       r.now(),
		Body:       body,
	})
	if errors.Is(err, storage.ErrInvalid) {
		// The record fits but its event (the record plus the change list)
		// does not: report it as a problem with the record.
		return &ValidationError{Entity: r.k.name, ID: id, Err: err, Fields: []FieldError{{Field: "record", Message: err.Error()}}}
	}
	return err
}

// diff returns the top-level JSON fields that differ between a and b,
// ignoring updated_at and version.
func diff(a, b any) ([]string, error) {
	am, err := fields(a)
	if err != nil {
		return nil, err
	}
	bm, err := fields(b)
	if err != nil {
		return nil, err
	}
	var out []string
	for k, av := range am {
		if bv, ok := bm[k]; !ok || !bytes.Equal(av, bv) {
			out = append(out, k)
		}
	}
	for k := range bm {
		if _, ok := am[k]; !ok {
			out = append(out, k)
		}
	}
	out = slices.DeleteFunc(out, func(k string) bool { return k == "updated_at" || k == "version" })
	slices.Sort(out)
	return out, nil
}

func fields(v any) (map[string]json.RawMessage, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	return m, json.Unmarshal(raw, &m)
}
