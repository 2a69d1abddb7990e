package crm_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/renderer"
	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/memory"
)

// testConnector is an in-process connector that records what it sends,
// remembering idempotency keys as a real connector's journal does, and
// fails, refuses or blocks on request.
type testConnector struct {
	mu        sync.Mutex
	journal   *plugins.Journal
	failures  int  // fail this many more sends, worth retrying
	reject    bool // refuse every send for good
	block     chan struct{}
	calls     int
	delivered []plugins.Message
	inbox     *plugins.Inbox
}

func newTestConnector(t *testing.T) *testConnector {
	j, err := plugins.OpenJournal("")
	require.NoError(t, err)
	return &testConnector{journal: j, inbox: plugins.NewInbox(0)}
}

func (c *testConnector) Describe(context.Context) (plugins.Channel, error) {
	return plugins.Channel{Kind: "email", Capabilities: []string{plugins.CapSend, plugins.CapInbound}}, nil
}

func (c *testConnector) Send(ctx context.Context, msg plugins.Message) (plugins.Receipt, error) {
	c.mu.Lock()
	c.calls++
	block, reject := c.block, c.reject
	fail := c.failures > 0
	if fail {
		c.failures--
	}
	c.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return plugins.Receipt{}, ctx.Err()
		}
	}
	switch {
	case reject:
		return plugins.Receipt{}, plugins.Rejectf("no such mailbox %s", msg.Recipient)
	case fail:
		return plugins.Receipt{}, errors.New("connection refused")
	}
	return c.journal.Once(ctx, msg.IdempotencyKey, func() (plugins.Receipt, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.delivered = append(c.delivered, msg)
		return plugins.Receipt{ProviderID: fmt.Sprintf("msg-%d", len(c.delivered)), Status: plugins.StatusSent}, nil
	})
}

func (c *testConnector) Receive(ctx context.Context, deliver func(context.Context, plugins.InboundEvent) error) error {
	return c.inbox.Receive(ctx, deliver)
}

func (c *testConnector) sent() []plugins.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]plugins.Message(nil), c.delivered...)
}

func openWithPlugins(t *testing.T, st storage.Store, conn *testConnector, mutate ...func(*crm.Options)) *crm.Engine {
	t.Helper()
	r, err := renderer.New(renderer.Options{})
	require.NoError(t, err)
	opts := crm.Options{Store: st, Clock: newClock(),
		RetryBackoff: time.Millisecond, MaxRetryBackoff: 5 * time.Millisecond, PollInterval: 10 * time.Millisecond,
		Plugins: plugins.Static{Renderers: map[string]plugins.Renderer{"docs": r}, Connectors: map[string]plugins.Connector{"mail": conn}},
		Seller:  plugins.Party{Name: "Rapport Demo GmbH", Email: "sales@rapport.example"}, MaxSendAttempts: 4}
	for _, m := range mutate {
		m(&opts)
	}
	e, err := crm.Open(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// sampleDeal stores a contact, an account, two products with prices and a
// deal for them.
func sampleDeal(t *testing.T, e *crm.Engine) crm.Deal {
	t.Helper()
	ctx := context.Background()
	acc, err := e.Accounts().Create(ctx, crm.Account{Name: "Gdańsk Robotics", City: "Gdańsk"})
	require.NoError(t, err)
	c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Zoë", LastName: "Łukasiewicz", Email: "zoe@example.com", AccountID: acc.ID})
	require.NoError(t, err)
	for _, p := range []crm.Product{{SKU: "ROB-7", Name: "Picking robot", Unit: "piece"}, {SKU: "SVC-1", Name: "Installation", Unit: "hour"}} {
		_, err := e.Products().Create(ctx, p)
		require.NoError(t, err)
	}
	_, err = e.Default().PriceLists().Create(ctx, crm.PriceList{Name: "2026", Currency: "EUR", ValidFrom: "2026-01-01",
		Prices: []crm.Price{{SKU: "ROB-7", UnitPrice: crm.Money{Amount: 1_250_000}}, {SKU: "SVC-1", UnitPrice: crm.Money{Amount: 9_500}}}})
	require.NoError(t, err)
	d, err := e.Deals().Create(ctx, crm.Deal{Title: "Warehouse automation", Amount: crm.Money{Amount: 2_652_000, Currency: "EUR"},
		ContactID: c.ID, AccountID: acc.ID, Meta: crm.Meta{Owner: "max"},
		Lines: []crm.DealLine{{SKU: "ROB-7", Quantity: 2, TaxBP: 1900}, {SKU: "SVC-1", Quantity: 16, DiscountBP: 1000, TaxBP: 1900}}})
	require.NoError(t, err)
	return d
}

func waitSend(t *testing.T, e *crm.Engine, id string) crm.Send {
	t.Helper()
	var s crm.Send
	require.Eventually(t, func() bool {
		var err error
		s, err = e.Sends().Get(context.Background(), id)
		require.NoError(t, err)
		return s.Status != crm.SendPending
	}, 10*time.Second, 5*time.Millisecond)
	return s
}

func timelineTypes(t *testing.T, e *crm.Engine, dealID string) []string {
	t.Helper()
	pg, err := e.Deals().Timeline(context.Background(), dealID, crm.TimelineOptions{})
	require.NoError(t, err)
	var out []string
	for _, te := range pg.Items {
		out = append(out, te.Type)
	}
	return out
}

func TestSendDocument(t *testing.T) {
	conn := newTestConnector(t)
	conn.failures = 2
	e := openWithPlugins(t, memory.New(), conn)
	d := sampleDeal(t, e)
	ctx := context.Background()

	s, err := e.SendDocument(ctx, d.ID, "proposal", "mail")
	require.NoError(t, err)
	assert.Equal(t, crm.SendPending, s.Status)
	assert.Equal(t, "zoe@example.com", s.Recipient)
	require.NotNil(t, s.Document)
	assert.Equal(t, "Zoë Łukasiewicz", s.Document.Customer.Name)
	assert.Equal(t, "Gdańsk Robotics", s.Document.Account.Name)
	assert.Equal(t, int64(1_250_000), s.Document.Lines[0].UnitPrice, "priced from the price list")
	assert.Equal(t, "Picking robot", s.Document.Lines[0].Description)

	s = waitSend(t, e, s.ID)
	assert.Equal(t, crm.SendSent, s.Status)
	assert.Equal(t, 2, s.Attempts, "two failures, retried")
	assert.Equal(t, "msg-1", s.ProviderID)
	assert.Equal(t, "proposal-"+s.Document.Number+".pdf", s.FileName)
	sent := conn.sent()
	require.Len(t, sent, 1)
	assert.Equal(t, s.Tenant+"/"+s.ID, sent[0].IdempotencyKey)
	require.Len(t, sent[0].Attachments, 1)
	assert.Equal(t, "application/pdf", sent[0].Attachments[0].MIMEType)
	assert.Contains(t, sent[0].Subject, "Warehouse automation")
	assert.Equal(t, []string{crm.TimelineSend, crm.TimelineInteraction}, timelineTypes(t, e, d.ID))
	in, err := e.Interactions().Get(ctx, "send-"+s.ID)
	require.NoError(t, err)
	assert.Equal(t, crm.Outbound, in.Direction)
	assert.Equal(t, "msg-1", in.Reference)
	assert.Equal(t, d.ContactID, in.ContactID)
}

func TestSendFailures(t *testing.T) {
	conn := newTestConnector(t)
	conn.reject = true
	e := openWithPlugins(t, memory.New(), conn)
	d := sampleDeal(t, e)
	ctx := context.Background()

	s, err := e.SendDocument(ctx, d.ID, "invoice", "mail")
	require.NoError(t, err)
	s = waitSend(t, e, s.ID)
	assert.Equal(t, crm.SendFailed, s.Status)
	assert.Equal(t, 1, s.Attempts, "a refusal is not retried")
	assert.Contains(t, s.LastError, "no such mailbox")
	assert.Equal(t, []string{crm.TimelineSend, crm.TimelineSendFailed}, timelineTypes(t, e, d.ID))

	conn.mu.Lock()
	conn.reject, conn.failures = false, 100
	conn.mu.Unlock()
	s, err = e.SendDocument(ctx, d.ID, "invoice", "mail")
	require.NoError(t, err)
	s = waitSend(t, e, s.ID)
	assert.Equal(t, crm.SendFailed, s.Status)
	assert.Equal(t, 4, s.Attempts, "MaxSendAttempts")
	assert.Contains(t, s.LastError, "connection refused")

	// Unknown template: the renderer refuses it for good.
	conn.mu.Lock()
	conn.failures = 0
	conn.mu.Unlock()
	s, err = e.SendDocument(ctx, d.ID, "brochure", "mail")
	require.NoError(t, err)
	s = waitSend(t, e, s.ID)
	assert.Equal(t, crm.SendFailed, s.Status)
	assert.Contains(t, s.LastError, `no template "brochure"`)

	// Unknown connector: failed, not retried forever.
	s, err = e.SendDocument(ctx, d.ID, "invoice", "fax")
	require.NoError(t, err)
	s = waitSend(t, e, s.ID)
	assert.Equal(t, crm.SendFailed, s.Status)
	assert.Contains(t, s.LastError, `no connector named "fax"`)
	assert.Empty(t, conn.sent())
}

func TestSendDocumentRefusesBadDeals(t *testing.T) {
	conn := newTestConnector(t)
	st := memory.New()
	e := openWithPlugins(t, st, conn)
	d := sampleDeal(t, e)
	ctx := context.Background()

	bare, err := e.Deals().Create(ctx, crm.Deal{Title: "No lines, no contact"})
	require.NoError(t, err)
	_, err = e.SendDocument(ctx, bare.ID, "invoice", "mail")
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Contains(t, err.Error(), "no contact")
	assert.Contains(t, err.Error(), "no currency")

	d.Lines = append(d.Lines, crm.DealLine{SKU: "UNPRICED", Quantity: 1})
	d, err = e.Deals().Update(ctx, d)
	require.NoError(t, err)
	_, err = e.SendDocument(ctx, d.ID, "invoice", "mail")
	require.ErrorAs(t, err, &ve)
	assert.Contains(t, err.Error(), "no EUR price for UNPRICED")

	_, err = e.SendDocument(ctx, "missing", "invoice", "mail")
	require.ErrorIs(t, err, crm.ErrNotFound)
	_, err = e.Default().SendDocumentWith(ctx, crm.DocumentSend{DealID: d.ID, Via: "mail"})
	require.ErrorAs(t, err, &ve)

	pg, err := e.Sends().List(ctx, crm.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, pg.Items, "nothing stored")

	// Bad deal lines are refused when stored.
	d.Lines = []crm.DealLine{{SKU: "", Quantity: 0, TaxBP: 20000}}
	_, err = e.Deals().Update(ctx, d)
	require.ErrorAs(t, err, &ve)
	assert.Contains(t, err.Error(), "lines[0].sku")
	assert.Contains(t, err.Error(), "lines[0].quantity")
	assert.Contains(t, err.Error(), "lines[0].tax_bp")

	// An engine without plugins cannot send.
	plain, err := crm.Open(ctx, crm.Options{Store: st})
	require.NoError(t, err)
	defer plain.Close()
	_, err = plain.SendDocument(ctx, d.ID, "invoice", "mail")
	require.ErrorIs(t, err, crm.ErrInvalid)
}

// TestSendSurvivesEngineRestart closes the engine while the connector is
// in the middle of a send; the next engine on the same database sends it
// once.
func TestSendSurvivesEngineRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.db")
	conn := newTestConnector(t)
	conn.block = make(chan struct{})
	e1 := openWithPlugins(t, nil, conn, func(o *crm.Options) { o.Path = path })
	d := sampleDeal(t, e1)
	s, err := e1.SendDocument(context.Background(), d.ID, "contract", "mail")
	require.NoError(t, err)
	require.Eventually(t, func() bool { conn.mu.Lock(); defer conn.mu.Unlock(); return conn.calls == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, e1.Close()) // the send is cut off mid-call
	assert.Empty(t, conn.sent())

	conn.mu.Lock()
	conn.block = nil
	conn.mu.Unlock()
	e2 := openWithPlugins(t, nil, conn, func(o *crm.Options) { o.Path = path })
	s = waitSend(t, e2, s.ID)
	assert.Equal(t, crm.SendSent, s.Status)
	require.Len(t, conn.sent(), 1)

	require.NoError(t, e2.Close())

	// The connector delivered a send but the engine died before it
	// recorded the receipt: the next engine hands it over again with the
	// same key, and the connector answers with its first receipt.
	conn.block = make(chan struct{})
	e3 := openWithPlugins(t, nil, conn, func(o *crm.Options) { o.Path = path })
	s2, err := e3.SendDocument(context.Background(), d.ID, "invoice", "mail")
	require.NoError(t, err)
	require.Eventually(t, func() bool { conn.mu.Lock(); defer conn.mu.Unlock(); return conn.calls == 3 }, 5*time.Second, time.Millisecond)
	first, err := conn.journal.Once(context.Background(), s2.IdempotencyKey(), func() (plugins.Receipt, error) {
		conn.mu.Lock()
		defer conn.mu.Unlock()
		conn.delivered = append(conn.delivered, plugins.Message{IdempotencyKey: s2.IdempotencyKey()})
		return plugins.Receipt{ProviderID: "delivered-before-the-crash", Status: plugins.StatusSent}, nil
	})
	require.NoError(t, err)
	require.NoError(t, e3.Close())
	conn.mu.Lock()
	conn.block = nil
	conn.mu.Unlock()
	e4 := openWithPlugins(t, nil, conn, func(o *crm.Options) { o.Path = path })
	s2 = waitSend(t, e4, s2.ID)
	assert.Equal(t, first.ProviderID, s2.ProviderID)
	assert.Len(t, conn.sent(), 2, "delivered once")
}
