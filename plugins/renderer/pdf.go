package renderer

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"codeberg.org/go-pdf/fpdf"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
)

// Page geometry in millimetres (A4 portrait).
const (
	margin    = 18.0
	lineH     = 5.0
	colGap    = 8.0
	fontName  = "go"
	footerPos = -12.0
)

// Widths of the lines table's columns; the description takes the rest.
var tableCols = []struct {
	title string
	w     float64
	align string
}{
	{"#", 8, "L"}, {"Description", 0, "L"}, {"Quantity", 20, "R"}, {"Unit price", 27, "R"},
	{"Discount", 22, "R"}, {"Tax", 13, "R"}, {"Amount", 28, "R"},
}

func renderPDF(v View, f *filled) ([]byte, error) {
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetMargins(margin, margin, margin)
	pdf.SetAutoPageBreak(true, margin+4)
	pdf.AddUTF8FontFromBytes(fontName, "", goregular.TTF)
	pdf.AddUTF8FontFromBytes(fontName, "B", gobold.TTF)
	pdf.SetCreationDate(time.Unix(0, 0).UTC()) // the same data makes the same file
	pdf.SetModificationDate(time.Unix(0, 0).UTC())
	pdf.SetCatalogSort(true)
	pdf.SetProducer("Rapport renderer", true)
	pdf.SetTitle(f.Heading, true)
	pdf.AliasNbPages("{nb}")
	pdf.SetFooterFunc(func() {
		pdf.SetY(footerPos)
		pdf.SetFont(fontName, "", 8)
		pdf.SetTextColor(110, 110, 110)
		pdf.CellFormat(0, 4, f.Footer, "", 0, "L", false, 0, "")
		pdf.CellFormat(0, 4, fmt.Sprintf("Page %d/{nb}", pdf.PageNo()), "", 0, "R", false, 0, "")
		pdf.SetTextColor(0, 0, 0)
	})
	pdf.AddPage()
	pageW, _ := pdf.GetPageSize()
	width := pageW - 2*margin

	pdf.SetFont(fontName, "B", 17)
	pdf.MultiCell(0, 8, f.Heading, "", "L", false)
	pdf.Ln(4)
	for _, b := range f.Blocks {
		switch {
		case b.Heading != "":
			pdf.Ln(2)
			pdf.SetFont(fontName, "B", 12)
			pdf.MultiCell(0, 6, b.Heading, "", "L", false)
			pdf.Ln(1)
		case b.Text != "":
			pdf.SetFont(fontName, "", 10)
			pdf.MultiCell(0, lineH, b.Text, "", "L", false)
			pdf.Ln(3)
		case b.Columns != nil:
			columnsPDF(pdf, b.Columns, width)
		case b.Lines:
			linesPDF(pdf, v, width)
		}
	}
	if err := pdf.Error(); err != nil {
		return nil, fmt.Errorf("pdf: %w", err)
	}
	var out bytes.Buffer
	if err := pdf.Output(&out); err != nil {
		return nil, fmt.Errorf("pdf: %w", err)
	}
	return out.Bytes(), nil
}

func columnsPDF(pdf *fpdf.Fpdf, cols []filledColumn, width float64) {
	n := float64(len(cols))
	w := (width - colGap*(n-1)) / n
	y0 := pdf.GetY()
	page := pdf.PageNo()
	maxY, maxPage := y0, page
	for i, c := range cols {
		x := margin + float64(i)*(w+colGap)
		if pdf.PageNo() != page { // the previous column broke the page
			pdf.SetPage(page)
		}
		pdf.SetLeftMargin(x)
		pdf.SetXY(x, y0)
		pdf.SetFont(fontName, "B", 9)
		pdf.SetTextColor(110, 110, 110)
		pdf.MultiCell(w, lineH, c.Title, "", "L", false)
		pdf.SetTextColor(0, 0, 0)
		pdf.SetFont(fontName, "", 10)
		pdf.MultiCell(w, lineH, c.Text, "", "L", false)
		if p := pdf.PageNo(); p > maxPage || (p == maxPage && pdf.GetY() > maxY) {
			maxPage, maxY = p, pdf.GetY()
		}
	}
	pdf.SetLeftMargin(margin)
	pdf.SetPage(maxPage)
	pdf.SetXY(margin, maxY+4)
}

func linesPDF(pdf *fpdf.Fpdf, v View, width float64) {
	fixed := 0.0
	for _, c := range tableCols {
		fixed += c.w
	}
	descW := width - fixed
	colW := func(i int) float64 {
		if tableCols[i].w == 0 {
			return descW
		}
		return tableCols[i].w
	}
	_, pageH := pdf.GetPageSize()
	header := func() {
		pdf.SetFont(fontName, "B", 9)
		pdf.SetFillColor(235, 235, 235)
		for i, c := range tableCols {
			pdf.CellFormat(colW(i), 6, c.title, "B", 0, c.align, true, 0, "")
		}
		pdf.Ln(-1)
	}
	header()
	pdf.SetFont(fontName, "", 9)
	for i, l := range v.Lines {
		t := v.Totals.Lines[i]
		desc := l.Description
		if l.SKU != "" {
			desc += " (" + l.SKU + ")"
		}
		descLines := pdf.SplitText(desc, descW-2)
		h := lineH * float64(max(1, len(descLines)))
		if pdf.GetY()+h > pageH-margin-6 {
			pdf.AddPage()
			header()
			pdf.SetFont(fontName, "", 9)
		}
		qty := strconv.FormatInt(l.Quantity, 10)
		if l.Unit != "" {
			qty += " " + l.Unit
		}
		discount := ""
		if t.Discount != 0 {
			discount = "−" + v.Money(t.Discount)
		}
		cells := []string{strconv.Itoa(i + 1), "", qty, v.Money(l.UnitPrice), discount, v.Percent(l.TaxBP), v.Money(t.Net)}
		y := pdf.GetY()
		x := margin
		for j, c := range tableCols {
			pdf.SetXY(x, y)
			if j == 1 {
				pdf.MultiCell(descW, lineH, strings.Join(descLines, "\n"), "", "L", false)
			} else {
				pdf.CellFormat(colW(j), lineH, cells[j], "", 0, c.align, false, 0, "")
			}
			x += colW(j)
		}
		pdf.SetXY(margin, y+h)
		pdf.Line(margin, y+h, margin+width, y+h)
	}
	pdf.Ln(2)
	labelW := width - tableCols[len(tableCols)-1].w
	total := func(label, amount string, bold bool) {
		style := ""
		if bold {
			style = "B"
		}
		pdf.SetFont(fontName, style, 10)
		pdf.CellFormat(labelW, 6, label, "", 0, "R", false, 0, "")
		pdf.CellFormat(0, 6, amount, "", 1, "R", false, 0, "")
	}
	total("Net", v.Money(v.Totals.Net), false)
	for _, r := range v.Totals.TaxByRate {
		total(fmt.Sprintf("Tax %s on %s", v.Percent(r.RateBP), v.Money(r.Net)), v.Money(r.Tax), false)
	}
	total("Total", v.Money(v.Totals.Gross), true)
	pdf.Ln(4)
}
