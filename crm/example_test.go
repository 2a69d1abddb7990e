package crm_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage/memory"
)

// Open an engine on the embedded bbolt default, create a contact and read
// it back. This is the "embed it" snippet of the README.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "rapport-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	engine, err := crm.Open(ctx, crm.Options{Path: filepath.Join(dir, "crm.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	ada, err := engine.Contacts().Create(ctx, crm.Contact{
		FirstName: "Ada", LastName: "Lovelace", Email: "Ada@Example.com",
		Meta: crm.Meta{Tags: []string{"vip"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	got, err := engine.Contacts().Get(ctx, ada.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Name(), got.Email, got.Tags, "version", got.Version)
	// Output: Ada Lovelace ada@example.com [vip] version 1
}

// Every write appends an event in the same transaction; a subscription
// receives them at least once, in order, and resumes after a restart.
func ExampleEngine_Subscribe() {
	ctx := context.Background()
	store := memory.New()
	defer store.Close()
	engine, err := crm.Open(ctx, crm.Options{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	done := make(chan struct{})
	err = engine.Subscribe(crm.Subscription{
		Name:   "welcome-mail",
		Events: []string{"contact.*"},
		Handler: func(ctx context.Context, ev crm.Event) error {
			var c crm.Contact
			if err := ev.Decode(&c); err != nil {
				return err
			}
			fmt.Println(ev.Type, c.Name(), ev.Changed)
			if ev.Type == "contact.updated" {
				close(done)
			}
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}

	c, err := engine.Contacts().Create(ctx, crm.Contact{FirstName: "Grace", LastName: "Hopper"})
	if err != nil {
		log.Fatal(err)
	}
	c.Title = "Rear Admiral"
	if _, err := engine.Contacts().Update(ctx, c); err != nil {
		log.Fatal(err)
	}
	<-done
	// Output:
	// contact.created Grace Hopper []
	// contact.updated Grace Hopper [title]
}

// Records are scoped to a tenant; optimistic concurrency refuses an update
// based on a stale version, and validation names every bad field.
func ExampleEngine_Tenant() {
	ctx := context.Background()
	store := memory.New()
	defer store.Close()
	clock := crm.ClockFunc(func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) })
	engine, err := crm.Open(ctx, crm.Options{Store: store, Clock: clock})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	acme := engine.Tenant("acme")
	acc, err := acme.Accounts().Create(ctx, crm.Account{Name: "Acme", Domain: "https://www.acme.example/", Type: crm.B2B})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(acc.Tenant, acc.Domain, acc.CreatedAt.Format(time.RFC3339))

	first, _ := acme.Accounts().Get(ctx, acc.ID)
	second, _ := acme.Accounts().Get(ctx, acc.ID)
	first.Employees = 50
	if _, err := acme.Accounts().Update(ctx, first); err != nil {
		log.Fatal(err)
	}
	second.Employees = 60
	_, err = acme.Accounts().Update(ctx, second)
	fmt.Println("stale update refused:", errors.Is(err, crm.ErrConflict))

	_, err = acme.Contacts().Create(ctx, crm.Contact{Email: "not-an-email", Phone: "call me"})
	var ve *crm.ValidationError
	if errors.As(err, &ve) {
		for _, f := range ve.Fields {
			fmt.Println(f.Field)
		}
	}

	_, err = engine.Tenant("globex").Accounts().Get(ctx, acc.ID)
	fmt.Println("other tenant sees it:", !errors.Is(err, crm.ErrNotFound))
	// Output:
	// acme acme.example 2026-01-02T03:04:05Z
	// stale update refused: true
	// email
	// phone
	// other tenant sees it: false
}

// Deals move through a stored pipeline; every move is checked and kept in
// the stage history.
func ExampleDeals_Move() {
	ctx := context.Background()
	store := memory.New()
	defer store.Close()
	clock := crm.ClockFunc(func() time.Time { return time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) })
	engine, err := crm.Open(ctx, crm.Options{Store: store, Clock: clock})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	def, err := pipeline.Builtin("b2b-deal")
	if err != nil {
		log.Fatal(err)
	}
	if err := engine.Pipelines().Save(ctx, def); err != nil {
		log.Fatal(err)
	}
	d, err := engine.Deals().Create(ctx, crm.Deal{Title: "Rockets", Pipeline: "b2b-deal"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Stage, "due", d.StageDueAt.Format("Mon 2 Jan"))

	_, err = engine.Deals().Move(ctx, d.ID, "proposal-prepared", crm.MoveOptions{Version: d.Version})
	var missing *pipeline.MissingFieldsError
	fmt.Println(errors.As(err, &missing), missing.Fields)

	_, err = engine.Deals().Move(ctx, d.ID, "lost", crm.MoveOptions{Reason: "no-budget", Comment: "maybe next year"})
	if err != nil {
		log.Fatal(err)
	}
	history, err := engine.Deals().History(ctx, d.ID)
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range history {
		fmt.Printf("%q → %q (%s)\n", h.From, h.To, h.Reason)
	}
	// Output:
	// needs-clarification due Mon 9 Mar
	// true [amount]
	// "" → "needs-clarification" ()
	// "needs-clarification" → "lost" (no-budget)
}

// Plan a call on a deal, ask what is due today, log the call and read the
// deal's timeline.
func ExampleActivities_DueToday() {
	st := memory.New()
	defer st.Close()
	ctx := context.Background()
	clock := crm.ClockFunc(func() time.Time { return time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) })
	engine, err := crm.Open(ctx, crm.Options{Store: st, Clock: clock})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	deal, err := engine.Deals().Create(ctx, crm.Deal{Title: "Rockets"})
	if err != nil {
		log.Fatal(err)
	}
	call, err := engine.Activities().Create(ctx, crm.Activity{
		Type: crm.Call, Subject: "Call about the quote", Assignee: "ann",
		DueAt: clock().Add(2 * time.Hour), RemindAt: clock().Add(time.Hour),
		Links: crm.Links{DealID: deal.ID},
	})
	if err != nil {
		log.Fatal(err)
	}
	due, err := engine.Activities().DueToday(ctx, "ann")
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range due {
		fmt.Println("due today:", a.Subject, a.DueAt.Format("15:04"))
	}

	if _, err := engine.Interactions().Create(ctx, crm.Interaction{
		Channel: "phone", Direction: crm.Outbound, Summary: "Quote accepted",
		Links: crm.Links{DealID: deal.ID},
	}); err != nil {
		log.Fatal(err)
	}
	if _, err := engine.Activities().Complete(ctx, call.ID, call.Version); err != nil {
		log.Fatal(err)
	}
	timeline, err := engine.Deals().Timeline(ctx, deal.ID, crm.TimelineOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range timeline.Items {
		fmt.Println(e.Type+":", e.Summary)
	}
	// Output:
	// due today: Call about the quote 11:00
	// activity: call: Call about the quote (due 2026-03-02T11:00:00Z)
	// interaction: phone outbound: Quote accepted
	// activity_done: call done: Call about the quote
}

// Convert a qualified lead into a contact, an account and a deal in one
// transaction.
func ExampleLeads_Convert() {
	ctx := context.Background()
	store := memory.New()
	defer store.Close()
	engine, err := crm.Open(ctx, crm.Options{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	amount, err := crm.ParseMoney("12000", "EUR")
	if err != nil {
		log.Fatal(err)
	}
	lead, err := engine.Leads().Create(ctx, crm.Lead{
		FirstName: "Hank", Email: "hank@globex.example", Company: "Globex", ExpectedAmount: amount,
	})
	if err != nil {
		log.Fatal(err)
	}
	conv, err := engine.Leads().Convert(ctx, lead.ID, crm.ConvertOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(conv.Contact.Email, "at", conv.Account.Name)
	fmt.Println("deal:", conv.Deal.Title, conv.Deal.Amount)
	fmt.Println("links back:", conv.Deal.LeadID == lead.ID, conv.Lead.DealID == conv.Deal.ID)
	// Output:
	// hank@globex.example at Globex
	// deal: Globex 12000.00 EUR
	// links back: true true
}

// Search contacts by the start of a name, an email or a phone number,
// ignoring case and accents.
func ExampleRecords_Search() {
	ctx := context.Background()
	store := memory.New()
	defer store.Close()
	engine, err := crm.Open(ctx, crm.Options{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	for _, c := range []crm.Contact{
		{FirstName: "Zoë", LastName: "Núñez", Email: "zoe@example.com"},
		{FirstName: "Zack", LastName: "Nuland", Phone: "+44 20 7946 0958"},
	} {
		if _, err := engine.Contacts().Create(ctx, c); err != nil {
			log.Fatal(err)
		}
	}
	for _, q := range []string{"nunez", "z nu", "+44 20 7946"} {
		page, err := engine.Contacts().Search(ctx, q, crm.SearchOptions{})
		if err != nil {
			log.Fatal(err)
		}
		var names []string
		for _, c := range page.Items {
			names = append(names, c.Name())
		}
		slices.Sort(names)
		fmt.Printf("%q: %s\n", q, strings.Join(names, ", "))
	}
	// Output:
	// "nunez": Zoë Núñez
	// "z nu": Zack Nuland, Zoë Núñez
	// "+44 20 7946": Zack Nuland
}

// Define custom fields for contacts in YAML; every write is checked
// against them.
func ExampleLoadSchemas() {
	ctx := context.Background()
	store := memory.New()
	defer store.Close()
	engine, err := crm.Open(ctx, crm.Options{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	schemas, err := crm.LoadSchemas("fields.yaml", []byte(`
entity: contact
fields:
  - {key: tier, type: enum, options: [bronze, silver, gold], default: bronze}
  - {key: shoe_size, type: number}
`))
	if err != nil {
		log.Fatal(err)
	}
	if err := engine.Schemas().Save(ctx, &schemas[0]); err != nil {
		log.Fatal(err)
	}
	c, err := engine.Contacts().Create(ctx, crm.Contact{FirstName: "Ada"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("tier:", c.Custom["tier"])
	_, err = engine.Contacts().Create(ctx, crm.Contact{FirstName: "Bob", Meta: crm.Meta{Custom: map[string]any{"tier": "platinum"}}})
	var invalid *crm.ValidationError
	if errors.As(err, &invalid) {
		for _, f := range invalid.Fields {
			fmt.Println(f.Field+":", f.Message)
		}
	}
	// Output:
	// tier: bronze
	// custom.tier: platinum: want one of bronze, silver, gold
}

// Erase everything personal about a contact, keeping what aggregates need.
func ExampleTenant_EraseContact() {
	ctx := context.Background()
	store := memory.New()
	defer store.Close()
	engine, err := crm.Open(ctx, crm.Options{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	c, err := engine.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", Email: "ada@example.com"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := engine.Interactions().Create(ctx, crm.Interaction{Channel: "phone", Summary: "Ada called about her order",
		Links: crm.Links{ContactID: c.ID}}); err != nil {
		log.Fatal(err)
	}
	erasure, err := engine.EraseContact(ctx, c.ID, crm.ChangeOptions{Reason: "GDPR request 17"})
	if err != nil {
		log.Fatal(err)
	}
	after, err := engine.Contacts().Get(ctx, c.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("name %q, email %q, erased %v\n", after.Name(), after.Email, !after.ErasedAt.IsZero())
	fmt.Println("interactions scrubbed:", erasure.Records["interactions"])
	// Output:
	// name "", email "", erased true
	// interactions scrubbed: 1
}
