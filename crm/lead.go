package crm

import (
	"context"

	"github.com/tidwall/gjson"

	"github.com/rapportcrm/rapport/storage"
)

// Lead is a prospective customer not yet qualified: a web-form submission,
// a trade-show card, an inbound call.
//
// Indexes for ListOptions.By: "email", "owner", "tag", "status", "source",
// "campaign".
//
// Events: lead.created, lead.updated, lead.deleted.
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
	// Status is the lead's stage; new leads start as "registered".
	Status string `json:"status,omitempty"`
}

const leadsCollection = "leads"

var leadKind = newKind[Lead]("lead",
	storage.Collection{Name: leadsCollection, Indexes: []storage.Index{
		{Name: "email", Field: "email"},
		{Name: "owner", Field: "owner"},
		{Name: "tag", Field: "tags"},
		{Name: "status", Field: "status"},
		{Name: "source", Field: "source"},
		{Name: "campaign", Field: "campaign_id"},
	}},
	checkLead, nil)

func checkLead(_ context.Context, _ storage.ReadTx, l *Lead, p *problems) error {
	checkText(p, "first_name", &l.FirstName)
	checkText(p, "last_name", &l.LastName)
	checkText(p, "company", &l.Company)
	checkText(p, "source", &l.Source)
	checkText(p, "campaign_id", &l.CampaignID)
	checkText(p, "status", &l.Status)
	checkEmail(p, "email", &l.Email)
	checkPhone(p, "phone", &l.Phone)
	checkMoney(p, "expected_amount", l.ExpectedAmount, false)
	if l.FirstName == "" && l.LastName == "" && l.Email == "" && l.Phone == "" && l.Company == "" {
		p.add("name", "a lead needs a name, an email, a phone or a company")
	}
	if l.Status == "" {
		l.Status = "registered"
	}
	return nil
}

func gjsonString(body []byte, path string) string { return gjson.GetBytes(body, path).String() }
