package crm_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
)

func TestParseMoney(t *testing.T) {
	ok := []struct {
		in, cur string
		want    int64
		str     string
	}{
		{"2.55", "GBP", 255, "2.55 GBP"},
		{"2.5", "EUR", 250, "2.50 EUR"},
		{"-10", "USD", -1000, "-10.00 USD"},
		{"+0.01", "EUR", 1, "0.01 EUR"},
		{".5", "EUR", 50, "0.50 EUR"},
		{"7.", "EUR", 700, "7.00 EUR"},
		{"1.2500", "EUR", 125, "1.25 EUR"},
		{"1500", "JPY", 1500, "1500 JPY"},
		{"1.234", "KWD", 1234, "1.234 KWD"},
		{" 0 ", "EUR", 0, "0.00 EUR"},
		{"92233720368547758.07", "EUR", math.MaxInt64, "92233720368547758.07 EUR"},
	}
	for _, c := range ok {
		m, err := crm.ParseMoney(c.in, c.cur)
		require.NoError(t, err, c.in)
		assert.Equal(t, crm.Money{Amount: c.want, Currency: c.cur}, m, c.in)
		assert.Equal(t, c.str, m.String(), c.in)
	}
	bad := []struct{ in, cur string }{
		{"2.555", "EUR"}, {"1.5", "JPY"}, {"1,234.00", "EUR"}, {"1e3", "EUR"}, {"", "EUR"},
		{"-", "EUR"}, {".", "EUR"}, {"abc", "EUR"}, {"1.0.0", "EUR"}, {"99999999999999999999", "EUR"},
		{"1", "EURO"}, {"1", "eur"}, {"1", ""}, {"1", "XYZ"}, {"--1", "EUR"},
	}
	for _, c := range bad {
		_, err := crm.ParseMoney(c.in, c.cur)
		assert.ErrorIs(t, err, crm.ErrInvalid, "%q %q", c.in, c.cur)
	}
	assert.Equal(t, "-92233720368547758.08 EUR", crm.Money{Amount: math.MinInt64, Currency: "EUR"}.String())
	assert.Equal(t, "-0.05 EUR", crm.Money{Amount: -5, Currency: "EUR"}.String())
}

func TestMoneyArithmetic(t *testing.T) {
	eur := func(n int64) crm.Money { return crm.Money{Amount: n, Currency: "EUR"} }
	sum, err := eur(255).Add(eur(-55))
	require.NoError(t, err)
	assert.Equal(t, eur(200), sum)
	_, err = eur(1).Add(crm.Money{Amount: 1, Currency: "USD"})
	require.ErrorIs(t, err, crm.ErrCurrencyMismatch)
	_, err = eur(math.MaxInt64).Add(eur(1))
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = eur(0).Sub(eur(math.MinInt64))
	require.ErrorIs(t, err, crm.ErrInvalid)
	d, err := eur(500).Sub(eur(200))
	require.NoError(t, err)
	assert.Equal(t, eur(300), d)
	line, err := eur(255).Mul(12)
	require.NoError(t, err)
	assert.Equal(t, eur(3060), line)
	_, err = eur(math.MaxInt64 / 2).Mul(3)
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = eur(-(math.MaxInt64 / 2)).Mul(-3)
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = crm.NewMoney(5, "ZZZ")
	require.ErrorIs(t, err, crm.ErrInvalid)
	m, err := crm.NewMoney(5, "CHF")
	require.NoError(t, err)
	assert.False(t, m.IsZero())
}

func FuzzParseMoney(f *testing.F) {
	for _, s := range []string{"2.55", "-0.01", "1e9", "99999999999999999999.99", ".", "+."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := crm.ParseMoney(s, "EUR")
		if err != nil {
			return
		}
		back, err := crm.ParseMoney(m.String()[:len(m.String())-4], "EUR")
		if err != nil || back != m {
			t.Fatalf("%q → %v → %v, %v", s, m, back, err)
		}
	})
}
