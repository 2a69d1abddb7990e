package crm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage"
)

// ConvertOptions say what a lead becomes.
type ConvertOptions struct {
	// ContactID converts the lead into an existing contact; empty creates
	// a contact from the lead's name, email and phone.
	ContactID string
	// AccountID attaches the conversion to an existing account; empty
	// creates an account named after the lead's company, or none if the
	// lead has no company.
	AccountID string
	// Deal is the deal to create. Empty fields take defaults: the title
	// from the company (or "Deal from lead <ID>"), the amount from the expected amount, the
	// lead's owner. NoDeal creates none.
	Deal   Deal
	NoDeal bool
	// Stage is the stage of the lead's pipeline to move the lead to;
	// empty means its first "converted" stage. The move is checked like
	// any other (transitions, guards, required fields). A lead in no
	// pipeline does not move.
	Stage string
	// Actor is who converts the lead.
	Actor pipeline.Actor
}

// Conversion is what a lead became.
type Conversion struct {
	Lead    Lead
	Contact Contact
	// Account is nil when the lead had no company and none was given.
	Account *Account
	// Deal is nil with ConvertOptions.NoDeal.
	Deal *Deal
}

// Convert turns a qualified lead into a contact, an account (existing or
// new) and a deal, in one transaction: all of them or, on any error,
// nothing. The records link both ways (Lead.ContactID, AccountID and
// DealID; Contact.LeadID and Deal.LeadID), the lead's timeline entries are
// copied to the new contact's and deal's timelines, the lead moves to its
// pipeline's converted stage, and a lead.converted event carries the
// lead. Converting a converted lead changes nothing and returns the
// conversion as it was made, so a retried call is safe.
func (l *Leads) Convert(ctx context.Context, id string, opts ConvertOptions) (Conversion, error) {
	var out Conversion
	err := l.update(ctx, func(tx storage.Tx) error {
		lead, err := l.get(ctx, tx, id)
		if err != nil {
			return err
		}
		if !lead.ConvertedAt.IsZero() {
			out, err = l.converted(ctx, tx, lead)
			return err
		}
		now := l.now()
		contacts := l.t.Contacts()
		accounts := l.t.Accounts().Records
		deals := l.t.Deals().Records

		// The account: given, new from the company, or none.
		switch {
		case opts.AccountID != "":
			a, err := accounts.get(ctx, tx, opts.AccountID)
			if err != nil {
				return fmt.Errorf("%w: account %s: %v", ErrInvalid, opts.AccountID, err)
			}
			out.Account = &a
		case lead.Company != "":
			a, err := accounts.create(ctx, tx, Account{Name: lead.Company, Meta: Meta{Owner: lead.Owner}}, now)
			if err != nil {
				return fmt.Errorf("creating the account: %w", err)
			}
			out.Account = &a
		}
		accountID := ""
		if out.Account != nil {
			accountID = out.Account.ID
		}

		// The contact: given, or new from the lead.
		if opts.ContactID != "" {
			if out.Contact, err = contacts.get(ctx, tx, opts.ContactID); err != nil {
				return fmt.Errorf("%w: contact %s: %v", ErrInvalid, opts.ContactID, err)
			}
		} else {
			c := Contact{FirstName: lead.FirstName, LastName: lead.LastName, Email: lead.Email, Phone: lead.Phone,
				AccountID: accountID, LeadID: lead.ID, Meta: Meta{Owner: lead.Owner, Tags: lead.Tags}}
			if out.Contact, err = contacts.create(ctx, tx, c, now); err != nil {
				return fmt.Errorf("creating the contact: %w", err)
			}
		}

		// The deal.
		if !opts.NoDeal {
			d := opts.Deal
			d.LeadID, d.ContactID = lead.ID, out.Contact.ID
			if d.AccountID == "" {
				d.AccountID = accountID
			}
			if d.Title == "" {
				// Not the person's name: a deal is a business record that
				// outlives an erasure of the person.
				d.Title = firstNonEmpty(lead.Company, "Deal from lead "+lead.ID)
			}
			if d.Amount.IsZero() && d.Amount.Currency == "" {
				d.Amount = lead.ExpectedAmount
			}
			if d.Owner == "" {
				d.Owner = lead.Owner
			}
			created, err := deals.create(ctx, tx, d, now)
			if err != nil {
				return fmt.Errorf("creating the deal: %w", err)
			}
			out.Deal = &created
		}

		// The lead's history goes with it.
		var copies []*TimelineEntry
		err = scanTimeline(ctx, tx, leadsCollection, lead.ID, func(e *TimelineEntry) error {
			for _, to := range []struct{ coll, id string }{{contactsCollection, out.Contact.ID}, {dealsCollection, dealID(out.Deal)}} {
				if to.id == "" {
					continue
				}
				c := *e
				c.Collection, c.RecordID = to.coll, to.id
				if c.RefCollection == "" {
					c.RefCollection, c.RefID = leadsCollection, lead.ID
				}
				copies = append(copies, &c)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := appendTimeline(ctx, tx, copies...); err != nil {
			return err
		}

		// The lead moves to its converted stage and records what it became.
		staged := l.Staged
		if lead.Pipeline != "" {
			p, err := l.t.compiled(ctx, tx, lead.Pipeline)
			if err != nil {
				return err
			}
			to := opts.Stage
			if to == "" {
				to = convertedStage(p)
			}
			if to == "" {
				return fmt.Errorf("%w: pipeline %s has no converted stage; give ConvertOptions.Stage", ErrInvalid, lead.Pipeline)
			}
			record, err := asMap(&lead)
			if err != nil {
				return err
			}
			if err := p.Check(pipeline.Move{From: lead.Stage, To: to, Record: record, Actor: opts.Actor}); err != nil {
				return err
			}
			if lead, err = staged.relocate(ctx, tx, lead, p, to, MoveOptions{Actor: opts.Actor, Comment: "converted"}); err != nil {
				return err
			}
		}
		before := lead
		lead.ConvertedAt, lead.ContactID, lead.AccountID, lead.DealID = now, out.Contact.ID, accountID, dealID(out.Deal)
		lead.UpdatedAt, lead.Version = now, before.Version+1
		body, err := l.put(ctx, tx, &lead, before.Version)
		if err != nil {
			return err
		}
		out.Lead = lead
		return l.appendEvent(ctx, tx, "converted", lead.ID, body, []string{"account_id", "contact_id", "converted_at", "deal_id"})
	})
	if err != nil {
		return Conversion{}, err
	}
	return out, nil
}

// converted returns the conversion a converted lead recorded.
func (l *Leads) converted(ctx context.Context, tx storage.ReadTx, lead Lead) (Conversion, error) {
	out := Conversion{Lead: lead}
	var err error
	if out.Contact, err = l.t.Contacts().get(ctx, tx, lead.ContactID); err != nil {
		return out, fmt.Errorf("lead %s was converted into contact %s: %w", lead.ID, lead.ContactID, err)
	}
	if lead.AccountID != "" {
		a, err := l.t.Accounts().get(ctx, tx, lead.AccountID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return out, err
		}
		if err == nil {
			out.Account = &a
		}
	}
	if lead.DealID != "" {
		d, err := l.t.Deals().get(ctx, tx, lead.DealID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return out, err
		}
		if err == nil {
			out.Deal = &d
		}
	}
	return out, nil
}

// convertedStage returns the first stage of p whose terminal kind is
// converted, or "".
func convertedStage(p *pipeline.Pipeline) string {
	for _, s := range p.Stages() {
		if s.Terminal == pipeline.Converted {
			return s.Key
		}
	}
	return ""
}

func dealID(d *Deal) string {
	if d == nil {
		return ""
	}
	return d.ID
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if strings.TrimSpace(s) != "" {
			return s
		}
	}
	return ""
}

// checkLeadUpdate refuses changes to what only Convert sets.
func checkLeadUpdate(cur, next *Lead, p *problems) {
	if !cur.ConvertedAt.Equal(next.ConvertedAt) || cur.ContactID != next.ContactID ||
		cur.AccountID != next.AccountID || cur.DealID != next.DealID {
		p.add("converted_at", "conversion fields are set by Leads.Convert")
	}
}
