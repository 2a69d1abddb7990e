package crm

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/rapportcrm/rapport/storage"
)

// CampaignStatus is where a campaign is in its life.
type CampaignStatus string

// Campaign statuses.
const (
	CampaignPlanned   CampaignStatus = "planned"
	CampaignActive    CampaignStatus = "active"
	CampaignCompleted CampaignStatus = "completed"
	CampaignCancelled CampaignStatus = "cancelled"
)

// Campaign is a marketing action: leads and orders name it
// (CampaignID) so that its response, cost per lead and return can be
// measured.
//
// Indexes for ListOptions.By: "channel", "status", "starts_on".
//
// Events: campaign.created, campaign.updated, campaign.deleted.
type Campaign struct {
	Meta
	// Name is required.
	Name    string `json:"name"`
	Channel string `json:"channel,omitempty"`
	// Budget is what may be spent; Cost what was spent. Both in the same
	// currency when both are set.
	Budget Money `json:"budget,omitzero"`
	Cost   Money `json:"cost,omitzero"`
	// TargetResponses is how many responses (leads) the campaign should
	// bring.
	TargetResponses int `json:"target_responses,omitempty"`
	// StartsOn and EndsOn are dates (YYYY-MM-DD).
	StartsOn string `json:"starts_on,omitempty"`
	EndsOn   string `json:"ends_on,omitempty"`
	// Status defaults to planned.
	Status CampaignStatus `json:"status,omitempty"`
}

const campaignsCollection = "campaigns"

var campaignKind = newKind[Campaign]("campaign",
	storage.Collection{Name: campaignsCollection, Indexes: []storage.Index{
		{Name: "channel", Field: "channel"},
		{Name: "status", Field: "status"},
		{Name: "starts_on", Field: "starts_on"},
	}},
	func(_ context.Context, _ storage.ReadTx, c, _ *Campaign, p *problems) error {
		checkText(p, "name", &c.Name)
		if c.Name == "" {
			p.add("name", "is required")
		}
		checkText(p, "channel", &c.Channel)
		checkMoney(p, "budget", c.Budget, false)
		checkMoney(p, "cost", c.Cost, false)
		if c.Budget.Currency != "" && c.Cost.Currency != "" && c.Budget.Currency != c.Cost.Currency {
			p.add("cost", "currency %s differs from the budget's %s", c.Cost.Currency, c.Budget.Currency)
		}
		if c.TargetResponses < 0 {
			p.add("target_responses", "%d is negative", c.TargetResponses)
		}
		checkPeriod(p, "starts_on", "ends_on", &c.StartsOn, &c.EndsOn, false)
		switch c.Status {
		case "":
			c.Status = CampaignPlanned
		case CampaignPlanned, CampaignActive, CampaignCompleted, CampaignCancelled:
		default:
			p.add("status", "%q: want planned, active, completed or cancelled", c.Status)
		}
		return nil
	}, func(ctx context.Context, tx storage.ReadTx, id string) error {
		return referencedBy(ctx, tx, "campaign", id, []string{leadsCollection, ordersCollection}, "campaign")
	})

// Campaigns returns the tenant's campaigns.
func (t *Tenant) Campaigns() *Records[Campaign] { return &Records[Campaign]{t: t, k: campaignKind} }

// SurveyItem is one scored question of a survey response.
type SurveyItem struct {
	// Key names the question, for example "delivery" or "support".
	Key string `json:"key"`
	// Score is the satisfaction score, 0-10.
	Score int `json:"score"`
	// Importance weighs the item in the satisfaction index, 1-10
	// (default 1).
	Importance int `json:"importance,omitempty"`
}

// SurveyResponse is one customer's answers to a survey: the NPS question
// (0-10, how likely to recommend) and scored items for the satisfaction
// (CSI) and dissatisfaction (CDI) indices.
//
// Indexes for ListOptions.By: "contact", "survey", "answered_at".
//
// Events: survey.received, survey.updated, survey.deleted.
type SurveyResponse struct {
	Meta
	// Survey names the survey; required.
	Survey    string `json:"survey"`
	ContactID string `json:"contact_id,omitempty"`
	// AnsweredAt defaults to the time of creation.
	AnsweredAt time.Time `json:"answered_at,omitzero"`
	// NPS is the 0-10 answer to "how likely are you to recommend us";
	// nil when not asked.
	NPS   *int         `json:"nps,omitempty"`
	Items []SurveyItem `json:"items,omitempty"`
	// Comment is free text.
	Comment string `json:"comment,omitempty"`
}

const surveysCollection = "survey_responses"

var surveyKind = eventsAs(newKind[SurveyResponse]("survey_response",
	storage.Collection{Name: surveysCollection, Indexes: []storage.Index{
		{Name: "contact", Field: "contact_id"},
		{Name: "survey", Field: "survey"},
		{Name: "answered_at", Extract: sortableTime("answered_at")},
	}},
	func(ctx context.Context, tx storage.ReadTx, s, prev *SurveyResponse, p *problems) error {
		var was SurveyResponse
		if prev != nil {
			was = *prev
		}
		checkText(p, "survey", &s.Survey)
		if s.Survey == "" {
			p.add("survey", "is required")
		}
		if s.AnsweredAt.IsZero() {
			s.AnsweredAt = s.CreatedAt
		}
		s.AnsweredAt = s.AnsweredAt.UTC()
		checkTime(p, "answered_at", s.AnsweredAt)
		if s.NPS != nil && (*s.NPS < 0 || *s.NPS > 10) {
			p.add("nps", "%d is outside 0-10", *s.NPS)
		}
		var keys []string
		for i := range s.Items {
			it := &s.Items[i]
			f := fmt.Sprintf("items[%d]", i)
			checkText(p, f+".key", &it.Key)
			switch {
			case it.Key == "":
				p.add(f+".key", "is required")
			case slices.Contains(keys, it.Key):
				p.add(f+".key", "%q is answered twice", it.Key)
			}
			keys = append(keys, it.Key)
			if it.Score < 0 || it.Score > 10 {
				p.add(f+".score", "%d is outside 0-10", it.Score)
			}
			if it.Importance == 0 {
				it.Importance = 1
			}
			if it.Importance < 1 || it.Importance > 10 {
				p.add(f+".importance", "%d is outside 1-10", it.Importance)
			}
		}
		if s.NPS == nil && len(s.Items) == 0 {
			p.add("nps", "a response needs an NPS answer or scored items")
		}
		checkLongText(p, "comment", s.Comment)
		return checkRef(ctx, tx, p, "contact_id", contactsCollection, "contact", &s.ContactID, was.ContactID)
	}, nil), "survey", "received")

// SurveyResponses returns the tenant's survey responses.
func (t *Tenant) SurveyResponses() *Records[SurveyResponse] {
	return &Records[SurveyResponse]{t: t, k: surveyKind}
}

// Price is one product's price in a price list.
type Price struct {
	SKU       string `json:"sku"`
	UnitPrice Money  `json:"unit_price"`
}

// PriceList holds prices per product in one currency, valid over a
// period.
//
// Indexes for ListOptions.By: "currency", "valid_from".
//
// Events: price_list.created, price_list.updated, price_list.deleted.
type PriceList struct {
	Meta
	Name     string `json:"name"`
	Currency string `json:"currency"`
	// ValidFrom and ValidTo are dates (YYYY-MM-DD), both included; an
	// empty ValidTo means open-ended.
	ValidFrom string  `json:"valid_from"`
	ValidTo   string  `json:"valid_to,omitempty"`
	Prices    []Price `json:"prices"`
}

const priceListsCollection = "price_lists"

var priceListKind = newKind[PriceList]("price_list",
	storage.Collection{Name: priceListsCollection, Indexes: []storage.Index{
		{Name: "currency", Field: "currency"},
		{Name: "valid_from", Field: "valid_from"},
	}},
	func(_ context.Context, _ storage.ReadTx, l, _ *PriceList, p *problems) error {
		checkText(p, "name", &l.Name)
		if l.Name == "" {
			p.add("name", "is required")
		}
		if _, err := CurrencyScale(l.Currency); err != nil {
			p.add("currency", "%q is not an ISO 4217 currency code", l.Currency)
		}
		checkPeriod(p, "valid_from", "valid_to", &l.ValidFrom, &l.ValidTo, false)
		if l.ValidFrom == "" {
			p.add("valid_from", "is required")
		}
		var skus []string
		for i := range l.Prices {
			pr := &l.Prices[i]
			f := fmt.Sprintf("prices[%d]", i)
			checkText(p, f+".sku", &pr.SKU)
			switch {
			case pr.SKU == "":
				p.add(f+".sku", "is required")
			case slices.Contains(skus, pr.SKU):
				p.add(f+".sku", "%q is priced twice", pr.SKU)
			}
			skus = append(skus, pr.SKU)
			if pr.UnitPrice.Currency == "" {
				pr.UnitPrice.Currency = l.Currency
			}
			if pr.UnitPrice.Currency != l.Currency {
				p.add(f+".unit_price", "currency %s differs from the list's %s", pr.UnitPrice.Currency, l.Currency)
			}
			if pr.UnitPrice.Amount < 0 {
				p.add(f+".unit_price", "%d is negative", pr.UnitPrice.Amount)
			}
		}
		return nil
	}, nil)

// PriceLists are the tenant's price lists, with price lookup.
type PriceLists struct{ *Records[PriceList] }

// PriceLists returns the tenant's price lists.
func (t *Tenant) PriceLists() *PriceLists {
	return &PriceLists{&Records[PriceList]{t: t, k: priceListKind}}
}

// PriceOf returns the price of a product in a currency on a day
// (YYYY-MM-DD): from the valid list with the latest ValidFrom that prices
// it. ErrNotFound if none does.
func (pl *PriceLists) PriceOf(ctx context.Context, sku, currency, day string) (Money, error) {
	if _, err := time.Parse(time.DateOnly, day); err != nil {
		return Money{}, fmt.Errorf("crm: price of %s: %w: %q is not a date", sku, ErrInvalid, day)
	}
	var best *Price
	bestFrom := ""
	err := pl.view(ctx, func(tx storage.ReadTx) error {
		q := storage.Query{Index: "currency", Equal: currency}
		return scanAll(ctx, tx, priceListsCollection, q, func(rec storage.Record) error {
			l, err := pl.decode(rec)
			if err != nil {
				return err
			}
			if l.ValidFrom > day || (l.ValidTo != "" && l.ValidTo < day) || l.ValidFrom < bestFrom || !l.ArchivedAt.IsZero() {
				return nil
			}
			if i := slices.IndexFunc(l.Prices, func(p Price) bool { return p.SKU == sku }); i >= 0 {
				best, bestFrom = &l.Prices[i], l.ValidFrom
			}
			return nil
		})
	})
	if err != nil {
		return Money{}, err
	}
	if best == nil {
		return Money{}, fmt.Errorf("crm: %w: no %s price for %s on %s", ErrNotFound, currency, sku, day)
	}
	return best.UnitPrice, nil
}
