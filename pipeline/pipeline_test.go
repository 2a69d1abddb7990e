package pipeline_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/pipeline"
)

var clock = func() time.Time { return time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) }

func builtin(t *testing.T, name string) *pipeline.Pipeline {
	t.Helper()
	def, err := pipeline.Builtin(name)
	require.NoError(t, err)
	p, err := def.Compile(pipeline.CompileOptions{Clock: clock})
	require.NoError(t, err)
	return p
}

type step struct {
	to     string
	reason string
	record map[string]any
}

// walk moves a record through p and fails on the first refused move.
func walk(t *testing.T, p *pipeline.Pipeline, steps []step) {
	t.Helper()
	at := p.First().Key
	for _, s := range steps {
		err := p.Check(pipeline.Move{From: at, To: s.to, Reason: s.reason, Record: s.record})
		require.NoError(t, err, "%s → %s", at, s.to)
		at = s.to
	}
}

func TestEveryBuiltinLoadsAndWalks(t *testing.T) {
	deal := map[string]any{"amount": map[string]any{"amount": 120000, "currency": "EUR"}, "custom": map[string]any{"contract_ref": "C-1"}}
	walks := map[string][]step{
		"lead": {
			{to: "qualified", record: map[string]any{"email": "a@b.io"}},
			{to: "nurturing"},
			{to: "converted", record: map[string]any{"company": "Acme"}},
		},
		"b2b-deal": {
			{to: "proposal-prepared", record: deal}, {to: "proposal-defended"},
			{to: "contract", record: deal}, {to: "won", record: deal},
		},
		"b2c-deal":     {{to: "offer-sent"}, {to: "lost", reason: "price"}},
		"b2g-deal":     {{to: "customer-search"}, {to: "deal-support"}, {to: "payment-control", record: deal}, {to: "won"}},
		"service-case": {{to: "in-progress"}, {to: "waiting-for-customer"}, {to: "in-progress"}, {to: "resolved", record: map[string]any{"resolution": "replaced"}}, {to: "closed"}},
		"account-lifecycle": {
			{to: "exploration"}, {to: "expansion"}, {to: "commitment"}, {to: "dissolution"}, {to: "exploration"},
		},
	}
	require.ElementsMatch(t, pipeline.Builtins(), keys(walks), "every ready-made definition has a walk")
	for name, steps := range walks {
		t.Run(name, func(t *testing.T) {
			walk(t, builtin(t, name), steps)
		})
	}
	_, err := pipeline.Builtin("nope")
	require.Error(t, err)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestMovesThatAreRefused(t *testing.T) {
	p := builtin(t, "b2b-deal")
	deal := map[string]any{"amount": map[string]any{"amount": 5000, "currency": "EUR"}}
	cases := []struct {
		name  string
		move  pipeline.Move
		check func(t *testing.T, err error)
	}{
		{"unknown target", pipeline.Move{From: "contract", To: "signed"}, is(pipeline.ErrUnknownStage)},
		{"unknown origin", pipeline.Move{From: "limbo", To: "contract"}, is(pipeline.ErrUnknownStage)},
		{"skipping a stage", pipeline.Move{From: "needs-clarification", To: "contract"}, is(pipeline.ErrTransitionNotAllowed)},
		{"back two stages", pipeline.Move{From: "contract", To: "proposal-prepared"}, is(pipeline.ErrTransitionNotAllowed)},
		{"from a terminal stage", pipeline.Move{From: "won", To: "contract"}, func(t *testing.T, err error) {
			require.ErrorIs(t, err, pipeline.ErrTransitionNotAllowed)
			assert.Contains(t, err.Error(), "terminal")
		}},
		{"lost without reason", pipeline.Move{From: "contract", To: "lost"}, is(pipeline.ErrReasonRequired)},
		{"lost with unknown reason", pipeline.Move{From: "contract", To: "lost", Reason: "bad vibes"}, is(pipeline.ErrReasonRequired)},
		{"won without contract reference", pipeline.Move{From: "contract", To: "won", Record: deal}, func(t *testing.T, err error) {
			var me *pipeline.MissingFieldsError
			require.ErrorAs(t, err, &me)
			assert.Equal(t, []string{"custom.contract_ref"}, me.Fields)
			assert.Equal(t, "won", me.Stage)
		}},
		{"empty string is not set", pipeline.Move{From: "needs-clarification", To: "proposal-prepared", Record: map[string]any{"amount": ""}}, func(t *testing.T, err error) {
			var me *pipeline.MissingFieldsError
			require.ErrorAs(t, err, &me)
		}},
		{"guard refuses", pipeline.Move{From: "proposal-defended", To: "contract", Record: map[string]any{"amount": map[string]any{"amount": 0, "currency": "EUR"}}}, func(t *testing.T, err error) {
			var ge *pipeline.GuardError
			require.ErrorAs(t, err, &ge)
			assert.Equal(t, "a deal needs a positive amount before the contract stage", ge.Message)
			assert.NoError(t, ge.Err)
			assert.Contains(t, err.Error(), "proposal-defended → contract")
		}},
		{"guard fails to run", pipeline.Move{From: "proposal-defended", To: "contract", Record: map[string]any{"amount": map[string]any{"amount": "lots"}}}, func(t *testing.T, err error) {
			var ge *pipeline.GuardError
			require.ErrorAs(t, err, &ge)
			require.Error(t, ge.Err, "a guard that cannot run is reported with its cause")
			assert.Contains(t, err.Error(), "failed to run")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.check(t, p.Check(c.move)) })
	}
	require.NoError(t, p.Check(pipeline.Move{From: "contract", To: "lost", Reason: "competitor"}))
	require.NoError(t, p.Check(pipeline.Move{From: "contract", To: "proposal-defended"}), "back one stage")
}

func is(target error) func(t *testing.T, err error) {
	return func(t *testing.T, err error) { require.ErrorIs(t, err, target) }
}

func TestAllowedMoves(t *testing.T) {
	p := builtin(t, "b2b-deal")
	var got []string
	for _, s := range p.Allowed(pipeline.Move{From: "proposal-defended", Record: map[string]any{"amount": map[string]any{"amount": 10, "currency": "EUR"}}}) {
		got = append(got, s.Key)
	}
	// won needs contract_ref, so it is not offered.
	assert.Equal(t, []string{"proposal-prepared", "contract", "lost"}, got)
	assert.Empty(t, p.Allowed(pipeline.Move{From: "won"}))
	assert.Empty(t, p.Allowed(pipeline.Move{From: "nowhere"}))
}

func TestGuardsSeeActorAndTime(t *testing.T) {
	def := &pipeline.Definition{
		Name: "approvals", Kind: pipeline.KindDeal,
		Stages: []pipeline.Stage{{Key: "draft"}, {Key: "approved", Probability: 90}, {Key: "won", Probability: 100, Terminal: pipeline.Won}},
		Guards: []pipeline.Guard{
			{From: "*", To: "approved", When: `"manager" in actor.roles`, Message: "only a manager approves"},
			{From: "approved", To: "won", When: `now().Weekday().String() != "Sunday" && daysSince(record.created_at) <= 90`, Message: "stale"},
		},
	}
	p, err := def.Compile(pipeline.CompileOptions{Clock: clock})
	require.NoError(t, err)
	var ge *pipeline.GuardError
	require.ErrorAs(t, p.Check(pipeline.Move{From: "draft", To: "approved", Actor: pipeline.Actor{ID: "u1", Roles: []string{"rep"}}}), &ge)
	require.NoError(t, p.Check(pipeline.Move{From: "draft", To: "approved", Actor: pipeline.Actor{ID: "u2", Roles: []string{"manager"}}}))
	fresh := map[string]any{"created_at": clock().AddDate(0, 0, -10)}
	require.NoError(t, p.Check(pipeline.Move{From: "approved", To: "won", Record: fresh}))
	old := map[string]any{"created_at": clock().AddDate(0, -6, 0)}
	require.ErrorAs(t, p.Check(pipeline.Move{From: "approved", To: "won", Record: old}), &ge)
}

func TestInvalidDefinitionsNameFileLineAndStage(t *testing.T) {
	src := `name: broken
kind: deal
stages:
  - {key: a, probability: 10}
  - {key: a, probability: 20}
  - {key: b, probability: 150, norm: soon}
  - {key: orphan, probability: 0, sla: whenever}
  - {key: won, probability: 100, terminal: yes}
transitions:
  - {from: a, to: b}
  - {from: b, to: nowhere}
`
	_, err := pipeline.Load("deals.yaml", []byte(src))
	var de *pipeline.DefinitionError
	require.ErrorAs(t, err, &de)
	require.ErrorIs(t, err, pipeline.ErrInvalidDefinition)
	msg := err.Error()
	assert.Contains(t, msg, "norm")
	assert.Contains(t, msg, "soon")
	// The norm fails to parse first; fix it and look at the rest.
	_, err = pipeline.Load("deals.yaml", []byte(strings.Replace(src, "norm: soon", "norm: 5d", 1)))
	require.ErrorAs(t, err, &de)
	want := []string{
		"deals.yaml:5: stage a: duplicate stage key",
		"deals.yaml:6: stage b: probability 150 is outside 0-100",
		`deals.yaml:7: stage orphan: sla "whenever": want response or resolution`,
		`deals.yaml:8: stage won: terminal "yes"`,
		`deals.yaml:11: unknown stage "nowhere"`,
	}
	for _, w := range want {
		assert.Contains(t, err.Error(), w)
	}

	// Reachability is checked once the rest is sound.
	_, err = pipeline.Load("r.yaml", []byte(`name: r
kind: lead
stages:
  - {key: a}
  - {key: b}
  - {key: island}
transitions:
  - {from: a, to: b}
`))
	require.ErrorAs(t, err, &de)
	assert.Contains(t, err.Error(), "r.yaml:6: stage island: unreachable from the first stage a")

	// Unknown fields, bad kinds and empty files.
	for name, bad := range map[string]string{
		"unknown field":  "name: x\nkind: deal\nstagez: []\n",
		"bad kind":       "name: x\nkind: lunch\nstages: [{key: a}]\n",
		"no stages":      "name: x\nkind: deal\n",
		"empty":          "",
		"not yaml":       "name: [unclosed\n",
		"first terminal": "name: x\nkind: deal\nstages: [{key: w, terminal: won}]\n",
	} {
		_, err := pipeline.Load(name+".yaml", []byte(bad))
		require.ErrorIs(t, err, pipeline.ErrInvalidDefinition, name)
		assert.Contains(t, err.Error(), name+".yaml", name)
	}
}

func TestGuardsThatDoNotCompileAreDefinitionErrors(t *testing.T) {
	for name, when := range map[string]string{
		"not boolean":   `actor.id + "x"`,
		"syntax":        `record.amount >`,
		"unknown name":  `deal.amount > 0`,
		"too expensive": `all(actor.roles, all(actor.roles, all(actor.roles, true)))`,
	} {
		t.Run(name, func(t *testing.T) {
			src := "name: g\nkind: deal\nstages:\n  - {key: a}\n  - {key: b}\nguards:\n  - from: a\n    to: b\n    when: " + when + "\n    message: no\n"
			def, err := pipeline.Load("g.yaml", []byte(src))
			require.NoError(t, err, "Load validates structure; guards compile in Compile")
			_, err = def.Compile(pipeline.CompileOptions{})
			var de *pipeline.DefinitionError
			require.ErrorAs(t, err, &de)
			assert.Contains(t, err.Error(), "g.yaml:7:")
		})
	}
}

func TestNormsAndOverdue(t *testing.T) {
	for in, want := range map[string]pipeline.Norm{
		"72h": {Duration: 72 * time.Hour}, "1h30m": {Duration: 90 * time.Minute},
		"5d": {Duration: 120 * time.Hour}, "3bd": {BusinessDays: 3}, "": {},
	} {
		got, err := pipeline.ParseNorm(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"soon", "-5h", "5x", "99999d", "3 bd", "100000h"} {
		_, err := pipeline.ParseNorm(bad)
		assert.Error(t, err, bad)
	}
	// Norms built in Go that could not be read back are refused by
	// Validate, by definitions and by MarshalText, so they are never stored.
	for _, bad := range []pipeline.Norm{
		{Duration: 4000 * 24 * time.Hour}, {BusinessDays: 4000}, {BusinessDays: -1},
		{Duration: -time.Hour}, {Duration: 90 * time.Minute, BusinessDays: 2},
	} {
		require.Error(t, bad.Validate(), "%+v", bad)
		_, err := bad.MarshalText()
		require.Error(t, err, "%+v", bad)
		def := &pipeline.Definition{Name: "x", Kind: pipeline.KindDeal, Stages: []pipeline.Stage{{Key: "a", Norm: bad}}}
		require.ErrorIs(t, def.Validate(), pipeline.ErrInvalidDefinition, "%+v", bad)
	}
	for _, good := range []pipeline.Norm{{Duration: 3650 * 24 * time.Hour}, {BusinessDays: 3650}, {Duration: 90 * time.Minute}} {
		require.NoError(t, good.Validate())
		text, err := good.MarshalText()
		require.NoError(t, err)
		back, err := pipeline.ParseNorm(string(text))
		require.NoError(t, err)
		assert.Equal(t, good, back, "round trip")
	}

	def := &pipeline.Definition{
		Name: "cases", Kind: pipeline.KindCase, Holidays: []string{"2026-03-09"},
		Stages: []pipeline.Stage{{Key: "new", Norm: pipeline.Norm{BusinessDays: 3}}, {Key: "open", Norm: pipeline.Norm{Duration: 4 * time.Hour}}, {Key: "done", Terminal: pipeline.Closed}},
	}
	p, err := def.Compile(pipeline.CompileOptions{})
	require.NoError(t, err)
	friday := time.Date(2026, 3, 6, 15, 0, 0, 0, time.UTC)
	d, ok := p.Deadline("new", friday)
	require.True(t, ok)
	// Mon 9 is a holiday: Tue 10, Wed 11, Thu 12.
	assert.Equal(t, time.Date(2026, 3, 12, 15, 0, 0, 0, time.UTC), d)
	by, overdue := p.Overdue("new", friday, d.Add(90*time.Minute))
	assert.True(t, overdue)
	assert.Equal(t, 90*time.Minute, by)
	_, overdue = p.Overdue("new", friday, d)
	assert.False(t, overdue, "at the deadline is not yet overdue")
	_, overdue = p.Overdue("done", friday, friday.AddDate(1, 0, 0))
	assert.False(t, overdue, "no norm, never overdue")
	sla, _ := p.DeadlineWith(pipeline.Norm{Duration: time.Hour}, friday)
	assert.Equal(t, friday.Add(time.Hour), sla)
}

func TestNoPanicsOnOddInput(t *testing.T) {
	p := builtin(t, "lead")
	assert.Error(t, p.Check(pipeline.Move{}))
	assert.Error(t, p.Check(pipeline.Move{From: "registered", To: "converted", Record: nil}))
	var ge *pipeline.GuardError
	err := p.Check(pipeline.Move{From: "nurturing", To: "converted", Record: map[string]any{"company": 42}})
	assert.True(t, err == nil || errors.As(err, &ge))
}
