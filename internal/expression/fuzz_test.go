package expression_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/rapportcrm/rapport/internal/expression"
)

// FuzzCompileRun compiles and runs arbitrary rules against a typical
// environment, plain and flattened: neither may crash, hang or exhaust
// memory, whatever the rule. Run it with:
//
//	go test -run '^$' -fuzz FuzzCompileRun -fuzztime 10m ./internal/expression/
func FuzzCompileRun(f *testing.F) {
	for _, seed := range []string{
		`repeat(repeat("x", 100000), 100000)`,
		`let a = "xx"; let b = a + a; let c = b + b; let d = c + c; d + d`,
		`all(Xs, all(Xs, all(Xs, true)))`,
		`Tier == "gold" && hasTag(Tags, "vip")`,
		`sum(Orders, .Amount) / 100`,
		`count(Orders, .Category == "shoes") > 1 ? daysSince(LastOrder) : age(Birthday)`,
		`let a = replace(Name, "a", Name); replace(a, "a", a)`,
		`concat(1..1000, 1..1000)`,
		`join(map(Xs, string(#)), Name)`,
		`1..len(Xs) * 100000`,
		`toJSON(Orders)`,
		`Xs[-1] % 0`,
		`fromJSON("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]")`,
		`reduce(Xs, #acc + #, 0)`,
		`sortBy(Orders, .Amount)[0].Category`,
		`sumBy(Orders, "Amount") + countBy(Orders, "Category")["shoes"]`,
		`countBy(Xs, "x")`,
		`member.Tier == "gold" && len(member.Orders) > region`,
		`let m = member; m.Orders[0].Amount + member.Orders[0].Amount`,
		`member?.Tier ?? member.Name`,
	} {
		f.Add(seed)
	}
	env := sample()
	flat := flatEnv{Member: env, Region: "north"}
	f.Fuzz(func(t *testing.T, src string) {
		// No input may take long: a hang would otherwise only show as
		// a stalled fuzzer.
		watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("rule %q ran for 10s", src)) })
		defer watchdog.Stop()
		if p, err := expression.Compile("fuzz", src, member{}, expression.WithLimits(limits())); err == nil {
			_, _ = p.Run(env)
		}
		if p, err := expression.Compile("fuzz", src, flatEnv{}, expression.Flatten(), expression.WithLimits(limits())); err == nil {
			_, _ = p.Run(bindAll(t, p, flat))
		}
	})
}
