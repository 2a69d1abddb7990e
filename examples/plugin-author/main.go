// Command plugin-author is a complete Rapport channel connector written
// as a third party would write one: it "sends" each message by appending
// it as a JSON line to a file, and never writes the same message twice.
// See README.md for building, approving and checking it.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/rapportcrm/rapport/plugins"
)

// fileConnector appends messages to a file. The plugin's environment is
// what the host's plugin Config.Env gives it: OUTBOX_FILE names the file.
type fileConnector struct {
	mu    sync.Mutex
	path  string
	sent  map[string]plugins.Receipt // by idempotency key
	inbox *plugins.Inbox             // nothing arrives on this channel
}

type line struct {
	Key     string `json:"key"`
	To      string `json:"to"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

func (c *fileConnector) Describe(context.Context) (plugins.Channel, error) {
	return plugins.Channel{Kind: "file", Capabilities: []string{plugins.CapSend}}, nil
}

func (c *fileConnector) Send(_ context.Context, msg plugins.Message) (plugins.Receipt, error) {
	if msg.Recipient == "" || msg.IdempotencyKey == "" {
		return plugins.Receipt{}, plugins.Rejectf("a recipient and an idempotency key are required")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rc, ok := c.sent[msg.IdempotencyKey]; ok {
		return rc, nil // sent before: the same receipt, not a second line
	}
	b, err := json.Marshal(line{Key: msg.IdempotencyKey, To: msg.Recipient, Subject: msg.Subject, Body: msg.Body})
	if err != nil {
		return plugins.Receipt{}, err
	}
	f, err := os.OpenFile(c.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return plugins.Receipt{}, err // worth retrying: the host will
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return plugins.Receipt{}, err
	}
	if err := f.Sync(); err != nil {
		return plugins.Receipt{}, err
	}
	rc := plugins.Receipt{ProviderID: fmt.Sprintf("line-%d", len(c.sent)+1), Status: plugins.StatusDelivered}
	c.sent[msg.IdempotencyKey] = rc
	return rc, nil
}

func (c *fileConnector) Receive(ctx context.Context, deliver func(context.Context, plugins.InboundEvent) error) error {
	return c.inbox.Receive(ctx, deliver)
}

// load remembers the keys already in the file, so that a restarted plugin
// does not write a message twice either.
func (c *fileConnector) load() error {
	f, err := os.Open(c.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var l line
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Key != "" {
			c.sent[l.Key] = plugins.Receipt{ProviderID: fmt.Sprintf("line-%d", len(c.sent)+1), Status: plugins.StatusDelivered}
		}
	}
	return sc.Err()
}

func main() {
	c := &fileConnector{path: os.Getenv("OUTBOX_FILE"), sent: map[string]plugins.Receipt{}, inbox: plugins.NewInbox(0)}
	if c.path == "" {
		fmt.Fprintln(os.Stderr, "plugin-author: set OUTBOX_FILE in the plugin's environment")
		os.Exit(1)
	}
	if err := c.load(); err != nil {
		fmt.Fprintln(os.Stderr, "plugin-author:", err)
		os.Exit(1)
	}
	plugins.ServeConnector(c)
}
