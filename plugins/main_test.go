package plugins_test

import (
	"os"
	"testing"

	"github.com/rapportcrm/rapport/plugins/plugintest"
)

// testPlugin is the fake plugins' executable, built by TestMain without
// the race detector so that it starts fast.
var testPlugin, testPluginSum string

func TestMain(m *testing.M) {
	os.Exit(plugintest.Main(m, "testplugin", "github.com/rapportcrm/rapport/plugins/internal/fake/testplugin", &testPlugin, &testPluginSum))
}
