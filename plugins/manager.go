package plugins

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// Config is one plugin the Manager runs.
type Config struct {
	// Name identifies the plugin to the host, e.g. "mailer"; unique per
	// manager.
	Name string
	// Kind is KindRenderer or KindConnector.
	Kind string
	// Path is the plugin's executable.
	Path string
	// Args are passed to the executable.
	Args []string
	// Env is the plugin's whole environment, as "KEY=value" entries: the
	// host's own environment is not passed on (it may hold secrets such
	// as a database URL).
	Env []string
	// SHA256 is the hex SHA-256 of the executable; required. The manager
	// refuses to start a binary whose checksum differs (ErrChecksum).
	SHA256 string
	// Eager starts the plugin in Manager.Start rather than on first use.
	Eager bool
}

// Options tune a Manager. Zero values take the defaults.
type Options struct {
	// CallTimeout bounds every call except Connector.Receive (default
	// 30 s). A call's own context deadline applies when it is earlier.
	CallTimeout time.Duration
	// StartTimeout bounds a plugin's launch and handshake (default 10 s).
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a crashed plugin is
	// started again: it doubles with each crash in a row from MinBackoff
	// (default 100 ms) up to MaxBackoff (default 30 s), and a successful
	// call resets it.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives the manager's and the plugins' log lines (default
	// slog.Default()).
	Logger *slog.Logger
}

// Manager runs plugin processes and hands out Renderer and Connector
// values that call them. It verifies each binary's checksum, talks to it
// over mutual TLS (go-plugin's AutoMTLS), bounds every call by a timeout,
// and starts a crashed plugin again, with backoff, on the next call. Its
// methods are safe for concurrent use.
type Manager struct {
	opts   Options
	mu     sync.Mutex
	procs  map[string]*proc
	order  []string
	closed bool
}

// NewManager checks the configs and returns a manager for them; no plugin
// is started until Start or its first use.
func NewManager(opts Options, configs ...Config) (*Manager, error) {
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 30 * time.Second
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 10 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(30*time.Second, opts.MinBackoff)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Manager{opts: opts, procs: map[string]*proc{}}
	var errs []error
	for _, c := range configs {
		p, err := m.newProc(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := m.procs[c.Name]; dup {
			errs = append(errs, fmt.Errorf("plugins: plugin %q is configured twice", c.Name))
			continue
		}
		m.procs[c.Name] = p
		m.order = append(m.order, c.Name)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

func (m *Manager) newProc(c Config) (*proc, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("plugins: plugin %q: %s", c.Name, fmt.Sprintf(format, args...))
	}
	if c.Name == "" || strings.ContainsAny(c.Name, " \t\n/") {
		return nil, bad("a name is required, without spaces or slashes")
	}
	if c.Kind != KindRenderer && c.Kind != KindConnector {
		return nil, bad("kind %q is not %q or %q", c.Kind, KindRenderer, KindConnector)
	}
	if c.Path == "" {
		return nil, bad("a path is required")
	}
	sum, err := hex.DecodeString(c.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, bad("SHA256 %q is not a hex SHA-256 checksum", c.SHA256)
	}
	return &proc{m: m, cfg: c, sum: sum}, nil
}

// Start starts the eager plugins and returns the errors of those that
// could not start; the manager keeps trying them on use.
func (m *Manager) Start(ctx context.Context) error {
	var errs []error
	for _, p := range m.list() {
		if !p.cfg.Eager {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, _, err := p.get(); err != nil {
			errs = append(errs, &Error{Plugin: p.cfg.Name, Op: "start", Err: err})
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) list() []*proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*proc, 0, len(m.order))
	for _, n := range m.order {
		out = append(out, m.procs[n])
	}
	return out
}

func (m *Manager) lookup(name, kind string) (*proc, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.procs[name]
	if !ok || p.cfg.Kind != kind {
		return nil, fmt.Errorf("plugins: %w: no %s named %q", ErrUnknown, kind, name)
	}
	return p, nil
}

// Renderer returns the renderer plugin of that name; its calls start the
// plugin when it is not running. ErrUnknown if none is configured.
func (m *Manager) Renderer(name string) (Renderer, error) {
	p, err := m.lookup(name, KindRenderer)
	if err != nil {
		return nil, err
	}
	return rendererHandle{p}, nil
}

// Connector returns the connector plugin of that name, as Renderer does.
func (m *Manager) Connector(name string) (Connector, error) {
	p, err := m.lookup(name, KindConnector)
	if err != nil {
		return nil, err
	}
	return connectorHandle{p}, nil
}

// Status describes a configured plugin.
type Status struct {
	Name, Kind, Path string
	// Running says whether its process is up; PID is its process id.
	Running bool
	PID     int
	// Starts counts launches, Crashes the exits the manager did not ask
	// for (and launches that failed).
	Starts, Crashes int
	// LastError is the last start or crash error, if any.
	LastError string
	// Detail is what Check learnt: the templates of a renderer, the
	// channel and capabilities of a connector.
	Detail string
}

// Plugins returns the status of every configured plugin, in
// configuration order, without starting any.
func (m *Manager) Plugins() []Status {
	var out []Status
	for _, p := range m.list() {
		out = append(out, p.status())
	}
	return out
}

// Check starts the plugin if needed, pings it and asks what it serves
// (Templates or Describe), and returns its status.
func (m *Manager) Check(ctx context.Context, name string) (Status, error) {
	m.mu.Lock()
	p, ok := m.procs[name]
	m.mu.Unlock()
	if !ok {
		return Status{}, fmt.Errorf("plugins: %w: no plugin named %q", ErrUnknown, name)
	}
	var detail string
	err := p.call(ctx, "check", func(ctx context.Context, impl any) error {
		if err := p.ping(ctx); err != nil {
			return err
		}
		switch c := impl.(type) {
		case Renderer:
			ts, err := c.Templates(ctx)
			if err != nil {
				return err
			}
			var names []string
			for _, t := range ts {
				names = append(names, t.Name)
			}
			detail = "templates: " + strings.Join(names, ", ")
		case Connector:
			ch, err := c.Describe(ctx)
			if err != nil {
				return err
			}
			detail = fmt.Sprintf("channel %s: %s", ch.Kind, strings.Join(ch.Capabilities, ", "))
		}
		return nil
	})
	st := p.status()
	st.Detail = detail
	return st, err
}

// Close stops every plugin process and waits for them to exit. Calls made
// after Close fail with ErrClosed.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	for _, p := range m.list() {
		p.stop()
	}
	return nil
}

// proc is one configured plugin and its current process.
type proc struct {
	m   *Manager
	cfg Config
	sum []byte

	mu        sync.Mutex
	client    *plugin.Client
	rpc       *plugin.GRPCClient
	impl      any
	starts    int
	crashes   int
	inARow    int // crashes and failed starts since the last good call
	notBefore time.Time
	lastErr   error
	stopped   bool // by Manager.Close: start nothing more
	stderr    *tail
}

func (p *proc) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{Name: p.cfg.Name, Kind: p.cfg.Kind, Path: p.cfg.Path, Starts: p.starts, Crashes: p.crashes}
	if p.client != nil && !p.client.Exited() {
		st.Running = true
		if rc := p.client.ReattachConfig(); rc != nil {
			st.PID = rc.Pid
		}
	}
	if p.lastErr != nil {
		st.LastError = p.lastErr.Error()
	}
	return st
}

// get returns the running plugin, starting it if it is not running and
// its backoff has passed.
func (p *proc) get() (any, *plugin.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil, nil, ErrClosed
	}
	if p.client != nil {
		if !p.client.Exited() {
			return p.impl, p.client, nil
		}
		p.reapLocked(p.client, errors.New("process exited"))
	}
	if wait := time.Until(p.notBefore); wait > 0 {
		// The last crash or failed start, still: ErrCrashed, ErrChecksum.
		return nil, nil, fmt.Errorf("%w; next start in %v", p.lastErr, wait.Round(time.Millisecond))
	}
	if err := p.startLocked(); err != nil {
		p.crashes++
		p.lastErr = err
		p.backoffLocked()
		return nil, nil, err
	}
	return p.impl, p.client, nil
}

func (p *proc) startLocked() error {
	p.starts++
	cmd := exec.Command(p.cfg.Path, p.cfg.Args...)
	p.stderr = &tail{}
	cmd.Env = slices.Clone(p.cfg.Env)
	logger := hclog.New(&hclog.LoggerOptions{
		Name:   p.cfg.Name,
		Output: &slogWriter{log: p.m.opts.Logger.With("plugin", p.cfg.Name)},
		Level:  hclog.Info,
	})
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          plugin.PluginSet{KindRenderer: &rendererPlugin{}, KindConnector: &connectorPlugin{}},
		Cmd:              cmd,
		SecureConfig:     &plugin.SecureConfig{Checksum: p.sum, Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     p.m.opts.StartTimeout,
		Logger:           logger,
		Stderr:           p.stderr,
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			got, _ := FileSHA256(p.cfg.Path)
			return fmt.Errorf("%w: %s has SHA-256 %s, configured %s", ErrChecksum, p.cfg.Path, got, p.cfg.SHA256)
		}
		return fmt.Errorf("%w: starting %s: %v%s", ErrCrashed, p.cfg.Path, firstLine(err), p.stderr.say())
	}
	impl, err := rpc.Dispense(p.cfg.Kind)
	if err != nil {
		client.Kill()
		return fmt.Errorf("%w: %s does not serve a %s: %v", ErrCrashed, p.cfg.Path, p.cfg.Kind, err)
	}
	p.client, p.impl = client, impl
	p.rpc, _ = rpc.(*plugin.GRPCClient)
	p.m.opts.Logger.Debug("plugin started", "plugin", p.cfg.Name, "path", p.cfg.Path)
	return nil
}

// reapLocked forgets a process that exited (or is killed here), counting
// it as a crash.
func (p *proc) reapLocked(c *plugin.Client, cause error) {
	if p.client != c {
		return // already reaped by another caller
	}
	c.Kill()
	p.client, p.rpc, p.impl = nil, nil, nil
	p.crashes++
	p.lastErr = fmt.Errorf("%w: %v", ErrCrashed, cause)
	p.backoffLocked()
	p.m.opts.Logger.Warn("plugin crashed", "plugin", p.cfg.Name, "err", cause, "restart_after", time.Until(p.notBefore).Round(time.Millisecond))
}

func (p *proc) backoffLocked() {
	p.inARow++
	d := p.m.opts.MinBackoff
	for i := 1; i < p.inARow && d < p.m.opts.MaxBackoff; i++ {
		d *= 2
	}
	p.notBefore = time.Now().Add(min(d, p.m.opts.MaxBackoff))
}

func (p *proc) stop() {
	p.mu.Lock()
	c := p.client
	p.client, p.rpc, p.impl = nil, nil, nil
	p.stopped = true
	p.mu.Unlock()
	if c != nil {
		c.Kill()
	}
}

// ping checks the plugin answers go-plugin's health check.
func (p *proc) ping(ctx context.Context) error {
	p.mu.Lock()
	rpc := p.rpc
	p.mu.Unlock()
	if rpc == nil {
		return fmt.Errorf("%w: not running", errConnection)
	}
	_, err := grpc_health_v1.NewHealthClient(rpc.Conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	return fromStatus(err)
}

// call runs f against the running plugin under the call timeout and turns
// its error into an *Error.
func (p *proc) call(ctx context.Context, op string, f func(context.Context, any) error) error {
	return p.run(ctx, op, p.m.opts.CallTimeout, f)
}

func (p *proc) run(ctx context.Context, op string, timeout time.Duration, f func(context.Context, any) error) error {
	impl, client, err := p.get()
	if err != nil {
		return &Error{Plugin: p.cfg.Name, Op: op, Err: err}
	}
	callCtx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		callCtx, cancel = context.WithTimeout(ctx, timeout)
	}
	err = f(callCtx, impl)
	cancel()
	if err == nil {
		p.mu.Lock()
		p.inARow = 0
		p.mu.Unlock()
		return nil
	}
	return &Error{Plugin: p.cfg.Name, Op: op, Err: p.classify(ctx, callCtx, client, err)}
}

// classify tells a crash from a timeout from the plugin's own error.
func (p *proc) classify(ctx, callCtx context.Context, client *plugin.Client, err error) error {
	if errors.Is(err, ErrRejected) {
		return err
	}
	if errors.Is(err, errConnection) || client.Exited() {
		// The process is gone or going: wait briefly for it to be reaped.
		for i := 0; i < 100 && !client.Exited(); i++ {
			time.Sleep(5 * time.Millisecond)
		}
		p.mu.Lock()
		stderr := p.stderr
		p.mu.Unlock()
		cause := fmt.Errorf("process exited during %v%s", err, stderr.say())
		if !client.Exited() {
			cause = fmt.Errorf("connection lost (%v); process killed", err)
		}
		p.mu.Lock()
		p.reapLocked(client, cause)
		p.mu.Unlock()
		return fmt.Errorf("%w: %v", ErrCrashed, cause)
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ctx.Err() // the caller gave up
	}
	if errors.Is(err, ErrTimeout) || errors.Is(callCtx.Err(), context.DeadlineExceeded) {
		// A plugin that cannot answer a health check is hung as a whole:
		// kill it so the next call starts it afresh.
		pctx, cancel := context.WithTimeout(context.Background(), time.Second)
		perr := p.ping(pctx)
		cancel()
		if perr != nil {
			p.mu.Lock()
			p.reapLocked(client, fmt.Errorf("no answer to health check after a timeout: %v", perr))
			p.mu.Unlock()
		}
		d, _ := callCtx.Deadline()
		return fmt.Errorf("%w: no answer by the deadline (%v)", ErrTimeout, d.Format(time.RFC3339Nano))
	}
	return err
}

type rendererHandle struct{ p *proc }

func (h rendererHandle) Templates(ctx context.Context) ([]Template, error) {
	var ts []Template
	err := h.p.call(ctx, "templates", func(ctx context.Context, impl any) (err error) {
		ts, err = impl.(Renderer).Templates(ctx)
		return err
	})
	return ts, err
}

func (h rendererHandle) Render(ctx context.Context, req RenderRequest) (Document, error) {
	var doc Document
	err := h.p.call(ctx, "render", func(ctx context.Context, impl any) (err error) {
		doc, err = impl.(Renderer).Render(ctx, req)
		return err
	})
	return doc, err
}

type connectorHandle struct{ p *proc }

func (h connectorHandle) Describe(ctx context.Context) (Channel, error) {
	var ch Channel
	err := h.p.call(ctx, "describe", func(ctx context.Context, impl any) (err error) {
		ch, err = impl.(Connector).Describe(ctx)
		return err
	})
	return ch, err
}

func (h connectorHandle) Send(ctx context.Context, msg Message) (Receipt, error) {
	var rc Receipt
	err := h.p.call(ctx, "send", func(ctx context.Context, impl any) (err error) {
		rc, err = impl.(Connector).Send(ctx, msg)
		return err
	})
	return rc, err
}

// Receive has no call timeout: it runs until ctx is done or the plugin
// fails. A crash ends it with ErrCrashed; the caller calls it again.
func (h connectorHandle) Receive(ctx context.Context, deliver func(context.Context, InboundEvent) error) error {
	var deliverErr error
	err := h.p.run(ctx, "receive", 0, func(ctx context.Context, impl any) error {
		return impl.(Connector).Receive(ctx, func(ctx context.Context, ev InboundEvent) error {
			deliverErr = deliver(ctx, ev)
			return deliverErr
		})
	})
	if deliverErr != nil {
		return deliverErr // the host's own error, not the plugin's
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// FileSHA256 returns the hex SHA-256 of a file, the form Config.SHA256
// takes.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("plugins: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("plugins: reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Plugin executables Discover finds: rapport-renderer-NAME and
// rapport-connector-NAME.
const (
	RendererPrefix  = "rapport-renderer-"
	ConnectorPrefix = "rapport-connector-"
	// SumsFile lists the approved plugins of a directory with their
	// SHA-256, in the format sha256sum writes.
	SumsFile = "SHA256SUMS"
)

// Discover returns the configs of the plugins in dir: executables named
// rapport-renderer-NAME or rapport-connector-NAME, each of which must be
// listed in dir/SHA256SUMS (as `sha256sum rapport-* > SHA256SUMS` writes
// it). The sums file is the operator's approval of those binaries: a
// plugin missing from it is an error, and one whose binary changed since
// fails to start with ErrChecksum. Configs are lazy; set Eager on those
// to start with Manager.Start.
func Discover(dir string) ([]Config, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	sums, err := readSums(filepath.Join(dir, SumsFile))
	if err != nil {
		return nil, err
	}
	var out []Config
	var errs []error
	for _, e := range entries {
		name := e.Name()
		var kind, short string
		switch {
		case strings.HasPrefix(name, RendererPrefix):
			kind, short = KindRenderer, strings.TrimPrefix(name, RendererPrefix)
		case strings.HasPrefix(name, ConnectorPrefix):
			kind, short = KindConnector, strings.TrimPrefix(name, ConnectorPrefix)
		default:
			continue
		}
		if e.IsDir() || short == "" {
			continue
		}
		sum, ok := sums[name]
		if !ok {
			errs = append(errs, fmt.Errorf("plugins: %s is not listed in %s", filepath.Join(dir, name), filepath.Join(dir, SumsFile)))
			continue
		}
		path, err := filepath.Abs(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("plugins: %w", err)
		}
		out = append(out, Config{Name: short, Kind: kind, Path: path, SHA256: sum})
	}
	return out, errors.Join(errs...)
}

func readSums(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("plugins: the checksums of approved plugins: %w", err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sum, file, ok := strings.Cut(line, " ")
		file = strings.TrimPrefix(strings.TrimSpace(file), "*") // binary mode marker
		if b, err := hex.DecodeString(sum); !ok || err != nil || len(b) != sha256.Size || file == "" {
			return nil, fmt.Errorf("plugins: %s:%d: want \"<sha256> <file>\", got %q", path, n, line)
		}
		sums[filepath.Base(file)] = strings.ToLower(sum)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("plugins: reading %s: %w", path, err)
	}
	return sums, nil
}

// slogWriter forwards go-plugin's log lines (its own and the plugin's
// stderr) to slog.
type slogWriter struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (w *slogWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := slices.Index(w.buf, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(w.buf[:i])); line != "" {
			w.log.Info(line)
		}
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

// firstLine keeps the first line of go-plugin's long start errors.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return strings.TrimSpace(s)
}

// tail keeps what a plugin wrote to its stderr besides its log lines, for
// the error that reports its crash: the last few lines, or from a panic's
// (or fatal error's) first line on, the lines that say what happened.
type tail struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	frozen  bool // a panic was seen: keep its lines
}

const tailLines = 5

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, b...)
	for {
		i := slices.Index(t.partial, '\n')
		if i < 0 {
			break
		}
		t.add(strings.TrimSpace(string(t.partial[:i])))
		t.partial = t.partial[i+1:]
	}
	if len(t.partial) > 4096 {
		t.add(strings.TrimSpace(string(t.partial)))
		t.partial = t.partial[:0]
	}
	return len(b), nil
}

func (t *tail) add(line string) {
	if line == "" || strings.HasPrefix(line, `{"@level"`) {
		return // blank, or one of go-plugin's JSON log lines
	}
	if !t.frozen && (strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:")) {
		t.frozen = true
		t.lines = t.lines[:0]
	}
	if t.frozen {
		if len(t.lines) < tailLines {
			t.lines = append(t.lines, line)
		}
		return
	}
	if len(t.lines) == tailLines {
		t.lines = t.lines[1:]
	}
	t.lines = append(t.lines, line)
}

// say returns "; its stderr ended: ..." or "" when it wrote nothing.
func (t *tail) say() string {
	if t == nil {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if p := strings.TrimSpace(string(t.partial)); p != "" && !t.frozen {
		lines = append(slices.Clone(lines), p)
	}
	if len(lines) == 0 {
		return ""
	}
	return "; its stderr ended: " + strings.Join(lines, " | ")
}
