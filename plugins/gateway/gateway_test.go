package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/gateway"
	"github.com/rapportcrm/rapport/plugins/plugintest"
)

// provider is a fake SMS provider's API: it answers with a message id and
// a status word, or with the status code set in fail.
type provider struct {
	mu       sync.Mutex
	requests []*http.Request
	bodies   []map[string]any
	fail     int
	srv      *httptest.Server
}

func newProvider(t *testing.T) *provider {
	p := &provider{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		var body map[string]any
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &body)
		p.requests = append(p.requests, r)
		p.bodies = append(p.bodies, body)
		if p.fail != 0 {
			http.Error(w, `{"error":"nope"}`, p.fail)
			return
		}
		fmt.Fprintf(w, `{"data":{"id":"msg-%d","state":"accepted"}}`, len(p.requests))
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.requests)
}

func config(url string) gateway.Config {
	return gateway.Config{
		URL:     url,
		Headers: map[string]string{"Authorization": "Bearer api-key"},
		Body:    `{"to": {{json .Recipient}}, "text": {{json .Body}}, "sender": {{json (index .Metadata "sender")}}}`,
		IDPath:  "data.id", StatusPath: "data.state",
		Statuses:       map[string]string{"accepted": "queued", "DELIVRD": "delivered", "UNDELIV": "failed"},
		CallbackToken:  "cb-token",
		CallbackIDPath: "message_id", CallbackStatusPath: "status", CallbackReasonPath: "error",
		CallbackEventIDPath: "event_id",
		InboundFromPath:     "from", InboundToPath: "to", InboundTextPath: "text",
	}
}

func TestSend(t *testing.T) {
	p := newProvider(t)
	c, err := gateway.New(config(p.srv.URL))
	require.NoError(t, err)
	ctx := context.Background()
	msg := plugins.Message{Recipient: "+491701234567", Body: `Hi "Zoë", your code is 42`, IdempotencyKey: "k1",
		Metadata: map[string]string{"sender": "Rapport"}}
	rc, err := c.Send(ctx, msg)
	require.NoError(t, err)
	assert.Equal(t, plugins.Receipt{ProviderID: "msg-1", Status: plugins.StatusQueued}, rc)
	rc2, err := c.Send(ctx, msg)
	require.NoError(t, err)
	assert.Equal(t, rc, rc2)
	require.Equal(t, 1, p.count(), "a repeated key is not sent again")
	r := p.requests[0]
	assert.Equal(t, "Bearer api-key", r.Header.Get("Authorization"))
	assert.Equal(t, "k1", r.Header.Get("Idempotency-Key"))
	assert.Equal(t, map[string]any{"to": "+491701234567", "text": `Hi "Zoë", your code is 42`, "sender": "Rapport"}, p.bodies[0])

	p.fail = http.StatusBadRequest
	_, err = c.Send(ctx, plugins.Message{Recipient: "+1", IdempotencyKey: "k2"})
	require.ErrorIs(t, err, plugins.ErrRejected)
	assert.Contains(t, err.Error(), `400 Bad Request: {"error":"nope"}`)
	for _, code := range []int{http.StatusTooManyRequests, http.StatusBadGateway} {
		p.fail = code
		_, err = c.Send(ctx, plugins.Message{Recipient: "+1", IdempotencyKey: "k3"})
		require.Error(t, err)
		assert.NotErrorIs(t, err, plugins.ErrRejected, "%d is worth retrying", code)
	}
	p.fail = 0
	_, err = c.Send(ctx, plugins.Message{Recipient: "+1", IdempotencyKey: "k3"})
	require.NoError(t, err, "the retry after failures sends")

	_, err = c.Send(ctx, plugins.Message{Recipient: "", IdempotencyKey: "k4"})
	require.ErrorIs(t, err, plugins.ErrRejected)
	_, err = c.Send(ctx, plugins.Message{Recipient: "+1", IdempotencyKey: "k5", Attachments: []plugins.Attachment{{FileName: "a"}}})
	require.ErrorIs(t, err, plugins.ErrRejected)
}

func TestAnswerWithoutID(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"ok":true}`) }))
	defer srv.Close()
	c, err := gateway.New(config(srv.URL))
	require.NoError(t, err)
	rc, err := c.Send(context.Background(), plugins.Message{Recipient: "+1", IdempotencyKey: "k"})
	require.NoError(t, err, "a 2xx is sent: retrying would send twice")
	assert.Equal(t, plugins.Receipt{Status: plugins.StatusSent}, rc)
}

func TestBadConfigs(t *testing.T) {
	base := config("http://127.0.0.1:1/send")
	cases := map[string]func(*gateway.Config){
		"url":           func(c *gateway.Config) { c.URL = "ftp://x" },
		"no body":       func(c *gateway.Config) { c.Body = "" },
		"syntax":        func(c *gateway.Config) { c.Body = `{"to": {{json .Recipient}` },
		"unknown field": func(c *gateway.Config) { c.Body = `{"to": {{json .Phone}}}` },
		"status":        func(c *gateway.Config) { c.Statuses = map[string]string{"x": "bounced"} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			c := base
			mutate(&c)
			_, err := gateway.New(c)
			require.Error(t, err)
		})
	}
	// A template that makes invalid JSON is refused at send.
	c := base
	c.Body = `{"to": {{.Recipient}}}`
	g, err := gateway.New(c)
	require.NoError(t, err)
	_, err = g.Send(context.Background(), plugins.Message{Recipient: "+1", IdempotencyKey: "k"})
	require.ErrorIs(t, err, plugins.ErrRejected)
	assert.Contains(t, err.Error(), "invalid JSON")

	path := filepath.Join(t.TempDir(), "gw.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"url":"http://x","colour":"red"}`), 0o600))
	_, err = gateway.LoadConfig(path)
	require.ErrorContains(t, err, `unknown field "colour"`)
}

func TestCallbacks(t *testing.T) {
	c, err := gateway.New(config("http://127.0.0.1:1/send"))
	require.NoError(t, err)
	srv := httptest.NewServer(c.CallbackHandler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan plugins.InboundEvent, 10)
	go func() {
		_ = c.Receive(ctx, func(_ context.Context, ev plugins.InboundEvent) error { events <- ev; return nil })
	}()
	post := func(url, body string) int {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	tok := srv.URL + "/?token=cb-token"
	assert.Equal(t, http.StatusUnauthorized, post(srv.URL, `{"message_id":"msg-1","status":"DELIVRD"}`))
	assert.Equal(t, http.StatusOK, post(tok, `{"event_id":"e1","message_id":"msg-1","status":"DELIVRD"}`))
	ev := <-events
	assert.Equal(t, "sms:e1", ev.ID)
	assert.Equal(t, &plugins.DeliveryUpdate{ProviderID: "msg-1", Status: plugins.StatusDelivered}, ev.Delivery)
	assert.Equal(t, http.StatusOK, post(tok, `{"message_id":"msg-2","status":"UNDELIV","error":"absent subscriber"}`))
	ev = <-events
	assert.Equal(t, &plugins.DeliveryUpdate{ProviderID: "msg-2", Status: plugins.StatusFailed, Reason: "absent subscriber"}, ev.Delivery)
	assert.Equal(t, http.StatusOK, post(tok, `{"from":"+491701234567","to":"+4930123","text":"STOP"}`))
	ev = <-events
	assert.Equal(t, &plugins.InboundMessage{From: "+491701234567", To: "+4930123", Body: "STOP"}, ev.Message)

	assert.Equal(t, http.StatusBadRequest, post(tok, `{"message_id":"msg-1","status":"WEIRD"}`))
	assert.Equal(t, http.StatusBadRequest, post(tok, `not json`))
	assert.Equal(t, http.StatusBadRequest, post(tok, `{"status":"DELIVRD"}`))
	assert.Equal(t, http.StatusNoContent, post(tok, `{"ping":true}`))
	assert.Empty(t, events)
}

// TestPluginProcess runs rapport-gateway as a plugin with a config file
// and a callback listener.
func TestPluginProcess(t *testing.T) {
	dir := t.TempDir()
	bin, sum := plugintest.BuildT(t, "rapport-gateway", "./rapport-gateway")
	p := newProvider(t)
	cfg := config(p.srv.URL)
	cfg.Journal = filepath.Join(dir, "sent.jsonl")
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	cfgPath := filepath.Join(dir, "gw.json")
	require.NoError(t, os.WriteFile(cfgPath, b, 0o600))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	listen := l.Addr().String()
	require.NoError(t, l.Close())

	m := plugintest.Manager(t, plugins.Options{}, plugins.Config{
		Name: "sms", Kind: plugins.KindConnector, Path: bin, SHA256: sum, Args: []string{"-config", cfgPath, "-listen", listen}})
	c, err := m.Connector("sms")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := c.Send(ctx, plugins.Message{Recipient: "+491701234567", Body: "Hi", IdempotencyKey: "pk",
		Metadata: map[string]string{"sender": "Rapport"}})
	require.NoError(t, err)
	assert.Equal(t, "msg-1", rc.ProviderID)

	events := make(chan plugins.InboundEvent, 1)
	go func() {
		_ = c.Receive(ctx, func(_ context.Context, ev plugins.InboundEvent) error { events <- ev; return nil })
	}()
	var resp *http.Response
	for range 50 {
		resp, err = http.Post("http://"+listen+"/?token=cb-token", "application/json",
			bytes.NewReader([]byte(`{"message_id":"msg-1","status":"DELIVRD"}`)))
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	ev := <-events
	assert.Equal(t, plugins.StatusDelivered, ev.Delivery.Status)
	assert.Equal(t, "msg-1", ev.Delivery.ProviderID)
}
