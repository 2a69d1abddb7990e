package crm_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

func TestEach(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	orders := env.engine.Default().Orders()
	start := env.clock.Now()
	var ids []string
	for i, n := range []string{"A1", "A2", "A3", "A4"} {
		o, err := orders.Create(ctx, crm.Order{
			Number: n, OrderedAt: start.Add(time.Duration(i) * time.Hour), Currency: "EUR",
			Lines: []crm.OrderLine{{SKU: "x", Quantity: 1, UnitPrice: crm.Money{Amount: 100}}},
			Meta:  crm.Meta{Custom: map[string]any{"shop": n[1:]}},
		})
		require.NoError(t, err)
		ids = append(ids, o.ID)
	}
	_, err := orders.Archive(ctx, ids[3], crm.ChangeOptions{})
	require.NoError(t, err)

	each := func(opts crm.EachOptions) []string {
		t.Helper()
		var got []string
		require.NoError(t, orders.Each(ctx, opts, func(o *crm.Order) error {
			got = append(got, o.Number)
			return nil
		}))
		return got
	}
	assert.Equal(t, []string{"A1", "A2", "A3"}, each(crm.EachOptions{}), "archived records are left out by default")
	assert.Equal(t, []string{"A1", "A2", "A3", "A4"}, each(crm.EachOptions{Archived: crm.ArchivedIncluded}))
	assert.Equal(t, []string{"A4"}, each(crm.EachOptions{Archived: crm.ArchivedOnly}))
	assert.Equal(t, []string{"A2", "A3"}, each(crm.EachOptions{
		By: "ordered_at", From: crm.SortableTime(start.Add(time.Hour)), To: crm.SortableTime(start.Add(3 * time.Hour)),
		Archived: crm.ArchivedIncluded,
	}), "From is inclusive, To exclusive")
	assert.Equal(t, []string{"A2"}, each(crm.EachOptions{By: "number", Value: "A2"}))
	assert.Equal(t, []string{"A3"}, each(crm.EachOptions{By: "custom.shop", From: "3"}))
	assert.Equal(t, []string{"A1", "A2"}, each(crm.EachOptions{By: "custom.shop", To: "3"}))
	assert.Empty(t, each(crm.EachOptions{By: "ordered_at", From: "b", To: "a"}))

	for name, bad := range map[string]crm.EachOptions{
		"value without by": {Value: "x"},
		"range without by": {From: "x"},
		"value and range":  {By: "number", Value: "A1", To: "B"},
		"archived":         {Archived: "sometimes"},
	} {
		assert.ErrorIs(t, orders.Each(ctx, bad, func(*crm.Order) error { return nil }), crm.ErrInvalid, name)
	}
	stop := errors.New("stop")
	require.ErrorIs(t, orders.Each(ctx, crm.EachOptions{}, func(*crm.Order) error { return stop }), stop)
}

func TestPipelinesList(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	for _, name := range []string{"b2c-deal", "b2b-deal", "lead"} {
		def, err := pipeline.Builtin(name)
		require.NoError(t, err)
		require.NoError(t, env.engine.Pipelines().Save(ctx, def))
	}
	names := func(kind pipeline.Kind) []string {
		defs, err := env.engine.Pipelines().List(ctx, kind)
		require.NoError(t, err)
		var out []string
		for _, d := range defs {
			out = append(out, d.Name)
		}
		return out
	}
	assert.Equal(t, []string{"b2b-deal", "b2c-deal"}, names(pipeline.KindDeal))
	assert.Equal(t, []string{"b2b-deal", "b2c-deal", "lead"}, names(""))
	assert.Empty(t, names(pipeline.KindCase))
}

// TestScanKeysAcrossPages checks a facts scan longer than one page: every
// fact once, in order, and a cancelled context or an error from fn ends
// it with that error.
func TestScanKeysAcrossPages(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	def, err := pipeline.Builtin("b2c-deal")
	require.NoError(t, err)
	require.NoError(t, env.engine.Pipelines().Save(ctx, def))
	const n = 25_000 // three pages of storage.MaxScanLimit
	deals := make([]crm.Deal, n)
	for i := range deals {
		deals[i] = crm.Deal{Title: "D", Pipeline: "b2c-deal", StageEnteredAt: env.clock.Now().Add(time.Duration(i-n) * time.Second)}
	}
	_, errs, err := env.engine.Deals().CreateEach(ctx, deals)
	require.NoError(t, err)
	require.NoError(t, errors.Join(errs...))

	count, last := 0, time.Time{}
	require.NoError(t, env.engine.Deals().ScanMoves(ctx, crm.MovesQuery{Pipeline: "b2c-deal"}, func(m *crm.StageMove) error {
		count++
		assert.False(t, m.At.Before(last), "time order")
		last = m.At
		return nil
	}))
	assert.Equal(t, n, count)

	cancelled, cancel := context.WithCancel(ctx)
	count = 0
	err = env.engine.Deals().ScanMoves(cancelled, crm.MovesQuery{Pipeline: "b2c-deal"}, func(*crm.StageMove) error {
		count++
		cancel()
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, count, n, "the scan stops")

	stop := errors.New("stop")
	count = 0
	err = env.engine.Deals().ScanMoves(ctx, crm.MovesQuery{Pipeline: "b2c-deal"}, func(*crm.StageMove) error {
		if count++; count == 15_000 {
			return stop
		}
		return nil
	})
	require.ErrorIs(t, err, stop)
	assert.Equal(t, 15_000, count, "fn is not called after its error")
}
