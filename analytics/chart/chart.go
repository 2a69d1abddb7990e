// Package chart draws the few kinds of chart reports need (horizontal
// bars, a funnel, a heat map) as self-contained SVG: no script, no fonts
// or styles from elsewhere, so an image opens offline, embeds in HTML as
// it is and converts to PDF or PNG with any SVG tool.
//
// A chart is plain data; WriteSVG lays it out. Labels are escaped, and
// values that are not finite numbers are drawn as empty.
package chart

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
)

// Palette is the colours of successive series, then of funnel steps.
var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"}

const (
	width    = 720
	font     = `font-family="sans-serif" font-size="12"`
	titleH   = 28
	rowH     = 22
	labelW   = 200
	valueW   = 90
	legendH  = 20
	padding  = 10
	maxLabel = 32
)

// svg writes the document and reports the first write error.
type svg struct {
	w   *bufio.Writer
	err error
}

func (s *svg) printf(format string, args ...any) {
	if s.err == nil {
		_, s.err = fmt.Fprintf(s.w, format, args...)
	}
}

func begin(w io.Writer, height int, title string) *svg {
	s := &svg{w: bufio.NewWriter(w)}
	s.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s>`+"\n", width, height, width, height, font)
	s.printf(`<title>%s</title><rect width="100%%" height="100%%" fill="#fff"/>`+"\n", esc(title))
	s.printf(`<text x="%d" y="%d" font-size="15" font-weight="bold">%s</text>`+"\n", padding, 19, esc(title))
	return s
}

func (s *svg) end() error {
	s.printf("</svg>\n")
	if s.err != nil {
		return s.err
	}
	return s.w.Flush()
}

// esc escapes text for SVG and shortens very long labels.
func esc(s string) string {
	r := []rune(s)
	if len(r) > maxLabel {
		s = string(r[:maxLabel-1]) + "…"
	}
	return html.EscapeString(s)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Format prints a value with at most two decimals and no trailing zeros.
func Format(v float64) string {
	if !finite(v) {
		return ""
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// Series is one named row of values, one per label.
type Series struct {
	Name   string
	Values []float64
}

// Bars is a horizontal bar chart: one group of bars per label, one bar
// per series. Negative values extend left of the axis.
type Bars struct {
	Title string
	// Unit follows each value, for example "%" or " days".
	Unit   string
	Labels []string
	Series []Series
}

// WriteSVG draws the chart.
func (b *Bars) WriteSVG(w io.Writer) error {
	n := max(len(b.Series), 1)
	groupH := n*rowH + 8
	top := titleH
	if len(b.Series) > 1 {
		top += legendH
	}
	height := top + len(b.Labels)*groupH + padding
	s := begin(w, height, b.Title)
	if len(b.Series) > 1 {
		x := padding
		for i, se := range b.Series {
			s.printf(`<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
				x, titleH+2, palette[i%len(palette)], x+16, titleH+12, esc(se.Name))
			x += 24 + 7*len([]rune(esc(se.Name)))
		}
	}
	lo, hi := 0.0, 0.0
	for _, se := range b.Series {
		for _, v := range se.Values {
			if finite(v) {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	span := hi - lo
	if span == 0 {
		span = 1
	}
	plotW := float64(width - labelW - valueW - 2*padding)
	zero := float64(labelW+padding) + plotW*(-lo)/span
	for i, label := range b.Labels {
		y := top + i*groupH
		s.printf(`<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW, y+groupH/2+4, esc(label))
		for j, se := range b.Series {
			if i >= len(se.Values) || !finite(se.Values[i]) {
				continue
			}
			v := se.Values[i]
			bw := plotW * math.Abs(v) / span
			x := zero
			if v < 0 {
				x -= bw
			}
			by := y + j*rowH + 4
			s.printf(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s: %s%s</title></rect>`+"\n",
				x, by, bw, rowH-4, palette[j%len(palette)], esc(se.Name), Format(v), esc(b.Unit))
			s.printf(`<text x="%.1f" y="%d">%s%s</text>`+"\n", max(zero, x+bw)+4, by+rowH/2+3, Format(v), esc(b.Unit))
		}
	}
	s.printf(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333"/>`+"\n", zero, top, zero, height-padding)
	return s.end()
}

// Step is one stage of a funnel.
type Step struct {
	Label string
	Value float64
	// Note is printed after the value, for example a conversion rate.
	Note string
}

// Funnel draws steps as centred bars whose widths are proportional to
// their values.
type Funnel struct {
	Title string
	Steps []Step
}

// WriteSVG draws the chart.
func (f *Funnel) WriteSVG(w io.Writer) error {
	const stepH = 34
	height := titleH + len(f.Steps)*stepH + padding
	s := begin(w, height, f.Title)
	top := 0.0
	for _, st := range f.Steps {
		if finite(st.Value) {
			top = max(top, st.Value)
		}
	}
	plotW := float64(width - labelW - valueW - 2*padding)
	centre := float64(labelW+padding) + plotW/2
	for i, st := range f.Steps {
		y := titleH + i*stepH
		bw := 0.0
		if top > 0 && finite(st.Value) {
			bw = math.Max(plotW*st.Value/top, 2)
		}
		s.printf(`<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW, y+stepH/2+4, esc(st.Label))
		s.printf(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", centre-bw/2, y+3, bw, stepH-6, palette[i%len(palette)])
		s.printf(`<text x="%.1f" y="%d" text-anchor="middle" fill="#000">%s</text>`+"\n", centre, y+stepH/2+4, Format(st.Value))
		if st.Note != "" {
			s.printf(`<text x="%d" y="%d">%s</text>`+"\n", width-valueW-padding+4, y+stepH/2+4, esc(st.Note))
		}
	}
	return s.end()
}

// Heatmap is a grid of cells coloured by value, for cohort retention or
// an RFM score grid.
type Heatmap struct {
	Title      string
	Rows, Cols []string
	// Values[i][j] is the cell of row i and column j; cells that are
	// missing or not finite are left blank.
	Values [][]float64
	// Text, when set, is printed in the cells instead of the values.
	Text [][]string
}

// WriteSVG draws the chart.
func (h *Heatmap) WriteSVG(w io.Writer) error {
	const cellH = 26
	cols := max(len(h.Cols), 1)
	cellW := float64(width-labelW-2*padding) / float64(cols)
	height := titleH + (len(h.Rows)+1)*cellH + padding
	s := begin(w, height, h.Title)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, row := range h.Values {
		for _, v := range row {
			if finite(v) {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	for j, c := range h.Cols {
		s.printf(`<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", float64(labelW+padding)+cellW*(float64(j)+0.5), titleH+cellH/2+4, esc(c))
	}
	for i, r := range h.Rows {
		y := titleH + (i+1)*cellH
		s.printf(`<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW, y+cellH/2+4, esc(r))
		for j := range h.Cols {
			if i >= len(h.Values) || j >= len(h.Values[i]) || !finite(h.Values[i][j]) {
				continue
			}
			v := h.Values[i][j]
			t := 1.0
			if hi > lo {
				t = (v - lo) / (hi - lo)
			}
			// From pale to dark blue; text turns white on dark cells.
			fill := fmt.Sprintf("rgb(%d,%d,%d)", int(235-180*t), int(242-140*t), int(250-83*t))
			ink := "#000"
			if t > 0.6 {
				ink = "#fff"
			}
			text := Format(v)
			if i < len(h.Text) && j < len(h.Text[i]) {
				text = h.Text[i][j]
			}
			x := float64(labelW+padding) + cellW*float64(j)
			s.printf(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" stroke="#fff"/>`+"\n", x, y, cellW, cellH, fill)
			s.printf(`<text x="%.1f" y="%d" text-anchor="middle" fill="%s">%s</text>`+"\n", x+cellW/2, y+cellH/2+4, ink, esc(text))
		}
	}
	return s.end()
}
