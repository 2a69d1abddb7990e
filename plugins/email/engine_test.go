package email_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/plugintest"
	"github.com/rapportcrm/rapport/plugins/renderer"
)

// mixed renders in-process and connects through plugin processes.
type mixed struct {
	r plugins.Renderer
	m *plugins.Manager
}

func (x mixed) Renderer(string) (plugins.Renderer, error)        { return x.r, nil }
func (x mixed) Connector(name string) (plugins.Connector, error) { return x.m.Connector(name) }

// TestEngineSendsDocumentOnceThroughCrash sends an invoice from the engine
// through the rapport-email plugin to a real SMTP server, killing the
// plugin while the server holds the first attempt: the engine retries,
// the manager restarts the plugin, and the server receives the message
// exactly once, with the PDF attached.
func TestEngineSendsDocumentOnceThroughCrash(t *testing.T) {
	s := startSMTP(t, true)
	var once sync.Once
	held, release := make(chan struct{}), make(chan struct{})
	s.hold = func() error {
		first := false
		once.Do(func() { first = true })
		if !first {
			return nil
		}
		close(held)
		<-release
		return errors.New("the client went away") // never accepted
	}
	m := plugintest.Manager(t, plugins.Options{MinBackoff: 10 * time.Millisecond}, plugins.Config{
		Name: "mail", Kind: plugins.KindConnector, Path: pluginBin, SHA256: pluginSum,
		Env: []string{"SMTP_HOST=127.0.0.1", "SMTP_PORT=" + strconv.Itoa(s.port), "SMTP_USERNAME=mailer", "SMTP_PASSWORD=s3cret",
			"SMTP_FROM=Rapport Demo <sales@rapport.example>", "SMTP_CA_FILE=" + s.caFile, "EMAIL_STATE_DIR=" + t.TempDir()},
	})
	r, err := renderer.New(renderer.Options{})
	require.NoError(t, err)
	e, err := crm.Open(context.Background(), crm.Options{Path: filepath.Join(t.TempDir(), "crm.db"),
		Plugins: mixed{r: r, m: m}, Seller: plugins.Party{Name: "Rapport Demo GmbH"},
		RetryBackoff: 20 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	defer e.Close()
	ctx := context.Background()

	c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Zoë", LastName: "Łukasiewicz", Email: "zoe@example.com"})
	require.NoError(t, err)
	d, err := e.Deals().Create(ctx, crm.Deal{Title: "Robots", Amount: crm.Money{Amount: 1, Currency: "EUR"}, ContactID: c.ID,
		Lines: []crm.DealLine{{SKU: "ROB-7", Description: "Picking robot", Quantity: 2, UnitPrice: crm.Money{Amount: 1_250_000, Currency: "EUR"}, TaxBP: 1900}}})
	require.NoError(t, err)
	send, err := e.SendDocument(ctx, d.ID, "invoice", "mail")
	require.NoError(t, err)

	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the first attempt never reached the SMTP server")
	}
	st := m.Plugins()[0]
	require.True(t, st.Running)
	require.NoError(t, syscall.Kill(st.PID, syscall.SIGKILL))
	close(release)

	require.Eventually(t, func() bool {
		send, err = e.Sends().Get(ctx, send.ID)
		require.NoError(t, err)
		return send.Status != crm.SendPending
	}, 30*time.Second, 10*time.Millisecond)
	assert.Equal(t, crm.SendSent, send.Status)
	assert.GreaterOrEqual(t, send.Attempts, 1, "the crash counted as a failed attempt")
	assert.Empty(t, send.LastError, "cleared once sent")
	assert.GreaterOrEqual(t, m.Plugins()[0].Starts, 2, "the plugin was started again")

	time.Sleep(200 * time.Millisecond) // nothing else arrives
	got := s.messages()
	require.Len(t, got, 1, "exactly one message reached the server")
	h, _, files := parts(t, got[0].Data)
	assert.Equal(t, "<"+send.ProviderID+">", h.Get("Message-Id"))
	require.Contains(t, files, send.FileName)
	text := pdfText(t, files[send.FileName])
	assert.Contains(t, text, "Zoë Łukasiewicz")
	assert.Contains(t, text, "Picking robot")
	assert.Contains(t, text, "29,750.00 EUR")
}
