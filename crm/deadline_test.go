package crm_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

// TestBreachesFireOnceOverAMonth walks a fake clock through a month an
// hour at a time, checking deadlines at every step.
func TestBreachesFireOnceOverAMonth(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	def, err := pipeline.Builtin("b2b-deal")
	require.NoError(t, err)
	require.NoError(t, env.engine.Pipelines().Save(ctx, def))
	deals := env.engine.Deals()
	start := env.clock.Now() // Sunday 1 March 2026, 09:00 UTC

	a, err := deals.Create(ctx, crm.Deal{Title: "A", Pipeline: "b2b-deal", Meta: crm.Meta{Owner: "u1"}})
	require.NoError(t, err)
	// 5 business days from Sunday 09:00: Friday 6 March 09:00.
	assert.Equal(t, time.Date(2026, 3, 6, 9, 0, 0, 0, time.UTC), a.StageDueAt)
	b, err := deals.Create(ctx, crm.Deal{Title: "B", Pipeline: "b2b-deal", Amount: crm.Money{Amount: 1, Currency: "EUR"}, Meta: crm.Meta{Owner: "u2"}})
	require.NoError(t, err)
	c, err := deals.Create(ctx, crm.Deal{Title: "C", Pipeline: "b2b-deal"})
	require.NoError(t, err)

	var breaches []struct {
		deal, stage string
		at          time.Time
	}
	check := func() {
		n, err := deals.CheckDeadlines(ctx)
		require.NoError(t, err)
		if n == 0 {
			return
		}
		evs, err := env.store.ReadOutbox(ctx, "breach-test", 1000)
		require.NoError(t, err)
		for _, ev := range evs {
			if ev.Type == "sla.breached" {
				var body struct{ Data crm.Deal }
				require.NoError(t, json.Unmarshal(ev.Body, &body))
				breaches = append(breaches, struct {
					deal, stage string
					at          time.Time
				}{ev.RecordID, body.Data.Stage, ev.Time})
			}
		}
		require.NoError(t, env.store.AckOutbox(ctx, "breach-test", evs[len(evs)-1].Seq))
	}
	for h := 1; h <= 31*24; h++ {
		env.clock.Advance(time.Hour)
		switch env.clock.Now() {
		case start.Add(24 * time.Hour): // Monday: C is lost, B moves on.
			_, err := deals.Move(ctx, c.ID, "lost", crm.MoveOptions{Reason: "price"})
			require.NoError(t, err)
		case start.Add(48 * time.Hour): // Tuesday 09:00
			b, err = deals.Move(ctx, b.ID, "proposal-prepared", crm.MoveOptions{})
			require.NoError(t, err)
			// Wed 4, Thu 5, Fri 6, Mon 9, Tue 10 March.
			assert.Equal(t, time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC), b.StageDueAt)
		}
		check()
	}
	require.Len(t, breaches, 2, "%+v", breaches)
	assert.Equal(t, a.ID, breaches[0].deal)
	assert.Equal(t, "needs-clarification", breaches[0].stage)
	assert.Equal(t, time.Date(2026, 3, 6, 10, 0, 0, 0, time.UTC), breaches[0].at, "first check after the deadline")
	assert.Equal(t, b.ID, breaches[1].deal)
	assert.Equal(t, "proposal-prepared", breaches[1].stage)
	assert.Equal(t, time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC), breaches[1].at)

	// Overdue lists both, most overdue first, and filters by owner.
	page, err := deals.Overdue(ctx, crm.OverdueOptions{})
	require.NoError(t, err)
	require.Len(t, page.Items, 2)
	assert.Equal(t, a.ID, page.Items[0].Record.ID)
	assert.Equal(t, env.clock.Now().Sub(a.StageDueAt), page.Items[0].By)
	page, err = deals.Overdue(ctx, crm.OverdueOptions{Owners: []string{"u2"}})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, b.ID, page.Items[0].Record.ID)

	// Leaving the stage starts a new norm, which can breach again.
	b, err = deals.Move(ctx, b.ID, "needs-clarification", crm.MoveOptions{})
	require.NoError(t, err)
	page, err = deals.Overdue(ctx, crm.OverdueOptions{Owners: []string{"u2"}})
	require.NoError(t, err)
	assert.Empty(t, page.Items)
	for range 8 * 24 {
		env.clock.Advance(time.Hour)
		check()
	}
	require.Len(t, breaches, 3)
	assert.Equal(t, b.ID, breaches[2].deal)
	assert.Equal(t, "needs-clarification", breaches[2].stage)
	assert.Equal(t, b.StageDueAt.Add(time.Hour), breaches[2].at)
}
