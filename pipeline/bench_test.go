package pipeline_test

import (
	"testing"

	"github.com/rapportcrm/rapport/pipeline"
)

// BenchmarkCheck measures one transition check that runs a guard.
func BenchmarkCheck(b *testing.B) {
	def, err := pipeline.Builtin("b2b-deal")
	if err != nil {
		b.Fatal(err)
	}
	p, err := def.Compile(pipeline.CompileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	m := pipeline.Move{From: "proposal-defended", To: "contract", Record: map[string]any{"amount": map[string]any{"amount": 120000, "currency": "EUR"}, "name": "Big deal"}}
	for b.Loop() {
		if err := p.Check(m); err != nil {
			b.Fatal(err)
		}
	}
}
