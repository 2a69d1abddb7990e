package plugins_test

import (
	"context"
	"fmt"
	"log"

	"github.com/rapportcrm/rapport/plugins"
)

// A Manager runs approved plugin binaries and hands out values of the
// plugin interfaces; a crashed plugin is started again on a later call.
func ExampleManager() {
	configs, err := plugins.Discover("/opt/app/plugins") // rapport-*-NAME listed in SHA256SUMS
	if err != nil {
		log.Fatal(err)
	}
	m, err := plugins.NewManager(plugins.Options{}, configs...)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	docs, err := m.Renderer("docs")
	if err != nil {
		log.Fatal(err)
	}
	doc, err := docs.Render(context.Background(), plugins.RenderRequest{
		Template: "invoice", Format: plugins.PDF,
		Data: plugins.DocumentData{Number: "INV-1", Currency: "EUR", Scale: 2,
			Customer: plugins.Party{Name: "Ada Lovelace"},
			Lines:    []plugins.Line{{Description: "Consulting", Quantity: 3, UnitPrice: 12_000, TaxBP: 2000}}},
	})
	if err != nil {
		log.Fatal(err) // a *plugins.Error: errors.Is(err, plugins.ErrTimeout), ErrCrashed, ErrRejected
	}
	fmt.Println(doc.FileName, len(doc.Content) > 0)
}

// Totals computes a document's amounts in integer minor units: discounts
// and taxes are rounded half up per line.
func ExampleDocumentData_Totals() {
	d := plugins.DocumentData{Currency: "EUR", Scale: 2, Lines: []plugins.Line{
		{Description: "Robot", Quantity: 2, UnitPrice: 1_250_000, TaxBP: 1900},
		{Description: "Handbook", Quantity: 3, UnitPrice: 2_999, DiscountBP: 1000, TaxBP: 700},
	}}
	t, err := d.Totals()
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range t.TaxByRate {
		fmt.Printf("tax at %d bp on %s: %s\n", r.RateBP, plugins.FormatAmount(r.Net, 2, "EUR"), plugins.FormatAmount(r.Tax, 2, "EUR"))
	}
	fmt.Println("total:", plugins.FormatAmount(t.Gross, 2, "EUR"))
	// Output:
	// tax at 700 bp on 80.97 EUR: 5.67 EUR
	// tax at 1900 bp on 25,000.00 EUR: 4,750.00 EUR
	// total: 29,836.64 EUR
}

// A connector's webhook hands each inbound event to its Inbox and answers
// the sender only once the host has stored it.
func ExampleInbox() {
	inbox := plugins.NewInbox(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The host side: what Manager does through the plugin's Receive.
	go func() {
		_ = inbox.Receive(ctx, func(_ context.Context, ev plugins.InboundEvent) error {
			fmt.Println("stored", ev.ID, ev.Form.Fields["email"])
			return nil
		})
	}()

	// The webhook side.
	err := inbox.Deliver(ctx, plugins.InboundEvent{ID: "form-1",
		Form: &plugins.FormSubmission{Form: "contact-us", Fields: map[string]string{"email": "ada@example.com"}}})
	fmt.Println("answer 200:", err == nil)
	// Output:
	// stored form-1 ada@example.com
	// answer 200: true
}
