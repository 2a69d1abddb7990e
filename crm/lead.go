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
// sla.breached.
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
}

func (l *Lead) stageRef() stageRef {
	return stageRef{&l.Pipeline, &l.Stage, &l.StageEnteredAt, &l.StageDueAt}
}

const leadsCollection = "leads"

var leadKind = newStagedKind[Lead]("lead",
	storage.Collection{Name: leadsCollection, Indexes: []storage.Index{
		{Name: "email", Field: "email"},
		{Name: "owner", Field: "owner"},
		{Name: "tag", Field: "tags"},
		{Name: "source", Field: "source"},
		{Name: "campaign", Field: "campaign_id"},
	}},
	checkLead, nil, &staging[Lead]{kind: pipeline.KindLead, ref: (*Lead).stageRef})

func checkLead(_ context.Context, _ storage.ReadTx, l, _ *Lead, p *problems) error {
	checkText(p, "first_name", &l.FirstName)
	checkText(p, "last_name", &l.LastName)
	checkText(p, "company", &l.Company)
	checkText(p, "source", &l.Source)
	checkText(p, "campaign_id", &l.CampaignID)
	checkEmail(p, "email", &l.Email)
	checkPhone(p, "phone", &l.Phone)
	checkMoney(p, "expected_amount", l.ExpectedAmount, false)
	if l.FirstName == "" && l.LastName == "" && l.Email == "" && l.Phone == "" && l.Company == "" {
		p.add("name", "a lead needs a name, an email, a phone or a company")
	}
	return nil
}

func gjsonString(body []byte, path string) string { return gjson.GetBytes(body, path).String() }
