package expression_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/internal/expression"
)

type order struct {
	Amount   int
	Category string
}

type member struct {
	Name      string
	Tier      string
	Tags      []string
	Birthday  time.Time
	LastOrder time.Time
	Orders    []order
	Xs        []int
	Spent     float64
}

var now = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

func limits() expression.Limits { return expression.Limits{Clock: func() time.Time { return now }} }

func sample() member {
	return member{
		Name: "Ada", Tier: "gold", Tags: []string{"VIP", "newsletter"},
		Birthday:  time.Date(1990, 6, 20, 0, 0, 0, 0, time.UTC),
		LastOrder: now.AddDate(0, 0, -45),
		Orders:    []order{{Amount: 1200, Category: "shoes"}, {Amount: 800, Category: "bags"}, {Amount: 300, Category: "shoes"}},
		Xs:        []int{1, 2, 3},
		Spent:     2300.5,
	}
}

func TestRulesEvaluate(t *testing.T) {
	cases := []struct {
		src  string
		want any
	}{
		{`Tier == "gold" && hasTag(Tags, "vip")`, true},
		{`daysSince(LastOrder)`, 45},
		{`monthsSince(LastOrder)`, 1},
		{`age(Birthday)`, 35},
		{`birthdayWithin(Birthday, 7)`, true},
		{`birthdayWithin(Birthday, 3)`, false},
		{`between(len(Orders), 1, 3)`, true},
		{`sumBy(Orders, "Amount")`, 2300},
		{`countBy(Orders, "Category")["shoes"]`, 2},
		{`countBy(Orders, "Category")["hats"] ?? 0`, 0},
		{`between(Spent, 100.0, 2000.0)`, false},
		{`sum(Orders, .Amount)`, 2300},
		{`count(Orders, .Category == "shoes")`, 2},
		{`all(Xs, all(Xs, # > 0))`, true},
		{`Name + " " + Tier`, "Ada gold"},
		{`let a = "x"; let b = a + a; b + b`, "xxxx"},
		{`now().Year()`, 2026},
		{"Tier == \"gold\"\n  and\n  Spent > 1000", true},
	}
	for _, c := range cases {
		t.Run(c.src, func(t *testing.T) {
			p, err := expression.Compile("r", c.src, member{}, expression.WithLimits(limits()))
			require.NoError(t, err)
			got, err := p.Run(sample())
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}

func TestTypedResults(t *testing.T) {
	b, err := expression.Compile("is-gold", `Tier == "gold"`, member{}, expression.AsBool())
	require.NoError(t, err)
	ok, err := b.Bool(sample())
	require.NoError(t, err)
	assert.True(t, ok)
	_, err = b.Int64(sample())
	require.Error(t, err)

	i, err := expression.Compile("points", `sum(Orders, .Amount) / 100`, member{}, expression.AsInt64())
	require.NoError(t, err)
	n, err := i.Int64(sample())
	require.NoError(t, err)
	assert.Equal(t, int64(23), n)

	_, err = expression.Compile("not-bool", `Name`, member{}, expression.AsBool())
	var e *expression.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "not-bool", e.Rule)
}

// The three rule shapes that kill or hang an unguarded expr process are
// rejected at compile time.
func TestHostileRulesRejectedAtCompile(t *testing.T) {
	cases := map[string]string{
		"repeat":          `repeat(repeat("x", 100000), 100000)`,
		"let doubling":    `let a = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; let b = a + a; let c = b + b; let d = c + c; let e = d + d; let f = e + e; let g = f + f; let h = g + g; let i = h + h; let j = i + i; let k = j + j; let l = k + k; let m = l + l; let n = m + m; let o = n + n; let p = o + o; let q = p + p; q + q`,
		"nested all":      `all(Xs, all(Xs, all(Xs, true)))`,
		"env doubling":    `let a = Name + Name; let b = a + a; let c = b + b; let d = c + c; let e = d + d; c + d + e`,
		"huge range":      `len(1..100000000)`,
		"deep nesting":    `any(Orders, any(Xs, any(Tags, true)))`,
		"many predicates": strings.Repeat(`all(Xs, any(Xs, true)) && `, 3) + `true`,
		"long source":     `Name == "` + strings.Repeat("x", 5000) + `"`,
		"too many nodes":  strings.Repeat("1 + ", 600) + "1",
		"now builtin off": `date("2020-01-01") < now()`,
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := expression.Compile(name, src, member{})
			require.Error(t, err)
			var e *expression.Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, name, e.Rule)
			assert.NotEmpty(t, e.Message)
			assert.Contains(t, err.Error(), "rule "+name)
		})
	}
}

func TestErrorsCarryLineAndColumn(t *testing.T) {
	_, err := expression.Compile("loc", "Tier == \"gold\" &&\n  Unknown > 3", member{})
	var e *expression.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 2, e.Line)
	assert.Equal(t, 3, e.Column)
	assert.Contains(t, e.Message, "Unknown")

	_, err = expression.Compile("deep", "true &&\n all(Xs, all(Xs, all(Xs, true)))", member{})
	require.ErrorAs(t, err, &e)
	assert.True(t, errors.Is(err, expression.ErrTooComplex))
	assert.Equal(t, 2, e.Line)
	assert.Contains(t, e.Message, "nested 3 predicates deep")
}

func TestRunChecksEnvironment(t *testing.T) {
	p, err := expression.Compile("r", `len(Xs)`, member{}, expression.WithLimits(expression.Limits{MaxCollectionLen: 10}))
	require.NoError(t, err)
	m := sample()
	m.Xs = make([]int, 11)
	_, err = p.Run(m)
	require.ErrorIs(t, err, expression.ErrEnv)
	m.Xs = m.Xs[:10]
	got, err := p.Run(&m)
	require.NoError(t, err)
	assert.Equal(t, 10, got)

	// A runtime range beyond the memory budget fails cleanly.
	p, err = expression.Compile("r", `len(1..len(Xs) * 1000000)`, member{})
	require.NoError(t, err)
	_, err = p.Run(m)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "memory budget")

	// Errors at run time name the rule.
	p, err = expression.Compile("div", `Xs[0] % (len(Xs) - 10)`, member{})
	require.NoError(t, err)
	_, err = p.Run(m)
	var e *expression.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "div", e.Rule)
}

// Growth the compile-time estimate cannot see is stopped at run time,
// before the value is built.
func TestGrowthStoppedAtRun(t *testing.T) {
	lim := limits()
	lim.MaxStringLen = 1 << 16
	lim.EnvStringLen = 4096
	cases := map[string]string{
		"replace doubling": `let a = replace(Name, "a", Name + Name); let b = replace(a, "a", a); let c = replace(b, "a", b); len(replace(c, "a", c))`,
		"join":             `len(join(map(1..1000, Name + Name + Name + Name), Name))`,
		"concat doubling":  `let a = 1..1000; let b = concat(a, a); let c = concat(b, b); let d = concat(c, c); let e = concat(d, d); let f = concat(e, e); let g = concat(f, f); let h = concat(g, g); len(concat(h, h))`,
	}
	m := sample()
	m.Name = strings.Repeat("a", 1000)
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := expression.Compile(name, src, member{}, expression.WithLimits(lim))
			require.NoError(t, err)
			_, err = p.Run(m)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "exceed the size limit")
		})
	}
	p, err := expression.Compile("ok", `join(Tags, ",") + replace(Tier, "o", "0") + string(len(concat(Xs, Xs)))`, member{}, expression.WithLimits(lim))
	require.NoError(t, err)
	got, err := p.Run(sample())
	require.NoError(t, err)
	assert.Equal(t, "VIP,newsletterg0ld6", got)
}

func TestEmptyRule(t *testing.T) {
	_, err := expression.Compile("empty", "  ", member{})
	require.Error(t, err)
}

func TestSumByCountByErrors(t *testing.T) {
	for _, src := range []string{`sumBy(Orders, "Category")`, `sumBy(Orders, "Nope")`, `sumBy(Name, "Amount")`, `countBy(Orders, "nope")`} {
		p, err := expression.Compile("by", src, member{}, expression.WithLimits(limits()))
		require.NoError(t, err, src)
		_, err = p.Run(sample())
		var ee *expression.Error
		require.ErrorAs(t, err, &ee, src)
		assert.Equal(t, "by", ee.Rule)
	}
}

// A Machine kept by the caller gives the same results as the pool, run
// after run, and still enforces the environment's limits.
func TestBoolOnMachine(t *testing.T) {
	p, err := expression.Compile("m", `Tier == "gold" && len(Xs) > 2`, member{}, expression.AsBool(), expression.WithLimits(limits()))
	require.NoError(t, err)
	m := &expression.Machine{}
	env := sample()
	for range 3 {
		ok, err := p.BoolOn(m, env)
		require.NoError(t, err)
		assert.True(t, ok)
	}
	env.Tier = "silver"
	ok, err := p.BoolOn(m, env)
	require.NoError(t, err)
	assert.False(t, ok)
	env.Xs = make([]int, 1001)
	_, err = p.BoolOn(m, env)
	require.ErrorIs(t, err, expression.ErrEnv)
}
