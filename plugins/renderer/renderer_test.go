package renderer_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/renderer"
)

// sampleDeal is a deal with a customer whose name needs Unicode, three
// lines at two tax rates, one discounted.
func sampleDeal() plugins.DocumentData {
	return plugins.DocumentData{
		Number: "Q-2026-0042", IssuedOn: "2026-12-01", DueOn: "2026-12-31", ValidUntil: "2027-01-15",
		Currency: "EUR", Scale: 2,
		Seller:   plugins.Party{Name: "Rapport Demo GmbH", Email: "sales@rapport.example", Address: "Hauptstraße 1, Berlin", TaxID: "DE123456789"},
		Customer: plugins.Party{Name: "Zoë Łukasiewicz", Email: "zoe@example.com", Address: "ul. Długa 5, Gdańsk"},
		Account:  plugins.Party{Name: "Gdańsk Robotics Sp. z o.o.", Address: "ul. Długa 5, Gdańsk", TaxID: "PL9876543210"},
		Deal:     plugins.Deal{ID: "deal-1", Title: "Warehouse automation", Owner: "Max Mustermann"},
		Lines: []plugins.Line{
			{SKU: "ROB-7", Description: "Picking robot", Unit: "piece", Quantity: 2, UnitPrice: 1_250_000, TaxBP: 1900},
			{SKU: "SVC-1", Description: "Installation and commissioning", Unit: "hour", Quantity: 16, UnitPrice: 9_500, DiscountBP: 1000, TaxBP: 1900},
			{SKU: "DOC-1", Description: "Operator handbook", Quantity: 3, UnitPrice: 2_999, TaxBP: 700},
		},
		Notes: "Delivery within 6 weeks of order.",
	}
}

func newRenderer(t testing.TB, dir string) *renderer.Renderer {
	t.Helper()
	r, err := renderer.New(renderer.Options{Dir: dir})
	require.NoError(t, err)
	return r
}

// pdfText extracts a PDF's text with poppler's pdftotext.
func pdfText(t testing.TB, pdf []byte) string {
	t.Helper()
	bin, err := exec.LookPath("pdftotext")
	if err != nil {
		if os.Getenv("RAPPORT_REQUIRE_PDFTOTEXT") != "" {
			t.Fatal("pdftotext is required (RAPPORT_REQUIRE_PDFTOTEXT is set): install poppler-utils, as make test does")
		}
		t.Skip("pdftotext not found: install poppler-utils (apt-get install poppler-utils) or run make test")
	}
	path := filepath.Join(t.TempDir(), "doc.pdf")
	require.NoError(t, os.WriteFile(path, pdf, 0o644))
	out, err := exec.Command(bin, "-layout", "-enc", "UTF-8", path, "-").CombinedOutput()
	require.NoError(t, err, "pdftotext: %s", out)
	return string(out)
}

func TestBuiltInTemplatesRenderPDF(t *testing.T) {
	r := newRenderer(t, "")
	ts, err := r.Templates(context.Background())
	require.NoError(t, err)
	var names []string
	for _, tm := range ts {
		names = append(names, tm.Name)
		assert.Equal(t, []plugins.Format{plugins.PDF, plugins.HTML}, tm.Formats)
	}
	assert.ElementsMatch(t, []string{"invoice", "proposal", "contract"}, names)

	data := sampleDeal()
	totals, err := data.Totals()
	require.NoError(t, err)
	// 2 × 12,500.00 + (16 × 95.00 − 10%) = 26,368.00 at 19%: 5,009.92 tax;
	// 3 × 29.99 = 89.97 at 7%: 6.30 tax.
	require.Equal(t, int64(2_645_797), totals.Net)
	require.Equal(t, int64(501_622), totals.Tax)
	require.Equal(t, "31,474.19 EUR", plugins.FormatAmount(totals.Gross, 2, "EUR"))

	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			doc, err := r.Render(context.Background(), plugins.RenderRequest{Template: name, Format: plugins.PDF, Data: data})
			require.NoError(t, err)
			assert.Equal(t, "application/pdf", doc.MIMEType)
			assert.Equal(t, name+"-Q-2026-0042.pdf", doc.FileName)
			require.True(t, bytes.HasPrefix(doc.Content, []byte("%PDF-")))
			text := pdfText(t, doc.Content)
			assert.Contains(t, text, "Zoë Łukasiewicz", "the customer's name, in Unicode")
			for _, l := range data.Lines {
				assert.Contains(t, text, l.Description)
			}
			assert.Contains(t, text, "31,474.19 EUR", "the total")
			assert.Contains(t, text, "25,000.00 EUR", "a line's amount")
			assert.Contains(t, text, "Page 1/1")

			again, err := r.Render(context.Background(), plugins.RenderRequest{Template: name, Format: plugins.PDF, Data: data})
			require.NoError(t, err)
			assert.True(t, bytes.Equal(doc.Content, again.Content), "the same data makes the same file")
		})
	}
}

func TestLongDocumentsBreakPages(t *testing.T) {
	r := newRenderer(t, "")
	data := sampleDeal()
	data.Lines = nil
	for i := range 120 {
		data.Lines = append(data.Lines, plugins.Line{SKU: fmt.Sprintf("P-%03d", i),
			Description: fmt.Sprintf("Part number %03d with a description long enough to wrap onto a second line of the table", i),
			Quantity:    1, UnitPrice: 100, TaxBP: 2000})
	}
	doc, err := r.Render(context.Background(), plugins.RenderRequest{Template: "invoice", Format: plugins.PDF, Data: data})
	require.NoError(t, err)
	text := pdfText(t, doc.Content)
	assert.Contains(t, text, "Part number 000")
	assert.Contains(t, text, "Part number 119")
	assert.Contains(t, text, "144.00 EUR", "the total of 120 × 1.00 + 20%")
	assert.NotContains(t, text, "Page 1/1")
	assert.Regexp(t, `Page [4-9]/[4-9]`, text)
}

func TestHTML(t *testing.T) {
	r := newRenderer(t, "")
	data := sampleDeal()
	data.Customer.Name = `Zoë <script>alert(1)</script>`
	doc, err := r.Render(context.Background(), plugins.RenderRequest{Template: "invoice", Format: plugins.HTML, Data: data})
	require.NoError(t, err)
	assert.Equal(t, "text/html; charset=utf-8", doc.MIMEType)
	assert.Equal(t, "invoice-Q-2026-0042.html", doc.FileName)
	html := string(doc.Content)
	assert.Contains(t, html, "Zoë &lt;script&gt;")
	assert.NotContains(t, html, "<script>")
	assert.Contains(t, html, "Picking robot (ROB-7)")
	assert.Contains(t, html, "31,474.19 EUR")
	assert.Contains(t, html, "Tax 7% on 89.97 EUR")
	assert.Contains(t, html, "−152.00 EUR", "the discount")
}

func TestRenderRejectsBadRequests(t *testing.T) {
	r := newRenderer(t, "")
	ctx := context.Background()
	_, err := r.Render(ctx, plugins.RenderRequest{Template: "receipt", Format: plugins.PDF, Data: sampleDeal()})
	require.ErrorIs(t, err, plugins.ErrRejected)
	assert.Contains(t, err.Error(), `no template "receipt" (have contract, invoice, proposal)`)

	_, err = r.Render(ctx, plugins.RenderRequest{Template: "invoice", Format: "docx", Data: sampleDeal()})
	require.ErrorIs(t, err, plugins.ErrRejected)

	bad := sampleDeal()
	bad.Lines[1].TaxBP = 12000
	bad.Currency = "euro"
	_, err = r.Render(ctx, plugins.RenderRequest{Template: "invoice", Format: plugins.PDF, Data: bad})
	require.ErrorIs(t, err, plugins.ErrRejected)
	assert.Contains(t, err.Error(), `currency "euro" is not an ISO 4217 code`)
	assert.Contains(t, err.Error(), "lines[1].tax_bp 12000 is not 0–10000")
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	return dir
}

const receipt = `name: receipt
title: Receipt
heading: "Receipt for {{.Customer.Name}}"
blocks:
  - lines: true
  - text: "Paid in full: {{.Money .Totals.Gross}}"
`

func TestUserTemplates(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"receipt.yaml": receipt,
		// The invoice keeps its layout but gets its own HTML page.
		"invoice.yaml": strings.Replace(mustBuiltin(t, "invoice"), "Invoice {{.Number}}", "Rechnung {{.Number}}", 1),
		"invoice.html": `<html><body><h1>{{.Doc.Heading}}</h1><p>{{.Customer.Name}} owes {{.Money .Totals.Gross}}</p></body></html>`,
		"notes.txt":    "not a template",
	})
	r := newRenderer(t, dir)
	ts, err := r.Templates(context.Background())
	require.NoError(t, err)
	require.Len(t, ts, 4)
	assert.Equal(t, "receipt", ts[3].Name)
	assert.Equal(t, "Receipt", ts[3].Title)

	doc, err := r.Render(context.Background(), plugins.RenderRequest{Template: "receipt", Format: plugins.PDF, Data: sampleDeal()})
	require.NoError(t, err)
	text := pdfText(t, doc.Content)
	assert.Contains(t, text, "Receipt for Zoë Łukasiewicz")
	assert.Contains(t, text, "Paid in full: 31,474.19 EUR")

	doc, err = r.Render(context.Background(), plugins.RenderRequest{Template: "invoice", Format: plugins.HTML, Data: sampleDeal()})
	require.NoError(t, err)
	assert.Equal(t, "<html><body><h1>Rechnung Q-2026-0042</h1><p>Zoë Łukasiewicz owes 31,474.19 EUR</p></body></html>", string(doc.Content))
}

func mustBuiltin(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("templates", name+".yaml"))
	require.NoError(t, err)
	return string(b)
}

func TestBadTemplatesFailToLoad(t *testing.T) {
	cases := map[string]struct{ yaml, html, want string }{
		"unknown field": {yaml: strings.Replace(receipt, "{{.Customer.Name}}", "{{.Customer.Nmae}}", 1),
			want: "can't evaluate field Nmae"},
		"unknown key":    {yaml: receipt + "colour: red\n", want: "field colour not found"},
		"name mismatch":  {yaml: strings.Replace(receipt, "name: receipt", "name: invoice", 1), want: `name "invoice" differs`},
		"syntax":         {yaml: strings.Replace(receipt, "{{.Customer.Name}}", "{{.Customer.Name", 1), want: "heading: template"},
		"no lines":       {yaml: strings.Replace(receipt, "  - lines: true\n", "", 1), want: "no lines block"},
		"two in a block": {yaml: strings.Replace(receipt, "  - lines: true\n", "  - lines: true\n    text: x\n", 1), want: "exactly one of"},
		"html field":     {yaml: receipt, html: "<p>{{.Customer.Phone.Number}}</p>", want: "html page"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			files := map[string]string{"receipt.yaml": c.yaml}
			if c.html != "" {
				files["receipt.html"] = c.html
			}
			_, err := renderer.New(renderer.Options{Dir: writeFiles(t, files)})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "template receipt.yaml in")
			assert.Contains(t, err.Error(), c.want)
			assert.Error(t, renderer.Compile("receipt", []byte(c.yaml), []byte(c.html)))
		})
	}
	require.NoError(t, renderer.Compile("receipt", []byte(receipt), nil))
	_, err := renderer.New(renderer.Options{Dir: filepath.Join(t.TempDir(), "missing")})
	require.ErrorContains(t, err, "no such file or directory")
}
