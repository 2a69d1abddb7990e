package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rapportcrm/rapport/internal/expression"
	"github.com/rapportcrm/rapport/loyalty"
	"github.com/rapportcrm/rapport/loyalty/loyaltytest"
)

const rulesUsage = `usage:
  crmctl rules test PATH...       run loyalty fixture files (a directory: its .yaml files)
  crmctl rules check FILE...      compile and validate program and segment files
  crmctl rules eval -rule EXPR [-json FILE]
                                  evaluate one expression against a JSON document
                                  (standard input without -json); its fields are the variables`

// errFailed reports that checks failed after their output was printed.
var errFailed = errors.New("failed")

func rulesCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, rulesUsage)
		return errUsage
	}
	switch args[0] {
	case "test":
		return rulesTest(args[1:], stdout, stderr)
	case "check":
		return rulesCheck(args[1:], stdout, stderr)
	case "eval":
		return rulesEval(args[1:], stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "unknown rules command %q\n%s\n", args[0], rulesUsage)
	return errUsage
}

func rulesTest(paths []string, stdout, stderr io.Writer) error {
	if len(paths) == 0 {
		fmt.Fprintln(stderr, rulesUsage)
		return errUsage
	}
	files, err := loyaltytest.Files(paths...)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no fixture files in %v", paths)
	}
	var passed, failed int
	var broken error
	for _, f := range files {
		results, err := loyaltytest.RunFile(f)
		if err != nil {
			fmt.Fprintf(stdout, "ERROR %s\n  %v\n", f, err)
			broken = errors.Join(broken, err)
			continue
		}
		for _, r := range results {
			if r.Passed() {
				passed++
				fmt.Fprintf(stdout, "PASS %s: %s\n", f, r.Case)
				continue
			}
			failed++
			fmt.Fprintf(stdout, "FAIL %s", r.Report())
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 || broken != nil {
		return errFailed
	}
	return nil
}

func rulesCheck(files []string, stdout, stderr io.Writer) error {
	if len(files) == 0 {
		fmt.Fprintln(stderr, rulesUsage)
		return errUsage
	}
	bad := false
	for _, f := range files {
		summary, err := checkRuleFile(f)
		if err != nil {
			bad = true
			fmt.Fprintln(stdout, err) // names the file
			continue
		}
		fmt.Fprintf(stdout, "%s: ok (%s)\n", f, summary)
	}
	if bad {
		return errFailed
	}
	return nil
}

// checkRuleFile compiles a program or segments file (a file with a
// top-level segments key) and describes it.
func checkRuleFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var top map[string]any
	if err := yaml.Unmarshal(data, &top); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if _, ok := top["segments"]; ok && len(top) == 1 {
		s, err := loyalty.LoadSegments(path, data, nil)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d segments", len(s.Segments)), nil
	}
	p, err := loyalty.Load(path, data, nil)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("program %s: %d rules, %d tiers, %d rewards, %d discounts, %d punch cards",
		p.Name, len(p.Rules), len(p.Tiers), len(p.Rewards), len(p.Discounts)+len(p.Thresholds), len(p.PunchCards)), nil
}

func rulesEval(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rules eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rule := fs.String("rule", "", "the expression")
	doc := fs.String("json", "", "JSON document file (default: standard input)")
	now := fs.String("now", "", "the time now() and the date functions see (RFC 3339; default: the clock)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *rule == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, rulesUsage)
		return errUsage
	}
	var in io.Reader = stdin
	if *doc != "" {
		f, err := os.Open(*doc)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	env := map[string]any{}
	if len(bytes.TrimSpace(data)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("the document must be a JSON object: %w", err)
		}
		env = numbers(raw).(map[string]any)
	}
	clock := time.Now
	if *now != "" {
		t, err := time.Parse(time.RFC3339, *now)
		if err != nil {
			return fmt.Errorf("-now: %w", err)
		}
		clock = func() time.Time { return t }
	}
	p, err := expression.Compile("eval", *rule, env, expression.WithLimits(expression.Limits{Clock: clock}))
	if err != nil {
		return err
	}
	out, err := p.Run(env)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(out)
}

// numbers turns JSON numbers into int (when whole) or float64, and
// strings that are RFC 3339 times into time.Time, so that rules compare
// them as numbers and times.
func numbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
		return x
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return int(n)
		}
		f, _ := x.Float64()
		return f
	case string:
		if t, err := time.Parse(time.RFC3339, x); err == nil {
			return t
		}
	}
	return v
}
