package loyalty

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rapportcrm/rapport/internal/expression"
)

// Segment is a named group of members: those for whom Rule, a boolean
// expression over member (profile and metrics: member.total_spent,
// member.order_count, member.last_order_at, member.r/f/m, member.tags,
// member.city, member.custom...), holds, plus the hand-picked Members of
// a static list. A segment may be only a rule or only a list.
type Segment struct {
	Name    string   `yaml:"name" json:"name"`
	Rule    string   `yaml:"rule,omitempty" json:"rule,omitempty"`
	Members []string `yaml:"members,omitempty" json:"members,omitempty"`

	prog   *expression.Program
	static map[string]bool
}

// Segments is a compiled set of segments.
type Segments struct {
	Segments []Segment `yaml:"segments" json:"segments"`
	compiled bool
	// binds sets, for one member, the variables the rules read.
	binds []memberVar
}

// segmentEnv is what segment rules see: the member alone (a segment has
// no event). Rules are compiled flattened: see bind.
type segmentEnv struct {
	Member Member `expr:"member"`
}

// LoadSegments reads segments from YAML or JSON ({segments: [...]}) and
// compiles them; clock gives the date functions (nil: time.Now).
func LoadSegments(file string, data []byte, clock func() time.Time) (*Segments, error) {
	var s Segments
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("the file is empty")
		}
		return nil, &ProgramError{File: file, Problems: []error{err}}
	}
	if err := s.Compile(clock); err != nil {
		var pe *ProgramError
		if errors.As(err, &pe) {
			pe.File = file
		}
		return nil, err
	}
	return &s, nil
}

// Compile validates and compiles the segments.
func (s *Segments) Compile(clock func() time.Time) error {
	if clock == nil {
		clock = time.Now
	}
	var probs []error
	seen := map[string]bool{}
	for i := range s.Segments {
		g := &s.Segments[i]
		switch {
		case g.Name == "":
			probs = append(probs, fmt.Errorf("segment %d has no name", i+1))
		case seen[g.Name]:
			probs = append(probs, fmt.Errorf("segment %q is defined twice", g.Name))
		}
		seen[g.Name] = true
		if g.Rule == "" && len(g.Members) == 0 {
			probs = append(probs, fmt.Errorf("segment %q has neither a rule nor members", g.Name))
		}
		if g.Rule != "" {
			p, err := expression.Compile(g.Name, g.Rule, segmentEnv{}, expression.AsBool(), expression.Flatten(),
				expression.WithLimits(expression.Limits{Clock: clock, MaxCollectionLen: maxCollection}))
			if err != nil {
				probs = append(probs, err)
			}
			g.prog = p
		}
		g.static = make(map[string]bool, len(g.Members))
		for _, m := range g.Members {
			g.static[m] = true
		}
	}
	if len(probs) > 0 {
		return &ProgramError{Problems: probs}
	}
	var names []string
	for _, g := range s.Segments {
		if g.prog != nil {
			names = append(names, g.prog.Vars()...)
		}
	}
	slices.Sort(names)
	s.binds = nil
	for _, name := range slices.Compact(names) {
		get, ok := memberVars[name]
		if !ok {
			// flatTypes and memberVars disagree: a field of Member
			// without a getter (TestMemberVars guards this).
			return fmt.Errorf("%w: segment rules cannot read %s yet", ErrInvalid, name)
		}
		s.binds = append(s.binds, memberVar{name, get})
	}
	s.compiled = true
	return nil
}

// bind sets in vars what the rules read of m.
func (s *Segments) bind(vars *expression.Vars, m *Member) {
	vars.Reset()
	for _, b := range s.binds {
		vars.Set(b.name, b.get(m))
	}
}

type memberVar struct {
	name string
	get  func(*Member) any
}

// memberVars reads each field of a member as a flat variable, without
// reflection: segment rules run millions of times in Evaluate.
var memberVars = map[string]func(*Member) any{
	"member":               func(m *Member) any { return *m },
	"member.id":            func(m *Member) any { return m.ID },
	"member.tier":          func(m *Member) any { return m.Tier },
	"member.tags":          func(m *Member) any { return m.Tags },
	"member.city":          func(m *Member) any { return m.City },
	"member.industry":      func(m *Member) any { return m.Industry },
	"member.birthday":      func(m *Member) any { return m.Birthday },
	"member.joined_at":     func(m *Member) any { return m.JoinedAt },
	"member.balance":       func(m *Member) any { return m.Balance },
	"member.total_spent":   func(m *Member) any { return m.TotalSpent },
	"member.order_count":   func(m *Member) any { return m.OrderCount },
	"member.last_order_at": func(m *Member) any { return m.LastOrderAt },
	"member.r":             func(m *Member) any { return m.R },
	"member.f":             func(m *Member) any { return m.F },
	"member.m":             func(m *Member) any { return m.M },
	"member.custom":        func(m *Member) any { return m.Custom },
}

// Names returns the segments' names, in order.
func (s *Segments) Names() []string {
	out := make([]string, len(s.Segments))
	for i, g := range s.Segments {
		out[i] = g.Name
	}
	return out
}

// Of returns the names of the segments m belongs to, in the set's order.
func (s *Segments) Of(m Member) ([]string, error) {
	if !s.compiled {
		return nil, fmt.Errorf("%w: segments are not compiled", ErrInvalid)
	}
	vars := expression.NewVars()
	s.bind(vars, &m)
	var out []string
	for i := range s.Segments {
		in, err := s.Segments[i].hasOn(nil, vars, &m)
		if err != nil {
			return nil, err
		}
		if in {
			out = append(out, s.Segments[i].Name)
		}
	}
	return out, nil
}

// hasOn says whether member, whose variables vars holds, is in the
// segment, running the rule on machine (nil: a pooled one).
func (g *Segment) hasOn(machine *expression.Machine, vars *expression.Vars, member *Member) (bool, error) {
	if len(g.static) > 0 && g.static[member.ID] {
		return true, nil
	}
	if g.prog == nil {
		return false, nil
	}
	in, err := g.prog.BoolOn(machine, vars)
	if err != nil && errors.Is(err, expression.ErrEnv) {
		return false, fmt.Errorf("%w: member %s: %w", ErrInvalid, member.ID, err)
	}
	return in, err
}

// Change is a member entering or leaving a segment.
type Change struct {
	Segment string `json:"segment"`
	Member  string `json:"member"`
	Entered bool   `json:"entered"` // false: left
}

// Diff returns the segments a member entered and left when their profile
// changed from before to after (the incremental evaluation: call it when
// a contact or its orders change, and emit the changes as events).
func (s *Segments) Diff(before, after Member) ([]Change, error) {
	was, err := s.Of(before)
	if err != nil {
		return nil, err
	}
	is, err := s.Of(after)
	if err != nil {
		return nil, err
	}
	var out []Change
	for _, g := range is {
		if !slices.Contains(was, g) {
			out = append(out, Change{Segment: g, Member: after.ID, Entered: true})
		}
	}
	for _, g := range was {
		if !slices.Contains(is, g) {
			out = append(out, Change{Segment: g, Member: after.ID, Entered: false})
		}
	}
	return out, nil
}

// Membership is the result of evaluating segments over many members: for
// each segment (in the set's order), the indexes of the members in it.
type Membership struct {
	Segments []string
	Members  [][]int32
}

// Evaluate evaluates every segment over members using up to workers
// goroutines (0: one per CPU) and returns who is in which segment: the
// marketing lists. It stops at the first error or when ctx is done.
func (s *Segments) Evaluate(ctx context.Context, members []Member, workers int) (*Membership, error) {
	if !s.compiled {
		return nil, fmt.Errorf("%w: segments are not compiled", ErrInvalid)
	}
	if len(members) > math.MaxInt32 {
		return nil, fmt.Errorf("%w: %d members, at most %d per evaluation", ErrInvalid, len(members), math.MaxInt32)
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	// Each worker takes a contiguous share and keeps its own lists, so
	// nothing is shared while evaluating; shares are joined in order.
	share := (len(members) + workers - 1) / max(workers, 1)
	parts := make([][][]int32, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := min(w*share, len(members)), min((w+1)*share, len(members))
		wg.Go(func() {
			lists := make([][]int32, len(s.Segments))
			vars, machine := expression.NewVars(), &expression.Machine{}
			for i := lo; i < hi; i++ {
				if (i-lo)%4096 == 0 && ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				s.bind(vars, &members[i])
				for g := range s.Segments {
					in, err := s.Segments[g].hasOn(machine, vars, &members[i])
					if err != nil {
						errs[w] = fmt.Errorf("member %s: %w", members[i].ID, err)
						return
					}
					if in {
						lists[g] = append(lists[g], int32(i))
					}
				}
			}
			parts[w] = lists
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := &Membership{Segments: s.Names(), Members: make([][]int32, len(s.Segments))}
	for g := range s.Segments {
		for _, p := range parts {
			out.Members[g] = append(out.Members[g], p[g]...)
		}
	}
	return out, nil
}
