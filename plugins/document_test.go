package plugins_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
)

func TestTotalsRounding(t *testing.T) {
	d := plugins.DocumentData{Currency: "EUR", Scale: 2, Lines: []plugins.Line{
		// 1 × 0.05 at 10% tax: 0.005 rounds half up to 0.01.
		{Description: "a", Quantity: 1, UnitPrice: 5, TaxBP: 1000},
		// 3 × 0.33 = 0.99, 50% discount: 0.495 → 0.50 off, net 0.49.
		{Description: "b", Quantity: 3, UnitPrice: 33, DiscountBP: 5000},
		// A 100% discount leaves nothing.
		{Description: "c", Quantity: 1, UnitPrice: 999, DiscountBP: 10000, TaxBP: 1000},
	}}
	tot, err := d.Totals()
	require.NoError(t, err)
	assert.Equal(t, plugins.LineTotal{Amount: 5, Net: 5, Tax: 1, Gross: 6}, tot.Lines[0])
	assert.Equal(t, plugins.LineTotal{Amount: 99, Discount: 50, Net: 49, Gross: 49}, tot.Lines[1])
	assert.Equal(t, plugins.LineTotal{Amount: 999, Discount: 999}, tot.Lines[2])
	assert.Equal(t, int64(54), tot.Net)
	assert.Equal(t, int64(1), tot.Tax)
	assert.Equal(t, int64(55), tot.Gross)
	assert.Equal(t, []plugins.TaxAmount{{RateBP: 0, Net: 49}, {RateBP: 1000, Net: 5, Tax: 1}}, tot.TaxByRate)
}

func TestTotalsRefusesBadData(t *testing.T) {
	d := plugins.DocumentData{Currency: "EUR", Scale: 2, Lines: []plugins.Line{
		{Description: "big", Quantity: math.MaxInt64, UnitPrice: 2},
	}}
	_, err := d.Totals()
	require.ErrorIs(t, err, plugins.ErrRejected)
	assert.Contains(t, err.Error(), "lines[0]: amounts overflow")

	d.Lines = []plugins.Line{{Description: "x", Quantity: math.MaxInt64/2 + 1, UnitPrice: 1, TaxBP: 10000}}
	_, err = d.Totals()
	require.ErrorContains(t, err, "amounts overflow", "the tax pushes the gross over")

	d = plugins.DocumentData{Currency: "", Scale: 9, Lines: []plugins.Line{{Quantity: -1, UnitPrice: -1, DiscountBP: -1}}}
	err = d.Validate()
	require.ErrorIs(t, err, plugins.ErrRejected)
	for _, want := range []string{`currency "" is not`, "scale 9", "lines[0].description is required",
		"lines[0].quantity -1", "lines[0].unit_price -1", "lines[0].discount_bp -1"} {
		assert.Contains(t, err.Error(), want)
	}
	d.Lines = make([]plugins.Line, plugins.MaxLines+1)
	assert.ErrorContains(t, d.Validate(), "1001 lines, more than 1000")
}

func TestFormatAmount(t *testing.T) {
	for _, c := range []struct {
		minor    int64
		scale    int
		currency string
		want     string
	}{
		{0, 2, "EUR", "0.00 EUR"},
		{5, 2, "EUR", "0.05 EUR"},
		{-123456, 2, "EUR", "-1,234.56 EUR"},
		{1234567, 0, "JPY", "1,234,567 JPY"},
		{1234, 3, "KWD", "1.234 KWD"},
		{100, 2, "", "1.00"},
		{math.MinInt64, 2, "X", "-92,233,720,368,547,758.08 X"},
	} {
		assert.Equal(t, c.want, plugins.FormatAmount(c.minor, c.scale, c.currency))
	}
}

func TestDeliveryStatusNames(t *testing.T) {
	for s := plugins.StatusUnknown; s <= plugins.StatusFailed; s++ {
		got, ok := plugins.ParseDeliveryStatus(s.String())
		require.True(t, ok)
		assert.Equal(t, s, got)
	}
	_, ok := plugins.ParseDeliveryStatus("bounced")
	assert.False(t, ok)
	assert.Equal(t, "unknown", plugins.DeliveryStatus(42).String())
}
