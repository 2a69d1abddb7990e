package crm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/storage"
)

// Plugins finds the document renderers and channel connectors the engine
// sends through. *plugins.Manager (plugin processes) and plugins.Static
// (in-process implementations) implement it.
type Plugins interface {
	Renderer(name string) (plugins.Renderer, error)
	Connector(name string) (plugins.Connector, error)
}

// SendStatus is how far a Send got.
type SendStatus string

// Send statuses. A send is pending until the connector accepted it
// (sent) or it failed for good; delivery status updates from the channel
// move it on to delivered, read or failed.
const (
	SendPending   SendStatus = "pending"
	SendSent      SendStatus = "sent"
	SendDelivered SendStatus = "delivered"
	SendRead      SendStatus = "read"
	SendFailed    SendStatus = "failed"
)

// Send is a message on its way out through a channel connector, possibly
// with a rendered document. It is written to the store (with its timeline
// entry and its send.created event) in one transaction; the engine's
// sender then renders the document, hands the message to the connector
// with the send's ID as idempotency key, and records the receipt. A crash
// of the plugin or the engine at any point leads to a retry with the same
// key, so the connector delivers the message once.
//
// Indexes for ListOptions.By: "status", "provider_id", "channel",
// "contact", "account", "lead", "deal", "case", "owner", "tag".
//
// Events: send.created, send.updated (sent, failed, delivery status).
type Send struct {
	Meta
	// Channel is the connector's name, as Options.Plugins knows it.
	Channel   string `json:"channel"`
	Recipient string `json:"recipient"`
	Subject   string `json:"subject,omitempty"`
	Body      string `json:"body,omitempty"`
	// Renderer, Template and Format name the document to render and
	// attach; Document is the data it is filled with, as it was when the
	// send was made. Template is empty for a plain message.
	Renderer string                `json:"renderer,omitempty"`
	Template string                `json:"template,omitempty"`
	Format   plugins.Format        `json:"format,omitempty"`
	Document *plugins.DocumentData `json:"document,omitempty"`

	Status SendStatus `json:"status"`
	// Attempts counts failed tries; LastError says why the last failed.
	Attempts  int    `json:"attempts,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// ProviderID is the channel's id of the message (a Message-ID, a
	// gateway's id), set once sent.
	ProviderID string    `json:"provider_id,omitempty"`
	SentAt     time.Time `json:"sent_at,omitzero"`
	// FileName is the attached document's name, once rendered.
	FileName string `json:"file_name,omitempty"`
	Links
}

const sendsCollection = "sends"

// Timeline entry types of sends.
const (
	TimelineSend       = "send"        // a message was queued; Ref is the send
	TimelineSendFailed = "send_failed" // it failed for good; Summary says why
)

var sendKind = func() *kind[Send] {
	ix := []storage.Index{
		{Name: "status", Field: "status"},
		{Name: "provider_id", Field: "provider_id"},
		{Name: "channel", Field: "channel"},
		{Name: "owner", Field: "owner"},
		{Name: "tag", Field: "tags"},
	}
	k := newKind[Send]("send", storage.Collection{Name: sendsCollection, Indexes: append(ix, linkIndexes()...)}, checkSend, nil)
	k.afterCreate = func(ctx context.Context, tx storage.Tx, s *Send) error {
		what := "message"
		if s.Template != "" {
			what = s.Template
		}
		return appendLinked(ctx, tx, &s.Links, TimelineEntry{At: s.CreatedAt, Type: TimelineSend,
			Summary: fmt.Sprintf("%s to %s via %s", what, s.Recipient, s.Channel), RefCollection: sendsCollection, RefID: s.ID})
	}
	k.checkUpdate = func(cur, next *Send, p *problems) {
		if cur.Links != next.Links || cur.Channel != next.Channel || cur.Recipient != next.Recipient ||
			cur.Template != next.Template || cur.Subject != next.Subject || cur.Body != next.Body {
			p.add("channel", "a send's message, recipient and links are fixed once made")
		}
	}
	return k
}()

func checkSend(ctx context.Context, tx storage.ReadTx, s, prev *Send, p *problems) error {
	var was Send
	if prev != nil {
		was = *prev
	}
	checkText(p, "channel", &s.Channel)
	if s.Channel == "" {
		p.add("channel", "is required")
	}
	checkText(p, "recipient", &s.Recipient)
	if s.Recipient == "" {
		p.add("recipient", "is required")
	}
	checkText(p, "subject", &s.Subject)
	checkLongText(p, "body", s.Body)
	switch s.Status {
	case "":
		s.Status = SendPending
	case SendPending, SendSent, SendDelivered, SendRead, SendFailed:
	default:
		p.add("status", "%q is not pending, sent, delivered, read or failed", s.Status)
	}
	if s.Template != "" {
		if s.Format == "" {
			s.Format = plugins.PDF
		}
		if s.Document == nil {
			p.add("document", "is required with a template")
		} else if err := s.Document.Validate(); err != nil {
			p.add("document", "%s", strings.TrimPrefix(err.Error(), plugins.ErrRejected.Error()+": "))
		}
	}
	return checkLinks(ctx, tx, p, &s.Links, was.Links)
}

// Sends returns the tenant's sends.
func (t *Tenant) Sends() *Records[Send] { return &Records[Send]{t: t, k: sendKind} }

// Sends returns the sends of the default tenant.
func (e *Engine) Sends() *Records[Send] { return e.Default().Sends() }

// DocumentSend asks for a document about a deal to be rendered and sent.
type DocumentSend struct {
	// ID is the Send's ID; empty gives a new one. A given ID makes the
	// request idempotent: one that is stored already fails with
	// ErrExists and stores nothing.
	ID       string
	DealID   string
	Template string
	// Via is the connector's name.
	Via string
	// Format defaults to PDF.
	Format plugins.Format
	// Recipient defaults to the deal's contact's email (or phone).
	Recipient string
	// Subject and Body default to a short covering note.
	Subject, Body string
	// Number is the document's number; it defaults to the day and six
	// characters of the send's ID, e.g. "20261203-4F1A9C".
	Number string
	// Owner is the send's owner; it defaults to the deal's.
	Owner string

	// cause is the event (of an automation run) the send follows from.
	cause Event
}

// SendDocument renders a document about a deal (for example "proposal",
// "contract" or "invoice") and sends it through the connector named via,
// to the deal's contact: see SendDocumentWith.
func (t *Tenant) SendDocument(ctx context.Context, dealID, template, via string) (Send, error) {
	return t.SendDocumentWith(ctx, DocumentSend{DealID: dealID, Template: template, Via: via})
}

// SendDocument is Tenant.SendDocument on the default tenant.
func (e *Engine) SendDocument(ctx context.Context, dealID, template, via string) (Send, error) {
	return e.Default().SendDocument(ctx, dealID, template, via)
}

// SendDocumentWith fills the document's data from the deal, its contact
// and account, its lines and the tenant's price lists (as they are now),
// and stores a pending Send with its timeline entry and event in one
// transaction. It returns once the send is stored; the engine's sender
// renders and sends it in the background, retrying with backoff, and
// records the outcome on the Send and the deal's timeline. It needs
// Options.Plugins; a deal that cannot make a document (no contact
// address, no currency, a product without a price) fails with a
// *ValidationError, leaving nothing stored.
func (t *Tenant) SendDocumentWith(ctx context.Context, req DocumentSend) (Send, error) {
	if t.e.opts.Plugins == nil {
		return Send{}, fmt.Errorf("crm: send document: %w: the engine has no Options.Plugins", ErrInvalid)
	}
	deal, err := t.Deals().Get(ctx, req.DealID)
	if err != nil {
		return Send{}, fmt.Errorf("crm: send document: %w", err)
	}
	sendID := req.ID
	if sendID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return Send{}, fmt.Errorf("crm: send document: generating ID: %w", err)
		}
		sendID = id.String()
	}
	number := req.Number
	if number == "" { // the day and the end of the send's (random) ID
		number = strings.ToUpper(t.Now().In(t.Location()).Format("20060102") + "-" + lastN(sendID, 6))
	}
	var p problems
	doc, contact, err := t.documentData(ctx, deal, number, &p)
	if err != nil {
		return Send{}, fmt.Errorf("crm: send document: %w", err)
	}
	s := Send{Channel: req.Via, Recipient: req.Recipient, Subject: req.Subject, Body: req.Body,
		Renderer: t.e.opts.DocumentRenderer, Template: req.Template, Format: req.Format, Document: doc,
		Links: Links{DealID: deal.ID, ContactID: deal.ContactID, AccountID: deal.AccountID}}
	s.ID, s.Owner = sendID, req.Owner
	if s.Owner == "" {
		s.Owner = deal.Owner
	}
	if s.Recipient == "" {
		s.Recipient = contact.Email
		if s.Recipient == "" {
			s.Recipient = contact.Phone
		}
		if s.Recipient == "" {
			p.add("recipient", "the deal's contact has no email or phone; give a recipient")
		}
	}
	if s.Template == "" {
		p.add("template", "is required")
	}
	if s.Subject == "" {
		s.Subject = fmt.Sprintf("%s %s: %s", titleCase(s.Template), doc.Number, deal.Title)
	}
	if s.Body == "" {
		s.Body = fmt.Sprintf("Dear %s,\n\nplease find attached our %s %s for %s.\n\nKind regards,\n%s",
			contact.Name(), s.Template, doc.Number, deal.Title, doc.Seller.Name)
	}
	if err := p.err("send", ""); err != nil {
		return Send{}, err
	}
	return t.createSend(ctx, s, req.cause)
}

// createSend stores a new send, its events caused by cause.
func (t *Tenant) createSend(ctx context.Context, s Send, cause Event) (Send, error) {
	sends := t.Sends()
	var out Send
	err := sends.update(ctx, func(tx storage.Tx) error {
		var err error
		out, err = sends.create(ctx, causedBy(tx, cause), s, sends.now())
		return err
	})
	return out, err
}

func titleCase(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// documentData fills a document's data from a deal; problems with the
// deal's data are added to p.
func (t *Tenant) documentData(ctx context.Context, deal Deal, number string, p *problems) (*plugins.DocumentData, Contact, error) {
	now := t.Now().In(t.Location())
	d := &plugins.DocumentData{Number: number, IssuedOn: now.Format(time.DateOnly),
		DueOn: now.AddDate(0, 0, 30).Format(time.DateOnly), ValidUntil: now.AddDate(0, 0, 30).Format(time.DateOnly),
		Currency: deal.Amount.Currency, Seller: t.e.opts.Seller,
		Deal: plugins.Deal{ID: deal.ID, Title: deal.Title, Stage: deal.Stage, Owner: deal.Owner, ExpectedClose: deal.ExpectedClose}}
	var contact Contact
	if deal.ContactID == "" {
		p.add("contact_id", "the deal has no contact to address the document to")
	} else {
		c, err := t.Contacts().Get(ctx, deal.ContactID)
		if err != nil {
			return nil, Contact{}, err
		}
		contact = c
		d.Customer = plugins.Party{Name: c.Name(), Email: c.Email, Phone: c.Phone}
	}
	if deal.AccountID != "" {
		a, err := t.Accounts().Get(ctx, deal.AccountID)
		if err != nil {
			return nil, Contact{}, err
		}
		d.Account = plugins.Party{Name: a.Name, Address: a.City}
	}
	scale, err := CurrencyScale(d.Currency)
	if err != nil {
		p.add("amount", "the deal has no currency (set its amount) to price a document in")
		return d, contact, nil
	}
	d.Scale = scale
	if len(deal.Lines) == 0 {
		p.add("lines", "the deal has no lines to put on a document")
	}
	var skus []string
	for _, l := range deal.Lines {
		skus = append(skus, l.SKU)
	}
	products, err := t.Products().FindBy(ctx, "sku", skus)
	if err != nil {
		return nil, Contact{}, err
	}
	for i, l := range deal.Lines {
		line := plugins.Line{SKU: l.SKU, Description: l.Description, Quantity: l.Quantity, UnitPrice: l.UnitPrice.Amount,
			DiscountBP: l.DiscountBP, TaxBP: l.TaxBP}
		if pr, ok := products[l.SKU]; ok {
			line.Unit = pr.Unit
			if line.Description == "" {
				line.Description = pr.Name
			}
		}
		if line.Description == "" {
			line.Description = l.SKU
		}
		if l.UnitPrice == (Money{}) {
			price, err := t.PriceLists().PriceOf(ctx, l.SKU, d.Currency, d.IssuedOn)
			switch {
			case errors.Is(err, ErrNotFound):
				p.add(fmt.Sprintf("lines[%d].unit_price", i), "no %s price for %s on %s in the price lists", d.Currency, l.SKU, d.IssuedOn)
			case err != nil:
				return nil, Contact{}, err
			}
			line.UnitPrice = price.Amount
		}
		d.Lines = append(d.Lines, line)
	}
	return d, contact, nil
}

func lastN(s string, n int) string {
	s = strings.ReplaceAll(s, "-", "")
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// SendMessage asks for a plain message (no document) to be sent through
// the connector named s.Channel, as SendDocumentWith does.
func (t *Tenant) SendMessage(ctx context.Context, s Send) (Send, error) {
	if t.e.opts.Plugins == nil {
		return Send{}, fmt.Errorf("crm: send message: %w: the engine has no Options.Plugins", ErrInvalid)
	}
	if s.Template != "" || s.Document != nil {
		return Send{}, fmt.Errorf("crm: send message: %w: use SendDocumentWith for documents", ErrInvalid)
	}
	s.Status, s.Attempts, s.LastError, s.ProviderID, s.SentAt = "", 0, "", "", time.Time{}
	return t.Sends().Create(ctx, s)
}
