package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
// Events: deal.created, deal.updated, deal.deleted.
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

const dealsCollection = "deals"

var dealKind = newKind[Deal]("deal",
	storage.Collection{Name: dealsCollection, Indexes: []storage.Index{
		{Name: "owner", Field: "owner"},
		{Name: "tag", Field: "tags"},
		{Name: "account", Field: "account_id"},
		{Name: "contact", Field: "contact_id"},
		{Name: "stage", Extract: pipelineStage},
		{Name: "expected_close", Field: "expected_close"},
		{Name: "stage_due", Extract: sortableTime("stage_due_at")},
	}},
	checkDeal, nil)

func init() {
	dealKind.checkUpdate = func(cur, next *Deal, p *problems) {
		if cur.Pipeline != next.Pipeline || cur.Stage != next.Stage ||
			!cur.StageEnteredAt.Equal(next.StageEnteredAt) || !cur.StageDueAt.Equal(next.StageDueAt) {
			p.add("stage", "change a deal's stage with Deals.Move, which checks the pipeline and keeps the history")
		}
	}
}

func checkDeal(ctx context.Context, tx storage.ReadTx, d *Deal, p *problems) error {
	checkText(p, "title", &d.Title)
	if d.Title == "" {
		p.add("title", "is required")
	}
	checkMoney(p, "amount", d.Amount, false)
	checkDate(p, "expected_close", &d.ExpectedClose)
	checkText(p, "pipeline", &d.Pipeline)
	checkText(p, "stage", &d.Stage)
	if err := checkStage(ctx, tx, p, d); err != nil {
		return err
	}
	if err := checkRef(ctx, tx, p, "account_id", accountsCollection, "account", &d.AccountID); err != nil {
		return err
	}
	if err := checkRef(ctx, tx, p, "contact_id", contactsCollection, "contact", &d.ContactID); err != nil {
		return err
	}
	return checkRef(ctx, tx, p, "lead_id", leadsCollection, "lead", &d.LeadID)
}

// checkStage validates a deal's pipeline and stage against the tenant's
// stored definition; a deal given only a pipeline starts in its first
// stage.
func checkStage(ctx context.Context, tx storage.ReadTx, p *problems, d *Deal) error {
	switch {
	case d.Pipeline == "" && d.Stage == "":
		return nil
	case d.Pipeline == "":
		p.add("pipeline", "a deal with a stage needs a pipeline")
		return nil
	}
	rec, err := tx.Get(ctx, pipelinesCollection, d.Pipeline)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalid) {
		p.add("pipeline", "no pipeline %q in this tenant", d.Pipeline)
		return nil
	}
	if err != nil {
		return err
	}
	var def pipeline.Definition
	if err := json.Unmarshal(rec.Body, &def); err != nil {
		return fmt.Errorf("pipeline %s: %w", d.Pipeline, err)
	}
	if d.Stage == "" && len(def.Stages) > 0 {
		d.Stage = def.Stages[0].Key
	}
	i := slices.IndexFunc(def.Stages, func(s pipeline.Stage) bool { return s.Key == d.Stage })
	if i < 0 {
		p.add("stage", "pipeline %s has no stage %q", d.Pipeline, d.Stage)
		return nil
	}
	if d.StageEnteredAt.IsZero() {
		d.StageEnteredAt = d.UpdatedAt
	}
	d.StageDueAt = time.Time{}
	if st := def.Stages[i]; st.Terminal == pipeline.Open {
		holidays := map[string]bool{}
		for _, h := range def.Holidays {
			holidays[h] = true
		}
		if due, ok := st.Norm.Deadline(d.StageEnteredAt, holidays); ok {
			d.StageDueAt = due.UTC()
		}
	}
	return nil
}

// sortableTimeLayout formats UTC times so that they sort as strings.
const sortableTimeLayout = "2006-01-02T15:04:05.000000000Z"

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
