package analytics_test

import (
	"context"
	"fmt"
	"os"
	"strings"
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

// Cohort retention, printed as CSV and put on an HTML page with its chart.
func ExampleReports_Cohorts() {
	ctx := context.Background()
	now := time.Date(2024, 4, 15, 12, 0, 0, 0, time.UTC)
	st := memory.New()
	defer st.Close()
	e, err := crm.Open(ctx, crm.Options{Store: st, Clock: crm.ClockFunc(func() time.Time { return now })})
	if err != nil {
		panic(err)
	}
	defer e.Close()
	// Ada orders in January, February and April; Bob in January only;
	// Cy first in February.
	n := 0
	for name, months := range map[string][]time.Month{"Ada": {1, 2, 4}, "Bob": {1}, "Cy": {2}} {
		c, _ := e.Contacts().Create(ctx, crm.Contact{FirstName: name})
		for _, m := range months {
			n++
			_, err := e.Orders().Create(ctx, crm.Order{Number: fmt.Sprint(n), ContactID: c.ID, Currency: "EUR",
				OrderedAt: time.Date(2024, m, 10, 0, 0, 0, 0, time.UTC),
				Lines:     []crm.OrderLine{{SKU: "tea", Quantity: 1, UnitPrice: crm.Money{Amount: 450}}}})
			if err != nil {
				panic(err)
			}
		}
	}
	co, err := analytics.New(e.Default()).Cohorts(ctx, analytics.CohortsQuery{Months: 3})
	if err != nil {
		panic(err)
	}
	if err := co.Table().WriteCSV(os.Stdout); err != nil {
		panic(err)
	}
	var page strings.Builder
	if err := analytics.WriteHTML(&page, analytics.HTMLOptions{Title: "Retention"}, co); err != nil {
		panic(err)
	}
	fmt.Println(strings.Count(page.String(), "<svg "), "chart on the page")
	// Output:
	// cohort,customers,repeat,repeat_rate,m0,m1,m2,m3
	// 2024-01,2,1,0.5000,1.0000,0.5000,0.0000,0.5000
	// 2024-02,1,0,0.0000,1.0000,0.0000,0.0000,
	// 1 chart on the page
}
