package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage"
)

// Contract is a service agreement with an account or contact. Its SLA
// terms set the norms of case stages that name them (see
// pipeline.Stage.SLA).
//
// Indexes for ListOptions.By: "owner", "tag", "account", "contact",
// "ends_on" (YYYY-MM-DD).
//
// Events: contract.created, contract.updated, contract.deleted. A contract
// that cases refer to cannot be deleted (ErrInUse).
type Contract struct {
	Meta
	// Title is required, for example the contract number.
	Title     string `json:"title"`
	AccountID string `json:"account_id,omitempty"`
	ContactID string `json:"contact_id,omitempty"`
	// StartsOn and EndsOn bound the contract, YYYY-MM-DD; EndsOn is the
	// renewal date.
	StartsOn string `json:"starts_on,omitempty"`
	EndsOn   string `json:"ends_on,omitempty"`
	// Value is what the contract is worth.
	Value Money `json:"value,omitzero"`
	// ResponseTime is the longest a new case may wait for a first
	// response; ResolutionTime the longest from opening a case to
	// resolving it. "4h", "2d" and "3bd" (business days) are norms.
	ResponseTime   pipeline.Norm `json:"response_time,omitzero"`
	ResolutionTime pipeline.Norm `json:"resolution_time,omitzero"`
}

const contractsCollection = "contracts"

var contractKind = func() *kind[Contract] {
	k := newKind[Contract]("contract",
		storage.Collection{Name: contractsCollection, Indexes: []storage.Index{
			{Name: "owner", Field: "owner"},
			{Name: "tag", Field: "tags"},
			{Name: "account", Field: "account_id"},
			{Name: "contact", Field: "contact_id"},
			{Name: "ends_on", Field: "ends_on"},
		}},
		checkContract, func(ctx context.Context, tx storage.ReadTx, id string) error {
			return referencedBy(ctx, tx, "contract", id, []string{casesCollection}, "contract")
		})
	k.afterUpdate = redueContractCases
	return k
}()

// redueContractCases recomputes the due times of the cases under a
// contract whose SLA terms changed.
func redueContractCases(ctx context.Context, tx storage.Tx, t *Tenant, cur, next *Contract) error {
	if cur.ResponseTime == next.ResponseTime && cur.ResolutionTime == next.ResolutionTime {
		return nil
	}
	q := storage.Query{Index: "contract", Equal: next.ID, Limit: 1000}
	return scanAll(ctx, tx, casesCollection, q, func(rec storage.Record) error {
		pl := gjsonString(rec.Body, "pipeline")
		if pl == "" {
			return nil
		}
		p, err := t.compiled(ctx, tx, pl)
		if err != nil {
			return err
		}
		return caseKind.redueRecord(ctx, tx, t, rec, p)
	})
}

func checkContract(ctx context.Context, tx storage.ReadTx, c, prev *Contract, p *problems) error {
	var was Contract
	if prev != nil {
		was = *prev
	}
	checkText(p, "title", &c.Title)
	if c.Title == "" {
		p.add("title", "is required")
	}
	checkDate(p, "starts_on", &c.StartsOn)
	checkDate(p, "ends_on", &c.EndsOn)
	if c.StartsOn != "" && c.EndsOn != "" && c.EndsOn < c.StartsOn {
		p.add("ends_on", "%s is before starts_on %s", c.EndsOn, c.StartsOn)
	}
	checkMoney(p, "value", c.Value, false)
	if err := c.ResponseTime.Validate(); err != nil {
		p.add("response_time", "%v", err)
	}
	if err := c.ResolutionTime.Validate(); err != nil {
		p.add("resolution_time", "%v", err)
	}
	if err := checkRef(ctx, tx, p, "account_id", accountsCollection, "account", &c.AccountID, was.AccountID); err != nil {
		return err
	}
	return checkRef(ctx, tx, p, "contact_id", contactsCollection, "contact", &c.ContactID, was.ContactID)
}

// Priority is how urgent a case is.
type Priority string

// Priorities.
const (
	Low    Priority = "low"
	Normal Priority = "normal"
	High   Priority = "high"
	Urgent Priority = "urgent"
)

// Case is a service request from a customer. Its status is its stage in a
// pipeline of kind "case" (the built-in "service-case": new → in progress
// → waiting for customer → resolved → closed); see Staged. Under a
// contract, stages that name an SLA term take their norm from the contract.
//
// Indexes for ListOptions.By: "owner", "tag", "account", "contact",
// "contract", "priority", "stage" (values "<pipeline>/<stage>").
//
// Events: case.opened, case.updated, case.deleted, case.stage_changed,
// sla.breached.
type Case struct {
	Meta
	// Subject is required.
	Subject     string `json:"subject"`
	Description string `json:"description,omitempty"`
	// Priority defaults to normal.
	Priority   Priority `json:"priority,omitempty"`
	AccountID  string   `json:"account_id,omitempty"`
	ContactID  string   `json:"contact_id,omitempty"`
	ContractID string   `json:"contract_id,omitempty"`
	// Resolution says how the case was solved; the built-in pipeline
	// requires it to enter "resolved".
	Resolution string `json:"resolution,omitempty"`

	Pipeline       string    `json:"pipeline,omitempty"`
	Stage          string    `json:"stage,omitempty"`
	StageEnteredAt time.Time `json:"stage_entered_at,omitzero"`
	StageDueAt     time.Time `json:"stage_due_at,omitzero"`
}

func (c *Case) stageRef() stageRef {
	return stageRef{&c.Pipeline, &c.Stage, &c.StageEnteredAt, &c.StageDueAt}
}

const casesCollection = "cases"

var caseKind = eventsAs(newStagedKind[Case]("case",
	storage.Collection{Name: casesCollection, Indexes: []storage.Index{
		{Name: "owner", Field: "owner"},
		{Name: "tag", Field: "tags"},
		{Name: "account", Field: "account_id"},
		{Name: "contact", Field: "contact_id"},
		{Name: "contract", Field: "contract_id"},
		{Name: "priority", Field: "priority"},
	}},
	checkCase, nil, &staging[Case]{kind: pipeline.KindCase, ref: (*Case).stageRef, sla: caseSLA}), "", "opened")

func checkCase(ctx context.Context, tx storage.ReadTx, c, prev *Case, p *problems) error {
	var was Case
	if prev != nil {
		was = *prev
	}
	checkText(p, "subject", &c.Subject)
	if c.Subject == "" {
		p.add("subject", "is required")
	}
	checkLongText(p, "description", c.Description)
	checkLongText(p, "resolution", c.Resolution)
	switch c.Priority {
	case "":
		c.Priority = Normal
	case Low, Normal, High, Urgent:
	default:
		p.add("priority", "%q: want low, normal, high or urgent", c.Priority)
	}
	for _, ref := range []struct {
		field, coll, what string
		id                *string
		was               string
	}{
		{"account_id", accountsCollection, "account", &c.AccountID, was.AccountID},
		{"contact_id", contactsCollection, "contact", &c.ContactID, was.ContactID},
		{"contract_id", contractsCollection, "contract", &c.ContractID, was.ContractID},
	} {
		if err := checkRef(ctx, tx, p, ref.field, ref.coll, ref.what, ref.id, ref.was); err != nil {
			return err
		}
	}
	return nil
}

// caseSLA returns the norm of the case's contract for term: the response
// time counts from entering the stage, the resolution time from opening
// the case.
func caseSLA(ctx context.Context, tx storage.ReadTx, c *Case, term pipeline.SLATerm, entered time.Time) (pipeline.Norm, time.Time, bool, error) {
	if c.ContractID == "" {
		return pipeline.Norm{}, time.Time{}, false, nil
	}
	rec, err := tx.Get(ctx, contractsCollection, c.ContractID)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalid) {
		return pipeline.Norm{}, time.Time{}, false, nil // reported by checkCase
	}
	if err != nil {
		return pipeline.Norm{}, time.Time{}, false, err
	}
	var contract struct {
		ResponseTime   pipeline.Norm `json:"response_time"`
		ResolutionTime pipeline.Norm `json:"resolution_time"`
	}
	if err := json.Unmarshal(rec.Body, &contract); err != nil {
		return pipeline.Norm{}, time.Time{}, false, fmt.Errorf("contract %s: %w", c.ContractID, err)
	}
	switch term {
	case pipeline.SLAResponse:
		return contract.ResponseTime, entered, !contract.ResponseTime.IsZero(), nil
	case pipeline.SLAResolution:
		return contract.ResolutionTime, c.CreatedAt, !contract.ResolutionTime.IsZero(), nil
	}
	return pipeline.Norm{}, time.Time{}, false, fmt.Errorf("unknown SLA term %q", term)
}
