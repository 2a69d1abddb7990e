// Package loyaltytest runs loyalty fixture files: rule owners test
// programs and segments like code, without a database.
//
// # Fixture files
//
// A fixture file (YAML) names the program and/or the segments under test
// (paths relative to the fixture) and lists cases. Each case gives members
// and a sequence of steps, run in order on a fresh in-memory loyalty.Book:
//
//	program: ../programs/coffee.yaml
//	segments: ../segments.yaml
//	cases:
//	  - name: beans earn double
//	    members: [{id: ann, tier: green}]
//	    steps:
//	      - event: {member: ann, id: o1, kind: order, at: 2026-01-10T12:00:00Z,
//	                order: {currency: EUR, total: 4000, lines: [...]}}
//	      - expect: {points: {ann: 70}, pending: {ann: 70}}
//	      - activate: 2026-01-24T12:00:00Z   # the daily job: pending points, expiry
//	      - expect: {balance: {ann: 70}}
//	      - redeem: {member: ann, reward: free-coffee, at: 2026-01-25T00:00:00Z}
//	      - expect: {error: insufficient points}
//
// Steps: event (process an event for a member), earn (give a member
// points directly: a starting balance), redeem, activate (run the daily
// job at a time), review (review tiers at a time), profile (replace a
// member's profile, for segments), and expect. An expect checks the
// state after the steps before it: balance, pending, tier, unlocked
// rewards and segment membership per member; points and effects of the
// last event (an expected effect matches an actual one whose fields it
// gives are equal); and error, a text the previous step's error must
// contain. A step that fails without an expect error after it fails the
// case.
//
// Expressions' now() is the time of the step being run (before the first,
// the case's now).
//
// Go tests run fixtures in one line with Run; crmctl rules test runs them
// from the command line through RunFile.
package loyaltytest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rapportcrm/rapport/loyalty"
)

// File is a fixture file.
type File struct {
	// Program and Segments are paths, relative to the fixture file.
	Program  string `yaml:"program,omitempty"`
	Segments string `yaml:"segments,omitempty"`
	Cases    []Case `yaml:"cases"`
}

// Case is one scenario.
type Case struct {
	Name string `yaml:"name"`
	// Now is the clock before the first step (expressions' now()).
	Now     time.Time        `yaml:"now,omitempty"`
	Members []loyalty.Member `yaml:"members,omitempty"`
	Steps   []Step           `yaml:"steps"`
}

// Step is one thing a case does or checks; exactly one field is set.
type Step struct {
	Event    *EventStep      `yaml:"event,omitempty"`
	Earn     *EarnStep       `yaml:"earn,omitempty"`
	Redeem   *RedeemStep     `yaml:"redeem,omitempty"`
	Activate *time.Time      `yaml:"activate,omitempty"`
	Review   *time.Time      `yaml:"review,omitempty"`
	Profile  *loyalty.Member `yaml:"profile,omitempty"`
	Expect   *Expect         `yaml:"expect,omitempty"`
}

// EventStep processes an event for a member.
type EventStep struct {
	Member        string `yaml:"member"`
	loyalty.Event `yaml:",inline"`
}

// EarnStep credits points directly (a starting balance).
type EarnStep struct {
	Member    string    `yaml:"member"`
	Points    int64     `yaml:"points"`
	At        time.Time `yaml:"at"`
	ExpiresAt time.Time `yaml:"expires_at,omitempty"`
	Key       string    `yaml:"key,omitempty"`
}

// RedeemStep redeems a reward.
type RedeemStep struct {
	Member string    `yaml:"member"`
	Reward string    `yaml:"reward"`
	Amount int64     `yaml:"amount,omitempty"`
	At     time.Time `yaml:"at"`
	Key    string    `yaml:"key,omitempty"`
}

// Expect is what must hold after the steps before it.
type Expect struct {
	Error    string              `yaml:"error,omitempty"`
	Balance  map[string]int64    `yaml:"balance,omitempty"`
	Pending  map[string]int64    `yaml:"pending,omitempty"`
	Tier     map[string]string   `yaml:"tier,omitempty"`
	Points   map[string]int64    `yaml:"points,omitempty"`
	Effects  []loyalty.Effect    `yaml:"effects,omitempty"`
	Unlocked map[string][]string `yaml:"unlocked,omitempty"`
	// Segments maps a segment to the case's members in it.
	Segments map[string][]string `yaml:"segments,omitempty"`
}

// CaseResult is the outcome of one case.
type CaseResult struct {
	File     string
	Case     string
	Failures []string
	// Trace is the trace of the last event before the first failure.
	Trace []loyalty.Step
}

// Passed reports whether the case passed.
func (r CaseResult) Passed() bool { return len(r.Failures) == 0 }

// ErrFixture matches errors in a fixture file itself (it cannot be read,
// or it is malformed, or the program it names is invalid).
var ErrFixture = errors.New("loyaltytest: bad fixture")

// RunFile runs every case of the fixture file at path.
func RunFile(path string) ([]CaseResult, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFixture, err)
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFixture, path, err)
	}
	if f.Program == "" && f.Segments == "" {
		return nil, fmt.Errorf("%w: %s names neither a program nor segments", ErrFixture, path)
	}
	if len(f.Cases) == 0 {
		return nil, fmt.Errorf("%w: %s has no cases", ErrFixture, path)
	}
	var out []CaseResult
	for _, c := range f.Cases {
		r, err := runCase(path, f, c)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// runner is one case being run.
type runner struct {
	now      time.Time
	book     *loyalty.Book
	segments *loyalty.Segments
	members  []string
	last     loyalty.Result
	lastErr  error
	res      CaseResult
}

func runCase(path string, f File, c Case) (CaseResult, error) {
	r := &runner{res: CaseResult{File: path, Case: c.Name}, now: c.Now}
	clock := func() time.Time { return r.now }
	dir := filepath.Dir(path)
	if f.Program != "" {
		data, err := os.ReadFile(filepath.Join(dir, f.Program))
		if err != nil {
			return r.res, fmt.Errorf("%w: %s: %w", ErrFixture, path, err)
		}
		p, err := loyalty.Load(f.Program, data, clock)
		if err != nil {
			return r.res, fmt.Errorf("%w: %s: %w", ErrFixture, path, err)
		}
		r.book = loyalty.NewBook(p)
	} else {
		// Segments only: a book over an empty program keeps profiles.
		p := &loyalty.Program{Name: "none", Currency: "XXX"}
		if err := p.Compile(clock); err != nil {
			return r.res, err
		}
		r.book = loyalty.NewBook(p)
	}
	if f.Segments != "" {
		data, err := os.ReadFile(filepath.Join(dir, f.Segments))
		if err != nil {
			return r.res, fmt.Errorf("%w: %s: %w", ErrFixture, path, err)
		}
		if r.segments, err = loyalty.LoadSegments(f.Segments, data, clock); err != nil {
			return r.res, fmt.Errorf("%w: %s: %w", ErrFixture, path, err)
		}
	}
	for _, m := range c.Members {
		r.book.SetMember(m)
		r.members = append(r.members, m.ID)
	}
	for i, s := range c.Steps {
		if err := r.step(i+1, s); err != nil {
			return r.res, fmt.Errorf("%w: %s: case %q: step %d: %w", ErrFixture, path, c.Name, i+1, err)
		}
		if !r.res.Passed() {
			break
		}
	}
	if r.lastErr != nil && r.res.Passed() {
		r.fail("the last step failed: %v", r.lastErr)
	}
	return r.res, nil
}

func (r *runner) fail(format string, args ...any) {
	r.res.Failures = append(r.res.Failures, fmt.Sprintf(format, args...))
	if r.res.Trace == nil {
		r.res.Trace = r.last.Trace
	}
}

func (r *runner) step(n int, s Step) error {
	set := 0
	for _, p := range []bool{s.Event != nil, s.Earn != nil, s.Redeem != nil, s.Activate != nil, s.Review != nil, s.Profile != nil, s.Expect != nil} {
		if p {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("a step does one thing: event, earn, redeem, activate, review, profile or expect")
	}
	if s.Expect != nil {
		r.expect(n, *s.Expect)
		r.lastErr = nil
		return nil
	}
	if r.lastErr != nil {
		r.fail("step %d failed: %v", n-1, r.lastErr)
		return nil
	}
	switch {
	case s.Event != nil:
		r.now = s.Event.At
		r.last, r.lastErr = r.book.Process(s.Event.Member, s.Event.Event)
	case s.Earn != nil:
		e := s.Earn
		r.now = e.At
		key := e.Key
		if key == "" {
			key = fmt.Sprintf("fixture-earn-%d", n)
		}
		_, r.lastErr = r.book.Ledger.Apply(e.Member, loyalty.Op{Key: key, Kind: loyalty.KindEarn, Points: e.Points, At: e.At, ExpiresAt: e.ExpiresAt})
	case s.Redeem != nil:
		e := s.Redeem
		r.now = e.At
		key := e.Key
		if key == "" {
			key = fmt.Sprintf("fixture-redeem-%d", n)
		}
		_, r.lastErr = r.book.Redeem(key, e.Member, e.Reward, e.Amount, e.At)
	case s.Activate != nil:
		r.now = *s.Activate
		r.lastErr = r.book.Activate(*s.Activate)
	case s.Review != nil:
		r.now = *s.Review
		r.book.ReviewTiers(*s.Review)
	case s.Profile != nil:
		m := *s.Profile
		if m.ID == "" {
			return fmt.Errorf("profile: give the member's id")
		}
		r.book.SetMember(m)
		if !slices.Contains(r.members, m.ID) {
			r.members = append(r.members, m.ID)
		}
	}
	return nil
}

func (r *runner) expect(n int, x Expect) {
	at := fmt.Sprintf("step %d", n)
	switch {
	case x.Error != "" && r.lastErr == nil:
		r.fail("%s: want an error containing %q, the step before succeeded", at, x.Error)
	case x.Error != "" && !strings.Contains(r.lastErr.Error(), x.Error):
		r.fail("%s: want an error containing %q, got: %v", at, x.Error, r.lastErr)
	case x.Error == "" && r.lastErr != nil:
		r.fail("%s: the step before failed: %v", at, r.lastErr)
	}
	for _, m := range slices.Sorted(maps.Keys(x.Balance)) {
		if got := r.book.Ledger.Balance(m); got != x.Balance[m] {
			r.fail("%s: balance of %s: want %d, got %d", at, m, x.Balance[m], got)
		}
	}
	for _, m := range slices.Sorted(maps.Keys(x.Pending)) {
		a, _ := r.book.Ledger.Account(m)
		if a.Pending != x.Pending[m] {
			r.fail("%s: pending points of %s: want %d, got %d", at, m, x.Pending[m], a.Pending)
		}
	}
	for _, m := range slices.Sorted(maps.Keys(x.Tier)) {
		if got := r.book.Member(m).Tier; got != x.Tier[m] {
			r.fail("%s: tier of %s: want %q, got %q", at, m, x.Tier[m], got)
		}
	}
	for _, m := range slices.Sorted(maps.Keys(x.Points)) {
		if got := r.last.Points(m); got != x.Points[m] {
			r.fail("%s: points the last event gave %s: want %d, got %d", at, m, x.Points[m], got)
		}
	}
	for _, m := range slices.Sorted(maps.Keys(x.Unlocked)) {
		if got := r.book.Unlocked(m); !slices.Equal(got, x.Unlocked[m]) {
			r.fail("%s: rewards unlocked by %s: want %v, got %v", at, m, x.Unlocked[m], got)
		}
	}
	for _, want := range x.Effects {
		if !slices.ContainsFunc(r.last.Effects, func(got loyalty.Effect) bool { return matches(want, got) }) {
			r.fail("%s: no effect like %s among the last event's:\n%s", at, effectString(want), effectList(r.last.Effects))
		}
	}
	if len(x.Segments) > 0 {
		r.expectSegments(at, x.Segments)
	}
}

func (r *runner) expectSegments(at string, want map[string][]string) {
	if r.segments == nil {
		r.fail("%s: segments expected, but the fixture names no segments file", at)
		return
	}
	got := map[string][]string{}
	for _, id := range r.members {
		in, err := r.segments.Of(r.book.Member(id))
		if err != nil {
			r.fail("%s: segments of %s: %v", at, id, err)
			return
		}
		for _, g := range in {
			got[g] = append(got[g], id)
		}
	}
	for _, g := range slices.Sorted(maps.Keys(want)) {
		if !slices.Contains(r.segments.Names(), g) {
			r.fail("%s: no segment %q", at, g)
			continue
		}
		w, gg := slices.Sorted(slices.Values(want[g])), slices.Sorted(slices.Values(got[g]))
		if !slices.Equal(w, gg) {
			r.fail("%s: members of segment %s: want %v, got %v", at, g, w, gg)
		}
	}
}

// matches reports whether got has every non-zero field of want.
func matches(want, got loyalty.Effect) bool {
	wv, gv := reflect.ValueOf(want), reflect.ValueOf(got)
	for i := range wv.NumField() {
		f := wv.Field(i)
		if f.IsZero() {
			continue
		}
		if t, ok := f.Interface().(time.Time); ok {
			if !t.Equal(gv.Field(i).Interface().(time.Time)) {
				return false
			}
			continue
		}
		if !reflect.DeepEqual(f.Interface(), gv.Field(i).Interface()) {
			return false
		}
	}
	return true
}

func effectString(e loyalty.Effect) string {
	b, _ := yaml.Marshal(e)
	return "{" + strings.Join(strings.Split(strings.TrimSpace(string(b)), "\n"), ", ") + "}"
}

func effectList(es []loyalty.Effect) string {
	if len(es) == 0 {
		return "  (none)"
	}
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = "  " + effectString(e)
	}
	return strings.Join(lines, "\n")
}

// Report formats a failed case: its failures, then the trace of the
// last event.
func (r CaseResult) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s:\n", r.File, r.Case)
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "  %s\n", strings.ReplaceAll(f, "\n", "\n  "))
	}
	if len(r.Trace) > 0 {
		b.WriteString("  trace of the last event:\n")
		for _, s := range r.Trace {
			mark := "-"
			if s.Matched {
				mark = "+"
			}
			fmt.Fprintf(&b, "    %s %s: %s\n", mark, s.Source, s.Reason)
		}
	}
	return b.String()
}

// Files expands paths: a directory stands for the .yaml and .yml files
// in it (not below), sorted.
func Files(paths ...string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrFixture, err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrFixture, err)
		}
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				out = append(out, filepath.Join(p, e.Name()))
			}
		}
	}
	return out, nil
}

// Run runs the fixture files at paths (files or directories) as subtests
// of t, one per case, and fails each failing case with its report.
func Run(t *testing.T, paths ...string) {
	t.Helper()
	files, err := Files(paths...)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("loyaltytest: no fixture files in %v", paths)
	}
	for _, file := range files {
		results, err := RunFile(file)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		for _, r := range results {
			t.Run(filepath.Base(file)+"/"+r.Case, func(t *testing.T) {
				if !r.Passed() {
					t.Error("\n" + r.Report())
				}
			})
		}
	}
}
