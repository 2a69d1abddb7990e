package crm_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
)

func TestUsersTeamsTerritoriesTargets(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	tn := env.engine.Default()
	emea, err := tn.Territories().Create(ctx, crm.Territory{Name: "EMEA"})
	require.NoError(t, err)
	france, err := tn.Territories().Create(ctx, crm.Territory{Name: "France", ParentID: emea.ID})
	require.NoError(t, err)
	sales, err := tn.Teams().Create(ctx, crm.Team{Name: "Sales"})
	require.NoError(t, err)
	paris, err := tn.Teams().Create(ctx, crm.Team{Name: "Paris desk", ParentID: sales.ID})
	require.NoError(t, err)
	ann, err := tn.Users().Create(ctx, crm.User{Name: "Ann", Email: "ANN@example.com", TeamID: sales.ID, Roles: []string{"manager"}})
	require.NoError(t, err)
	bob, err := tn.Users().Create(ctx, crm.User{Name: "Bob", TeamID: paris.ID, TerritoryID: france.ID})
	require.NoError(t, err)
	sales.ManagerID = ann.ID
	_, err = tn.Teams().Update(ctx, sales)
	require.NoError(t, err)

	members, err := tn.Members(ctx, sales.ID)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{ann.ID, bob.ID}, members, "members of sub-teams count")
	_, err = tn.Members(ctx, "missing")
	require.ErrorIs(t, err, crm.ErrNotFound)

	// Hierarchies cannot loop.
	emea.ParentID = france.ID
	_, err = tn.Territories().Update(ctx, emea)
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	_, ok := ve.Field("parent_id")
	assert.True(t, ok)
	sales, err = tn.Teams().Get(ctx, sales.ID)
	require.NoError(t, err)
	sales.ParentID = sales.ID
	_, err = tn.Teams().Update(ctx, sales)
	require.ErrorAs(t, err, &ve)

	target, err := tn.SalesTargets().Create(ctx, crm.SalesTarget{TeamID: paris.ID, PeriodStart: "2026-01-01", PeriodEnd: "2026-03-31",
		Amount: crm.Money{Amount: 10_000_000, Currency: "EUR"}})
	require.NoError(t, err)
	assert.Equal(t, paris.ID, target.TeamID)
	before := snapshot(t, env.store, "default")
	for name, bad := range map[string]crm.SalesTarget{
		"two owners":   {UserID: ann.ID, TeamID: paris.ID, PeriodStart: "2026-01-01", PeriodEnd: "2026-01-31", Amount: crm.Money{Amount: 1, Currency: "EUR"}},
		"no owner":     {PeriodStart: "2026-01-01", PeriodEnd: "2026-01-31", Amount: crm.Money{Amount: 1, Currency: "EUR"}},
		"period":       {UserID: ann.ID, PeriodStart: "2026-02-01", PeriodEnd: "2026-01-31", Amount: crm.Money{Amount: 1, Currency: "EUR"}},
		"no amount":    {UserID: ann.ID, PeriodStart: "2026-01-01", PeriodEnd: "2026-01-31"},
		"missing user": {UserID: "nobody", PeriodStart: "2026-01-01", PeriodEnd: "2026-01-31", Amount: crm.Money{Amount: 1, Currency: "EUR"}},
	} {
		_, err := tn.SalesTargets().Create(ctx, bad)
		require.ErrorAs(t, err, &ve, name)
	}
	_, err = tn.Users().Create(ctx, crm.User{Name: "Dup", Email: "ann@example.com"})
	require.ErrorAs(t, err, &ve, "user emails are unique")
	assert.Equal(t, before, snapshot(t, env.store, "default"))
	require.ErrorIs(t, tn.Teams().Delete(ctx, paris.ID), crm.ErrInUse, "a target and a user refer to it")
	require.ErrorIs(t, tn.Territories().Delete(ctx, emea.ID), crm.ErrInUse, "France is under it")
}

func TestCampaignsSurveysPriceLists(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	tn := env.engine.Default()
	camp, err := tn.Campaigns().Create(ctx, crm.Campaign{Name: "Spring fair", Channel: "event", TargetResponses: 200,
		Budget: crm.Money{Amount: 500_000, Currency: "EUR"}, StartsOn: "2026-03-01", EndsOn: "2026-03-31"})
	require.NoError(t, err)
	assert.Equal(t, crm.CampaignPlanned, camp.Status)
	_, err = env.engine.Leads().Create(ctx, crm.Lead{Company: "Initech", CampaignID: camp.ID})
	require.NoError(t, err)
	require.ErrorIs(t, tn.Campaigns().Delete(ctx, camp.ID), crm.ErrInUse)
	var ve *crm.ValidationError
	_, err = env.engine.Leads().Create(ctx, crm.Lead{Company: "Umbrella", CampaignID: "no-such-campaign"})
	require.ErrorAs(t, err, &ve)
	_, err = tn.Campaigns().Create(ctx, crm.Campaign{Name: "X", Budget: crm.Money{Amount: 1, Currency: "EUR"},
		Cost: crm.Money{Amount: 1, Currency: "USD"}, TargetResponses: -1, Status: "maybe"})
	require.ErrorAs(t, err, &ve)
	assert.Len(t, ve.Fields, 3)

	c, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "Ada"})
	require.NoError(t, err)
	nine := 9
	resp, err := tn.SurveyResponses().Create(ctx, crm.SurveyResponse{Survey: "q1", ContactID: c.ID, NPS: &nine,
		Items: []crm.SurveyItem{{Key: "delivery", Score: 8}, {Key: "support", Score: 6, Importance: 3}}})
	require.NoError(t, err)
	assert.Equal(t, 1, resp.Items[0].Importance, "importance defaults to 1")
	assert.Equal(t, env.clock.Now(), resp.AnsweredAt)
	eleven := 11
	_, err = tn.SurveyResponses().Create(ctx, crm.SurveyResponse{Survey: "q1", NPS: &eleven,
		Items: []crm.SurveyItem{{Key: "a", Score: 11}, {Key: "a", Score: 1, Importance: 20}}})
	require.ErrorAs(t, err, &ve)
	assert.Len(t, ve.Fields, 4)
	_, err = tn.SurveyResponses().Create(ctx, crm.SurveyResponse{Survey: "q1"})
	require.ErrorAs(t, err, &ve, "no answer at all")

	price := func(amount int64) crm.Money { return crm.Money{Amount: amount} }
	_, err = tn.PriceLists().Create(ctx, crm.PriceList{Name: "2026", Currency: "EUR", ValidFrom: "2026-01-01",
		Prices: []crm.Price{{SKU: "MUG", UnitPrice: price(450)}, {SKU: "CUP", UnitPrice: price(300)}}})
	require.NoError(t, err)
	_, err = tn.PriceLists().Create(ctx, crm.PriceList{Name: "Spring sale", Currency: "EUR", ValidFrom: "2026-03-01", ValidTo: "2026-03-31",
		Prices: []crm.Price{{SKU: "MUG", UnitPrice: price(399)}}})
	require.NoError(t, err)
	for day, want := range map[string]int64{"2026-02-15": 450, "2026-03-15": 399, "2026-04-01": 450} {
		got, err := tn.PriceLists().PriceOf(ctx, "MUG", "EUR", day)
		require.NoError(t, err, day)
		assert.Equal(t, crm.Money{Amount: want, Currency: "EUR"}, got, day)
	}
	cup, err := tn.PriceLists().PriceOf(ctx, "CUP", "EUR", "2026-03-15")
	require.NoError(t, err)
	assert.Equal(t, int64(300), cup.Amount, "the sale list does not price cups; the base list does")
	_, err = tn.PriceLists().PriceOf(ctx, "MUG", "USD", "2026-03-15")
	require.ErrorIs(t, err, crm.ErrNotFound)
	_, err = tn.PriceLists().PriceOf(ctx, "MUG", "EUR", "2025-12-31")
	require.ErrorIs(t, err, crm.ErrNotFound)
	_, err = tn.PriceLists().PriceOf(ctx, "MUG", "EUR", "soon")
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = tn.PriceLists().Create(ctx, crm.PriceList{Name: "Bad", Currency: "EUR", ValidFrom: "2026-01-01",
		Prices: []crm.Price{{SKU: "A", UnitPrice: crm.Money{Amount: 1, Currency: "USD"}}, {SKU: "A", UnitPrice: price(-1)}}})
	require.ErrorAs(t, err, &ve)
}
