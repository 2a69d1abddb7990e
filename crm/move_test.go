package crm_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

func dealInPipeline(t *testing.T, env env) crm.Deal {
	t.Helper()
	ctx := context.Background()
	def, err := pipeline.Builtin("b2b-deal")
	require.NoError(t, err)
	require.NoError(t, env.engine.Pipelines().Save(ctx, def))
	amount, err := crm.ParseMoney("25000", "EUR")
	require.NoError(t, err)
	d, err := env.engine.Deals().Create(ctx, crm.Deal{Title: "Rockets", Amount: amount, Pipeline: "b2b-deal"})
	require.NoError(t, err)
	require.Equal(t, "needs-clarification", d.Stage, "a deal given only a pipeline starts in its first stage")
	return d
}

func TestMoveThroughPipeline(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	rec := newRecorder()
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "stages", Events: []string{"deal.stage_changed"}, Handler: rec.handle}))
	d := dealInPipeline(t, env)
	deals := env.engine.Deals()
	actor := pipeline.Actor{ID: "u-1"}

	for _, to := range []string{"proposal-prepared", "proposal-defended", "contract"} {
		env.clock.Advance(26 * time.Hour)
		var err error
		d, err = deals.Move(ctx, d.ID, to, crm.MoveOptions{Version: d.Version, Actor: actor, Comment: "onward"})
		require.NoError(t, err, to)
		assert.Equal(t, to, d.Stage)
		assert.Equal(t, env.clock.Now(), d.StageEnteredAt)
	}
	// Won needs a contract reference (a required field).
	_, err := deals.Move(ctx, d.ID, "won", crm.MoveOptions{Actor: actor})
	var me *pipeline.MissingFieldsError
	require.ErrorAs(t, err, &me)
	// Lost needs a reason from the list.
	_, err = deals.Move(ctx, d.ID, "lost", crm.MoveOptions{Actor: actor})
	require.ErrorIs(t, err, pipeline.ErrReasonRequired)
	env.clock.Advance(time.Hour)
	d, err = deals.Move(ctx, d.ID, "lost", crm.MoveOptions{Actor: actor, Reason: "competitor"})
	require.NoError(t, err)

	hist, err := deals.History(ctx, d.ID)
	require.NoError(t, err)
	require.Len(t, hist, 5)
	assert.Equal(t, "", hist[0].From, "the first entry is the deal entering the pipeline")
	assert.Equal(t, "needs-clarification", hist[0].To)
	hist = hist[1:]
	assert.Equal(t, "needs-clarification", hist[0].From)
	assert.Equal(t, "proposal-prepared", hist[0].To)
	assert.Equal(t, 26*time.Hour, hist[0].InPrevious)
	assert.Equal(t, "u-1", hist[0].Actor)
	assert.Equal(t, "onward", hist[0].Comment)
	assert.Equal(t, "competitor", hist[3].Reason)
	assert.Equal(t, time.Hour, hist[3].InPrevious)

	evs := rec.wait(t, 4)
	var last crm.Deal
	require.NoError(t, evs[3].Decode(&last))
	assert.Equal(t, "lost", last.Stage)
	assert.Equal(t, []string{"stage", "stage_due_at", "stage_entered_at"}, evs[3].Changed, "lost has no norm: the due time is cleared")

	// Terminal: no further moves.
	_, err = deals.Move(ctx, d.ID, "contract", crm.MoveOptions{})
	require.ErrorIs(t, err, pipeline.ErrTransitionNotAllowed)
}

func TestRefusedMovesChangeNothing(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	d := dealInPipeline(t, env)
	deals := env.engine.Deals()
	before := snapshot(t, env.store, "default")
	var ge *pipeline.GuardError
	cases := map[string]struct {
		id, to string
		opts   crm.MoveOptions
		check  func(error) bool
	}{
		"unknown stage":      {d.ID, "signed", crm.MoveOptions{}, func(err error) bool { return errors.Is(err, pipeline.ErrUnknownStage) }},
		"skipping":           {d.ID, "contract", crm.MoveOptions{}, func(err error) bool { return errors.Is(err, pipeline.ErrTransitionNotAllowed) }},
		"stale version":      {d.ID, "proposal-prepared", crm.MoveOptions{Version: d.Version + 1}, func(err error) bool { return errors.Is(err, crm.ErrConflict) }},
		"missing deal":       {"nope", "proposal-prepared", crm.MoveOptions{}, func(err error) bool { return errors.Is(err, crm.ErrNotFound) }},
		"lost, wrong reason": {d.ID, "lost", crm.MoveOptions{Reason: "bad vibes"}, func(err error) bool { return errors.Is(err, pipeline.ErrReasonRequired) }},
	}
	for name, c := range cases {
		_, err := deals.Move(ctx, c.id, c.to, c.opts)
		assert.True(t, c.check(err), "%s: %v", name, err)
	}
	assert.Equal(t, before, snapshot(t, env.store, "default"), "refused moves wrote something")
	// A guard that refuses: a zero amount before the contract stage.
	zero, err := deals.Create(ctx, crm.Deal{Title: "Freebie", Pipeline: "b2b-deal", Stage: "proposal-defended"})
	require.NoError(t, err)
	before = snapshot(t, env.store, "default")
	_, err = deals.Move(ctx, zero.ID, "contract", crm.MoveOptions{})
	require.ErrorAs(t, err, &ge)
	assert.Equal(t, before, snapshot(t, env.store, "default"), "a refused move wrote something")

	// Update cannot change the stage behind the pipeline's back.
	d.Stage = "won"
	_, err = deals.Update(ctx, d)
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	_, ok := ve.Field("stage")
	assert.True(t, ok)
	assert.Equal(t, before, snapshot(t, env.store, "default"))
}

func TestConcurrentMovesOneWins(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	d := dealInPipeline(t, env)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = env.engine.Deals().Move(ctx, d.ID, "proposal-prepared", crm.MoveOptions{Version: d.Version})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else {
			require.ErrorIs(t, err, crm.ErrConflict)
		}
	}
	assert.Equal(t, 1, won)
	hist, err := env.engine.Deals().History(ctx, d.ID)
	require.NoError(t, err)
	assert.Len(t, hist, 2, "the entry into the pipeline and exactly one move")
}

func TestPipelineDefinitionsInUse(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	d := dealInPipeline(t, env)
	def, err := env.engine.Pipelines().Get(ctx, "b2b-deal")
	require.NoError(t, err)
	assert.Len(t, def.Stages, 6)

	// Removing the occupied first stage is refused.
	smaller := *def
	smaller.Stages = def.Stages[1:]
	require.ErrorIs(t, env.engine.Pipelines().Save(ctx, &smaller), crm.ErrInUse)
	require.ErrorIs(t, env.engine.Pipelines().Delete(ctx, "b2b-deal"), crm.ErrInUse)

	// Changing a guard is fine, and moves use the new version at once.
	changed := *def
	changed.Guards = []pipeline.Guard{{From: "*", To: "proposal-prepared", When: `actor.id == "boss"`, Message: "only the boss"}}
	require.NoError(t, env.engine.Pipelines().Save(ctx, &changed))
	_, err = env.engine.Deals().Move(ctx, d.ID, "proposal-prepared", crm.MoveOptions{Actor: pipeline.Actor{ID: "intern"}})
	var ge *pipeline.GuardError
	require.ErrorAs(t, err, &ge)
	_, err = env.engine.Deals().Move(ctx, d.ID, "proposal-prepared", crm.MoveOptions{Actor: pipeline.Actor{ID: "boss"}})
	require.NoError(t, err)

	// An invalid definition is refused.
	bad := changed
	bad.Guards = []pipeline.Guard{{From: "*", To: "won", When: `record.`, Message: "x"}}
	require.ErrorIs(t, env.engine.Pipelines().Save(ctx, &bad), pipeline.ErrInvalidDefinition)

	require.NoError(t, env.engine.Deals().Delete(ctx, d.ID))
	require.NoError(t, env.engine.Pipelines().Delete(ctx, "b2b-deal"))
	_, err = env.engine.Pipelines().Get(ctx, "b2b-deal")
	require.ErrorIs(t, err, crm.ErrNotFound)
}

func TestChangePipelineAndMigrateStages(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	d := dealInPipeline(t, env)
	b2c, err := pipeline.Builtin("b2c-deal")
	require.NoError(t, err)
	require.NoError(t, env.engine.Pipelines().Save(ctx, b2c))
	deals := env.engine.Deals()

	_, err = deals.ChangePipeline(ctx, d.ID, "b2c-deal", "nope", crm.MoveOptions{})
	require.ErrorIs(t, err, pipeline.ErrUnknownStage)
	_, err = deals.ChangePipeline(ctx, d.ID, "b2c-deal", "lost", crm.MoveOptions{})
	require.ErrorIs(t, err, pipeline.ErrReasonRequired)
	_, err = deals.ChangePipeline(ctx, d.ID, "missing", "new", crm.MoveOptions{})
	require.ErrorIs(t, err, crm.ErrInvalid, "a missing pipeline is bad input, not a missing deal")
	require.NotErrorIs(t, err, crm.ErrNotFound)
	// Within its own pipeline a deal moves with Move, which checks the
	// transitions; ChangePipeline would skip them.
	_, err = deals.ChangePipeline(ctx, d.ID, "b2b-deal", "contract", crm.MoveOptions{})
	require.ErrorIs(t, err, crm.ErrInvalid)

	env.clock.Advance(time.Hour)
	moved, err := deals.ChangePipeline(ctx, d.ID, "b2c-deal", "offer-sent", crm.MoveOptions{Version: d.Version, Comment: "small after all"})
	require.NoError(t, err)
	assert.Equal(t, "b2c-deal", moved.Pipeline)
	assert.Equal(t, "offer-sent", moved.Stage)
	assert.Equal(t, env.clock.Now().Add(72*time.Hour), moved.StageDueAt)
	hist, err := deals.History(ctx, d.ID)
	require.NoError(t, err)
	require.Len(t, hist, 2)
	hist = hist[1:]
	assert.Equal(t, "b2b-deal", hist[0].FromPipeline)
	assert.Equal(t, "needs-clarification", hist[0].From)
	assert.Equal(t, "b2c-deal", hist[0].Pipeline)

	// Dropping the occupied stage needs a map; with one, the deal moves.
	smaller := *b2c
	smaller.Stages = append([]pipeline.Stage{b2c.Stages[0]}, b2c.Stages[2:]...)
	require.ErrorIs(t, env.engine.Pipelines().Save(ctx, &smaller), crm.ErrInUse)
	err = env.engine.Pipelines().SaveWith(ctx, &smaller, crm.SaveOptions{StageMap: map[string]string{"offer-sent": "gone"}})
	require.ErrorIs(t, err, crm.ErrInvalid)
	err = env.engine.Pipelines().SaveWith(ctx, &smaller, crm.SaveOptions{StageMap: map[string]string{"offer-sent": "new"}, Actor: pipeline.Actor{ID: "admin"}})
	require.NoError(t, err)
	got, err := deals.Get(ctx, d.ID)
	require.NoError(t, err)
	assert.Equal(t, "new", got.Stage)
	hist, err = deals.History(ctx, d.ID)
	require.NoError(t, err)
	require.Len(t, hist, 3)
	assert.Equal(t, "pipeline changed", hist[2].Reason)
	assert.Equal(t, "admin", hist[2].Actor)
	def, err := env.engine.Pipelines().Get(ctx, "b2c-deal")
	require.NoError(t, err)
	assert.Len(t, def.Stages, 3)
}

func TestMoveEach(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	rec := newRecorder()
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "stages", Events: []string{"deal.stage_changed"}, Handler: rec.handle}))
	a := dealInPipeline(t, env)
	deals := env.engine.Deals()
	b, err := deals.Create(ctx, crm.Deal{Title: "Boats", Pipeline: "b2b-deal"})
	require.NoError(t, err)
	plain, err := deals.Create(ctx, crm.Deal{Title: "No pipeline"})
	require.NoError(t, err)
	env.clock.Advance(3 * time.Hour)

	moved, errs, err := deals.MoveEach(ctx, []crm.MoveRequest{
		{ID: a.ID, To: "proposal-prepared", MoveOptions: crm.MoveOptions{Comment: "first"}},
		{ID: b.ID, To: "won"},                                 // no contract reference
		{ID: a.ID, To: "proposal-defended"},                   // sees the first move
		{ID: "0190c6d2-0000-7000-8000-000000000000", To: "x"}, // no such deal
		{ID: plain.ID, To: "won"},                             // in no pipeline
		{ID: b.ID, To: "lost"},                                // no reason
		{ID: b.ID, To: "lost", MoveOptions: crm.MoveOptions{Reason: "competitor", Version: b.Version + 1}}, // stale
		{ID: b.ID, To: "lost", MoveOptions: crm.MoveOptions{Reason: "competitor", Version: b.Version}},
	})
	require.NoError(t, err)
	require.Len(t, errs, 8)
	assert.NoError(t, errs[0])
	var missing *pipeline.MissingFieldsError
	assert.ErrorAs(t, errs[1], &missing)
	assert.NoError(t, errs[2])
	assert.ErrorIs(t, errs[3], crm.ErrNotFound)
	assert.ErrorIs(t, errs[4], crm.ErrInvalid)
	assert.ErrorIs(t, errs[5], pipeline.ErrReasonRequired)
	assert.ErrorIs(t, errs[6], crm.ErrConflict)
	assert.NoError(t, errs[7])
	assert.Equal(t, "proposal-defended", moved[2].Stage)
	assert.Equal(t, "lost", moved[7].Stage)
	assert.Zero(t, moved[1], "a refused move returns no record")

	got, err := deals.Get(ctx, a.ID)
	require.NoError(t, err)
	assert.Equal(t, moved[2], got)
	hist, err := deals.History(ctx, a.ID)
	require.NoError(t, err)
	require.Len(t, hist, 3)
	assert.Equal(t, "first", hist[1].Comment)
	assert.Equal(t, 3*time.Hour, hist[1].InPrevious)
	assert.Equal(t, time.Duration(0), hist[2].InPrevious, "moves of one batch happen at the same instant")
	hist, err = deals.History(ctx, b.ID)
	require.NoError(t, err)
	require.Len(t, hist, 2)
	assert.Equal(t, "competitor", hist[1].Reason)
	got, err = deals.Get(ctx, plain.ID)
	require.NoError(t, err)
	assert.Equal(t, plain, got, "a refused move changes nothing")
	assert.Len(t, rec.wait(t, 3), 3, "one event per move made")

	// A failure of the store stops the batch, which then writes nothing.
	before := snapshot(t, env.store, "default")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = deals.MoveEach(cancelled, []crm.MoveRequest{{ID: a.ID, To: "contract"}})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, before, snapshot(t, env.store, "default"))
}
