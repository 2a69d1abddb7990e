package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const retailPath = "../../../shared/data/online_retail_sample.csv"

func TestImportExportOrders(t *testing.T) {
	if _, err := os.Stat(retailPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing, and in CI it must be present: %v", retailPath, err)
		}
		t.Skipf("%s is missing (see ../shared/data/README.md)", retailPath)
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "ctl.db")
	args := []string{"-db", db, "import", "orders", retailPath, "--currency", "GBP", "--refund-prefix", "C",
		"--map", "InvoiceNo=order_number", "--map", "StockCode=sku", "--map", "Description=description",
		"--map", "Quantity=quantity", "--map", "InvoiceDate=ordered_at", "--map", "UnitPrice=unit_price",
		"--map", "CustomerID=customer_external_id", "--map", "Country=country"}
	code, out, stderr := crmctl(t, args...)
	require.Equal(t, 3, code, "2,000 lines have no customer: imported with rows skipped\n%s", stderr)
	var summary struct{ Rows, Created, Existing, Skipped, Customers_created int }
	require.NoError(t, json.Unmarshal([]byte(out), &summary))
	assert.Equal(t, 30000, summary.Rows)
	assert.Equal(t, 12392-665, summary.Created)
	assert.Equal(t, 3569, summary.Customers_created)
	assert.Equal(t, 2000, summary.Skipped)
	assert.Contains(t, stderr, "online_retail_sample.csv:line ")
	assert.Contains(t, stderr, "no customer")
	assert.NotContains(t, stderr, "\r", "no progress bar when stderr is not a terminal")

	// RFM over what was imported, by the customers' own IDs.
	code, out, stderr = crmctl(t, "-db", db, "report", "rfm", "--format", "csv")
	require.Equal(t, 0, code, stderr)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	assert.Equal(t, "customer_id,recency_days,frequency,monetary_minor,r,f,m,segment", lines[0])
	assert.Len(t, lines, 3546+1, "the customers with an order that is not a refund, plus the header")
	assert.Regexp(t, `(?m)^12923,\d+,\d+,-?\d+,[1-5],[1-5],[1-5],[a-z_]+$`, out)

	// Again: nothing new.
	code, out, _ = crmctl(t, args...)
	require.Equal(t, 3, code)
	require.NoError(t, json.Unmarshal([]byte(out), &summary))
	assert.Zero(t, summary.Created)
	assert.Equal(t, 12392-665, summary.Existing)

	exported := filepath.Join(dir, "orders.csv")
	code, _, stderr = crmctl(t, "-db", db, "export", "orders", "-o", exported)
	require.Equal(t, 0, code, stderr)
	raw, err := os.ReadFile(exported)
	require.NoError(t, err)
	assert.Equal(t, 28000+1, strings.Count(string(raw), "\n"), "one row per stored line, plus the header")

	// The export imports into another tenant without mapping.
	code, out, stderr = crmctl(t, "-db", db, "-tenant", "copy", "import", "orders", "--refund-prefix", "C", exported)
	require.Equal(t, 0, code, stderr)
	require.NoError(t, json.Unmarshal([]byte(out), &summary))
	assert.Equal(t, 12392-665, summary.Created)
}

func TestImportUsage(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "ctl.db")
	file := filepath.Join(dir, "c.jsonl")
	require.NoError(t, os.WriteFile(file, []byte(`{"first_name":"Ada","email":"ada@example.com"}`+"\n"), 0o600))
	code, out, stderr := crmctl(t, "-db", db, "import", "contacts", file)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, `"created":1`)
	code, out, _ = crmctl(t, "-db", db, "export", "contacts", "--format", "jsonl")
	require.Equal(t, 0, code)
	assert.Contains(t, out, `"email":"ada@example.com"`)

	for _, bad := range [][]string{
		{"import"}, {"import", "widgets", file}, {"import", "contacts"}, {"import", "contacts", file, "--map", "nonsense"},
		{"import", "contacts", file, "extra"}, {"export"}, {"export", "widgets"},
	} {
		code, _, _ := crmctl(t, append([]string{"-db", db}, bad...)...)
		assert.Equal(t, 2, code, "%q", bad)
	}
	code, _, stderr = crmctl(t, "-db", db, "import", "contacts", filepath.Join(dir, "missing.csv"))
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "missing.csv")
	code, _, stderr = crmctl(t, "-db", db, "import", "orders", file, "--format", "xml")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "format")
}
