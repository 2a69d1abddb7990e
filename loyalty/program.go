package loyalty

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rapportcrm/rapport/internal/expression"
)

// Program is a loyalty program: its points, the rules that earn them, the
// tiers, the rewards they buy, and the discounts and punch cards it gives.
// Load one from YAML or JSON, or build it in Go and call Compile.
type Program struct {
	Name string `yaml:"name" json:"name"`
	// Currency is the ISO code of the money the program's amounts are in
	// (minor units everywhere). Orders in other currencies earn nothing.
	Currency string `yaml:"currency" json:"currency"`
	// Expiry is the default lifetime of earned points; rules may override
	// it. Zero: points never expire.
	Expiry Expiry `yaml:"expiry,omitempty" json:"expiry,omitzero"`
	// AllowNegative lets a refund take the balance below zero when the
	// points it earned were already spent. Otherwise what cannot be taken
	// back is reported as a shortfall.
	AllowNegative bool `yaml:"allow_negative,omitempty" json:"allow_negative,omitempty"`
	// MinRedeemBalance is the balance a member needs before redeeming.
	MinRedeemBalance int64 `yaml:"min_redeem_balance,omitempty" json:"min_redeem_balance,omitempty"`
	// Exclude lists order lines that never earn (delivery, gift cards).
	Exclude Exclusion `yaml:"exclude,omitempty" json:"exclude,omitzero"`

	Rules      []Rule      `yaml:"rules" json:"rules"`
	Tiers      []Tier      `yaml:"tiers,omitempty" json:"tiers,omitempty"`
	Downgrade  Downgrade   `yaml:"downgrade,omitempty" json:"downgrade,omitempty"`
	Rewards    []Reward    `yaml:"rewards,omitempty" json:"rewards,omitempty"`
	Thresholds []Threshold `yaml:"thresholds,omitempty" json:"thresholds,omitempty"`
	Discounts  []Discount  `yaml:"discounts,omitempty" json:"discounts,omitempty"`
	PunchCards []PunchCard `yaml:"punch_cards,omitempty" json:"punch_cards,omitempty"`

	clock    func() time.Time
	compiled bool
}

// Exclusion names order lines that earn no points.
type Exclusion struct {
	SKUs       []string `yaml:"skus,omitempty" json:"skus,omitempty"`
	Categories []string `yaml:"categories,omitempty" json:"categories,omitempty"`
}

func (x Exclusion) excludes(l Line) bool {
	return contains(x.SKUs, l.SKU) || contains(x.Categories, l.Category)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// Rule earns points when an event matches.
type Rule struct {
	Name string `yaml:"name" json:"name"`
	// On lists the event kinds the rule listens to (order, visit, signup,
	// referral, birthday, survey, or a custom kind).
	On []string `yaml:"on" json:"on"`
	// When is a boolean expression over event, order and member; empty
	// means always.
	When string `yaml:"when,omitempty" json:"when,omitempty"`
	// Points is an integer expression: the points earned. Over an order,
	// order.earning is the total of the lines that earn (exclusions left
	// out), in minor units.
	Points string `yaml:"points" json:"points"`
	// MinOrder is the smallest order total, in minor units, that earns.
	MinOrder int64 `yaml:"min_order,omitempty" json:"min_order,omitempty"`
	// Multipliers scale the points by tier or product category.
	Multipliers []Multiplier `yaml:"multipliers,omitempty" json:"multipliers,omitempty"`
	// Limit caps what one member earns from this rule per period.
	Limit *Limit `yaml:"limit,omitempty" json:"limit,omitempty"`
	// Budget caps the points the rule awards over the whole program.
	Budget int64 `yaml:"budget,omitempty" json:"budget,omitempty"`
	// Pending holds the points for a while (the return period) before
	// they can be spent, e.g. "14D".
	Pending Period `yaml:"pending,omitempty" json:"pending,omitempty"`
	// Expiry overrides the program's expiry for these points.
	Expiry *Expiry `yaml:"expiry,omitempty" json:"expiry,omitempty"`
	// Beneficiary is who gets the points: "member" (the default) or
	// "referrer" (the member named by event.referrer).
	Beneficiary string `yaml:"beneficiary,omitempty" json:"beneficiary,omitempty"`

	when, points *expression.Program
}

// Multiplier multiplies a rule's points by Factor percent (200 doubles)
// when the member is in Tier, or, per line, for lines of Category.
type Multiplier struct {
	Tier     string `yaml:"tier,omitempty" json:"tier,omitempty"`
	Category string `yaml:"category,omitempty" json:"category,omitempty"`
	Percent  int64  `yaml:"percent" json:"percent"`
}

// Limit caps a rule per member: at most Count awards and Points points per
// Period (calendar periods: "1M" is the calendar month, "1Y" the year;
// empty means ever).
type Limit struct {
	Count  int    `yaml:"count,omitempty" json:"count,omitempty"`
	Points int64  `yaml:"points,omitempty" json:"points,omitempty"`
	Period Period `yaml:"period,omitempty" json:"period,omitempty"`
}

// Tier is a level of the program. Tiers are listed from the lowest; a
// member qualifies for the highest whose thresholds are met over the
// rolling Window (points earned or money spent).
type Tier struct {
	Name      string `yaml:"name" json:"name"`
	MinPoints int64  `yaml:"min_points,omitempty" json:"min_points,omitempty"`
	MinSpend  int64  `yaml:"min_spend,omitempty" json:"min_spend,omitempty"`
	Window    Period `yaml:"window,omitempty" json:"window,omitempty"`
}

// Downgrade is the policy for members who no longer qualify for their
// tier.
type Downgrade string

// The downgrade policies.
const (
	// DowngradeNever keeps a tier once reached.
	DowngradeNever Downgrade = "never"
	// DowngradePeriodEnd moves the member to the tier they qualify for at
	// the end of the calendar year (ReviewTier at period end).
	DowngradePeriodEnd Downgrade = "period_end"
	// DowngradeOneDown moves the member at most one tier down per review.
	DowngradeOneDown Downgrade = "one_down"
	// DowngradeReevaluate moves the member to the qualifying tier on
	// every evaluation.
	DowngradeReevaluate Downgrade = "reevaluate"
)

// Reward is something a member buys with points.
type Reward struct {
	Name string `yaml:"name" json:"name"`
	// Kind is discount, product or voucher.
	Kind string `yaml:"kind" json:"kind"`
	// Cost is the price in points. With Partial, Cost buys one minor unit
	// of Value and the member may redeem any part.
	Cost int64 `yaml:"cost" json:"cost"`
	// Value is the discount in minor units, the product's SKU or the
	// voucher's code prefix.
	Value string `yaml:"value,omitempty" json:"value,omitempty"`
	// Partial lets a discount be bought in part: points pay for part of
	// an order at Cost points per minor unit.
	Partial bool `yaml:"partial,omitempty" json:"partial,omitempty"`
	// MinTier is the lowest tier that may redeem it.
	MinTier string `yaml:"min_tier,omitempty" json:"min_tier,omitempty"`
}

// Threshold gives Off (minor units) off an order whose total is at least
// Min. The highest threshold met applies.
type Threshold struct {
	Min int64 `yaml:"min" json:"min"`
	Off int64 `yaml:"off" json:"off"`
}

// Discount is a personal discount: Percent (an integer expression, 0 for
// none) off the order when When holds.
type Discount struct {
	Name    string `yaml:"name" json:"name"`
	When    string `yaml:"when,omitempty" json:"when,omitempty"`
	Percent string `yaml:"percent" json:"percent"`

	when, percent *expression.Program
}

// PunchCard counts qualifying events; every Punches-th unlocks Reward.
type PunchCard struct {
	Name    string   `yaml:"name" json:"name"`
	On      []string `yaml:"on" json:"on"`
	When    string   `yaml:"when,omitempty" json:"when,omitempty"`
	Punches int      `yaml:"punches" json:"punches"`
	Reward  string   `yaml:"reward" json:"reward"`

	when *expression.Program
}

// Period is a length of time in calendar units: "30D", "2W", "12M",
// "1Y". The zero value is no period.
type Period string

// add returns t moved forward by the period.
func (p Period) add(t time.Time) time.Time { return p.move(t, 1) }

// sub returns t moved back by the period.
func (p Period) sub(t time.Time) time.Time { return p.move(t, -1) }

func (p Period) move(t time.Time, sign int) time.Time {
	n, unit, _ := p.parse()
	n *= sign
	switch unit {
	case 'D':
		return t.AddDate(0, 0, n)
	case 'W':
		return t.AddDate(0, 0, 7*n)
	case 'M':
		return t.AddDate(0, n, 0)
	case 'Y':
		return t.AddDate(n, 0, 0)
	}
	return t
}

func (p Period) parse() (int, byte, error) {
	s := strings.ToUpper(strings.TrimSpace(string(p)))
	if s == "" {
		return 0, 0, nil
	}
	unit := s[len(s)-1]
	n, err := strconv.Atoi(s[:len(s)-1])
	if err != nil || !strings.ContainsRune("DWMY", rune(unit)) || n <= 0 || n > 1000 {
		return 0, 0, fmt.Errorf("period %q: want a positive number and D, W, M or Y, like 12M", string(p))
	}
	return n, unit, nil
}

// start returns the start of the calendar period of t that the period's
// unit names: the day, the ISO week (Monday), the month or the year.
func (p Period) start(t time.Time) time.Time {
	_, unit, _ := p.parse()
	y, m, d := t.Date()
	switch unit {
	case 'D':
		return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
	case 'W':
		wd := (int(t.Weekday()) + 6) % 7
		return time.Date(y, m, d-wd, 0, 0, 0, 0, t.Location())
	case 'M':
		return time.Date(y, m, 1, 0, 0, 0, 0, t.Location())
	case 'Y':
		return time.Date(y, 1, 1, 0, 0, 0, 0, t.Location())
	}
	return time.Time{}
}

// Expiry is how long earned points live: After a period, optionally
// rounded up to the end of that month ("end_of_month").
type Expiry struct {
	After Period `yaml:"after,omitempty" json:"after,omitempty"`
	Round string `yaml:"round,omitempty" json:"round,omitempty"`
}

// At returns when points earned at t expire; zero for never.
func (x Expiry) At(t time.Time) time.Time {
	if x.After == "" {
		return time.Time{}
	}
	e := x.After.add(t)
	if x.Round == "end_of_month" {
		y, m, _ := e.Date()
		e = time.Date(y, m+1, 1, 0, 0, 0, 0, e.Location())
	}
	return e
}

// ProgramError lists every problem found in a program. It matches
// ErrInvalid with errors.Is; problems from expressions wrap their
// *expression.Error with rule name, line and column.
type ProgramError struct {
	File     string
	Problems []error
}

func (e *ProgramError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	name := e.File
	if name == "" {
		name = "program"
	}
	return fmt.Sprintf("loyalty: %s is invalid:\n  %s", name, strings.Join(lines, "\n  "))
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ProgramError) Is(target error) bool { return target == ErrInvalid }

// Unwrap returns the problems.
func (e *ProgramError) Unwrap() []error { return e.Problems }

// Load reads a program from YAML or JSON and compiles it. file names the
// source in errors; unknown fields are errors. clock gives now() and the
// date functions of the expressions (nil: time.Now).
func Load(file string, data []byte, clock func() time.Time) (*Program, error) {
	var p Program
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("the file is empty")
		}
		return nil, &ProgramError{File: file, Problems: []error{err}}
	}
	if err := p.Compile(clock); err != nil {
		var pe *ProgramError
		if errors.As(err, &pe) {
			pe.File = file
		}
		return nil, err
	}
	return &p, nil
}

// Compile validates the program and compiles its expressions. It must be
// called (Load does) before the program evaluates anything.
func (p *Program) Compile(clock func() time.Time) error {
	if clock == nil {
		clock = time.Now
	}
	p.clock = clock
	var probs []error
	bad := func(format string, args ...any) { probs = append(probs, fmt.Errorf(format, args...)) }
	compile := func(name, src string, opt expression.Option) *expression.Program {
		prog, err := expression.Compile(name, src, Env{}, opt, expression.WithLimits(expression.Limits{Clock: clock}))
		if err != nil {
			probs = append(probs, err)
		}
		return prog
	}
	if p.Name == "" {
		bad("the program has no name")
	}
	if len(p.Currency) != 3 || strings.ToUpper(p.Currency) != p.Currency {
		bad("currency %q is not an ISO 4217 code like EUR", p.Currency)
	}
	checkExpiry := func(what string, x Expiry) {
		if _, _, err := x.After.parse(); err != nil {
			bad("%s: expiry: %v", what, err)
		}
		if x.Round != "" && x.Round != "end_of_month" {
			bad("%s: expiry rounding %q: the only rounding is end_of_month", what, x.Round)
		}
	}
	checkExpiry("program", p.Expiry)
	names := map[string]bool{}
	unique := func(kind, name string) {
		if name == "" {
			bad("a %s has no name", kind)
			return
		}
		if names[kind+"\x00"+name] {
			bad("%s %q is defined twice", kind, name)
		}
		names[kind+"\x00"+name] = true
	}
	tiers := map[string]bool{}
	for i, t := range p.Tiers {
		unique("tier", t.Name)
		tiers[t.Name] = true
		if _, _, err := t.Window.parse(); err != nil {
			bad("tier %q: window: %v", t.Name, err)
		}
		if i > 0 && (t.MinPoints < p.Tiers[i-1].MinPoints || t.MinSpend < p.Tiers[i-1].MinSpend) {
			bad("tier %q: tiers are listed from the lowest, but its thresholds are below %q's", t.Name, p.Tiers[i-1].Name)
		}
	}
	switch p.Downgrade {
	case "", DowngradeNever, DowngradePeriodEnd, DowngradeOneDown, DowngradeReevaluate:
	default:
		bad("downgrade %q: want never, period_end, one_down or reevaluate", p.Downgrade)
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		unique("rule", r.Name)
		if len(r.On) == 0 {
			bad("rule %q: on: name the events it listens to", r.Name)
		}
		if r.When != "" {
			r.when = compile(r.Name+".when", r.When, expression.AsBool())
		}
		if r.Points == "" {
			bad("rule %q: points: an expression is required", r.Name)
		} else {
			r.points = compile(r.Name+".points", r.Points, expression.AsInt64())
		}
		for _, m := range r.Multipliers {
			if (m.Tier == "") == (m.Category == "") || m.Percent < 0 {
				bad("rule %q: a multiplier names a tier or a category, and a percent of 0 or more", r.Name)
			}
			if m.Tier != "" && !tiers[m.Tier] {
				bad("rule %q: multiplier for unknown tier %q", r.Name, m.Tier)
			}
		}
		if r.Limit != nil {
			if _, _, err := r.Limit.Period.parse(); err != nil {
				bad("rule %q: limit: %v", r.Name, err)
			}
			if r.Limit.Count < 0 || r.Limit.Points < 0 || (r.Limit.Count == 0 && r.Limit.Points == 0) {
				bad("rule %q: limit: give a positive count or points", r.Name)
			}
		}
		if _, _, err := r.Pending.parse(); err != nil {
			bad("rule %q: pending: %v", r.Name, err)
		}
		if r.Expiry != nil {
			checkExpiry("rule "+strconv.Quote(r.Name), *r.Expiry)
		}
		if r.MinOrder < 0 || r.Budget < 0 {
			bad("rule %q: min_order and budget cannot be negative", r.Name)
		}
		switch r.Beneficiary {
		case "", "member", "referrer":
		default:
			bad("rule %q: beneficiary %q: want member or referrer", r.Name, r.Beneficiary)
		}
	}
	for _, r := range p.Rewards {
		unique("reward", r.Name)
		switch r.Kind {
		case "discount", "product", "voucher":
		default:
			bad("reward %q: kind %q: want discount, product or voucher", r.Name, r.Kind)
		}
		if r.Cost <= 0 {
			bad("reward %q: cost must be positive", r.Name)
		}
		if r.Partial && r.Kind != "discount" {
			bad("reward %q: only a discount can be redeemed in part", r.Name)
		}
		if r.Kind == "discount" && !r.Partial {
			if v, err := strconv.ParseInt(r.Value, 10, 64); err != nil || v <= 0 {
				bad("reward %q: a discount's value is its amount in minor units", r.Name)
			}
		}
		if r.MinTier != "" && !tiers[r.MinTier] {
			bad("reward %q: unknown tier %q", r.Name, r.MinTier)
		}
	}
	for i, t := range p.Thresholds {
		if t.Off <= 0 || t.Min < 0 || (i > 0 && t.Min <= p.Thresholds[i-1].Min) {
			bad("threshold %d: thresholds rise by min and give a positive amount off", i+1)
		}
	}
	for i := range p.Discounts {
		d := &p.Discounts[i]
		unique("discount", d.Name)
		if d.When != "" {
			d.when = compile(d.Name+".when", d.When, expression.AsBool())
		}
		d.percent = compile(d.Name+".percent", d.Percent, expression.AsInt64())
	}
	rewards := map[string]bool{}
	for _, r := range p.Rewards {
		rewards[r.Name] = true
	}
	for i := range p.PunchCards {
		c := &p.PunchCards[i]
		unique("punch card", c.Name)
		if len(c.On) == 0 || c.Punches < 2 {
			bad("punch card %q: needs events to listen to and at least 2 punches", c.Name)
		}
		if !rewards[c.Reward] {
			bad("punch card %q: unknown reward %q", c.Name, c.Reward)
		}
		if c.When != "" {
			c.when = compile(c.Name+".when", c.When, expression.AsBool())
		}
	}
	if len(probs) > 0 {
		return &ProgramError{Problems: probs}
	}
	p.compiled = true
	return nil
}

// reward returns the named reward.
func (p *Program) reward(name string) (Reward, bool) {
	for _, r := range p.Rewards {
		if r.Name == name {
			return r, true
		}
	}
	return Reward{}, false
}
