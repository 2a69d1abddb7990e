package analytics

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/rapportcrm/rapport/crm"
)

// currencyPick decides which amounts a money report adds up: those in
// the currency the query names or, when it names none, those in the one
// currency the data is in (a second currency is then an error: amounts
// are never converted).
type currencyPick struct {
	currency string
	fixed    bool
	option   string // the query field that names the currency, for errors
}

func newCurrencyPick(currency, option string) (*currencyPick, error) {
	if currency != "" {
		if _, err := crm.CurrencyScale(currency); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, option, err)
		}
	}
	return &currencyPick{currency: currency, fixed: currency != "", option: option}, nil
}

// keep reports whether m counts: false for the zero Money (no amount) and
// for amounts in another currency than a fixed one.
func (c *currencyPick) keep(m crm.Money) (bool, error) {
	if m == (crm.Money{}) {
		return false, nil
	}
	if m.Currency == c.currency {
		return true, nil
	}
	switch {
	case c.fixed:
		return false, nil
	case c.currency == "":
		c.currency = m.Currency
		return true, nil
	default:
		return false, fmt.Errorf("%w: amounts are in several currencies (%s and %s at least); choose one with %s", ErrInvalid, c.currency, m.Currency, c.option)
	}
}

// wide is an unsigned 128-bit sum of products, so that amount × rate
// sums cannot overflow before they are divided.
type wide struct{ hi, lo uint64 }

// addMul adds a × b.
func (w *wide) addMul(a, b uint64) {
	hi, lo := bits.Mul64(a, b)
	var carry uint64
	w.lo, carry = bits.Add64(w.lo, lo, 0)
	w.hi += hi + carry
}

// divRound returns w / d rounded half up, saturated to the int64 range.
func (w wide) divRound(d uint64) int64 {
	lo, carry := bits.Add64(w.lo, d/2, 0)
	return int64(div128(w.hi+carry, lo, d))
}

// addMoney adds b to *a, refusing to overflow.
func addMoney(a *int64, b int64, what string) error {
	if (b > 0 && *a > math.MaxInt64-b) || (b < 0 && *a < math.MinInt64-b) {
		return fmt.Errorf("analytics: %s overflows int64 minor units", what)
	}
	*a += b
	return nil
}
