package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/plugintest"
)

// TestPlugin builds this plugin, runs it under a Manager as the README
// describes, and checks that a message sent twice (and again after a
// restart) is written once.
func TestPlugin(t *testing.T) {
	bin, sum := plugintest.BuildT(t, "rapport-connector-file", ".")
	outbox := filepath.Join(t.TempDir(), "outbox.jsonl")

	send := func(key string) plugins.Receipt {
		m, err := plugins.NewManager(plugins.Options{Logger: slog.New(slog.DiscardHandler)}, plugins.Config{
			Name: "file", Kind: plugins.KindConnector, Path: bin, SHA256: sum, Env: []string{"OUTBOX_FILE=" + outbox}})
		require.NoError(t, err)
		defer m.Close()
		c, err := m.Connector("file")
		require.NoError(t, err)
		rc, err := c.Send(context.Background(), plugins.Message{Recipient: "ada@example.com", Subject: "Hi", Body: "Hello", IdempotencyKey: key})
		require.NoError(t, err)
		return rc
	}
	r1 := send("k1")
	r2 := send("k1") // a new process: it read the file back
	assert.Equal(t, r1, r2)
	send("k2")
	b, err := os.ReadFile(outbox)
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(string(b), "\n"))
	assert.Contains(t, string(b), `{"key":"k1","to":"ada@example.com","subject":"Hi","body":"Hello"}`)
}
