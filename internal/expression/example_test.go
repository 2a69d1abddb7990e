package expression_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/rapportcrm/rapport/internal/expression"
)

// Compile a rule once against a typed environment, run it many times.
// Hostile rules are refused at compile time.
func ExampleCompile() {
	type facts struct {
		Tier      string
		Tags      []string
		LastOrder time.Time
	}
	clock := func() time.Time { return time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC) }
	rule, err := expression.Compile("winback",
		`Tier != "gold" && !hasTag(Tags, "do-not-contact") && daysSince(LastOrder) > 90`,
		facts{}, expression.AsBool(), expression.WithLimits(expression.Limits{Clock: clock}))
	if err != nil {
		log.Fatal(err)
	}
	ok, err := rule.Bool(facts{Tier: "silver", LastOrder: clock().AddDate(0, -4, 0)})
	fmt.Println(ok, err)

	_, err = expression.Compile("bomb", `repeat(repeat("x", 100000), 100000)`, facts{})
	fmt.Println(err != nil)
	_, err = expression.Compile("slow", `all(Tags, all(Tags, all(Tags, true)))`, facts{})
	fmt.Println(errors.Is(err, expression.ErrTooComplex), err)
	// Output:
	// true <nil>
	// true
	// true rule slow (line 1, column 21): all is nested 3 predicates deep, the limit is 2
}
