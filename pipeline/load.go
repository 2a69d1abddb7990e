package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rapportcrm/rapport/internal/yamlerr"
)

// Problem is one thing wrong with a definition.
type Problem struct {
	File    string // file the definition came from, if loaded
	Line    int    // line in that file, 0 if unknown
	Stage   string // stage concerned, if any
	Message string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	} else if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Stage != "" {
		fmt.Fprintf(&b, "stage %s: ", p.Stage)
	}
	b.WriteString(p.Message)
	return b.String()
}

// DefinitionError lists every problem found in a definition. It matches
// ErrInvalidDefinition with errors.Is.
type DefinitionError struct {
	Pipeline string
	Problems []Problem
}

func (e *DefinitionError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return fmt.Sprintf("pipeline %q is invalid:\n  %s", e.Pipeline, strings.Join(lines, "\n  "))
}

// Is makes errors.Is(err, ErrInvalidDefinition) true.
func (e *DefinitionError) Is(target error) bool { return target == ErrInvalidDefinition }

// Load reads a definition from YAML or JSON (JSON is YAML too). file names
// the source in errors. Unknown fields are errors. Load validates the
// definition (see Definition.Validate); guards are compiled by Compile.
func Load(file string, data []byte) (*Definition, error) {
	var def Definition
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&def); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &DefinitionError{Pipeline: file, Problems: []Problem{{File: file, Message: "the file is empty"}}}
		}
		return nil, &DefinitionError{Pipeline: file, Problems: yamlProblems(file, err)}
	}
	def.file = file
	assignLines(&def, data)
	if err := def.Validate(); err != nil {
		return nil, err
	}
	return &def, nil
}

// yamlProblems turns a yaml error ("yaml: line 3: ...") into problems.
func yamlProblems(file string, err error) []Problem {
	var out []Problem
	for _, p := range yamlerr.Problems(err) {
		out = append(out, Problem{File: file, Line: p.Line, Message: p.Message})
	}
	return out
}

// assignLines copies the line of each stage, transition and guard from
// the parsed document into def, for error messages.
func assignLines(def *Definition, data []byte) {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return
	}
	root := doc.Content[0]
	def.line = root.Line
	if root.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		items := root.Content[i+1].Content
		switch root.Content[i].Value {
		case "stages":
			for j := range min(len(items), len(def.Stages)) {
				def.Stages[j].line = items[j].Line
			}
		case "transitions":
			for j := range min(len(items), len(def.Transitions)) {
				def.Transitions[j].line = items[j].Line
			}
		case "guards":
			for j := range min(len(items), len(def.Guards)) {
				def.Guards[j].line = items[j].Line
			}
		}
	}
}
