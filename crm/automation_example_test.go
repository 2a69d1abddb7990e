package crm_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage/memory"
)

// An automation gives the deal's owner the next step when a deal enters
// a stage.
func ExampleAutomations_Save() {
	ctx := context.Background()
	st := memory.New()
	defer st.Close()
	engine, err := crm.Open(ctx, crm.Options{Store: st, PollInterval: 10 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	set, err := automation.Load("acme.yaml", []byte(`
automations:
  - name: next-step-proposal
    on: {event: deal.stage_changed, to: proposal-prepared}
    when: record.amount.amount > 100000
    do:
      - activity: {type: task, subject: "Send the proposal for {{.Deal.Title}} to {{.Customer.Name}}", due: 3d}
      - tag: {add: [proposal]}
`), nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := engine.Automations().Save(ctx, set); err != nil {
		log.Fatal(err)
	}

	def, _ := pipeline.Builtin("b2b-deal")
	if err := engine.Pipelines().Save(ctx, def); err != nil {
		log.Fatal(err)
	}
	rep, _ := engine.Default().Users().Create(ctx, crm.User{Name: "Rita Rep"})
	ada, _ := engine.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", LastName: "Lovelace"})
	deal, err := engine.Deals().Create(ctx, crm.Deal{Meta: crm.Meta{Owner: rep.ID}, Title: "Difference engine", ContactID: ada.ID,
		Amount: crm.Money{Amount: 2_500_000, Currency: "GBP"}, Pipeline: "b2b-deal", Stage: "needs-clarification"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := engine.Deals().Move(ctx, deal.ID, "proposal-prepared", crm.MoveOptions{}); err != nil {
		log.Fatal(err)
	}

	// The engine's runner takes the event up in the background.
	for {
		runs, err := engine.Automations().Runs(ctx, "deals", deal.ID)
		if err != nil {
			log.Fatal(err)
		}
		if len(runs) > 0 && runs[0].Status == crm.RunDone {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	tasks, _ := engine.Activities().List(ctx, crm.ListOptions{By: "deal", Value: deal.ID})
	fmt.Println(tasks.Items[0].Subject)
	fmt.Println(tasks.Items[0].Assignee == rep.ID)
	// Output:
	// Send the proposal for Difference engine to Ada Lovelace
	// true
}

// A dry run says what the automations would do for an event, and writes
// nothing.
func ExampleTenant_SimulateAutomations() {
	ctx := context.Background()
	st := memory.New()
	defer st.Close()
	engine, err := crm.Open(ctx, crm.Options{Store: st})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()
	set, err := automation.Load("acme.yaml", []byte(`
automations:
  - name: welcome-vip
    on: {event: contact.created}
    when: '"vip" in record.tags'
    do:
      - tag: {add: [welcomed]}
      - webhook: {url: "https://erp.example.com/vip"}
`), nil)
	if err != nil {
		log.Fatal(err)
	}
	tenant := engine.Tenant("acme")
	// Ada came before the set: the set does not run for her, but a dry
	// run shows what it would do.
	c, _ := tenant.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", Meta: crm.Meta{Tags: []string{"vip"}}})
	if err := tenant.Automations().Save(ctx, set); err != nil {
		log.Fatal(err)
	}
	sims, err := tenant.SimulateAutomations(ctx, crm.Event{Type: "contact.created", Collection: "contacts", ID: c.ID})
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range sims {
		fmt.Println(s.Automation, s.Ran, s.Actions)
	}
	// Output:
	// welcome-vip true [added tags welcomed would call POST https://erp.example.com/vip]
}
