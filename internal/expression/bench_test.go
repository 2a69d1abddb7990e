package expression_test

import (
	"strings"
	"testing"

	"github.com/expr-lang/expr"

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
