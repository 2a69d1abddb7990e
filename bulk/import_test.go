package bulk_test

import (
	"context"
	"encoding/csv"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rapportcrm/rapport/bulk"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// retailPath is the real Online Retail sample, outside the repository.
const retailPath = "../../shared/data/online_retail_sample.csv"

// retailMapping maps the sample's columns to order fields.
var retailMapping = map[string]string{
	"InvoiceNo": "order_number", "StockCode": "sku", "Description": "description", "Quantity": "quantity",
	"InvoiceDate": "ordered_at", "UnitPrice": "unit_price", "CustomerID": "customer_external_id", "Country": "country",
}

func retailFile(tb testing.TB) string {
	tb.Helper()
	if _, err := os.Stat(retailPath); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is missing, and in CI it must be present: %v", retailPath, err)
		}
		tb.Skipf("%s is missing (see ../shared/data/README.md); skipping the real-data import", retailPath)
	}
	return retailPath
}

// retailCounts computes, independently of the importer, what importing the
// sample must give.
type retailCounts struct {
	lines, noCustomer            int
	customers, invoices, refunds int
	total                        int64 // net pence over lines with a customer
	linesByInvoice               map[string]int
}

func countRetail(t *testing.T, path string) retailCounts {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	c := retailCounts{linesByInvoice: map[string]int{}}
	customers, invoices, refunds := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, r := range recs[1:] {
		c.lines++
		inv, qty, price, cust := r[0], r[3], r[5], r[6]
		if cust == "" {
			c.noCustomer++
			continue
		}
		customers[strings.TrimSuffix(cust, ".0")] = true
		invoices[inv] = true
		if strings.HasPrefix(inv, "C") {
			refunds[inv] = true
		}
		c.linesByInvoice[inv]++
		q, err := strconv.ParseInt(qty, 10, 64)
		require.NoError(t, err)
		whole, frac, _ := strings.Cut(price, ".")
		frac = (frac + "00")[:2]
		pence, err := strconv.ParseInt(whole+frac, 10, 64)
		require.NoError(t, err)
		c.total += q * pence
	}
	c.customers, c.invoices, c.refunds = len(customers), len(invoices), len(refunds)
	return c
}

func newTenant(t *testing.T) (*crm.Engine, storage.Store) {
	t.Helper()
	st := memory.New()
	e, err := crm.Open(context.Background(), crm.Options{Store: st})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, e.Close())
		require.NoError(t, st.Close())
	})
	return e, st
}

func TestImportOnlineRetail(t *testing.T) {
	path := retailFile(t)
	want := countRetail(t, path)
	require.Equal(t, 30000, want.lines)
	e, _ := newTenant(t)
	ctx := context.Background()
	opts := bulk.Options{Mapping: retailMapping, Currency: "GBP", RefundPrefix: "C", BatchSize: 500}

	// Interrupt the first run after two batches, as a crash would.
	runCtx, cancel := context.WithCancel(ctx)
	batches := 0
	opts.Progress = func(bulk.Progress) {
		if batches++; batches == 2 {
			cancel()
		}
	}
	f, err := os.Open(path)
	require.NoError(t, err)
	first, err := bulk.ImportOrders(runCtx, e.Default(), f, opts)
	f.Close()
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1000, first.Created)
	assert.Equal(t, want.customers, first.CustomersCreated)

	// Run again: the stored orders are left alone, the rest are created.
	opts.Progress = nil
	f, err = os.Open(path)
	require.NoError(t, err)
	res, err := bulk.ImportOrders(ctx, e.Default(), f, opts)
	f.Close()
	require.NoError(t, err)
	assert.Equal(t, want.lines, res.Rows)
	assert.Equal(t, 1000, res.Existing)
	assert.Equal(t, want.invoices-1000, res.Created)
	assert.Zero(t, res.CustomersCreated, "no duplicate customers")
	assert.Equal(t, want.noCustomer, res.Skipped, "only the lines without a customer are skipped")
	for _, re := range res.Errors {
		assert.Contains(t, re.Err.Error(), "no customer", re.Error())
	}

	// Count what is stored, independently of the importer's counters.
	var orders, refunds, lines int
	var total int64
	customers := map[string]bool{}
	page := crm.ListOptions{Limit: 5000}
	for {
		pg, err := e.Orders().List(ctx, page)
		require.NoError(t, err)
		for _, o := range pg.Items {
			orders++
			if o.Refund {
				refunds++
				assert.Negative(t, o.Total.Amount, o.Number)
			}
			assert.Len(t, o.Lines, want.linesByInvoice[o.Number], o.Number)
			lines += len(o.Lines)
			total += o.Total.Amount
			customers[o.ContactID] = true
			assert.Equal(t, "GBP", o.Total.Currency)
		}
		if pg.Next == "" {
			break
		}
		page.Cursor = pg.Next
	}
	assert.Equal(t, want.invoices, orders)
	assert.Equal(t, want.refunds, refunds)
	assert.Equal(t, want.lines-want.noCustomer, lines)
	assert.Equal(t, want.total, total, "exact pence, no float drift")
	assert.Len(t, customers, want.customers)

	// The customer ID written as a float is found by its integer form.
	found, err := e.Contacts().FindBy(ctx, "external_id", []string{"12923"})
	require.NoError(t, err)
	require.Contains(t, found, "12923")
	assert.Equal(t, "United Kingdom", found["12923"].Country)
}

func TestImportOrdersBadRows(t *testing.T) {
	e, _ := newTenant(t)
	ctx := context.Background()
	src := `order_number,customer_external_id,ordered_at,sku,quantity,unit_price,currency
1001,c1,2026-01-05 10:00:00,A,2,1.50,EUR
1001,c1,2026-01-05 10:00:00,B,1,0.99,EUR
1002,c2,yesterday,A,1,1.50,EUR
1003,,2026-01-05 11:00:00,A,1,1.50,EUR
1004,c3,2026-01-05 12:00:00,A,two,1.50,EUR
1004,c3,2026-01-05 12:00:00,B,1,1.50,EUR
1005,c4,2026-01-05 12:00:00,A,1,1.555,EUR
1006,c4,2026-01-05 12:00:00,A,-1,1.50,EUR
1007,c5,2026-01-05 12:00:00,A,1,1.50,XXX
1008,c6,2026-01-05 13:00:00,A,1,"1.50
`
	// A customer that cannot be created is reported with its orders; the
	// rest of the import goes on.
	src = strings.Replace(src, "1001,c1", "1009,"+strings.Repeat("x", 300)+",2026-01-05 10:00:00,A,1,1.50,EUR\n1001,c1", 1)
	res, err := bulk.ImportOrders(ctx, e.Default(), strings.NewReader(src), bulk.Options{})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Created)
	lines := map[int]string{}
	for _, re := range res.Errors {
		lines[re.Line] = re.Err.Error()
	}
	assert.Contains(t, lines[2], "customer xxx")
	assert.Contains(t, lines[5], "ordered_at")
	assert.Contains(t, lines[6], "no customer")
	assert.Contains(t, lines[7], "quantity")
	assert.Contains(t, lines[9], "unit_price")
	assert.Contains(t, lines[10], "negative quantities belong on a refund")
	assert.Contains(t, lines[11], "currency")
	assert.Contains(t, lines[12], "quote")
	assert.Equal(t, 11, res.Rows)
	assert.Equal(t, 9, res.Skipped, "order 1004 is skipped whole")
	o, err := e.Orders().FindBy(ctx, "number", []string{"1001"})
	require.NoError(t, err)
	assert.Equal(t, crm.Money{Amount: 399, Currency: "EUR"}, o["1001"].Total)

	// StopOnError stops at the first bad row; a missing column stops
	// before anything is stored.
	_, err = bulk.ImportOrders(ctx, e.Default(), strings.NewReader(src), bulk.Options{StopOnError: true})
	require.Error(t, err)
	_, err = bulk.ImportOrders(ctx, e.Default(), strings.NewReader("number,qty\n1,2\n"), bulk.Options{})
	require.ErrorIs(t, err, bulk.ErrInvalid)
	_, err = bulk.ImportOrders(ctx, e.Default(), strings.NewReader(""), bulk.Options{})
	require.ErrorIs(t, err, bulk.ErrInvalid)
	_, err = bulk.ImportOrders(ctx, e.Default(), strings.NewReader(src), bulk.Options{Format: "xml"})
	require.ErrorIs(t, err, bulk.ErrInvalid)
	_, err = bulk.ImportOrders(ctx, e.Default(), strings.NewReader(src), bulk.Options{Currency: "EURO"})
	require.ErrorIs(t, err, bulk.ErrInvalid)
	all, err := e.Orders().List(ctx, crm.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, all.Items, 1, "nothing else was stored")
}

func TestImportOrdersJSONLines(t *testing.T) {
	e, _ := newTenant(t)
	ctx := context.Background()
	src := `{"no": "A-1", "customer_external_id": 42, "ordered_at": "2026-01-05T10:00:00+01:00", "sku": "X", "quantity": 3, "unit_price": "2.55", "currency": "gbp"}

{"no": "A-1", "customer_external_id": 42, "ordered_at": "2026-01-05T09:00:00Z", "sku": "Y", "quantity": 1, "unit_price": "1", "currency": "GBP"}
not json
`
	res, err := bulk.ImportOrders(ctx, e.Default(), strings.NewReader(src), bulk.Options{Format: bulk.JSONL, Mapping: map[string]string{"no": "order_number"}})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Created)
	require.Len(t, res.Errors, 1)
	assert.Equal(t, 4, res.Errors[0].Line)
	var re *bulk.RowError
	require.True(t, errors.As(res.Errors[0], &re))
	o, err := e.Orders().FindBy(ctx, "number", []string{"A-1"})
	require.NoError(t, err)
	assert.Equal(t, int64(865), o["A-1"].Total.Amount)
	assert.Len(t, o["A-1"].Lines, 2)
}
