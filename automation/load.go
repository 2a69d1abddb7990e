package automation

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rapportcrm/rapport/internal/yamlerr"
)

// Load reads a set from YAML or JSON ({automations: [...]}) and compiles
// it with clock (nil: time.Now). file names the source in errors. Unknown
// fields are errors; every problem is reported, with its line, in a
// *DefinitionError.
func Load(file string, data []byte, clock func() time.Time) (*Set, error) {
	var s Set
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &DefinitionError{Problems: []Problem{{File: file, Message: "the file is empty"}}}
		}
		return nil, &DefinitionError{Problems: yamlProblems(file, err)}
	}
	s.file = file
	assignLines(&s, data)
	if err := s.Compile(clock); err != nil {
		return nil, err
	}
	return &s, nil
}

// Marshal returns the set as YAML, which Load reads back.
func (s *Set) Marshal() ([]byte, error) {
	b, err := yaml.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("automation: %w", err)
	}
	return b, nil
}

// yamlProblems turns a yaml error ("yaml: line 3: ...") into problems.
func yamlProblems(file string, err error) []Problem {
	var out []Problem
	for _, p := range yamlerr.Problems(err) {
		out = append(out, Problem{File: file, Line: p.Line, Message: p.Message})
	}
	return out
}

// assignLines copies the line of each automation and action from the
// parsed document into s, for error messages.
func assignLines(s *Set, data []byte) {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "automations" {
			continue
		}
		items := root.Content[i+1].Content
		for j := range min(len(items), len(s.Automations)) {
			a := &s.Automations[j]
			a.line = items[j].Line
			for k := 0; k+1 < len(items[j].Content); k += 2 {
				if items[j].Content[k].Value != "do" {
					continue
				}
				acts := items[j].Content[k+1].Content
				for n := range min(len(acts), len(a.Do)) {
					a.Do[n].line = acts[n].Line
				}
			}
		}
	}
}

//go:embed builtin/*.yaml
var builtinFS embed.FS

// Builtins returns the names of the ready-made automations.
func Builtins() []string {
	entries, _ := fs.ReadDir(builtinFS, "builtin")
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	slices.Sort(out)
	return out
}

// Builtin returns the named ready-made set, compiled with clock, for an
// ISV to use as it is or to adapt (the YAML is in BuiltinSource).
func Builtin(name string, clock func() time.Time) (*Set, error) {
	data, err := BuiltinSource(name)
	if err != nil {
		return nil, err
	}
	return Load("builtin/"+name+".yaml", data, clock)
}

// BuiltinSource returns the YAML of the named ready-made set.
func BuiltinSource(name string) ([]byte, error) {
	data, err := builtinFS.ReadFile("builtin/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("automation: no ready-made set %q; have %v", name, Builtins())
	}
	return data, nil
}
