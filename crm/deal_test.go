package crm_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

func TestDeals(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	acc, err := env.engine.Accounts().Create(ctx, crm.Account{Name: "Acme"})
	require.NoError(t, err)
	c, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "Wile", AccountID: acc.ID})
	require.NoError(t, err)
	price, err := crm.ParseMoney("12500.50", "EUR")
	require.NoError(t, err)
	b2b, err := pipeline.Builtin("b2b-deal")
	require.NoError(t, err)
	require.NoError(t, env.engine.Pipelines().Save(ctx, b2b))

	d, err := env.engine.Deals().Create(ctx, crm.Deal{
		Title: " Rockets ", Amount: price, ExpectedClose: "2026-06-30", AccountID: acc.ID, ContactID: c.ID,
		Pipeline: "b2b-deal", Stage: "needs-clarification", StageEnteredAt: env.clock.Now(),
	})
	require.NoError(t, err)
	assert.Equal(t, "Rockets", d.Title)
	got, err := env.engine.Deals().Get(ctx, d.ID)
	require.NoError(t, err)
	assert.Equal(t, int64(1250050), got.Amount.Amount)
	assert.True(t, got.StageEnteredAt.Equal(env.clock.Now()))

	p, err := env.engine.Deals().List(ctx, crm.ListOptions{By: "stage", Value: "b2b-deal/needs-clarification"})
	require.NoError(t, err)
	require.Len(t, p.Items, 1)
	p, err = env.engine.Deals().List(ctx, crm.ListOptions{By: "expected_close"})
	require.NoError(t, err)
	require.Len(t, p.Items, 1)

	// Accounts and contacts that deals refer to cannot be deleted.
	require.ErrorIs(t, env.engine.Contacts().Delete(ctx, c.ID), crm.ErrInUse)
	err = env.engine.Accounts().Delete(ctx, acc.ID)
	require.ErrorIs(t, err, crm.ErrInUse)
	require.NoError(t, env.engine.Deals().Delete(ctx, d.ID))
	require.NoError(t, env.engine.Contacts().Delete(ctx, c.ID))
	require.NoError(t, env.engine.Accounts().Delete(ctx, acc.ID))

	before := snapshot(t, env.store, "default")
	for name, bad := range map[string]struct {
		d      crm.Deal
		fields []string
	}{
		"no title":           {crm.Deal{}, []string{"title"}},
		"unknown currency":   {crm.Deal{Title: "x", Amount: crm.Money{Amount: 5, Currency: "EURO"}}, []string{"amount.currency"}},
		"negative amount":    {crm.Deal{Title: "x", Amount: crm.Money{Amount: -5, Currency: "EUR"}}, []string{"amount.amount"}},
		"amount no currency": {crm.Deal{Title: "x", Amount: crm.Money{Amount: 5}}, []string{"amount.currency"}},
		"bad date":           {crm.Deal{Title: "x", ExpectedClose: "30/06/2026"}, []string{"expected_close"}},
		"stage no pipeline":  {crm.Deal{Title: "x", Stage: "won"}, []string{"pipeline"}},
		"unknown pipeline":   {crm.Deal{Title: "x", Pipeline: "nope"}, []string{"pipeline"}},
		"unknown stage":      {crm.Deal{Title: "x", Pipeline: "b2b-deal", Stage: "nope"}, []string{"stage"}},
		"missing references": {crm.Deal{Title: "x", AccountID: "a", ContactID: "c", LeadID: "l"}, []string{"account_id", "contact_id", "lead_id"}},
	} {
		_, err := env.engine.Deals().Create(ctx, bad.d)
		var ve *crm.ValidationError
		require.ErrorAs(t, err, &ve, name)
		var fields []string
		for _, f := range ve.Fields {
			fields = append(fields, f.Field)
		}
		assert.ElementsMatch(t, bad.fields, fields, name)
	}
	assert.Equal(t, before, snapshot(t, env.store, "default"))
}

func TestLeads(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	exp, err := crm.ParseMoney("5000", "USD")
	require.NoError(t, err)
	l, err := env.engine.Leads().Create(ctx, crm.Lead{Company: "Globex", Email: "HANK@globex.example", Source: "web-form", ExpectedAmount: exp})
	require.NoError(t, err)
	assert.Empty(t, l.Stage, "a lead without a pipeline has no stage")
	assert.Equal(t, "hank@globex.example", l.Email)
	_, err = env.engine.Leads().Create(ctx, crm.Lead{Email: "hank@globex.example", Source: "trade-show"})
	require.NoError(t, err, "lead emails need not be unique")
	p, err := env.engine.Leads().List(ctx, crm.ListOptions{By: "email", Value: "hank@globex.example"})
	require.NoError(t, err)
	assert.Len(t, p.Items, 2)
	p, err = env.engine.Leads().List(ctx, crm.ListOptions{By: "source", Value: "web-form"})
	require.NoError(t, err)
	assert.Len(t, p.Items, 1)

	_, err = env.engine.Leads().Create(ctx, crm.Lead{Source: "web-form"})
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	_, ok := ve.Field("name")
	assert.True(t, ok)

	// A deal converted from the lead refers to it.
	d, err := env.engine.Deals().Create(ctx, crm.Deal{Title: "Globex pilot", LeadID: l.ID, Amount: exp})
	require.NoError(t, err)
	assert.Equal(t, l.ID, d.LeadID)
}
