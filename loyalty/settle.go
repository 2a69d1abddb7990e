package loyalty

import (
	"slices"
	"strings"
	"time"
)

// PartnerTotals is one coalition partner's sub-ledger over a period: the
// points members earned at the partner (credited or pending), the points
// of such earnings reversed in the period (refunds: the part of the
// earning refunded, however much of it had been spent), and the points spent at the
// partner. The program and the partner settle on these.
type PartnerTotals struct {
	Partner  string `json:"partner"`
	Earned   int64  `json:"earned"`
	Reversed int64  `json:"reversed"`
	Spent    int64  `json:"spent"`
}

// Settle sums the partner entries of one member's journal that fall in
// [from, to) into totals (by partner), which it returns. Call it for each
// member's journal with the same map; Settlement sorts the result.
func Settle(journal []Entry, from, to time.Time, totals map[string]*PartnerTotals) map[string]*PartnerTotals {
	if totals == nil {
		totals = map[string]*PartnerTotals{}
	}
	earned := map[string]Op{} // key of a partner's earn or pending entry → its op
	for _, e := range journal {
		if e.Op.Partner != "" && (e.Op.Kind == KindEarn || e.Op.Kind == KindPending) {
			earned[e.Op.Key] = e.Op
		}
	}
	add := func(partner string) *PartnerTotals {
		t, ok := totals[partner]
		if !ok {
			t = &PartnerTotals{Partner: partner}
			totals[partner] = t
		}
		return t
	}
	// Points reversed so far per earning: a reversal of "all the rest"
	// (Points 0) reverses what partial ones left.
	back := map[string]int64{}
	for _, e := range journal {
		var reversed int64
		if op, ok := earned[e.Op.Ref]; ok && e.Op.Kind == KindReverse {
			reversed = e.Op.Points
			if reversed == 0 {
				reversed = op.Points - back[e.Op.Ref]
			}
			back[e.Op.Ref] += reversed
		}
		if e.Op.At.Before(from) || !e.Op.At.Before(to) {
			continue
		}
		switch e.Op.Kind {
		case KindEarn, KindPending:
			if e.Op.Partner != "" {
				add(e.Op.Partner).Earned += e.Op.Points
			}
		case KindSpend:
			if e.Op.Partner != "" {
				add(e.Op.Partner).Spent += e.Op.Points
			}
		case KindReverse:
			if op, ok := earned[e.Op.Ref]; ok {
				add(op.Partner).Reversed += reversed
			}
		}
	}
	return totals
}

// TakenBack returns, by the key of the entry that credited them, the
// points reversals in journal took back: each partial reversal's Points,
// and for a reversal of all that was left (Points 0) the rest of what the
// entry credited.
func TakenBack(journal []Entry) map[string]int64 {
	credited := map[string]int64{}
	back := map[string]int64{}
	for _, e := range journal {
		switch {
		case e.Op.Kind == KindReverse:
			n := e.Op.Points
			if n == 0 {
				n = credited[e.Op.Ref] - back[e.Op.Ref]
			}
			back[e.Op.Ref] += n
		case e.Op.Points > 0 && e.Op.Kind != KindSpend:
			credited[e.Op.Key] = e.Op.Points
		}
	}
	return back
}

// Settlement returns totals sorted by partner.
func Settlement(totals map[string]*PartnerTotals) []PartnerTotals {
	out := make([]PartnerTotals, 0, len(totals))
	for _, t := range totals {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(x, y PartnerTotals) int { return strings.Compare(x.Partner, y.Partner) })
	return out
}

// Settlement returns every partner's totals over [from, to) across the
// ledger's members.
func (l *Ledger) Settlement(from, to time.Time) []PartnerTotals {
	l.mu.Lock()
	defer l.mu.Unlock()
	totals := map[string]*PartnerTotals{}
	for _, a := range l.accounts {
		Settle(a.Journal, from, to, totals)
	}
	return Settlement(totals)
}
