package plugins_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/rapportcrm/rapport/plugins/plugintest"
)

// testPlugin is the fake plugins' executable, built by TestMain without
// the race detector so that it starts fast.
var testPlugin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rapport-plugins-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testPlugin, _, err = plugintest.Build(dir, "testplugin", "github.com/rapportcrm/rapport/plugins/internal/fake/testplugin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
