package plugins_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rapportcrm/rapport/plugins"
)

// TestMain doubles as the test plugins: the manager starts this test
// binary with go-plugin's cookie in its environment and the plugin to
// serve as its first argument.
func TestMain(m *testing.M) {
	if os.Getenv(plugins.Handshake.MagicCookieKey) == plugins.Handshake.MagicCookieValue && len(os.Args) > 1 {
		servePlugin(os.Args[1])
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func servePlugin(kind string) {
	switch kind {
	case "renderer":
		plugins.ServeRenderer(echoRenderer{})
	case "connector":
		c := newFakeConnector()
		if n, _ := strconv.Atoi(os.Getenv("INBOUND_EVENTS")); n > 0 {
			for i := range n {
				_, _ = c.inbox.Post(plugins.InboundEvent{ID: fmt.Sprintf("ev-%d", i),
					Form: &plugins.FormSubmission{Form: "contact-us", Fields: map[string]string{"n": strconv.Itoa(i)}}})
			}
		}
		plugins.ServeConnector(c)
	default:
		fmt.Fprintf(os.Stderr, "unknown test plugin %q\n", kind)
		os.Exit(2)
	}
}

// echoRenderer renders the template "echo" as the JSON of its data and
// totals; the template "hang" never answers; "crash" exits the process.
type echoRenderer struct{}

func (echoRenderer) Templates(context.Context) ([]plugins.Template, error) {
	return []plugins.Template{{Name: "echo", Title: "Echo", Formats: []plugins.Format{plugins.HTML}}}, nil
}

func (echoRenderer) Render(ctx context.Context, req plugins.RenderRequest) (plugins.Document, error) {
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

// fakeConnector sends by remembering; recipients "crash", "hang" and
// "reject" misbehave as named. It receives from an Inbox.
type fakeConnector struct {
	mu    sync.Mutex
	sent  map[string]plugins.Receipt
	inbox *plugins.Inbox
}

func newFakeConnector() *fakeConnector {
	return &fakeConnector{sent: map[string]plugins.Receipt{}, inbox: plugins.NewInbox(0)}
}

func (c *fakeConnector) Describe(context.Context) (plugins.Channel, error) {
	return plugins.Channel{Kind: "fake", Capabilities: []string{plugins.CapSend, plugins.CapInbound}}, nil
}

func (c *fakeConnector) Send(ctx context.Context, msg plugins.Message) (plugins.Receipt, error) {
	switch msg.Recipient {
	case "crash":
		os.Exit(3)
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

func (c *fakeConnector) Receive(ctx context.Context, deliver func(context.Context, plugins.InboundEvent) error) error {
	return c.inbox.Receive(ctx, deliver)
}
