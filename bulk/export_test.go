package bulk_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/bulk"
	"github.com/rapportcrm/rapport/crm"
)

// TestExportImportRoundTrip exports orders and contacts from one tenant
// and imports them into another: the same orders, totals and contacts.
func TestExportImportRoundTrip(t *testing.T) {
	e, _ := newTenant(t)
	ctx := context.Background()
	src := `order_number,customer_external_id,ordered_at,sku,description,quantity,unit_price,currency,country
1001,c1,2026-01-05 10:00:00,A,"Mug, ""large""",2,1.50,EUR,France
1001,c1,2026-01-05 10:00:00,B,Spoon,1,0.05,EUR,France
C1002,c2,2026-01-06 10:00:00,A,Mug,-1,1.50,EUR,Spain
1003,c2,2026-01-07 10:00:00,Y,Yen thing,3,120,JPY,Japan
`
	res, err := bulk.ImportOrders(ctx, e.Default(), strings.NewReader(src), bulk.Options{RefundPrefix: "C"})
	require.NoError(t, err)
	require.Equal(t, 3, res.Created, res.Errors)

	var out bytes.Buffer
	require.NoError(t, bulk.ExportOrders(ctx, e.Default(), &out, bulk.CSV))
	rows, err := csv.NewReader(bytes.NewReader(out.Bytes())).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 5)
	assert.Contains(t, rows, []string{"1001", "c1", "2026-01-05T10:00:00Z", "A", `Mug, "large"`, "2", "1.50", "EUR", "France", "false"})
	assert.Contains(t, rows, []string{"1003", "c2", "2026-01-07T10:00:00Z", "Y", "Yen thing", "3", "120", "JPY", "Japan", "false"})
	assert.Contains(t, rows, []string{"C1002", "c2", "2026-01-06T10:00:00Z", "A", "Mug", "-1", "1.50", "EUR", "Spain", "true"})

	// The refund column keeps refunds refunds without a prefix rule.
	other := e.Tenant("copy")
	res, err = bulk.ImportOrders(ctx, other, bytes.NewReader(out.Bytes()), bulk.Options{})
	require.NoError(t, err)
	assert.Equal(t, 3, res.Created)
	assert.Equal(t, 2, res.CustomersCreated)
	for _, n := range []string{"1001", "C1002", "1003"} {
		a, err := e.Orders().FindBy(ctx, "number", []string{n})
		require.NoError(t, err)
		b, err := other.Orders().FindBy(ctx, "number", []string{n})
		require.NoError(t, err)
		assert.Equal(t, a[n].Total, b[n].Total, n)
		assert.Equal(t, a[n].Lines, b[n].Lines, n)
		assert.Equal(t, a[n].Refund, b[n].Refund, n)
	}

	// Contacts, with custom fields, round-trip through CSV and JSON Lines.
	_, err = e.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", Email: "ada@example.com",
		Meta: crm.Meta{Tags: []string{"vip", "b2b"}, Custom: map[string]any{"tier": "gold"}}})
	require.NoError(t, err)
	out.Reset()
	require.NoError(t, bulk.ExportContacts(ctx, e.Default(), &out, bulk.CSV))
	assert.Contains(t, out.String(), "custom.tier")
	res, err = bulk.ImportContacts(ctx, e.Tenant("copy2"), bytes.NewReader(out.Bytes()), bulk.Options{})
	require.NoError(t, err)
	assert.Equal(t, 3, res.Created, res.Errors)
	found, err := e.Tenant("copy2").Contacts().FindBy(ctx, "email", []string{"ada@example.com"})
	require.NoError(t, err)
	assert.Equal(t, "gold", found["ada@example.com"].Custom["tier"])
	assert.Equal(t, []string{"vip", "b2b"}, found["ada@example.com"].Tags)

	out.Reset()
	require.NoError(t, bulk.ExportContacts(ctx, e.Default(), &out, bulk.JSONL))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 3)
	for _, l := range lines {
		var c crm.Contact
		require.NoError(t, json.Unmarshal([]byte(l), &c))
		assert.NotEmpty(t, c.ID)
	}
	require.ErrorIs(t, bulk.ExportProducts(ctx, e.Default(), &out, "xml"), bulk.ErrInvalid)
	require.ErrorIs(t, bulk.ExportOrders(ctx, e.Default(), &out, "xml"), bulk.ErrInvalid)
}

// TestTypedCustomFieldsRoundTrip: custom values typed by a schema export
// as text and import back as the same types.
func TestTypedCustomFieldsRoundTrip(t *testing.T) {
	e, _ := newTenant(t)
	ctx := context.Background()
	schema := &crm.Schema{Entity: "contact", Fields: []crm.FieldDef{
		{Key: "score", Type: crm.FieldNumber}, {Key: "vip", Type: crm.FieldBool},
		{Key: "likes", Type: crm.FieldMultiEnum, Options: []string{"golf", "chess"}},
		{Key: "budget", Type: crm.FieldMoney},
	}}
	for _, tn := range []string{"default", "copy"} {
		require.NoError(t, e.Tenant(tn).Schemas().Save(ctx, schema))
	}
	_, err := e.Contacts().Create(ctx, crm.Contact{Email: "ada@example.com", Meta: crm.Meta{Custom: map[string]any{
		"score": 41.5, "vip": true, "likes": []string{"golf", "chess"}, "budget": map[string]any{"amount": 100, "currency": "EUR"},
	}}})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, bulk.ExportContacts(ctx, e.Default(), &out, bulk.CSV))
	res, err := bulk.ImportContacts(ctx, e.Tenant("copy"), bytes.NewReader(out.Bytes()), bulk.Options{})
	require.NoError(t, err)
	require.Equal(t, 1, res.Created, res.Errors)
	got, err := e.Tenant("copy").Contacts().FindBy(ctx, "email", []string{"ada@example.com"})
	require.NoError(t, err)
	c := got["ada@example.com"]
	assert.Equal(t, json.Number("41.5"), c.Custom["score"])
	assert.Equal(t, true, c.Custom["vip"])
	assert.Equal(t, []any{"golf", "chess"}, c.Custom["likes"])

	// Text that does not fit is reported by the engine, with its line.
	res, err = bulk.ImportContacts(ctx, e.Tenant("copy"), strings.NewReader("email,custom.score\nbob@example.com,lots\n"), bulk.Options{})
	require.NoError(t, err)
	require.Len(t, res.Errors, 1)
	assert.Equal(t, 2, res.Errors[0].Line)
	assert.Contains(t, res.Errors[0].Error(), "custom.score")
}
