package crm_test

import (
	"context"
	"errors"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

func TestScanMoves(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	start := env.clock.Now()
	d := dealInPipeline(t, env)
	b2c, err := pipeline.Builtin("b2c-deal")
	require.NoError(t, err)
	require.NoError(t, env.engine.Pipelines().Save(ctx, b2c))
	deals := env.engine.Deals()

	env.clock.Advance(2 * time.Hour)
	_, err = deals.Move(ctx, d.ID, "proposal-prepared", crm.MoveOptions{})
	require.NoError(t, err)
	env.clock.Advance(3 * time.Hour)
	_, err = deals.ChangePipeline(ctx, d.ID, "b2c-deal", "offer-sent", crm.MoveOptions{})
	require.NoError(t, err)

	scan := func(q crm.MovesQuery) []crm.StageMove {
		var out []crm.StageMove
		require.NoError(t, deals.ScanMoves(ctx, q, func(m *crm.StageMove) error {
			out = append(out, *m)
			return nil
		}))
		return out
	}
	b2b := scan(crm.MovesQuery{Pipeline: "b2b-deal"})
	assert.Equal(t, []crm.StageMove{
		{RecordID: d.ID, Pipeline: "b2b-deal", To: "needs-clarification", At: start},
		{RecordID: d.ID, Pipeline: "b2b-deal", From: "needs-clarification", To: "proposal-prepared", At: start.Add(2 * time.Hour), InPrevious: 2 * time.Hour},
		{RecordID: d.ID, Pipeline: "b2b-deal", From: "proposal-prepared", At: start.Add(5 * time.Hour), InPrevious: 3 * time.Hour},
	}, b2b, "leaving for another pipeline is a move to \"\" in the old one")
	assert.Equal(t, []crm.StageMove{
		{RecordID: d.ID, Pipeline: "b2c-deal", To: "offer-sent", At: start.Add(5 * time.Hour)},
	}, scan(crm.MovesQuery{Pipeline: "b2c-deal"}), "and an entry with no previous stage in the new one")

	assert.Equal(t, b2b[1:2], scan(crm.MovesQuery{Pipeline: "b2b-deal", From: start.Add(time.Hour), To: start.Add(5 * time.Hour)}), "From is inclusive, To exclusive")
	assert.Empty(t, scan(crm.MovesQuery{Pipeline: "b2b-deal", From: start.Add(time.Hour), To: start}))
	assert.Empty(t, scan(crm.MovesQuery{Pipeline: "b2b"}), "a pipeline is matched whole, not by prefix")

	require.ErrorIs(t, deals.ScanMoves(ctx, crm.MovesQuery{}, nil), crm.ErrInvalid)
	stop := errors.New("stop")
	require.ErrorIs(t, deals.ScanMoves(ctx, crm.MovesQuery{Pipeline: "b2b-deal"}, func(*crm.StageMove) error { return stop }), stop)

	ann, err := env.engine.Default().Users().Create(ctx, crm.User{Name: "Ann"})
	require.NoError(t, err)
	owner := ann.ID
	won, err := deals.Create(ctx, crm.Deal{Meta: crm.Meta{Owner: owner}, Title: "Won", Pipeline: "b2c-deal", Stage: "won"})
	require.NoError(t, err)
	fresh, err := deals.Create(ctx, crm.Deal{Title: "Fresh", Pipeline: "b2c-deal"})
	require.NoError(t, err)
	positions := func() []crm.Position {
		var pos []crm.Position
		require.NoError(t, deals.ScanPositions(ctx, "b2c-deal", func(p *crm.Position) error {
			pos = append(pos, *p)
			return nil
		}))
		return pos
	}
	now := start.Add(5 * time.Hour)
	assert.Equal(t, []crm.Position{
		{RecordID: fresh.ID, Stage: "new", EnteredAt: now, DueAt: now.Add(24 * time.Hour)},
		{RecordID: d.ID, Stage: "offer-sent", EnteredAt: now, DueAt: start.Add(77 * time.Hour)},
		{RecordID: won.ID, Stage: "won", Owner: owner, EnteredAt: now},
	}, positions(), "by stage key; a terminal stage has no due time")
	env.clock.Advance(time.Hour)
	_, err = deals.Move(ctx, fresh.ID, "offer-sent", crm.MoveOptions{})
	require.NoError(t, err)
	assert.Equal(t, []crm.Position{
		{RecordID: d.ID, Stage: "offer-sent", EnteredAt: now, DueAt: start.Add(77 * time.Hour)},
		{RecordID: fresh.ID, Stage: "offer-sent", EnteredAt: now.Add(time.Hour), DueAt: now.Add(73 * time.Hour)},
		{RecordID: won.ID, Stage: "won", Owner: owner, EnteredAt: now},
	}, positions(), "a move updates the position")
	require.ErrorIs(t, deals.ScanPositions(ctx, "", nil), crm.ErrInvalid)
}

func TestScanOrderFacts(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	contacts := env.engine.Contacts()
	a, err := contacts.Create(ctx, crm.Contact{FirstName: "A"})
	require.NoError(t, err)
	b, err := contacts.Create(ctx, crm.Contact{FirstName: "B"})
	require.NoError(t, err)
	orders := env.engine.Orders()
	day := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	line := func(q, p int64) []crm.OrderLine {
		return []crm.OrderLine{{SKU: "x", Quantity: q, UnitPrice: crm.Money{Amount: p, Currency: "EUR"}}}
	}
	created := map[string]crm.Order{}
	for _, o := range []crm.Order{
		{Number: "1", ContactID: b.ID, OrderedAt: day.Add(48 * time.Hour), Currency: "EUR", Lines: line(2, 500)},
		{Number: "2", ContactID: a.ID, OrderedAt: day, Currency: "EUR", Lines: line(1, 1999)},
		{Number: "3", OrderedAt: day, Currency: "EUR", Lines: line(1, 100)},
		{Number: "C4", ContactID: b.ID, OrderedAt: day.Add(72 * time.Hour), Currency: "EUR", Lines: line(-1, 500), Refund: true},
		{Number: "5", ContactID: b.ID, OrderedAt: day, Currency: "EUR", Lines: line(3, 10)},
	} {
		o, err := orders.Create(ctx, o)
		require.NoError(t, err)
		created[o.Number] = o
	}
	var got []crm.OrderFact
	require.NoError(t, env.engine.Default().ScanOrderFacts(ctx, func(f *crm.OrderFact) error {
		got = append(got, *f)
		return nil
	}))
	fact := func(n string) crm.OrderFact {
		o := created[n]
		return crm.OrderFact{ContactID: o.ContactID, OrderID: o.ID, OrderedAt: o.OrderedAt, Refund: o.Refund, Total: o.Total}
	}
	// a's ID sorts before b's: UUIDv7s are time-ordered.
	assert.Equal(t, []crm.OrderFact{fact("2"), fact("5"), fact("1"), fact("C4")}, got,
		"grouped by customer, in time order; the order without a customer is left out")
	assert.Equal(t, int64(-500), got[3].Total.Amount)
	// One customer's facts share their ID's bytes, and one currency its
	// code's: consumers compare pointers.
	for i := 2; i < 4; i++ {
		assert.Same(t, unsafe.StringData(got[1].ContactID), unsafe.StringData(got[i].ContactID), "fact %d", i)
	}
	assert.NotSame(t, unsafe.StringData(got[0].ContactID), unsafe.StringData(got[1].ContactID))
	for i := 1; i < 4; i++ {
		assert.Same(t, unsafe.StringData(got[0].Total.Currency), unsafe.StringData(got[i].Total.Currency), "fact %d", i)
	}
}
