package crm

import (
	"context"
	"fmt"
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
	// Lines are the products the deal is about, at most MaxOrderLines.
	// Documents (SendDocument) price them from the tenant's price lists
	// in the deal amount's currency unless a line sets its own price.
	Lines []DealLine `json:"lines,omitempty"`
}

// DealLine is one product of a deal.
type DealLine struct {
	// SKU names the product; required.
	SKU string `json:"sku"`
	// Description defaults to the product's name on documents.
	Description string `json:"description,omitempty"`
	// Quantity is positive.
	Quantity int64 `json:"quantity"`
	// UnitPrice, when set, overrides the price list; its currency must
	// be the deal amount's.
	UnitPrice Money `json:"unit_price,omitzero"`
	// DiscountBP and TaxBP are a discount and a tax rate in basis points
	// (500 is 5%), 0–10000.
	DiscountBP int64 `json:"discount_bp,omitempty"`
	TaxBP      int64 `json:"tax_bp,omitempty"`
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
	if len(d.Lines) > MaxOrderLines {
		p.add("lines", "%d lines, more than %d", len(d.Lines), MaxOrderLines)
	}
	for i := range d.Lines {
		l := &d.Lines[i]
		f := fmt.Sprintf("lines[%d]", i)
		checkText(p, f+".sku", &l.SKU)
		if l.SKU == "" {
			p.add(f+".sku", "is required")
		}
		checkText(p, f+".description", &l.Description)
		if l.Quantity <= 0 {
			p.add(f+".quantity", "%d is not positive", l.Quantity)
		}
		if l.UnitPrice != (Money{}) {
			checkMoney(p, f+".unit_price", l.UnitPrice, false)
			if l.UnitPrice.Currency != d.Amount.Currency {
				p.add(f+".unit_price", "currency %s differs from the deal amount's %q", l.UnitPrice.Currency, d.Amount.Currency)
			}
		}
		if l.DiscountBP < 0 || l.DiscountBP > 10000 {
			p.add(f+".discount_bp", "%d is not 0–10000", l.DiscountBP)
		}
		if l.TaxBP < 0 || l.TaxBP > 10000 {
			p.add(f+".tax_bp", "%d is not 0–10000", l.TaxBP)
		}
	}
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
