package email_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/email"
	"github.com/rapportcrm/rapport/plugins/plugintest"
)

var pluginBin, pluginSum string

func TestMain(m *testing.M) {
	os.Exit(plugintest.Main(m, "rapport-email", "./rapport-email", &pluginBin, &pluginSum))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// TestPluginSendsAndReceives runs rapport-email as a plugin: a send with
// a PDF attachment reaches the SMTP server, and an email posted to the
// plugin's inbound endpoint reaches the host, which acknowledges it
// before the endpoint answers 200.
func TestPluginSendsAndReceives(t *testing.T) {
	s := startSMTP(t, true)
	inbound := freeAddr(t)
	m := plugintest.Manager(t, plugins.Options{}, plugins.Config{
		Name: "mail", Kind: plugins.KindConnector, Path: pluginBin, SHA256: pluginSum, Eager: true,
		Env: []string{"SMTP_HOST=127.0.0.1", "SMTP_PORT=" + strconv.Itoa(s.port), "SMTP_USERNAME=mailer", "SMTP_PASSWORD=s3cret",
			"SMTP_FROM=sales@rapport.example", "SMTP_CA_FILE=" + s.caFile, "EMAIL_STATE_DIR=" + t.TempDir(),
			"EMAIL_INBOUND_ADDR=" + inbound, "EMAIL_INBOUND_TOKEN=tok"},
	})
	require.NoError(t, m.Start(context.Background()))
	c, err := m.Connector("mail")
	require.NoError(t, err)
	ctx := context.Background()

	ch, err := c.Describe(ctx)
	require.NoError(t, err)
	assert.Equal(t, "email", ch.Kind)

	doc := invoicePDF(t)
	rc, err := c.Send(ctx, plugins.Message{Recipient: "zoe@example.com", Subject: "Invoice", Body: "Attached.", IdempotencyKey: "p1",
		Attachments: []plugins.Attachment{{FileName: doc.FileName, MIMEType: doc.MIMEType, Content: doc.Content}}})
	require.NoError(t, err)
	_, err = c.Send(ctx, plugins.Message{Recipient: "zoe@example.com", Subject: "Invoice", Body: "Attached.", IdempotencyKey: "p1"})
	require.NoError(t, err)
	got := s.messages()
	require.Len(t, got, 1)
	h, _, files := parts(t, got[0].Data)
	assert.Equal(t, "<"+rc.ProviderID+">", h.Get("Message-Id"))
	assert.Equal(t, doc.Content, files[doc.FileName])

	_, err = c.Send(ctx, plugins.Message{Recipient: "bad address", IdempotencyKey: "p2"})
	require.ErrorIs(t, err, plugins.ErrRejected)

	// Inbound: the host receives while the provider posts.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan plugins.InboundEvent, 1)
	go func() {
		_ = c.Receive(rctx, func(_ context.Context, ev plugins.InboundEvent) error {
			time.Sleep(100 * time.Millisecond) // storing takes a while
			events <- ev
			return nil
		})
	}()
	post := func(token string, body any) *http.Response {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, "http://"+inbound+"/", bytes.NewReader(b))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		var resp *http.Response
		for range 50 { // the endpoint starts with the plugin
			resp, err = http.DefaultClient.Do(req.Clone(ctx))
			if err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
			req.Body, _ = req.GetBody()
		}
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	in := email.InboundEmail{ID: "prov-1", From: "zoe@example.com", To: "sales@rapport.example", Subject: "Re: Invoice", Text: "Thanks!"}
	assert.Equal(t, http.StatusUnauthorized, post("wrong", in).StatusCode)
	assert.Equal(t, http.StatusBadRequest, post("tok", map[string]string{"sender": "x"}).StatusCode)
	resp := post("tok", in)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	select {
	case ev := <-events:
		assert.Equal(t, "email:prov-1", ev.ID)
		require.NotNil(t, ev.Message)
		assert.Equal(t, "Re: Invoice", ev.Message.Subject)
		assert.Equal(t, "Thanks!", ev.Message.Body)
	default:
		t.Fatal("the endpoint answered 200 before the host stored the email")
	}
}
