package analytics_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/analytics"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

// marketingHistory plays campaigns and their leads (EUR cents):
//
//	campaign       starts      budget  cost   target
//	C1 Spring mail 2024-03-01  100000  60000  4
//	C2 Fair        2024-04-10   50000  90000  2
//	C3 Evergreen   -           -       -      -
//
//	lead source campaign expected history
//	L5   web    C3       99900    Feb 20 registered
//	L1   web    C1       50000    Mar 2 registered; Mar 3 qualified; Mar 4 converted, its deal won Mar 5
//	L2   web    C1       20000    Mar 2 registered; Mar 3 qualified; Mar 6 converted (deal open)
//	L3   fair   C2       -        Mar 10 registered; Mar 11 disqualified
//	L4   -      C1       10000    Mar 12 registered
//
// and orders naming C1 (150.00) and C2 (80.00). Conversions create the
// accounts Acme and Beta.
func marketingHistory(t *testing.T) (*crm.Engine, map[string]string) {
	t.Helper()
	ctx := context.Background()
	e, c := open(t, day(time.February, 1))
	savePipeline(t, e, salesPipeline)
	def, err := pipeline.Builtin("lead")
	require.NoError(t, err)
	require.NoError(t, e.Pipelines().Save(ctx, def))
	ten := e.Default()
	ids := map[string]string{}
	for _, cp := range []crm.Campaign{
		{Meta: crm.Meta{ID: "C1"}, Name: "Spring mail", Channel: "email", StartsOn: "2024-03-01", TargetResponses: 4,
			Budget: crm.Money{Amount: 100000, Currency: "EUR"}, Cost: crm.Money{Amount: 60000, Currency: "EUR"}},
		{Meta: crm.Meta{ID: "C2"}, Name: "Fair", StartsOn: "2024-04-10", TargetResponses: 2,
			Budget: crm.Money{Amount: 50000, Currency: "EUR"}, Cost: crm.Money{Amount: 90000, Currency: "EUR"}},
		{Meta: crm.Meta{ID: "C3"}, Name: "Evergreen"},
	} {
		_, err := ten.Campaigns().Create(ctx, cp)
		require.NoError(t, err)
	}
	lead := func(name, source, campaign string, cents int64, company string) {
		l := crm.Lead{FirstName: name, Email: name + "@example.com", Source: source, CampaignID: campaign, Company: company, Pipeline: "lead"}
		if cents > 0 {
			l.ExpectedAmount = crm.Money{Amount: cents, Currency: "EUR"}
		}
		l, err := e.Leads().Create(ctx, l)
		require.NoError(t, err)
		ids[name] = l.ID
	}
	move := func(name, to string) {
		_, err := e.Leads().Move(ctx, ids[name], to, crm.MoveOptions{})
		require.NoError(t, err, "%s → %s", name, to)
	}
	convert := func(name string) string {
		conv, err := e.Leads().Convert(ctx, ids[name], crm.ConvertOptions{Deal: crm.Deal{Pipeline: "sales"}})
		require.NoError(t, err)
		return conv.Deal.ID
	}
	c.set(day(time.February, 20))
	lead("L5", "web", "C3", 99900, "")
	c.set(day(time.March, 2))
	lead("L1", "web", "C1", 50000, "Acme")
	lead("L2", "web", "C1", 20000, "Beta")
	c.set(day(time.March, 3))
	move("L1", "qualified")
	move("L2", "qualified")
	c.set(day(time.March, 4))
	d1 := convert("L1")
	c.set(day(time.March, 5))
	_, err = e.Deals().Move(ctx, d1, "won", crm.MoveOptions{})
	require.NoError(t, err)
	c.set(day(time.March, 6))
	convert("L2")
	c.set(day(time.March, 10))
	lead("L3", "fair", "C2", 0, "")
	c.set(day(time.March, 11))
	move("L3", "disqualified")
	c.set(day(time.March, 12))
	lead("L4", "", "C1", 10000, "")
	for i, o := range []struct {
		campaign string
		cents    int64
	}{{"C1", 15000}, {"C2", 8000}} {
		_, err := e.Orders().Create(ctx, crm.Order{Number: "M" + string(rune('1'+i)), CampaignID: o.campaign, OrderedAt: day(time.March, 20), Currency: "EUR",
			Lines: []crm.OrderLine{{SKU: "s", Quantity: 1, UnitPrice: crm.Money{Amount: o.cents}}}})
		require.NoError(t, err)
	}
	c.set(day(time.April, 30))
	return e, ids
}

func TestLeads(t *testing.T) {
	ctx := context.Background()
	e, _ := marketingHistory(t)
	r := analytics.New(e.Default())

	l, err := r.Leads(ctx, analytics.LeadsQuery{Period: march})
	require.NoError(t, err)
	assert.Equal(t, "EUR", l.Currency)
	assert.Equal(t, 2, l.Accounts, "the conversions created Acme and Beta")
	// L1-L4: two converted, one won; 80000 expected over three priced
	// leads is 26666.67 on average.
	assert.Equal(t, analytics.LeadGroup{Leads: 4, Converted: 2, Won: 1, ConversionRate: 0.5, WinRate: 0.25, Expected: 80000, Average: 26667}, l.Total)
	assert.Equal(t, []analytics.LeadGroup{
		{Key: "", Leads: 1, Expected: 10000, Average: 10000},
		{Key: "fair", Leads: 1},
		{Key: "web", Leads: 2, Converted: 2, Won: 1, ConversionRate: 1, WinRate: 0.5, Expected: 70000, Average: 35000},
	}, l.BySource)
	assert.Equal(t, []analytics.LeadGroup{
		{Key: "C1", Name: "Spring mail", Leads: 3, Converted: 2, Won: 1, ConversionRate: 2.0 / 3, WinRate: 1.0 / 3, Expected: 80000, Average: 26667},
		{Key: "C2", Name: "Fair", Leads: 1},
	}, l.ByCampaign)
	assert.Equal(t, []analytics.LeadStatus{
		{Pipeline: "lead", Stage: "registered", Reached: 4, Converted: 2, Rate: 0.5},
		{Pipeline: "lead", Stage: "qualified", Reached: 2, Converted: 2, Rate: 1},
		{Pipeline: "lead", Stage: "nurturing"},
		{Pipeline: "lead", Stage: "converted", Reached: 2, Converted: 2, Rate: 1},
		{Pipeline: "lead", Stage: "disqualified", Reached: 1},
	}, l.ByStatus)

	l, err = r.Leads(ctx, analytics.LeadsQuery{})
	require.NoError(t, err)
	assert.Equal(t, 5, l.Total.Leads, "all time adds L5")
	assert.Equal(t, 5, l.ByStatus[0].Reached)
}

func TestCampaigns(t *testing.T) {
	ctx := context.Background()
	e, _ := marketingHistory(t)
	r := analytics.New(e.Default())

	c, err := r.Campaigns(ctx, analytics.CampaignsQuery{})
	require.NoError(t, err)
	assert.Equal(t, "EUR", c.Currency)
	// C1: 3 responses of 4 wanted; 600.00 spent of 1000.00; 200.00 per
	// lead and 600.00 per won deal; revenue 500.00 (L1's won deal) +
	// 150.00 (an order) = 650.00, so ROI (650 − 600) / 600.
	assert.Equal(t, []analytics.CampaignRow{
		{ID: "C1", Name: "Spring mail", Channel: "email", StartsOn: "2024-03-01", Responses: 3, Target: 4, ResponseRate: 0.75,
			Converted: 2, Won: 1, Budget: 100000, Cost: 60000, BudgetUsed: 0.6, CostPerLead: 20000, CostPerWon: 60000,
			Revenue: 65000, ROI: 5000.0 / 60000},
		{ID: "C2", Name: "Fair", StartsOn: "2024-04-10", Responses: 1, Target: 2, ResponseRate: 0.5,
			Budget: 50000, Cost: 90000, BudgetUsed: 1.8, CostPerLead: 90000, Revenue: 8000, ROI: -82000.0 / 90000},
		{ID: "C3", Name: "Evergreen", Responses: 1},
	}, c.Campaigns)
	assert.Equal(t, analytics.CampaignRow{Responses: 5, Target: 6, ResponseRate: 5.0 / 6, Converted: 2, Won: 1,
		Budget: 150000, Cost: 150000, BudgetUsed: 1, CostPerLead: 30000, CostPerWon: 150000, Revenue: 73000, ROI: -77000.0 / 150000}, c.Total,
		"the average cost of a lead is 300.00, of a lead won 1500.00")

	c, err = r.Campaigns(ctx, analytics.CampaignsQuery{Period: march})
	require.NoError(t, err)
	require.Len(t, c.Campaigns, 1, "only C1 starts in March; C3 has no start")
	assert.Equal(t, "C1", c.Campaigns[0].ID)

	_, err = r.Campaigns(ctx, analytics.CampaignsQuery{Currency: "USD"})
	require.NoError(t, err, "a currency nothing is in gives zeros")
	_, err = r.Campaigns(ctx, analytics.CampaignsQuery{Currency: "dollars"})
	require.ErrorIs(t, err, analytics.ErrInvalid)
	_, err = r.Leads(ctx, analytics.LeadsQuery{Period: analytics.Period{From: day(time.March, 2), To: day(time.March, 1)}})
	require.ErrorIs(t, err, analytics.ErrInvalid)
}

func TestSatisfaction(t *testing.T) {
	ctx := context.Background()
	e, _ := open(t, day(time.March, 1))
	a, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "A"})
	require.NoError(t, err)
	b, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "B"})
	require.NoError(t, err)
	nps := func(n int) *int { return &n }
	for _, s := range []crm.SurveyResponse{
		{Survey: "post-order", ContactID: a.ID, AnsweredAt: day(time.March, 3), NPS: nps(10),
			Items: []crm.SurveyItem{{Key: "delivery", Score: 9, Importance: 2}, {Key: "support", Score: 5}}},
		{Survey: "post-order", ContactID: b.ID, AnsweredAt: day(time.March, 20), NPS: nps(6),
			Items: []crm.SurveyItem{{Key: "delivery", Score: 4, Importance: 2}}},
		{Survey: "post-order", AnsweredAt: day(time.April, 2), NPS: nps(9)},
		{Survey: "onboarding", ContactID: a.ID, AnsweredAt: day(time.March, 25), Items: []crm.SurveyItem{{Key: "ease", Score: 7, Importance: 3}}},
	} {
		_, err := e.Default().SurveyResponses().Create(ctx, s)
		require.NoError(t, err)
	}
	r := analytics.New(e.Default())
	type row struct {
		responses, answers, promoters, passives, detractors, items int
		nps, csi, cdi                                              float64
	}
	rows := func(q analytics.SatisfactionQuery) map[string]row {
		t.Helper()
		s, err := r.Satisfaction(ctx, q)
		require.NoError(t, err)
		out := map[string]row{}
		for _, g := range s.Groups {
			out[g.Key] = row{g.Responses, g.NPSAnswers, g.Promoters, g.Passives, g.Detractors, g.Items, g.NPS, g.CSI, g.CDI}
		}
		return out
	}
	// Items: weights 2, 1, 2, 3 (8) with scores 9, 5, 4, 7: CSI = (18 + 5 +
	// 8 + 21) × 10 / 8 = 65; CDI = (1 + 2) / 8 = 37.5%.
	all := rows(analytics.SatisfactionQuery{})
	assert.InDelta(t, 100.0/3, all[""].nps, 1e-9, "two promoters, one detractor of three answers")
	all[""] = row{all[""].responses, all[""].answers, all[""].promoters, all[""].passives, all[""].detractors, all[""].items, 0, all[""].csi, all[""].cdi}
	assert.Equal(t, map[string]row{"": {4, 3, 2, 0, 1, 4, 0, 65, 37.5}}, all)

	assert.Equal(t, map[string]row{
		"2024-03": {3, 2, 1, 0, 1, 4, 0, 65, 37.5},
		"2024-04": {1, 1, 1, 0, 0, 0, 100, 0, 0},
	}, rows(analytics.SatisfactionQuery{By: analytics.ByMonth}))
	assert.Equal(t, map[string]row{
		"onboarding": {1, 0, 0, 0, 0, 1, 0, 70, 0},
		"post-order": {2, 2, 1, 0, 1, 3, 0, 62, 60},
	}, rows(analytics.SatisfactionQuery{By: analytics.BySurvey, Period: march}))
	seg := rows(analytics.SatisfactionQuery{By: analytics.BySegment, Segments: map[string]string{a.ID: "loyal"}})
	assert.InDelta(t, 44.0*10/6, seg["loyal"].csi, 1e-9)
	assert.InDelta(t, 100.0/6, seg["loyal"].cdi, 1e-9)
	assert.Equal(t, 100.0, seg["loyal"].nps)
	assert.Equal(t, 2, seg[""].responses, "B has no segment, S3 no contact")
	assert.Equal(t, 3, rows(analytics.SatisfactionQuery{Survey: "post-order"})[""].responses)

	for name, q := range map[string]analytics.SatisfactionQuery{
		"unknown by":          {By: "weather"},
		"segment without map": {By: analytics.BySegment},
		"empty period":        {Period: analytics.Period{From: day(time.April, 1), To: day(time.March, 1)}},
	} {
		_, err := r.Satisfaction(ctx, q)
		assert.ErrorIs(t, err, analytics.ErrInvalid, name)
	}
}

func TestProducts(t *testing.T) {
	ctx := context.Background()
	e, _ := open(t, day(time.April, 5))
	a, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "A"})
	require.NoError(t, err)
	b, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "B"})
	require.NoError(t, err)
	line := func(sku, cat string, qty, cents int64) crm.OrderLine {
		return crm.OrderLine{SKU: sku, Description: sku + "!", Category: cat, Quantity: qty, UnitPrice: crm.Money{Amount: cents}}
	}
	ship := crm.OrderLine{SKU: "ship", Quantity: 1, UnitPrice: crm.Money{Amount: 300}, Delivery: true}
	for _, o := range []crm.Order{
		{Number: "1", ContactID: a.ID, OrderedAt: day(time.March, 1), Lines: []crm.OrderLine{line("tea", "drinks", 2, 500), line("mug", "ware", 1, 1200), ship}},
		{Number: "2", ContactID: b.ID, OrderedAt: day(time.March, 2), Lines: []crm.OrderLine{line("tea", "drinks", 1, 500), line("tea", "drinks", 1, 500), line("cake", "food", 1, 1200)}},
		{Number: "3", ContactID: a.ID, OrderedAt: day(time.March, 5), Refund: true, Lines: []crm.OrderLine{line("tea", "drinks", -1, 500)}},
		{Number: "4", ContactID: b.ID, OrderedAt: day(time.April, 1), Lines: []crm.OrderLine{line("mug", "ware", 3, 1200)}},
	} {
		o.Currency = "EUR"
		_, err := e.Orders().Create(ctx, o)
		require.NoError(t, err)
	}
	r := analytics.New(e.Default())
	p, err := r.Products(ctx, analytics.ProductsQuery{Period: march})
	require.NoError(t, err)
	// tea: 2 + 1 + 1 − 1 = 3 sold for 15.00 in two orders by two
	// customers; cake and mug tie at 12.00, one sold once each, and
	// share the second place. Shipping is not a product.
	assert.Equal(t, int64(3900), p.Revenue)
	assert.Equal(t, []analytics.ProductRow{
		{SKU: "tea", Name: "tea!", Category: "drinks", Orders: 2, Customers: 2, Quantity: 3, Revenue: 1500, Share: 1500.0 / 3900, Rank: 1},
		{SKU: "cake", Name: "cake!", Category: "food", Orders: 1, Customers: 1, Quantity: 1, Revenue: 1200, Share: 1200.0 / 3900, Rank: 2},
		{SKU: "mug", Name: "mug!", Category: "ware", Orders: 1, Customers: 1, Quantity: 1, Revenue: 1200, Share: 1200.0 / 3900, Rank: 2},
	}, p.Products)

	p, err = r.Products(ctx, analytics.ProductsQuery{Category: "ware"})
	require.NoError(t, err)
	assert.Equal(t, []analytics.ProductRow{{SKU: "mug", Name: "mug!", Category: "ware", Orders: 2, Customers: 2, Quantity: 4, Revenue: 4800, Share: 1, Rank: 1}}, p.Products)

	_, err = e.Orders().Create(ctx, crm.Order{Number: "5", OrderedAt: day(time.March, 6), Currency: "USD", Lines: []crm.OrderLine{line("tea", "drinks", 1, 100)}})
	require.NoError(t, err)
	_, err = r.Products(ctx, analytics.ProductsQuery{})
	require.ErrorIs(t, err, analytics.ErrInvalid, "euros and dollars are not added up")
	p, err = r.Products(ctx, analytics.ProductsQuery{Currency: "USD"})
	require.NoError(t, err)
	assert.Equal(t, int64(100), p.Revenue)
}
