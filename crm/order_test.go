package crm_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
)

func TestOrdersAndRefunds(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	rec := newRecorder()
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "orders", Events: []string{"order.*"}, Handler: rec.handle}))
	c, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", Email: "ada@example.com"})
	require.NoError(t, err)
	mug, err := env.engine.Products().Create(ctx, crm.Product{SKU: "MUG-1", Name: "Mug", Category: "kitchen"})
	require.NoError(t, err)
	at := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	price := func(s string) crm.Money {
		m, err := crm.ParseMoney(s, "GBP")
		require.NoError(t, err)
		return m
	}
	o, err := env.engine.Orders().Create(ctx, crm.Order{Number: "536365", ContactID: c.ID, OrderedAt: at, Currency: "GBP",
		Lines: []crm.OrderLine{
			{SKU: "MUG-1", ProductID: mug.ID, Quantity: 6, UnitPrice: price("2.55")},
			{SKU: "POST", Quantity: 1, UnitPrice: crm.Money{Amount: 1800}, Delivery: true},
		}})
	require.NoError(t, err)
	assert.Equal(t, crm.Money{Amount: 6*255 + 1800, Currency: "GBP"}, o.Total)
	assert.Equal(t, "GBP", o.Lines[1].UnitPrice.Currency, "a line without a currency takes the order's")
	evs := rec.wait(t, 1)
	assert.Equal(t, "order.placed", evs[0].Type)

	refund, err := env.engine.Orders().Create(ctx, crm.Order{Number: "C536379", ContactID: c.ID, OrderedAt: at.Add(time.Hour),
		Currency: "GBP", Refund: true, RefundOf: o.ID, Lines: []crm.OrderLine{{SKU: "MUG-1", Quantity: -2, UnitPrice: price("2.55")}}})
	require.NoError(t, err)
	assert.Equal(t, int64(-510), refund.Total.Amount)

	tl, err := env.engine.Contacts().Timeline(ctx, c.ID, crm.TimelineOptions{})
	require.NoError(t, err)
	require.Len(t, tl.Items, 2)
	assert.Equal(t, crm.TimelineOrder, tl.Items[0].Type)
	assert.Equal(t, "order 536365: 33.30 GBP", tl.Items[0].Summary)
	assert.Equal(t, "refund C536379: -5.10 GBP", tl.Items[1].Summary)

	bySKU, err := env.engine.Orders().List(ctx, crm.ListOptions{By: "sku", Value: "MUG-1"})
	require.NoError(t, err)
	assert.Len(t, bySKU.Items, 2)
	byContact, err := env.engine.Orders().List(ctx, crm.ListOptions{By: "contact", Value: c.ID})
	require.NoError(t, err)
	assert.Len(t, byContact.Items, 2)
	require.ErrorIs(t, env.engine.Orders().Delete(ctx, o.ID), crm.ErrInUse, "the refund refers to it")
	require.ErrorIs(t, env.engine.Contacts().Delete(ctx, c.ID), crm.ErrInUse)

	before := snapshot(t, env.store, "default")
	for name, bad := range map[string]struct {
		o      crm.Order
		fields []string
	}{
		"empty": {crm.Order{}, []string{"number", "ordered_at", "currency", "lines"}},
		"taken number": {crm.Order{Number: "536365", OrderedAt: at, Currency: "GBP",
			Lines: []crm.OrderLine{{Quantity: 1}}}, []string{"number"}},
		"signs": {crm.Order{Number: "x1", OrderedAt: at, Currency: "GBP",
			Lines: []crm.OrderLine{{Quantity: -1}, {Quantity: 0}, {Quantity: 1, UnitPrice: crm.Money{Amount: -5}}}},
			[]string{"lines[0].quantity", "lines[1].quantity", "lines[2].unit_price"}},
		"refund signs": {crm.Order{Number: "x2", OrderedAt: at, Currency: "GBP", Refund: true,
			Lines: []crm.OrderLine{{Quantity: 1}}}, []string{"lines[0].quantity"}},
		"mixed currencies": {crm.Order{Number: "x3", OrderedAt: at, Currency: "GBP",
			Lines: []crm.OrderLine{{Quantity: 1, UnitPrice: crm.Money{Amount: 1, Currency: "EUR"}}}}, []string{"lines[0].unit_price"}},
		"overflow": {crm.Order{Number: "x4", OrderedAt: at, Currency: "GBP",
			Lines: []crm.OrderLine{{Quantity: 1 << 62, UnitPrice: crm.Money{Amount: 100}}}}, []string{"lines[0]"}},
		"bad refs": {crm.Order{Number: "x5", OrderedAt: at, Currency: "GBP", ContactID: "nope", RefundOf: refund.ID,
			Lines: []crm.OrderLine{{Quantity: 1, ProductID: "gone"}}}, []string{"contact_id", "refund_of", "refund_of", "lines[0].product_id"}},
		"refund of a refund": {crm.Order{Number: "x6", OrderedAt: at, Currency: "GBP", Refund: true, RefundOf: refund.ID,
			Lines: []crm.OrderLine{{Quantity: -1}}}, []string{"refund_of"}},
	} {
		_, err := env.engine.Orders().Create(ctx, bad.o)
		var ve *crm.ValidationError
		require.ErrorAs(t, err, &ve, name)
		var fields []string
		for _, f := range ve.Fields {
			fields = append(fields, f.Field)
		}
		assert.ElementsMatch(t, bad.fields, fields, name)
	}
	_, err = env.engine.Products().Create(ctx, crm.Product{SKU: "MUG-1", Name: "Another mug"})
	require.Error(t, err, "SKUs are unique")
	assert.Equal(t, before, snapshot(t, env.store, "default"))
}
