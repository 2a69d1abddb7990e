package pipeline

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

//go:embed builtin/*.yaml
var builtinFS embed.FS

// Builtins returns the names of the ready-made definitions: lead,
// b2b-deal, b2c-deal, b2g-deal, service-case and account-lifecycle.
func Builtins() []string {
	entries, _ := fs.ReadDir(builtinFS, "builtin")
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	slices.Sort(out)
	return out
}

// Builtin returns a copy of the named ready-made definition, for an ISV
// to use as it is or to adapt.
func Builtin(name string) (*Definition, error) {
	file := "builtin/" + name + ".yaml"
	data, err := builtinFS.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("pipeline: no ready-made definition %q; have %v", name, Builtins())
	}
	return Load(file, data)
}
