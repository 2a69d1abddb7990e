// Command automations shows Rapport's automations end to end on the
// embedded bbolt default: it saves two ready-made sets and one of its
// own, moves a deal and watches the next-step task appear, lets a lead
// wait past its 24-hour norm and gets a call-back task, and asks for a
// dry run of a move that has not happened.
//
//	go run ./examples/automations
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// clock is the example's time: it moves a day on when asked.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const own = `
automations:
  - name: big-deal-review
    on: {event: deal.stage_changed, to: contract}
    when: record.amount.amount >= 5000000   # 50,000.00 and more
    do:
      - activity: {type: task, subject: "Legal review of {{.Deal.Title}} ({{.Deal.Amount.Amount}} {{.Deal.Amount.Currency}} minor units)", for: "role:legal", due: 2d}
      - tag: {add: [legal-review]}
`

func run(ctx context.Context, out io.Writer) error {
	dir, err := os.MkdirTemp("", "rapport-automations")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	clk := &clock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	engine, err := crm.Open(ctx, crm.Options{Path: filepath.Join(dir, "rapport.db"), Clock: clk, PollInterval: 10 * time.Millisecond})
	if err != nil {
		return err
	}
	defer engine.Close()

	// Pipelines, people.
	for _, name := range []string{"b2b-deal", "lead"} {
		def, err := pipeline.Builtin(name)
		if err != nil {
			return err
		}
		if err := engine.Pipelines().Save(ctx, def); err != nil {
			return err
		}
	}
	rep, err := engine.Default().Users().Create(ctx, crm.User{Name: "Rita Rep"})
	if err != nil {
		return err
	}
	if _, err := engine.Default().Users().Create(ctx, crm.User{Name: "Lou Legal", Roles: []string{"legal"}}); err != nil {
		return err
	}

	// The automations: two ready-made sets and our own, in one set.
	set := &automation.Set{}
	for _, name := range []string{"deal-next-step", "lead-callback"} {
		s, err := automation.Builtin(name, clk.Now)
		if err != nil {
			return err
		}
		set.Automations = append(set.Automations, s.Automations...)
	}
	mine, err := automation.Load("own.yaml", []byte(own), clk.Now)
	if err != nil {
		return err
	}
	set.Automations = append(set.Automations, mine.Automations...)
	if err := engine.Automations().Save(ctx, set); err != nil {
		return err
	}
	fmt.Fprintf(out, "saved %d automations\n", len(set.Automations))

	// A deal moves: its owner gets the next step.
	ada, err := engine.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com"})
	if err != nil {
		return err
	}
	deal, err := engine.Deals().Create(ctx, crm.Deal{Meta: crm.Meta{Owner: rep.ID}, Title: "Difference engine", ContactID: ada.ID,
		Amount: crm.Money{Amount: 7_500_000, Currency: "GBP"}, Pipeline: "b2b-deal", Stage: "needs-clarification"})
	if err != nil {
		return err
	}
	if _, err := engine.Deals().Move(ctx, deal.ID, "proposal-prepared", crm.MoveOptions{}); err != nil {
		return err
	}
	if err := printTasks(ctx, out, engine, "deal", deal.ID, 1); err != nil {
		return err
	}

	// Dry run: what would a move to contract do? Nothing is written.
	sims, err := engine.SimulateAutomations(ctx, crm.Event{Type: "deal.stage_changed", Collection: "deals", ID: deal.ID, To: "contract"})
	if err != nil {
		return err
	}
	for _, s := range sims {
		fmt.Fprintf(out, "dry run: %s would run=%v: %v\n", s.Automation, s.Ran, s.Actions)
	}

	// A lead nobody called: after 24 hours, CheckTimers (run by
	// Options.TimerInterval in production) breaches its norm and the
	// call-back automation gives its owner a call.
	lead, err := engine.Leads().Create(ctx, crm.Lead{Meta: crm.Meta{Owner: rep.ID}, FirstName: "Charles", LastName: "Babbage",
		Company: "Analytical Engines", Pipeline: "lead", Stage: "registered"})
	if err != nil {
		return err
	}
	clk.advance(25 * time.Hour)
	if _, err := engine.CheckTimers(ctx); err != nil {
		return err
	}
	return printTasks(ctx, out, engine, "lead", lead.ID, 1)
}

// printTasks waits for n activities linked to a record and prints them.
func printTasks(ctx context.Context, out io.Writer, engine *crm.Engine, by, id string, n int) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pg, err := engine.Activities().List(ctx, crm.ListOptions{By: by, Value: id})
		if err != nil {
			return err
		}
		if len(pg.Items) >= n {
			for _, a := range pg.Items {
				fmt.Fprintf(out, "%s task: %s %q due %s\n", by, a.Type, a.Subject, a.DueAt.Format("2 Jan 15:04"))
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no task for %s %s after 10s", by, id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
