// Package yamlerr turns the errors of go.yaml.in/yaml/v3 into one
// message per problem with its line, for loaders that report every
// problem of a file with file:line.
package yamlerr

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one problem yaml reported: its line (0 if it gave none) and
// its message without the "yaml: line N:" prefix.
type Problem struct {
	Line    int
	Message string
}

// Problems splits a yaml decoding error ("yaml: line 3: ...", or a
// *yaml.TypeError listing several) into problems.
func Problems(err error) []Problem {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	out := make([]Problem, 0, len(msgs))
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		p := Problem{Message: m}
		var line int
		if n, _ := fmt.Sscanf(m, "line %d:", &line); n == 1 {
			p.Line = line
			p.Message = strings.TrimSpace(m[strings.Index(m, ":")+1:])
		}
		out = append(out, p)
	}
	return out
}
