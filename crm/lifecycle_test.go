package crm_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
)

func TestArchiveAndRestore(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	rec := newRecorder()
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "arch", Events: []string{"contact.archived", "contact.restored"}, Handler: rec.handle}))
	contacts := env.engine.Contacts()
	gone, err := contacts.Create(ctx, crm.Contact{FirstName: "Gone", Email: "gone@example.com"})
	require.NoError(t, err)
	_, err = contacts.Create(ctx, crm.Contact{FirstName: "Here", Email: "here@example.com"})
	require.NoError(t, err)

	env.clock.Advance(time.Hour)
	archived, err := contacts.Archive(ctx, gone.ID, crm.ChangeOptions{Version: gone.Version, Reason: "lost to a competitor", Actor: "ann"})
	require.NoError(t, err)
	assert.Equal(t, env.clock.Now(), archived.ArchivedAt)

	list := func(a crm.Archived) []string {
		t.Helper()
		pg, err := contacts.List(ctx, crm.ListOptions{Archived: a})
		require.NoError(t, err)
		var names []string
		for _, c := range pg.Items {
			names = append(names, c.FirstName)
		}
		return names
	}
	assert.Equal(t, []string{"Here"}, list(crm.ArchivedExcluded))
	assert.Equal(t, []string{"Gone"}, list(crm.ArchivedOnly))
	assert.ElementsMatch(t, []string{"Gone", "Here"}, list(crm.ArchivedIncluded))
	found, err := contacts.Search(ctx, "gone", crm.SearchOptions{})
	require.NoError(t, err)
	assert.Empty(t, found.Items, "search leaves archived records out")
	got, err := contacts.Get(ctx, gone.ID)
	require.NoError(t, err, "archived records are still stored")
	assert.False(t, got.ArchivedAt.IsZero())

	// Only Archive and Restore change archived_at; archiving twice fails.
	before := snapshot(t, env.store, "default")
	_, err = contacts.Archive(ctx, gone.ID, crm.ChangeOptions{})
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = contacts.Archive(ctx, gone.ID, crm.ChangeOptions{Version: 1})
	require.ErrorIs(t, err, crm.ErrConflict)
	got.ArchivedAt = time.Time{}
	_, err = contacts.Update(ctx, got)
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	_, err = contacts.Create(ctx, crm.Contact{FirstName: "X", Meta: crm.Meta{ArchivedAt: env.clock.Now()}})
	require.ErrorAs(t, err, &ve)
	_, err = contacts.List(ctx, crm.ListOptions{Archived: "sometimes"})
	require.ErrorIs(t, err, crm.ErrInvalid)
	assert.Equal(t, before, snapshot(t, env.store, "default"))

	restored, err := contacts.Restore(ctx, gone.ID, crm.ChangeOptions{Actor: "bob"})
	require.NoError(t, err)
	assert.True(t, restored.ArchivedAt.IsZero())
	assert.ElementsMatch(t, []string{"Gone", "Here"}, list(crm.ArchivedExcluded))
	evs := rec.wait(t, 2)
	assert.Equal(t, []string{"contact.archived", "contact.restored"}, []string{evs[0].Type, evs[1].Type})
	tl, err := contacts.Timeline(ctx, gone.ID, crm.TimelineOptions{})
	require.NoError(t, err)
	require.Len(t, tl.Items, 2)
	assert.Equal(t, "archived; lost to a competitor; ann", tl.Items[0].Summary)
	assert.Equal(t, crm.TimelineRestored, tl.Items[1].Type)
}

func TestReassign(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	saveBuiltin(t, env, "b2c-deal")
	owned := crm.Meta{Owner: "ann"}
	for range 3 {
		_, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "C", Meta: owned})
		require.NoError(t, err)
	}
	var deals []crm.Deal
	for range 3 {
		d, err := env.engine.Deals().Create(ctx, crm.Deal{Title: "D", Pipeline: "b2c-deal", Meta: owned})
		require.NoError(t, err)
		deals = append(deals, d)
	}
	_, err := env.engine.Deals().Move(ctx, deals[0].ID, "lost", crm.MoveOptions{Reason: "price"})
	require.NoError(t, err)
	call, err := env.engine.Activities().Create(ctx, crm.Activity{Type: crm.Call, Subject: "Call", Assignee: "ann", Meta: crm.Meta{Owner: "boss"}})
	require.NoError(t, err)
	done, err := env.engine.Activities().Create(ctx, crm.Activity{Type: crm.Task, Subject: "Done", Meta: owned})
	require.NoError(t, err)
	_, err = env.engine.Activities().Complete(ctx, done.ID, 0)
	require.NoError(t, err)
	_, err = env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "Other", Meta: crm.Meta{Owner: "cy"}})
	require.NoError(t, err)
	delegated, err := env.engine.Activities().Create(ctx, crm.Activity{Type: crm.Task, Subject: "Delegated", Assignee: "cy", Meta: owned})
	require.NoError(t, err)

	moved, err := env.engine.Default().Reassign(ctx, "ann", "bob", crm.ReassignOptions{OpenOnly: true, Reason: "ann left", Actor: "boss"})
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"contact": 3, "deal": 2, "activity": 2}, moved)
	dl, err := env.engine.Activities().Get(ctx, delegated.ID)
	require.NoError(t, err)
	assert.Equal(t, "bob", dl.Owner, "an activity ann owns moves, its assignee stays")
	assert.Equal(t, "cy", dl.Assignee)

	lost, err := env.engine.Deals().Get(ctx, deals[0].ID)
	require.NoError(t, err)
	assert.Equal(t, "ann", lost.Owner, "closed deals keep their owner with OpenOnly")
	d1, err := env.engine.Deals().Get(ctx, deals[1].ID)
	require.NoError(t, err)
	assert.Equal(t, "bob", d1.Owner)
	c, err := env.engine.Activities().Get(ctx, call.ID)
	require.NoError(t, err)
	assert.Equal(t, "bob", c.Assignee)
	assert.Equal(t, "boss", c.Owner)
	tl, err := env.engine.Deals().Timeline(ctx, d1.ID, crm.TimelineOptions{Reverse: true, Limit: 1})
	require.NoError(t, err)
	assert.Equal(t, crm.TimelineAssigned, tl.Items[0].Type)
	assert.Equal(t, "ann → bob; ann left; boss", tl.Items[0].Summary)
	byOwner, err := env.engine.Contacts().List(ctx, crm.ListOptions{By: "owner", Value: "bob"})
	require.NoError(t, err)
	assert.Len(t, byOwner.Items, 3)

	// Without OpenOnly the rest goes too; bad input changes nothing.
	moved, err = env.engine.Default().Reassign(ctx, "ann", "bob", crm.ReassignOptions{})
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"deal": 1, "activity": 1}, moved, "the lost deal and the done task")
	before := snapshot(t, env.store, "default")
	_, err = env.engine.Default().Reassign(ctx, "bob", "bob", crm.ReassignOptions{})
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = env.engine.Default().Reassign(ctx, "bob", "", crm.ReassignOptions{})
	require.Error(t, err)
	assert.Equal(t, before, snapshot(t, env.store, "default"))
}
