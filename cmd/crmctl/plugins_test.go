package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/plugintest"
)

func TestPluginsListAndCheck(t *testing.T) {
	dir := t.TempDir()
	bin, sum, err := plugintest.Build(dir, "rapport-renderer-docs", "github.com/rapportcrm/rapport/plugins/renderer/rapport-renderer")
	require.NoError(t, err)
	sums := filepath.Join(dir, plugins.SumsFile)

	// Not approved yet: list shows nothing and says why.
	code, _, stderr := crmctl(t, "plugins", "list", "-dir", dir)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "SHA256SUMS")

	require.NoError(t, os.WriteFile(sums, []byte(sum+"  rapport-renderer-docs\n"), 0o644))
	code, stdout, stderr := crmctl(t, "plugins", "list", "-dir", dir)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "docs")
	assert.Contains(t, stdout, "renderer")
	assert.Contains(t, stdout, sum[:16])

	t.Setenv("RAPPORT_PLUGINS_DIR", dir)
	code, stdout, stderr = crmctl(t, "plugins", "check")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `^docs: ok \(renderer, pid \d+, \d+ms\): templates: contract, invoice, proposal\n$`, stdout)

	code, stdout, _ = crmctl(t, "plugins", "check", "other")
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, `other: FAIL: plugins: unknown plugin: no plugin named "other"`)

	// A binary that changed since it was approved is refused.
	wrong := strings.Repeat("0", 64)
	require.NoError(t, os.WriteFile(sums, []byte(wrong+"  rapport-renderer-docs\n"), 0o644))
	code, stdout, _ = crmctl(t, "plugins", "check", "-dir", dir)
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, "docs: FAIL: plugin docs: check: plugin checksum mismatch: "+bin+" has SHA-256 "+sum+", configured "+wrong)
	assert.Contains(t, stdout, "1 of 1 plugins failed")

	code, _, _ = crmctl(t, "plugins")
	assert.Equal(t, 2, code)
	code, _, _ = crmctl(t, "plugins", "remove")
	assert.Equal(t, 2, code)
}
