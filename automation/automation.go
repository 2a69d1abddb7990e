package automation

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/rapportcrm/rapport/internal/expression"
)

// ErrInvalid is matched (errors.Is) by every *DefinitionError.
var ErrInvalid = errors.New("automation: invalid definition")

// Set is one tenant's automations.
type Set struct {
	Automations []Automation `yaml:"automations" json:"automations"`

	file     string
	compiled bool
}

// Automation is a trigger, an optional condition and ordered actions.
type Automation struct {
	// Name identifies the automation in its set: lower-case letters,
	// digits, '-' and '_'. Runs are keyed by it, so renaming an
	// automation makes it new.
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Disabled automations are kept but never run.
	Disabled bool    `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	On       Trigger `yaml:"on" json:"on"`
	// When is a boolean expression; the automation runs only when it is
	// true. It sees record (the record the trigger is about, as its
	// JSON: record.amount.amount, record.custom.vip), contact (the
	// record's contact, or the record itself for a contact), event
	// (event.type, event.from, event.to, event.changed, event.segment,
	// event.depth) and vars.
	When string `yaml:"when,omitempty" json:"when,omitempty"`
	// Vars are constants the condition (vars.discount) and the templates
	// ({{.Vars.discount}}) use, for example a personal offer.
	Vars map[string]string `yaml:"vars,omitempty" json:"vars,omitempty"`
	// Do lists the actions, run in order. A run's store actions are
	// written in one transaction: all of them or none.
	Do []Action `yaml:"do" json:"do"`

	line int
	cond *expression.Program
}

// Trigger says when an automation runs. Exactly one of Event, Schedule,
// Date and Inactivity is set.
type Trigger struct {
	// Event is a domain event type: "deal.stage_changed",
	// "contact.created", "segment.entered", "custom.welcomed", ...
	Event string `yaml:"event,omitempty" json:"event,omitempty"`
	// From and To, for a "*.stage_changed" event, restrict it to moves
	// from or to a stage.
	From string `yaml:"from,omitempty" json:"from,omitempty"`
	To   string `yaml:"to,omitempty" json:"to,omitempty"`
	// Segment, for segment.entered and segment.left, restricts it to one
	// segment.
	Segment string `yaml:"segment,omitempty" json:"segment,omitempty"`

	// Schedule is a cron line (minute hour day-of-month month
	// day-of-week, or @daily, @weekly, @monthly) in the tenant's time
	// zone.
	Schedule string `yaml:"schedule,omitempty" json:"schedule,omitempty"`
	// For makes a schedule run once for every record of an entity
	// (contact, account, lead, deal, contract, case) that the condition
	// holds for; empty runs it once, without a record.
	For string `yaml:"for,omitempty" json:"for,omitempty"`

	Date       *DateTrigger       `yaml:"date,omitempty" json:"date,omitempty"`
	Inactivity *InactivityTrigger `yaml:"inactivity,omitempty" json:"inactivity,omitempty"`

	sched cron.Schedule
}

// DateTrigger runs an automation Offset from a date field of each record:
// a contact's birthday (custom.birthday, yearly), a contract's end
// (ends_on), a deal's expected close (expected_close).
type DateTrigger struct {
	// Of is the entity: contact, account, lead, deal, contract or case.
	Of string `yaml:"of" json:"of"`
	// Field is the date's JSON path in the record: "ends_on",
	// "expected_close", "custom.birthday". Values are "YYYY-MM-DD" or
	// RFC 3339 times.
	Field string `yaml:"field" json:"field"`
	// Offset moves the day: "-30d" is 30 days before, "1d" the day after.
	Offset Duration `yaml:"offset,omitempty" json:"offset,omitempty"`
	// At is the time of day, "HH:MM" in the tenant's time zone. Defaults
	// to 09:00.
	At string `yaml:"at,omitempty" json:"at,omitempty"`
	// Yearly repeats on the date's anniversary (birthdays).
	Yearly bool `yaml:"yearly,omitempty" json:"yearly,omitempty"`

	hour, minute int
}

// InactivityTrigger runs an automation for a contact with no interaction
// (on any channel, either way) for After, counted from its last
// interaction or, with none, from its creation. It runs once per quiet
// spell: a new interaction starts the count again.
type InactivityTrigger struct {
	After Duration `yaml:"after" json:"after"`
}

// Action is one step of an automation. Exactly one field is set.
type Action struct {
	Activity *ActivityAction `yaml:"activity,omitempty" json:"activity,omitempty"`
	Update   *UpdateAction   `yaml:"update,omitempty" json:"update,omitempty"`
	Move     *MoveAction     `yaml:"move,omitempty" json:"move,omitempty"`
	Assign   *AssignAction   `yaml:"assign,omitempty" json:"assign,omitempty"`
	Tag      *TagAction      `yaml:"tag,omitempty" json:"tag,omitempty"`
	Points   *PointsAction   `yaml:"points,omitempty" json:"points,omitempty"`
	Message  *MessageAction  `yaml:"message,omitempty" json:"message,omitempty"`
	Document *DocumentAction `yaml:"document,omitempty" json:"document,omitempty"`
	Webhook  *WebhookAction  `yaml:"webhook,omitempty" json:"webhook,omitempty"`
	Emit     *EmitAction     `yaml:"emit,omitempty" json:"emit,omitempty"`

	line int
}

// Kind names the action's type: "activity", "update", ...
func (a *Action) Kind() string {
	switch {
	case a.Activity != nil:
		return "activity"
	case a.Update != nil:
		return "update"
	case a.Move != nil:
		return "move"
	case a.Assign != nil:
		return "assign"
	case a.Tag != nil:
		return "tag"
	case a.Points != nil:
		return "points"
	case a.Message != nil:
		return "message"
	case a.Document != nil:
		return "document"
	case a.Webhook != nil:
		return "webhook"
	case a.Emit != nil:
		return "emit"
	}
	return ""
}

// Line is the action's line in its file, 0 if unknown.
func (a *Action) Line() int { return a.line }

// ActivityAction creates an activity linked to the record.
type ActivityAction struct {
	// Type is task, call, meeting or email. Defaults to task.
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
	// Subject and Notes are templates.
	Subject string `yaml:"subject" json:"subject"`
	Notes   string `yaml:"notes,omitempty" json:"notes,omitempty"`
	// Due is how long after the run the activity is due ("24h", "2d").
	Due Duration `yaml:"due,omitempty" json:"due,omitempty"`
	// For says who gets it: "owner" (the record's owner, the default;
	// for a record without one, such as an order, its contact's),
	// "user:ID", "role:NAME" (the first active user with the role) or
	// "team:ID" (round-robin over the team's active members). "manager"
	// is the manager of the owner's team.
	For string `yaml:"for,omitempty" json:"for,omitempty"`
}

// UpdateAction sets fields of the record: top-level fields by JSON name
// ("title") and custom fields ("custom.vip"). The record is validated as
// an Update would; stage, pipeline and the engine's own fields cannot be
// set.
type UpdateAction struct {
	Set map[string]any `yaml:"set" json:"set"`
}

// MoveAction moves the record to a stage of its pipeline, checked like
// any move (transitions, guards, required fields).
type MoveAction struct {
	Stage  string `yaml:"stage" json:"stage"`
	Reason string `yaml:"reason,omitempty" json:"reason,omitempty"`
}

// AssignAction makes someone the record's owner; To has the forms of
// ActivityAction.For.
type AssignAction struct {
	To string `yaml:"to" json:"to"`
}

// TagAction adds and removes tags.
type TagAction struct {
	Add    []string `yaml:"add,omitempty" json:"add,omitempty"`
	Remove []string `yaml:"remove,omitempty" json:"remove,omitempty"`
}

// PointsAction awards (positive) or deducts (negative) loyalty points of
// Program for the record's contact. A deduction below zero fails.
type PointsAction struct {
	Program string `yaml:"program" json:"program"`
	Points  int64  `yaml:"points" json:"points"`
	Reason  string `yaml:"reason,omitempty" json:"reason,omitempty"`
}

// MessageAction sends a message to the record's contact through the
// connector Via (its email address or phone number, by the connector's
// channel). Subject and Body are templates.
type MessageAction struct {
	Via     string `yaml:"via" json:"via"`
	Subject string `yaml:"subject,omitempty" json:"subject,omitempty"`
	Body    string `yaml:"body" json:"body"`
}

// DocumentAction renders a document of the record's deal (Template:
// invoice, proposal, contract, ...) and sends it through Via.
type DocumentAction struct {
	Template string `yaml:"template" json:"template"`
	Via      string `yaml:"via" json:"via"`
	Format   string `yaml:"format,omitempty" json:"format,omitempty"`
}

// WebhookAction calls an HTTP endpoint with a JSON body (a template;
// default: the run, the event and the record as JSON). It is retried
// until it answers 2xx; every call carries an Idempotency-Key header
// that is the same on retries.
type WebhookAction struct {
	URL     string            `yaml:"url" json:"url"`
	Method  string            `yaml:"method,omitempty" json:"method,omitempty"`
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	Body    string            `yaml:"body,omitempty" json:"body,omitempty"`
}

// EmitAction appends the event "custom.<Event>" about the record, which
// other automations and subscriptions can take up.
type EmitAction struct {
	Event string `yaml:"event" json:"event"`
}

// Entities are the entities triggers can be about.
var Entities = []string{"contact", "account", "lead", "deal", "contract", "case"}

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	eventRE = regexp.MustCompile(`^[a-z][a-z0-9_]*\.(\*|[a-z][a-z0-9_]*)$`)
	fieldRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z0-9_]+)?$`)
	emitRE  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
)

// Problem is one thing wrong with a set.
type Problem struct {
	File       string
	Line       int
	Automation string
	Message    string
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
	if p.Automation != "" {
		fmt.Fprintf(&b, "automation %s: ", p.Automation)
	}
	b.WriteString(p.Message)
	return b.String()
}

// DefinitionError lists every problem of a set. It matches ErrInvalid.
type DefinitionError struct {
	Problems []Problem
}

func (e *DefinitionError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "automations are invalid:\n  " + strings.Join(lines, "\n  ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *DefinitionError) Is(target error) bool { return target == ErrInvalid }

// problems collects problems of a set.
type problems struct {
	file string
	list []Problem
}

func (p *problems) add(a *Automation, line int, format string, args ...any) {
	name := ""
	if a != nil {
		name = a.Name
		if line == 0 {
			line = a.line
		}
	}
	p.list = append(p.list, Problem{File: p.file, Line: line, Automation: name, Message: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &DefinitionError{Problems: p.list}
}

// File is the file the set was loaded from, if any.
func (s *Set) File() string { return s.file }

// Line is the automation's line in its file, 0 if unknown.
func (a *Automation) Line() int { return a.line }

// Get returns the named automation, or nil.
func (s *Set) Get(name string) *Automation {
	for i := range s.Automations {
		if s.Automations[i].Name == name {
			return &s.Automations[i]
		}
	}
	return nil
}

// Compile validates the set and compiles its conditions and schedules,
// with clock as now() of conditions (nil: time.Now). It reports every
// problem at once in a *DefinitionError. Templates are checked by the
// engine, which knows their data (crm.CheckAutomations).
func (s *Set) Compile(clock func() time.Time) error {
	s.compiled = false
	p := &problems{file: s.file}
	seen := map[string]bool{}
	for i := range s.Automations {
		a := &s.Automations[i]
		switch {
		case !nameRE.MatchString(a.Name):
			p.add(a, 0, "name %q: want lower-case letters, digits, '-' and '_', up to 63", a.Name)
		case seen[a.Name]:
			p.add(a, 0, "the name is used twice")
		}
		seen[a.Name] = true
		a.On.check(p, a)
		if a.When != "" {
			prog, err := expression.Compile(a.Name, a.When, conditionEnv(), expression.AsBool(),
				expression.WithLimits(expression.Limits{Clock: clock}))
			if err != nil {
				p.add(a, 0, "when: %v", err)
			}
			a.cond = prog
		}
		if len(a.Do) == 0 {
			p.add(a, 0, "no actions (do)")
		}
		for j := range a.Do {
			a.Do[j].check(p, a)
		}
	}
	if err := p.err(); err != nil {
		return err
	}
	s.compiled = true
	return nil
}

// Compiled reports whether Compile succeeded.
func (s *Set) Compiled() bool { return s.compiled }

func (t *Trigger) check(p *problems, a *Automation) {
	n := 0
	for _, set := range []bool{t.Event != "", t.Schedule != "", t.Date != nil, t.Inactivity != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		p.add(a, 0, "on: want exactly one of event, schedule, date and inactivity, have %d", n)
		return
	}
	if t.Event == "" && (t.From != "" || t.To != "" || t.Segment != "") {
		p.add(a, 0, "on: from, to and segment go with event")
	}
	if t.Schedule == "" && t.For != "" {
		p.add(a, 0, "on: for goes with schedule")
	}
	switch {
	case t.Event != "":
		if !eventRE.MatchString(t.Event) {
			p.add(a, 0, "on: event %q: want entity.what, such as deal.stage_changed", t.Event)
		}
		if (t.From != "" || t.To != "") && !strings.HasSuffix(t.Event, ".stage_changed") {
			p.add(a, 0, "on: from and to go with a *.stage_changed event, not %s", t.Event)
		}
		if t.Segment != "" && !strings.HasPrefix(t.Event, "segment.") {
			p.add(a, 0, "on: segment goes with segment.entered or segment.left, not %s", t.Event)
		}
	case t.Schedule != "":
		sched, err := cron.ParseStandard(t.Schedule)
		if err != nil {
			p.add(a, 0, "on: schedule %q: %v", t.Schedule, err)
		} else if strings.Contains(t.Schedule, "TZ=") {
			p.add(a, 0, "on: schedule %q: schedules run in the tenant's time zone; leave out TZ", t.Schedule)
		}
		t.sched = sched
		if t.For != "" && !slices.Contains(Entities, t.For) {
			p.add(a, 0, "on: for %q: want one of %s", t.For, strings.Join(Entities, ", "))
		}
	case t.Date != nil:
		d := t.Date
		if !slices.Contains(Entities, d.Of) {
			p.add(a, 0, "on: date: of %q: want one of %s", d.Of, strings.Join(Entities, ", "))
		}
		if !fieldRE.MatchString(d.Field) {
			p.add(a, 0, "on: date: field %q: want a JSON name such as ends_on or custom.birthday", d.Field)
		}
		if time.Duration(d.Offset)%(24*time.Hour) != 0 {
			p.add(a, 0, "on: date: offset %s: want whole days", d.Offset)
		}
		h, m, err := clockTime(d.At)
		if err != nil {
			p.add(a, 0, "on: date: at: %v", err)
		}
		d.hour, d.minute = h, m
	case t.Inactivity != nil:
		if t.Inactivity.After <= 0 {
			p.add(a, 0, "on: inactivity: after must be positive, such as 30d")
		}
	}
}

// clockTime parses "HH:MM" (empty: 09:00).
func clockTime(s string) (int, int, error) {
	if s == "" {
		return 9, 0, nil
	}
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, 0, fmt.Errorf("%q: want HH:MM", s)
	}
	return t.Hour(), t.Minute(), nil
}

func (x *Action) check(p *problems, a *Automation) {
	n := 0
	for _, set := range []bool{x.Activity != nil, x.Update != nil, x.Move != nil, x.Assign != nil, x.Tag != nil,
		x.Points != nil, x.Message != nil, x.Document != nil, x.Webhook != nil, x.Emit != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		p.add(a, x.line, "an action needs exactly one of activity, update, move, assign, tag, points, message, document, webhook, emit; have %d", n)
		return
	}
	fail := func(format string, args ...any) { p.add(a, x.line, x.Kind()+": "+format, args...) }
	switch {
	case x.Activity != nil:
		switch x.Activity.Type {
		case "", "task", "call", "meeting", "email":
		default:
			fail("type %q: want task, call, meeting or email", x.Activity.Type)
		}
		if strings.TrimSpace(x.Activity.Subject) == "" {
			fail("subject is required")
		}
		if x.Activity.Due < 0 {
			fail("due %s is negative", x.Activity.Due)
		}
		if err := checkWho(x.Activity.For, true); err != nil {
			fail("for: %v", err)
		}
	case x.Update != nil:
		if len(x.Update.Set) == 0 {
			fail("set names no field")
		}
		for k := range x.Update.Set {
			if !fieldRE.MatchString(k) {
				fail("field %q: want a JSON name such as title or custom.vip", k)
			} else if protectedFields[k] {
				fail("field %q cannot be set by an automation", k)
			}
		}
	case x.Move != nil:
		if x.Move.Stage == "" {
			fail("stage is required")
		}
	case x.Assign != nil:
		if x.Assign.To == "" || x.Assign.To == "owner" {
			fail("to: want user:ID, role:NAME, team:ID or manager")
		} else if err := checkWho(x.Assign.To, false); err != nil {
			fail("to: %v", err)
		}
	case x.Tag != nil:
		if len(x.Tag.Add)+len(x.Tag.Remove) == 0 {
			fail("add or remove at least one tag")
		}
		for _, t := range append(slices.Clone(x.Tag.Add), x.Tag.Remove...) {
			if strings.TrimSpace(t) == "" {
				fail("empty tag")
			}
		}
	case x.Points != nil:
		if x.Points.Program == "" {
			fail("program is required")
		}
		if x.Points.Points == 0 {
			fail("points must not be 0")
		}
	case x.Message != nil:
		if x.Message.Via == "" {
			fail("via (the connector) is required")
		}
		if strings.TrimSpace(x.Message.Body) == "" {
			fail("body is required")
		}
	case x.Document != nil:
		if x.Document.Template == "" || x.Document.Via == "" {
			fail("template and via are required")
		}
		switch x.Document.Format {
		case "", "pdf", "html":
		default:
			fail("format %q: want pdf or html", x.Document.Format)
		}
	case x.Webhook != nil:
		u, err := url.Parse(x.Webhook.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fail("url %q: want an http or https URL", x.Webhook.URL)
		}
		switch x.Webhook.Method {
		case "", "POST", "PUT", "PATCH":
		default:
			fail("method %q: want POST, PUT or PATCH", x.Webhook.Method)
		}
	case x.Emit != nil:
		if !emitRE.MatchString(x.Emit.Event) {
			fail("event %q: want lower-case letters, digits and '_' (it is emitted as custom.NAME)", x.Emit.Event)
		}
	}
}

// protectedFields are the fields an update action cannot set: the
// engine's own, and those other actions own (stage: move; owner:
// assign; tags: tag).
var protectedFields = map[string]bool{
	"id": true, "tenant": true, "version": true, "created_at": true, "updated_at": true, "archived_at": true,
	"pipeline": true, "stage": true, "stage_entered_at": true, "stage_due_at": true, "owner": true, "tags": true,
	"custom": true, "erased_at": true, "merged_into": true,
}

// checkWho checks the forms of ActivityAction.For and AssignAction.To.
func checkWho(s string, ownerOK bool) error {
	kind, arg, _ := strings.Cut(s, ":")
	switch {
	case s == "" || s == "owner":
		if ownerOK {
			return nil
		}
	case s == "manager":
		return nil
	case (kind == "user" || kind == "role" || kind == "team") && arg != "":
		return nil
	}
	return fmt.Errorf("%q: want owner, manager, user:ID, role:NAME or team:ID", s)
}

// Duration is a time.Duration written with the units of time.ParseDuration
// plus d (days) and w (weeks): "30m", "24h", "2d", "-30d".
type Duration time.Duration

// String formats d in days when whole, else as time.Duration does.
func (d Duration) String() string {
	x := time.Duration(d)
	if x != 0 && x%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(x/(24*time.Hour)), 10) + "d"
	}
	return x.String()
}

// MarshalText writes d as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalYAML parses the node as UnmarshalText does, reporting a bad
// value with its line (UnmarshalText errors reach Load without one).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a duration such as 24h or 3d", n.Line)}}
	}
	if err := d.UnmarshalText([]byte(n.Value)); err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	return nil
}

// UnmarshalText parses "2d", "-30d", "1w", "36h", "90m".
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	for unit, size := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, unit); ok {
			v, err := strconv.ParseInt(n, 10, 32)
			if err != nil {
				return fmt.Errorf("duration %q: want a whole number of days or weeks, such as 3d or -30d", s)
			}
			if limit := int64(math.MaxInt64 / size); v > limit || v < -limit {
				return fmt.Errorf("duration %q: too large", s)
			}
			*d = Duration(time.Duration(v) * size)
			return nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want a number and a unit (m, h, d, w), such as 24h or 3d", s)
	}
	*d = Duration(v)
	return nil
}
