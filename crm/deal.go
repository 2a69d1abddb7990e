package crm

import (
	"context"
	"time"

	"github.com/rapportcrm/rapport/pipeline"

	"github.com/rapportcrm/rapport/storage"
)

// Deal is a sales opportunity with an account or contact.
//
// Indexes for ListOptions.By: "owner", "tag", "account", "contact",
// "stage" (values "<pipeline>/<stage>"), "expected_close" (YYYY-MM-DD, so
// ranges sort by date).
//
// Events: deal.created, deal.updated, deal.deleted, deal.stage_changed,
// sla.breached. Deals move through pipelines of kind "deal" (see Staged).
type Deal struct {
	Meta
	// Title is required.
	Title string `json:"title"`
	// Amount is the deal's value; its currency must be an ISO 4217 code
	// and the amount cannot be negative. The zero Money means unknown.
	Amount Money `json:"amount,omitzero"`
	// ExpectedClose is the expected closing date, YYYY-MM-DD.
	ExpectedClose string `json:"expected_close,omitempty"`
	// AccountID and ContactID refer to records of the same tenant.
	AccountID string `json:"account_id,omitempty"`
	ContactID string `json:"contact_id,omitempty"`
	// LeadID is the lead the deal was converted from, if any.
	LeadID string `json:"lead_id,omitempty"`
	// Pipeline, Stage and StageEnteredAt place the deal in a sales
	// pipeline. Pipeline moves (with history and guards) maintain them.
	Pipeline       string    `json:"pipeline,omitempty"`
	Stage          string    `json:"stage,omitempty"`
	StageEnteredAt time.Time `json:"stage_entered_at,omitzero"`
	// StageDueAt is when the deal should leave its stage by the stage's
	// time norm; zero when the stage has no norm or is terminal.
	StageDueAt time.Time `json:"stage_due_at,omitzero"`
}

func (d *Deal) stageRef() stageRef {
	return stageRef{&d.Pipeline, &d.Stage, &d.StageEnteredAt, &d.StageDueAt}
}

const dealsCollection = "deals"

var dealKind = newStagedKind[Deal]("deal",
	storage.Collection{Name: dealsCollection, Indexes: []storage.Index{
		{Name: "owner", Field: "owner"},
		{Name: "tag", Field: "tags"},
		{Name: "account", Field: "account_id"},
		{Name: "contact", Field: "contact_id"},
		{Name: "lead", Field: "lead_id"},
		{Name: "expected_close", Field: "expected_close"},
	}},
	checkDeal, nil, &staging[Deal]{kind: pipeline.KindDeal, ref: (*Deal).stageRef})

func checkDeal(ctx context.Context, tx storage.ReadTx, d, prev *Deal, p *problems) error {
	var was Deal
	if prev != nil {
		was = *prev
	}
	checkText(p, "title", &d.Title)
	if d.Title == "" {
		p.add("title", "is required")
	}
	checkMoney(p, "amount", d.Amount, false)
	checkDate(p, "expected_close", &d.ExpectedClose)
	if err := checkRef(ctx, tx, p, "account_id", accountsCollection, "account", &d.AccountID, was.AccountID); err != nil {
		return err
	}
	if err := checkRef(ctx, tx, p, "contact_id", contactsCollection, "contact", &d.ContactID, was.ContactID); err != nil {
		return err
	}
	return checkRef(ctx, tx, p, "lead_id", leadsCollection, "lead", &d.LeadID, was.LeadID)
}

// sortableTimeLayout formats UTC times so that they sort as strings.
const sortableTimeLayout = storage.TimeLayout

// sortableTime indexes an RFC 3339 time field in sortableTimeLayout.
func sortableTime(field string) func([]byte) ([]string, error) {
	return func(body []byte) ([]string, error) {
		s := gjsonString(body, field)
		if s == "" {
			return nil, nil
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, err
		}
		return []string{t.UTC().Format(sortableTimeLayout)}, nil
	}
}

// pipelineStage indexes a record under "<pipeline>/<stage>".
func pipelineStage(body []byte) ([]string, error) {
	pl, st := gjsonString(body, "pipeline"), gjsonString(body, "stage")
	if pl == "" || st == "" {
		return nil, nil
	}
	return []string{pl + "/" + st}, nil
}

// checkMoney validates an amount: a known currency (unless the whole value
// is zero) and, unless negative is allowed, not below zero.
func checkMoney(p *problems, field string, m Money, negative bool) {
	if m == (Money{}) {
		return
	}
	if _, err := CurrencyScale(m.Currency); err != nil {
		p.add(field+".currency", "%q is not an ISO 4217 currency code", m.Currency)
	}
	if m.Amount < 0 && !negative {
		p.add(field+".amount", "%d is negative", m.Amount)
	}
}

// checkDate validates a YYYY-MM-DD date.
func checkDate(p *problems, field string, s *string) {
	if *s == "" {
		return
	}
	if _, err := time.Parse(time.DateOnly, *s); err != nil {
		p.add(field, "%q is not a date (YYYY-MM-DD)", *s)
	}
}
