package crm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rapportcrm/rapport/storage"
)

// Contact is a person: a customer, a prospect, or someone at an account.
//
// Indexes for ListOptions.By: "email" and "external_id" (each unique per
// tenant), "owner", "tag", "account", "country".
//
// Events: contact.created, contact.updated, contact.deleted. A contact
// that deals, contracts, cases or orders refer to cannot be deleted
// (ErrInUse).
type Contact struct {
	Meta
	FirstName string `json:"first_name,omitempty"`
	LastName  string `json:"last_name,omitempty"`
	// Email is stored trimmed and in lower case; it is unique per tenant.
	Email string `json:"email,omitempty"`
	// Phone is stored without separators: "+44 (20) 7946-0958" becomes
	// "+442079460958".
	Phone string `json:"phone,omitempty"`
	Title string `json:"title,omitempty"`
	// AccountID refers to an Account of the same tenant.
	AccountID string `json:"account_id,omitempty"`
	// ExternalID is the contact's ID in another system (a shop's customer
	// number); it is unique per tenant, which makes imports restartable.
	ExternalID string `json:"external_id,omitempty"`
	Country    string `json:"country,omitempty"`
	// LeadID is the lead the contact was converted from, if any.
	LeadID string `json:"lead_id,omitempty"`
	// ErasedAt is set by Tenant.EraseContact; an erased contact keeps its
	// ID for aggregates and cannot be updated.
	ErasedAt time.Time `json:"erased_at,omitzero"`
	// MergedInto is set on a contact merged into another
	// (Tenant.MergeContacts): the survivor's ID.
	MergedInto string `json:"merged_into,omitempty"`
}

// Name returns the contact's full name, or its email if it has no name.
func (c Contact) Name() string {
	if n := strings.TrimSpace(c.FirstName + " " + c.LastName); n != "" {
		return n
	}
	return c.Email
}

const contactsCollection = "contacts"

var contactSearch = searchTerms([]string{"first_name", "last_name"}, []string{"email"}, []string{"phone"})

var contactKind = func() *kind[Contact] {
	k := newKind[Contact]("contact",
		storage.Collection{Name: contactsCollection, Indexes: []storage.Index{
			{Name: "email", Field: "email", Unique: true},
			{Name: "owner", Field: "owner"},
			{Name: "tag", Field: "tags"},
			{Name: "account", Field: "account_id"},
			{Name: "external_id", Field: "external_id", Unique: true},
			{Name: "country", Field: "country"},
			{Name: "lead", Field: "lead_id"},
			{Name: "merged_into", Field: "merged_into"},
		}},
		checkContact, func(ctx context.Context, tx storage.ReadTx, id string) error {
			return referencedBy(ctx, tx, "contact", id, []string{dealsCollection, contractsCollection, casesCollection, ordersCollection}, "contact")
		})
	k.search, k.dupKeys = contactSearch, contactKeys
	k.phones = func(c *Contact) map[string]*string { return map[string]*string{"phone": &c.Phone} }
	k.checkUpdate = func(cur, next *Contact, p *problems) {
		if !cur.ErasedAt.IsZero() {
			p.add("erased_at", "the contact was erased and cannot be changed")
		} else if !next.ErasedAt.IsZero() {
			p.add("erased_at", "is set by Tenant.EraseContact")
		}
		if cur.MergedInto != next.MergedInto {
			p.add("merged_into", "is set by Tenant.MergeContacts")
		}
	}
	return k
}()

func checkContact(ctx context.Context, tx storage.ReadTx, c, prev *Contact, p *problems) error {
	var was Contact
	if prev != nil {
		was = *prev
	}
	checkText(p, "first_name", &c.FirstName)
	checkText(p, "last_name", &c.LastName)
	checkText(p, "title", &c.Title)
	checkEmail(p, "email", &c.Email)
	checkPhone(p, "phone", &c.Phone)
	if prev == nil && !c.ErasedAt.IsZero() {
		p.add("erased_at", "is set by Tenant.EraseContact")
	}
	if prev == nil && c.MergedInto != "" {
		p.add("merged_into", "is set by Tenant.MergeContacts")
	}
	checkText(p, "external_id", &c.ExternalID)
	if err := checkRef(ctx, tx, p, "lead_id", leadsCollection, "lead", &c.LeadID, was.LeadID); err != nil {
		return err
	}
	checkText(p, "country", &c.Country)
	if c.FirstName == "" && c.LastName == "" && c.Email == "" && c.ExternalID == "" {
		p.add("name", "a contact needs a first name, a last name, an email or an external ID")
	}
	return checkRef(ctx, tx, p, "account_id", accountsCollection, "account", &c.AccountID, was.AccountID)
}

// checkRef validates a reference to a record of the same tenant.
func checkRef(ctx context.Context, tx storage.ReadTx, p *problems, field, collection, what string, id *string, was string) error {
	*id = strings.TrimSpace(*id)
	if *id == "" || *id == was {
		return nil
	}
	if err := storage.ValidateID(field, *id); err != nil {
		p.add(field, "%v", err)
		return nil
	}
	_, err := tx.Get(ctx, collection, *id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		p.add(field, "no %s %q in this tenant", what, *id)
		return nil
	case err != nil:
		return fmt.Errorf("checking %s: %w", field, err)
	}
	return nil
}
