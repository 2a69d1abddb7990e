package plugins

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// DocumentData is what a document template is filled with: the parties,
// the deal and its priced lines. Amounts are integers in the currency's
// minor units (cents); Totals computes line and document totals from them
// exactly. The host builds it from the CRM's records (contact, account,
// deal, products, price list); templates refer to its fields by their JSON
// names, which are the protocol.
type DocumentData struct {
	// Number is the document's number, e.g. "INV-2026-0042".
	Number string `json:"number,omitempty"`
	// IssuedOn, DueOn and ValidUntil are dates, YYYY-MM-DD.
	IssuedOn   string `json:"issued_on,omitempty"`
	DueOn      string `json:"due_on,omitempty"`
	ValidUntil string `json:"valid_until,omitempty"`
	// Currency is an ISO 4217 code; Scale is its number of decimals (2
	// for EUR, 0 for JPY).
	Currency string `json:"currency"`
	Scale    int    `json:"scale"`
	// Seller is the tenant; Customer the contact; Account the customer's
	// company, if any.
	Seller   Party  `json:"seller"`
	Customer Party  `json:"customer"`
	Account  Party  `json:"account"`
	Deal     Deal   `json:"deal"`
	Lines    []Line `json:"lines"`
	Notes    string `json:"notes,omitempty"`
}

// Party is a person or company named on a document.
type Party struct {
	Name    string `json:"name,omitempty"`
	Email   string `json:"email,omitempty"`
	Phone   string `json:"phone,omitempty"`
	Address string `json:"address,omitempty"`
	TaxID   string `json:"tax_id,omitempty"`
}

// Deal is the deal a document is about.
type Deal struct {
	ID            string `json:"id,omitempty"`
	Title         string `json:"title,omitempty"`
	Stage         string `json:"stage,omitempty"`
	Owner         string `json:"owner,omitempty"`
	ExpectedClose string `json:"expected_close,omitempty"`
}

// Line is one priced line of a document.
type Line struct {
	SKU         string `json:"sku,omitempty"`
	Description string `json:"description"`
	Unit        string `json:"unit,omitempty"`
	// Quantity is positive.
	Quantity int64 `json:"quantity"`
	// UnitPrice is in minor units, not negative.
	UnitPrice int64 `json:"unit_price"`
	// DiscountBP is a discount in basis points of the line's amount (500
	// is 5%), 0–10000.
	DiscountBP int64 `json:"discount_bp,omitempty"`
	// TaxBP is the tax rate in basis points (2000 is 20%), 0–10000.
	TaxBP int64 `json:"tax_bp,omitempty"`
}

// Totals are a document's computed amounts, in minor units.
type Totals struct {
	// Lines has one entry per DocumentData.Lines entry.
	Lines []LineTotal `json:"lines"`
	// Net is the sum of the lines' nets, Tax of their taxes, Gross of
	// both.
	Net   int64 `json:"net"`
	Tax   int64 `json:"tax"`
	Gross int64 `json:"gross"`
	// TaxByRate sums tax per rate, in increasing order of rate.
	TaxByRate []TaxAmount `json:"tax_by_rate"`
}

// LineTotal is one line's amounts: Amount = Quantity × UnitPrice,
// Discount rounded half up, Net = Amount − Discount, Tax = Net × TaxBP
// rounded half up, Gross = Net + Tax.
type LineTotal struct {
	Amount   int64 `json:"amount"`
	Discount int64 `json:"discount"`
	Net      int64 `json:"net"`
	Tax      int64 `json:"tax"`
	Gross    int64 `json:"gross"`
}

// TaxAmount is the tax of all lines taxed at one rate.
type TaxAmount struct {
	RateBP int64 `json:"rate_bp"`
	Net    int64 `json:"net"`
	Tax    int64 `json:"tax"`
}

// MaxLines is the most lines a document may have.
const MaxLines = 1000

var errOverflow = errors.New("amounts overflow")

// Validate checks the data a template needs: a currency, at most MaxLines
// lines, each with a description, a positive quantity, a price that is not
// negative, rates within 0–10000 basis points, and totals that fit in
// int64. Its errors wrap ErrRejected.
func (d *DocumentData) Validate() error {
	_, err := d.Totals()
	return err
}

// Totals computes the document's amounts exactly (see LineTotal), or
// returns an error wrapping ErrRejected for data Validate refuses.
func (d *DocumentData) Totals() (Totals, error) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if len(d.Currency) != 3 || strings.ToUpper(d.Currency) != d.Currency {
		bad("currency %q is not an ISO 4217 code", d.Currency)
	}
	if d.Scale < 0 || d.Scale > 4 {
		bad("scale %d is not 0–4", d.Scale)
	}
	if len(d.Lines) > MaxLines {
		bad("%d lines, more than %d", len(d.Lines), MaxLines)
	}
	t := Totals{Lines: make([]LineTotal, len(d.Lines))}
	byRate := map[int64]*TaxAmount{}
	var net, tax big.Int
	for i, l := range d.Lines {
		f := fmt.Sprintf("lines[%d]", i)
		if strings.TrimSpace(l.Description) == "" {
			bad("%s.description is required", f)
		}
		if l.Quantity <= 0 {
			bad("%s.quantity %d is not positive", f, l.Quantity)
		}
		if l.UnitPrice < 0 {
			bad("%s.unit_price %d is negative", f, l.UnitPrice)
		}
		if l.DiscountBP < 0 || l.DiscountBP > 10000 {
			bad("%s.discount_bp %d is not 0–10000", f, l.DiscountBP)
		}
		if l.TaxBP < 0 || l.TaxBP > 10000 {
			bad("%s.tax_bp %d is not 0–10000", f, l.TaxBP)
		}
		if len(problems) > 0 {
			continue
		}
		amount := new(big.Int).Mul(big.NewInt(l.Quantity), big.NewInt(l.UnitPrice))
		discount := basisPoints(amount, l.DiscountBP)
		lineNet := new(big.Int).Sub(amount, discount)
		lineTax := basisPoints(lineNet, l.TaxBP)
		gross := new(big.Int).Add(lineNet, lineTax)
		if !gross.IsInt64() {
			bad("%s: %v", f, errOverflow)
			continue
		}
		t.Lines[i] = LineTotal{Amount: amount.Int64(), Discount: discount.Int64(), Net: lineNet.Int64(), Tax: lineTax.Int64(), Gross: gross.Int64()}
		net.Add(&net, lineNet)
		tax.Add(&tax, lineTax)
		r := byRate[l.TaxBP]
		if r == nil {
			r = &TaxAmount{RateBP: l.TaxBP}
			byRate[l.TaxBP] = r
		}
		r.Net += lineNet.Int64() // bounded by the total, checked below
		r.Tax += lineTax.Int64()
	}
	gross := new(big.Int).Add(&net, &tax)
	if len(problems) == 0 && !gross.IsInt64() {
		bad("totals: %v", errOverflow)
	}
	if len(problems) > 0 {
		return Totals{}, Rejectf("document data: %s", strings.Join(problems, "; "))
	}
	t.Net, t.Tax, t.Gross = net.Int64(), tax.Int64(), gross.Int64()
	for _, r := range byRate {
		t.TaxByRate = append(t.TaxByRate, *r)
	}
	for i := 1; i < len(t.TaxByRate); i++ { // few rates: insertion sort
		for j := i; j > 0 && t.TaxByRate[j].RateBP < t.TaxByRate[j-1].RateBP; j-- {
			t.TaxByRate[j], t.TaxByRate[j-1] = t.TaxByRate[j-1], t.TaxByRate[j]
		}
	}
	return t, nil
}

// basisPoints returns v × bp / 10000 rounded half up (v is not negative).
func basisPoints(v *big.Int, bp int64) *big.Int {
	r := new(big.Int).Mul(v, big.NewInt(bp))
	r.Add(r, big.NewInt(5000))
	return r.Quo(r, big.NewInt(10000))
}

// FormatAmount writes an amount in minor units with scale decimals and the
// currency code: FormatAmount(123456, 2, "EUR") is "1,234.56 EUR".
func FormatAmount(minor int64, scale int, currency string) string {
	neg := minor < 0
	var digits string
	if minor == math.MinInt64 {
		digits = strings.TrimPrefix(strconv.FormatInt(minor, 10), "-")
	} else {
		if neg {
			minor = -minor
		}
		digits = strconv.FormatInt(minor, 10)
	}
	if scale < 0 {
		scale = 0
	}
	for len(digits) <= scale {
		digits = "0" + digits
	}
	whole, frac := digits[:len(digits)-scale], digits[len(digits)-scale:]
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if scale > 0 {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	if currency != "" {
		b.WriteByte(' ')
		b.WriteString(currency)
	}
	return b.String()
}
