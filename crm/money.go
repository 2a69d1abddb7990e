package crm

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"golang.org/x/text/currency"
)

// ErrCurrencyMismatch means two amounts in different currencies were
// combined. Rapport never adds currencies silently.
var ErrCurrencyMismatch = errors.New("crm: currency mismatch")

// Money is an exact amount: an integer number of the currency's minor units
// (cents for EUR, yen for JPY, fils for KWD) and an ISO 4217 code.
type Money struct {
	// Amount in minor units.
	Amount int64 `json:"amount"`
	// Currency is an ISO 4217 code such as "EUR".
	Currency string `json:"currency"`
}

// CurrencyScale returns the number of decimals of an ISO 4217 currency
// (2 for EUR, 0 for JPY, 3 for KWD), or an error for an unknown code.
func CurrencyScale(code string) (int, error) {
	u, err := currency.ParseISO(code)
	if err != nil || u.String() != code {
		return 0, fmt.Errorf("%w: %q is not an ISO 4217 currency code", ErrInvalid, code)
	}
	if u == currency.XXX || u == currency.XTS {
		return 0, fmt.Errorf("%w: %q is the ISO 4217 code for no currency or for testing, not a currency", ErrInvalid, code)
	}
	scale, _ := currency.Standard.Rounding(u)
	return scale, nil
}

// NewMoney returns amount minor units of currency, checking the code.
func NewMoney(amount int64, code string) (Money, error) {
	if _, err := CurrencyScale(code); err != nil {
		return Money{}, err
	}
	return Money{Amount: amount, Currency: code}, nil
}

// ParseMoney reads a decimal amount such as "2.55", "-10" or "1234.5" in
// the given currency into exact minor units. It accepts an optional sign,
// digits and at most as many decimals as the currency has (extra trailing
// zeros are fine); anything that would need rounding, thousands separators
// or exponents is an error.
func ParseMoney(s, code string) (Money, error) {
	scale, err := CurrencyScale(code)
	if err != nil {
		return Money{}, err
	}
	bad := func(why string) (Money, error) {
		return Money{}, fmt.Errorf("%w: amount %q in %s: %s", ErrInvalid, s, code, why)
	}
	t := strings.TrimSpace(s)
	neg := false
	if t != "" && (t[0] == '-' || t[0] == '+') {
		neg = t[0] == '-'
		t = t[1:]
	}
	whole, frac, hasDot := strings.Cut(t, ".")
	if whole == "" && (!hasDot || frac == "") {
		return bad("no digits")
	}
	if !digits(whole) || !digits(frac) {
		return bad("want digits with an optional sign and decimal point")
	}
	trimmed := strings.TrimRight(frac, "0")
	if len(trimmed) > scale {
		return bad(fmt.Sprintf("%s has %d decimals; this needs rounding", code, scale))
	}
	frac = trimmed + strings.Repeat("0", scale-len(trimmed))
	if whole == "" {
		whole = "0"
	}
	n, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil {
		return bad("out of range")
	}
	if neg {
		n = -n
	}
	return Money{Amount: n, Currency: code}, nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Add returns m + o; the currencies must be the same.
func (m Money) Add(o Money) (Money, error) {
	if m.Currency != o.Currency {
		return Money{}, fmt.Errorf("%w: %s + %s", ErrCurrencyMismatch, m.Currency, o.Currency)
	}
	if (o.Amount > 0 && m.Amount > math.MaxInt64-o.Amount) || (o.Amount < 0 && m.Amount < math.MinInt64-o.Amount) {
		return Money{}, fmt.Errorf("%w: %s + %s overflows", ErrInvalid, m, o)
	}
	return Money{Amount: m.Amount + o.Amount, Currency: m.Currency}, nil
}

// Sub returns m - o; the currencies must be the same.
func (m Money) Sub(o Money) (Money, error) {
	if o.Amount == math.MinInt64 {
		return Money{}, fmt.Errorf("%w: %s - %s overflows", ErrInvalid, m, o)
	}
	return m.Add(Money{Amount: -o.Amount, Currency: o.Currency})
}

// Mul returns m times an integer quantity, for example a line total.
func (m Money) Mul(q int64) (Money, error) {
	if q != 0 && (m.Amount > math.MaxInt64/abs(q) || m.Amount < -(math.MaxInt64/abs(q))) {
		return Money{}, fmt.Errorf("%w: %s × %d overflows", ErrInvalid, m, q)
	}
	return Money{Amount: m.Amount * q, Currency: m.Currency}, nil
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// IsZero reports whether the amount is zero.
func (m Money) IsZero() bool { return m.Amount == 0 }

// String formats the amount with the currency's decimals: "2.55 EUR".
func (m Money) String() string {
	scale, err := CurrencyScale(m.Currency)
	if err != nil {
		return fmt.Sprintf("%d (minor units) %s", m.Amount, m.Currency)
	}
	sign := ""
	u := uint64(m.Amount)
	if m.Amount < 0 {
		sign, u = "-", uint64(-(m.Amount+1))+1
	}
	s := strconv.FormatUint(u, 10)
	if scale == 0 {
		return sign + s + " " + m.Currency
	}
	if len(s) <= scale {
		s = strings.Repeat("0", scale-len(s)+1) + s
	}
	return sign + s[:len(s)-scale] + "." + s[len(s)-scale:] + " " + m.Currency
}
