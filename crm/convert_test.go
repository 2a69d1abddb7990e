package crm_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

func TestConvertLead(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	saveBuiltin(t, env, "lead", "b2b-deal")
	rec := newRecorder()
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "conv", Events: []string{"lead.converted"}, Handler: rec.handle}))
	leads := env.engine.Leads()
	exp, err := crm.ParseMoney("5000", "USD")
	require.NoError(t, err)
	l, err := leads.Create(ctx, crm.Lead{FirstName: "Hank", LastName: "Scorpio", Email: "hank@globex.example",
		Company: "Globex", ExpectedAmount: exp, Pipeline: "lead", Meta: crm.Meta{Owner: "ann", Tags: []string{"expo"}}})
	require.NoError(t, err)
	env.clock.Advance(time.Hour)
	_, err = env.engine.Interactions().Create(ctx, crm.Interaction{Channel: "phone", Summary: "Wants a demo", Links: crm.Links{LeadID: l.ID}})
	require.NoError(t, err)
	l, err = leads.Move(ctx, l.ID, "qualified", crm.MoveOptions{})
	require.NoError(t, err)

	// A deal that cannot be created fails the whole conversion, after the
	// account and contact were written in the same transaction.
	before := snapshot(t, env.store, "default")
	_, err = leads.Convert(ctx, l.ID, crm.ConvertOptions{Deal: crm.Deal{Pipeline: "lead"}})
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, before, snapshot(t, env.store, "default"), "nothing of a failed conversion stays")

	env.clock.Advance(time.Hour)
	conv, err := leads.Convert(ctx, l.ID, crm.ConvertOptions{Deal: crm.Deal{Pipeline: "b2b-deal"}, Actor: pipeline.Actor{ID: "ann"}})
	require.NoError(t, err)
	require.NotNil(t, conv.Account)
	require.NotNil(t, conv.Deal)
	assert.Equal(t, "Globex", conv.Account.Name)
	assert.Equal(t, "hank@globex.example", conv.Contact.Email)
	assert.Equal(t, conv.Account.ID, conv.Contact.AccountID)
	assert.Equal(t, l.ID, conv.Contact.LeadID)
	assert.Equal(t, []string{"expo"}, conv.Contact.Tags)
	assert.Equal(t, "Globex", conv.Deal.Title)
	assert.Equal(t, exp, conv.Deal.Amount)
	assert.Equal(t, l.ID, conv.Deal.LeadID)
	assert.Equal(t, "ann", conv.Deal.Owner)
	assert.Equal(t, "needs-clarification", conv.Deal.Stage)
	assert.Equal(t, "converted", conv.Lead.Stage)
	assert.Equal(t, env.clock.Now(), conv.Lead.ConvertedAt)
	assert.Equal(t, conv.Contact.ID, conv.Lead.ContactID)
	assert.Equal(t, conv.Deal.ID, conv.Lead.DealID)
	assert.Equal(t, l.ID, rec.wait(t, 1)[0].ID)

	// The lead's history is on the contact's and the deal's timelines.
	for _, tl := range []func() (crm.Page[crm.TimelineEntry], error){
		func() (crm.Page[crm.TimelineEntry], error) {
			return env.engine.Contacts().Timeline(ctx, conv.Contact.ID, crm.TimelineOptions{})
		},
		func() (crm.Page[crm.TimelineEntry], error) {
			return env.engine.Deals().Timeline(ctx, conv.Deal.ID, crm.TimelineOptions{})
		},
	} {
		pg, err := tl()
		require.NoError(t, err)
		var summaries []string
		for _, e := range pg.Items {
			summaries = append(summaries, e.Summary)
		}
		assert.Contains(t, summaries, "phone: Wants a demo")
		assert.Contains(t, summaries, "lead: registered → qualified")
	}

	// Converting again changes nothing and returns the same conversion.
	before = snapshot(t, env.store, "default")
	again, err := leads.Convert(ctx, l.ID, crm.ConvertOptions{})
	require.NoError(t, err)
	assert.Equal(t, conv.Contact.ID, again.Contact.ID)
	assert.Equal(t, conv.Deal.ID, again.Deal.ID)
	assert.Equal(t, conv.Account.ID, again.Account.ID)
	assert.Equal(t, before, snapshot(t, env.store, "default"))

	// Converted leads keep their links: no editing them, no deleting the lead.
	got, err := leads.Get(ctx, l.ID)
	require.NoError(t, err)
	got.DealID = ""
	_, err = leads.Update(ctx, got)
	require.ErrorAs(t, err, &ve)
	require.ErrorIs(t, leads.Delete(ctx, l.ID), crm.ErrInUse)
	_, err = leads.Create(ctx, crm.Lead{FirstName: "X", DealID: conv.Deal.ID})
	require.ErrorAs(t, err, &ve)
}

func TestConvertLeadIntoExistingRecords(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	saveBuiltin(t, env, "lead")
	acct, err := env.engine.Accounts().Create(ctx, crm.Account{Name: "Initech"})
	require.NoError(t, err)
	c, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "Peter", Email: "peter@initech.example"})
	require.NoError(t, err)
	l, err := env.engine.Leads().Create(ctx, crm.Lead{FirstName: "Peter", Email: "peter@initech.example"})
	require.NoError(t, err)
	conv, err := env.engine.Leads().Convert(ctx, l.ID, crm.ConvertOptions{ContactID: c.ID, AccountID: acct.ID, NoDeal: true})
	require.NoError(t, err)
	assert.Equal(t, c.ID, conv.Contact.ID)
	assert.Equal(t, acct.ID, conv.Account.ID)
	assert.Nil(t, conv.Deal)
	assert.Empty(t, conv.Lead.Stage, "a lead in no pipeline does not move")

	// In the lead pipeline, the guard (a company is required) applies.
	noCompany, err := env.engine.Leads().Create(ctx, crm.Lead{FirstName: "Milton", Pipeline: "lead"})
	require.NoError(t, err)
	before := snapshot(t, env.store, "default")
	_, err = env.engine.Leads().Convert(ctx, noCompany.ID, crm.ConvertOptions{})
	var guard *pipeline.GuardError
	require.ErrorAs(t, err, &guard)
	_, err = env.engine.Leads().Convert(ctx, noCompany.ID, crm.ConvertOptions{AccountID: "missing"})
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = env.engine.Leads().Convert(ctx, "missing", crm.ConvertOptions{})
	require.ErrorIs(t, err, crm.ErrNotFound)
	assert.Equal(t, before, snapshot(t, env.store, "default"))
}
