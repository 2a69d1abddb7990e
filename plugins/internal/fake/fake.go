// Package fake holds the plugins the plugins package's tests and
// benchmarks run: a renderer that echoes its data and a connector that
// remembers what it sent, both misbehaving on request (crash, hang,
// reject). testplugin serves them as a plugin process.
package fake

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rapportcrm/rapport/plugins"
)

// Renderer renders the template "echo" as the JSON of its data and
// totals; the template "hang" never answers; "crash" exits the process.
type Renderer struct{}

// Templates lists the one template, "echo".
func (Renderer) Templates(context.Context) ([]plugins.Template, error) {
	return []plugins.Template{{Name: "echo", Title: "Echo", Formats: []plugins.Format{plugins.HTML}}}, nil
}

// Render implements plugins.Renderer.
func (Renderer) Render(ctx context.Context, req plugins.RenderRequest) (plugins.Document, error) {
	switch req.Template {
	case "echo":
	case "hang":
		select {}
	case "crash":
		os.Exit(3)
	default:
		return plugins.Document{}, plugins.Rejectf("no template %q", req.Template)
	}
	t, err := req.Data.Totals()
	if err != nil {
		return plugins.Document{}, err
	}
	b, err := json.Marshal(map[string]any{"data": req.Data, "totals": t})
	if err != nil {
		return plugins.Document{}, err
	}
	return plugins.Document{Content: b, MIMEType: "application/json", FileName: "echo.json"}, nil
}

// Connector sends by remembering; recipients "crash", "hang" and
// "reject" misbehave as named. It receives from an Inbox.
type Connector struct {
	mu    sync.Mutex
	sent  map[string]plugins.Receipt
	Inbox *plugins.Inbox
}

// NewConnector returns a connector with an empty inbox.
func NewConnector() *Connector {
	return &Connector{sent: map[string]plugins.Receipt{}, Inbox: plugins.NewInbox(0)}
}

// Describe implements plugins.Connector.
func (c *Connector) Describe(context.Context) (plugins.Channel, error) {
	return plugins.Channel{Kind: "fake", Capabilities: []string{plugins.CapSend, plugins.CapInbound}}, nil
}

// Send implements plugins.Connector.
func (c *Connector) Send(ctx context.Context, msg plugins.Message) (plugins.Receipt, error) {
	switch msg.Recipient {
	case "crash":
		os.Exit(3)
	case "panic":
		panic("fake connector: boom")
	case "hang":
		select {}
	case "slow":
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return plugins.Receipt{}, ctx.Err()
		}
	default:
		if name, ok := strings.CutPrefix(msg.Recipient, "env:"); ok {
			return plugins.Receipt{ProviderID: name + "=" + os.Getenv(name), Status: plugins.StatusSent}, nil
		}
		if msg.Recipient == "pid" {
			return plugins.Receipt{ProviderID: strconv.Itoa(os.Getpid()), Status: plugins.StatusSent}, nil
		}
	case "reject":
		return plugins.Receipt{}, plugins.Rejectf("recipient %q is refused", msg.Recipient)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rc, ok := c.sent[msg.IdempotencyKey]; ok {
		return rc, nil
	}
	rc := plugins.Receipt{ProviderID: fmt.Sprintf("fake-%d-%d", os.Getpid(), len(c.sent)+1), Status: plugins.StatusSent}
	c.sent[msg.IdempotencyKey] = rc
	return rc, nil
}

// Receive implements plugins.Connector.
func (c *Connector) Receive(ctx context.Context, deliver func(context.Context, plugins.InboundEvent) error) error {
	return c.Inbox.Receive(ctx, deliver)
}
