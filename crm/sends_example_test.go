package crm_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/renderer"
	"github.com/rapportcrm/rapport/storage/memory"
)

// printConnector is an in-process connector that prints what it sends.
type printConnector struct{ sent chan string }

func (printConnector) Describe(context.Context) (plugins.Channel, error) {
	return plugins.Channel{Kind: "email"}, nil
}

func (p printConnector) Send(_ context.Context, m plugins.Message) (plugins.Receipt, error) {
	p.sent <- fmt.Sprintf("to %s: %q with %s", m.Recipient, m.Subject, m.Attachments[0].FileName)
	return plugins.Receipt{ProviderID: "msg-1", Status: plugins.StatusSent}, nil
}

func (printConnector) Receive(ctx context.Context, _ func(context.Context, plugins.InboundEvent) error) error {
	<-ctx.Done()
	return ctx.Err()
}

// SendDocumentWith (and its short form SendDocument) renders a deal's
// proposal and sends it through a channel connector. Here both run in-process (plugins.Static); in production
// Options.Plugins is a *plugins.Manager running the rapport-renderer and
// rapport-email plugin processes.
func ExampleTenant_SendDocumentWith() {
	ctx := context.Background()
	docs, err := renderer.New(renderer.Options{})
	if err != nil {
		log.Fatal(err)
	}
	mail := printConnector{sent: make(chan string, 1)}
	st := memory.New()
	defer st.Close()
	engine, err := crm.Open(ctx, crm.Options{Store: st,
		Plugins: plugins.Static{
			Renderers:  map[string]plugins.Renderer{"docs": docs},
			Connectors: map[string]plugins.Connector{"mail": mail},
		},
		Seller:       plugins.Party{Name: "Rapport Demo GmbH"},
		Clock:        crm.ClockFunc(func() time.Time { return time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC) }),
		PollInterval: 10 * time.Millisecond,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	ada, _ := engine.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com"})
	deal, err := engine.Deals().Create(ctx, crm.Deal{Title: "Engine upgrade", ContactID: ada.ID,
		Amount: crm.Money{Amount: 500_000, Currency: "EUR"},
		Lines: []crm.DealLine{{SKU: "ENG-1", Description: "Difference engine", Quantity: 1,
			UnitPrice: crm.Money{Amount: 500_000, Currency: "EUR"}, TaxBP: 2000}}})
	if err != nil {
		log.Fatal(err)
	}

	send, err := engine.Default().SendDocumentWith(ctx, crm.DocumentSend{
		DealID: deal.ID, Template: "proposal", Via: "mail", Number: "Q-42"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(send.Status, send.Recipient)
	fmt.Println(<-mail.sent) // the engine's sender, in the background
	// Output:
	// pending ada@example.com
	// to ada@example.com: "Proposal Q-42: Engine upgrade" with proposal-Q-42.pdf
}
