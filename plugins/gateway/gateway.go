// Package gateway is Rapport's reference HTTP gateway connector for SMS
// and messengers: it sends each message as a JSON webhook built from a
// template (URL, auth header, body), reads the provider's message id from
// the response, and turns the provider's callbacks (delivery status
// updates, inbound messages) into inbound events. It implements
// plugins.Connector in-process; rapport-gateway serves it as a plugin,
// configured by a JSON file.
package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/template"
	"time"

	"github.com/tidwall/gjson"

	"github.com/rapportcrm/rapport/plugins"
)

// Config describes the gateway's API. JSON paths use gjson syntax
// ("data.id", "messages.0.status").
type Config struct {
	// Kind is the channel Describe reports: "sms" (default), "messenger",
	// ...
	Kind string `json:"kind"`
	// URL receives the send requests; Method defaults to POST.
	URL    string `json:"url"`
	Method string `json:"method"`
	// Headers are added to each request, e.g. {"Authorization": "Bearer
	// ..."}. Each request also carries an Idempotency-Key header.
	Headers map[string]string `json:"headers"`
	// Body is a text/template producing the request body from the
	// message: .Recipient, .Subject, .Body, .IdempotencyKey, .Metadata.
	// The json function quotes a value as a JSON string:
	// {"to": {{json .Recipient}}, "text": {{json .Body}}}.
	Body string `json:"body"`
	// IDPath locates the provider's message id in the response (default
	// "id"); StatusPath its status, mapped through Statuses (default:
	// the status is "sent").
	IDPath     string `json:"id_path"`
	StatusPath string `json:"status_path"`
	// Statuses maps the provider's status words to Rapport's: queued,
	// sent, delivered, read, failed.
	Statuses map[string]string `json:"statuses"`
	// Timeout bounds one request (default 15 s).
	Timeout Duration `json:"timeout"`

	// Callbacks: the provider posts JSON to the callback handler.
	// CallbackToken, if set, must come as "Authorization: Bearer TOKEN"
	// or as the "token" query parameter.
	CallbackToken string `json:"callback_token"`
	// A callback with a value at CallbackStatusPath is a delivery status
	// update for the message at CallbackIDPath; one with a value at
	// InboundTextPath is an inbound message from InboundFromPath to
	// InboundToPath. CallbackEventIDPath, if set, identifies the callback
	// so that a repeated post is stored once.
	CallbackIDPath      string `json:"callback_id_path"`
	CallbackStatusPath  string `json:"callback_status_path"`
	CallbackReasonPath  string `json:"callback_reason_path"`
	CallbackEventIDPath string `json:"callback_event_id_path"`
	InboundFromPath     string `json:"inbound_from_path"`
	InboundToPath       string `json:"inbound_to_path"`
	InboundTextPath     string `json:"inbound_text_path"`

	// Journal, if set, is the file that remembers sent idempotency keys
	// across restarts.
	Journal string `json:"journal"`
}

// Duration is a time.Duration written as a string ("15s") in JSON.
type Duration time.Duration

// UnmarshalJSON parses "15s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"15s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes "15s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// LoadConfig reads a Config from a JSON file, refusing unknown fields.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("gateway: %w", err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("gateway: %s: %w", path, err)
	}
	return c, nil
}

// Connector sends through an HTTP gateway. It is safe for concurrent use.
type Connector struct {
	cfg     Config
	body    *template.Template
	client  *http.Client
	inbox   *plugins.Inbox
	journal *plugins.Journal
}

// New checks the config.
func New(cfg Config) (*Connector, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gateway: url %q is not an http(s) URL", cfg.URL)
	}
	if cfg.Kind == "" {
		cfg.Kind = "sms"
	}
	if cfg.Method == "" {
		cfg.Method = http.MethodPost
	}
	if cfg.IDPath == "" {
		cfg.IDPath = "id"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = Duration(15 * time.Second)
	}
	for word, st := range cfg.Statuses {
		if _, ok := plugins.ParseDeliveryStatus(st); !ok {
			return nil, fmt.Errorf("gateway: statuses: %q maps to %q, not one of queued, sent, delivered, read, failed", word, st)
		}
	}
	if cfg.Body == "" {
		return nil, errors.New("gateway: a body template is required")
	}
	body, err := template.New("body").Option("missingkey=error").Funcs(template.FuncMap{"json": jsonString}).Parse(cfg.Body)
	if err != nil {
		return nil, fmt.Errorf("gateway: body template: %w", err)
	}
	// Fill it once: a field that does not exist fails here, not at send.
	var probe bytes.Buffer
	if err := body.Execute(&probe, message{Recipient: "+10000000000", Metadata: map[string]string{}}); err != nil {
		return nil, fmt.Errorf("gateway: body template: %w", err)
	}
	j, err := plugins.OpenJournal(cfg.Journal)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return &Connector{cfg: cfg, body: body, client: &http.Client{Timeout: time.Duration(cfg.Timeout)},
		inbox: plugins.NewInbox(0), journal: j}, nil
}

// message is what the body template sees.
type message struct {
	Recipient, Subject, Body, IdempotencyKey string
	Metadata                                 map[string]string
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(fmt.Sprint(v))
	return string(b), err
}

// Close closes the journal.
func (c *Connector) Close() error { return c.journal.Close() }

// Describe implements plugins.Connector.
func (c *Connector) Describe(context.Context) (plugins.Channel, error) {
	return plugins.Channel{Kind: c.cfg.Kind, Capabilities: []string{plugins.CapSend, plugins.CapInbound, plugins.CapDeliveryStatus}}, nil
}

// Send implements plugins.Connector: a 2xx answer is a receipt; 4xx other
// than 408 and 429 is a refusal (ErrRejected); anything else is worth
// retrying.
func (c *Connector) Send(ctx context.Context, msg plugins.Message) (plugins.Receipt, error) {
	if strings.TrimSpace(msg.Recipient) == "" {
		return plugins.Receipt{}, plugins.Rejectf("gateway: a recipient is required")
	}
	if len(msg.Attachments) > 0 {
		return plugins.Receipt{}, plugins.Rejectf("gateway: attachments are not supported")
	}
	var body bytes.Buffer
	md := msg.Metadata
	if md == nil {
		md = map[string]string{}
	}
	if err := c.body.Execute(&body, message{Recipient: msg.Recipient, Subject: msg.Subject, Body: msg.Body,
		IdempotencyKey: msg.IdempotencyKey, Metadata: md}); err != nil {
		return plugins.Receipt{}, plugins.Rejectf("gateway: body template: %v", err)
	}
	if !json.Valid(body.Bytes()) {
		return plugins.Receipt{}, plugins.Rejectf("gateway: the body template made invalid JSON: %s", body.String())
	}
	return c.journal.Once(ctx, msg.IdempotencyKey, func() (plugins.Receipt, error) {
		return c.post(ctx, msg.IdempotencyKey, body.Bytes())
	})
}

func (c *Connector) post(ctx context.Context, key string, body []byte) (plugins.Receipt, error) {
	req, err := http.NewRequestWithContext(ctx, c.cfg.Method, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return plugins.Receipt{}, plugins.Rejectf("gateway: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	for k, v := range c.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return plugins.Receipt{}, fmt.Errorf("gateway: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return plugins.Receipt{}, fmt.Errorf("gateway: reading the answer: %w", err)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return plugins.Receipt{}, plugins.Rejectf("gateway: %s: %s", resp.Status, snippet(out))
	default:
		return plugins.Receipt{}, fmt.Errorf("gateway: %s: %s", resp.Status, snippet(out))
	}
	// A 2xx is sent, with or without an id: sending again would send
	// twice. Without an id, delivery callbacks cannot be matched.
	rc := plugins.Receipt{ProviderID: gjson.GetBytes(out, c.cfg.IDPath).String(), Status: plugins.StatusSent}
	if c.cfg.StatusPath != "" {
		if st, ok := c.status(gjson.GetBytes(out, c.cfg.StatusPath).String()); ok {
			rc.Status = st
		}
	}
	return rc, nil
}

func (c *Connector) status(word string) (plugins.DeliveryStatus, bool) {
	if mapped, ok := c.cfg.Statuses[word]; ok {
		word = mapped
	}
	return plugins.ParseDeliveryStatus(strings.ToLower(word))
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// Receive implements plugins.Connector: the callbacks' events.
func (c *Connector) Receive(ctx context.Context, deliver func(context.Context, plugins.InboundEvent) error) error {
	return c.inbox.Receive(ctx, deliver)
}

// CallbackHandler returns the endpoint the provider posts delivery status
// updates and inbound messages to. It answers 200 once the host stored
// the event, 204 for a callback that is neither (ignored), 400 for
// malformed JSON, 401 without the token and 503 when the host did not
// store it in time.
func (c *Connector) CallbackHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST a callback as JSON", http.StatusMethodNotAllowed)
			return
		}
		if tok := c.cfg.CallbackToken; tok != "" {
			got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if got == "" {
				got = r.URL.Query().Get("token")
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
				http.Error(w, "missing or wrong token", http.StatusUnauthorized)
				return
			}
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil || !gjson.ValidBytes(body) {
			http.Error(w, "malformed callback: not JSON", http.StatusBadRequest)
			return
		}
		ev, ok, err := c.event(body)
		if err != nil {
			http.Error(w, "malformed callback: "+err.Error(), http.StatusBadRequest)
			return
		}
		if !ok {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		if err := c.inbox.Deliver(ctx, ev); err != nil {
			http.Error(w, "not stored yet, retry: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

func (c *Connector) event(body []byte) (plugins.InboundEvent, bool, error) {
	get := func(path string) gjson.Result {
		if path == "" {
			return gjson.Result{}
		}
		return gjson.GetBytes(body, path)
	}
	var ev plugins.InboundEvent
	if id := get(c.cfg.CallbackEventIDPath); id.Exists() {
		ev.ID = c.cfg.Kind + ":" + id.String()
	}
	if st := get(c.cfg.CallbackStatusPath); st.Exists() {
		status, ok := c.status(st.String())
		if !ok {
			return ev, false, fmt.Errorf("status %q is not mapped to a delivery status", st.String())
		}
		id := get(c.cfg.CallbackIDPath).String()
		if id == "" {
			return ev, false, fmt.Errorf("no message id at %q", c.cfg.CallbackIDPath)
		}
		ev.Delivery = &plugins.DeliveryUpdate{ProviderID: id, Status: status, Reason: get(c.cfg.CallbackReasonPath).String()}
		return ev, true, nil
	}
	if text := get(c.cfg.InboundTextPath); text.Exists() {
		from := get(c.cfg.InboundFromPath).String()
		if from == "" {
			return ev, false, fmt.Errorf("no sender at %q", c.cfg.InboundFromPath)
		}
		ev.Message = &plugins.InboundMessage{From: from, To: get(c.cfg.InboundToPath).String(), Body: text.String()}
		return ev, true, nil
	}
	return ev, false, nil
}
