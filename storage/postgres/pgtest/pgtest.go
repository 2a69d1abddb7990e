// Package pgtest gives tests a PostgreSQL server: the one RAPPORT_PG_URL
// points at, or else a throwaway cluster that it creates with initdb and
// starts with pg_ctl in a temporary directory, on a free loopback port. As
// root it runs the server as the "postgres" user (or "nobody"), since
// PostgreSQL refuses to run as root.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) {
//		srv, err := pgtest.Start()
//		...
//		code := m.Run()
//		srv.Stop()
//		os.Exit(code)
//	}
//
// When no server can be had, tests skip with a message that says how to
// run them; with RAPPORT_PG_REQUIRE=1 (set by `make test`) they fail.
package pgtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Environment variables read by this package.
const (
	// EnvURL points the tests at an existing server (a connection URL of a
	// role that may create schemas).
	EnvURL = "RAPPORT_PG_URL"
	// EnvRequire, set to 1, turns a missing server into a test failure.
	EnvRequire = "RAPPORT_PG_REQUIRE"
)

// ErrNotInstalled means neither RAPPORT_PG_URL nor the PostgreSQL server
// binaries are available.
var ErrNotInstalled = errors.New("pgtest: PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin) and " + EnvURL + " is not set")

// HowTo says how to run the tests that need PostgreSQL.
const HowTo = "run `make test` (it installs PostgreSQL from Debian packages), install postgresql yourself, or set " + EnvURL + "=postgres://user@host/db"

// Server is a PostgreSQL server for tests.
type Server struct {
	// URL connects to the server as a superuser (or the role of
	// RAPPORT_PG_URL).
	URL string

	dir, data, bin, runAs string
}

// Start returns the server of RAPPORT_PG_URL, or starts a throwaway one.
func Start() (*Server, error) {
	if url := os.Getenv(EnvURL); url != "" {
		return &Server{URL: url}, nil
	}
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin}
	if os.Geteuid() == 0 {
		s.runAs = "nobody"
		if _, err := user.Lookup("postgres"); err == nil {
			s.runAs = "postgres"
		}
	}
	if s.dir, err = os.MkdirTemp("", "rapport-pg-"); err != nil {
		return nil, err
	}
	if err := s.init(); err != nil {
		_ = os.RemoveAll(s.dir)
		return nil, err
	}
	var startErr error
	for range 3 { // another process may take the free port first
		if startErr = s.start(); startErr == nil {
			return s, nil
		}
	}
	_ = os.RemoveAll(s.dir)
	return nil, startErr
}

// binDir finds the directory of initdb and pg_ctl.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNotInstalled
}

func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// command runs a server binary, as s.runAs when set.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	path := filepath.Join(s.bin, name)
	if s.runAs != "" {
		return exec.Command("runuser", append([]string{"-u", s.runAs, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (s *Server) init() error {
	s.data = filepath.Join(s.dir, "data")
	if s.runAs != "" {
		u, err := user.Lookup(s.runAs)
		if err != nil {
			return err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(s.dir, 0o755); err != nil {
			return err
		}
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return err
		}
	}
	out, err := s.command("initdb", "-D", s.data, "-U", "rapport", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	return nil
}

func (s *Server) start() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200", port, s.dir)
	out, err := s.command("pg_ctl", "-D", s.data, "-o", opts, "-l", filepath.Join(s.dir, "server.log"), "-w", "-t", "60", "start").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
		return fmt.Errorf("pgtest: pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	s.URL = fmt.Sprintf("postgres://rapport@127.0.0.1:%d/postgres?sslmode=disable", port)
	return nil
}

// Stop stops a server this package started and removes its files. It does
// nothing for the server of RAPPORT_PG_URL.
func (s *Server) Stop() error {
	if s == nil || s.dir == "" {
		return nil
	}
	out, err := s.command("pg_ctl", "-D", s.data, "-m", "fast", "-w", "stop").CombinedOutput()
	rmErr := os.RemoveAll(s.dir)
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %v\n%s", err, out)
	}
	return rmErr
}

// Need skips t (or fails it when RAPPORT_PG_REQUIRE=1) if startErr, the
// error of Start, says there is no server.
func Need(t testing.TB, startErr error) {
	t.Helper()
	if startErr == nil {
		return
	}
	if os.Getenv(EnvRequire) == "1" || !errors.Is(startErr, ErrNotInstalled) {
		t.Fatalf("PostgreSQL: %v", startErr)
	}
	t.Skipf("PostgreSQL: %v; to run this test, %s", startErr, HowTo)
}

// Schema returns a schema name unique to t, for a store of its own.
func Schema(t testing.TB) string {
	name := strings.ToLower(t.Name())
	var b strings.Builder
	for _, r := range name {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 40 {
		s = s[len(s)-40:]
	}
	return "t_" + s + "_" + strings.ToLower(rand.Text()[:8])
}
