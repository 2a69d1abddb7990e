package loyalty_test

import (
	"context"
	"fmt"
	"time"

	"github.com/rapportcrm/rapport/loyalty"
)

// A program from YAML, evaluated against an order: the effects and the
// trace say what the order earns and why.
func ExampleProgram_Evaluate() {
	src := `
name: demo
currency: EUR
rules:
  - name: base
    on: [order]
    points: order.earning / 100     # 1 point per euro
    multipliers: [{tier: gold, percent: 200}]
  - name: big-basket
    on: [order]
    when: order.total >= 10000
    points: "50"
tiers: [{name: basic}, {name: gold, min_points: 1000}]
`
	p, err := loyalty.Load("demo.yaml", []byte(src), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	order := loyalty.Event{ID: "order-1", Kind: "order", At: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
		Order: &loyalty.Order{Currency: "EUR", Total: 12550}}
	res, err := p.Evaluate(loyalty.Member{ID: "ann", Tier: "gold"}, order, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("points:", res.Points("ann"))
	for _, s := range res.Trace {
		fmt.Printf("%s matched=%v: %s\n", s.Source, s.Matched, s.Reason)
	}
	// Output:
	// points: 300
	// base matched=true: order.earning / 100 = 125, ×200% for tier gold: 250 points
	// big-basket matched=true: 50 = 50: 50 points
}

// An account's journal: points earned, spent soonest-expiry first, and a
// retried operation applied once.
func ExampleAccount_Apply() {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := loyalty.NewAccount("ann", false)
	a.Apply(loyalty.Op{Key: "order-1", Kind: loyalty.KindEarn, Points: 100, At: at})
	a.Apply(loyalty.Op{Key: "order-2", Kind: loyalty.KindEarn, Points: 100, At: at, ExpiresAt: at.AddDate(0, 3, 0)})
	e, _ := a.Apply(loyalty.Op{Key: "redeem-1", Kind: loyalty.KindSpend, Points: 150, At: at.AddDate(0, 1, 0)})
	fmt.Println("drawn:", e.Lots)
	again, _ := a.Apply(loyalty.Op{Key: "redeem-1", Kind: loyalty.KindSpend, Points: 150, At: at.AddDate(0, 1, 0)})
	fmt.Println("retry is the first entry:", again.Seq == e.Seq, "balance:", a.Balance)
	_, err := a.Apply(loyalty.Op{Key: "redeem-2", Kind: loyalty.KindSpend, Points: 80, At: at.AddDate(0, 1, 0)})
	fmt.Println(err)
	// Output:
	// drawn: [{2 -100} {1 -50}]
	// retry is the first entry: true balance: 50
	// loyalty: insufficient points: spend "redeem-2" of 80 points: 50 can be spent at 2026-02-01T00:00:00Z
}

// Segments evaluated over members in bulk: marketing lists.
func ExampleSegments_Evaluate() {
	s := &loyalty.Segments{Segments: []loyalty.Segment{
		{Name: "big-spenders", Rule: "member.total_spent >= 100000"},
		{Name: "berlin", Rule: `member.city == "Berlin"`, Members: []string{"hand-picked"}},
	}}
	if err := s.Compile(nil); err != nil {
		fmt.Println(err)
		return
	}
	members := []loyalty.Member{
		{ID: "ann", City: "Berlin", TotalSpent: 250000},
		{ID: "bob", City: "Paris", TotalSpent: 5000},
		{ID: "hand-picked", City: "Rome"},
	}
	m, err := s.Evaluate(context.Background(), members, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	for i, name := range m.Segments {
		var ids []string
		for _, j := range m.Members[i] {
			ids = append(ids, members[j].ID)
		}
		fmt.Println(name, ids)
	}
	// Output:
	// big-spenders [ann]
	// berlin [ann hand-picked]
}
