package crm_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

// saveAutomations loads YAML and saves it as the default tenant's set.
func saveAutomations(t *testing.T, e *crm.Engine, src string) {
	t.Helper()
	set, err := automation.Load("test.yaml", []byte(src), nil)
	require.NoError(t, err)
	require.NoError(t, e.Automations().Save(context.Background(), set))
}

// linked lists the activities linked to a record by the link index
// ("deal", "contact", ...).
func linked(t *testing.T, e *crm.Engine, by, id string) []crm.Activity {
	t.Helper()
	pg, err := e.Activities().List(context.Background(), crm.ListOptions{By: by, Value: id})
	require.NoError(t, err)
	return pg.Items
}

// eventually waits for cond, failing with msg.
func eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventuallyf(t, cond, 10*time.Second, 5*time.Millisecond, msg, args...)
}

// salesTeam stores a team with a manager and two members, and returns the
// members' and the manager's IDs.
func salesTeam(t *testing.T, e *crm.Engine) (rep1, rep2, lead string) {
	t.Helper()
	ctx := context.Background()
	team, err := e.Default().Teams().Create(ctx, crm.Team{Name: "Sales"})
	require.NoError(t, err)
	m, err := e.Default().Users().Create(ctx, crm.User{Name: "Lena Lead", Roles: []string{"team-lead"}, TeamID: team.ID})
	require.NoError(t, err)
	team.ManagerID = m.ID
	_, err = e.Default().Teams().Update(ctx, team)
	require.NoError(t, err)
	a, err := e.Default().Users().Create(ctx, crm.User{Name: "Rita Rep", TeamID: team.ID})
	require.NoError(t, err)
	b, err := e.Default().Users().Create(ctx, crm.User{Name: "Sam Seller", TeamID: team.ID})
	require.NoError(t, err)
	return a.ID, b.ID, m.ID
}

func b2bDeal(t *testing.T, e *crm.Engine, owner string) crm.Deal {
	t.Helper()
	ctx := context.Background()
	def, err := pipeline.Builtin("b2b-deal")
	require.NoError(t, err)
	require.NoError(t, e.Pipelines().Save(ctx, def))
	c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Zoë", LastName: "Łukasiewicz", Email: "zoe@example.com", Phone: "+48123456789"})
	require.NoError(t, err)
	d, err := e.Deals().Create(ctx, crm.Deal{Meta: crm.Meta{Owner: owner}, Title: "Robot arms", ContactID: c.ID,
		Amount: crm.Money{Amount: 1_000_000, Currency: "EUR"}, Pipeline: "b2b-deal", Stage: "needs-clarification"})
	require.NoError(t, err)
	return d
}

func TestNextStepTaskOnEveryDealStage(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	set, err := automation.Builtin("deal-next-step", nil)
	require.NoError(t, err)
	require.NoError(t, e.Automations().Save(ctx, set))
	rep, _, _ := salesTeam(t, e)
	d := b2bDeal(t, e, rep)

	_, err = e.Deals().Move(ctx, d.ID, "proposal-prepared", crm.MoveOptions{})
	require.NoError(t, err)
	eventually(t, func() bool { return len(linked(t, e, "deal", d.ID)) == 1 }, "no next-step task")
	acts := linked(t, e, "deal", d.ID)
	a := acts[0]
	assert.Equal(t, "Send the proposal for Robot arms to Zoë Łukasiewicz", a.Subject)
	assert.Equal(t, rep, a.Assignee)
	assert.Equal(t, crm.Task, a.Type)
	assert.Equal(t, env.clock.Now().Add(72*time.Hour), a.DueAt)
	assert.Equal(t, d.ContactID, a.ContactID)

	runs, err := e.Automations().Runs(ctx, "deals", d.ID)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	assert.Equal(t, crm.RunDone, runs[0].Status)
	assert.Equal(t, "next-step-proposal", runs[0].Automation)
	assert.Equal(t, "proposal-prepared", runs[0].Event.To)
	assert.Equal(t, "needs-clarification", runs[0].Event.From)

	_, err = e.Deals().Move(ctx, d.ID, "proposal-defended", crm.MoveOptions{})
	require.NoError(t, err)
	eventually(t, func() bool { return len(linked(t, e, "deal", d.ID)) == 2 }, "no second task")
	acts = linked(t, e, "deal", d.ID)
	subjects := []string{acts[0].Subject, acts[1].Subject}
	assert.Contains(t, subjects, "Agree the contract terms of Robot arms")
}

func TestSaveRefusesBadTemplates(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	for name, src := range map[string]string{
		"unknown field": `
automations:
  - name: x
    on: {event: deal.created}
    do:
      - activity: {subject: "Call {{.Deal.Titel}}"}`,
		"unknown var": `
automations:
  - name: x
    on: {event: deal.created}
    vars: {offer: "10%"}
    do:
      - activity: {subject: "Offer {{.Vars.discount}}"}`,
	} {
		t.Run(name, func(t *testing.T) {
			set, err := automation.Load("bad.yaml", []byte(src), nil)
			require.NoError(t, err)
			err = env.engine.Automations().Save(ctx, set)
			require.ErrorIs(t, err, automation.ErrInvalid)
			assert.Contains(t, err.Error(), "bad.yaml:")
			assert.Regexp(t, `bad.yaml:\d+: automation x: activity: subject: .*(Titel|discount)`, err.Error())
			_, err = env.engine.Automations().Get(ctx)
			require.ErrorIs(t, err, crm.ErrNotFound, "nothing is stored")
		})
	}
}

func TestLoopIsStopped(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	saveAutomations(t, e, `
automations:
  - name: ping
    on: {event: custom.ping}
    do:
      - emit: {event: pong}
  - name: pong
    on: {event: custom.pong}
    do:
      - tag: {add: [bounced]}
      - emit: {event: ping}
  - name: start
    on: {event: contact.created}
    do:
      - emit: {event: ping}
`)
	c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Loop", Email: "loop@example.com"})
	require.NoError(t, err)
	eventually(t, func() bool {
		runs, err := e.Automations().Runs(ctx, "contacts", c.ID)
		require.NoError(t, err)
		return len(runs) > 0 && runs[len(runs)-1].Status == crm.RunStopped
	}, "the loop was not stopped")
	runs, err := e.Automations().Runs(ctx, "contacts", c.ID)
	require.NoError(t, err)
	// start (1), ping (2), pong (3), ping (4), pong (5), ping (6): stopped.
	require.Len(t, runs, 6)
	last := runs[5]
	assert.Equal(t, "ping", last.Automation)
	assert.Equal(t, 6, last.Event.Depth)
	assert.Contains(t, last.LastError, "MaxAutomationDepth")
	tl, err := e.Contacts().Timeline(ctx, c.ID, crm.TimelineOptions{})
	require.NoError(t, err)
	var stopped []string
	for _, en := range tl.Items {
		if en.Type == crm.TimelineAutomationStopped {
			stopped = append(stopped, en.Summary)
		}
	}
	require.Len(t, stopped, 1)
	assert.True(t, strings.Contains(stopped[0], "depth 6"), stopped[0])
}

// TestFirstSetStartsNow: events committed before a tenant's first set
// trigger nothing; a new version of the set loses no event.
func TestFirstSetStartsNow(t *testing.T) {
	env := setup(t)
	e := env.engine
	ctx := context.Background()
	before, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Before"})
	require.NoError(t, err)
	saveAutomations(t, e, `
automations:
  - name: tag-new
    on: {event: contact.created}
    do:
      - tag: {add: [v1]}
`)
	after, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "After"})
	require.NoError(t, err)
	tags := func(id string) []string {
		c, err := e.Contacts().Get(ctx, id)
		require.NoError(t, err)
		return c.Tags
	}
	eventually(t, func() bool { return len(tags(after.ID)) == 1 }, "After not tagged")
	assert.Empty(t, tags(before.ID))

	// A simulation of a stage change to a stage the record is not in.
	rep, _, _ := salesTeam(t, e)
	d := b2bDeal(t, e, rep)
	saveAutomations(t, e, `
automations:
  - name: tag-new
    on: {event: contact.created}
    do:
      - tag: {add: [v2]}
  - name: won
    on: {event: deal.stage_changed, to: won}
    do:
      - tag: {add: [celebrate]}
`)
	sims, err := e.SimulateAutomations(ctx, crm.Event{Type: "deal.stage_changed", Collection: "deals", ID: d.ID, To: "won"})
	require.NoError(t, err)
	require.Len(t, sims, 1)
	assert.True(t, sims[0].Ran)
	assert.Equal(t, []string{"added tags celebrate"}, sims[0].Actions)
}

func TestSaveRefusesUnknownUpdateFields(t *testing.T) {
	env := setup(t)
	set, err := automation.Load("u.yaml", []byte(`
automations:
  - name: x
    on: {event: deal.created}
    do:
      - update: {set: {titel: Big, expected_close: 2027-01-31, custom.ok: 1}}
`), nil)
	require.NoError(t, err)
	err = env.engine.Automations().Save(context.Background(), set)
	require.ErrorIs(t, err, automation.ErrInvalid)
	assert.Contains(t, err.Error(), `u.yaml:6: automation x: update: a deal has no field "titel"`)
	assert.NotContains(t, err.Error(), "expected_close")
}
