package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rapportcrm/rapport/storage"
)

// Duplicate detection: contacts and accounts are indexed under match keys
// (in the lookup collection, beside the search terms), and records sharing a key are likely the same
// customer:
//   - a contact's email, normalised: lower case, "+tag" dropped from the
//     local part, dots dropped for Gmail addresses;
//   - a contact's phone: its last 9 digits (so "+44 20 7946 0958" and
//     "020 7946 0958" match);
//   - an account's domain;
//   - an account's name, folded, without punctuation and legal forms
//     ("ACME, Inc." = "Acme"), together with its city.

// Match is a likely duplicate and why.
type Match[T any] struct {
	Record T
	// Reasons are the match keys the records share, for example
	// "email:ada@example.com" or "name+city:acme|paris".
	Reasons []string
}

func contactKeys(body []byte) ([]string, error) {
	var out []string
	if e := normEmail(gjsonString(body, "email")); e != "" {
		out = append(out, "email:"+e)
	}
	if p := phoneKey(gjsonString(body, "phone")); p != "" {
		out = append(out, "phone:"+p)
	}
	return out, nil
}

func accountKeys(body []byte) ([]string, error) {
	var out []string
	if d := gjsonString(body, "domain"); d != "" {
		out = append(out, "domain:"+d)
	}
	if n := normCompany(gjsonString(body, "name")); n != "" {
		out = append(out, "name+city:"+n+"|"+strings.Join(words(gjsonString(body, "city")), " "))
	}
	return out, nil
}

func normEmail(e string) string {
	e = strings.ToLower(strings.TrimSpace(e))
	local, domain, ok := strings.Cut(e, "@")
	if !ok {
		return ""
	}
	local, _, _ = strings.Cut(local, "+")
	if domain == "gmail.com" || domain == "googlemail.com" {
		local, domain = strings.ReplaceAll(local, ".", ""), "gmail.com"
	}
	return local + "@" + domain
}

func phoneKey(p string) string {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, p)
	if len(digits) < 7 {
		return ""
	}
	if len(digits) > 9 {
		digits = digits[len(digits)-9:]
	}
	return digits
}

var legalForms = []string{"inc", "incorporated", "ltd", "limited", "llc", "plc", "gmbh", "ag", "sa", "sas", "sarl", "bv", "nv",
	"co", "corp", "corporation", "company", "srl", "spa", "oy", "ab", "as", "kg", "ug", "pty", "ooo", "zao", "oao"}

func normCompany(name string) string {
	ws := words(name)
	for len(ws) > 1 && slices.Contains(legalForms, ws[len(ws)-1]) {
		ws = ws[:len(ws)-1]
	}
	return strings.Join(ws, " ")
}

// Duplicates returns the stored records that likely duplicate rec (which
// need not be stored): those sharing a match key, leaving out rec itself
// and archived or merged records. Only contacts and accounts have match
// keys; other kinds fail with ErrInvalid. New records that match others
// also get a "<kind>.duplicate_suspected" event, listing the candidates,
// shortly after they are created.
func (r *Records[T]) Duplicates(ctx context.Context, rec T) ([]Match[T], error) {
	if r.k.dupKeys == nil {
		return nil, fmt.Errorf("crm: %s: %w: no duplicate detection", r.k.name, ErrInvalid)
	}
	if err := r.t.e.catchUpLookup(ctx); err != nil {
		return nil, err
	}
	var out []Match[T]
	err := r.view(ctx, func(tx storage.ReadTx) error {
		v := rec
		var p problems
		if err := r.k.check(ctx, tx, &v, nil, &p); err != nil { // normalises email, phone, domain
			return err
		}
		body, err := json.Marshal(&v)
		if err != nil {
			return err
		}
		keys, err := r.k.dupKeys(body)
		if err != nil {
			return err
		}
		self := r.k.meta(&v).ID
		at := map[string]int{}
		for _, key := range keys {
			ids, err := lookupMatches(ctx, tx, r.k.collection.Name, dupPrefix+key, 100)
			if err != nil {
				return err
			}
			for _, id := range ids {
				if id == self {
					continue
				}
				if i, ok := at[id]; ok {
					out[i].Reasons = append(out[i].Reasons, key)
					continue
				}
				d, err := r.get(ctx, tx, id)
				if errors.Is(err, storage.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if !r.k.meta(&d).ArchivedAt.IsZero() {
					continue
				}
				at[id] = len(out)
				out = append(out, Match[T]{Record: d, Reasons: []string{key}})
			}
		}
		return nil
	})
	return out, err
}

// MergeOptions describe a merge.
type MergeOptions struct {
	// Actor and Reason are recorded with the merge.
	Actor, Reason string
}

// TimelineMerged marks the merge on the survivor's timeline.
const TimelineMerged = "merged"

// MergeContacts merges the contact loser into survivor, in one
// transaction: the survivor keeps its values and takes the loser's where
// it has none (tags and custom fields are combined); deals, orders,
// cases, contracts, activities and interactions of the loser move to the
// survivor; the loser's timeline is copied to the survivor's; the loser
// becomes a tombstone (archived, MergedInto set, email and external ID
// released); contact.merged records the merge. It returns the survivor.
func (t *Tenant) MergeContacts(ctx context.Context, survivorID, loserID string, opts MergeOptions) (Contact, error) {
	return mergeRecords(ctx, t, t.Contacts(), survivorID, loserID, opts,
		func(s, l *Contact) error {
			if !s.ErasedAt.IsZero() || !l.ErasedAt.IsZero() {
				return fmt.Errorf("%w: an erased contact cannot be merged", ErrInvalid)
			}
			return nil
		},
		func(s, l *Contact) {
			fill(&s.FirstName, l.FirstName)
			fill(&s.LastName, l.LastName)
			fill(&s.Phone, l.Phone)
			fill(&s.Title, l.Title)
			fill(&s.AccountID, l.AccountID)
			fill(&s.Country, l.Country)
			fill(&s.LeadID, l.LeadID)
			if s.Email == "" {
				s.Email, l.Email = l.Email, ""
			}
			if s.ExternalID == "" {
				s.ExternalID, l.ExternalID = l.ExternalID, ""
			}
			l.Email, l.ExternalID = "", ""
			l.MergedInto = s.ID
		},
		[]refMove{
			{dealsCollection, "contact", "contact_id"}, {ordersCollection, "contact", "contact_id"},
			{casesCollection, "contact", "contact_id"}, {contractsCollection, "contact", "contact_id"},
			{activitiesCollection, "contact", "contact_id"}, {interactionsCollection, "contact", "contact_id"},
			{leadsCollection, "contact", "contact_id"}, {surveysCollection, "contact", "contact_id"},
		})
}

// MergeAccounts merges the account loser into survivor as MergeContacts
// does; contacts, deals, orders, cases, contracts, activities and
// interactions move, and the loser's domain and external ID are released.
func (t *Tenant) MergeAccounts(ctx context.Context, survivorID, loserID string, opts MergeOptions) (Account, error) {
	return mergeRecords(ctx, t, t.Accounts().Records, survivorID, loserID, opts, nil,
		func(s, l *Account) {
			fill(&s.Industry, l.Industry)
			fill(&s.Territory, l.Territory)
			fill(&s.City, l.City)
			if s.Type == "" {
				s.Type = l.Type
			}
			if s.Employees == 0 {
				s.Employees = l.Employees
			}
			if s.Domain == "" {
				s.Domain = l.Domain
			}
			if s.ExternalID == "" {
				s.ExternalID = l.ExternalID
			}
			l.Domain, l.ExternalID = "", ""
			l.MergedInto = s.ID
		},
		[]refMove{
			{contactsCollection, "account", "account_id"}, {dealsCollection, "account", "account_id"},
			{ordersCollection, "account", "account_id"}, {casesCollection, "account", "account_id"},
			{contractsCollection, "account", "account_id"}, {activitiesCollection, "account", "account_id"},
			{interactionsCollection, "account", "account_id"}, {leadsCollection, "account", "account_id"},
		})
}

// entityOf returns the entity name of a collection ("activities" →
// "activity").
func entityOf(coll string) string {
	for name, c := range entityCollections {
		if c == coll {
			return name
		}
	}
	return coll
}

// setJSONFields sets top-level fields of a JSON object.
func setJSONFields(body []byte, fields map[string]any) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	for k, v := range fields {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		m[k] = raw
	}
	return json.Marshal(m)
}

func fill(dst *string, src string) {
	if *dst == "" {
		*dst = src
	}
}

// refMove names a reference to move in a merge: the collection, the index
// over the reference and its JSON field.
type refMove struct{ coll, index, field string }

func mergeRecords[T any](ctx context.Context, t *Tenant, r *Records[T], survivorID, loserID string, opts MergeOptions,
	refuse func(survivor, loser *T) error, combine func(survivor, loser *T), moves []refMove) (T, error) {
	var out T
	if survivorID == loserID {
		return out, fmt.Errorf("crm: merge %ss: %w: a record cannot be merged into itself", r.k.name, ErrInvalid)
	}
	err := r.update(ctx, func(tx storage.Tx) error {
		s, err := r.get(ctx, tx, survivorID)
		if err != nil {
			return err
		}
		l, err := r.get(ctx, tx, loserID)
		if err != nil {
			return err
		}
		sm, lm := r.k.meta(&s), r.k.meta(&l)
		if !sm.ArchivedAt.IsZero() || !lm.ArchivedAt.IsZero() {
			return fmt.Errorf("%w: archived or merged records cannot be merged; restore them first", ErrInvalid)
		}
		if refuse != nil {
			if err := refuse(&s, &l); err != nil {
				return err
			}
		}
		now := r.now()
		combine(&s, &l)
		for _, tag := range lm.Tags {
			if !slices.Contains(sm.Tags, tag) {
				sm.Tags = append(sm.Tags, tag)
			}
		}
		for k, v := range lm.Custom {
			if _, ok := sm.Custom[k]; !ok {
				if sm.Custom == nil {
					sm.Custom = map[string]any{}
				}
				sm.Custom[k] = v
			}
		}
		lm.ArchivedAt = now
		// The loser releases its unique values before the survivor takes
		// them.
		if _, err := r.rewrite(ctx, tx, l, now, "merged", []string{"archived_at", "merged_into"}); err != nil {
			return err
		}
		var p problems
		if err := r.validate(ctx, tx, &s, &s, &p); err != nil {
			return err
		}
		if err := p.err(r.k.name, survivorID); err != nil {
			return err
		}
		if out, err = r.rewrite(ctx, tx, s, now, "updated", nil); err != nil {
			return err
		}
		for _, mv := range moves {
			if err := moveReferences(ctx, tx, mv, loserID, survivorID, now); err != nil {
				return err
			}
		}
		var copies []*TimelineEntry
		err = scanTimeline(ctx, tx, r.k.collection.Name, loserID, func(e *TimelineEntry) error {
			c := *e
			c.RecordID = survivorID
			if c.RefCollection == "" {
				c.RefCollection, c.RefID = r.k.collection.Name, loserID
			}
			copies = append(copies, &c)
			return nil
		})
		if err != nil {
			return err
		}
		copies = append(copies, &TimelineEntry{Collection: r.k.collection.Name, RecordID: survivorID, At: now, Type: TimelineMerged,
			Summary: joinNonEmpty("merged "+loserID, opts.Reason, opts.Actor), RefCollection: r.k.collection.Name, RefID: loserID})
		return appendTimeline(ctx, tx, copies...)
	})
	return out, err
}

// moveReferences points every record of mv.coll that refers to from (by
// mv.field) at to, writing the JSON field directly so that fixed links
// (activities, interactions) move too.
func moveReferences(ctx context.Context, tx storage.Tx, mv refMove, from, to string, now time.Time) error {
	for {
		pg, err := tx.Scan(ctx, mv.coll, storage.Query{Index: mv.index, Equal: from, Limit: 1000})
		if err != nil {
			return err
		}
		if len(pg.Records) == 0 {
			return nil
		}
		for _, rec := range pg.Records {
			body, err := setJSONFields(rec.Body, map[string]any{mv.field: to, "updated_at": now, "version": rec.Version + 1})
			if err != nil {
				return err
			}
			if _, err := tx.Put(ctx, mv.coll, storage.Record{ID: rec.ID, Version: rec.Version, Body: body}); err != nil {
				return err
			}
			err = tx.Append(ctx, storage.Event{Type: entityOf(mv.coll) + ".updated", Collection: mv.coll, RecordID: rec.ID, Time: now,
				Body: append(append(append([]byte(`{"data":`), body...), `,"changed":["`+mv.field+`"]`...), '}')})
			if err != nil {
				return err
			}
		}
	}
}
