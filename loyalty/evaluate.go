package loyalty

import (
	"fmt"
	"math/big"
	"slices"
	"time"
)

// Member is what rules know about a member. Expressions see it as
// member, with the field names in the expr tags (member.tier,
// member.total_spent, ...).
type Member struct {
	ID          string         `expr:"id" yaml:"id" json:"id"`
	Tier        string         `expr:"tier" yaml:"tier,omitempty" json:"tier,omitempty"`
	Tags        []string       `expr:"tags" yaml:"tags,omitempty" json:"tags,omitempty"`
	City        string         `expr:"city" yaml:"city,omitempty" json:"city,omitempty"`
	Industry    string         `expr:"industry" yaml:"industry,omitempty" json:"industry,omitempty"`
	Birthday    time.Time      `expr:"birthday" yaml:"birthday,omitempty" json:"birthday,omitzero"`
	JoinedAt    time.Time      `expr:"joined_at" yaml:"joined_at,omitempty" json:"joined_at,omitzero"`
	Balance     int64          `expr:"balance" yaml:"balance,omitempty" json:"balance,omitempty"`
	TotalSpent  int64          `expr:"total_spent" yaml:"total_spent,omitempty" json:"total_spent,omitempty"`
	OrderCount  int            `expr:"order_count" yaml:"order_count,omitempty" json:"order_count,omitempty"`
	LastOrderAt time.Time      `expr:"last_order_at" yaml:"last_order_at,omitempty" json:"last_order_at,omitzero"`
	R           int            `expr:"r" yaml:"r,omitempty" json:"r,omitempty"`
	F           int            `expr:"f" yaml:"f,omitempty" json:"f,omitempty"`
	M           int            `expr:"m" yaml:"m,omitempty" json:"m,omitempty"`
	Custom      map[string]any `expr:"custom" yaml:"custom,omitempty" json:"custom,omitempty"`
}

// Event is something a member did. Expressions see it as event; an
// order's details as order.
type Event struct {
	// ID identifies the event; effects are keyed by it, so the same event
	// processed twice earns once.
	ID   string    `expr:"id" yaml:"id" json:"id"`
	Kind string    `expr:"kind" yaml:"kind" json:"kind"`
	At   time.Time `expr:"at" yaml:"at" json:"at"`
	// Order is set for order and refund events.
	Order *Order `expr:"-" yaml:"order,omitempty" json:"order,omitempty"`
	// Partner is the coalition partner where the event happened.
	Partner string `expr:"partner" yaml:"partner,omitempty" json:"partner,omitempty"`
	// Referrer is the member who referred this one (referral events).
	Referrer string `expr:"referrer" yaml:"referrer,omitempty" json:"referrer,omitempty"`
	// Score is a survey's score.
	Score int `expr:"score" yaml:"score,omitempty" json:"score,omitempty"`
	// Data holds a custom event's fields.
	Data map[string]any `expr:"data" yaml:"data,omitempty" json:"data,omitempty"`
}

// Order is a purchase, amounts in minor units of Currency.
type Order struct {
	Number   string `expr:"number" yaml:"number,omitempty" json:"number,omitempty"`
	Currency string `expr:"currency" yaml:"currency" json:"currency"`
	Total    int64  `expr:"total" yaml:"total" json:"total"`
	Lines    []Line `expr:"lines" yaml:"lines,omitempty" json:"lines,omitempty"`
	// RefundOf is, for a refund event, the ID of the order event refunded.
	RefundOf string `expr:"refund_of" yaml:"refund_of,omitempty" json:"refund_of,omitempty"`
	// Earning is the total of the lines that earn points (exclusions
	// left out; the total itself when there are no lines). Set by
	// Evaluate.
	Earning int64 `expr:"earning" yaml:"-" json:"-"`
}

// Line is one order line.
type Line struct {
	SKU      string `expr:"sku" yaml:"sku" json:"sku"`
	Category string `expr:"category" yaml:"category,omitempty" json:"category,omitempty"`
	Quantity int64  `expr:"quantity" yaml:"quantity" json:"quantity"`
	// Amount is the line total in minor units.
	Amount int64 `expr:"amount" yaml:"amount" json:"amount"`
}

// Env is the environment rule expressions are compiled against.
type Env struct {
	Event  Event  `expr:"event"`
	Order  Order  `expr:"order"`
	Member Member `expr:"member"`
}

// maxCollection bounds the lists a rule sees (order lines, tags).
const maxCollection = 1000

// EffectKind is the kind of an effect.
type EffectKind string

// The effect kinds.
const (
	EffectPoints   EffectKind = "points"   // points to credit now
	EffectPending  EffectKind = "pending"  // points to hold until ActivatesAt
	EffectReverse  EffectKind = "reverse"  // take back what event Ref earned, for Amount of its earning refunded (0: all)
	EffectDiscount EffectKind = "discount" // money (Amount) or Percent off the order
	EffectReward   EffectKind = "reward"   // a reward unlocked
	EffectPunch    EffectKind = "punch"    // a punch on a card
	EffectTier     EffectKind = "tier"     // the member's tier changes
)

// Effect is one consequence of an event, as data: Evaluate computes them,
// the engine (or Book) applies them.
type Effect struct {
	Kind EffectKind `yaml:"kind" json:"kind"`
	// Source is the rule, discount, threshold, punch card or tier that
	// produced it.
	Source string `yaml:"source" json:"source"`
	// Member is who the effect is for (the referrer, for referral rules).
	Member string `yaml:"member,omitempty" json:"member,omitempty"`
	// Key is the ledger idempotency key of a points effect.
	Key         string    `yaml:"key,omitempty" json:"key,omitempty"`
	Points      int64     `yaml:"points,omitempty" json:"points,omitempty"`
	ExpiresAt   time.Time `yaml:"expires_at,omitempty" json:"expires_at,omitzero"`
	ActivatesAt time.Time `yaml:"activates_at,omitempty" json:"activates_at,omitzero"`
	Partner     string    `yaml:"partner,omitempty" json:"partner,omitempty"`
	Ref         string    `yaml:"ref,omitempty" json:"ref,omitempty"`
	Amount      int64     `yaml:"amount,omitempty" json:"amount,omitempty"`
	Percent     int64     `yaml:"percent,omitempty" json:"percent,omitempty"`
	Reward      string    `yaml:"reward,omitempty" json:"reward,omitempty"`
	Tier        string    `yaml:"tier,omitempty" json:"tier,omitempty"`
	FromTier    string    `yaml:"from_tier,omitempty" json:"from_tier,omitempty"`
	Count       int       `yaml:"count,omitempty" json:"count,omitempty"`
}

// Step is one line of an evaluation's trace: a rule (or discount, card,
// tier) that listened to the event, whether it matched, and why.
type Step struct {
	Source  string `yaml:"source" json:"source"`
	Matched bool   `yaml:"matched" json:"matched"`
	Reason  string `yaml:"reason" json:"reason"`
}

// Result is what an event does: the effects and the trace.
type Result struct {
	Effects []Effect `yaml:"effects" json:"effects"`
	Trace   []Step   `yaml:"trace" json:"trace"`
}

// Points returns the points the effects credit (now or pending) to member.
func (r Result) Points(member string) int64 {
	var n int64
	for _, e := range r.Effects {
		if (e.Kind == EffectPoints || e.Kind == EffectPending) && e.Member == member {
			n += e.Points
		}
	}
	return n
}

// History is what an evaluation needs to know about the past: usage of
// limited rules, budgets, punch cards and tier windows. Book implements
// it; a nil History is a member with no past.
type History interface {
	// RuleUsage returns how many times rule awarded member points since
	// the given time, and how many points.
	RuleUsage(member, rule string, since time.Time) (int, int64)
	// RuleTotal returns the points rule has awarded to everyone.
	RuleTotal(rule string) int64
	// Punches returns member's punches on card so far.
	Punches(member, card string) int
	// Earned returns the points member earned since the given time, and
	// the money spent on orders in the program's currency.
	Earned(member string, since time.Time) (points, spent int64)
}

type noHistory struct{}

func (noHistory) RuleUsage(string, string, time.Time) (int, int64) { return 0, 0 }
func (noHistory) RuleTotal(string) int64                           { return 0 }
func (noHistory) Punches(string, string) int                       { return 0 }
func (noHistory) Earned(string, time.Time) (int64, int64)          { return 0, 0 }

// Evaluate works out what event e does for member m: the points the rules
// earn, discounts, rewards, punches and tier changes, with a trace of
// every rule that listened. It writes nothing: run it as a dry run, or
// give the result to Book.Apply (or the engine). h may be nil.
func (p *Program) Evaluate(m Member, e Event, h History) (Result, error) {
	if !p.compiled {
		return Result{}, fmt.Errorf("%w: program %q is not compiled (call Compile or Load)", ErrInvalid, p.Name)
	}
	if h == nil {
		h = noHistory{}
	}
	if err := checkEvent(m, e); err != nil {
		return Result{}, err
	}
	env := Env{Event: e, Member: m}
	if e.Order != nil {
		env.Order = *e.Order
		env.Order.Earning = p.earning(*e.Order)
	}
	ev := evaluation{p: p, env: &env, h: h}
	if e.Kind == "refund" {
		if e.Order == nil || e.Order.RefundOf == "" {
			return Result{}, fmt.Errorf("%w: refund event %q names no order refunded (order.refund_of)", ErrInvalid, e.ID)
		}
		switch o := e.Order; {
		case o.Total == 0 && len(o.Lines) == 0:
			ev.res.Effects = append(ev.res.Effects, Effect{Kind: EffectReverse, Source: "refund", Member: m.ID, Ref: o.RefundOf})
			ev.step("refund", true, "gives no amount: reverses all the points of %s", o.RefundOf)
		case env.Order.Earning == 0:
			ev.step("refund", false, "refunds nothing that earns points (%s)", o.RefundOf)
		default:
			amount := abs(env.Order.Earning)
			ev.res.Effects = append(ev.res.Effects, Effect{Kind: EffectReverse, Source: "refund", Member: m.ID, Ref: o.RefundOf, Amount: amount})
			ev.step("refund", true, "reverses the points of %s in proportion to %d refunded", o.RefundOf, amount)
		}
	}
	for i := range p.Rules {
		if err := ev.rule(&p.Rules[i]); err != nil {
			return Result{}, err
		}
	}
	if err := ev.discounts(); err != nil {
		return Result{}, err
	}
	if err := ev.punchCards(); err != nil {
		return Result{}, err
	}
	ev.tier()
	return ev.res, nil
}

func checkEvent(m Member, e Event) error {
	switch {
	case m.ID == "":
		return fmt.Errorf("%w: event %q: the member has no ID", ErrInvalid, e.ID)
	case e.ID == "":
		return fmt.Errorf("%w: %s event without an ID", ErrInvalid, e.Kind)
	case e.Kind == "":
		return fmt.Errorf("%w: event %q has no kind", ErrInvalid, e.ID)
	case e.At.IsZero():
		return fmt.Errorf("%w: event %q has no time", ErrInvalid, e.ID)
	case len(m.Tags) > maxCollection:
		return fmt.Errorf("%w: member %s has %d tags, rules see at most %d", ErrInvalid, m.ID, len(m.Tags), maxCollection)
	}
	if o := e.Order; o != nil {
		if len(o.Lines) > maxCollection {
			return fmt.Errorf("%w: order %q has %d lines, rules see at most %d", ErrInvalid, e.ID, len(o.Lines), maxCollection)
		}
		if o.Currency == "" {
			return fmt.Errorf("%w: order %q has no currency", ErrInvalid, e.ID)
		}
	} else if e.Kind == "order" {
		return fmt.Errorf("%w: order event %q has no order", ErrInvalid, e.ID)
	}
	return nil
}

// RefundPoints returns how many of the points an order earned a refund
// takes back: the points in proportion to the order's earning amount,
// counted over all its refunds so far, so that refunds adding up to the
// whole order take back exactly all its points. earning is the order's
// earning amount (Program.Earning), refundedBefore the amount earlier
// refunds took back, refund this refund's amount (0: all the rest).
func RefundPoints(earned, earning, refundedBefore, refund int64) int64 {
	if earning <= 0 {
		return earned
	}
	before := min(max(refundedBefore, 0), earning)
	after := before + RefundAmount(earning, refundedBefore, refund)
	return mulDiv(earned, after, earning) - mulDiv(earned, before, earning)
}

// RefundAmount returns how much of an order's earning amount a refund
// takes back: refund (0: all the rest), at most what earlier refunds
// (refundedBefore) left.
func RefundAmount(earning, refundedBefore, refund int64) int64 {
	left := max(earning-max(refundedBefore, 0), 0)
	if refund > 0 {
		return min(refund, left)
	}
	return left
}

// Earning returns the part of an order that earns points: the total of
// its lines less the excluded ones (the total itself when it has no
// lines). Refunds are prorated against it (RefundPoints).
func (p *Program) Earning(o Order) int64 { return p.earning(o) }

// earning returns the total of the order's lines that earn.
func (p *Program) earning(o Order) int64 {
	if len(o.Lines) == 0 {
		return o.Total
	}
	var n int64
	for _, l := range o.Lines {
		if !p.Exclude.excludes(l) {
			n += l.Amount
		}
	}
	return n
}

type evaluation struct {
	p   *Program
	env *Env
	h   History
	res Result
	// earned is the points this event earns the member so far.
	earned int64
}

func (ev *evaluation) step(source string, matched bool, format string, args ...any) {
	ev.res.Trace = append(ev.res.Trace, Step{Source: source, Matched: matched, Reason: fmt.Sprintf(format, args...)})
}

func (ev *evaluation) rule(r *Rule) error {
	e, o := &ev.env.Event, ev.env.Event.Order
	if !slices.Contains(r.On, e.Kind) {
		return nil
	}
	if o != nil && o.Currency != ev.p.Currency {
		ev.step(r.Name, false, "the order is in %s, the program in %s", o.Currency, ev.p.Currency)
		return nil
	}
	if o != nil && r.MinOrder > 0 && o.Total < r.MinOrder {
		ev.step(r.Name, false, "order total %d is below the minimum %d", o.Total, r.MinOrder)
		return nil
	}
	if r.when != nil {
		ok, err := r.when.Bool(ev.env)
		if err != nil {
			return err
		}
		if !ok {
			ev.step(r.Name, false, "when (%s) is false", r.When)
			return nil
		}
	}
	n, err := r.points.Int64(ev.env)
	if err != nil {
		return err
	}
	why := fmt.Sprintf("%s = %d", r.Points, n)
	for _, mu := range r.Multipliers {
		switch {
		case mu.Tier != "" && mu.Tier == ev.env.Member.Tier:
			n = mulDiv(n, mu.Percent, 100)
			why += fmt.Sprintf(", ×%d%% for tier %s", mu.Percent, mu.Tier)
		case mu.Category != "" && o != nil && ev.env.Order.Earning > 0:
			var cat int64
			for _, l := range o.Lines {
				if contains([]string{mu.Category}, l.Category) && !ev.p.Exclude.excludes(l) {
					cat += l.Amount
				}
			}
			if cat != 0 {
				// The category's share of the points, scaled.
				extra := mulDiv(mulDiv(n, cat, ev.env.Order.Earning), mu.Percent-100, 100)
				n += extra
				why += fmt.Sprintf(", ×%d%% on %s lines (%+d)", mu.Percent, mu.Category, extra)
			}
		}
	}
	if n <= 0 {
		ev.step(r.Name, false, "%s: no points", why)
		return nil
	}
	member := ev.env.Member.ID
	if r.Beneficiary == "referrer" {
		if e.Referrer == "" {
			ev.step(r.Name, false, "the event names no referrer")
			return nil
		}
		member = e.Referrer
	}
	if r.Budget > 0 {
		left := r.Budget - ev.h.RuleTotal(r.Name)
		if left <= 0 {
			ev.step(r.Name, false, "%s, but the rule's budget of %d is spent", why, r.Budget)
			return nil
		}
		if n > left {
			n = left
			why += fmt.Sprintf(", cut to the %d left of the budget", left)
		}
	}
	if lim := r.Limit; lim != nil {
		since := lim.Period.start(e.At)
		count, pts := ev.h.RuleUsage(member, r.Name, since)
		if lim.Count > 0 && count >= lim.Count {
			ev.step(r.Name, false, "%s, but the limit of %d per %s is reached", why, lim.Count, periodName(lim.Period))
			return nil
		}
		if lim.Points > 0 {
			left := lim.Points - pts
			if left <= 0 {
				ev.step(r.Name, false, "%s, but the limit of %d points per %s is reached", why, lim.Points, periodName(lim.Period))
				return nil
			}
			if n > left {
				n = left
				why += fmt.Sprintf(", cut to the %d left of the limit", left)
			}
		}
	}
	expiry := ev.p.Expiry
	if r.Expiry != nil {
		expiry = *r.Expiry
	}
	eff := Effect{Kind: EffectPoints, Source: r.Name, Member: member, Key: e.ID + "/" + r.Name + "/" + member,
		Points: n, ExpiresAt: expiry.At(e.At), Partner: e.Partner}
	if r.Pending != "" {
		eff.Kind, eff.ActivatesAt = EffectPending, r.Pending.add(e.At)
		why += ", pending until " + eff.ActivatesAt.Format(time.DateOnly)
	}
	ev.res.Effects = append(ev.res.Effects, eff)
	if member == ev.env.Member.ID {
		ev.earned += n
	}
	ev.step(r.Name, true, "%s: %d points", why, n)
	return nil
}

func periodName(p Period) string {
	if p == "" {
		return "member"
	}
	return string(p)
}

// mulDiv returns a×b/c, truncated, without overflow on the way.
func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

func mulDiv(a, b, c int64) int64 {
	x := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
	x.Quo(x, big.NewInt(c))
	if !x.IsInt64() {
		if x.Sign() > 0 {
			return 1<<63 - 1
		}
		return -1 << 63
	}
	return x.Int64()
}

// discounts adds the threshold discount and personal discounts of an
// order.
func (ev *evaluation) discounts() error {
	o := ev.env.Event.Order
	if ev.env.Event.Kind != "order" || o == nil || o.Currency != ev.p.Currency {
		return nil
	}
	for i := len(ev.p.Thresholds) - 1; i >= 0; i-- {
		t := ev.p.Thresholds[i]
		if o.Total >= t.Min {
			ev.res.Effects = append(ev.res.Effects, Effect{Kind: EffectDiscount, Source: "threshold", Member: ev.env.Member.ID, Amount: t.Off})
			ev.step("threshold", true, "total %d reaches %d: %d off", o.Total, t.Min, t.Off)
			break
		}
	}
	for i := range ev.p.Discounts {
		d := &ev.p.Discounts[i]
		if d.when != nil {
			ok, err := d.when.Bool(ev.env)
			if err != nil {
				return err
			}
			if !ok {
				ev.step(d.Name, false, "when (%s) is false", d.When)
				continue
			}
		}
		pct, err := d.percent.Int64(ev.env)
		if err != nil {
			return err
		}
		if pct <= 0 || pct > 100 {
			ev.step(d.Name, false, "%s = %d: no discount", d.Percent, pct)
			continue
		}
		ev.res.Effects = append(ev.res.Effects, Effect{Kind: EffectDiscount, Source: d.Name, Member: ev.env.Member.ID, Percent: pct})
		ev.step(d.Name, true, "%s = %d%% off", d.Percent, pct)
	}
	return nil
}

func (ev *evaluation) punchCards() error {
	for i := range ev.p.PunchCards {
		c := &ev.p.PunchCards[i]
		if !slices.Contains(c.On, ev.env.Event.Kind) {
			continue
		}
		if c.when != nil {
			ok, err := c.when.Bool(ev.env)
			if err != nil {
				return err
			}
			if !ok {
				ev.step(c.Name, false, "when (%s) is false", c.When)
				continue
			}
		}
		m := ev.env.Member.ID
		n := ev.h.Punches(m, c.Name) + 1
		ev.res.Effects = append(ev.res.Effects, Effect{Kind: EffectPunch, Source: c.Name, Member: m, Count: n})
		if n%c.Punches == 0 {
			ev.res.Effects = append(ev.res.Effects, Effect{Kind: EffectReward, Source: c.Name, Member: m, Reward: c.Reward,
				Key: ev.env.Event.ID + "/" + c.Name + "/" + m})
			ev.step(c.Name, true, "punch %d of %d: %s unlocked", c.Punches, c.Punches, c.Reward)
			continue
		}
		ev.step(c.Name, true, "punch %d of %d", n%c.Punches, c.Punches)
	}
	return nil
}

// tier upgrades the member at once when the event makes them qualify for
// a higher tier (and, under DowngradeReevaluate, moves them down).
func (ev *evaluation) tier() {
	if len(ev.p.Tiers) == 0 {
		return
	}
	m := ev.env.Member
	var spent int64
	if o := ev.env.Event.Order; o != nil && o.Currency == ev.p.Currency && ev.env.Event.Kind == "order" {
		spent = o.Total
	}
	q := ev.p.qualifying(m.ID, ev.env.Event.At, ev.h, ev.earned, spent)
	cur := ev.p.tierIndex(m.Tier)
	switch {
	case q > cur:
		ev.res.Effects = append(ev.res.Effects, Effect{Kind: EffectTier, Source: ev.p.Tiers[q].Name, Member: m.ID, Tier: ev.p.Tiers[q].Name, FromTier: m.Tier})
		ev.step("tier", true, "qualifies for %s: upgraded from %q", ev.p.Tiers[q].Name, m.Tier)
	case q < cur && ev.p.Downgrade == DowngradeReevaluate:
		ev.res.Effects = append(ev.res.Effects, Effect{Kind: EffectTier, Source: ev.p.Tiers[q].Name, Member: m.ID, Tier: ev.p.Tiers[q].Name, FromTier: m.Tier})
		ev.step("tier", true, "qualifies only for %s: moved down from %s", ev.p.Tiers[q].Name, m.Tier)
	}
}

// tierIndex returns the index of the named tier, 0 (the lowest) if
// unknown or empty.
func (p *Program) tierIndex(name string) int {
	for i, t := range p.Tiers {
		if t.Name == name {
			return i
		}
	}
	return 0
}

// qualifying returns the index of the highest tier member qualifies for
// at at, counting extra points and spend not yet in the history.
func (p *Program) qualifying(member string, at time.Time, h History, points, spent int64) int {
	q := 0
	for i, t := range p.Tiers {
		since := time.Time{}
		if t.Window != "" {
			since = t.Window.sub(at)
		}
		pts, sp := h.Earned(member, since)
		if pts+points >= t.MinPoints && sp+spent >= t.MinSpend {
			q = i
		}
	}
	return q
}

// TierStatus is where a member stands: the tier held, the tier qualified
// for now, and what it takes to keep or reach a tier.
type TierStatus struct {
	Tier       string `json:"tier"`
	Qualifies  string `json:"qualifies"`
	Next       string `json:"next,omitempty"`
	PointsNext int64  `json:"points_next,omitempty"` // points still needed for Next
	SpendNext  int64  `json:"spend_next,omitempty"`  // money still needed for Next
	PointsKeep int64  `json:"points_keep"`           // points still needed to keep Tier over its window
	SpendKeep  int64  `json:"spend_keep"`            // money still needed to keep Tier
}

// TierStatus returns member m's standing at at.
func (p *Program) TierStatus(m Member, at time.Time, h History) TierStatus {
	if h == nil {
		h = noHistory{}
	}
	if len(p.Tiers) == 0 {
		return TierStatus{}
	}
	need := func(t Tier) (int64, int64) {
		since := time.Time{}
		if t.Window != "" {
			since = t.Window.sub(at)
		}
		pts, sp := h.Earned(m.ID, since)
		return max(t.MinPoints-pts, 0), max(t.MinSpend-sp, 0)
	}
	cur := p.tierIndex(m.Tier)
	q := p.qualifying(m.ID, at, h, 0, 0)
	s := TierStatus{Tier: p.Tiers[cur].Name, Qualifies: p.Tiers[q].Name}
	s.PointsKeep, s.SpendKeep = need(p.Tiers[cur])
	if n := max(cur, q) + 1; n < len(p.Tiers) {
		s.Next = p.Tiers[n].Name
		s.PointsNext, s.SpendNext = need(p.Tiers[n])
	}
	return s
}

// ReviewTier applies the downgrade policy at a period's end: the tier the
// member should hold from at, and whether it changes.
func (p *Program) ReviewTier(m Member, at time.Time, h History) (Effect, bool) {
	if h == nil {
		h = noHistory{}
	}
	if len(p.Tiers) == 0 {
		return Effect{}, false
	}
	cur, q := p.tierIndex(m.Tier), p.qualifying(m.ID, at, h, 0, 0)
	to := cur
	switch p.Downgrade {
	case DowngradeNever, "":
		to = max(cur, q)
	case DowngradeOneDown:
		to = max(q, cur-1)
	case DowngradePeriodEnd, DowngradeReevaluate:
		to = q
	}
	if to == cur {
		return Effect{}, false
	}
	return Effect{Kind: EffectTier, Source: "review", Member: m.ID, Tier: p.Tiers[to].Name, FromTier: m.Tier}, true
}
