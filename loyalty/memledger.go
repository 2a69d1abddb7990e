package loyalty

import (
	"fmt"
	"iter"
	"maps"
	"sync"
	"time"
)

// Ledger holds the accounts of many members in memory and serialises the
// operations on them: it is safe for concurrent use. It is what the rule
// test harness and Go tests use; the engine keeps the same Accounts in its
// store.
type Ledger struct {
	// AllowNegative is given to the accounts the ledger opens.
	AllowNegative bool

	mu       sync.Mutex
	accounts map[string]*Account
}

// NewLedger returns an empty ledger.
func NewLedger(allowNegative bool) *Ledger {
	return &Ledger{AllowNegative: allowNegative, accounts: map[string]*Account{}}
}

func (l *Ledger) account(member string) *Account {
	a, ok := l.accounts[member]
	if !ok {
		a = NewAccount(member, l.AllowNegative)
		l.accounts[member] = a
	}
	return a
}

// Apply applies op to member's account (opening it if needed).
func (l *Ledger) Apply(member string, op Op) (Entry, error) {
	if member == "" {
		return Entry{}, fmt.Errorf("%w: %s %q names no member", ErrInvalid, op.Kind, op.Key)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.account(member).Apply(op)
}

// Transfer moves points from one member to another in one step: a sent
// KindTransfer entry on from and a received one on to, both under key.
// The received points expire when the soonest-expiring of the points sent
// would have.
func (l *Ledger) Transfer(key, from, to string, points int64, at time.Time) (sent, received Entry, err error) {
	if from == "" || to == "" || from == to {
		return Entry{}, Entry{}, fmt.Errorf("%w: transfer %q from %q to %q", ErrInvalid, key, from, to)
	}
	if points <= 0 {
		return Entry{}, Entry{}, fmt.Errorf("%w: transfer %q of %d points", ErrInvalid, key, points)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	src, dst := l.account(from), l.account(to)
	in := Op{Key: key, Kind: KindTransfer, Points: points, At: at, Counterparty: from}
	if prev, ok := dst.Entry(key); ok && !prev.Op.Same(withExpiry(in, prev.Op.ExpiresAt)) {
		return Entry{}, Entry{}, fmt.Errorf("%w: key %q", ErrIdempotencyConflict, key)
	}
	sent, err = src.Apply(Op{Key: key, Kind: KindTransfer, Points: -points, At: at, Counterparty: to})
	if err != nil {
		return Entry{}, Entry{}, err
	}
	var expiry time.Time
	ids := map[int64]bool{}
	for _, c := range sent.Lots {
		ids[c.Lot] = true
	}
	// Drawn lots may have closed: look among both.
	for lot := range iterLots(src) {
		if ids[lot.ID] && !lot.ExpiresAt.IsZero() && (expiry.IsZero() || lot.ExpiresAt.Before(expiry)) {
			expiry = lot.ExpiresAt
		}
	}
	received, err = dst.Apply(withExpiry(in, expiry))
	if err != nil {
		// Cannot happen for a valid credit; say so rather than lose points.
		return sent, Entry{}, fmt.Errorf("loyalty: transfer %q: sent but not received: %w", key, err)
	}
	return sent, received, nil
}

func withExpiry(op Op, at time.Time) Op {
	op.ExpiresAt = at
	return op
}

// Account returns a copy of member's account, or false if it has none.
func (l *Ledger) Account(member string) (Account, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.accounts[member]
	if !ok {
		return Account{}, false
	}
	c := *a
	c.Lots = append([]Lot(nil), a.Lots...)
	c.Journal = append([]Entry(nil), a.Journal...)
	c.ClosedLots = maps.Clone(a.ClosedLots)
	c.keys, c.State.Closed = nil, nil
	return c, true
}

// Balance returns member's spendable balance.
func (l *Ledger) Balance(member string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a, ok := l.accounts[member]; ok {
		return a.Balance
	}
	return 0
}

// ActivateDue activates the pending lots of every member due by at.
func (l *Ledger) ActivateDue(at time.Time) ([]Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Entry
	for _, a := range l.accounts {
		es, err := a.ActivateDue(at)
		out = append(out, es...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// ExpireDue expires the due lots of every member as of at.
func (l *Ledger) ExpireDue(at time.Time) ([]Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Entry
	for _, a := range l.accounts {
		es, err := a.ExpireDue(at)
		out = append(out, es...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// iterLots yields an account's open lots, then its closed ones.
func iterLots(a *Account) iter.Seq[Lot] {
	return func(yield func(Lot) bool) {
		for _, l := range a.Lots {
			if !yield(l) {
				return
			}
		}
		for _, l := range a.ClosedLots {
			if !yield(l) {
				return
			}
		}
	}
}
