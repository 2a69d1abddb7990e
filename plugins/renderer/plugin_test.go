package renderer_test

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/plugintest"
)

var pluginBin, pluginSum string

func TestMain(m *testing.M) {
	os.Exit(plugintest.Main(m, "rapport-renderer", "./rapport-renderer", &pluginBin, &pluginSum))
}

func pluginRenderer(t testing.TB, args ...string) plugins.Renderer {
	t.Helper()
	m := plugintest.Manager(t, plugins.Options{},
		plugins.Config{Name: "docs", Kind: plugins.KindRenderer, Path: pluginBin, Args: args, SHA256: pluginSum})
	r, err := m.Renderer("docs")
	require.NoError(t, err)
	return r
}

// TestPluginProcess renders through the rapport-renderer plugin process,
// with a template directory given by flag.
func TestPluginProcess(t *testing.T) {
	dir := writeFiles(t, map[string]string{"receipt.yaml": receipt})
	r := pluginRenderer(t, "-templates", dir)
	ctx := context.Background()
	ts, err := r.Templates(ctx)
	require.NoError(t, err)
	require.Len(t, ts, 4)

	doc, err := r.Render(ctx, plugins.RenderRequest{Template: "invoice", Format: plugins.PDF, Data: sampleDeal()})
	require.NoError(t, err)
	assert.Equal(t, "invoice-Q-2026-0042.pdf", doc.FileName)
	text := pdfText(t, doc.Content)
	assert.Contains(t, text, "Zoë Łukasiewicz")
	assert.Contains(t, text, "Installation and commissioning")
	assert.Contains(t, text, "31,474.19 EUR")

	doc, err = r.Render(ctx, plugins.RenderRequest{Template: "receipt", Format: plugins.PDF, Data: sampleDeal()})
	require.NoError(t, err)
	assert.Contains(t, pdfText(t, doc.Content), "Receipt for Zoë Łukasiewicz")

	_, err = r.Render(ctx, plugins.RenderRequest{Template: "nope", Format: plugins.PDF, Data: sampleDeal()})
	require.ErrorIs(t, err, plugins.ErrRejected)
	var pe *plugins.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "docs", pe.Plugin)
}

// BenchmarkInvoicePDF measures rendering throughput of the invoice PDF,
// in-process and through the plugin process.
func BenchmarkInvoicePDF(b *testing.B) {
	req := plugins.RenderRequest{Template: "invoice", Format: plugins.PDF, Data: sampleDeal()}
	run := func(b *testing.B, r plugins.Renderer) {
		ctx := context.Background()
		if _, err := r.Render(ctx, req); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			if _, err := r.Render(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
	}
	b.Run("in-process", func(b *testing.B) { run(b, newRenderer(b, "")) })
	b.Run("plugin", func(b *testing.B) { run(b, pluginRenderer(b)) })
}
