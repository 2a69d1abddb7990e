package analytics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

// outcomes tells whether a deal is won, caching pipeline definitions.
type outcomes struct {
	r    *Reports
	defs map[string]*pipeline.Definition
}

func (o *outcomes) won(ctx context.Context, d *crm.Deal) (bool, error) {
	if d.Pipeline == "" {
		return false, nil
	}
	def, ok := o.defs[d.Pipeline]
	if !ok {
		var err error
		def, err = o.r.t.Pipelines().Get(ctx, d.Pipeline)
		if err != nil && !errors.Is(err, crm.ErrNotFound) {
			return false, err
		}
		o.defs[d.Pipeline] = def
	}
	if def == nil {
		return false, nil
	}
	for _, st := range def.Stages {
		if st.Key == d.Stage {
			return st.Terminal == pipeline.Won, nil
		}
	}
	return false, nil
}

// wonDeal returns the deal a lead was converted into (its DealID) if it
// is won now. It reads the store: never call it inside a record visit.
func (o *outcomes) wonDeal(ctx context.Context, dealID string) (*crm.Deal, error) {
	if dealID == "" {
		return nil, nil
	}
	d, err := o.r.t.Deals().Get(ctx, dealID)
	if errors.Is(err, crm.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	won, err := o.won(ctx, &d)
	if err != nil || !won {
		return nil, err
	}
	return &d, nil
}

// LeadsQuery selects the leads of a lead report.
type LeadsQuery struct {
	// Period selects the leads by when they were registered (created).
	Period Period
	// Slice keeps the leads of some owners, sources, campaigns and
	// accounts' industries; it takes no Product.
	Slice Slice
	// Currency is the currency of expected amounts, as for LostQuery;
	// leads with amounts in other currencies count but add no amount.
	Currency string
}

// Leads reports the leads registered in a period: where they came from,
// what they may be worth, and how many became customers.
type Leads struct {
	Period   Period
	Currency string
	// Total covers every lead of the period.
	Total LeadGroup
	// BySource and ByCampaign split Total by Lead.Source and by campaign
	// ID, in key order ("" for leads without one).
	BySource, ByCampaign []LeadGroup
	// ByStatus is the conversion rate at each lead status, for the leads
	// of the period in each lead pipeline, in the pipeline's stage order.
	ByStatus []LeadStatus
	// Accounts is the number of accounts the tenant has now (archived
	// ones left out).
	Accounts int
}

// LeadGroup is one group of leads.
type LeadGroup struct {
	// Key is the source or campaign ID ("" in Total).
	Key string
	// Name is the campaign's name in ByCampaign.
	Name  string
	Leads int
	// Converted counts the leads converted (Leads.Convert) by now; Won
	// those whose deal is now in a won stage. ConversionRate is
	// Converted / Leads, WinRate Won / Leads.
	Converted, Won          int
	ConversionRate, WinRate float64
	// Expected sums the leads' expected amounts; Average is Expected over
	// the leads that have one, rounded half away from zero (0 without).
	Expected, Average int64
}

// LeadStatus is the conversion rate at one lead status.
type LeadStatus struct {
	Pipeline, Stage string
	// Reached counts the period's leads that were at this status at some
	// time (the stage history); Converted counts those of them converted
	// by now; Rate is Converted / Reached: how likely a lead that reaches
	// the status is to become a customer.
	Reached, Converted int
	Rate               float64
}

// Leads computes the lead report.
func (r *Reports) Leads(ctx context.Context, q LeadsQuery) (*Leads, error) {
	if err := q.Period.validate(); err != nil {
		return nil, err
	}
	pick, err := newCurrencyPick(q.Currency, "LeadsQuery.Currency")
	if err != nil {
		return nil, err
	}
	sl, err := r.slicer(ctx, q.Slice, "leads", dimOwner|dimIndustry|dimSource|dimCampaign)
	if err != nil {
		return nil, err
	}
	type acc struct {
		g      LeadGroup
		priced int
	}
	total := &acc{}
	sources, campaigns := map[string]*acc{}, map[string]*acc{}
	converted := map[string]bool{} // the period's leads, converted or not
	pipelines := map[string]bool{}
	oc := &outcomes{r: r, defs: map[string]*pipeline.Definition{}}
	// Converted leads' deals are looked up after the visit: a read inside
	// it could wait on a writer that waits for the visit to end.
	type pending struct {
		dealID string
		groups [3]*acc
	}
	var deals []pending
	err = r.t.Leads().Each(ctx, crm.EachOptions{Archived: crm.ArchivedIncluded}, func(l *crm.Lead) error {
		if !q.Period.Contains(l.CreatedAt) || !sl.owner(l.Owner) || !sl.lead(l) {
			return nil
		}
		conv := !l.ConvertedAt.IsZero()
		converted[l.ID] = conv
		if l.Pipeline != "" {
			pipelines[l.Pipeline] = true
		}
		amount, err := pick.keep(l.ExpectedAmount)
		if err != nil {
			return err
		}
		groups := [3]*acc{total, group(sources, l.Source), group(campaigns, l.CampaignID)}
		if l.DealID != "" {
			deals = append(deals, pending{l.DealID, groups})
		}
		for _, a := range groups {
			a.g.Leads++
			if conv {
				a.g.Converted++
			}
			if amount {
				a.priced++
				if err := addMoney(&a.g.Expected, l.ExpectedAmount.Amount, "expected amounts"); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, p := range deals {
		won, err := oc.wonDeal(ctx, p.dealID)
		if err != nil {
			return nil, err
		}
		if won != nil {
			for _, a := range p.groups {
				a.g.Won++
			}
		}
	}
	finish := func(a *acc) LeadGroup {
		g := a.g
		g.ConversionRate, g.WinRate = ratio(g.Converted, g.Leads), ratio(g.Won, g.Leads)
		if a.priced > 0 {
			g.Average = roundMinor(float64(g.Expected) / float64(a.priced))
		}
		return g
	}
	out := &Leads{Period: q.Period, Currency: pick.currency, Total: finish(total)}
	for _, k := range sortedKeys(sources) {
		g := finish(sources[k])
		g.Key = k
		out.BySource = append(out.BySource, g)
	}
	for _, k := range sortedKeys(campaigns) {
		g := finish(campaigns[k])
		g.Key = k
		if k != "" {
			c, err := r.t.Campaigns().Get(ctx, k)
			if err != nil && !errors.Is(err, crm.ErrNotFound) {
				return nil, err
			}
			g.Name = c.Name
		}
		out.ByCampaign = append(out.ByCampaign, g)
	}
	for _, name := range sortedKeys(pipelines) {
		def, recs, err := r.pipelineOf(ctx, name)
		if err != nil {
			if errors.Is(err, ErrInvalid) {
				continue // deleted since
			}
			return nil, err
		}
		reached := map[string]map[string]bool{}
		err = recs.ScanMoves(ctx, crm.MovesQuery{Pipeline: name}, func(m *crm.StageMove) error {
			if _, ours := converted[m.RecordID]; !ours || m.To == "" {
				return nil
			}
			if reached[m.To] == nil {
				reached[m.To] = map[string]bool{}
			}
			reached[m.To][m.RecordID] = true
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, st := range def.Stages {
			s := LeadStatus{Pipeline: name, Stage: st.Key, Reached: len(reached[st.Key])}
			for id := range reached[st.Key] {
				if converted[id] {
					s.Converted++
				}
			}
			s.Rate = ratio(s.Converted, s.Reached)
			out.ByStatus = append(out.ByStatus, s)
		}
	}
	err = r.t.Accounts().Each(ctx, crm.EachOptions{}, func(*crm.Account) error {
		out.Accounts++
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// group returns the accumulator of key in m, adding it when missing.
func group[V any](m map[string]*V, key string) *V {
	v := m[key]
	if v == nil {
		v = new(V)
		m[key] = v
	}
	return v
}

// CampaignsQuery selects the campaigns of a campaign report.
type CampaignsQuery struct {
	// Period keeps the campaigns that start (StartsOn, in the engine's
	// time zone) in it; campaigns without a start date are kept only when
	// the period is open at both ends.
	Period Period
	// Slice keeps the campaigns of some owners, or one campaign; it takes
	// no Industry, Source or Product.
	Slice Slice
	// Currency is the currency of costs and revenue, as for LostQuery.
	Currency string
}

// Campaigns reports how well campaigns paid off.
type Campaigns struct {
	Period   Period
	Currency string
	// Campaigns are in start date order, then by ID.
	Campaigns []CampaignRow
	// Total sums the campaigns' counts and money; its ratios are computed
	// from the sums (so Total.CostPerLead is the average cost of a lead,
	// and Total.CostPerWon that of a lead converted into a won deal).
	Total CampaignRow
}

// CampaignRow is one campaign's effectiveness. Money is in minor units.
type CampaignRow struct {
	ID, Name, Channel, StartsOn string
	// Responses counts the campaign's leads (all time); Target is its
	// TargetResponses and ResponseRate Responses / Target (0 without a
	// target).
	Responses, Target int
	ResponseRate      float64
	// Converted counts the leads converted; Won those whose deal is now
	// in a won stage.
	Converted, Won int
	// Budget and Cost are the campaign's; BudgetUsed is Cost / Budget.
	Budget, Cost int64
	BudgetUsed   float64
	// CostPerLead is Cost / Responses and CostPerWon Cost / Won, rounded
	// half away from zero (0 when dividing by 0).
	CostPerLead, CostPerWon int64
	// Revenue is what the campaign brought: the amounts of the won deals
	// of its leads plus the net totals of the orders that name it.
	Revenue int64
	// ROI is (Revenue − Cost) / Cost (0 without a cost).
	ROI float64
}

// Campaigns computes the campaign report.
func (r *Reports) Campaigns(ctx context.Context, q CampaignsQuery) (*Campaigns, error) {
	if err := q.Period.validate(); err != nil {
		return nil, err
	}
	pick, err := newCurrencyPick(q.Currency, "CampaignsQuery.Currency")
	if err != nil {
		return nil, err
	}
	loc := r.t.Location()
	var camps []crm.Campaign
	err = r.t.Campaigns().Each(ctx, crm.EachOptions{By: "starts_on", Archived: crm.ArchivedIncluded}, func(c *crm.Campaign) error {
		camps = append(camps, *c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Campaigns without a start date are not in the starts_on index.
	if q.Period.From.IsZero() && q.Period.To.IsZero() {
		err = r.t.Campaigns().Each(ctx, crm.EachOptions{Archived: crm.ArchivedIncluded}, func(c *crm.Campaign) error {
			if c.StartsOn == "" {
				camps = append(camps, *c)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	money := func(m crm.Money) (int64, error) {
		ok, err := pick.keep(m)
		if err != nil || !ok {
			return 0, err
		}
		return m.Amount, nil
	}
	oc := &outcomes{r: r, defs: map[string]*pipeline.Definition{}}
	out := &Campaigns{Period: q.Period}
	tot := &out.Total
	sl, err := r.slicer(ctx, q.Slice, "campaigns", dimOwner|dimCampaign)
	if err != nil {
		return nil, err
	}
	for _, c := range camps {
		if !sl.owner(c.Owner) || (q.Slice.Campaign != "" && c.ID != q.Slice.Campaign) {
			continue
		}
		if c.StartsOn != "" {
			start, err := time.ParseInLocation(time.DateOnly, c.StartsOn, loc)
			if err != nil {
				return nil, fmt.Errorf("analytics: campaign %s: %w", c.ID, err)
			}
			if !q.Period.Contains(start) {
				continue
			}
		}
		row := CampaignRow{ID: c.ID, Name: c.Name, Channel: c.Channel, StartsOn: c.StartsOn, Target: c.TargetResponses}
		if row.Budget, err = money(c.Budget); err != nil {
			return nil, err
		}
		if row.Cost, err = money(c.Cost); err != nil {
			return nil, err
		}
		var dealIDs []string // looked up after the visit, as in Leads
		err := r.t.Leads().Each(ctx, crm.EachOptions{By: "campaign", Value: c.ID, Archived: crm.ArchivedIncluded}, func(l *crm.Lead) error {
			row.Responses++
			if !l.ConvertedAt.IsZero() {
				row.Converted++
			}
			if l.DealID != "" {
				dealIDs = append(dealIDs, l.DealID)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, id := range dealIDs {
			d, err := oc.wonDeal(ctx, id)
			if err != nil {
				return nil, err
			}
			if d == nil {
				continue
			}
			row.Won++
			v, err := money(d.Amount)
			if err != nil {
				return nil, err
			}
			if err := addMoney(&row.Revenue, v, "campaign revenue"); err != nil {
				return nil, err
			}
		}
		err = r.t.Orders().Each(ctx, crm.EachOptions{By: "campaign", Value: c.ID, Archived: crm.ArchivedIncluded}, func(o *crm.Order) error {
			v, err := money(o.Total)
			if err != nil {
				return err
			}
			return addMoney(&row.Revenue, v, "campaign revenue")
		})
		if err != nil {
			return nil, err
		}
		row.finish()
		out.Campaigns = append(out.Campaigns, row)
		tot.Responses += row.Responses
		tot.Target += row.Target
		tot.Converted += row.Converted
		tot.Won += row.Won
		for _, f := range [][2]*int64{{&tot.Budget, &row.Budget}, {&tot.Cost, &row.Cost}, {&tot.Revenue, &row.Revenue}} {
			if err := addMoney(f[0], *f[1], "campaign totals"); err != nil {
				return nil, err
			}
		}
	}
	tot.finish()
	out.Currency = pick.currency
	return out, nil
}

func (c *CampaignRow) finish() {
	c.ResponseRate = ratio(c.Responses, c.Target)
	if c.Budget != 0 {
		c.BudgetUsed = float64(c.Cost) / float64(c.Budget)
	}
	if c.Responses > 0 {
		c.CostPerLead = roundMinor(float64(c.Cost) / float64(c.Responses))
	}
	if c.Won > 0 {
		c.CostPerWon = roundMinor(float64(c.Cost) / float64(c.Won))
	}
	if c.Cost != 0 {
		c.ROI = float64(c.Revenue-c.Cost) / float64(c.Cost)
	}
}
