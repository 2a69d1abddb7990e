package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rapportcrm/rapport/loyalty"
	"github.com/rapportcrm/rapport/storage"
)

const (
	loyaltyMembersCollection  = "loyalty_members"
	loyaltyCountersCollection = "loyalty_counters"
	loyaltyEventsCollection   = "loyalty_events"
)

var loyaltyCollections = []storage.Collection{
	{Name: loyaltyMembersCollection}, {Name: loyaltyCountersCollection}, {Name: loyaltyEventsCollection},
}

// Loyalty runs a loyalty program against the engine: an event for a
// member (a contact ID) is evaluated with what the store knows — the
// contact's tags and custom fields, their orders' totals, their tier,
// punches and past awards — and its effects are applied in the same
// transaction: points to the program's Ledger, punches, unlocked rewards
// and tier changes to the member's loyalty profile. An event is processed
// once: processing its ID again returns the first result.
type Loyalty struct {
	t      *Tenant
	p      *loyalty.Program
	ledger *Ledger
	enrich MemberFunc
}

// MemberFunc adds to a member what the store does not hold, for example
// RFM scores from an analytics report (analytics.RFM.FillMember). It is
// called inside the engine's write transaction, before the rules run, so
// it must not use the engine.
type MemberFunc func(ctx context.Context, m *loyalty.Member) error

// WithMember returns a runner that completes each member with fn.
func (lp *Loyalty) WithMember(fn MemberFunc) *Loyalty {
	c := *lp
	c.enrich = fn
	return &c
}

// Loyalty returns the runner of a compiled program in this tenant.
func (t *Tenant) Loyalty(p *loyalty.Program) *Loyalty {
	return &Loyalty{t: t, p: p, ledger: t.Ledger(p.Name, p.AllowNegative)}
}

// Ledger returns the program's ledger.
func (lp *Loyalty) Ledger() *Ledger { return lp.ledger }

// LoyaltyProfile is what the engine keeps about a member in a program
// besides points.
type LoyaltyProfile struct {
	Tier     string         `json:"tier,omitempty"`
	Punches  map[string]int `json:"punches,omitempty"`
	Unlocked []string       `json:"unlocked,omitempty"`
	// Refunded is, per refunded order (event ID), how much of its
	// earning amount refunds have taken back so far: partial refunds
	// are prorated against what is left (loyalty.RefundPoints).
	Refunded map[string]int64 `json:"refunded,omitempty"`
}

// reverse takes back, for a refund, the points the refunded order's awards
// earned, in proportion to the part of the order's earning refunded (all
// of them when the refund gives no amount or the order is not in the
// store).
func (r *loyaltyRun) reverse(ctx context.Context, e loyalty.Event, eff loyalty.Effect) error {
	var earning int64
	rec, err := r.tx.Get(ctx, ordersCollection, eff.Ref)
	switch {
	case err == nil:
		var o Order
		if err := json.Unmarshal(rec.Body, &o); err != nil {
			return fmt.Errorf("crm: order %s: %w", eff.Ref, err)
		}
		if o.Currency == r.lp.p.Currency {
			earning = r.lp.p.Earning(*OrderEvent(o).Order)
		}
	case !errors.Is(err, storage.ErrNotFound):
		return err
	}
	p, err := r.profile(ctx, eff.Member)
	if err != nil {
		return err
	}
	before := p.Refunded[eff.Ref]
	j, err := r.journal(ctx, eff.Member)
	if err != nil {
		return err
	}
	back := loyalty.TakenBack(j.Journal)
	for _, x := range j.Journal {
		k := x.Op.Kind
		left := x.Op.Points - back[x.Op.Key]
		if (k != loyalty.KindEarn && k != loyalty.KindPending) || !strings.HasPrefix(x.Op.Key, eff.Ref+"/") || left <= 0 {
			continue
		}
		n := min(loyalty.RefundPoints(x.Op.Points, earning, before, eff.Amount), left)
		if n <= 0 {
			continue
		}
		_, err := r.lt.apply(ctx, eff.Member, loyalty.Op{Key: x.Op.Key + "/reverse/" + e.ID, Kind: loyalty.KindReverse, Ref: x.Op.Key, Points: n, At: e.At, Reason: "refund " + e.ID})
		if err != nil {
			return err
		}
	}
	if refunded := loyalty.RefundAmount(earning, before, eff.Amount); refunded > 0 {
		if p.Refunded == nil {
			p.Refunded = map[string]int64{}
		}
		p.Refunded[eff.Ref] += refunded
		p.dirty = true
	}
	return nil
}

// loyaltyEventRec records a processed event and its result.
type loyaltyEventRec struct {
	Member string         `json:"member"`
	Result loyalty.Result `json:"result"`
}

// Process evaluates e for the member and applies its effects, all in one
// transaction. The result is the evaluation's, with the trace.
func (lp *Loyalty) Process(ctx context.Context, member string, e loyalty.Event) (loyalty.Result, error) {
	if e.ID == "" {
		return loyalty.Result{}, fmt.Errorf("%w: %s event without an ID", loyalty.ErrInvalid, e.Kind)
	}
	var res loyalty.Result
	err := lp.t.updateRetrying(ctx, func(tx storage.Tx) error {
		eventID := entryID(lp.p.Name, "event\x00"+e.ID)
		rec, err := tx.Get(ctx, loyaltyEventsCollection, eventID)
		if err == nil {
			var done loyaltyEventRec
			if err := json.Unmarshal(rec.Body, &done); err != nil {
				return fmt.Errorf("crm: loyalty event %s: %w", e.ID, err)
			}
			res = done.Result
			return nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		run := &loyaltyRun{lp: lp, tx: tx, lt: lp.ledger.begin(tx), profiles: map[string]*profileRec{}, counters: map[string]*counterRec{}}
		m, err := run.member(ctx, member)
		if err != nil {
			return err
		}
		if res, err = lp.p.Evaluate(m, e, run.history(ctx)); err != nil {
			return err
		}
		if err := run.histErr; err != nil {
			return err
		}
		for _, eff := range res.Effects {
			if err := run.apply(ctx, e, eff); err != nil {
				return err
			}
		}
		if err := run.commit(ctx); err != nil {
			return err
		}
		body, err := json.Marshal(loyaltyEventRec{Member: member, Result: res})
		if err != nil {
			return err
		}
		_, err = tx.Put(ctx, loyaltyEventsCollection, storage.Record{ID: eventID, Body: body})
		return err
	})
	return res, err
}

// Profile returns the member's loyalty profile.
func (lp *Loyalty) Profile(ctx context.Context, member string) (LoyaltyProfile, error) {
	var p LoyaltyProfile
	err := lp.t.view(ctx, func(tx storage.ReadTx) error {
		r, err := readProfile(ctx, tx, lp.p.Name, member)
		p = r.LoyaltyProfile
		return err
	})
	return p, err
}

// Member returns what the program's rules see of a member.
func (lp *Loyalty) Member(ctx context.Context, member string) (loyalty.Member, error) {
	var m loyalty.Member
	err := lp.t.view(ctx, func(tx storage.ReadTx) error {
		run := &loyaltyRun{lp: lp, tx: tx, profiles: map[string]*profileRec{}}
		var err error
		m, err = run.member(ctx, member)
		return err
	})
	return m, err
}

type profileRec struct {
	LoyaltyProfile
	id      string
	version uint64
	dirty   bool
}

type counterRec struct {
	Points  int64 `json:"points"`
	id      string
	version uint64
	dirty   bool
}

func readProfile(ctx context.Context, tx storage.ReadTx, program, member string) (*profileRec, error) {
	id := program + "/" + member
	if err := storage.ValidateID("loyalty member", id); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	p := &profileRec{id: id}
	rec, err := tx.Get(ctx, loyaltyMembersCollection, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return p, nil
	case err != nil:
		return nil, err
	}
	if err := json.Unmarshal(rec.Body, &p.LoyaltyProfile); err != nil {
		return nil, fmt.Errorf("crm: loyalty member %s: %w", id, err)
	}
	p.version = rec.Version
	return p, nil
}

// loyaltyRun is one event being processed in a transaction.
type loyaltyRun struct {
	lp       *Loyalty
	tx       storage.ReadTx
	lt       *ledgerTx
	profiles map[string]*profileRec
	counters map[string]*counterRec
	journals map[string]loyalty.Account
	histErr  error // the first error a History method met
}

func (r *loyaltyRun) profile(ctx context.Context, member string) (*profileRec, error) {
	if p, ok := r.profiles[member]; ok {
		return p, nil
	}
	p, err := readProfile(ctx, r.tx, r.lp.p.Name, member)
	if err != nil {
		return nil, err
	}
	r.profiles[member] = p
	return p, nil
}

// member builds the rules' view of a member: the contact and order
// totals (baseMember), their profile and balance.
func (r *loyaltyRun) member(ctx context.Context, id string) (loyalty.Member, error) {
	m, err := baseMember(ctx, r.tx, id, r.lp.p.Currency)
	if err != nil {
		return m, err
	}
	p, err := r.profile(ctx, id)
	if err != nil {
		return m, err
	}
	m.Tier = p.Tier
	st, err := r.journal(ctx, id)
	if err != nil {
		return m, err
	}
	m.Balance = st.Balance
	if r.lp.enrich != nil {
		if err := r.lp.enrich(ctx, &m); err != nil {
			return m, err
		}
	}
	return m, nil
}

// baseMember is what the store knows of a member for rules and
// segments: the contact, if the member is one (tags, custom fields, a
// "birthday" custom field as YYYY-MM-DD, when it joined), and the totals
// of their orders in currency.
func baseMember(ctx context.Context, tx storage.ReadTx, id, currency string) (loyalty.Member, error) {
	m := loyalty.Member{ID: id}
	rec, err := tx.Get(ctx, contactsCollection, id)
	switch {
	case err == nil:
		var c Contact
		if err := json.Unmarshal(rec.Body, &c); err != nil {
			return m, fmt.Errorf("crm: contact %s: %w", id, err)
		}
		m.Tags, m.Custom, m.JoinedAt = c.Tags, c.Custom, c.CreatedAt
		if b, ok := c.Custom["birthday"].(string); ok {
			if t, err := time.Parse(time.DateOnly, b); err == nil {
				m.Birthday = t
			}
		}
	case !errors.Is(err, storage.ErrNotFound):
		return m, err
	}
	err = customerFacts(ctx, tx, id, func(f *OrderFact) error {
		if f.Total.Currency != currency {
			return nil
		}
		m.TotalSpent += f.Total.Amount
		if !f.Refund {
			m.OrderCount++
			if f.OrderedAt.After(m.LastOrderAt) {
				m.LastOrderAt = f.OrderedAt
			}
		}
		return nil
	})
	return m, err
}

// customerFacts calls fn for each order fact of a customer.
func customerFacts(ctx context.Context, tx storage.ReadTx, contact string, fn func(*OrderFact) error) error {
	q := storage.Query{Index: "customer_facts", Prefix: contact + sep, KeysOnly: true, Limit: storage.MaxScanLimit}
	return scanKeys(ctx, tx, ordersCollection, q, func(key, id string) error {
		f, err := parseOrderFact(key)
		if err != nil {
			return err
		}
		f.OrderID = id
		return fn(&f)
	})
}

// journal returns the member's ledger account with its journal, read
// once per run (before this run's own entries).
func (r *loyaltyRun) journal(ctx context.Context, member string) (loyalty.Account, error) {
	if a, ok := r.journals[member]; ok {
		return a, nil
	}
	id, err := r.lp.ledger.accountID(member)
	if err != nil {
		return loyalty.Account{}, err
	}
	a, err := r.lp.ledger.journalIn(ctx, r.tx, id, member)
	if err != nil {
		return loyalty.Account{}, err
	}
	if r.journals == nil {
		r.journals = map[string]loyalty.Account{}
	}
	r.journals[member] = a
	return a, nil
}

func (r *loyaltyRun) apply(ctx context.Context, e loyalty.Event, eff loyalty.Effect) error {
	switch eff.Kind {
	case loyalty.EffectPoints, loyalty.EffectPending:
		kind := loyalty.KindEarn
		if eff.Kind == loyalty.EffectPending {
			kind = loyalty.KindPending
		}
		_, err := r.lt.apply(ctx, eff.Member, loyalty.Op{Key: eff.Key, Kind: kind, Points: eff.Points, At: e.At,
			ExpiresAt: eff.ExpiresAt, ActivatesAt: eff.ActivatesAt, Partner: eff.Partner, Reason: eff.Source})
		if err != nil {
			return err
		}
		c, err := r.counter(ctx, eff.Source)
		if err != nil {
			return err
		}
		c.Points += eff.Points
		c.dirty = true
	case loyalty.EffectReverse:
		return r.reverse(ctx, e, eff)
	case loyalty.EffectPunch, loyalty.EffectReward, loyalty.EffectTier:
		p, err := r.profile(ctx, eff.Member)
		if err != nil {
			return err
		}
		switch eff.Kind {
		case loyalty.EffectPunch:
			if p.Punches == nil {
				p.Punches = map[string]int{}
			}
			p.Punches[eff.Source] = eff.Count
		case loyalty.EffectReward:
			p.Unlocked = append(p.Unlocked, eff.Reward)
		case loyalty.EffectTier:
			p.Tier = eff.Tier
		}
		p.dirty = true
	}
	return nil
}

func (r *loyaltyRun) counter(ctx context.Context, rule string) (*counterRec, error) {
	if c, ok := r.counters[rule]; ok {
		return c, nil
	}
	c := &counterRec{id: entryID(r.lp.p.Name, "rule\x00"+rule)}
	rec, err := r.tx.Get(ctx, loyaltyCountersCollection, c.id)
	switch {
	case err == nil:
		if err := json.Unmarshal(rec.Body, c); err != nil {
			return nil, fmt.Errorf("crm: loyalty counter %s: %w", rule, err)
		}
		c.version = rec.Version
	case !errors.Is(err, storage.ErrNotFound):
		return nil, err
	}
	r.counters[rule] = c
	return c, nil
}

func (r *loyaltyRun) commit(ctx context.Context) error {
	tx := r.lt.tx
	for _, p := range r.profiles {
		if !p.dirty {
			continue
		}
		body, err := json.Marshal(p.LoyaltyProfile)
		if err != nil {
			return err
		}
		if _, err := tx.Put(ctx, loyaltyMembersCollection, storage.Record{ID: p.id, Version: p.version, Body: body}); err != nil {
			return err
		}
	}
	for _, c := range r.counters {
		if !c.dirty {
			continue
		}
		body, err := json.Marshal(c)
		if err != nil {
			return err
		}
		if _, err := tx.Put(ctx, loyaltyCountersCollection, storage.Record{ID: c.id, Version: c.version, Body: body}); err != nil {
			return err
		}
	}
	return r.lt.commit(ctx)
}

// history is the run as loyalty.History, from the store.
func (r *loyaltyRun) history(ctx context.Context) loyalty.History { return runHistory{r, ctx} }

type runHistory struct {
	r   *loyaltyRun
	ctx context.Context
}

func (h runHistory) fail(err error) {
	if h.r.histErr == nil {
		h.r.histErr = err
	}
}

// awards calls fn for each of member's earn or pending entries that was
// not reversed.
func (h runHistory) awards(member string, fn func(e loyalty.Entry)) {
	j, err := h.r.journal(h.ctx, member)
	if err != nil {
		h.fail(err)
		return
	}
	// Awards count for what refunds left of them.
	back := loyalty.TakenBack(j.Journal)
	for _, e := range j.Journal {
		if k := e.Op.Kind; k != loyalty.KindEarn && k != loyalty.KindPending {
			continue
		}
		if taken := back[e.Op.Key]; taken < e.Op.Points {
			e.Op.Points -= taken
			fn(e)
		}
	}
}

func (h runHistory) RuleUsage(member, rule string, since time.Time) (int, int64) {
	var n int
	var pts int64
	h.awards(member, func(e loyalty.Entry) {
		if e.Op.Reason == rule && !e.Op.At.Before(since) {
			n++
			pts += e.Op.Points
		}
	})
	return n, pts
}

func (h runHistory) RuleTotal(rule string) int64 {
	c, err := h.r.counter(h.ctx, rule)
	if err != nil {
		h.fail(err)
		return 0
	}
	return c.Points
}

func (h runHistory) Punches(member, card string) int {
	p, err := h.r.profile(h.ctx, member)
	if err != nil {
		h.fail(err)
		return 0
	}
	return p.Punches[card]
}

func (h runHistory) Earned(member string, since time.Time) (int64, int64) {
	var pts, spent int64
	h.awards(member, func(e loyalty.Entry) {
		if !e.Op.At.Before(since) {
			pts += e.Op.Points
		}
	})
	err := customerFacts(h.ctx, h.r.tx, member, func(f *OrderFact) error {
		if f.Total.Currency == h.r.lp.p.Currency && !f.OrderedAt.Before(since) {
			spent += f.Total.Amount
		}
		return nil
	})
	if err != nil {
		h.fail(err)
	}
	return pts, spent
}

// OrderEvent turns an order into the loyalty event its placement is: an
// order, or a refund of RefundOf. Delivery lines without a category get
// the category "delivery", so programs can exclude them.
func OrderEvent(o Order) loyalty.Event {
	lo := &loyalty.Order{Number: o.Number, Currency: o.Currency, Total: o.Total.Amount, RefundOf: o.RefundOf}
	for _, l := range o.Lines {
		cat := l.Category
		if cat == "" && l.Delivery {
			cat = "delivery"
		}
		lo.Lines = append(lo.Lines, loyalty.Line{SKU: l.SKU, Category: cat, Quantity: l.Quantity, Amount: l.Quantity * l.UnitPrice.Amount})
	}
	e := loyalty.Event{ID: o.ID, Kind: "order", At: o.OrderedAt, Order: lo}
	if o.Refund {
		e.Kind = "refund"
	}
	return e
}

// EarnFromOrders subscribes the program to order.placed events in every
// tenant: each order with a customer is processed for that contact
// (OrderEvent), once, even when the event is delivered again. name names
// the subscription durably (see Subscription.Name).
func (e *Engine) EarnFromOrders(name string, p *loyalty.Program) error {
	return e.Subscribe(Subscription{Name: name, Events: []string{"order.placed"}, Handler: func(ctx context.Context, ev Event) error {
		t := e.Tenant(ev.Tenant)
		o, err := t.Orders().Get(ctx, ev.ID)
		if errors.Is(err, ErrNotFound) {
			return nil // deleted since
		}
		if err != nil {
			return err
		}
		if o.ContactID == "" {
			return nil
		}
		_, err = t.Loyalty(p).Process(ctx, o.ContactID, OrderEvent(o))
		if errors.Is(err, loyalty.ErrInvalid) {
			// A program that cannot take this order will not take it on
			// a retry either: say so and go on.
			e.log.Warn("loyalty: order not processed", "program", p.Name, "order", o.ID, "err", err)
			return nil
		}
		return err
	}})
}
