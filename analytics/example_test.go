package analytics_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rapportcrm/rapport/analytics"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage/memory"
)

// Funnel and RFM over a few records.
func Example() {
	ctx := context.Background()
	now := time.Date(2024, 3, 31, 12, 0, 0, 0, time.UTC)
	st := memory.New()
	defer st.Close()
	e, err := crm.Open(ctx, crm.Options{Store: st, Clock: crm.ClockFunc(func() time.Time { return now })})
	if err != nil {
		panic(err)
	}
	defer e.Close()

	def, _ := pipeline.Builtin("b2c-deal") // new → offer-sent → won | lost
	if err := e.Pipelines().Save(ctx, def); err != nil {
		panic(err)
	}
	for i := range 4 {
		d, err := e.Deals().Create(ctx, crm.Deal{Title: fmt.Sprint("deal ", i), Pipeline: "b2c-deal"})
		if err != nil {
			panic(err)
		}
		if i < 2 {
			if _, err := e.Deals().Move(ctx, d.ID, "offer-sent", crm.MoveOptions{}); err != nil {
				panic(err)
			}
		}
	}
	ada, _ := e.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", ExternalID: "C-1"})
	for n, day := range []int{3, 20} {
		_, err := e.Orders().Create(ctx, crm.Order{Number: fmt.Sprint(n), ContactID: ada.ID, Currency: "EUR",
			OrderedAt: time.Date(2024, 3, day, 10, 0, 0, 0, time.UTC),
			Lines:     []crm.OrderLine{{SKU: "tea", Quantity: 2, UnitPrice: crm.Money{Amount: 450, Currency: "EUR"}}}})
		if err != nil {
			panic(err)
		}
	}

	r := analytics.New(e.Default())
	f, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "b2c-deal", Period: analytics.Month(2024, time.March, time.UTC)})
	if err != nil {
		panic(err)
	}
	for _, s := range f.Groups[0].Stages {
		fmt.Printf("%-10s entered %d, reached %d, on to the next %.0f%%\n", s.Stage, s.Entered, s.Reached, 100*s.Conversion)
	}
	rfm, err := r.RFM(ctx, analytics.RFMOptions{ExternalIDs: true})
	if err != nil {
		panic(err)
	}
	if err := rfm.WriteCSV(os.Stdout); err != nil {
		panic(err)
	}
	// Output:
	// new        entered 4, reached 4, on to the next 50%
	// offer-sent entered 2, reached 2, on to the next 0%
	// won        entered 0, reached 0, on to the next 0%
	// lost       entered 0, reached 0, on to the next 0%
	// customer_id,recency_days,frequency,monetary_minor,r,f,m,segment
	// C-1,1,2,1800,1,1,1,hibernating
}
