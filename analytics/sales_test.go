package analytics_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/analytics"
	"github.com/rapportcrm/rapport/crm"
)

// closedHistory plays deals that are won, lost and still open, for the
// sales reports (EUR amounts in cents):
//
//	deal  owner  account      amount    expected    history
//	D9    u1     A2 energy     700.00               Feb 25 new; Feb 28 lost (price)
//	D1    u1     A1 retail    1000.00   2024-03-15  Mar 1 new; Mar 2 qualified; Mar 4 won
//	D2    u1     A2 energy     500.00               Mar 1 new; Mar 5 lost (price)
//	D3    u2     A1 retail    2000.00               Mar 1 qualified; Mar 6 lost (competitor)
//	D4    u2     -             300.30               Mar 2 proposal; Mar 10 won
//	D5    u1     -             250.50   2024-04-10  Mar 3 proposal (70%)
//	D6    u2     -              99.94   2024-04-20  Mar 3 new (10%)
//	D11   u1     -               0.04   2024-04-30  Mar 3 new (10%)
//	D7    u2     -            1000.00               Mar 3 qualified (40%)
//	D8    u1     -            (none)    2024-05-01  Mar 3 qualified
//
// Users u1 (territory north) and u2 (territory city, inside north) form
// team t1. The clock ends at Apr 5.
func closedHistory(t *testing.T) *crm.Engine {
	t.Helper()
	ctx := context.Background()
	e, c := open(t, day(time.February, 20))
	savePipeline(t, e, salesPipeline)
	ten := e.Default()
	_, err := ten.Territories().Create(ctx, crm.Territory{Meta: crm.Meta{ID: "north"}, Name: "North"})
	require.NoError(t, err)
	_, err = ten.Territories().Create(ctx, crm.Territory{Meta: crm.Meta{ID: "city"}, Name: "City", ParentID: "north"})
	require.NoError(t, err)
	_, err = ten.Teams().Create(ctx, crm.Team{Meta: crm.Meta{ID: "t1"}, Name: "Team 1"})
	require.NoError(t, err)
	_, err = ten.Users().Create(ctx, crm.User{Meta: crm.Meta{ID: "u1"}, Name: "Una", TeamID: "t1", TerritoryID: "north"})
	require.NoError(t, err)
	_, err = ten.Users().Create(ctx, crm.User{Meta: crm.Meta{ID: "u2"}, Name: "Ugo", TeamID: "t1", TerritoryID: "city"})
	require.NoError(t, err)
	a1, err := e.Accounts().Create(ctx, crm.Account{Name: "Shop", Industry: "retail"})
	require.NoError(t, err)
	a2, err := e.Accounts().Create(ctx, crm.Account{Name: "Plant", Industry: "energy"})
	require.NoError(t, err)

	deals := e.Deals()
	ids := map[string]string{}
	create := func(name, owner, account string, cents int64, expected, stage string) {
		d := crm.Deal{Meta: crm.Meta{Owner: owner}, Title: name, Pipeline: "sales", Stage: stage,
			AccountID: account, ExpectedClose: expected}
		if cents > 0 {
			d.Amount = crm.Money{Amount: cents, Currency: "EUR"}
		}
		d, err := deals.Create(ctx, d)
		require.NoError(t, err)
		ids[name] = d.ID
	}
	move := func(name, to, reason string) {
		_, err := deals.Move(ctx, ids[name], to, crm.MoveOptions{Reason: reason})
		require.NoError(t, err, "%s → %s", name, to)
	}
	c.set(day(time.February, 25))
	create("D9", "u1", a2.ID, 70000, "", "new")
	c.set(day(time.February, 28))
	move("D9", "lost", "price")
	c.set(day(time.March, 1))
	create("D1", "u1", a1.ID, 100000, "2024-03-15", "new")
	create("D2", "u1", a2.ID, 50000, "", "new")
	create("D3", "u2", a1.ID, 200000, "", "qualified")
	c.set(day(time.March, 2))
	move("D1", "qualified", "")
	create("D4", "u2", "", 30030, "", "proposal")
	c.set(day(time.March, 3))
	create("D5", "u1", "", 25050, "2024-04-10", "proposal")
	create("D6", "u2", "", 9994, "2024-04-20", "new")
	create("D11", "u1", "", 4, "2024-04-30", "new")
	create("D7", "u2", "", 100000, "", "qualified")
	create("D8", "u1", "", 0, "2024-05-01", "qualified")
	c.set(day(time.March, 4))
	move("D1", "won", "")
	c.set(day(time.March, 5))
	move("D2", "lost", "price")
	c.set(day(time.March, 6))
	move("D3", "lost", "competitor")
	c.set(day(time.March, 10))
	move("D4", "won", "")
	c.set(day(time.April, 5))
	return e
}

func TestLost(t *testing.T) {
	ctx := context.Background()
	e := closedHistory(t)
	r := analytics.New(e.Default())

	l, err := r.Lost(ctx, analytics.LostQuery{Period: march})
	require.NoError(t, err)
	assert.Equal(t, "EUR", l.Currency)
	assert.Equal(t, analytics.LostRow{Deals: 2, Value: 250000}, l.Total, "D2 and D3; D9 was lost in February")
	assert.Equal(t, []analytics.LostRow{{Key: "new", Deals: 1, Value: 50000}, {Key: "qualified", Deals: 1, Value: 200000}}, l.ByStage)
	assert.Equal(t, []analytics.LostRow{{Key: "competitor", Deals: 1, Value: 200000}, {Key: "price", Deals: 1, Value: 50000}}, l.ByReason)
	assert.Equal(t, []analytics.LostRow{{Key: "u1", Deals: 1, Value: 50000}, {Key: "u2", Deals: 1, Value: 200000}}, l.ByOwner)
	assert.Equal(t, []analytics.LostRow{{Key: "energy", Deals: 1, Value: 50000}, {Key: "retail", Deals: 1, Value: 200000}}, l.ByIndustry)

	l, err = r.Lost(ctx, analytics.LostQuery{Pipeline: "sales"})
	require.NoError(t, err)
	assert.Equal(t, analytics.LostRow{Deals: 3, Value: 320000}, l.Total, "all time adds D9")
	assert.Equal(t, []analytics.LostRow{{Key: "new", Deals: 2, Value: 120000}, {Key: "qualified", Deals: 1, Value: 200000}}, l.ByStage)
	assert.Equal(t, []analytics.LostRow{{Key: "energy", Deals: 2, Value: 120000}, {Key: "retail", Deals: 1, Value: 200000}}, l.ByIndustry)

	l, err = r.Lost(ctx, analytics.LostQuery{Slice: analytics.Slice{Owners: []string{"u2"}}})
	require.NoError(t, err)
	assert.Equal(t, analytics.LostRow{Deals: 1, Value: 200000}, l.Total)

	// A lost deal in dollars: the report refuses to add currencies, and a
	// chosen currency counts the deal without its value.
	usd, err := e.Deals().Create(ctx, crm.Deal{Title: "Dollars", Pipeline: "sales", Amount: crm.Money{Amount: 500, Currency: "USD"}})
	require.NoError(t, err)
	_, err = e.Deals().Move(ctx, usd.ID, "lost", crm.MoveOptions{Reason: "price"})
	require.NoError(t, err)
	_, err = r.Lost(ctx, analytics.LostQuery{})
	require.ErrorIs(t, err, analytics.ErrInvalid)
	assert.ErrorContains(t, err, "LostQuery.Currency")
	l, err = r.Lost(ctx, analytics.LostQuery{Currency: "EUR"})
	require.NoError(t, err)
	assert.Equal(t, analytics.LostRow{Deals: 4, Value: 320000}, l.Total)
}

func TestForecast(t *testing.T) {
	ctx := context.Background()
	e := closedHistory(t)
	r := analytics.New(e.Default())

	f, err := r.Forecast(ctx, analytics.ForecastQuery{})
	require.NoError(t, err)
	// April, in cents: 25050×70% + 9994×10% + 4×10% = 17535 + 999.4 +
	// 0.4 = 18534.8, rounded once to 18535 (rounding each deal would give
	// 18534). D8 has no amount; won and lost deals are closed.
	assert.Equal(t, []analytics.ForecastMonth{
		{Month: "", Deals: 1, Amount: 100000, Weighted: 40000},
		{Month: "2024-04", Deals: 3, Amount: 35048, Weighted: 18535},
	}, f.Months)
	assert.Equal(t, analytics.ForecastMonth{Deals: 4, Amount: 135048, Weighted: 58535}, f.Total)

	april := analytics.Month(2024, time.April, time.UTC)
	f, err = r.Forecast(ctx, analytics.ForecastQuery{Pipeline: "sales", Period: april, Slice: analytics.Slice{Owners: []string{"u2"}}})
	require.NoError(t, err)
	assert.Equal(t, []analytics.ForecastMonth{{Month: "2024-04", Deals: 1, Amount: 9994, Weighted: 999}}, f.Months,
		"a bounded period leaves out deals without a date")
}

func TestCommission(t *testing.T) {
	ctx := context.Background()
	e := closedHistory(t)
	r := analytics.New(e.Default())
	rates := analytics.CommissionRates{Default: 250, Owners: map[string]int{"u2": 333}}

	c, err := r.Commission(ctx, analytics.CommissionQuery{Period: march, Rates: rates})
	require.NoError(t, err)
	// u1: 1000.00 × 2.5% = 25.00; u2: 300.30 × 3.33% = 9.99999 → 10.00.
	assert.Equal(t, []analytics.CommissionRow{
		{Owner: "u1", Deals: 1, Won: 100000, Rate: 250, Earned: 2500},
		{Owner: "u2", Deals: 1, Won: 30030, Rate: 333, Earned: 1000},
	}, c.Owners)
	assert.Equal(t, analytics.CommissionRow{Deals: 2, Won: 130030, Earned: 3500}, c.Total)

	today := analytics.Period{From: day(time.March, 10), To: day(time.March, 11)}
	c, err = r.Commission(ctx, analytics.CommissionQuery{Period: today, Rates: rates})
	require.NoError(t, err)
	assert.Equal(t, []analytics.CommissionRow{{Owner: "u2", Deals: 1, Won: 30030, Rate: 333, Earned: 1000}}, c.Owners, "what u2 earned on March 10")

	// D1 reopened and won again on Apr 5: all time, it still pays once.
	savePipeline(t, e, salesPipeline+"reopen: true\n")
	var d1 string
	require.NoError(t, e.Deals().Each(ctx, crm.EachOptions{}, func(d *crm.Deal) error {
		if d.Title == "D1" {
			d1 = d.ID
		}
		return nil
	}))
	for _, to := range []string{"proposal", "won"} {
		_, err = e.Deals().Move(ctx, d1, to, crm.MoveOptions{})
		require.NoError(t, err)
	}
	c, err = r.Commission(ctx, analytics.CommissionQuery{Rates: rates})
	require.NoError(t, err)
	assert.Equal(t, analytics.CommissionRow{Deals: 2, Won: 130030, Earned: 3500}, c.Total)

	_, err = r.Commission(ctx, analytics.CommissionQuery{Rates: analytics.CommissionRates{Owners: map[string]int{"u1": 10001}}})
	require.ErrorIs(t, err, analytics.ErrInvalid)
}

func TestPlan(t *testing.T) {
	ctx := context.Background()
	e := closedHistory(t)
	ten := e.Default()
	for _, st := range []crm.SalesTarget{
		{Meta: crm.Meta{ID: "T1"}, UserID: "u1", PeriodStart: "2024-03-01", PeriodEnd: "2024-03-31", Amount: crm.Money{Amount: 150000, Currency: "EUR"}},
		{Meta: crm.Meta{ID: "T2"}, TeamID: "t1", PeriodStart: "2024-03-01", PeriodEnd: "2024-03-31", Amount: crm.Money{Amount: 100000, Currency: "EUR"}},
		{Meta: crm.Meta{ID: "T3"}, TerritoryID: "north", PeriodStart: "2024-03-01", PeriodEnd: "2024-03-09", Amount: crm.Money{Amount: 200000, Currency: "EUR"}},
		{Meta: crm.Meta{ID: "T4"}, UserID: "u2", PeriodStart: "2024-04-01", PeriodEnd: "2024-04-30", Amount: crm.Money{Amount: 50000, Currency: "EUR"}},
		{Meta: crm.Meta{ID: "T5"}, UserID: "u2", PeriodStart: "2024-03-10", PeriodEnd: "2024-03-10", Amount: crm.Money{Amount: 100, Currency: "USD"}},
	} {
		_, err := ten.SalesTargets().Create(ctx, st)
		require.NoError(t, err)
	}
	r := analytics.New(ten)
	p, err := r.Plan(ctx, analytics.PlanQuery{Period: march})
	require.NoError(t, err)
	// The team has u1 (D1 on Mar 4) and u2 (D4 on Mar 10); the territory
	// target ends on Mar 9, before D4, and covers city inside north; T5
	// is in dollars and nothing was won in dollars.
	assert.Equal(t, []analytics.PlanRow{
		{TargetID: "T2", Level: "team", Who: "t1", PeriodStart: "2024-03-01", PeriodEnd: "2024-03-31", Currency: "EUR", Plan: 100000, Fact: 130030, Deals: 2, Fulfilment: 130.03},
		{TargetID: "T3", Level: "territory", Who: "north", PeriodStart: "2024-03-01", PeriodEnd: "2024-03-09", Currency: "EUR", Plan: 200000, Fact: 100000, Deals: 1, Fulfilment: 50},
		{TargetID: "T1", Level: "user", Who: "u1", PeriodStart: "2024-03-01", PeriodEnd: "2024-03-31", Currency: "EUR", Plan: 150000, Fact: 100000, Deals: 1, Fulfilment: 200.0 / 3},
		{TargetID: "T5", Level: "user", Who: "u2", PeriodStart: "2024-03-10", PeriodEnd: "2024-03-10", Currency: "USD", Plan: 100},
	}, p.Targets)

	p, err = r.Plan(ctx, analytics.PlanQuery{Period: analytics.Period{From: day(time.April, 1)}})
	require.NoError(t, err)
	require.Len(t, p.Targets, 1)
	assert.Equal(t, "T4", p.Targets[0].TargetID)
	assert.Zero(t, p.Targets[0].Fact)
}

func TestSalesReportsRefuseBadQueries(t *testing.T) {
	ctx := context.Background()
	e := closedHistory(t)
	savePipeline(t, e, "name: leads\nkind: lead\nstages:\n  - {key: new}\n  - {key: done, terminal: converted}\n")
	r := analytics.New(e.Default())
	empty := analytics.Period{From: day(time.March, 2), To: day(time.March, 1)}
	for name, run := range map[string]func() error{
		"lost: unknown pipeline": func() error { _, err := r.Lost(ctx, analytics.LostQuery{Pipeline: "nope"}); return err },
		"lost: lead pipeline":    func() error { _, err := r.Lost(ctx, analytics.LostQuery{Pipeline: "leads"}); return err },
		"lost: bad currency":     func() error { _, err := r.Lost(ctx, analytics.LostQuery{Currency: "EURO"}); return err },
		"lost: empty period":     func() error { _, err := r.Lost(ctx, analytics.LostQuery{Period: empty}); return err },
		"lost: unknown team": func() error {
			_, err := r.Lost(ctx, analytics.LostQuery{Slice: analytics.Slice{Team: "nope"}})
			return err
		},
		"forecast: lead pipeline": func() error { _, err := r.Forecast(ctx, analytics.ForecastQuery{Pipeline: "leads"}); return err },
		"forecast: empty period":  func() error { _, err := r.Forecast(ctx, analytics.ForecastQuery{Period: empty}); return err },
		"commission: negative": func() error {
			_, err := r.Commission(ctx, analytics.CommissionQuery{Rates: analytics.CommissionRates{Default: -1}})
			return err
		},
		"commission: bad currency": func() error { _, err := r.Commission(ctx, analytics.CommissionQuery{Currency: "xx"}); return err },
		"plan: empty period":       func() error { _, err := r.Plan(ctx, analytics.PlanQuery{Period: empty}); return err },
	} {
		err := run()
		assert.ErrorIs(t, err, analytics.ErrInvalid, name)
		assert.ErrorIs(t, err, crm.ErrInvalid, name)
	}
}
