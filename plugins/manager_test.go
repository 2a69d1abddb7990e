package plugins_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
)

// self returns the test plugin's executable and its checksum.
func self(testing.TB) (string, string) { return testPlugin, testPluginSum }

func testConfig(t testing.TB, name, kind string, env ...string) plugins.Config {
	path, sum := self(t)
	return plugins.Config{Name: name, Kind: kind, Path: path, Args: []string{kind}, SHA256: sum, Env: env}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newManager(t testing.TB, opts plugins.Options, configs ...plugins.Config) *plugins.Manager {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	m, err := plugins.NewManager(opts, configs...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func sampleData() plugins.DocumentData {
	return plugins.DocumentData{
		Number: "INV-1", Currency: "EUR", Scale: 2,
		Customer: plugins.Party{Name: "Ada Lovelace"},
		Lines: []plugins.Line{
			{Description: "Analytical engine", Quantity: 2, UnitPrice: 10_000, TaxBP: 2000},
			{Description: "Punch cards", Quantity: 3, UnitPrice: 333, DiscountBP: 1000, TaxBP: 700},
		},
	}
}

func TestRendererPlugin(t *testing.T) {
	m := newManager(t, plugins.Options{}, testConfig(t, "echo", plugins.KindRenderer))
	r, err := m.Renderer("echo")
	require.NoError(t, err)
	ctx := context.Background()

	ts, err := r.Templates(ctx)
	require.NoError(t, err)
	assert.Equal(t, []plugins.Template{{Name: "echo", Title: "Echo", Formats: []plugins.Format{plugins.HTML}}}, ts)

	doc, err := r.Render(ctx, plugins.RenderRequest{Template: "echo", Format: plugins.HTML, Data: sampleData()})
	require.NoError(t, err)
	assert.Equal(t, "application/json", doc.MIMEType)
	assert.Equal(t, "echo.json", doc.FileName)
	var got struct {
		Data   plugins.DocumentData
		Totals plugins.Totals
	}
	require.NoError(t, json.Unmarshal(doc.Content, &got))
	assert.Equal(t, sampleData(), got.Data, "the data crosses the process boundary intact")
	assert.Equal(t, int64(20_000+899), got.Totals.Net)

	// A refusal is ErrRejected, names the plugin and the call, and does
	// not count as a crash.
	_, err = r.Render(ctx, plugins.RenderRequest{Template: "nope", Format: plugins.HTML, Data: sampleData()})
	require.ErrorIs(t, err, plugins.ErrRejected)
	var pe *plugins.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "echo", pe.Plugin)
	assert.Equal(t, "render", pe.Op)
	assert.Contains(t, err.Error(), `no template "nope"`)

	bad := sampleData()
	bad.Lines[0].Quantity = 0
	_, err = r.Render(ctx, plugins.RenderRequest{Template: "echo", Format: plugins.HTML, Data: bad})
	require.ErrorIs(t, err, plugins.ErrRejected)
	assert.Contains(t, err.Error(), "lines[0].quantity 0 is not positive")

	st := m.Plugins()
	require.Len(t, st, 1)
	assert.True(t, st[0].Running)
	assert.Equal(t, 1, st[0].Starts)
	assert.Zero(t, st[0].Crashes)

	// A renderer is not a connector.
	_, err = m.Connector("echo")
	require.ErrorIs(t, err, plugins.ErrUnknown)
}

func TestConnectorSendIsIdempotent(t *testing.T) {
	m := newManager(t, plugins.Options{}, testConfig(t, "fake", plugins.KindConnector))
	c, err := m.Connector("fake")
	require.NoError(t, err)
	ctx := context.Background()
	ch, err := c.Describe(ctx)
	require.NoError(t, err)
	assert.Equal(t, "fake", ch.Kind)

	msg := plugins.Message{Recipient: "ada@example.com", Subject: "Hi", Body: "Hello", IdempotencyKey: "k1",
		Attachments: []plugins.Attachment{{FileName: "a.txt", MIMEType: "text/plain", Content: []byte("x")}}}
	r1, err := c.Send(ctx, msg)
	require.NoError(t, err)
	r2, err := c.Send(ctx, msg)
	require.NoError(t, err)
	assert.Equal(t, r1, r2)
	assert.Equal(t, plugins.StatusSent, r1.Status)
	msg.IdempotencyKey = "k2"
	r3, err := c.Send(ctx, msg)
	require.NoError(t, err)
	assert.NotEqual(t, r1.ProviderID, r3.ProviderID)

	_, err = c.Send(ctx, plugins.Message{Recipient: "reject", IdempotencyKey: "k3"})
	require.ErrorIs(t, err, plugins.ErrRejected)
	assert.NotErrorIs(t, err, plugins.ErrCrashed)
}

func TestHostEnvironmentIsNotPassed(t *testing.T) {
	t.Setenv("RAPPORT_TEST_SECRET", "hunter2")
	m := newManager(t, plugins.Options{}, testConfig(t, "fake", plugins.KindConnector, "GIVEN=yes"))
	c, err := m.Connector("fake")
	require.NoError(t, err)
	rc, err := c.Send(context.Background(), plugins.Message{Recipient: "env:RAPPORT_TEST_SECRET", IdempotencyKey: "e1"})
	require.NoError(t, err)
	assert.Equal(t, "RAPPORT_TEST_SECRET=", rc.ProviderID)
	rc, err = c.Send(context.Background(), plugins.Message{Recipient: "env:GIVEN", IdempotencyKey: "e2"})
	require.NoError(t, err)
	assert.Equal(t, "GIVEN=yes", rc.ProviderID, "Config.Env reaches the plugin")
}

func TestHungPluginTimesOut(t *testing.T) {
	m := newManager(t, plugins.Options{CallTimeout: 300 * time.Millisecond}, testConfig(t, "fake", plugins.KindConnector))
	c, err := m.Connector("fake")
	require.NoError(t, err)
	ctx := context.Background()

	start := time.Now()
	_, err = c.Send(ctx, plugins.Message{Recipient: "hang", IdempotencyKey: "h1"})
	elapsed := time.Since(start)
	require.ErrorIs(t, err, plugins.ErrTimeout)
	var pe *plugins.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "fake", pe.Plugin)
	assert.Equal(t, "send", pe.Op)
	assert.GreaterOrEqual(t, elapsed, 300*time.Millisecond)
	assert.Less(t, elapsed, 2*time.Second, "the timeout error comes at the deadline")

	// The caller's earlier deadline wins over the manager's.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = c.Send(short, plugins.Message{Recipient: "hang", IdempotencyKey: "h2"})
	require.ErrorIs(t, err, plugins.ErrTimeout)
	assert.Less(t, time.Since(start), 1500*time.Millisecond)

	// The plugin still answers health checks, so it keeps serving.
	_, err = c.Send(ctx, plugins.Message{Recipient: "ada@example.com", IdempotencyKey: "ok"})
	require.NoError(t, err)
	assert.Zero(t, m.Plugins()[0].Crashes)

	// A caller that cancels gets its own error, not a plugin failure.
	cctx, ccancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, ccancel)
	_, err = c.Send(cctx, plugins.Message{Recipient: "slow", IdempotencyKey: "s"})
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, plugins.ErrTimeout)
}

func sendPID(t testing.TB, c plugins.Connector) int {
	t.Helper()
	rc, err := c.Send(context.Background(), plugins.Message{Recipient: "pid", IdempotencyKey: "pid"})
	require.NoError(t, err)
	pid, err := strconv.Atoi(rc.ProviderID)
	require.NoError(t, err)
	return pid
}

func TestCrashedPluginRestartsWithBackoff(t *testing.T) {
	m := newManager(t, plugins.Options{MinBackoff: 300 * time.Millisecond, MaxBackoff: time.Second},
		testConfig(t, "fake", plugins.KindConnector))
	c, err := m.Connector("fake")
	require.NoError(t, err)
	ctx := context.Background()
	pid1 := sendPID(t, c)

	_, err = c.Send(ctx, plugins.Message{Recipient: "crash", IdempotencyKey: "c1"})
	require.ErrorIs(t, err, plugins.ErrCrashed)
	var pe *plugins.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "fake", pe.Plugin)
	assert.NoError(t, processGone(pid1), "the crashed process is reaped")

	assert.Contains(t, err.Error(), "process exited during")

	// Within the backoff the manager does not start it again.
	_, err = c.Send(ctx, plugins.Message{Recipient: "pid", IdempotencyKey: "x"})
	require.ErrorIs(t, err, plugins.ErrCrashed)
	assert.Contains(t, err.Error(), "next start in")
	assert.Contains(t, err.Error(), "process exited", "the crash it waits after")

	// After it, the next call does.
	time.Sleep(350 * time.Millisecond)
	pid2 := sendPID(t, c)
	assert.NotEqual(t, pid1, pid2)
	st := m.Plugins()[0]
	assert.Equal(t, 2, st.Starts)
	assert.Equal(t, 1, st.Crashes)
	assert.Contains(t, st.LastError, "process exited")

	// Crashes in a row double the wait; a good call resets it.
	_, err = c.Send(ctx, plugins.Message{Recipient: "crash", IdempotencyKey: "c2"})
	require.ErrorIs(t, err, plugins.ErrCrashed)
	time.Sleep(350 * time.Millisecond)
	sendPID(t, c) // one good call after the first crash in a row
	_, err = c.Send(ctx, plugins.Message{Recipient: "crash", IdempotencyKey: "c3"})
	require.ErrorIs(t, err, plugins.ErrCrashed)
	time.Sleep(350 * time.Millisecond)
	_, err = c.Send(ctx, plugins.Message{Recipient: "crash", IdempotencyKey: "c4"})
	require.ErrorIs(t, err, plugins.ErrCrashed)
	time.Sleep(350 * time.Millisecond)
	_, err = c.Send(ctx, plugins.Message{Recipient: "pid", IdempotencyKey: "y"})
	require.ErrorIs(t, err, plugins.ErrCrashed, "two crashes in a row wait 600 ms")
	time.Sleep(300 * time.Millisecond)
	sendPID(t, c)

	// A panic's message reaches the host's error.
	time.Sleep(50 * time.Millisecond)
	_, err = c.Send(ctx, plugins.Message{Recipient: "panic", IdempotencyKey: "p"})
	require.ErrorIs(t, err, plugins.ErrCrashed)
	assert.Contains(t, err.Error(), "its stderr ended: panic: fake connector: boom")
}

// processGone waits up to 2 s for a process to be gone (not even a
// zombie).
func processGone(pid int) error {
	for range 200 {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("process " + strconv.Itoa(pid) + " still exists")
}

// children returns the processes whose parent is this one.
func children(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	me := strconv.Itoa(os.Getpid())
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == me {
			out = append(out, e.Name()+" "+fields[0])
		}
	}
	return out
}

func TestChecksumMismatchIsRefused(t *testing.T) {
	cfg := testConfig(t, "fake", plugins.KindConnector)
	cfg.SHA256 = strings.Repeat("ab", 32)
	m := newManager(t, plugins.Options{}, cfg)
	c, err := m.Connector("fake")
	require.NoError(t, err)
	_, err = c.Send(context.Background(), plugins.Message{Recipient: "pid", IdempotencyKey: "k"})
	require.ErrorIs(t, err, plugins.ErrChecksum)
	_, sum := self(t)
	assert.Contains(t, err.Error(), "has SHA-256 "+sum+", configured "+cfg.SHA256)
	assert.Empty(t, children(t), "nothing was started")
	st := m.Plugins()[0]
	assert.False(t, st.Running)
	assert.Contains(t, st.LastError, "checksum mismatch")
	_, err = c.Send(context.Background(), plugins.Message{Recipient: "pid", IdempotencyKey: "k"})
	require.ErrorIs(t, err, plugins.ErrChecksum, "still a checksum error while it waits to try again")
	assert.NotErrorIs(t, err, plugins.ErrCrashed)
}

func TestNewManagerRefusesBadConfigs(t *testing.T) {
	good := testConfig(t, "fake", plugins.KindConnector)
	cases := map[string]func(*plugins.Config){
		"no name":      func(c *plugins.Config) { c.Name = "" },
		"slash":        func(c *plugins.Config) { c.Name = "a/b" },
		"kind":         func(c *plugins.Config) { c.Kind = "printer" },
		"no path":      func(c *plugins.Config) { c.Path = "" },
		"no checksum":  func(c *plugins.Config) { c.SHA256 = "" },
		"bad checksum": func(c *plugins.Config) { c.SHA256 = "xyz" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			c := good
			mutate(&c)
			_, err := plugins.NewManager(plugins.Options{}, c)
			require.Error(t, err)
			assert.Contains(t, err.Error(), `plugin "`)
		})
	}
	_, err := plugins.NewManager(plugins.Options{}, good, good)
	require.ErrorContains(t, err, "configured twice")
}

func TestReceiveAcknowledgesAndRedelivers(t *testing.T) {
	m := newManager(t, plugins.Options{}, testConfig(t, "fake", plugins.KindConnector, "INBOUND_EVENTS=5"))
	c, err := m.Connector("fake")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The host fails to store the third event: Receive stops with the
	// host's error, and the next Receive starts again from that event.
	var got []string
	failed := false
	errStore := errors.New("store is down")
	err = c.Receive(ctx, func(_ context.Context, ev plugins.InboundEvent) error {
		if ev.ID == "ev-2" && !failed {
			failed = true
			return errStore
		}
		got = append(got, ev.ID+":"+ev.Form.Fields["n"])
		return nil
	})
	require.ErrorIs(t, err, errStore)
	assert.Equal(t, []string{"ev-0:0", "ev-1:1"}, got)

	done := make(chan error, 1)
	go func() {
		done <- c.Receive(ctx, func(_ context.Context, ev plugins.InboundEvent) error {
			got = append(got, ev.ID+":"+ev.Form.Fields["n"])
			if len(got) == 5 {
				cancel()
			}
			return nil
		})
	}()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Receive did not return after its context was canceled")
	}
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, []string{"ev-0:0", "ev-1:1", "ev-2:2", "ev-3:3", "ev-4:4"}, got)
}

func TestCheckAndClose(t *testing.T) {
	m := newManager(t, plugins.Options{},
		testConfig(t, "echo", plugins.KindRenderer), testConfig(t, "fake", plugins.KindConnector))
	ctx := context.Background()
	st, err := m.Check(ctx, "echo")
	require.NoError(t, err)
	assert.Equal(t, "templates: echo", st.Detail)
	assert.True(t, st.Running)
	assert.NotZero(t, st.PID)
	st, err = m.Check(ctx, "fake")
	require.NoError(t, err)
	assert.Equal(t, "channel fake: send, inbound", st.Detail)
	_, err = m.Check(ctx, "nope")
	require.ErrorIs(t, err, plugins.ErrUnknown)

	require.Len(t, children(t), 2)
	require.NoError(t, m.Close())
	assert.Empty(t, children(t), "Close stops every plugin process")
	r, err := m.Renderer("echo")
	require.NoError(t, err)
	_, err = r.Templates(ctx)
	require.ErrorIs(t, err, plugins.ErrClosed)
}

func TestDiscover(t *testing.T) {
	path, sum := self(t)
	dir := t.TempDir()
	link := func(name string) {
		require.NoError(t, os.Symlink(path, filepath.Join(dir, name)))
	}
	link("rapport-connector-fake")
	link("rapport-renderer-echo")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), []byte("not a plugin"), 0o644))

	_, err := plugins.Discover(dir)
	require.ErrorContains(t, err, "SHA256SUMS")

	sums := sum + "  rapport-connector-fake\n" + sum + " *rapport-renderer-echo\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, plugins.SumsFile), []byte(sums), 0o644))
	cfgs, err := plugins.Discover(dir)
	require.NoError(t, err)
	require.Len(t, cfgs, 2)
	assert.Equal(t, "fake", cfgs[0].Name)
	assert.Equal(t, plugins.KindConnector, cfgs[0].Kind)
	assert.Equal(t, "echo", cfgs[1].Name)
	assert.Equal(t, plugins.KindRenderer, cfgs[1].Kind)
	assert.Equal(t, sum, cfgs[1].SHA256)

	// The discovered plugins run (they are told their kind by argument
	// here only because the test plugin serves both).
	for i := range cfgs {
		cfgs[i].Args = []string{cfgs[i].Kind}
	}
	m := newManager(t, plugins.Options{}, cfgs...)
	_, err = m.Check(context.Background(), "fake")
	require.NoError(t, err)

	link("rapport-renderer-unlisted")
	_, err = plugins.Discover(dir)
	require.ErrorContains(t, err, "rapport-renderer-unlisted is not listed in")

	require.NoError(t, os.WriteFile(filepath.Join(dir, plugins.SumsFile), []byte("nonsense\n"), 0o644))
	_, err = plugins.Discover(dir)
	require.ErrorContains(t, err, `SHA256SUMS:1: want "<sha256> <file>"`)
}
