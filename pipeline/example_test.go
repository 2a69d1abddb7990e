package pipeline_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/rapportcrm/rapport/pipeline"
)

// A pipeline defined in YAML: stages, norms, a lost-reason list and a
// guard. Check answers whether a move may happen, and why not.
func ExampleLoad() {
	src := []byte(`
name: renewals
kind: deal
stages:
  - {key: due, probability: 60, norm: 10bd}
  - {key: quoted, probability: 80, norm: 5d, required: [amount]}
  - {key: renewed, probability: 100, terminal: won}
  - {key: churned, probability: 0, terminal: lost}
lost_reasons: [price, moved, closed-down]
guards:
  - from: quoted
    to: renewed
    when: record.amount >= 100
    message: renewals under 100 need a manual review
`)
	def, err := pipeline.Load("renewals.yaml", src)
	if err != nil {
		log.Fatal(err)
	}
	p, err := def.Compile(pipeline.CompileOptions{})
	if err != nil {
		log.Fatal(err)
	}
	deal := map[string]any{"amount": 80}
	fmt.Println(p.Check(pipeline.Move{From: "due", To: "quoted", Record: deal}))
	fmt.Println(p.Check(pipeline.Move{From: "quoted", To: "renewed", Record: deal}))
	err = p.Check(pipeline.Move{From: "quoted", To: "churned"})
	fmt.Println(errors.Is(err, pipeline.ErrReasonRequired))
	fmt.Println(p.Check(pipeline.Move{From: "quoted", To: "churned", Reason: "price"}))
	// Output:
	// <nil>
	// pipeline renewals: quoted → renewed: renewals under 100 need a manual review
	// true
	// <nil>
}

// A pipeline built in Go, with time norms in business days.
func ExampleDefinition_Compile() {
	def := &pipeline.Definition{
		Name: "onboarding", Kind: pipeline.KindAccount,
		Stages: []pipeline.Stage{
			{Key: "signed", Probability: 100, Norm: pipeline.Norm{BusinessDays: 2}},
			{Key: "live", Probability: 100, Terminal: pipeline.Closed},
		},
	}
	p, err := def.Compile(pipeline.CompileOptions{})
	if err != nil {
		log.Fatal(err)
	}
	friday := time.Date(2026, 3, 6, 17, 0, 0, 0, time.UTC)
	due, _ := p.Deadline("signed", friday)
	fmt.Println(due.Format("Mon 2 Jan 15:04"))
	by, overdue := p.Overdue("signed", friday, due.Add(3*time.Hour))
	fmt.Println(overdue, by)
	// Output:
	// Tue 10 Mar 17:00
	// true 3h0m0s
}
