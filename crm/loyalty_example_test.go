package crm_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/loyalty"
	"github.com/rapportcrm/rapport/storage/memory"
)

// A loyalty program run by the engine: an event for a contact earns
// points in the store; processing the same event again changes nothing.
func ExampleTenant_Loyalty() {
	ctx := context.Background()
	store := memory.New()
	defer store.Close()
	engine, err := crm.Open(ctx, crm.Options{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	p, err := loyalty.Load("demo.yaml", []byte(`
name: demo
currency: EUR
rules:
  - {name: base, on: [order], points: order.earning / 100}
  - {name: vip-bonus, on: [order], when: 'hasTag(member.tags, "vip")', points: "50"}
`), nil)
	if err != nil {
		log.Fatal(err)
	}
	tenant := engine.Default()
	ada, err := tenant.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", Meta: crm.Meta{Tags: []string{"vip"}}})
	if err != nil {
		log.Fatal(err)
	}
	order := loyalty.Event{ID: "order-1", Kind: "order", At: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
		Order: &loyalty.Order{Currency: "EUR", Total: 4250}}
	lp := tenant.Loyalty(p)
	for range 2 { // the second time is a redelivery: applied once
		if _, err := lp.Process(ctx, ada.ID, order); err != nil {
			log.Fatal(err)
		}
	}
	st, err := lp.Ledger().State(ctx, ada.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("balance:", st.Balance)
	// Output: balance: 92
}
