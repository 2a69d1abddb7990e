package crm_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/analytics"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/loyalty"
)

func coffeeProgram(t *testing.T) *loyalty.Program {
	t.Helper()
	data, err := os.ReadFile("../examples/loyalty/coffee.yaml")
	require.NoError(t, err)
	p, err := loyalty.Load("coffee.yaml", data, nil)
	require.NoError(t, err)
	return p
}

func foodOrder(contact, number string, at time.Time, cents int64) crm.Order {
	return crm.Order{Number: number, ContactID: contact, OrderedAt: at, Currency: "EUR",
		Lines: []crm.OrderLine{{SKU: "cake", Category: "food", Quantity: 1, UnitPrice: crm.Money{Amount: cents, Currency: "EUR"}}}}
}

// TestLoyaltyThroughTheEngine earns from orders as they are created,
// activates pending points with the daily job, and takes them back on a
// refund, with every step in the store.
func TestLoyaltyThroughTheEngine(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	p := coffeeProgram(t)
	require.NoError(t, env.engine.EarnFromOrders("loyalty-beans", p))
	tn := env.engine.Default()
	ann, err := tn.Contacts().Create(ctx, crm.Contact{FirstName: "Ann", Meta: crm.Meta{Tags: []string{"vip"}}})
	require.NoError(t, err)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	o1, err := tn.Orders().Create(ctx, foodOrder(ann.ID, "1001", at, 30000))
	require.NoError(t, err)
	lp := tn.Loyalty(p)
	require.Eventually(t, func() bool {
		st, err := lp.Ledger().State(ctx, ann.ID)
		return err == nil && st.Pending == 300
	}, 10*time.Second, 10*time.Millisecond, "the order earns 300 pending points")

	// The daily job: nothing before the 14 days, then the points are
	// spendable.
	n, err := lp.Ledger().RunDue(ctx, at.AddDate(0, 0, 13))
	require.NoError(t, err)
	assert.Zero(t, n)
	n, err = lp.Ledger().RunDue(ctx, at.AddDate(0, 0, 14))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	st, err := lp.Ledger().State(ctx, ann.ID)
	require.NoError(t, err)
	assert.Equal(t, int64(300), st.Balance)

	// The rules see the contact's tags and order totals.
	m, err := lp.Member(ctx, ann.ID)
	require.NoError(t, err)
	assert.Equal(t, []string{"vip"}, m.Tags)
	assert.Equal(t, int64(30000), m.TotalSpent)
	assert.Equal(t, 1, m.OrderCount)
	assert.Equal(t, int64(300), m.Balance)

	// Refunds of the order take the points back in proportion: a third,
	// then the rest.
	refund := func(number string, day int, cents int64) {
		r := foodOrder(ann.ID, number, at.AddDate(0, 0, day), cents)
		r.Refund, r.RefundOf, r.Lines[0].Quantity = true, o1.ID, -1
		_, err := tn.Orders().Create(ctx, r)
		require.NoError(t, err)
	}
	refund("C1001", 20, 10000)
	var j loyalty.Account
	require.Eventually(t, func() bool {
		j, err = lp.Ledger().Journal(ctx, ann.ID)
		return err == nil && len(j.Journal) == 3
	}, 10*time.Second, 10*time.Millisecond, "the refund reverses a third of the order's points")
	assert.Equal(t, int64(200), j.Balance)
	prof, err := lp.Profile(ctx, ann.ID)
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{o1.ID: 10000}, prof.Refunded)
	refund("C1002", 21, 20000)
	require.Eventually(t, func() bool {
		j, err = lp.Ledger().Journal(ctx, ann.ID)
		return err == nil && len(j.Journal) == 4
	}, 10*time.Second, 10*time.Millisecond, "the second refund reverses the rest")
	assert.Zero(t, j.Balance)
	require.NoError(t, j.Check())
	assert.Equal(t, []loyalty.Kind{loyalty.KindPending, loyalty.KindActivate, loyalty.KindReverse, loyalty.KindReverse}, kinds(j.Journal))
	assert.Equal(t, []int64{100, 200}, []int64{j.Journal[2].Op.Points, j.Journal[3].Op.Points})
	l, ok := j.Lot(j.Journal[0].Op.Key)
	require.True(t, ok)
	assert.True(t, l.Reversed)
}

func kinds(es []loyalty.Entry) []loyalty.Kind {
	var out []loyalty.Kind
	for _, e := range es {
		out = append(out, e.Op.Kind)
	}
	return out
}

// TestLoyaltyProcessUsesStoredHistory checks limits, budgets, punch
// cards and tiers against what the store remembers, and that an event is
// processed once.
func TestLoyaltyProcessUsesStoredHistory(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	lp := env.engine.Default().Loyalty(coffeeProgram(t))
	at := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	visit := func(id string, when time.Time) loyalty.Result {
		r, err := lp.Process(ctx, "ann", loyalty.Event{ID: id, Kind: "visit", At: when})
		require.NoError(t, err)
		return r
	}
	assert.Equal(t, int64(25), visit("v1", at).Points("ann"))
	assert.Zero(t, visit("v2", at.AddDate(0, 0, 5)).Points("ann"), "one visit bonus a month")
	again := visit("v1", at)
	assert.Equal(t, int64(25), again.Points("ann"), "a processed event returns its first result")
	st, err := lp.Ledger().State(ctx, "ann")
	require.NoError(t, err)
	assert.Equal(t, int64(25), st.Balance, "and is applied once")

	// The survey budget (50) is shared by every member.
	var got []int64
	for i, m := range []string{"a", "b", "c", "d"} {
		r, err := lp.Process(ctx, m, loyalty.Event{ID: "s" + string(rune('0'+i)), Kind: "survey", At: at, Score: 9})
		require.NoError(t, err)
		got = append(got, r.Points(m))
	}
	assert.Equal(t, []int64{20, 20, 10, 0}, got)

	// Punches are remembered between events.
	for i := range 10 {
		e := loyalty.Event{ID: "fill" + string(rune('a'+i)), Kind: "order", At: at.Add(time.Duration(i) * time.Hour),
			Order: &loyalty.Order{Currency: "EUR", Total: 6000, Lines: []loyalty.Line{{SKU: "diesel", Category: "fuel", Quantity: 40, Amount: 6000}}}}
		_, err := lp.Process(ctx, "bob", e)
		require.NoError(t, err)
	}
	prof, err := lp.Profile(ctx, "bob")
	require.NoError(t, err)
	assert.Equal(t, []string{"free-coffee"}, prof.Unlocked)
	assert.Equal(t, 10, prof.Punches["fill-ups"])
	// 10 × 60 pending points reach silver (500 over 12 months).
	assert.Equal(t, "silver", prof.Tier)

	_, err = lp.Process(ctx, "", loyalty.Event{ID: "x", Kind: "visit", At: at})
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = lp.Process(ctx, "ann", loyalty.Event{Kind: "visit", At: at})
	require.ErrorIs(t, err, loyalty.ErrInvalid)
}

// Rules and segments see RFM scores from an analytics report.
func TestLoyaltyWithRFMScores(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	p, err := loyalty.Load("rfm.yaml", []byte(`
name: rfm
currency: EUR
rules:
  - {name: champions, on: [visit], when: member.r >= 4 && member.f >= 4, points: "100"}
`), nil)
	require.NoError(t, err)
	rep := &analytics.RFM{Rows: []analytics.RFMRow{{CustomerID: "ann", R: 5, F: 4, M: 3}, {CustomerID: "bob", R: 2, F: 5, M: 5}}}
	lp := env.engine.Default().Loyalty(p).WithMember(rep.FillMember)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for member, want := range map[string]int64{"ann": 100, "bob": 0, "cid": 0} {
		r, err := lp.Process(ctx, member, loyalty.Event{ID: "v-" + member, Kind: "visit", At: at})
		require.NoError(t, err)
		assert.Equal(t, want, r.Points(member), member)
	}
	m, err := lp.Member(ctx, "ann")
	require.NoError(t, err)
	assert.Equal(t, [3]int{5, 4, 3}, [3]int{m.R, m.F, m.M})
}
