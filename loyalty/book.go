package loyalty

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Book runs a program in memory: it evaluates events, applies their
// effects to a Ledger, and remembers what limits, budgets, punch cards and
// tiers need (it is the History of its evaluations). The rule test harness
// runs fixtures on a Book; the engine does the same against its store. It
// is safe for concurrent use.
type Book struct {
	Program *Program
	Ledger  *Ledger

	mu      sync.Mutex
	members map[string]*Member
	awards  []award           // points credited by rules, in order
	orders  []spend           // orders counted for tiers
	punches map[string]int    // member\x00card → punches
	ruleSum map[string]int64  // rule → points awarded
	done    map[string]Result // event ID → what processing it did
	// unlocked lists the rewards effects unlocked, in order.
	unlocked []Effect
}

type award struct {
	member, rule, key string
	at                time.Time
	points            int64
	reversed          int64 // points refunds took back
}

type spend struct {
	member, event string
	at            time.Time
	amount        int64 // the total, less refunds
	earning       int64 // the part that earns points (Program.Earning)
	refunded      int64 // of earning, what refunds took back
}

// refundTotal is how much of order o's total refund event e gives back:
// all of it when e gives no amount.
func refundTotal(e Event, o *spend) int64 {
	if r := e.Order; r.Total != 0 || len(r.Lines) > 0 {
		return abs(r.Total)
	}
	return o.amount
}

// NewBook returns a book for a compiled program.
func NewBook(p *Program) *Book {
	return &Book{Program: p, Ledger: NewLedger(p.AllowNegative), members: map[string]*Member{},
		punches: map[string]int{}, ruleSum: map[string]int64{}, done: map[string]Result{}}
}

// SetMember records a member's profile (tier, tags, metrics) for later
// events; Process keeps Tier and Balance current.
func (b *Book) SetMember(m Member) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := m
	b.members[m.ID] = &c
}

// Member returns the member as the book knows them, with the current
// balance.
func (b *Book) Member(id string) Member {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.member(id)
}

func (b *Book) member(id string) Member {
	c := Member{ID: id}
	if m, ok := b.members[id]; ok {
		c = *m
	}
	c.Balance = b.Ledger.Balance(id)
	return c
}

// Process evaluates event e for member id and applies the effects: points
// to the ledger, reversals of refunded orders, punches, rewards, tier
// changes. An event ID processed before returns the first result and
// changes nothing. On an error the ledger may hold the points effects
// applied before it; each has its own idempotency key, so processing the
// event again completes it.
func (b *Book) Process(id string, e Event) (Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if res, ok := b.done[e.ID]; ok {
		return res, nil
	}
	res, err := b.Program.Evaluate(b.member(id), e, bookHistory{b})
	if err != nil {
		return Result{}, err
	}
	for _, eff := range res.Effects {
		if err := b.apply(e, eff); err != nil {
			return res, err
		}
	}
	if o := e.Order; o != nil && e.Kind == "order" && o.Currency == b.Program.Currency {
		b.orders = append(b.orders, spend{member: id, event: e.ID, at: e.At, amount: o.Total, earning: b.Program.Earning(*o)})
		m := b.profile(id)
		m.TotalSpent += o.Total
		m.OrderCount++
		m.LastOrderAt = e.At
	}
	b.done[e.ID] = res
	return res, nil
}

// Unlocked returns the rewards member id has unlocked (punch cards), in
// order.
func (b *Book) Unlocked(id string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, e := range b.unlocked {
		if e.Member == id {
			out = append(out, e.Reward)
		}
	}
	return out
}

func (b *Book) profile(id string) *Member {
	m, ok := b.members[id]
	if !ok {
		m = &Member{ID: id}
		b.members[id] = m
	}
	return m
}

func (b *Book) apply(e Event, eff Effect) error {
	switch eff.Kind {
	case EffectPoints, EffectPending:
		kind := KindEarn
		if eff.Kind == EffectPending {
			kind = KindPending
		}
		if _, err := b.Ledger.Apply(eff.Member, Op{Key: eff.Key, Kind: kind, Points: eff.Points, At: e.At, ExpiresAt: eff.ExpiresAt,
			ActivatesAt: eff.ActivatesAt, Partner: eff.Partner, Reason: eff.Source}); err != nil {
			return err
		}
		b.awards = append(b.awards, award{member: eff.Member, rule: eff.Source, key: eff.Key, at: e.At, points: eff.Points})
		b.ruleSum[eff.Source] += eff.Points
	case EffectReverse:
		// In proportion to the order's earning refunded; all of it when
		// the order is unknown or the refund gives no amount.
		var o *spend
		for i := range b.orders {
			if b.orders[i].event == eff.Ref {
				o = &b.orders[i]
			}
		}
		var earning, before int64
		if o != nil {
			earning, before = o.earning, o.refunded
		}
		prefix := eff.Ref + "/"
		for i := range b.awards {
			a := &b.awards[i]
			if !strings.HasPrefix(a.key, prefix) || a.reversed == a.points {
				continue
			}
			n := min(RefundPoints(a.points, earning, before, eff.Amount), a.points-a.reversed)
			if n == 0 {
				continue
			}
			if _, err := b.Ledger.Apply(a.member, Op{Key: a.key + "/reverse/" + e.ID, Kind: KindReverse, Ref: a.key, Points: n, At: e.At, Reason: "refund " + e.ID}); err != nil {
				return err
			}
			a.reversed += n
		}
		if o != nil {
			o.refunded += RefundAmount(o.earning, o.refunded, eff.Amount)
			o.amount = max(o.amount-refundTotal(e, o), 0)
		}
	case EffectPunch:
		b.punches[eff.Member+"\x00"+eff.Source] = eff.Count
	case EffectReward:
		b.unlocked = append(b.unlocked, eff)
	case EffectTier:
		b.profile(eff.Member).Tier = eff.Tier
	}
	return nil
}

// Activate credits the pending points whose time has come by at, and
// expires the lots due: the daily job of a program.
func (b *Book) Activate(at time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.Ledger.ActivateDue(at); err != nil {
		return err
	}
	_, err := b.Ledger.ExpireDue(at)
	return err
}

// ReviewTiers applies the downgrade policy to every member at at and
// returns the changes.
func (b *Book) ReviewTiers(at time.Time) []Effect {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Effect
	for _, m := range b.members {
		if eff, ok := b.Program.ReviewTier(*m, at, bookHistory{b}); ok {
			m.Tier = eff.Tier
			out = append(out, eff)
		}
	}
	slices.SortFunc(out, func(x, y Effect) int { return strings.Compare(x.Member, y.Member) })
	return out
}

// Redeem spends points on a reward for member id. For a partial discount,
// amount is the discount wanted in minor units (the points are amount ×
// Cost); otherwise amount is ignored. key makes it idempotent.
func (b *Book) Redeem(key, id, reward string, amount int64, at time.Time) (Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.Program.reward(reward)
	if !ok {
		return Entry{}, fmt.Errorf("%w: no reward %q", ErrNotFound, reward)
	}
	m := b.member(id)
	if r.MinTier != "" && b.Program.tierIndex(m.Tier) < b.Program.tierIndex(r.MinTier) {
		return Entry{}, fmt.Errorf("%w: reward %q needs tier %s, member %s is %q", ErrInvalid, reward, r.MinTier, id, m.Tier)
	}
	points := r.Cost
	if r.Partial {
		if amount <= 0 {
			return Entry{}, fmt.Errorf("%w: redeem %q: give the discount wanted, in minor units", ErrInvalid, reward)
		}
		points = mulDiv(amount, r.Cost, 1)
	}
	op := Op{Key: key, Kind: KindSpend, Points: points, At: at, Reason: "reward " + reward + " " + strconv.FormatInt(amount, 10)}
	// A retry goes straight to the ledger, which returns the first
	// result (or refuses other parameters under the same key): the
	// balance has changed since, so the minimum is not checked again.
	if a, ok := b.Ledger.Account(id); ok {
		if _, done := a.Entry(key); done {
			return b.Ledger.Apply(id, op)
		}
	}
	if m.Balance < b.Program.MinRedeemBalance {
		return Entry{}, fmt.Errorf("%w: member %s has %d points, redeeming needs a balance of %d", ErrInsufficientPoints, id, m.Balance, b.Program.MinRedeemBalance)
	}
	return b.Ledger.Apply(id, op)
}

// bookHistory is the book as History (its lock is held by the caller).
type bookHistory struct{ b *Book }

func (h bookHistory) RuleUsage(member, rule string, since time.Time) (int, int64) {
	var n int
	var pts int64
	for _, a := range h.b.awards {
		// An award refunded whole no longer counts.
		if a.member == member && a.rule == rule && !a.at.Before(since) && a.reversed < a.points {
			n++
			pts += a.points - a.reversed
		}
	}
	return n, pts
}

func (h bookHistory) RuleTotal(rule string) int64 { return h.b.ruleSum[rule] }

func (h bookHistory) Punches(member, card string) int { return h.b.punches[member+"\x00"+card] }

func (h bookHistory) Earned(member string, since time.Time) (int64, int64) {
	var pts, spent int64
	for _, a := range h.b.awards {
		if a.member == member && !a.at.Before(since) {
			pts += a.points - a.reversed
		}
	}
	for _, o := range h.b.orders {
		if o.member == member && !o.at.Before(since) {
			spent += o.amount
		}
	}
	return pts, spent
}

// History returns the book's past as a History, for TierStatus and
// ReviewTier; each call takes the book's lock.
func (b *Book) History() History { return lockedHistory{b} }

type lockedHistory struct{ b *Book }

func (h lockedHistory) RuleUsage(member, rule string, since time.Time) (int, int64) {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	return bookHistory(h).RuleUsage(member, rule, since)
}

func (h lockedHistory) RuleTotal(rule string) int64 {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	return bookHistory(h).RuleTotal(rule)
}

func (h lockedHistory) Punches(member, card string) int {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	return bookHistory(h).Punches(member, card)
}

func (h lockedHistory) Earned(member string, since time.Time) (int64, int64) {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	return bookHistory(h).Earned(member, since)
}
