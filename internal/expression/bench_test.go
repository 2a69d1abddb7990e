package expression_test

import (
	"strings"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/google/cel-go/cel"

	"github.com/rapportcrm/rapport/internal/expression"
)

// earningRule is a typical loyalty earning rule: points for an order.
const earningRule = `Tier == "gold" && hasTag(Tags, "vip") ? sum(Orders, .Amount) / 50 : sum(Orders, .Amount) / 100`

// BenchmarkEarningRule runs the same rule through our wrapper, through raw
// expr.Run, and as a hand-written Go function (the floor).
func BenchmarkEarningRule(b *testing.B) {
	env := sample()
	b.Run("wrapper", func(b *testing.B) {
		p, err := expression.Compile("earn", earningRule, member{}, expression.AsInt64(), expression.WithLimits(limits()))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := p.Int64(env); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-expr", func(b *testing.B) {
		hasTag := expr.Function("hasTag", func(p ...any) (any, error) {
			for _, t := range p[0].([]string) {
				if strings.EqualFold(t, p[1].(string)) {
					return true, nil
				}
			}
			return false, nil
		}, new(func([]string, string) bool))
		p, err := expr.Compile(earningRule, expr.Env(member{}), expr.AsInt64(), hasTag)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := expr.Run(p, env); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go", func(b *testing.B) {
		earn := func(m *member) int64 {
			total := 0
			for _, o := range m.Orders {
				total += o.Amount
			}
			vip := false
			for _, t := range m.Tags {
				if strings.EqualFold(t, "vip") {
					vip = true
				}
			}
			if m.Tier == "gold" && vip {
				return int64(total / 50)
			}
			return int64(total / 100)
		}
		var sink int64
		for b.Loop() {
			sink += earn(&env)
		}
		_ = sink
	})
}

// tierRule is an earning rule all four engines can express: cel-go has no
// sum over a list, so the cel-go comparison uses this one.
const tierRule = `Total >= 10000 && Tier in ["silver", "gold"] ? Total / 50 : Total / 100`

type purchase struct {
	Total int
	Tier  string
}

// BenchmarkTierRule compares our wrapper, raw expr.Run, google/cel-go
// (for the record) and hand-written Go on tierRule.
func BenchmarkTierRule(b *testing.B) {
	env := purchase{Total: 12345, Tier: "gold"}
	const want = 246
	b.Run("wrapper", func(b *testing.B) {
		p, err := expression.Compile("tier", tierRule, purchase{}, expression.AsInt64(), expression.WithLimits(limits()))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if n, err := p.Int64(env); err != nil || n != want {
				b.Fatal(n, err)
			}
		}
	})
	b.Run("raw-expr", func(b *testing.B) {
		p, err := expr.Compile(tierRule, expr.Env(purchase{}), expr.AsInt64())
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if n, err := expr.Run(p, env); err != nil || n.(int64) != want {
				b.Fatal(n, err)
			}
		}
	})
	b.Run("cel-go", func(b *testing.B) {
		ce, err := cel.NewEnv(cel.Variable("Total", cel.IntType), cel.Variable("Tier", cel.StringType))
		if err != nil {
			b.Fatal(err)
		}
		ast, iss := ce.Compile(`Total >= 10000 && Tier in ["silver", "gold"] ? Total / 50 : Total / 100`)
		if iss.Err() != nil {
			b.Fatal(iss.Err())
		}
		prg, err := ce.Program(ast)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			// The activation is built per run, as a caller with a
			// struct must.
			out, _, err := prg.Eval(map[string]any{"Total": int64(env.Total), "Tier": env.Tier})
			if err != nil || out.Value().(int64) != want {
				b.Fatal(out, err)
			}
		}
	})
	b.Run("go", func(b *testing.B) {
		earn := func(p *purchase) int64 {
			if p.Total >= 10000 && (p.Tier == "silver" || p.Tier == "gold") {
				return int64(p.Total / 50)
			}
			return int64(p.Total / 100)
		}
		var sink int64
		for b.Loop() {
			sink += earn(&env)
		}
		_ = sink
	})
}
