package crm

import (
	"context"
	"fmt"
	"time"

	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage"
)

// AccountType says what kind of customer an account is.
type AccountType string

// Account types.
const (
	B2B AccountType = "b2b" // a business
	B2C AccountType = "b2c" // a consumer household
	B2G AccountType = "b2g" // a government body
)

// Account is a company or organisation that contacts belong to.
//
// An account can follow a lifecycle pipeline of kind "account" (the
// built-in "account-lifecycle": awareness → exploration → expansion →
// commitment → dissolution); see Staged.
//
// Indexes for ListOptions.By: "domain" (unique per tenant), "name",
// "external_id" (unique per tenant), "owner", "tag", "industry", "stage"
// (values "<pipeline>/<stage>").
//
// Events: account.created, account.updated, account.deleted,
// account.stage_changed, sla.breached. An account that contacts, deals,
// contracts, cases or orders refer to cannot be deleted (ErrInUse).
type Account struct {
	Meta
	// Name is required.
	Name string `json:"name"`
	// Domain is the web domain, stored as "example.com" whatever the form
	// given; it is unique per tenant.
	Domain   string      `json:"domain,omitempty"`
	Industry string      `json:"industry,omitempty"`
	Type     AccountType `json:"type,omitempty"`
	// Employees is the head count; it cannot be negative.
	Employees int    `json:"employees,omitempty"`
	Territory string `json:"territory,omitempty"`
	City      string `json:"city,omitempty"`
	// MergedInto is set on an account merged into another
	// (Tenant.MergeAccounts): the survivor's ID.
	MergedInto string `json:"merged_into,omitempty"`
	// ExternalID is the account's ID in another system; it is unique per
	// tenant, which makes imports restartable.
	ExternalID string `json:"external_id,omitempty"`
	// Pipeline, Stage, StageEnteredAt and StageDueAt place the account in
	// a lifecycle pipeline, as for deals.
	Pipeline       string    `json:"pipeline,omitempty"`
	Stage          string    `json:"stage,omitempty"`
	StageEnteredAt time.Time `json:"stage_entered_at,omitzero"`
	StageDueAt     time.Time `json:"stage_due_at,omitzero"`
}

func (a *Account) stageRef() stageRef {
	return stageRef{&a.Pipeline, &a.Stage, &a.StageEnteredAt, &a.StageDueAt}
}

const accountsCollection = "accounts"

var accountSearch = searchTerms([]string{"name", "domain"}, nil, nil)

var accountKind = func() *kind[Account] {
	k := newStagedKind[Account]("account",
		storage.Collection{Name: accountsCollection, Indexes: []storage.Index{
			{Name: "domain", Field: "domain", Unique: true},
			{Name: "name", Field: "name"},
			{Name: "owner", Field: "owner"},
			{Name: "tag", Field: "tags"},
			{Name: "industry", Field: "industry"},
			{Name: "external_id", Field: "external_id", Unique: true},
		}},
		checkAccount, accountInUse, &staging[Account]{kind: pipeline.KindAccount, ref: (*Account).stageRef})
	k.search, k.dupKeys = accountSearch, accountKeys
	return k
}()

func checkAccount(_ context.Context, _ storage.ReadTx, a, prev *Account, p *problems) error {
	if (prev == nil && a.MergedInto != "") || (prev != nil && prev.MergedInto != a.MergedInto) {
		p.add("merged_into", "is set by Tenant.MergeAccounts")
	}
	checkText(p, "name", &a.Name)
	if a.Name == "" {
		p.add("name", "is required")
	}
	checkDomain(p, "domain", &a.Domain)
	checkText(p, "industry", &a.Industry)
	checkText(p, "territory", &a.Territory)
	checkText(p, "city", &a.City)
	checkText(p, "external_id", &a.ExternalID)
	switch a.Type {
	case "", B2B, B2C, B2G:
	default:
		p.add("type", "%q: want b2b, b2c or b2g", a.Type)
	}
	if a.Employees < 0 {
		p.add("employees", "%d is negative", a.Employees)
	}
	return nil
}

func accountInUse(ctx context.Context, tx storage.ReadTx, id string) error {
	return referencedBy(ctx, tx, "account", id, []string{contactsCollection, dealsCollection, contractsCollection, casesCollection, ordersCollection}, "account")
}

// referencedBy refuses with ErrInUse if a record of one of collections
// refers to id through index.
func referencedBy(ctx context.Context, tx storage.ReadTx, what, id string, collections []string, index string) error {
	for _, coll := range collections {
		pg, err := tx.Scan(ctx, coll, storage.Query{Index: index, Equal: id, Limit: 1})
		if err != nil {
			return err
		}
		if len(pg.Records) > 0 {
			return fmt.Errorf("%w: %s %s has %s (for example %s); move or delete them first",
				ErrInUse, what, id, coll, pg.Records[0].ID)
		}
	}
	return nil
}
