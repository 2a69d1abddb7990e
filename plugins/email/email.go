// Package email is Rapport's reference email connector: it sends messages
// with attachments over SMTP (STARTTLS or implicit TLS, with
// authentication) through github.com/wneessen/go-mail, and receives
// inbound email posted to an HTTP endpoint by the mail provider's inbound
// webhook. It implements plugins.Connector in-process; rapport-email
// serves it as a plugin.
//
// A send is idempotent across retries and restarts: the message's
// Message-ID is derived from its idempotency key, and with a StateDir the
// connector journals each key it sent (fsynced) and answers a repeated key
// with the first receipt instead of sending again. One window remains, as
// with any SMTP client: if the process dies after the server accepted the
// message but before the journal write, the retry sends it again, with the
// same Message-ID, so receivers can tell the copies apart.
package email

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/rapportcrm/rapport/plugins"
)

// TLS modes for Config.TLS.
const (
	// TLSStartTLS requires STARTTLS (the default).
	TLSStartTLS = "starttls"
	// TLSOpportunistic uses STARTTLS when the server offers it.
	TLSOpportunistic = "opportunistic"
	// TLSImplicit connects with TLS from the start (SMTPS, port 465).
	TLSImplicit = "tls"
	// TLSNone sends in the clear; for tests and local relays only.
	TLSNone = "none"
)

// Config configures the connector.
type Config struct {
	// Host and Port address the SMTP server (Port defaults to 587, or
	// 465 with TLSImplicit).
	Host string
	Port int
	// Username and Password, when set, authenticate (the mechanism is
	// the best one the server offers).
	Username, Password string
	// From is the sender address, e.g. "Sales <sales@example.com>".
	From string
	// TLS is one of TLSStartTLS (default), TLSOpportunistic, TLSImplicit,
	// TLSNone.
	TLS string
	// RootCAs, if set, are the CAs trusted for the server's certificate
	// (default: the system's).
	RootCAs *x509.CertPool
	// StateDir, if set, keeps the journal of sent idempotency keys, so
	// that a restarted connector does not send a message twice.
	StateDir string
	// Timeout bounds one SMTP conversation (default 30 s) when the call's
	// context has no earlier deadline.
	Timeout time.Duration
	// InboundToken, if set, is the bearer token the inbound endpoint
	// requires.
	InboundToken string
}

// ConfigFromEnv reads a Config from the plugin's environment: SMTP_HOST,
// SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD, SMTP_FROM, SMTP_TLS,
// SMTP_CA_FILE (PEM), EMAIL_STATE_DIR, EMAIL_INBOUND_TOKEN.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Host: getenv("SMTP_HOST"), Username: getenv("SMTP_USERNAME"), Password: getenv("SMTP_PASSWORD"),
		From: getenv("SMTP_FROM"), TLS: getenv("SMTP_TLS"), StateDir: getenv("EMAIL_STATE_DIR"),
		InboundToken: getenv("EMAIL_INBOUND_TOKEN"),
	}
	if p := getenv("SMTP_PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return Config{}, fmt.Errorf("email: SMTP_PORT %q is not a number", p)
		}
		c.Port = n
	}
	if f := getenv("SMTP_CA_FILE"); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return Config{}, fmt.Errorf("email: SMTP_CA_FILE: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return Config{}, fmt.Errorf("email: SMTP_CA_FILE %s holds no PEM certificate", f)
		}
	}
	return c, nil
}

// Connector sends email over SMTP. It is safe for concurrent use.
type Connector struct {
	cfg    Config
	from   *mail.Address
	policy gomail.TLSPolicy
	inbox  *plugins.Inbox

	journal *plugins.Journal
}

// New checks the config and, with a StateDir, reads the journal of keys
// already sent.
func New(cfg Config) (*Connector, error) {
	if cfg.Host == "" {
		return nil, errors.New("email: an SMTP host is required")
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("email: sender %q: %w", cfg.From, err)
	}
	c := &Connector{cfg: cfg, from: from, inbox: plugins.NewInbox(0)}
	switch cfg.TLS {
	case "", TLSStartTLS:
		c.policy = gomail.TLSMandatory
	case TLSOpportunistic:
		c.policy = gomail.TLSOpportunistic
	case TLSNone:
		c.policy = gomail.NoTLS
	case TLSImplicit:
	default:
		return nil, fmt.Errorf("email: TLS mode %q is not starttls, opportunistic, tls or none", cfg.TLS)
	}
	if c.cfg.Port == 0 {
		c.cfg.Port = 587
		if cfg.TLS == TLSImplicit {
			c.cfg.Port = 465
		}
	}
	if c.cfg.Timeout <= 0 {
		c.cfg.Timeout = 30 * time.Second
	}
	journal := ""
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("email: state directory: %w", err)
		}
		journal = filepath.Join(cfg.StateDir, "sent.jsonl")
	}
	if c.journal, err = plugins.OpenJournal(journal); err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	return c, nil
}

// Close closes the journal.
func (c *Connector) Close() error { return c.journal.Close() }

// Describe implements plugins.Connector.
func (c *Connector) Describe(context.Context) (plugins.Channel, error) {
	return plugins.Channel{Kind: "email", Capabilities: []string{plugins.CapSend, plugins.CapAttachments, plugins.CapInbound}}, nil
}

// MessageID returns the Message-ID (without angle brackets) the connector
// gives the message with an idempotency key.
func (c *Connector) MessageID(key string) string {
	sum := sha256.Sum256([]byte(key))
	domain := "rapport.invalid"
	if at := strings.LastIndexByte(c.from.Address, '@'); at >= 0 {
		domain = c.from.Address[at+1:]
	}
	return hex.EncodeToString(sum[:16]) + "@" + domain
}

// Send implements plugins.Connector. Metadata "reply_to" and "cc" set
// those headers; "html" = "true" sends Body as HTML.
func (c *Connector) Send(ctx context.Context, msg plugins.Message) (plugins.Receipt, error) {
	if msg.IdempotencyKey == "" {
		return plugins.Receipt{}, plugins.Rejectf("email: an idempotency key is required")
	}
	m, err := c.build(msg)
	if err != nil {
		return plugins.Receipt{}, err
	}
	return c.journal.Once(ctx, msg.IdempotencyKey, func() (plugins.Receipt, error) {
		if err := c.deliver(ctx, m); err != nil {
			return plugins.Receipt{}, err
		}
		return plugins.Receipt{ProviderID: c.MessageID(msg.IdempotencyKey), Status: plugins.StatusSent}, nil
	})
}

func (c *Connector) build(msg plugins.Message) (*gomail.Msg, error) {
	to, err := mail.ParseAddress(msg.Recipient)
	if err != nil {
		return nil, plugins.Rejectf("email: recipient %q: %v", msg.Recipient, err)
	}
	m := gomail.NewMsg()
	if err := m.From(c.from.String()); err != nil {
		return nil, plugins.Rejectf("email: sender: %v", err)
	}
	if err := m.To(to.String()); err != nil {
		return nil, plugins.Rejectf("email: recipient %q: %v", msg.Recipient, err)
	}
	if cc := msg.Metadata["cc"]; cc != "" {
		if err := m.Cc(strings.Split(cc, ",")...); err != nil {
			return nil, plugins.Rejectf("email: cc %q: %v", cc, err)
		}
	}
	if rt := msg.Metadata["reply_to"]; rt != "" {
		if err := m.ReplyTo(rt); err != nil {
			return nil, plugins.Rejectf("email: reply_to %q: %v", rt, err)
		}
	}
	m.Subject(msg.Subject)
	m.SetMessageIDWithValue(c.MessageID(msg.IdempotencyKey))
	m.SetDate()
	ct := gomail.TypeTextPlain
	if msg.Metadata["html"] == "true" {
		ct = gomail.TypeTextHTML
	}
	m.SetBodyString(ct, msg.Body)
	for _, a := range msg.Attachments {
		if a.FileName == "" {
			return nil, plugins.Rejectf("email: an attachment needs a file name")
		}
		opts := []gomail.FileOption{}
		if a.MIMEType != "" {
			opts = append(opts, gomail.WithFileContentType(gomail.ContentType(a.MIMEType)))
		}
		m.AttachReadSeeker(a.FileName, bytes.NewReader(a.Content), opts...)
	}
	return m, nil
}

func (c *Connector) deliver(ctx context.Context, m *gomail.Msg) error {
	opts := []gomail.Option{gomail.WithTimeout(c.cfg.Timeout)}
	tlsConf := &tls.Config{ServerName: c.cfg.Host, RootCAs: c.cfg.RootCAs, MinVersion: tls.VersionTLS12}
	opts = append(opts, gomail.WithTLSConfig(tlsConf))
	if c.cfg.TLS == TLSImplicit {
		opts = append(opts, gomail.WithSSLPort(false))
	} else {
		opts = append(opts, gomail.WithTLSPortPolicy(c.policy))
	}
	// The port goes after the TLS options, which would otherwise move
	// port 25 to 587 or 465.
	opts = append(opts, gomail.WithPort(c.cfg.Port))
	if c.cfg.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(c.cfg.Username), gomail.WithPassword(c.cfg.Password))
	}
	client, err := gomail.NewClient(c.cfg.Host, opts...)
	if err != nil {
		return plugins.Rejectf("email: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if err := client.DialAndSendWithContext(ctx, m); err != nil {
		var se *gomail.SendError
		if errors.As(err, &se) && !se.IsTemp() && se.Reason == gomail.ErrSMTPRcptTo {
			return plugins.Rejectf("email: the server refused the recipient: %v", err)
		}
		return fmt.Errorf("email: sending through %s:%d: %w", c.cfg.Host, c.cfg.Port, err)
	}
	return nil
}

// Receive implements plugins.Connector: it hands on the emails posted to
// InboundHandler.
func (c *Connector) Receive(ctx context.Context, deliver func(context.Context, plugins.InboundEvent) error) error {
	return c.inbox.Receive(ctx, deliver)
}
