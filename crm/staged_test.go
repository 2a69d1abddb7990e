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

func saveBuiltin(t *testing.T, env env, names ...string) {
	t.Helper()
	for _, name := range names {
		def, err := pipeline.Builtin(name)
		require.NoError(t, err)
		require.NoError(t, env.engine.Pipelines().Save(context.Background(), def))
	}
}

func TestLeadPipeline(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	saveBuiltin(t, env, "lead", "b2b-deal")
	rec := newRecorder()
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "leads", Events: []string{"lead.stage_changed"}, Handler: rec.handle}))
	leads := env.engine.Leads()

	l, err := leads.Create(ctx, crm.Lead{FirstName: "Hank", Pipeline: "lead"})
	require.NoError(t, err)
	assert.Equal(t, "registered", l.Stage)
	assert.Equal(t, env.clock.Now().Add(24*time.Hour), l.StageDueAt)

	// Qualifying needs an email; converting needs a company (a guard).
	_, err = leads.Move(ctx, l.ID, "qualified", crm.MoveOptions{})
	var missing *pipeline.MissingFieldsError
	require.ErrorAs(t, err, &missing)
	assert.Equal(t, []string{"email"}, missing.Fields)
	l.Email = "hank@globex.example"
	l, err = leads.Update(ctx, l)
	require.NoError(t, err)
	l, err = leads.Move(ctx, l.ID, "qualified", crm.MoveOptions{Version: l.Version})
	require.NoError(t, err)
	l, err = leads.Move(ctx, l.ID, "nurturing", crm.MoveOptions{})
	require.NoError(t, err)
	assert.Equal(t, env.clock.Now().Add(30*24*time.Hour), l.StageDueAt)
	_, err = leads.Move(ctx, l.ID, "converted", crm.MoveOptions{})
	var guard *pipeline.GuardError
	require.ErrorAs(t, err, &guard)
	assert.Contains(t, guard.Error(), "a lead needs a company")
	l.Company = "Globex"
	l, err = leads.Update(ctx, l)
	require.NoError(t, err)
	allowed, err := leads.Allowed(ctx, l.ID, pipeline.Actor{})
	require.NoError(t, err)
	var keys []string
	for _, st := range allowed {
		keys = append(keys, st.Key)
	}
	assert.Equal(t, []string{"qualified", "converted", "disqualified"}, keys, "back one, any terminal")
	l, err = leads.Move(ctx, l.ID, "converted", crm.MoveOptions{})
	require.NoError(t, err)
	assert.True(t, l.StageDueAt.IsZero(), "terminal stages have no norm")
	allowed, err = leads.Allowed(ctx, l.ID, pipeline.Actor{})
	require.NoError(t, err)
	assert.Empty(t, allowed)

	// A converted lead cannot move on: the pipeline does not reopen.
	before := snapshot(t, env.store, "default")
	_, err = leads.Move(ctx, l.ID, "nurturing", crm.MoveOptions{})
	require.ErrorIs(t, err, pipeline.ErrTransitionNotAllowed)
	assert.Equal(t, before, snapshot(t, env.store, "default"))

	evs := rec.wait(t, 3)
	for _, ev := range evs {
		assert.Equal(t, "lead.stage_changed", ev.Type)
		assert.Equal(t, l.ID, ev.ID)
	}
	hist, err := leads.History(ctx, l.ID)
	require.NoError(t, err)
	var path []string
	for _, h := range hist {
		path = append(path, h.To)
	}
	assert.Equal(t, []string{"registered", "qualified", "nurturing", "converted"}, path)

	// A lead's stage lists by the stage index.
	p, err := leads.List(ctx, crm.ListOptions{By: "stage", Value: "lead/converted"})
	require.NoError(t, err)
	require.Len(t, p.Items, 1)

	// A pipeline of another kind is refused, on create and on change.
	_, err = leads.Create(ctx, crm.Lead{FirstName: "X", Pipeline: "b2b-deal"})
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	f, ok := ve.Field("pipeline")
	require.True(t, ok)
	assert.Contains(t, f.Message, "is for deals, not leads")
	_, err = leads.ChangePipeline(ctx, l.ID, "b2b-deal", "needs-clarification", crm.MoveOptions{})
	require.ErrorIs(t, err, crm.ErrInvalid)

	// Update cannot move a lead.
	l.Stage = "registered"
	_, err = leads.Update(ctx, l)
	require.ErrorAs(t, err, &ve)
	_, ok = ve.Field("stage")
	assert.True(t, ok)

	// The pipeline is in use: it cannot be deleted or become a deal pipeline.
	require.ErrorIs(t, env.engine.Pipelines().Delete(ctx, "lead"), crm.ErrInUse)
	asDeal, err := pipeline.Builtin("lead")
	require.NoError(t, err)
	asDeal.Kind = pipeline.KindDeal
	require.ErrorIs(t, env.engine.Pipelines().Save(ctx, asDeal), crm.ErrInUse)
}

func TestAccountLifecycle(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	saveBuiltin(t, env, "account-lifecycle")
	accounts := env.engine.Accounts()
	a, err := accounts.Create(ctx, crm.Account{Name: "Initech", Pipeline: "account-lifecycle"})
	require.NoError(t, err)
	assert.Equal(t, "awareness", a.Stage)
	for _, to := range []string{"exploration", "expansion", "commitment", "dissolution", "commitment"} {
		env.clock.Advance(24 * time.Hour)
		a, err = accounts.Move(ctx, a.ID, to, crm.MoveOptions{Reason: "merged"})
		require.NoError(t, err, to)
		assert.Equal(t, to, a.Stage)
	}
	hist, err := accounts.History(ctx, a.ID)
	require.NoError(t, err)
	require.Len(t, hist, 6)
	assert.Equal(t, "dissolution", hist[5].From, "the lifecycle reopens")
	assert.Equal(t, 24*time.Hour, hist[5].InPrevious)

	// Past the exploration norm of 90 days, an account is overdue.
	b, err := accounts.Create(ctx, crm.Account{Name: "Umbrella", Pipeline: "account-lifecycle", Stage: "exploration"})
	require.NoError(t, err)
	env.clock.Advance(91 * 24 * time.Hour)
	page, err := accounts.Overdue(ctx, crm.OverdueOptions{})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, b.ID, page.Items[0].Record.ID)
	assert.Equal(t, 24*time.Hour, page.Items[0].By)
	timers, err := env.engine.CheckTimers(ctx)
	require.NoError(t, err)
	assert.Equal(t, crm.Timers{Breaches: 1}, timers)
}

func TestCaseNormsFromContract(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	saveBuiltin(t, env, "service-case")
	start := env.clock.Now() // Sunday 1 March 2026, 09:00 UTC
	acct, err := env.engine.Accounts().Create(ctx, crm.Account{Name: "Initech"})
	require.NoError(t, err)
	contract, err := env.engine.Contracts().Create(ctx, crm.Contract{
		Title: "SUP-1", AccountID: acct.ID,
		ResponseTime:   pipeline.Norm{Duration: time.Hour},
		ResolutionTime: pipeline.Norm{BusinessDays: 2},
	})
	require.NoError(t, err)
	cases := env.engine.Cases()

	// Under the contract: respond within an hour, resolve within two
	// business days of opening, however long the case waits in between.
	c, err := cases.Create(ctx, crm.Case{Subject: "Printer on fire", AccountID: acct.ID, ContractID: contract.ID, Pipeline: "service-case"})
	require.NoError(t, err)
	assert.Equal(t, crm.Normal, c.Priority)
	assert.Equal(t, start.Add(time.Hour), c.StageDueAt)
	env.clock.Advance(30 * time.Minute)
	c, err = cases.Move(ctx, c.ID, "in-progress", crm.MoveOptions{})
	require.NoError(t, err)
	tuesday := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC) // Mon 2, Tue 3 March
	assert.Equal(t, tuesday, c.StageDueAt)
	env.clock.Advance(time.Hour)
	c, err = cases.Move(ctx, c.ID, "waiting-for-customer", crm.MoveOptions{})
	require.NoError(t, err)
	env.clock.Advance(time.Hour)
	c, err = cases.Move(ctx, c.ID, "in-progress", crm.MoveOptions{})
	require.NoError(t, err)
	assert.Equal(t, tuesday, c.StageDueAt, "the resolution time counts from opening")

	// Resolving needs a resolution.
	_, err = cases.Move(ctx, c.ID, "resolved", crm.MoveOptions{})
	var missing *pipeline.MissingFieldsError
	require.ErrorAs(t, err, &missing)
	c.Resolution = "Extinguished.\nReplaced the fuser."
	c, err = cases.Update(ctx, c)
	require.NoError(t, err)
	c, err = cases.Move(ctx, c.ID, "resolved", crm.MoveOptions{})
	require.NoError(t, err)
	c, err = cases.Move(ctx, c.ID, "closed", crm.MoveOptions{})
	require.NoError(t, err)
	assert.True(t, c.StageDueAt.IsZero())

	// Without a contract, the stage's own norm applies.
	plain, err := cases.Create(ctx, crm.Case{Subject: "Question", Pipeline: "service-case"})
	require.NoError(t, err)
	assert.Equal(t, env.clock.Now().Add(4*time.Hour), plain.StageDueAt)

	// The contract is in use; a bad case is refused with every problem.
	require.ErrorIs(t, env.engine.Contracts().Delete(ctx, contract.ID), crm.ErrInUse)
	before := snapshot(t, env.store, "default")
	_, err = cases.Create(ctx, crm.Case{Priority: "whenever", ContractID: "nope", Description: "bell\a", Pipeline: "service-case", Stage: "limbo"})
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	for _, field := range []string{"subject", "priority", "contract_id", "description", "stage"} {
		_, ok := ve.Field(field)
		assert.True(t, ok, field)
	}
	_, err = env.engine.Contracts().Create(ctx, crm.Contract{Title: "bad", StartsOn: "2026-05-01", EndsOn: "2026-04-01", ResponseTime: pipeline.Norm{Duration: -time.Hour}})
	require.ErrorAs(t, err, &ve)
	_, ok := ve.Field("ends_on")
	assert.True(t, ok)
	_, ok = ve.Field("response_time")
	assert.True(t, ok)
	assert.Equal(t, before, snapshot(t, env.store, "default"))
}

func TestOverdueByOwnersAndDeletedBreaches(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	saveBuiltin(t, env, "b2c-deal")
	deals := env.engine.Deals()
	var ids []string
	for _, owner := range []string{"ann", "bob", "cy", "ann"} {
		d, err := deals.Create(ctx, crm.Deal{Title: "D", Pipeline: "b2c-deal", Meta: crm.Meta{Owner: owner}})
		require.NoError(t, err)
		ids = append(ids, d.ID)
		env.clock.Advance(time.Minute)
	}
	env.clock.Advance(73 * time.Hour)
	all, err := deals.Overdue(ctx, crm.OverdueOptions{})
	require.NoError(t, err)
	require.Len(t, all.Items, 4)
	assert.Equal(t, ids[0], all.Items[0].Record.ID, "most overdue first")
	ann, err := deals.Overdue(ctx, crm.OverdueOptions{Owners: []string{"ann"}, Limit: 1})
	require.NoError(t, err)
	require.Len(t, ann.Items, 1)
	assert.Equal(t, ids[0], ann.Items[0].Record.ID)
	ann, err = deals.Overdue(ctx, crm.OverdueOptions{Owners: []string{"ann"}, Limit: 1, Cursor: ann.Next})
	require.NoError(t, err)
	require.Len(t, ann.Items, 1)
	assert.Equal(t, ids[3], ann.Items[0].Record.ID)
	team, err := deals.Overdue(ctx, crm.OverdueOptions{Owners: []string{"bob", "cy"}})
	require.NoError(t, err)
	require.Len(t, team.Items, 2)
	assert.Equal(t, ids[1], team.Items[0].Record.ID)
	_, err = deals.Overdue(ctx, crm.OverdueOptions{Owners: []string{""}})
	require.ErrorIs(t, err, crm.ErrInvalid)

	timers, err := env.engine.CheckTimers(ctx)
	require.NoError(t, err)
	assert.Equal(t, 4, timers.Breaches)
	// Deleting a breached deal removes its marker too.
	for _, id := range ids {
		require.NoError(t, deals.Delete(ctx, id))
	}
	for _, line := range snapshot(t, env.store, "default") {
		assert.NotContains(t, line, "notices/")
	}
}

// TestPipelineRecreatedWithAnotherKind: a pipeline deleted and saved again
// under the same name is compiled afresh, not served from the cache.
func TestPipelineRecreatedWithAnotherKind(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	asLead := &pipeline.Definition{Name: "p", Kind: pipeline.KindLead, Stages: []pipeline.Stage{{Key: "a"}, {Key: "b"}}}
	require.NoError(t, env.engine.Pipelines().Save(ctx, asLead))
	l, err := env.engine.Leads().Create(ctx, crm.Lead{FirstName: "L", Pipeline: "p"})
	require.NoError(t, err)
	assert.Equal(t, "a", l.Stage)
	require.NoError(t, env.engine.Leads().Delete(ctx, l.ID))
	require.NoError(t, env.engine.Pipelines().Delete(ctx, "p"))

	asDeal := &pipeline.Definition{Name: "p", Kind: pipeline.KindDeal, Stages: []pipeline.Stage{{Key: "x"}, {Key: "y"}}}
	require.NoError(t, env.engine.Pipelines().Save(ctx, asDeal))
	d, err := env.engine.Deals().Create(ctx, crm.Deal{Title: "D", Pipeline: "p", Stage: "x"})
	require.NoError(t, err)
	assert.Equal(t, "x", d.Stage)
	_, err = env.engine.Leads().Create(ctx, crm.Lead{FirstName: "L", Pipeline: "p"})
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
}

// TestDueTimesFollowDefinitionsAndContracts: changing a live pipeline's
// norms, or a contract's terms, recomputes the due times of the records
// they apply to, in the same transaction.
func TestDueTimesFollowDefinitionsAndContracts(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	def := &pipeline.Definition{Name: "p", Kind: pipeline.KindLead, Stages: []pipeline.Stage{
		{Key: "a", Norm: pipeline.Norm{Duration: time.Hour}}, {Key: "b"}, {Key: "done", Terminal: pipeline.Converted}}}
	require.NoError(t, env.engine.Pipelines().Save(ctx, def))
	l, err := env.engine.Leads().Create(ctx, crm.Lead{FirstName: "L", Pipeline: "p"})
	require.NoError(t, err)
	start := env.clock.Now()
	assert.Equal(t, start.Add(time.Hour), l.StageDueAt)

	def.Stages[0].Norm = pipeline.Norm{Duration: 3 * time.Hour}
	require.NoError(t, env.engine.Pipelines().Save(ctx, def))
	got, err := env.engine.Leads().Get(ctx, l.ID)
	require.NoError(t, err)
	assert.Equal(t, start.Add(3*time.Hour), got.StageDueAt)
	assert.Equal(t, l.Version+1, got.Version)

	// A norm that is removed leaves nothing overdue.
	def.Stages[0].Norm = pipeline.Norm{}
	require.NoError(t, env.engine.Pipelines().Save(ctx, def))
	env.clock.Advance(24 * time.Hour)
	page, err := env.engine.Leads().Overdue(ctx, crm.OverdueOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items)
	timers, err := env.engine.CheckTimers(ctx)
	require.NoError(t, err)
	assert.Zero(t, timers.Breaches)

	// A contract's new terms move its cases' due times.
	saveBuiltin(t, env, "service-case")
	contract, err := env.engine.Contracts().Create(ctx, crm.Contract{Title: "SUP-2", ResponseTime: pipeline.Norm{Duration: 2 * time.Hour}})
	require.NoError(t, err)
	c, err := env.engine.Cases().Create(ctx, crm.Case{Subject: "Broken", ContractID: contract.ID, Pipeline: "service-case"})
	require.NoError(t, err)
	assert.Equal(t, env.clock.Now().Add(2*time.Hour), c.StageDueAt)
	contract.ResponseTime = pipeline.Norm{Duration: 30 * time.Minute}
	_, err = env.engine.Contracts().Update(ctx, contract)
	require.NoError(t, err)
	c, err = env.engine.Cases().Get(ctx, c.ID)
	require.NoError(t, err)
	assert.Equal(t, env.clock.Now().Add(30*time.Minute), c.StageDueAt)

	// Norms that could not be stored and read back are refused.
	_, err = env.engine.Contracts().Create(ctx, crm.Contract{Title: "X", ResolutionTime: pipeline.Norm{Duration: 4000 * 24 * time.Hour}})
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	_, ok := ve.Field("resolution_time")
	assert.True(t, ok)
	def.Stages[1].Norm = pipeline.Norm{BusinessDays: -1}
	require.ErrorIs(t, env.engine.Pipelines().Save(ctx, def), pipeline.ErrInvalidDefinition)
}

// TestResolutionBreachFiresOnce: the resolution deadline counts from when
// the case was opened, so going back and forth does not fire it again.
func TestResolutionBreachFiresOnce(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	saveBuiltin(t, env, "service-case")
	contract, err := env.engine.Contracts().Create(ctx, crm.Contract{Title: "SUP-3", ResolutionTime: pipeline.Norm{Duration: 4 * time.Hour}})
	require.NoError(t, err)
	cases := env.engine.Cases()
	c, err := cases.Create(ctx, crm.Case{Subject: "Slow", ContractID: contract.ID, Pipeline: "service-case", Stage: "in-progress"})
	require.NoError(t, err)
	breaches := 0
	for i := range 6 {
		env.clock.Advance(time.Hour)
		to := "waiting-for-customer"
		if i%2 == 1 {
			to = "in-progress"
		}
		_, err = cases.Move(ctx, c.ID, to, crm.MoveOptions{})
		require.NoError(t, err)
		timers, err := env.engine.CheckTimers(ctx)
		require.NoError(t, err)
		breaches += timers.Breaches
	}
	assert.Equal(t, 1, breaches, "one deadline, one breach")
}

func TestStagedBadInput(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	saveBuiltin(t, env, "b2c-deal")
	before := snapshot(t, env.store, "default")
	_, err := env.engine.Deals().Create(ctx, crm.Deal{Title: "Future", Pipeline: "b2c-deal", StageEnteredAt: env.clock.Now().Add(time.Hour)})
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	_, ok := ve.Field("stage_entered_at")
	assert.True(t, ok)
	_, err = env.engine.Deals().Create(ctx, crm.Deal{Title: "Nowhere", Stage: "new"})
	require.ErrorAs(t, err, &ve)
	_, ok = ve.Field("pipeline")
	assert.True(t, ok)
	_, err = env.engine.Deals().Move(ctx, "missing", "new", crm.MoveOptions{})
	require.ErrorIs(t, err, crm.ErrNotFound)
	assert.Equal(t, before, snapshot(t, env.store, "default"))

	// A deal in no pipeline cannot move.
	d, err := env.engine.Deals().Create(ctx, crm.Deal{Title: "Loose"})
	require.NoError(t, err)
	_, err = env.engine.Deals().Move(ctx, d.ID, "new", crm.MoveOptions{})
	require.ErrorIs(t, err, crm.ErrInvalid)
	allowed, err := env.engine.Deals().Allowed(ctx, d.ID, pipeline.Actor{})
	require.NoError(t, err)
	assert.Empty(t, allowed)
}

// TestPipelineVersions: every save keeps a version; history entries name
// the version they were made under, and versions outlive the pipeline.
func TestPipelineVersions(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	def := &pipeline.Definition{Name: "p", Kind: pipeline.KindDeal, Stages: []pipeline.Stage{{Key: "a"}, {Key: "b"}, {Key: "c"}}}
	require.NoError(t, env.engine.Pipelines().Save(ctx, def))
	d, err := env.engine.Deals().Create(ctx, crm.Deal{Title: "D", Pipeline: "p"})
	require.NoError(t, err)
	def.Stages = []pipeline.Stage{{Key: "b"}, {Key: "c"}} // drops a, where the deal is
	require.NoError(t, env.engine.Pipelines().SaveWith(ctx, def, crm.SaveOptions{StageMap: map[string]string{"a": "b"}, Actor: pipeline.Actor{ID: "admin"}}))
	_, err = env.engine.Deals().Move(ctx, d.ID, "c", crm.MoveOptions{})
	require.NoError(t, err)

	hist, err := env.engine.Deals().History(ctx, d.ID)
	require.NoError(t, err)
	require.Len(t, hist, 3)
	assert.Equal(t, []uint64{1, 2, 2}, []uint64{hist[0].PipelineVersion, hist[1].PipelineVersion, hist[2].PipelineVersion})
	versions, err := env.engine.Pipelines().Versions(ctx, "p")
	require.NoError(t, err)
	require.Len(t, versions, 2)
	assert.Len(t, versions[0].Definition.Stages, 3)
	assert.Len(t, versions[1].Definition.Stages, 2)
	assert.Equal(t, "admin", versions[1].Actor)

	// Deleted and saved again, the pipeline's versions count on.
	require.NoError(t, env.engine.Deals().Delete(ctx, d.ID))
	require.NoError(t, env.engine.Pipelines().Delete(ctx, "p"))
	require.NoError(t, env.engine.Pipelines().Save(ctx, def))
	versions, err = env.engine.Pipelines().Versions(ctx, "p")
	require.NoError(t, err)
	require.Len(t, versions, 3)
	assert.Equal(t, uint64(3), versions[2].Version)

	// A name with '@' is refused and nothing is stored.
	before := snapshot(t, env.store, "default")
	bad := *def
	bad.Name = "p@2"
	require.ErrorIs(t, env.engine.Pipelines().Save(ctx, &bad), crm.ErrInvalid)
	assert.Equal(t, before, snapshot(t, env.store, "default"))
}
