package loyalty

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Errors of the ledger, matched with errors.Is.
var (
	// ErrInsufficientPoints means a spend, transfer or deduction asks for
	// more points than the balance holds.
	ErrInsufficientPoints = errors.New("loyalty: insufficient points")
	// ErrIdempotencyConflict means an idempotency key was used again with
	// different parameters.
	ErrIdempotencyConflict = errors.New("loyalty: idempotency key reused with different parameters")
	// ErrInvalid means an operation or a program is malformed.
	ErrInvalid = errors.New("loyalty: invalid")
	// ErrNotFound means an operation refers to an entry that does not
	// exist (activating or reversing an unknown key).
	ErrNotFound = errors.New("loyalty: not found")
)

// Kind is the kind of a journal entry.
type Kind string

// The journal entry kinds.
const (
	// KindEarn credits points to the balance as a new lot.
	KindEarn Kind = "earn"
	// KindPending credits points as pending: they are held, not spendable,
	// until a KindActivate entry names them.
	KindPending Kind = "pending"
	// KindActivate moves a pending lot into the balance.
	KindActivate Kind = "activate"
	// KindSpend takes points from the lots that expire soonest.
	KindSpend Kind = "spend"
	// KindExpire removes the remainder of an expired lot.
	KindExpire Kind = "expire"
	// KindReverse takes back the points an earn (or pending) entry
	// credited, for example when its order is refunded: Op.Points of
	// them (a partial refund), or all it has left when Points is 0.
	KindReverse Kind = "reverse"
	// KindAdjust changes the balance by hand, up or down.
	KindAdjust Kind = "adjust"
	// KindTransfer moves points to or from another member.
	KindTransfer Kind = "transfer"
)

// Op is an operation on a member's account. Key and Kind are always
// required; the other fields are used by the kinds named on them.
type Op struct {
	// Key makes the operation idempotent: applying an Op whose Key is
	// already in the journal returns the first entry, if the parameters
	// are the same, or ErrIdempotencyConflict.
	Key  string `json:"key"`
	Kind Kind   `json:"kind"`
	// Points is the amount: positive for earn, pending and spend; signed
	// for adjust and transfer (received > 0, sent < 0); for reverse, the
	// points to take back (0: all the entry has left).
	Points int64 `json:"points,omitempty"`
	// At is when the operation happens; expiry is judged against it.
	At time.Time `json:"at"`
	// ExpiresAt is when the points of an earn, pending or positive adjust
	// expire; zero means never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// ActivatesAt is when pending points may be activated by
	// State.ActivateDue (zero: only by an explicit KindActivate).
	ActivatesAt time.Time `json:"activates_at,omitzero"`
	// Ref is the key of the entry an activate or reverse refers to.
	Ref string `json:"ref,omitempty"`
	// Partner names the coalition partner where the points were earned
	// or spent, for the partner's sub-ledger.
	Partner string `json:"partner,omitempty"`
	// Counterparty is the other member of a transfer (set by
	// Ledger.Transfer).
	Counterparty string `json:"counterparty,omitempty"`
	// Reason says why, in words; adjustments require one.
	Reason string `json:"reason,omitempty"`
}

// LotChange is what an entry did to one lot.
type LotChange struct {
	Lot    int64 `json:"lot"`    // the lot's ID
	Points int64 `json:"points"` // signed change of its remainder
}

// Entry is one line of a member's journal.
type Entry struct {
	// Seq numbers the member's entries from 1.
	Seq int64 `json:"seq"`
	Op  Op    `json:"op"`
	// Delta is the change of the spendable balance.
	Delta int64 `json:"delta"`
	// PendingDelta is the change of the pending points.
	PendingDelta int64 `json:"pending_delta,omitempty"`
	// DebtDelta is the change of the debt (points owed after a reversal
	// of points already spent, where the program allows it).
	DebtDelta int64 `json:"debt_delta,omitempty"`
	// Lots lists the lots the entry created or drew from, in order.
	Lots []LotChange `json:"lots,omitempty"`
	// Shortfall is, for a reversal in a program that forbids negative
	// balances, the points that could not be taken back because they had
	// been spent.
	Shortfall int64 `json:"shortfall,omitempty"`
}

// Lot is a parcel of points earned together, spent and expired as a unit
// of first-in-first-out accounting.
type Lot struct {
	ID  int64  `json:"id"`  // the Seq of the entry that created it
	Key string `json:"key"` // that entry's idempotency key
	// Points is what the lot earned, less what reversals took back.
	Points    int64     `json:"points"`
	Remaining int64     `json:"remaining"`
	EarnedAt  time.Time `json:"earned_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Partner   string    `json:"partner,omitempty"`
	Pending   bool      `json:"pending,omitempty"`
	// ActivatesAt is when a pending lot may be activated (see
	// State.ActivateDue).
	ActivatesAt time.Time `json:"activates_at,omitzero"`
	// Expired is the points expiry removed from the lot (less those a
	// reversal took back: expired points are not owed again).
	Expired int64 `json:"expired,omitempty"`
	// Reversed is set once all of the lot's points have been taken back.
	Reversed bool `json:"reversed,omitempty"`
}

// expires reports whether the lot has an expiry at or before at.
func (l *Lot) expiredAt(at time.Time) bool {
	return !l.ExpiresAt.IsZero() && !l.ExpiresAt.After(at)
}

// State is one member's points without the journal: the balances and
// the lots. It is what a store keeps per member; the entries State.Apply
// returns are the journal, kept beside it. Its methods keep these
// invariants (Account.Check verifies them against the journal):
//
//   - Balance == the sum of the journal's Delta == the sum of the
//     remainders of the active lots − Debt;
//   - Pending == the sum of PendingDelta == the sum of the pending lots'
//     remainders;
//   - Balance ≥ 0 unless AllowNegative;
//   - a spend takes the lots that expire soonest first (lots that never
//     expire last, ties by age);
//   - an expiry removes exactly the remainder of the expired lot.
//
// A State is not safe for concurrent use.
type State struct {
	Member string `json:"member"`
	// AllowNegative lets a reversal or a deduction take the balance below
	// zero (the member owes points, paid back first from later earnings).
	AllowNegative bool  `json:"allow_negative,omitempty"`
	Balance       int64 `json:"balance"`
	Pending       int64 `json:"pending"`
	Debt          int64 `json:"debt,omitempty"`
	// Lots are the open lots: those holding points, or pending. A lot
	// that closes (spent, expired or reversed to 0) leaves Lots by
	// TakeClosed, so the state stays as small as the member's live points.
	Lots []Lot `json:"lots"`
	// Seq is the Seq of the last entry.
	Seq int64 `json:"seq"`

	// Closed finds a closed lot by the key of the entry that created it;
	// reversing a lot that has closed needs it (nil: such a reversal is
	// ErrNotFound).
	Closed func(key string) (Lot, bool, error) `json:"-"`
	closed []Lot
}

// TakeClosed returns the lots that closed, or changed while closed,
// since the last call, for the caller to keep (Closed must find them
// later), and forgets them.
func (s *State) TakeClosed() []Lot {
	out := s.closed
	s.closed = nil
	return out
}

// Apply applies op and returns the entries it made: first, if op takes
// points (spend, reverse, negative adjust or transfer), one KindExpire
// entry per lot due by op's time, so that points are never drawn from an
// expired lot; then op's own entry, last. It does not check idempotency
// keys: that needs the journal (Account does it; a store looks the key
// up). On error the state holds only the expiry entries, which are
// returned with the error.
func (s *State) Apply(op Op) ([]Entry, error) {
	if err := op.validate(); err != nil {
		return nil, err
	}
	var out []Entry
	if op.takes() {
		var err error
		if out, err = s.ExpireDue(op.At); err != nil {
			return out, err
		}
	}
	e, err := s.apply(op)
	if err != nil {
		return out, err
	}
	return append(out, e), nil
}

func (s *State) apply(op Op) (Entry, error) {
	open := len(s.Lots)
	lots := s.Lots
	justClosed := -1 // index in s.closed of a lot brought back
	if op.Kind == KindReverse && !s.hasLot(op.Ref) {
		// Bring the closed lot back for the reversal; it closes again.
		// It may have closed a moment ago, by the expiry before op.
		justClosed = slices.IndexFunc(s.closed, func(l Lot) bool { return l.Key == op.Ref })
		switch {
		case justClosed >= 0:
			lots = append(lots, s.closed[justClosed])
		case s.Closed != nil:
			l, ok, err := s.Closed(op.Ref)
			if err != nil {
				return Entry{}, err
			}
			if ok {
				lots = append(lots, l)
			}
		}
	}
	// Work on the lots in place, saving each before it changes, so that a
	// failure can put them back: no copy of every lot per operation.
	w := work{s: s, lots: lots, e: Entry{Seq: s.Seq + 1, Op: op}}
	if err := w.apply(); err != nil {
		for i := len(w.undo) - 1; i >= 0; i-- {
			w.lots[w.undo[i].i] = w.undo[i].lot
		}
		s.Lots = w.lots[:open]
		return Entry{}, err
	}
	if justClosed >= 0 {
		s.closed = slices.Delete(s.closed, justClosed, justClosed+1)
	}
	// Closed lots leave the state.
	kept := w.lots[:0]
	for _, l := range w.lots {
		if l.Remaining == 0 && !l.Pending {
			s.closed = append(s.closed, l)
			continue
		}
		kept = append(kept, l)
	}
	s.Lots = kept
	s.Balance += w.e.Delta
	s.Pending += w.e.PendingDelta
	s.Debt += w.e.DebtDelta
	s.Seq = w.e.Seq
	return w.e, nil
}

// ExpireDue expires, as of at, every lot whose expiry has come and that
// still holds points, one KindExpire entry per lot, keyed "expire:ID" (a
// lot expires once: its remainder is then 0).
func (s *State) ExpireDue(at time.Time) ([]Entry, error) {
	return s.due(at, KindExpire, func(l *Lot) bool { return !l.Pending && l.Remaining > 0 && l.expiredAt(at) })
}

// ActivateDue activates, as of at, every pending lot whose ActivatesAt
// has come, one KindActivate entry per lot, keyed "activate:ID".
func (s *State) ActivateDue(at time.Time) ([]Entry, error) {
	return s.due(at, KindActivate, func(l *Lot) bool { return l.Pending && !l.ActivatesAt.IsZero() && !l.ActivatesAt.After(at) })
}

// due applies an op of kind to every lot that is due, keyed by kind and
// lot ID. The lots are collected first: a lot that closes leaves Lots.
func (s *State) due(at time.Time, kind Kind, isDue func(*Lot) bool) ([]Entry, error) {
	var due []Lot
	for i := range s.Lots {
		if isDue(&s.Lots[i]) {
			due = append(due, s.Lots[i])
		}
	}
	var out []Entry
	for _, l := range due {
		e, err := s.apply(Op{Key: fmt.Sprintf("%s:%d", kind, l.ID), Kind: kind, At: at, Ref: l.Key})
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Account is one member's points in memory: the State and its journal,
// with idempotency keys checked against the journal.
//
// An Account is not safe for concurrent use; Ledger serialises access.
type Account struct {
	State
	Journal []Entry `json:"journal"`
	// ClosedLots are the lots that hold no more points, by key.
	ClosedLots map[string]Lot `json:"closed_lots,omitempty"`

	keys map[string]int // idempotency key → index in Journal
}

// NewAccount returns an empty account.
func NewAccount(member string, allowNegative bool) *Account {
	return &Account{State: State{Member: member, AllowNegative: allowNegative}}
}

// Entry returns the journal entry with idempotency key key.
func (a *Account) Entry(key string) (Entry, bool) {
	a.index()
	i, ok := a.keys[key]
	if !ok {
		return Entry{}, false
	}
	return a.Journal[i], true
}

func (a *Account) index() {
	if a.State.Closed == nil {
		a.State.Closed = func(key string) (Lot, bool, error) {
			l, ok := a.ClosedLots[key]
			return l, ok, nil
		}
	}
	if a.keys != nil {
		return
	}
	a.keys = make(map[string]int, len(a.Journal))
	for i, e := range a.Journal {
		a.keys[e.Op.Key] = i
	}
}

// Apply applies op and returns its journal entry. A repeated op (same
// key, same parameters) returns the first entry and changes nothing; the
// same key with other parameters is ErrIdempotencyConflict. On error the
// account is unchanged, except that an operation that takes points first
// expires the lots due by its time (see State.Apply).
func (a *Account) Apply(op Op) (Entry, error) {
	a.index()
	if i, ok := a.keys[op.Key]; ok && op.Key != "" {
		first := a.Journal[i]
		if !first.Op.Same(op) {
			return Entry{}, fmt.Errorf("%w: key %q was %s of %d at %s", ErrIdempotencyConflict, op.Key, first.Op.Kind, first.Op.Points, first.Op.At.Format(time.RFC3339))
		}
		return first, nil
	}
	if _, ok := a.keys[op.Ref]; ok && op.Ref != "" && !a.hasLot(op.Ref) && a.ClosedLots[op.Ref].Key == "" {
		return Entry{}, fmt.Errorf("%w: %s %q: entry %q created no points", ErrInvalid, op.Kind, op.Key, op.Ref)
	}
	entries, err := a.State.Apply(op)
	a.keep(entries)
	if err != nil {
		return Entry{}, err
	}
	return entries[len(entries)-1], nil
}

func (s *State) hasLot(key string) bool {
	for i := range s.Lots {
		if s.Lots[i].Key == key {
			return true
		}
	}
	return false
}

// ExpireDue expires, as of at, every lot whose expiry has come and that
// still holds points, one KindExpire entry per lot (keyed "expire:ID", so
// running it twice changes nothing).
func (a *Account) ExpireDue(at time.Time) ([]Entry, error) {
	a.index()
	entries, err := a.State.ExpireDue(at)
	a.keep(entries)
	return entries, err
}

// ActivateDue activates the pending lots due by at (see
// State.ActivateDue).
func (a *Account) ActivateDue(at time.Time) ([]Entry, error) {
	a.index()
	entries, err := a.State.ActivateDue(at)
	a.keep(entries)
	return entries, err
}

// keep journals entries and keeps the lots that closed.
func (a *Account) keep(entries []Entry) {
	for _, e := range entries {
		a.Journal = append(a.Journal, e)
		a.keys[e.Op.Key] = len(a.Journal) - 1
	}
	for _, l := range a.State.TakeClosed() {
		if a.ClosedLots == nil {
			a.ClosedLots = map[string]Lot{}
		}
		a.ClosedLots[l.Key] = l
	}
}

// Lot returns the lot created by the entry with key, open or closed.
func (a *Account) Lot(key string) (Lot, bool) {
	for _, l := range a.Lots {
		if l.Key == key {
			return l, true
		}
	}
	l, ok := a.ClosedLots[key]
	return l, ok
}

// Spendable returns the points that can be spent at at: the balance less
// the lots that have expired by then but not yet been expired.
func (s *State) Spendable(at time.Time) int64 {
	n := s.Balance
	for _, l := range s.Lots {
		if !l.Pending && l.expiredAt(at) {
			n -= l.Remaining
		}
	}
	return max(n, 0)
}

// ExpiringBy returns the points that will have expired by at if not spent.
func (s *State) ExpiringBy(at time.Time) int64 {
	var n int64
	for _, l := range s.Lots {
		if !l.Pending && l.expiredAt(at) {
			n += l.Remaining
		}
	}
	return n
}

// Check verifies the account's invariants and returns the first broken.
func (a *Account) Check() error {
	var sumDelta, sumPending, sumDebt, active, pending int64
	for i, e := range a.Journal {
		if e.Seq != int64(i)+1 {
			return fmt.Errorf("entry %d has seq %d", i+1, e.Seq)
		}
		sumDelta += e.Delta
		sumPending += e.PendingDelta
		sumDebt += e.DebtDelta
	}
	// What reversals took back of each lot, by its key.
	reversed := map[string]int64{}
	for _, e := range a.Journal {
		if e.Op.Kind == KindReverse {
			reversed[e.Op.Ref] += e.Op.Points
		}
	}
	a.index()
	checkLot := func(l Lot) error {
		if l.Remaining < 0 || l.Remaining > l.Points || l.Expired < 0 || l.Expired > l.Points-l.Remaining {
			return fmt.Errorf("lot %d holds %d of %d, %d expired", l.ID, l.Remaining, l.Points, l.Expired)
		}
		i, ok := a.keys[l.Key]
		if !ok {
			return fmt.Errorf("lot %d: no entry %q in the journal", l.ID, l.Key)
		}
		if earned := a.Journal[i].Op.Points; l.Reversed && l.Points != 0 || !l.Reversed && l.Points != earned-reversed[l.Key] {
			return fmt.Errorf("lot %d has %d points: earned %d, %d reversed (all: %t)", l.ID, l.Points, earned, reversed[l.Key], l.Reversed)
		}
		return nil
	}
	for _, l := range a.ClosedLots {
		if err := checkLot(l); err != nil {
			return err
		}
	}
	for _, l := range a.Lots {
		if err := checkLot(l); err != nil {
			return err
		}
		if l.Pending {
			pending += l.Remaining
		} else {
			active += l.Remaining
		}
	}
	switch {
	case a.Balance != sumDelta:
		return fmt.Errorf("balance %d != journal sum %d", a.Balance, sumDelta)
	case a.Balance != active-a.Debt:
		return fmt.Errorf("balance %d != lots %d - debt %d", a.Balance, active, a.Debt)
	case a.Pending != sumPending || a.Pending != pending:
		return fmt.Errorf("pending %d, journal %d, lots %d", a.Pending, sumPending, pending)
	case a.Debt != sumDebt || a.Debt < 0:
		return fmt.Errorf("debt %d, journal %d", a.Debt, sumDebt)
	case a.Debt > 0 && active > 0:
		return fmt.Errorf("debt %d while lots hold %d", a.Debt, active)
	case a.Balance < 0 && !a.AllowNegative:
		return fmt.Errorf("balance %d is negative", a.Balance)
	}
	return nil
}

func (op Op) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s %q: %s", ErrInvalid, op.Kind, op.Key, fmt.Sprintf(format, args...))
	}
	if op.Key == "" {
		return fmt.Errorf("%w: %s without an idempotency key", ErrInvalid, op.Kind)
	}
	if op.At.IsZero() {
		return bad("no time")
	}
	switch op.Kind {
	case KindEarn, KindPending, KindSpend:
		if op.Points <= 0 {
			return bad("points must be positive, not %d", op.Points)
		}
	case KindAdjust:
		if op.Points == 0 {
			return bad("adjusts by 0 points")
		}
		if op.Reason == "" {
			return bad("an adjustment needs a reason")
		}
	case KindTransfer:
		if op.Points == 0 {
			return bad("transfers 0 points")
		}
		if op.Counterparty == "" {
			return bad("names no counterparty")
		}
	case KindActivate, KindReverse, KindExpire:
		if op.Ref == "" {
			return bad("names no entry (Ref)")
		}
		switch {
		case op.Kind == KindReverse && op.Points < 0:
			return bad("reverses %d points: give the points to take back, or 0 for all", op.Points)
		case op.Kind != KindReverse && op.Points != 0:
			return bad("takes no points: it acts on the entry it names")
		}
	default:
		return fmt.Errorf("%w: unknown entry kind %q", ErrInvalid, op.Kind)
	}
	if !op.ExpiresAt.IsZero() && !op.ExpiresAt.After(op.At) {
		return bad("expires at %s, not after %s", op.ExpiresAt.Format(time.RFC3339), op.At.Format(time.RFC3339))
	}
	return nil
}

// takes reports whether op may draw points from lots.
func (op Op) takes() bool {
	switch op.Kind {
	case KindSpend, KindReverse:
		return true
	case KindAdjust, KindTransfer:
		return op.Points < 0
	}
	return false
}

// Same reports whether two ops with one key have the same parameters.
func (op Op) Same(o Op) bool {
	return op.Kind == o.Kind && op.Points == o.Points && op.At.Equal(o.At) && op.ExpiresAt.Equal(o.ExpiresAt) && op.ActivatesAt.Equal(o.ActivatesAt) &&
		op.Ref == o.Ref && op.Partner == o.Partner && op.Counterparty == o.Counterparty && op.Reason == o.Reason
}

// work is one operation being applied to the lots.
type work struct {
	s    *State
	lots []Lot
	e    Entry
	undo []saved // lots as they were before the operation changed them
}

type saved struct {
	i   int
	lot Lot
}

// save records lot i before it changes.
func (w *work) save(i int) *Lot {
	w.undo = append(w.undo, saved{i, w.lots[i]})
	return &w.lots[i]
}

func (w *work) apply() error {
	op := w.e.Op
	switch op.Kind {
	case KindEarn:
		w.credit(op.Points, false)
	case KindPending:
		w.credit(op.Points, true)
	case KindAdjust, KindTransfer:
		if op.Points > 0 {
			w.credit(op.Points, false)
			return nil
		}
		return w.debit(-op.Points, op.Kind == KindAdjust && w.s.AllowNegative)
	case KindSpend:
		return w.debit(op.Points, false)
	case KindActivate:
		l, err := w.lot(op.Ref)
		if err != nil {
			return err
		}
		if !l.Pending {
			return fmt.Errorf("%w: activate %q: entry %q is not pending", ErrInvalid, op.Key, op.Ref)
		}
		l.Pending = false
		w.e.PendingDelta -= l.Remaining
		w.e.Lots = append(w.e.Lots, LotChange{Lot: l.ID, Points: 0})
		// Activated points pay off any debt first.
		paid := min(l.Remaining, w.s.Debt)
		l.Remaining -= paid
		w.e.DebtDelta -= paid
		w.e.Delta += l.Remaining + paid
	case KindExpire:
		l, err := w.lot(op.Ref)
		if err != nil {
			return err
		}
		if l.Pending || !l.expiredAt(op.At) {
			return fmt.Errorf("%w: expire %q: lot %q does not expire by %s", ErrInvalid, op.Key, op.Ref, op.At.Format(time.RFC3339))
		}
		w.e.Lots = append(w.e.Lots, LotChange{Lot: l.ID, Points: -l.Remaining})
		w.e.Delta -= l.Remaining
		l.Expired += l.Remaining
		l.Remaining = 0
	case KindReverse:
		return w.reverse()
	}
	return nil
}

// lot finds the lot created by the entry with key, saved for undo: the
// caller changes it.
func (w *work) lot(key string) (*Lot, error) {
	for i := range w.lots {
		if w.lots[i].Key == key {
			return w.save(i), nil
		}
	}
	return nil, fmt.Errorf("%w: %s %q: no entry %q", ErrNotFound, w.e.Op.Kind, w.e.Op.Key, key)
}

// credit adds a lot of n points; active points pay off debt first.
func (w *work) credit(n int64, pending bool) {
	op := w.e.Op
	l := Lot{ID: w.e.Seq, Key: op.Key, Points: n, Remaining: n, EarnedAt: op.At, ExpiresAt: op.ExpiresAt, Partner: op.Partner, Pending: pending}
	if pending {
		l.ActivatesAt = op.ActivatesAt
	}
	if pending {
		w.e.PendingDelta += n
	} else {
		paid := min(n, w.s.Debt)
		l.Remaining -= paid
		w.e.DebtDelta -= paid
		w.e.Delta += n
	}
	w.lots = append(w.lots, l)
	w.e.Lots = append(w.e.Lots, LotChange{Lot: l.ID, Points: n})
}

// debit takes n points from the active lots that have not expired by the
// op's time, soonest expiry first. What the lots cannot give becomes
// debt if owe, else the debit fails with ErrInsufficientPoints.
func (w *work) debit(n int64, owe bool) error {
	taken := w.take(n, func(*Lot) bool { return true })
	if rest := n - taken; rest > 0 {
		if !owe {
			return fmt.Errorf("%w: %s %q of %d points: %d can be spent at %s", ErrInsufficientPoints, w.e.Op.Kind, w.e.Op.Key, n, taken, w.e.Op.At.Format(time.RFC3339))
		}
		w.e.DebtDelta += rest
	}
	w.e.Delta -= n
	return nil
}

// take draws up to n points from the live active lots that keep accepts,
// soonest expiry first (never-expiring last, then oldest first), and
// returns how many it took.
func (w *work) take(n int64, keep func(*Lot) bool) int64 {
	at := w.e.Op.At
	var order []int
	for i := range w.lots {
		l := &w.lots[i]
		if !l.Pending && l.Remaining > 0 && !l.expiredAt(at) && keep(l) {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(i, j int) int {
		x, y := &w.lots[i], &w.lots[j]
		if x.ExpiresAt.IsZero() != y.ExpiresAt.IsZero() {
			if x.ExpiresAt.IsZero() {
				return 1
			}
			return -1
		}
		return cmp.Or(x.ExpiresAt.Compare(y.ExpiresAt), cmp.Compare(x.ID, y.ID))
	})
	var taken int64
	for _, i := range order {
		if taken == n {
			break
		}
		l := w.save(i)
		d := min(l.Remaining, n-taken)
		l.Remaining -= d
		taken += d
		w.e.Lots = append(w.e.Lots, LotChange{Lot: l.ID, Points: -d})
	}
	return taken
}

// reverse takes back the points of the lot that Ref created: what is
// left of it, then, for the part already spent, other points or debt by
// the account's policy.
func (w *work) reverse() error {
	op := w.e.Op
	l, err := w.lot(op.Ref)
	if err != nil {
		return err
	}
	if l.Reversed {
		return fmt.Errorf("%w: reverse %q: entry %q is already reversed", ErrInvalid, op.Key, op.Ref)
	}
	n := op.Points
	if n == 0 {
		n = l.Points
	}
	if n > l.Points {
		return fmt.Errorf("%w: reverse %q: %d points, but entry %q has %d left to reverse", ErrInvalid, op.Key, n, op.Ref, l.Points)
	}
	// The lot shrinks as if it had earned n points fewer: its remainder
	// goes first, then the points that left it.
	fromRest := min(n, l.Remaining)
	l.Remaining -= fromRest
	l.Points -= n
	l.Reversed = l.Points == 0
	w.e.Lots = append(w.e.Lots, LotChange{Lot: l.ID, Points: -fromRest})
	if l.Pending {
		// Cancelled before it was activated: a lot fully reversed closes.
		w.e.PendingDelta -= fromRest
		l.Pending = !l.Reversed
		return nil
	}
	w.e.Delta -= fromRest
	// Of the points that left the lot, those that expired are gone
	// already and not owed; only spent points are.
	left := n - fromRest
	free := min(left, l.Expired)
	l.Expired -= free
	owed := left - free
	if owed == 0 {
		return nil
	}
	taken := w.take(owed, func(*Lot) bool { return true })
	w.e.Delta -= taken
	if rest := owed - taken; rest > 0 {
		if w.s.AllowNegative {
			w.e.Delta -= rest
			w.e.DebtDelta += rest
		} else {
			w.e.Shortfall = rest
		}
	}
	return nil
}
