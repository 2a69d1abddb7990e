package crm

import (
	"context"
	"time"

	"github.com/tidwall/gjson"

	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage"
)

// Lead is a prospective customer not yet qualified: a web-form submission,
// a trade-show card, an inbound call.
//
// A lead's status is its stage in a pipeline of kind "lead" (the built-in
// "lead" pipeline: registered → qualified → nurturing → converted |
// disqualified); see Staged.
//
// Indexes for ListOptions.By: "email", "owner", "tag", "stage" (values
// "<pipeline>/<stage>"), "source", "campaign".
//
// Events: lead.created, lead.updated, lead.deleted, lead.stage_changed,
// lead.converted, sla.breached. A lead that contacts or deals were
// converted from cannot be deleted (ErrInUse).
type Lead struct {
	Meta
	FirstName string `json:"first_name,omitempty"`
	LastName  string `json:"last_name,omitempty"`
	// Email is stored trimmed and in lower case. Unlike a contact's, it
	// need not be unique: the same person may come in twice.
	Email   string `json:"email,omitempty"`
	Phone   string `json:"phone,omitempty"`
	Company string `json:"company,omitempty"`
	// Source says where the lead came from, for example "web-form".
	Source string `json:"source,omitempty"`
	// CampaignID names the campaign that brought the lead.
	CampaignID string `json:"campaign_id,omitempty"`
	// ExpectedAmount is what the lead may be worth.
	ExpectedAmount Money `json:"expected_amount,omitzero"`
	// Pipeline, Stage, StageEnteredAt and StageDueAt place the lead in a
	// lead pipeline, as for deals.
	Pipeline       string    `json:"pipeline,omitempty"`
	Stage          string    `json:"stage,omitempty"`
	StageEnteredAt time.Time `json:"stage_entered_at,omitzero"`
	StageDueAt     time.Time `json:"stage_due_at,omitzero"`
	// ConvertedAt, ContactID, AccountID and DealID are set by
	// Leads.Convert: when, and into what, the lead was converted.
	ConvertedAt time.Time `json:"converted_at,omitzero"`
	ContactID   string    `json:"contact_id,omitempty"`
	AccountID   string    `json:"account_id,omitempty"`
	DealID      string    `json:"deal_id,omitempty"`
}

func (l *Lead) stageRef() stageRef {
	return stageRef{&l.Pipeline, &l.Stage, &l.StageEnteredAt, &l.StageDueAt}
}

const leadsCollection = "leads"

var leadSearch = searchTerms([]string{"first_name", "last_name", "company"}, []string{"email"}, []string{"phone"})

var leadKind = func() *kind[Lead] {
	k := newStagedKind[Lead]("lead",
		storage.Collection{Name: leadsCollection, Indexes: []storage.Index{
			{Name: "email", Field: "email"},
			{Name: "owner", Field: "owner"},
			{Name: "tag", Field: "tags"},
			{Name: "source", Field: "source"},
			{Name: "campaign", Field: "campaign_id"},
			{Name: "contact", Field: "contact_id"},
			{Name: "account", Field: "account_id"},
		}},
		checkLead, func(ctx context.Context, tx storage.ReadTx, id string) error {
			return referencedBy(ctx, tx, "lead", id, []string{contactsCollection, dealsCollection}, "lead")
		}, &staging[Lead]{kind: pipeline.KindLead, ref: (*Lead).stageRef})
	k.search = leadSearch
	k.phones = func(l *Lead) map[string]*string { return map[string]*string{"phone": &l.Phone} }
	stage := k.checkUpdate
	k.checkUpdate = func(cur, next *Lead, p *problems) {
		stage(cur, next, p)
		checkLeadUpdate(cur, next, p)
	}
	return k
}()

func checkLead(ctx context.Context, tx storage.ReadTx, l, prev *Lead, p *problems) error {
	var was Lead
	if prev != nil {
		was = *prev
	}
	if prev == nil && (!l.ConvertedAt.IsZero() || l.ContactID != "" || l.AccountID != "" || l.DealID != "") {
		p.add("converted_at", "conversion fields are set by Leads.Convert")
	}
	checkText(p, "first_name", &l.FirstName)
	checkText(p, "last_name", &l.LastName)
	checkText(p, "company", &l.Company)
	checkText(p, "source", &l.Source)
	checkEmail(p, "email", &l.Email)
	checkPhone(p, "phone", &l.Phone)
	checkMoney(p, "expected_amount", l.ExpectedAmount, false)
	if l.FirstName == "" && l.LastName == "" && l.Email == "" && l.Phone == "" && l.Company == "" {
		p.add("name", "a lead needs a name, an email, a phone or a company")
	}
	return checkRef(ctx, tx, p, "campaign_id", campaignsCollection, "campaign", &l.CampaignID, was.CampaignID)
}

func gjsonString(body []byte, path string) string { return gjson.GetBytes(body, path).String() }
