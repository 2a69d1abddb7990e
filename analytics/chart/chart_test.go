package chart_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/analytics/chart"
)

type drawer interface{ WriteSVG(io.Writer) error }

// texts draws c, checks that the result is well-formed XML with an svg
// root, and returns its text nodes.
func texts(t *testing.T, c drawer) []string {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, c.WriteSVG(&buf))
	dec := xml.NewDecoder(&buf)
	var out []string
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "well-formed SVG")
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
			}
		case xml.CharData:
			if s := strings.TrimSpace(string(tok)); s != "" {
				out = append(out, s)
			}
		}
	}
	assert.Equal(t, "svg", root)
	return out
}

func TestBars(t *testing.T) {
	got := texts(t, &chart.Bars{Title: "Plan <vs> fact", Unit: " €", Labels: []string{"Una", "Ugo & co"},
		Series: []chart.Series{{Name: "plan", Values: []float64{1500, 1000}}, {Name: "fact", Values: []float64{1000.004, -20}}}})
	assert.Contains(t, got, "Plan <vs> fact", "the title, escaped and read back")
	assert.Contains(t, got, "Ugo & co")
	assert.Contains(t, got, "1500 €")
	assert.Contains(t, got, "1000 €", "two decimals at most")
	assert.Contains(t, got, "-20 €", "negative values are drawn")
	assert.Contains(t, got, "plan", "a legend for several series")
}

func TestFunnel(t *testing.T) {
	got := texts(t, &chart.Funnel{Title: "Funnel", Steps: []chart.Step{{Label: "new", Value: 5, Note: "80%"}, {Label: "won", Value: 0}}})
	assert.Equal(t, []string{"Funnel", "Funnel", "new", "5", "80%", "won", "0"}, got)
}

func TestHeatmap(t *testing.T) {
	got := texts(t, &chart.Heatmap{Title: "Retention", Rows: []string{"2024-01", "2024-02"}, Cols: []string{"0", "1"},
		Values: [][]float64{{1, 0.5}, {1, math.NaN()}}, Text: [][]string{{"100%", "50%"}, {"100%"}}})
	assert.Equal(t, []string{"Retention", "Retention", "0", "1", "2024-01", "100%", "50%", "2024-02", "100%"}, got,
		"a missing cell is blank")
}

func TestEmptyCharts(t *testing.T) {
	for name, c := range map[string]drawer{"b": &chart.Bars{Title: "b"}, "f": &chart.Funnel{Title: "f"}, "h": &chart.Heatmap{Title: "h"}} {
		assert.Equal(t, []string{name, name}, texts(t, c), "only the title")
	}
}
