package webform_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/plugintest"
)

// TestPluginProcess runs rapport-webform as a plugin: a form posted to
// its endpoint reaches the host through Receive.
func TestPluginProcess(t *testing.T) {
	bin, sum := plugintest.BuildT(t, "rapport-webform", "./rapport-webform")
	cfg, err := json.Marshal(contactUs)
	require.NoError(t, err)
	cfgPath := filepath.Join(t.TempDir(), "forms.json")
	require.NoError(t, os.WriteFile(cfgPath, cfg, 0o600))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	listen := l.Addr().String()
	require.NoError(t, l.Close())

	m := plugintest.Manager(t, plugins.Options{}, plugins.Config{Name: "forms", Kind: plugins.KindConnector,
		Path: bin, SHA256: sum, Args: []string{"-config", cfgPath, "-listen", listen}, Eager: true})
	require.NoError(t, m.Start(context.Background()))
	c, err := m.Connector("forms")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan plugins.InboundEvent, 1)
	go func() {
		_ = c.Receive(ctx, func(_ context.Context, ev plugins.InboundEvent) error { events <- ev; return nil })
	}()

	var resp *http.Response
	for range 50 {
		resp, err = http.PostForm("http://"+listen+"/forms/contact-us?utm_source=ads",
			url.Values{"name": {"Ada"}, "email": {"ada@example.com"}})
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	ev := <-events
	assert.Equal(t, "ads", ev.Form.Source)
	assert.Equal(t, "ada@example.com", ev.Form.Fields["email"])
}
