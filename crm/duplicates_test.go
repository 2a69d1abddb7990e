package crm_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
)

func TestDuplicatesAndMerge(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	rec := newRecorder()
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "dups", Events: []string{"contact.duplicate_suspected", "contact.merged"}, Handler: rec.handle}))
	contacts := env.engine.Contacts()
	ada, err := contacts.Create(ctx, crm.Contact{FirstName: "Ada", Email: "ada.lovelace@gmail.com", Phone: "+44 20 7946 0958",
		Meta: crm.Meta{Tags: []string{"vip"}}})
	require.NoError(t, err)
	// Another address of the same Gmail account and the same number in
	// national form: created, but suspected.
	dup, err := contacts.Create(ctx, crm.Contact{FirstName: "A.", LastName: "Lovelace", Email: "AdaLovelace+crm@googlemail.com",
		Phone: "020 7946 0958", Title: "Countess", Meta: crm.Meta{Tags: []string{"newsletter"}, Custom: map[string]any{"source": "fair"}}})
	require.NoError(t, err)
	ev := rec.wait(t, 1)[0]
	assert.Equal(t, "contact.duplicate_suspected", ev.Type)
	assert.Equal(t, dup.ID, ev.ID)
	assert.Contains(t, string(ev.Data), ada.ID)

	// On demand, for a record not stored yet, with reasons.
	matches, err := contacts.Duplicates(ctx, crm.Contact{FirstName: "X", Email: "ada.lovelace+x@gmail.com"})
	require.NoError(t, err)
	require.Len(t, matches, 2)
	assert.Equal(t, []string{"email:adalovelace@gmail.com"}, matches[0].Reasons)
	none, err := contacts.Duplicates(ctx, crm.Contact{FirstName: "Grace", Email: "grace@example.com"})
	require.NoError(t, err)
	assert.Empty(t, none)

	// Related records and the timeline move to the survivor.
	deal, err := env.engine.Deals().Create(ctx, crm.Deal{Title: "Engine", ContactID: dup.ID})
	require.NoError(t, err)
	call, err := env.engine.Interactions().Create(ctx, crm.Interaction{Channel: "phone", Summary: "Asked about the engine", Links: crm.Links{ContactID: dup.ID}})
	require.NoError(t, err)
	before := snapshot(t, env.store, "default")
	_, err = env.engine.Default().MergeContacts(ctx, ada.ID, ada.ID, crm.MergeOptions{})
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = env.engine.Default().MergeContacts(ctx, ada.ID, "missing", crm.MergeOptions{})
	require.ErrorIs(t, err, crm.ErrNotFound)
	assert.Equal(t, before, snapshot(t, env.store, "default"))

	merged, err := env.engine.Default().MergeContacts(ctx, ada.ID, dup.ID, crm.MergeOptions{Actor: "ann", Reason: "same person"})
	require.NoError(t, err)
	assert.Equal(t, "Ada", merged.FirstName, "the survivor keeps its values")
	assert.Equal(t, "Lovelace", merged.LastName, "and takes the loser's where it has none")
	assert.Equal(t, "Countess", merged.Title)
	assert.Equal(t, []string{"vip", "newsletter"}, merged.Tags)
	assert.Equal(t, "fair", merged.Custom["source"])
	d, err := env.engine.Deals().Get(ctx, deal.ID)
	require.NoError(t, err)
	assert.Equal(t, ada.ID, d.ContactID)
	c, err := env.engine.Interactions().Get(ctx, call.ID)
	require.NoError(t, err)
	assert.Equal(t, ada.ID, c.ContactID)
	tl, err := contacts.Timeline(ctx, ada.ID, crm.TimelineOptions{})
	require.NoError(t, err)
	var types []string
	for _, e := range tl.Items {
		types = append(types, e.Type)
	}
	assert.Equal(t, []string{crm.TimelineInteraction, crm.TimelineMerged}, types)

	// The loser is a tombstone that points at the survivor.
	loser, err := contacts.Get(ctx, dup.ID)
	require.NoError(t, err)
	assert.Equal(t, ada.ID, loser.MergedInto)
	assert.False(t, loser.ArchivedAt.IsZero())
	assert.Empty(t, loser.Email)
	list, err := contacts.List(ctx, crm.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 1)
	evs := rec.wait(t, 2)
	assert.Equal(t, "contact.merged", evs[1].Type)
	_, err = env.engine.Default().MergeContacts(ctx, ada.ID, dup.ID, crm.MergeOptions{})
	require.ErrorIs(t, err, crm.ErrInvalid, "a tombstone cannot be merged again")
	_, err = contacts.Restore(ctx, dup.ID, crm.ChangeOptions{})
	require.ErrorIs(t, err, crm.ErrInvalid, "nor restored")
	loser.MergedInto = ""
	_, err = contacts.Update(ctx, loser)
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
}

func TestAccountDuplicatesAndMerge(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	acme, err := env.engine.Accounts().Create(ctx, crm.Account{Name: "ACME, Inc.", City: "Paris"})
	require.NoError(t, err)
	other, err := env.engine.Accounts().Create(ctx, crm.Account{Name: "Acme", City: "paris", Domain: "acme.example", Industry: "anvils"})
	require.NoError(t, err)
	_, err = env.engine.Accounts().Create(ctx, crm.Account{Name: "Acme", City: "Lyon"})
	require.NoError(t, err)
	matches, err := env.engine.Accounts().Duplicates(ctx, acme)
	require.NoError(t, err)
	require.Len(t, matches, 1, "same name and city; Lyon is another Acme")
	assert.Equal(t, other.ID, matches[0].Record.ID)
	assert.Equal(t, []string{"name+city:acme|paris"}, matches[0].Reasons)

	person, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "Wile", AccountID: other.ID})
	require.NoError(t, err)
	merged, err := env.engine.Default().MergeAccounts(ctx, acme.ID, other.ID, crm.MergeOptions{})
	require.NoError(t, err)
	assert.Equal(t, "acme.example", merged.Domain, "the released domain moves to the survivor")
	assert.Equal(t, "anvils", merged.Industry)
	p, err := env.engine.Contacts().Get(ctx, person.ID)
	require.NoError(t, err)
	assert.Equal(t, acme.ID, p.AccountID)
	require.NoError(t, env.engine.Accounts().Delete(ctx, other.ID), "nothing refers to the tombstone any more")
}

// The indexer works through the outbox a batch at a time (records created
// together are in one batch), and suspects each new record of the records
// indexed before it, as if it indexed them one by one: of records stored
// earlier and of those earlier in the batch, never of one after it.
func TestDuplicatesSuspectedWithinOneBatch(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	rec := newRecorder()
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "dups", Events: []string{"contact.duplicate_suspected", "contact.updated"}, Handler: rec.handle}))
	contacts := env.engine.Contacts()
	x, err := contacts.Create(ctx, crm.Contact{FirstName: "Xavier", Email: "x@example.com"})
	require.NoError(t, err)
	_, err = contacts.Search(ctx, "xavier", crm.SearchOptions{}) // indexed before the batch
	require.NoError(t, err)

	batch, err := contacts.CreateMany(ctx, []crm.Contact{
		{FirstName: "Ada", Email: "ada@example.com"},
		{FirstName: "Ada", Email: "ada+b@example.com"},
		{FirstName: "Ada", Email: "ada+c@example.com"},
		{FirstName: "Xena", Email: "x+d@example.com"},
		{FirstName: "Grace", Email: "grace@example.com"},
	})
	require.NoError(t, err)
	a, b, c, d := batch[0].ID, batch[1].ID, batch[2].ID, batch[3].ID
	_, err = contacts.Search(ctx, "ada", crm.SearchOptions{}) // the batch is indexed
	require.NoError(t, err)
	// An update after the batch's suspicions: once it is delivered, so
	// are they all.
	x.Title = "Dr"
	_, err = contacts.Update(ctx, x)
	require.NoError(t, err)
	evs := rec.wait(t, 4)
	require.Len(t, evs, 4)
	assert.Equal(t, "contact.updated", evs[3].Type)
	suspected := map[string][]string{}
	for _, ev := range evs[:3] {
		assert.Equal(t, "contact.duplicate_suspected", ev.Type)
		var data struct {
			Candidates []struct {
				ID      string   `json:"id"`
				Reasons []string `json:"reasons"`
			} `json:"candidates"`
		}
		require.NoError(t, json.Unmarshal(ev.Data, &data))
		reason := "email:ada@example.com"
		if ev.ID == d {
			reason = "email:x@example.com"
		}
		for _, cand := range data.Candidates {
			assert.Equal(t, []string{reason}, cand.Reasons)
			suspected[ev.ID] = append(suspected[ev.ID], cand.ID)
		}
	}
	assert.Len(t, suspected, 3, "one event each for the second and third Ada and for Xena")
	assert.Equal(t, []string{a}, suspected[b])
	assert.ElementsMatch(t, []string{a, b}, suspected[c])
	assert.Equal(t, []string{x.ID}, suspected[d])
}
