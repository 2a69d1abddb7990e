package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/rapportcrm/rapport/storage"
)

// PersonalData is everything the tenant stores about one contact, for a
// data subject's request under GDPR Art. 15 and 20. It marshals to JSON.
type PersonalData struct {
	ExportedAt time.Time `json:"exported_at"`
	Contact    Contact   `json:"contact"`
	// Lead is the lead the contact was converted from, if any.
	Lead         *Lead            `json:"lead,omitempty"`
	Deals        []Deal           `json:"deals,omitempty"`
	Orders       []Order          `json:"orders,omitempty"`
	Cases        []Case           `json:"cases,omitempty"`
	Contracts    []Contract       `json:"contracts,omitempty"`
	Activities   []Activity       `json:"activities,omitempty"`
	Interactions []Interaction    `json:"interactions,omitempty"`
	Surveys      []SurveyResponse `json:"survey_responses,omitempty"`
	// OtherLeads are leads converted into the contact other than Lead.
	OtherLeads []Lead          `json:"other_leads,omitempty"`
	Timeline   []TimelineEntry `json:"timeline,omitempty"`
}

// ExportPersonalData returns everything stored about a contact, read in
// one snapshot: the contact, the lead it came from, and the deals, orders,
// cases, contracts, activities and interactions that refer to it, with its
// timeline.
func (t *Tenant) ExportPersonalData(ctx context.Context, contactID string) (PersonalData, error) {
	var out PersonalData
	err := t.view(ctx, func(tx storage.ReadTx) error {
		c, err := t.Contacts().get(ctx, tx, contactID)
		if err != nil {
			return err
		}
		out.ExportedAt, out.Contact = t.e.clock.Now().UTC(), c
		if c.LeadID != "" {
			l, err := t.Leads().get(ctx, tx, c.LeadID)
			if err == nil {
				out.Lead = &l
			} else if !isNotFound(err) {
				return err
			}
		}
		if out.Deals, err = related(ctx, tx, t.Deals().Records, contactID); err != nil {
			return err
		}
		if out.Orders, err = related(ctx, tx, t.Orders(), contactID); err != nil {
			return err
		}
		if out.Cases, err = related(ctx, tx, t.Cases().Records, contactID); err != nil {
			return err
		}
		if out.Contracts, err = related(ctx, tx, t.Contracts(), contactID); err != nil {
			return err
		}
		if out.Activities, err = related(ctx, tx, t.Activities().Records, contactID); err != nil {
			return err
		}
		if out.Interactions, err = related(ctx, tx, t.Interactions(), contactID); err != nil {
			return err
		}
		if out.Surveys, err = related(ctx, tx, t.SurveyResponses(), contactID); err != nil {
			return err
		}
		leads, err := related(ctx, tx, t.Leads().Records, contactID)
		if err != nil {
			return err
		}
		for _, l := range leads {
			if out.Lead == nil || l.ID != out.Lead.ID {
				out.OtherLeads = append(out.OtherLeads, l)
			}
		}
		return scanTimeline(ctx, tx, contactsCollection, contactID, func(e *TimelineEntry) error {
			out.Timeline = append(out.Timeline, *e)
			return nil
		})
	})
	if err != nil {
		return PersonalData{}, fmt.Errorf("crm: export personal data of contact %s: %w", contactID, err)
	}
	return out, nil
}

func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }

// related returns every record of r whose "contact" index holds id.
func related[T any](ctx context.Context, tx storage.ReadTx, r *Records[T], id string) ([]T, error) {
	return relatedBy(ctx, tx, r, "contact", id)
}

// relatedBy returns every record of r whose index holds id.
func relatedBy[T any](ctx context.Context, tx storage.ReadTx, r *Records[T], index, id string) ([]T, error) {
	var out []T
	err := scanAll(ctx, tx, r.k.collection.Name, storage.Query{Index: index, Equal: id}, func(rec storage.Record) error {
		v, err := r.decode(rec)
		out = append(out, v)
		return err
	})
	return out, err
}

// Erasure records that a contact's personal data was erased, without the
// data.
type Erasure struct {
	ID        string    `json:"id"`
	ContactID string    `json:"contact_id"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	// Records counts the records anonymised, by collection; Events the
	// outbox events redacted.
	Records map[string]int `json:"records"`
	Events  int            `json:"events"`
}

const erasuresCollection = "erasures"

var erasureCollection = storage.Collection{Name: erasuresCollection, Indexes: []storage.Index{
	{Name: "contact", Field: "contact_id"},
}}

// erased replaces erased text.
const erased = "erased"

// EraseContact erases a contact's personal data (GDPR Art. 17) in one
// transaction, all of it or, on any error, nothing:
//   - the contact keeps its ID, account and owner, so that orders and
//     other aggregates still add up, and loses its names, email, phone,
//     title, external ID, country, tags and custom fields; it is marked
//     ErasedAt and can no longer be updated;
//   - contacts merged into it (tombstones) are erased with it;
//   - the leads it was converted from lose their names, email and phone;
//   - interactions and activities linked to it or to those leads, and
//     cases linked to it, lose their free text (summary, body, reference,
//     subject, notes, description, resolution), survey responses their
//     comments;
//   - timeline entries about it or about those records lose their
//     summaries and comments, keeping their type and time;
//   - outbox events and dead letters about all those records keep their
//     type and time and lose their data, and the search index forgets
//     them.
//
// Deals, orders and contracts are business records and stay as they are;
// they refer to the contact by ID only. The erasure is recorded (Erasure)
// without the erased data, with a contact.erased event. Erasing an erased
// contact fails with ErrInvalid.
func (t *Tenant) EraseContact(ctx context.Context, contactID string, opts ChangeOptions) (Erasure, error) {
	var out Erasure
	// stale is set when the contact is not at opts.Version: no retry helps.
	var stale bool
	erase := func(tx storage.Tx) error {
		stale = false
		contacts := t.Contacts()
		c, err := contacts.get(ctx, tx, contactID)
		if err != nil {
			return err
		}
		if !c.ErasedAt.IsZero() {
			return fmt.Errorf("%w: contact %s was erased at %s", ErrInvalid, contactID, c.ErasedAt.Format(time.RFC3339))
		}
		if opts.Version != 0 && opts.Version != c.Version {
			stale = true
			return fmt.Errorf("%w: contact %s is at version %d, the erasure was based on version %d", ErrConflict, contactID, c.Version, opts.Version)
		}
		now := t.e.clock.Now().UTC()
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		out = Erasure{ID: id.String(), ContactID: contactID, At: now, Actor: opts.Actor, Reason: opts.Reason, Records: map[string]int{}}
		// refs are the records whose events, dead letters and timeline
		// entries lose their data: collection → IDs.
		refs := map[string]map[string]bool{}
		mark := func(coll, id string) bool {
			if refs[coll] == nil {
				refs[coll] = map[string]bool{}
			}
			if refs[coll][id] {
				return false
			}
			refs[coll][id] = true
			out.Records[coll]++
			return true
		}

		// The person: the contact and the tombstones merged into it.
		subjects := []Contact{c}
		for i := 0; i < len(subjects); i++ {
			merged, err := relatedBy(ctx, tx, contacts, "merged_into", subjects[i].ID)
			if err != nil {
				return err
			}
			subjects = append(subjects, merged...)
		}
		var leadIDs []string
		for _, sc := range subjects {
			if !mark(contactsCollection, sc.ID) {
				continue
			}
			sc.FirstName, sc.LastName, sc.Email, sc.Phone, sc.Title, sc.ExternalID, sc.Country = "", "", "", "", "", "", ""
			sc.Tags, sc.Custom, sc.ErasedAt = nil, nil, now
			if _, err := contacts.rewrite(ctx, tx, sc, now, "updated", []string{"erased_at"}); err != nil {
				return err
			}
			if sc.LeadID != "" {
				leadIDs = append(leadIDs, sc.LeadID)
			}
			converted, err := relatedBy(ctx, tx, t.Leads().Records, "contact", sc.ID)
			if err != nil {
				return err
			}
			for _, l := range converted {
				leadIDs = append(leadIDs, l.ID)
			}
		}
		// The leads they came from.
		leads := t.Leads().Records
		for _, id := range leadIDs {
			l, err := leads.get(ctx, tx, id)
			if isNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			if !mark(leadsCollection, l.ID) {
				continue
			}
			l.FirstName, l.LastName, l.Email, l.Phone, l.Tags, l.Custom = "", "", "", "", nil, nil
			if _, err := leads.rewrite(ctx, tx, l, now, "updated", []string{"email", "first_name", "last_name", "phone"}); err != nil {
				return err
			}
		}
		// What was said to, by or about them.
		for _, link := range []struct{ index, coll string }{{"contact", contactsCollection}, {"lead", leadsCollection}} {
			for _, id := range keys(refs[link.coll]) {
				if err := eraseLinked(ctx, tx, t.Interactions(), link.index, id, now, mark, func(in *Interaction) {
					in.Summary, in.Body, in.Reference = erased, "", ""
				}); err != nil {
					return err
				}
				if err := eraseLinked(ctx, tx, t.Activities().Records, link.index, id, now, mark, func(a *Activity) {
					a.Subject, a.Notes = erased, ""
				}); err != nil {
					return err
				}
				if link.index != "contact" {
					continue
				}
				if err := eraseLinked(ctx, tx, t.Cases().Records, link.index, id, now, mark, func(cs *Case) {
					cs.Subject, cs.Description, cs.Resolution = erased, "", ""
				}); err != nil {
					return err
				}
				if err := eraseLinked(ctx, tx, t.SurveyResponses(), link.index, id, now, mark, func(sr *SurveyResponse) {
					sr.Comment = ""
				}); err != nil {
					return err
				}
			}
		}

		// The search index forgets them too (the indexer skips the
		// redacted events below).
		for _, coll := range []string{contactsCollection, leadsCollection} {
			for id := range refs[coll] {
				if err := tx.Delete(ctx, lookupOf(coll), id, 0); err != nil && !isNotFound(err) {
					return err
				}
			}
		}
		n, err := redactTimeline(ctx, tx, refs)
		if err != nil {
			return err
		}
		out.Records[timelineCollection] = n
		if n, err = redactDeadLetters(ctx, tx, refs); err != nil {
			return err
		}
		out.Records[deadLettersCollection] = n
		for coll, ids := range refs {
			n, err := tx.RedactEvents(ctx, coll, keys(ids), []byte(`{"data":{"erased":true}}`))
			if err != nil {
				return err
			}
			out.Events += n
		}

		raw, err := json.Marshal(out)
		if err != nil {
			return err
		}
		if _, err := tx.Put(ctx, erasuresCollection, storage.Record{ID: out.ID, Body: raw}); err != nil {
			return err
		}
		return tx.Append(ctx, storage.Event{Type: "contact.erased", Collection: contactsCollection, RecordID: contactID, Time: now,
			Body: fmt.Appendf(nil, `{"data":{"id":%q,"erased_at":%q}}`, contactID, now.Format(time.RFC3339Nano))})
	}
	// A conflict with a concurrent write is worth another try, the
	// erasure reading what is there then: on PostgreSQL the numbering of
	// the subject's latest events, just committed, is one (see
	// storage.Tx.RedactEvents).
	var err error
	for attempt := 0; ; attempt++ {
		err = t.update(ctx, erase)
		if !errors.Is(err, storage.ErrConflict) || stale || attempt == maxEraseRetries {
			break
		}
	}
	if err != nil {
		return Erasure{}, fmt.Errorf("crm: erase contact %s: %w", contactID, err)
	}
	return out, nil
}

// maxEraseRetries is how many times EraseContact runs again after a
// conflict.
const maxEraseRetries = 5

// eraseLinked applies scrub to every record of r whose index holds id,
// and stores it.
func eraseLinked[T any](ctx context.Context, tx storage.Tx, r *Records[T], index, id string, now time.Time,
	mark func(coll, id string) bool, scrub func(*T)) error {
	recs, err := relatedBy(ctx, tx, r, index, id)
	if err != nil {
		return err
	}
	for _, v := range recs {
		m := r.k.meta(&v)
		if !mark(r.k.collection.Name, m.ID) {
			continue
		}
		scrub(&v)
		m.Custom = nil
		if _, err := r.rewrite(ctx, tx, v, now, "updated", []string{"erased"}); err != nil {
			return err
		}
	}
	return nil
}

func keys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// redactTimeline blanks the summaries and comments of the timeline entries
// of, or about, the records in refs. It reads the tenant's whole timeline.
func redactTimeline(ctx context.Context, tx storage.Tx, refs map[string]map[string]bool) (int, error) {
	return rewriteAll(ctx, tx, timelineCollection, func(e *TimelineEntry) bool {
		if !refs[e.Collection][e.RecordID] && !refs[e.RefCollection][e.RefID] {
			return false
		}
		e.Summary = erased
		if e.StageChange != nil {
			e.StageChange.Comment = ""
		}
		return true
	})
}

// redactDeadLetters drops the event bodies of dead letters about records
// in refs.
func redactDeadLetters(ctx context.Context, tx storage.Tx, refs map[string]map[string]bool) (int, error) {
	return rewriteAll(ctx, tx, deadLettersCollection, func(dl *DeadLetter) bool {
		if !refs[dl.Collection][dl.RecordID] {
			return false
		}
		dl.EventBody = json.RawMessage(`{"erased":true}`)
		return true
	})
}

// rewriteAll decodes every record of collection as a V, and stores those
// that change reports changed; it returns how many.
func rewriteAll[V any](ctx context.Context, tx storage.Tx, collection string, change func(*V) bool) (int, error) {
	n := 0
	err := scanAll(ctx, tx, collection, storage.Query{}, func(rec storage.Record) error {
		var v V
		if err := json.Unmarshal(rec.Body, &v); err != nil {
			return fmt.Errorf("%s %s: %w", collection, rec.ID, err)
		}
		if !change(&v) {
			return nil
		}
		body, err := json.Marshal(&v)
		if err != nil {
			return err
		}
		if _, err := tx.Put(ctx, collection, storage.Record{ID: rec.ID, Version: rec.Version, Body: body}); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

// Erasures lists the recorded erasures of a contact.
func (t *Tenant) Erasures(ctx context.Context, contactID string) ([]Erasure, error) {
	var out []Erasure
	err := t.view(ctx, func(tx storage.ReadTx) error {
		return scanAll(ctx, tx, erasuresCollection, storage.Query{Index: "contact", Equal: contactID}, func(rec storage.Record) error {
			var e Erasure
			if err := json.Unmarshal(rec.Body, &e); err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// ExportPersonalData runs Tenant.ExportPersonalData on the default tenant.
func (e *Engine) ExportPersonalData(ctx context.Context, contactID string) (PersonalData, error) {
	return e.Default().ExportPersonalData(ctx, contactID)
}

// EraseContact runs Tenant.EraseContact on the default tenant.
func (e *Engine) EraseContact(ctx context.Context, contactID string, opts ChangeOptions) (Erasure, error) {
	return e.Default().EraseContact(ctx, contactID, opts)
}
