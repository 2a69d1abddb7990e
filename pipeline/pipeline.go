package pipeline

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rapportcrm/rapport/internal/expression"
)

var keyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Validate reports every problem of the definition except guards that do
// not compile, which Compile reports.
func (d *Definition) Validate() error {
	var ps []Problem
	add := func(line int, stage, format string, args ...any) {
		ps = append(ps, Problem{File: d.file, Line: line, Stage: stage, Message: fmt.Sprintf(format, args...)})
	}
	if d.Name == "" {
		add(d.line, "", "name is required")
	}
	switch d.Kind {
	case KindLead, KindDeal, KindCase, KindAccount:
	default:
		add(d.line, "", "kind %q: want lead, deal, case or account", d.Kind)
	}
	if len(d.Stages) == 0 {
		add(d.line, "", "a pipeline needs at least one stage")
	}
	index := map[string]int{}
	open := 0
	for i, s := range d.Stages {
		if !keyRE.MatchString(s.Key) {
			add(s.line, s.Key, "key %q: want 1-64 of [a-z0-9_-]", s.Key)
		}
		if _, dup := index[s.Key]; dup {
			add(s.line, s.Key, "duplicate stage key")
		}
		index[s.Key] = i
		if s.Probability < 0 || s.Probability > 100 {
			add(s.line, s.Key, "probability %d is outside 0-100", s.Probability)
		}
		if err := s.Norm.Validate(); err != nil {
			add(s.line, s.Key, "%v", err)
		}
		switch s.SLA {
		case "", SLAResponse, SLAResolution:
		default:
			add(s.line, s.Key, "sla %q: want response or resolution", s.SLA)
		}
		switch s.Terminal {
		case Open:
			open++
		case Won, Lost, Converted, Disqualified, Closed:
		default:
			add(s.line, s.Key, "terminal %q: want won, lost, converted, disqualified or closed", s.Terminal)
		}
	}
	if len(d.Stages) > 0 && d.Stages[0].Terminal != Open {
		add(d.Stages[0].line, d.Stages[0].Key, "the first stage must be open")
	}
	if len(d.Stages) > 0 && open == 0 {
		add(d.line, "", "a pipeline needs an open stage")
	}
	known := func(line int, key string) bool {
		if key == "*" {
			return true
		}
		if _, ok := index[key]; !ok {
			add(line, "", "unknown stage %q", key)
			return false
		}
		return true
	}
	for _, t := range d.Transitions {
		known(t.line, t.From)
		known(t.line, t.To)
	}
	for _, g := range d.Guards {
		known(g.line, g.From)
		known(g.line, g.To)
		if g.When == "" {
			add(g.line, "", "guard has no condition (when)")
		}
		if g.Message == "" {
			add(g.line, "", "guard has no message")
		}
	}
	for _, h := range d.Holidays {
		if _, err := time.Parse(time.DateOnly, h); err != nil {
			add(d.line, "", "holiday %q: want YYYY-MM-DD", h)
		}
	}
	if len(ps) == 0 {
		// Reachability, only on an otherwise sound definition.
		edges := d.edges(index)
		seen := map[int]bool{0: true}
		queue := []int{0}
		for len(queue) > 0 {
			from := queue[0]
			queue = queue[1:]
			for _, to := range edges[from] {
				if !seen[to] {
					seen[to] = true
					queue = append(queue, to)
				}
			}
		}
		for i, s := range d.Stages {
			if !seen[i] {
				add(s.line, s.Key, "unreachable from the first stage %s", d.Stages[0].Key)
			}
		}
	}
	if len(ps) > 0 {
		return &DefinitionError{Pipeline: d.Name, Problems: ps}
	}
	return nil
}

// edges returns, per stage index, the indexes it may move to.
func (d *Definition) edges(index map[string]int) [][]int {
	n := len(d.Stages)
	allowed := make([][]bool, n)
	for i := range allowed {
		allowed[i] = make([]bool, n)
	}
	if len(d.Transitions) == 0 {
		for i, s := range d.Stages {
			if s.Terminal != Open {
				continue
			}
			for j := i + 1; j < n; j++ { // next open stage
				if d.Stages[j].Terminal == Open {
					allowed[i][j] = true
					break
				}
			}
			for j := i - 1; j >= 0; j-- { // back one open stage
				if d.Stages[j].Terminal == Open {
					allowed[i][j] = true
					break
				}
			}
			for j, t := range d.Stages { // any terminal
				if t.Terminal != Open {
					allowed[i][j] = true
				}
			}
		}
	} else {
		for _, t := range d.Transitions {
			for i := range n {
				if t.From != "*" && index[t.From] != i {
					continue
				}
				for j := range n {
					if (t.To == "*" || index[t.To] == j) && i != j {
						allowed[i][j] = true
					}
				}
			}
		}
	}
	if d.Reopen {
		for i, s := range d.Stages {
			if s.Terminal == Open {
				continue
			}
			for j, t := range d.Stages {
				if t.Terminal == Open {
					allowed[i][j] = true
				}
			}
		}
	}
	out := make([][]int, n)
	for i := range n {
		for j := range n {
			if allowed[i][j] {
				out[i] = append(out[i], j)
			}
		}
	}
	return out
}

// Actor is who moves a record.
type Actor struct {
	ID    string   `expr:"id"`
	Roles []string `expr:"roles"`
}

// Env is what guard expressions see.
type Env struct {
	// Record holds the record's fields by JSON name.
	Record map[string]any `expr:"record"`
	Actor  Actor          `expr:"actor"`
	From   string         `expr:"from"`
	To     string         `expr:"to"`
	Reason string         `expr:"reason"`
}

// Move is a requested change of stage.
type Move struct {
	From, To string
	Record   map[string]any
	Actor    Actor
	Reason   string // required when To is a lost stage
}

// Pipeline is a compiled definition. It is immutable and safe for
// concurrent use.
type Pipeline struct {
	def      Definition
	index    map[string]int
	next     [][]bool // next[i][j]: may move from stage i to j
	guards   []compiledGuard
	holidays map[string]bool
}

type compiledGuard struct {
	Guard
	prog *expression.Program
}

// CompileOptions configures Compile.
type CompileOptions struct {
	// Clock gives guards the current time (now(), daysSince, ...).
	// Defaults to time.Now.
	Clock func() time.Time
}

// Compile validates the definition, compiles its guards as boolean
// expressions, and returns the pipeline.
func (d *Definition) Compile(opts CompileOptions) (*Pipeline, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	p := &Pipeline{def: *d, index: map[string]int{}, holidays: map[string]bool{}}
	p.def.Stages = slices.Clone(d.Stages)
	for i, s := range d.Stages {
		p.index[s.Key] = i
		if p.def.Stages[i].Label == "" {
			p.def.Stages[i].Label = s.Key
		}
	}
	for _, h := range d.Holidays {
		p.holidays[h] = true
	}
	n := len(d.Stages)
	p.next = make([][]bool, n)
	for i, to := range d.edges(p.index) {
		p.next[i] = make([]bool, n)
		for _, j := range to {
			p.next[i][j] = true
		}
	}
	var ps []Problem
	for i, g := range d.Guards {
		prog, err := expression.Compile(fmt.Sprintf("%s guard %d", d.Name, i+1), g.When, Env{},
			expression.AsBool(), expression.WithLimits(expression.Limits{Clock: opts.Clock}))
		if err != nil {
			line := g.line
			var ee *expression.Error
			if errors.As(err, &ee) && line > 0 && ee.Line > 1 {
				line += ee.Line - 1
			}
			ps = append(ps, Problem{File: d.file, Line: line, Message: fmt.Sprintf("guard %q: %v", g.When, err)})
			continue
		}
		p.guards = append(p.guards, compiledGuard{Guard: g, prog: prog})
	}
	if len(ps) > 0 {
		return nil, &DefinitionError{Pipeline: d.Name, Problems: ps}
	}
	return p, nil
}

// Name returns the pipeline's name.
func (p *Pipeline) Name() string { return p.def.Name }

// Kind returns the kind of record the pipeline applies to.
func (p *Pipeline) Kind() Kind { return p.def.Kind }

// Stages returns the stages in order.
func (p *Pipeline) Stages() []Stage { return slices.Clone(p.def.Stages) }

// Stage returns the stage with the given key.
func (p *Pipeline) Stage(key string) (Stage, bool) {
	i, ok := p.index[key]
	if !ok {
		return Stage{}, false
	}
	return p.def.Stages[i], true
}

// First returns the stage new records start in.
func (p *Pipeline) First() Stage { return p.def.Stages[0] }

// Holidays returns the definition's holidays (YYYY-MM-DD).
func (p *Pipeline) Holidays() []string { return slices.Clone(p.def.Holidays) }

// LostReasons returns the configured lost reasons.
func (p *Pipeline) LostReasons() []string { return slices.Clone(p.def.LostReasons) }

// Check reports whether m may happen now. It returns nil, or an error
// matching ErrUnknownStage or ErrTransitionNotAllowed, or ErrReasonRequired,
// or a *MissingFieldsError, or the *GuardError of the first guard that
// refuses (or fails to run).
func (p *Pipeline) Check(m Move) error {
	from, ok := p.index[m.From]
	if !ok {
		return fmt.Errorf("%w: %q in pipeline %s", ErrUnknownStage, m.From, p.def.Name)
	}
	to, ok := p.index[m.To]
	if !ok {
		return fmt.Errorf("%w: %q in pipeline %s", ErrUnknownStage, m.To, p.def.Name)
	}
	if !p.next[from][to] {
		why := ""
		if p.def.Stages[from].Terminal != Open && !p.def.Reopen {
			why = fmt.Sprintf(" (%s is terminal and the pipeline does not allow reopening)", m.From)
		}
		return fmt.Errorf("%w: %s → %s in pipeline %s%s", ErrTransitionNotAllowed, m.From, m.To, p.def.Name, why)
	}
	return p.enter(m, to, false)
}

// CheckEnter reports whether a record may enter stage m.To from outside the
// pipeline (for example when it moves between pipelines, with m.From
// naming the old pipeline's stage): the stage's required fields, the lost
// reason, and the guards whose From is "*" apply; transitions do not.
func (p *Pipeline) CheckEnter(m Move) error {
	to, ok := p.index[m.To]
	if !ok {
		return fmt.Errorf("%w: %q in pipeline %s", ErrUnknownStage, m.To, p.def.Name)
	}
	return p.enter(m, to, true)
}

// enter checks the conditions of entering stage index to: lost reason,
// required fields and guards (only the "*" guards when fromOutside).
func (p *Pipeline) enter(m Move, to int, fromOutside bool) error {
	target := p.def.Stages[to]
	if target.Terminal == Lost {
		switch {
		case m.Reason == "":
			return fmt.Errorf("%w: moving to %s", ErrReasonRequired, m.To)
		case len(p.def.LostReasons) > 0 && !slices.Contains(p.def.LostReasons, m.Reason):
			return fmt.Errorf("%w: %q is not one of %v", ErrReasonRequired, m.Reason, p.def.LostReasons)
		}
	}
	var missing []string
	for _, f := range target.Required {
		if !isSet(field(m.Record, f)) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return &MissingFieldsError{Pipeline: p.def.Name, Stage: m.To, Fields: missing}
	}
	env := Env{Record: m.Record, Actor: m.Actor, From: m.From, To: m.To, Reason: m.Reason}
	if env.Record == nil {
		env.Record = map[string]any{}
	}
	for _, g := range p.guards {
		if (g.From != "*" && (fromOutside || g.From != m.From)) || (g.To != "*" && g.To != m.To) {
			continue
		}
		ok, err := g.prog.Bool(env)
		if err != nil || !ok {
			return &GuardError{Pipeline: p.def.Name, From: m.From, To: m.To, When: g.When, Message: g.Message, Err: err}
		}
	}
	return nil
}

// isSet reports whether a field value counts as set: present, not null,
// not an empty string, list or map.
// field returns the value at a dotted path ("custom.contract_ref") in a
// record, nil when a part of the path is missing.
func field(rec map[string]any, path string) any {
	var v any = rec
	for part := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

func isSet(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return v != ""
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	}
	return true
}

// Allowed returns the stages the record may move to now from m.From (m.To
// is ignored), in stage order. A lost stage is checked with m.Reason, or,
// when m.Reason is empty, as if a valid reason were given: the reason is
// chosen when the move is made.
func (p *Pipeline) Allowed(m Move) []Stage {
	from, ok := p.index[m.From]
	if !ok {
		return nil
	}
	var out []Stage
	for j, s := range p.def.Stages {
		if !p.next[from][j] {
			continue
		}
		mv := m
		mv.To = s.Key
		if s.Terminal == Lost && mv.Reason == "" && len(p.def.LostReasons) > 0 {
			mv.Reason = p.def.LostReasons[0]
		} else if s.Terminal == Lost && mv.Reason == "" {
			mv.Reason = "-"
		}
		if p.Check(mv) == nil {
			out = append(out, s)
		}
	}
	return out
}

// Deadline returns when a record that entered stage at entered is due to
// leave it by the stage's norm; ok is false if the stage has no norm or
// does not exist.
func (p *Pipeline) Deadline(stage string, entered time.Time) (time.Time, bool) {
	s, ok := p.Stage(stage)
	if !ok {
		return time.Time{}, false
	}
	return s.Norm.Deadline(entered, p.holidays)
}

// DeadlineWith is Deadline with another norm, for example a service
// contract's SLA, using the pipeline's holidays.
func (p *Pipeline) DeadlineWith(norm Norm, entered time.Time) (time.Time, bool) {
	return norm.Deadline(entered, p.holidays)
}

// Overdue reports by how much a record that entered stage at entered is
// past the stage's norm at now; overdue is false if it is not (or the stage
// has no norm).
func (p *Pipeline) Overdue(stage string, entered, now time.Time) (by time.Duration, overdue bool) {
	d, ok := p.Deadline(stage, entered)
	if !ok || !now.After(d) {
		return 0, false
	}
	return now.Sub(d), true
}
