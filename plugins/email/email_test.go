package email_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/email"
	"github.com/rapportcrm/rapport/plugins/renderer"
)

func connector(t *testing.T, s *smtpServer, mutate ...func(*email.Config)) *email.Connector {
	t.Helper()
	env := map[string]string{
		"SMTP_HOST": "127.0.0.1", "SMTP_PORT": strconv.Itoa(s.port), "SMTP_USERNAME": s.user, "SMTP_PASSWORD": s.pass,
		"SMTP_FROM": "Rapport Sales <sales@rapport.example>", "SMTP_CA_FILE": s.caFile,
		"EMAIL_STATE_DIR": filepath.Join(t.TempDir(), "state"),
	}
	cfg, err := email.ConfigFromEnv(func(k string) string { return env[k] })
	require.NoError(t, err)
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := email.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// parts returns a message's headers, its text body and its attachments by
// file name.
func parts(t *testing.T, data []byte) (mail.Header, string, map[string][]byte) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	require.NoError(t, err)
	files := map[string][]byte{}
	var text string
	var walk func(ct string, h func(string) string, body io.Reader)
	walk = func(ct string, h func(string) string, body io.Reader) {
		mt, params, err := mime.ParseMediaType(ct)
		require.NoError(t, err)
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					return
				}
				require.NoError(t, err)
				walk(p.Header.Get("Content-Type"), p.Header.Get, p)
			}
		}
		b, err := io.ReadAll(body)
		require.NoError(t, err)
		if strings.EqualFold(h("Content-Transfer-Encoding"), "base64") {
			b, err = base64.StdEncoding.DecodeString(strings.ReplaceAll(strings.ReplaceAll(string(b), "\r\n", ""), "\n", ""))
			require.NoError(t, err)
		}
		if _, dp, err := mime.ParseMediaType(h("Content-Disposition")); err == nil && dp["filename"] != "" {
			files[dp["filename"]] = b
			return
		}
		text += string(b)
	}
	walk(msg.Header.Get("Content-Type"), msg.Header.Get, msg.Body)
	return msg.Header, text, files
}

func invoicePDF(t *testing.T) plugins.Document {
	t.Helper()
	r, err := renderer.New(renderer.Options{})
	require.NoError(t, err)
	doc, err := r.Render(context.Background(), plugins.RenderRequest{Template: "invoice", Format: plugins.PDF, Data: plugins.DocumentData{
		Number: "INV-7", IssuedOn: "2026-12-03", Currency: "EUR", Scale: 2,
		Seller: plugins.Party{Name: "Rapport Demo"}, Customer: plugins.Party{Name: "Zoë Łukasiewicz"},
		Lines: []plugins.Line{{Description: "Picking robot", Quantity: 1, UnitPrice: 1_250_000, TaxBP: 1900}},
	}})
	require.NoError(t, err)
	return doc
}

func pdfText(t *testing.T, pdf []byte) string {
	t.Helper()
	bin, err := exec.LookPath("pdftotext")
	if err != nil {
		if os.Getenv("RAPPORT_REQUIRE_PDFTOTEXT") != "" {
			t.Fatal("pdftotext is required (RAPPORT_REQUIRE_PDFTOTEXT is set): install poppler-utils, as make test does")
		}
		t.Skip("pdftotext not found: install poppler-utils (apt-get install poppler-utils) or run make test")
	}
	path := filepath.Join(t.TempDir(), "a.pdf")
	require.NoError(t, os.WriteFile(path, pdf, 0o600))
	out, err := exec.Command(bin, "-enc", "UTF-8", path, "-").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}

func TestSendWithPDFOverSTARTTLSWithAuth(t *testing.T) {
	s := startSMTP(t, true)
	c := connector(t, s)
	doc := invoicePDF(t)
	rc, err := c.Send(context.Background(), plugins.Message{
		Recipient: "Zoë Łukasiewicz <zoe@example.com>", Subject: "Your invoice INV-7",
		Body: "Dear Zoë,\nplease find your invoice attached.", IdempotencyKey: "deal-1/invoice/INV-7",
		Attachments: []plugins.Attachment{{FileName: doc.FileName, MIMEType: doc.MIMEType, Content: doc.Content}},
		Metadata:    map[string]string{"reply_to": "ada@rapport.example"},
	})
	require.NoError(t, err)
	assert.Equal(t, plugins.StatusSent, rc.Status)
	assert.Equal(t, c.MessageID("deal-1/invoice/INV-7"), rc.ProviderID)

	got := s.messages()
	require.Len(t, got, 1)
	m := got[0]
	assert.True(t, m.TLS, "sent after STARTTLS")
	assert.Equal(t, "mailer", m.Auth, "authenticated")
	assert.Equal(t, "sales@rapport.example", m.From)
	assert.Equal(t, []string{"zoe@example.com"}, m.To)
	h, text, files := parts(t, m.Data)
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	require.NoError(t, err)
	assert.Equal(t, "Your invoice INV-7", subject)
	assert.Equal(t, "<"+rc.ProviderID+">", h.Get("Message-Id"))
	assert.Contains(t, h.Get("Reply-To"), "ada@rapport.example")
	assert.Contains(t, text, "please find your invoice attached")
	require.Contains(t, files, "invoice-INV-7.pdf")
	assert.Equal(t, doc.Content, files["invoice-INV-7.pdf"], "the PDF arrives byte for byte")
	pdf := pdfText(t, files["invoice-INV-7.pdf"])
	assert.Contains(t, pdf, "Zoë Łukasiewicz")
	assert.Contains(t, pdf, "Picking robot")
	assert.Contains(t, pdf, "14,875.00 EUR")
}

func TestSendIsIdempotentAcrossRestarts(t *testing.T) {
	s := startSMTP(t, true)
	state := filepath.Join(t.TempDir(), "state")
	withState := func(c *email.Config) { c.StateDir = state }
	msg := plugins.Message{Recipient: "zoe@example.com", Subject: "Hi", Body: "Hello", IdempotencyKey: "k1"}

	c1 := connector(t, s, withState)
	r1, err := c1.Send(context.Background(), msg)
	require.NoError(t, err)
	r2, err := c1.Send(context.Background(), msg)
	require.NoError(t, err)
	assert.Equal(t, r1, r2)
	require.NoError(t, c1.Close())

	// A new connector on the same state directory remembers the key.
	c2 := connector(t, s, withState)
	r3, err := c2.Send(context.Background(), msg)
	require.NoError(t, err)
	assert.Equal(t, r1, r3)
	assert.Len(t, s.messages(), 1, "one message reached the server")

	msg.IdempotencyKey = "k2"
	_, err = c2.Send(context.Background(), msg)
	require.NoError(t, err)
	assert.Len(t, s.messages(), 2)

	// A torn last journal line (a crash mid-write) does not count as sent.
	require.NoError(t, c2.Close())
	f, err := os.OpenFile(filepath.Join(state, "sent.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"key":"k3","provi`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	c3 := connector(t, s, withState)
	msg.IdempotencyKey = "k3"
	_, err = c3.Send(context.Background(), msg)
	require.NoError(t, err)
	assert.Len(t, s.messages(), 3)
}

func TestSendFailures(t *testing.T) {
	s := startSMTP(t, true)
	s.refuse = "nobody@example.com"
	ctx := context.Background()

	c := connector(t, s)
	_, err := c.Send(ctx, plugins.Message{Recipient: "not an address", IdempotencyKey: "a"})
	require.ErrorIs(t, err, plugins.ErrRejected)
	_, err = c.Send(ctx, plugins.Message{Recipient: "zoe@example.com"})
	require.ErrorIs(t, err, plugins.ErrRejected, "no idempotency key")
	_, err = c.Send(ctx, plugins.Message{Recipient: "nobody@example.com", IdempotencyKey: "b"})
	require.ErrorIs(t, err, plugins.ErrRejected, "the server refused the recipient for good")
	assert.Contains(t, err.Error(), "no such user")

	// A wrong password is not the message's fault: retryable, nothing sent.
	bad := connector(t, s, func(c *email.Config) { c.Password = "wrong" })
	_, err = bad.Send(ctx, plugins.Message{Recipient: "zoe@example.com", IdempotencyKey: "c"})
	require.Error(t, err)
	assert.NotErrorIs(t, err, plugins.ErrRejected)

	// STARTTLS is required by default: a server without it is refused.
	plain := startSMTP(t, false)
	c = connector(t, plain, func(c *email.Config) { c.RootCAs = nil })
	_, err = c.Send(ctx, plugins.Message{Recipient: "zoe@example.com", IdempotencyKey: "d"})
	require.Error(t, err)
	assert.Empty(t, plain.messages())
	// ...unless the operator says otherwise (a local relay without
	// authentication: go-mail does not send a password in the clear).
	c = connector(t, plain, func(c *email.Config) { c.TLS, c.Username = email.TLSNone, "" })
	_, err = c.Send(ctx, plugins.Message{Recipient: "zoe@example.com", IdempotencyKey: "e"})
	require.NoError(t, err)
	assert.Len(t, plain.messages(), 1)
	assert.Empty(t, s.messages())

	// No server at all: retryable.
	c = connector(t, &smtpServer{port: 1})
	_, err = c.Send(ctx, plugins.Message{Recipient: "zoe@example.com", IdempotencyKey: "f"})
	require.Error(t, err)
	assert.NotErrorIs(t, err, plugins.ErrRejected)
}

func TestBadConfig(t *testing.T) {
	_, err := email.New(email.Config{From: "a@b.c"})
	require.ErrorContains(t, err, "SMTP host is required")
	_, err = email.New(email.Config{Host: "h", From: "nope"})
	require.ErrorContains(t, err, `sender "nope"`)
	_, err = email.New(email.Config{Host: "h", From: "a@b.c", TLS: "ssl3"})
	require.ErrorContains(t, err, `TLS mode "ssl3"`)
	_, err = email.ConfigFromEnv(func(k string) string { return map[string]string{"SMTP_PORT": "x"}[k] })
	require.ErrorContains(t, err, "SMTP_PORT")
}
