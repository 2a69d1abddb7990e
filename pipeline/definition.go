package pipeline

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Kind is the kind of record a pipeline applies to.
type Kind string

// Record kinds.
const (
	KindLead    Kind = "lead"
	KindDeal    Kind = "deal"
	KindCase    Kind = "case"
	KindAccount Kind = "account"
)

// Terminal says whether a stage ends the pipeline, and how.
type Terminal string

// Terminal kinds. Open stages have the empty Terminal.
const (
	Open         Terminal = ""
	Won          Terminal = "won"
	Lost         Terminal = "lost"
	Converted    Terminal = "converted"
	Disqualified Terminal = "disqualified"
	Closed       Terminal = "closed"
)

// Definition describes a pipeline. Build one in Go or load it with Load,
// then Compile it.
type Definition struct {
	// Name identifies the pipeline within a tenant.
	Name string `json:"name" yaml:"name"`
	// Kind is the kind of record the pipeline applies to.
	Kind Kind `json:"kind" yaml:"kind"`
	// Stages in order; keys are unique.
	Stages []Stage `json:"stages" yaml:"stages"`
	// Transitions is the explicit graph of allowed moves. Empty means the
	// default: forward to the next open stage, to any terminal stage, and
	// back one stage.
	Transitions []Transition `json:"transitions,omitempty" yaml:"transitions,omitempty"`
	// Guards are conditions checked on every move they match.
	Guards []Guard `json:"guards,omitempty" yaml:"guards,omitempty"`
	// LostReasons lists the reasons a record may be lost for. A move to a
	// lost stage always needs a reason; when the list is not empty, it must
	// be one of them.
	LostReasons []string `json:"lost_reasons,omitempty" yaml:"lost_reasons,omitempty"`
	// Reopen allows moves from terminal stages back to open ones.
	Reopen bool `json:"reopen,omitempty" yaml:"reopen,omitempty"`
	// Holidays are dates (YYYY-MM-DD) that do not count as business days.
	Holidays []string `json:"holidays,omitempty" yaml:"holidays,omitempty"`

	file string // where the definition was loaded from, for errors
	line int    // line of the definition, for errors
}

// Stage is one step of a pipeline.
type Stage struct {
	// Key identifies the stage: lower-case letters, digits, '_' and '-'.
	Key string `json:"key" yaml:"key"`
	// Label is the name people see. Defaults to Key.
	Label string `json:"label,omitempty" yaml:"label,omitempty"`
	// Probability is the chance (0-100) that a record in this stage is
	// won, for weighted forecasts.
	Probability int `json:"probability" yaml:"probability"`
	// Norm is the longest a record should stay in the stage; zero means no
	// norm.
	Norm Norm `json:"norm,omitempty" yaml:"norm,omitempty"`
	// Required lists the record fields (JSON names) that must be set to
	// enter the stage; a dotted path reaches into an object, for example
	// "custom.contract_ref" for a custom field.
	Required []string `json:"required,omitempty" yaml:"required,omitempty"`
	// Terminal is empty for open stages.
	Terminal Terminal `json:"terminal,omitempty" yaml:"terminal,omitempty"`
	// SLA, when set, says that the record's service contract may replace
	// Norm: "response" (the contract's response time, counted from entering
	// the stage) or "resolution" (the contract's resolution time, counted
	// from the record's creation, so that moving back and forth does not
	// reset it). Records without a contract keep Norm.
	SLA SLATerm `json:"sla,omitempty" yaml:"sla,omitempty"`

	line int
}

// SLATerm names a term of a service contract that can set a stage's norm.
type SLATerm string

// SLA terms.
const (
	SLAResponse   SLATerm = "response"
	SLAResolution SLATerm = "resolution"
)

// Transition allows moves from From to To ("*" means any stage).
type Transition struct {
	From string `json:"from" yaml:"from"`
	To   string `json:"to" yaml:"to"`

	line int
}

// Guard is a condition on the moves it matches: From and To are stage
// keys or "*". When is a boolean expression; Message is shown when it is
// false.
type Guard struct {
	From    string `json:"from" yaml:"from"`
	To      string `json:"to" yaml:"to"`
	When    string `json:"when" yaml:"when"`
	Message string `json:"message" yaml:"message"`

	line int
}

// Norm is a time norm: a duration, or a number of business days
// (Monday to Friday, less the definition's holidays). It is written as
// "72h", "90m", "5d" (calendar days of 24 hours) or "3bd" (business days).
type Norm struct {
	Duration     time.Duration
	BusinessDays int
}

// MaxNormDays bounds norms: at most this many days or business days.
const MaxNormDays = 3650

// Validate reports whether the norm can be written and read back: not
// negative, not both a duration and business days, at most MaxNormDays.
func (n Norm) Validate() error {
	switch {
	case n.Duration < 0 || n.BusinessDays < 0:
		return fmt.Errorf("norm is negative")
	case n.Duration != 0 && n.BusinessDays != 0:
		return fmt.Errorf("norm has both a duration (%s) and business days (%d)", n.Duration, n.BusinessDays)
	case n.Duration > MaxNormDays*24*time.Hour || n.BusinessDays > MaxNormDays:
		return fmt.Errorf("norm is longer than %d days", MaxNormDays)
	}
	return nil
}

// IsZero reports whether the norm is unset.
func (n Norm) IsZero() bool { return n.Duration == 0 && n.BusinessDays == 0 }

func (n Norm) String() string {
	switch {
	case n.BusinessDays > 0:
		return strconv.Itoa(n.BusinessDays) + "bd"
	case n.Duration > 0 && n.Duration%(24*time.Hour) == 0:
		return strconv.Itoa(int(n.Duration/(24*time.Hour))) + "d"
	case n.Duration > 0:
		return n.Duration.String()
	}
	return ""
}

var normRE = regexp.MustCompile(`^(\d+)(bd|d)$`)

// ParseNorm parses "72h", "1h30m", "5d" or "3bd".
func ParseNorm(s string) (Norm, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Norm{}, nil
	}
	if m := normRE.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n > MaxNormDays {
			return Norm{}, fmt.Errorf("norm %q: too large", s)
		}
		if m[2] == "bd" {
			return Norm{BusinessDays: n}, nil
		}
		return Norm{Duration: time.Duration(n) * 24 * time.Hour}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return Norm{}, fmt.Errorf("norm %q: want a duration such as 72h, 5d (days) or 3bd (business days)", s)
	}
	if d > MaxNormDays*24*time.Hour {
		return Norm{}, fmt.Errorf("norm %q: too large", s)
	}
	return Norm{Duration: d}, nil
}

// MarshalText writes the norm in the form ParseNorm reads; an invalid
// norm (see Validate) is an error, so that nothing unreadable is stored.
func (n Norm) MarshalText() ([]byte, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	return []byte(n.String()), nil
}

// UnmarshalText parses the norm with ParseNorm.
func (n *Norm) UnmarshalText(b []byte) error {
	v, err := ParseNorm(string(b))
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// Deadline returns when a record that entered at entered must leave, by
// this norm, skipping weekends and holidays (YYYY-MM-DD in entered's
// location) for business days. ok is false for a zero norm.
func (n Norm) Deadline(entered time.Time, holidays map[string]bool) (deadline time.Time, ok bool) {
	switch {
	case n.Duration > 0:
		return entered.Add(n.Duration), true
	case n.BusinessDays > 0:
		t := entered
		for left := n.BusinessDays; left > 0; {
			t = t.AddDate(0, 0, 1)
			if wd := t.Weekday(); wd == time.Saturday || wd == time.Sunday || holidays[t.Format(time.DateOnly)] {
				continue
			}
			left--
		}
		return t, true
	}
	return time.Time{}, false
}
