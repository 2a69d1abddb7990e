// Package plugintest helps test plugins and programs that use them: it
// builds a plugin's main package into a binary and runs a Manager for a
// test. Plugin authors use it as Rapport's own tests do.
package plugintest

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rapportcrm/rapport/plugins"
)

// Build compiles the main package pkg (an import path, or a directory
// such as "./rapport-email") with the go command into dir/name and
// returns the binary's path and its SHA-256, as plugins.Config takes it.
// It suits TestMain, where there is no *testing.T.
func Build(dir, name, pkg string) (path, sum string, err error) {
	path = filepath.Join(dir, name)
	if out, err := exec.Command("go", "build", "-o", path, pkg).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("plugintest: building %s: %v\n%s", pkg, err, out)
	}
	sum, err = plugins.FileSHA256(path)
	return path, sum, err
}

// Main is the body of a TestMain whose tests run one plugin: it builds
// pkg into a temporary directory as name, sets *path and *sum, runs the
// tests and removes the directory, and returns the exit code:
//
//	func TestMain(m *testing.M) {
//		os.Exit(plugintest.Main(m, "rapport-email", "./rapport-email", &pluginBin, &pluginSum))
//	}
func Main(m *testing.M, name, pkg string, path, sum *string) int {
	dir, err := os.MkdirTemp("", "rapport-plugintest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *path, *sum, err = Build(dir, name, pkg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// BuildT is Build into a temporary directory of the test, failing it on
// error.
func BuildT(t testing.TB, name, pkg string) (path, sum string) {
	t.Helper()
	path, sum, err := Build(t.TempDir(), name, pkg)
	if err != nil {
		t.Fatal(err)
	}
	return path, sum
}

// Manager returns a manager for configs that discards its logs (unless
// opts.Logger is set) and is closed when the test ends.
func Manager(t testing.TB, opts plugins.Options, configs ...plugins.Config) *plugins.Manager {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := plugins.NewManager(opts, configs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}
