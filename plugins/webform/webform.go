// Package webform is Rapport's reference connector for web forms and
// telephony: an HTTP endpoint that turns form submissions into inbound
// events the host makes leads of (with the visitor's source and campaign),
// with validation and per-client rate limiting, and a webhook for a PBX
// whose call events become interactions on the caller's timeline. It
// implements plugins.Connector in-process (it sends nothing);
// rapport-webform serves it as a plugin.
package webform

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/rapportcrm/rapport/plugins"
)

// Form describes one form the endpoint accepts.
type Form struct {
	// Required fields must be present and not blank; Optional ones may
	// be. Any other field is refused, so that a typo in a form's HTML
	// does not silently lose data.
	Required []string `json:"required"`
	Optional []string `json:"optional"`
}

// Config configures the connector.
type Config struct {
	// Forms by name: a submission posts to /forms/NAME.
	Forms map[string]Form `json:"forms"`
	// RatePerMinute bounds submissions per client address (default 10),
	// with bursts of up to Burst (default 5).
	RatePerMinute int `json:"rate_per_minute"`
	Burst         int `json:"burst"`
	// TrustProxy takes the client address from the last X-Forwarded-For
	// entry (set it only behind one proxy that appends to that header).
	TrustProxy bool `json:"trust_proxy"`
	// PBXToken, if set, is required as "Authorization: Bearer TOKEN" on
	// /calls.
	PBXToken string `json:"pbx_token"`
}

// MaxFieldLength is the longest field value accepted.
const MaxFieldLength = 4000

// Connector receives form submissions and call events.
type Connector struct {
	cfg   Config
	inbox *plugins.Inbox

	mu       sync.Mutex
	limiters map[string]*client
	now      func() time.Time
}

type client struct {
	lim  *rate.Limiter
	seen time.Time
}

// New checks the config.
func New(cfg Config) (*Connector, error) {
	if len(cfg.Forms) == 0 {
		return nil, errors.New("webform: no forms configured")
	}
	for name, f := range cfg.Forms {
		if name == "" || strings.ContainsAny(name, "/ ") {
			return nil, fmt.Errorf("webform: form name %q: use letters, digits and dashes", name)
		}
		for _, fld := range f.Required {
			if slices.Contains(f.Optional, fld) {
				return nil, fmt.Errorf("webform: form %s: field %q is both required and optional", name, fld)
			}
		}
	}
	if cfg.RatePerMinute <= 0 {
		cfg.RatePerMinute = 10
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 5
	}
	return &Connector{cfg: cfg, inbox: plugins.NewInbox(0), limiters: map[string]*client{}, now: time.Now}, nil
}

// Describe implements plugins.Connector.
func (c *Connector) Describe(context.Context) (plugins.Channel, error) {
	return plugins.Channel{Kind: "webform", Capabilities: []string{plugins.CapInbound}}, nil
}

// Send implements plugins.Connector: a web form cannot send.
func (c *Connector) Send(context.Context, plugins.Message) (plugins.Receipt, error) {
	return plugins.Receipt{}, plugins.Rejectf("webform: this connector only receives")
}

// Receive implements plugins.Connector.
func (c *Connector) Receive(ctx context.Context, deliver func(context.Context, plugins.InboundEvent) error) error {
	return c.inbox.Receive(ctx, deliver)
}

// Handler returns the HTTP endpoints: POST /forms/NAME (a form,
// urlencoded or multipart; utm_source and utm_campaign, as fields or in
// the query, become the lead's source and campaign) and POST /calls (a
// call event as JSON, from the PBX). Both answer once the host stored the
// event: 200 (or 303 to a form's "redirect" field), 400 with the problems
// for a bad submission, 429 over the rate, 503 if the host did not store
// it in time.
func (c *Connector) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /forms/{name}", c.form)
	mux.HandleFunc("POST /calls", c.call)
	return mux
}

func (c *Connector) form(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	f, ok := c.cfg.Forms[name]
	if !ok {
		http.Error(w, fmt.Sprintf("no form %q", name), http.StatusNotFound)
		return
	}
	if !c.allow(c.clientAddr(r)) {
		w.Header().Set("Retry-After", "60")
		http.Error(w, "too many submissions; try again in a minute", http.StatusTooManyRequests)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseMultipartForm(1 << 20); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		http.Error(w, "malformed form: "+err.Error(), http.StatusBadRequest)
		return
	}
	sub := &plugins.FormSubmission{Form: name, Fields: map[string]string{},
		Source:   first(r.PostForm.Get("utm_source"), r.URL.Query().Get("utm_source")),
		Campaign: first(r.PostForm.Get("utm_campaign"), r.URL.Query().Get("utm_campaign"))}
	redirect := r.PostForm.Get("redirect")
	var problems []string
	for key, vals := range r.PostForm {
		switch key {
		case "utm_source", "utm_campaign", "redirect":
			continue
		}
		if !slices.Contains(f.Required, key) && !slices.Contains(f.Optional, key) {
			problems = append(problems, fmt.Sprintf("%s: not a field of this form", key))
			continue
		}
		v := strings.TrimSpace(strings.Join(vals, ", "))
		if len(v) > MaxFieldLength {
			problems = append(problems, fmt.Sprintf("%s: longer than %d characters", key, MaxFieldLength))
			continue
		}
		sub.Fields[key] = v
	}
	for _, req := range f.Required {
		if sub.Fields[req] == "" {
			problems = append(problems, req+": required")
		}
	}
	if e := sub.Fields["email"]; e != "" {
		if a, err := mail.ParseAddress(e); err != nil || a.Address != e {
			problems = append(problems, "email: not an email address")
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		http.Error(w, "please correct: "+strings.Join(problems, "; "), http.StatusBadRequest)
		return
	}
	if !c.store(w, r, plugins.InboundEvent{Form: sub}) {
		return
	}
	if localPath(redirect) {
		http.Redirect(w, r, redirect, http.StatusSeeOther)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("Thank you!\n"))
}

// Call is what the PBX posts to /calls.
type Call struct {
	// ID identifies the call; with State it makes a repeated post count
	// once.
	ID string `json:"id"`
	// State is "started" or "ended".
	State     string `json:"state"`
	From      string `json:"from"`
	To        string `json:"to"`
	Direction string `json:"direction"`
	// DurationSeconds and RecordingURL are set when the call ended.
	DurationSeconds int64  `json:"duration_seconds"`
	RecordingURL    string `json:"recording_url"`
}

func (c *Connector) call(w http.ResponseWriter, r *http.Request) {
	if tok := c.cfg.PBXToken; tok != "" {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+tok)) != 1 {
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
	}
	var in Call
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		http.Error(w, "malformed call event: "+err.Error(), http.StatusBadRequest)
		return
	}
	var problems []string
	if in.ID == "" {
		problems = append(problems, "id: required")
	}
	if in.State != "started" && in.State != "ended" {
		problems = append(problems, fmt.Sprintf("state: %q is not started or ended", in.State))
	}
	if in.From == "" {
		problems = append(problems, "from: required")
	}
	if in.Direction == "" {
		in.Direction = "inbound"
	}
	if in.Direction != "inbound" && in.Direction != "outbound" {
		problems = append(problems, fmt.Sprintf("direction: %q is not inbound or outbound", in.Direction))
	}
	if in.DurationSeconds < 0 {
		problems = append(problems, "duration_seconds: negative")
	}
	if len(problems) > 0 {
		http.Error(w, "malformed call event: "+strings.Join(problems, "; "), http.StatusBadRequest)
		return
	}
	ev := plugins.InboundEvent{ID: "call:" + in.ID + ":" + in.State, Call: &plugins.CallEvent{
		CallID: in.ID, State: in.State, From: in.From, To: in.To, Direction: in.Direction,
		Duration: time.Duration(in.DurationSeconds) * time.Second, RecordingRef: in.RecordingURL}}
	if c.store(w, r, ev) {
		w.WriteHeader(http.StatusOK)
	}
}

// store hands the event to the host and waits until it is stored; on
// failure it answers 503 and returns false.
func (c *Connector) store(w http.ResponseWriter, r *http.Request, ev plugins.InboundEvent) bool {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := c.inbox.Deliver(ctx, ev); err != nil {
		w.Header().Set("Retry-After", "30")
		http.Error(w, "not stored yet, please retry", http.StatusServiceUnavailable)
		return false
	}
	return true
}

func (c *Connector) clientAddr(r *http.Request) string {
	if c.cfg.TrustProxy {
		// The last entry is the one the trusted proxy added; the ones
		// before it are whatever the client sent.
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			parts := strings.Split(xff, ",")
			if last := strings.TrimSpace(parts[len(parts)-1]); last != "" {
				return last
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// allow takes a token from the client's bucket, forgetting clients not
// seen for ten minutes.
func (c *Connector) allow(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.limiters) > 10000 {
		for a, cl := range c.limiters {
			if now.Sub(cl.seen) > 10*time.Minute {
				delete(c.limiters, a)
			}
		}
	}
	cl, ok := c.limiters[addr]
	if !ok {
		cl = &client{lim: rate.NewLimiter(rate.Limit(float64(c.cfg.RatePerMinute)/60), c.cfg.Burst)}
		c.limiters[addr] = cl
	}
	cl.seen = now
	return cl.lim.AllowN(now, 1)
}

// localPath reports whether a redirect target is a path on this site:
// "/thanks", not "//evil.example" or "/\\evil.example", which browsers
// take for another host.
func localPath(s string) bool {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.ContainsAny(s, "\\\r\n\t") {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "" && u.Host == ""
}

func first(vals ...string) string {
	for _, v := range vals {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}
