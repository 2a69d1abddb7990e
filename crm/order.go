package crm

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tidwall/gjson"

	"github.com/rapportcrm/rapport/storage"
)

// Product is something the tenant sells.
//
// Indexes for ListOptions.By: "sku" (unique per tenant), "name",
// "category", "tag", "owner".
//
// Events: product.created, product.updated, product.deleted.
type Product struct {
	Meta
	// SKU is required and unique per tenant.
	SKU string `json:"sku"`
	// Name is required.
	Name string `json:"name"`
	// Unit is what one quantity is, for example "piece" or "hour".
	Unit     string `json:"unit,omitempty"`
	Category string `json:"category,omitempty"`
}

const productsCollection = "products"

var productKind = newKind[Product]("product",
	storage.Collection{Name: productsCollection, Indexes: []storage.Index{
		{Name: "sku", Field: "sku", Unique: true},
		{Name: "name", Field: "name"},
		{Name: "category", Field: "category"},
		{Name: "tag", Field: "tags"},
		{Name: "owner", Field: "owner"},
	}},
	checkProduct, nil)

func checkProduct(_ context.Context, _ storage.ReadTx, pr, _ *Product, p *problems) error {
	checkText(p, "sku", &pr.SKU)
	if pr.SKU == "" {
		p.add("sku", "is required")
	}
	checkText(p, "name", &pr.Name)
	if pr.Name == "" {
		p.add("name", "is required")
	}
	checkText(p, "unit", &pr.Unit)
	checkText(p, "category", &pr.Category)
	return nil
}

// Products returns the tenant's products.
func (t *Tenant) Products() *Records[Product] { return &Records[Product]{t: t, k: productKind} }

// Products returns the products of the default tenant.
func (e *Engine) Products() *Records[Product] { return e.Default().Products() }

// MaxOrderLines is the most lines one order may have.
const MaxOrderLines = 1000

// OrderLine is one line of an order.
type OrderLine struct {
	// SKU names the product; ProductID may refer to a stored product.
	SKU         string `json:"sku,omitempty"`
	ProductID   string `json:"product_id,omitempty"`
	Description string `json:"description,omitempty"`
	Category    string `json:"category,omitempty"`
	// Quantity is positive on orders and negative on refunds; never 0.
	Quantity int64 `json:"quantity"`
	// UnitPrice is not negative; its currency is the order's (an empty
	// currency takes the order's).
	UnitPrice Money `json:"unit_price"`
	// Delivery marks a shipping or delivery line, which loyalty rules can
	// leave out.
	Delivery bool `json:"delivery,omitempty"`
}

// Amount returns Quantity × UnitPrice.
func (l OrderLine) Amount() (Money, error) { return l.UnitPrice.Mul(l.Quantity) }

// Order is a purchase by a customer, with lines. A refund is an order with
// Refund set and negative quantities, referring to the original order by
// RefundOf when it is known. Orders feed loyalty earning and RFM.
//
// Indexes for ListOptions.By: "number" (unique per tenant), "contact",
// "account", "ordered_at" (RFC 3339 UTC, sortable), "sku" (one entry per
// line's SKU), "refund_of", "campaign", "owner", "tag".
//
// Events: order.placed (on create), order.updated, order.deleted. A new
// order appears on its customer's and account's timelines.
type Order struct {
	Meta
	// Number is required and unique per tenant: the shop's order or
	// invoice number, which makes imports restartable.
	Number string `json:"number"`
	// ContactID is the customer, if known; AccountID the company.
	ContactID string `json:"contact_id,omitempty"`
	AccountID string `json:"account_id,omitempty"`
	// OrderedAt is required.
	OrderedAt time.Time `json:"ordered_at"`
	// Currency is the ISO 4217 code of every amount in the order.
	Currency string      `json:"currency"`
	Lines    []OrderLine `json:"lines"`
	// Total is the sum of the lines' amounts, set by the engine: negative
	// for refunds.
	Total      Money  `json:"total"`
	Refund     bool   `json:"refund,omitempty"`
	RefundOf   string `json:"refund_of,omitempty"`
	Country    string `json:"country,omitempty"`
	CampaignID string `json:"campaign_id,omitempty"`
}

const ordersCollection = "orders"

var orderKind = func() *kind[Order] {
	k := newKind[Order]("order",
		storage.Collection{Name: ordersCollection, Indexes: []storage.Index{
			{Name: "number", Field: "number", Unique: true},
			{Name: "contact", Field: "contact_id"},
			{Name: "account", Field: "account_id"},
			{Name: "ordered_at", Extract: sortableTime("ordered_at")},
			{Name: "sku", Extract: lineSKUs},
			{Name: "refund_of", Field: "refund_of"},
			{Name: "campaign", Field: "campaign_id"},
			{Name: "owner", Field: "owner"},
			{Name: "tag", Field: "tags"},
			{Name: "customer_facts", Extract: orderFactKey, Columns: orderFactColumns},
		}},
		checkOrder, func(ctx context.Context, tx storage.ReadTx, id string) error {
			return referencedBy(ctx, tx, "order", id, []string{ordersCollection}, "refund_of")
		})
	k.createdVerb = "placed"
	k.afterCreate = func(ctx context.Context, tx storage.Tx, o *Order) error {
		what := "order "
		if o.Refund {
			what = "refund "
		}
		return appendLinked(ctx, tx, &Links{ContactID: o.ContactID, AccountID: o.AccountID}, TimelineEntry{At: o.OrderedAt,
			Type: TimelineOrder, Summary: what + o.Number + ": " + o.Total.String(), RefCollection: ordersCollection, RefID: o.ID})
	}
	return k
}()

func checkOrder(ctx context.Context, tx storage.ReadTx, o, prev *Order, p *problems) error {
	var was Order
	if prev != nil {
		was = *prev
	}
	checkText(p, "number", &o.Number)
	if o.Number == "" {
		p.add("number", "is required")
	} else if err := storage.ValidateID("number", o.Number); err != nil {
		p.add("number", "%v", err)
	}
	if o.OrderedAt.IsZero() {
		p.add("ordered_at", "is required")
	}
	o.OrderedAt = o.OrderedAt.UTC()
	checkTime(p, "ordered_at", o.OrderedAt)
	currencyOK := true
	if _, err := CurrencyScale(o.Currency); err != nil {
		p.add("currency", "%q is not an ISO 4217 currency code", o.Currency)
		currencyOK = false
	}
	checkText(p, "country", &o.Country)
	switch {
	case len(o.Lines) == 0:
		p.add("lines", "an order needs at least one line")
	case len(o.Lines) > MaxOrderLines:
		p.add("lines", "%d lines, the limit is %d", len(o.Lines), MaxOrderLines)
	}
	total := Money{Currency: o.Currency}
	for i := range o.Lines {
		l := &o.Lines[i]
		f := fmt.Sprintf("lines[%d]", i)
		checkText(p, f+".sku", &l.SKU)
		checkText(p, f+".category", &l.Category)
		checkLongText(p, f+".description", l.Description)
		switch {
		case l.Quantity == 0:
			p.add(f+".quantity", "is 0")
		case o.Refund && l.Quantity > 0:
			p.add(f+".quantity", "%d: a refund's quantities are negative", l.Quantity)
		case !o.Refund && l.Quantity < 0:
			p.add(f+".quantity", "%d: negative quantities belong on a refund", l.Quantity)
		}
		if l.UnitPrice.Currency == "" {
			l.UnitPrice.Currency = o.Currency
		}
		if l.UnitPrice.Amount < 0 {
			p.add(f+".unit_price", "%d is negative", l.UnitPrice.Amount)
		}
		if l.UnitPrice.Currency != o.Currency {
			p.add(f+".unit_price", "currency %s differs from the order's %s", l.UnitPrice.Currency, o.Currency)
			continue
		}
		if !currencyOK {
			continue
		}
		amount, err := l.Amount()
		if err == nil {
			total, err = total.Add(amount)
		}
		if err != nil {
			p.add(f, "%v", err)
		}
		if err := checkRef(ctx, tx, p, f+".product_id", productsCollection, "product", &l.ProductID, lineProduct(was.Lines, i)); err != nil {
			return err
		}
	}
	o.Total = total
	if o.RefundOf != "" && !o.Refund {
		p.add("refund_of", "only a refund refers to an original order")
	}
	for _, ref := range []struct {
		field, coll, what string
		id                *string
		was               string
	}{
		{"contact_id", contactsCollection, "contact", &o.ContactID, was.ContactID},
		{"account_id", accountsCollection, "account", &o.AccountID, was.AccountID},
		{"refund_of", ordersCollection, "order", &o.RefundOf, was.RefundOf},
		{"campaign_id", campaignsCollection, "campaign", &o.CampaignID, was.CampaignID},
	} {
		if err := checkRef(ctx, tx, p, ref.field, ref.coll, ref.what, ref.id, ref.was); err != nil {
			return err
		}
	}
	if o.RefundOf != "" && o.RefundOf != was.RefundOf {
		rec, err := tx.Get(ctx, ordersCollection, o.RefundOf)
		if err == nil && gjsonString(rec.Body, "refund") == "true" {
			p.add("refund_of", "order %s is itself a refund", o.RefundOf)
		}
	}
	return nil
}

// lineSKUs indexes an order under each distinct SKU of its lines.
func lineSKUs(body []byte) ([]string, error) {
	var out []string
	for _, v := range gjson.GetBytes(body, "lines.#.sku").Array() {
		if s := v.String(); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func lineProduct(lines []OrderLine, i int) string {
	if i < len(lines) {
		return lines[i].ProductID
	}
	return ""
}

// Orders returns the tenant's orders.
func (t *Tenant) Orders() *Records[Order] { return &Records[Order]{t: t, k: orderKind} }

// Orders returns the orders of the default tenant.
func (e *Engine) Orders() *Records[Order] { return e.Default().Orders() }
