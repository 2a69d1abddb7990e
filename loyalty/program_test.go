package loyalty_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/internal/expression"
	"github.com/rapportcrm/rapport/loyalty"
)

func coffee(t *testing.T) *loyalty.Program {
	t.Helper()
	data, err := os.ReadFile("../examples/loyalty/coffee.yaml")
	require.NoError(t, err)
	p, err := loyalty.Load("coffee.yaml", data, func() time.Time { return day(0) })
	require.NoError(t, err)
	return p
}

func order(id string, at time.Time, lines ...loyalty.Line) loyalty.Event {
	o := &loyalty.Order{Currency: "EUR", Lines: lines}
	for _, l := range lines {
		o.Total += l.Amount
	}
	return loyalty.Event{ID: id, Kind: "order", At: at, Order: o}
}

func line(sku, category string, amount int64) loyalty.Line {
	return loyalty.Line{SKU: sku, Category: category, Quantity: 1, Amount: amount}
}

func effects(r loyalty.Result, kind loyalty.EffectKind) []loyalty.Effect {
	var out []loyalty.Effect
	for _, e := range r.Effects {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func TestEarningRules(t *testing.T) {
	p := coffee(t)
	m := loyalty.Member{ID: "ann", Tier: "green"}

	// 12.50 of cake and 5.00 of delivery: the delivery earns nothing, so
	// 12 points (whole euros), pending for the 14-day return period.
	r, err := p.Evaluate(m, order("o1", day(1), line("cake", "food", 1250), line("ship", "delivery", 500)), nil)
	require.NoError(t, err)
	pts := effects(r, loyalty.EffectPending)
	require.Len(t, pts, 1)
	assert.Equal(t, loyalty.Effect{Kind: loyalty.EffectPending, Source: "base", Member: "ann", Key: "o1/base/ann", Points: 12,
		ExpiresAt:   time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC), // 12 months on, rounded to the end of that month
		ActivatesAt: day(15)}, pts[0])

	// Beans earn double: 30.00 of beans + 10.00 of cake = 40 points, of
	// which the beans' share (30) is doubled: 70.
	r, err = p.Evaluate(m, order("o2", day(1), line("b", "beans", 3000), line("c", "food", 1000)), nil)
	require.NoError(t, err)
	assert.Equal(t, int64(70), r.Points("ann"))

	// Gold earns 150%: 40 → 60, then the beans' share of 60 (45) doubled: 105.
	gold := m
	gold.Tier = "gold"
	r, err = p.Evaluate(gold, order("o3", day(1), line("b", "beans", 3000), line("c", "food", 1000)), nil)
	require.NoError(t, err)
	assert.Equal(t, int64(105), r.Points("ann"))

	// Below the 5.00 minimum: nothing, and the trace says why.
	r, err = p.Evaluate(m, order("o4", day(1), line("c", "food", 499)), nil)
	require.NoError(t, err)
	assert.Zero(t, r.Points("ann"))
	assert.Contains(t, r.Trace, loyalty.Step{Source: "base", Matched: false, Reason: "order total 499 is below the minimum 500"})

	// An order in another currency earns nothing.
	usd := order("o5", day(1), line("c", "food", 5000))
	usd.Order.Currency = "USD"
	r, err = p.Evaluate(m, usd, nil)
	require.NoError(t, err)
	assert.Zero(t, r.Points("ann"))
	assert.Equal(t, "the order is in USD, the program in EUR", r.Trace[0].Reason)
}

func TestThresholdsDiscountsAndPunchCards(t *testing.T) {
	p := coffee(t)
	b := loyalty.NewBook(p)
	b.SetMember(loyalty.Member{ID: "ann", Tier: "green"})
	off := func(total int64) int64 {
		r, err := p.Evaluate(loyalty.Member{ID: "ann"}, order("x", day(1), line("c", "food", total)), nil)
		require.NoError(t, err)
		var n int64
		for _, e := range effects(r, loyalty.EffectDiscount) {
			n += e.Amount
		}
		return n
	}
	assert.Equal(t, int64(1000), off(9999), "up to 99.99: 10 off")
	assert.Equal(t, int64(2000), off(10000), "100.00 to 199.99: 20 off")
	assert.Equal(t, int64(2000), off(19999))
	assert.Equal(t, int64(5000), off(20000), "200 and more: 50 off")

	// The 10th fill-up unlocks a free coffee; a coffee-only order does
	// not punch the card.
	for i := 1; i <= 10; i++ {
		_, err := b.Process("ann", order("fill-"+itoa(i), day(i), line("diesel", "fuel", 6000)))
		require.NoError(t, err)
		if i == 5 {
			_, err := b.Process("ann", order("coffee-only", day(i), line("latte", "food", 600)))
			require.NoError(t, err)
		}
	}
	assert.Equal(t, []string{"free-coffee"}, b.Unlocked("ann"))

	// 20 orders make a regular: 5% off.
	r, err := p.Evaluate(loyalty.Member{ID: "bob", OrderCount: 20}, order("y", day(1), line("c", "food", 1000)), nil)
	require.NoError(t, err)
	assert.Contains(t, r.Effects, loyalty.Effect{Kind: loyalty.EffectDiscount, Source: "regulars", Member: "bob", Percent: 5})
}

func itoa(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }

func TestLimitsBudgetsBirthdaysReferralsPartners(t *testing.T) {
	p := coffee(t)
	b := loyalty.NewBook(p)
	b.SetMember(loyalty.Member{ID: "ann", Tier: "green"})
	visit := func(id string, at time.Time) int64 {
		r, err := b.Process("ann", loyalty.Event{ID: id, Kind: "visit", At: at})
		require.NoError(t, err)
		return r.Points("ann")
	}
	assert.Equal(t, int64(25), visit("v1", day(0)))  // 10 January
	assert.Equal(t, int64(0), visit("v2", day(5)))   // still January
	assert.Equal(t, int64(25), visit("v3", day(22))) // 1 February
	assert.Equal(t, int64(50), b.Ledger.Balance("ann"))

	// The survey rule's budget of 50 is shared by everyone: 20, 20, 10, 0.
	var got []int64
	for i, who := range []string{"a", "b", "c", "d"} {
		r, err := b.Process(who, loyalty.Event{ID: "s" + itoa(i), Kind: "survey", At: day(1), Score: 9})
		require.NoError(t, err)
		got = append(got, r.Points(who))
	}
	assert.Equal(t, []int64{20, 20, 10, 0}, got)

	// Birthday: 100 for members with a tier, expiring after a month.
	r, err := b.Process("ann", loyalty.Event{ID: "bd", Kind: "birthday", At: day(30)})
	require.NoError(t, err)
	require.Len(t, effects(r, loyalty.EffectPoints), 1)
	assert.Equal(t, int64(100), effects(r, loyalty.EffectPoints)[0].Points)
	assert.Equal(t, day(30).AddDate(0, 1, 0), effects(r, loyalty.EffectPoints)[0].ExpiresAt)

	// A referral pays the referrer and welcomes the new member.
	r, err = b.Process("new", loyalty.Event{ID: "ref1", Kind: "referral", At: day(2), Referrer: "ann"})
	require.NoError(t, err)
	assert.Equal(t, int64(300), r.Points("ann"))
	assert.Equal(t, int64(150), r.Points("new"))

	// Points earned at a coalition partner carry the partner into the
	// ledger, for settlement.
	e := order("fuel1", day(3), line("petrol", "fuel", 8000))
	e.Partner = "fuelco"
	_, err = b.Process("ann", e)
	require.NoError(t, err)
	acct, _ := b.Ledger.Account("ann")
	var partner int64
	for _, l := range acct.Lots {
		if l.Partner == "fuelco" {
			partner += l.Points
		}
	}
	assert.Equal(t, int64(40+80), partner, "both the partner rule (80.00/2) and the pending base points (80) are the partner's")
}

func TestPendingRefundAndExpiry(t *testing.T) {
	p := coffee(t)
	b := loyalty.NewBook(p)
	_, err := b.Process("ann", order("o1", day(0), line("b", "food", 20000)))
	require.NoError(t, err)
	a, _ := b.Ledger.Account("ann")
	assert.Equal(t, int64(200), a.Pending)
	assert.Equal(t, int64(0), a.Balance)

	// Refunded within the return period: the pending points go.
	_, err = b.Process("ann", loyalty.Event{ID: "r1", Kind: "refund", At: day(3), Order: &loyalty.Order{Currency: "EUR", Total: -20000, RefundOf: "o1"}})
	require.NoError(t, err)
	a, _ = b.Ledger.Account("ann")
	assert.Equal(t, int64(0), a.Pending)

	_, err = b.Process("ann", order("o2", day(0), line("b", "food", 30000)))
	require.NoError(t, err)
	require.NoError(t, b.Activate(day(13)))
	assert.Equal(t, int64(0), b.Ledger.Balance("ann"), "not before the 14 days")
	require.NoError(t, b.Activate(day(14)))
	assert.Equal(t, int64(300), b.Ledger.Balance("ann"))
	_, err = b.Redeem("red1", "ann", "free-coffee", 0, day(20))
	require.NoError(t, err)
	// Earned 10 January 2026: expires at the end of January 2027.
	require.NoError(t, b.Activate(time.Date(2027, 1, 31, 23, 0, 0, 0, time.UTC)))
	assert.Equal(t, int64(50), b.Ledger.Balance("ann"))
	require.NoError(t, b.Activate(time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)))
	assert.Equal(t, int64(0), b.Ledger.Balance("ann"), "the 50 left expired")
	a, _ = b.Ledger.Account("ann")
	require.NoError(t, a.Check())
}

func TestRedeem(t *testing.T) {
	p := coffee(t)
	b := loyalty.NewBook(p)
	_, err := b.Ledger.Apply("ann", loyalty.Op{Key: "seed", Kind: loyalty.KindAdjust, Points: 90, At: day(0), Reason: "test"})
	require.NoError(t, err)
	_, err = b.Redeem("r0", "ann", "free-coffee", 0, day(1))
	require.ErrorIs(t, err, loyalty.ErrInsufficientPoints, "below the 100 minimum balance")
	_, err = b.Ledger.Apply("ann", loyalty.Op{Key: "seed2", Kind: loyalty.KindAdjust, Points: 1000, At: day(0), Reason: "test"})
	require.NoError(t, err)
	e, err := b.Redeem("r1", "ann", "five-off", 0, day(1))
	require.NoError(t, err)
	assert.Equal(t, int64(-400), e.Delta)
	// Pay 2.50 of an order with points, at 2 points per cent.
	e, err = b.Redeem("r2", "ann", "pay-with-points", 250, day(1))
	require.NoError(t, err)
	assert.Equal(t, int64(-500), e.Delta)
	again, err := b.Redeem("r2", "ann", "pay-with-points", 250, day(1))
	require.NoError(t, err)
	assert.Equal(t, e, again)
	_, err = b.Redeem("r2", "ann", "five-off", 0, day(1))
	require.ErrorIs(t, err, loyalty.ErrIdempotencyConflict, "the same key for another reward")
	assert.Equal(t, int64(190), b.Ledger.Balance("ann"))
	_, err = b.Redeem("r3", "ann", "lounge", 0, day(1))
	require.ErrorIs(t, err, loyalty.ErrInvalid, "gold only")
	_, err = b.Redeem("r4", "ann", "yacht", 0, day(1))
	require.ErrorIs(t, err, loyalty.ErrNotFound)
	_, err = b.Redeem("r5", "ann", "five-off", 0, day(1))
	require.ErrorIs(t, err, loyalty.ErrInsufficientPoints)
	assert.Equal(t, int64(190), b.Ledger.Balance("ann"))
}

func TestTiers(t *testing.T) {
	p := coffee(t)
	b := loyalty.NewBook(p)
	b.SetMember(loyalty.Member{ID: "ann", Tier: "green"})
	// 450 points over the window: still green; the next order of 60
	// reaches 500 and upgrades at once.
	_, err := b.Process("ann", loyalty.Event{ID: "ref", Kind: "referral", At: day(0), Referrer: "x"})
	require.NoError(t, err)
	_, err = b.Ledger.Apply("ann", loyalty.Op{Key: "adj", Kind: loyalty.KindAdjust, Points: 1, At: day(0), Reason: "adjustments do not count for tiers"})
	require.NoError(t, err)
	for i := range 3 {
		_, err := b.Process("ann", order("o"+itoa(i), day(i+1), line("c", "food", 10000)))
		require.NoError(t, err)
	}
	assert.Equal(t, "green", b.Member("ann").Tier)
	st := p.TierStatus(b.Member("ann"), day(5), historyOf(b))
	assert.Equal(t, loyalty.TierStatus{Tier: "green", Qualifies: "green", Next: "silver", PointsNext: 50}, st)
	r, err := b.Process("ann", order("o9", day(5), line("c", "food", 6000)))
	require.NoError(t, err)
	assert.Contains(t, r.Effects, loyalty.Effect{Kind: loyalty.EffectTier, Source: "silver", Member: "ann", Tier: "silver", FromTier: "green"})
	assert.Equal(t, "silver", b.Member("ann").Tier)

	// A year on, nothing earned in the window: one tier down per review
	// (one_down): silver → green.
	st = p.TierStatus(b.Member("ann"), day(400), historyOf(b))
	assert.Equal(t, int64(500), st.PointsKeep)
	changes := b.ReviewTiers(day(400))
	require.Len(t, changes, 1)
	assert.Equal(t, "green", changes[0].Tier)

	// The other policies.
	for policy, want := range map[loyalty.Downgrade]string{loyalty.DowngradeNever: "gold", loyalty.DowngradeOneDown: "silver", loyalty.DowngradePeriodEnd: "green"} {
		p2 := *p
		p2.Downgrade = policy
		eff, ok := p2.ReviewTier(loyalty.Member{ID: "zed", Tier: "gold"}, day(400), nil)
		if want == "gold" {
			assert.False(t, ok, policy)
			continue
		}
		require.True(t, ok, policy)
		assert.Equal(t, want, eff.Tier, policy)
	}
}

// historyOf exposes a Book's history to TierStatus.
func historyOf(b *loyalty.Book) loyalty.History { return b.History() }

func TestLoadErrors(t *testing.T) {
	_, err := loyalty.Load("empty.yaml", nil, nil)
	require.ErrorIs(t, err, loyalty.ErrInvalid)
	assert.Contains(t, err.Error(), "empty.yaml")

	_, err = loyalty.Load("x.yaml", []byte("name: x\ncurrency: EUR\nrulez: []\n"), nil)
	require.ErrorIs(t, err, loyalty.ErrInvalid)
	assert.Contains(t, err.Error(), "rulez")

	src := `name: bad
currency: euro
rules:
  - name: a
    on: [order]
    points: order.totl / 100
  - name: a
    on: [order]
    when: order.total
    points: "1"
    limit: {period: 2Q}
  - name: b
    points: repeat("x", 10)
tiers:
  - {name: gold, min_points: 10}
  - {name: silver, min_points: 5}
rewards:
  - {name: r, kind: car, cost: 0}
punch_cards:
  - {name: p, on: [order], punches: 1, reward: none}
`
	_, err = loyalty.Load("bad.yaml", []byte(src), nil)
	require.ErrorIs(t, err, loyalty.ErrInvalid)
	var pe *loyalty.ProgramError
	require.ErrorAs(t, err, &pe)
	msg := err.Error()
	for _, want := range []string{
		`currency "euro"`,
		"rule a.points (line 1, column 7)", // order.totl: unknown field
		`rule "a" is defined twice`,
		"rule a.when",
		`period "2Q"`,
		`rule "b": on:`,
		"rule b.points",
		`tier "silver": tiers are listed from the lowest`,
		`reward "r": kind "car"`,
		`reward "r": cost must be positive`,
		`punch card "p": needs events`,
		`punch card "p": unknown reward "none"`,
	} {
		assert.Contains(t, msg, want)
	}
	var ee *expression.Error
	require.True(t, errors.As(err, &ee), "expression errors are reachable with errors.As")
	assert.Equal(t, "a.points", ee.Rule)
	assert.Equal(t, 1, strings.Count(msg, "bad.yaml"))
}

func TestEvaluateRefusesBadEvents(t *testing.T) {
	p := coffee(t)
	m := loyalty.Member{ID: "ann"}
	for name, e := range map[string]loyalty.Event{
		"no id":        {Kind: "visit", At: day(0)},
		"no kind":      {ID: "e", At: day(0)},
		"no time":      {ID: "e", Kind: "visit"},
		"order, none":  {ID: "e", Kind: "order", At: day(0)},
		"refund, none": {ID: "e", Kind: "refund", At: day(0), Order: &loyalty.Order{Currency: "EUR"}},
		"no currency":  {ID: "e", Kind: "order", At: day(0), Order: &loyalty.Order{Total: 5}},
		"huge order":   {ID: "e", Kind: "order", At: day(0), Order: &loyalty.Order{Currency: "EUR", Lines: make([]loyalty.Line, 1001)}},
	} {
		_, err := p.Evaluate(m, e, nil)
		assert.ErrorIs(t, err, loyalty.ErrInvalid, name)
	}
	_, err := p.Evaluate(loyalty.Member{}, loyalty.Event{ID: "e", Kind: "visit", At: day(0)}, nil)
	assert.ErrorIs(t, err, loyalty.ErrInvalid)
	var raw loyalty.Program
	_, err = raw.Evaluate(m, loyalty.Event{ID: "e", Kind: "visit", At: day(0)}, nil)
	assert.ErrorIs(t, err, loyalty.ErrInvalid, "not compiled")
}

// Rules reach order lines by their expr names through sumBy and countBy.
func TestSumByOverOrderLines(t *testing.T) {
	p := &loyalty.Program{Name: "x", Currency: "EUR", Rules: []loyalty.Rule{{Name: "fuel", On: []string{"order"},
		When: `countBy(order.lines, "category")["fuel"] >= 2`, Points: `sumBy(filter(order.lines, .category == "fuel"), "amount") / 100`}}}
	require.NoError(t, p.Compile(nil))
	r, err := p.Evaluate(loyalty.Member{ID: "ann"}, order("o", day(0), line("d", "fuel", 5000), line("p", "fuel", 2500), line("c", "food", 900)), nil)
	require.NoError(t, err)
	assert.Equal(t, int64(75), r.Points("ann"))
}
