package crm

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/rapportcrm/rapport/loyalty"
	"github.com/rapportcrm/rapport/storage"
)

const (
	ledgerAccountsCollection = "loyalty_accounts"
	ledgerEntriesCollection  = "loyalty_entries"
	ledgerLotsCollection     = "loyalty_lots"
)

var (
	ledgerAccountCollection = storage.Collection{Name: ledgerAccountsCollection}
	ledgerLotCollection     = storage.Collection{Name: ledgerLotsCollection}
	// Entries have time-ordered IDs, so that a batch appends them at the
	// end of the collection; the unique "key" index (account ‖ key) finds
	// one by its idempotency key and lists an account's journal.
	ledgerEntryCollection = storage.Collection{Name: ledgerEntriesCollection, Indexes: []storage.Index{
		{Name: "key", Field: "key", Unique: true},
	}}
)

// Ledger keeps the points of one loyalty program in the store: per member
// a loyalty.State record with the open lots, the journal beside it, one
// record per entry, found by its idempotency key, and one record per
// closed lot (read back only to reverse it). Every operation runs in a transaction, so
// the balance, the lots and the journal always agree, and a retried
// operation is applied once, whichever engine process retries it. It is
// safe for concurrent use.
type Ledger struct {
	t             *Tenant
	program       string
	allowNegative bool
}

// Ledger returns the ledger of the named program. allowNegative is given
// to accounts when they open (loyalty.Program.AllowNegative).
func (t *Tenant) Ledger(program string, allowNegative bool) *Ledger {
	return &Ledger{t: t, program: program, allowNegative: allowNegative}
}

// LedgerOp is one operation of a batch.
type LedgerOp struct {
	Member string
	Op     loyalty.Op
}

// LedgerResult is the outcome of one operation of a batch: its entry, or
// why it was refused (loyalty.ErrInsufficientPoints, ErrInvalid, ...).
type LedgerResult struct {
	Entry loyalty.Entry
	Err   error
}

// ledgerEntryRec is the stored form of a journal entry.
type ledgerEntryRec struct {
	Account string        `json:"account"`
	Key     string        `json:"key"` // account ‖ idempotency key
	Entry   loyalty.Entry `json:"entry"`
}

func ledgerKey(account, key string) string { return account + sep + key }

// account is one member's state in a transaction.
type ledgerAccount struct {
	id      string
	version uint64
	state   loyalty.State
	dirty   bool
	// lotVersions are the stored versions of closed lots read or written
	// in this transaction, by key.
	lotVersions map[string]uint64
}

// maxLedgerRetries bounds the retries of a transaction that lost a race
// to another engine process (storage.ErrConflict or ErrExists). With the
// waits of updateRetrying that is up to about 2 s of trying: 20 was
// exhausted once by two processes spending from one account on a loaded
// machine (make test, -race).
const maxLedgerRetries = 50

// Apply applies op to member's account and returns its journal entry. An
// op whose key is in the journal returns the first entry, if it has the
// same parameters, or loyalty.ErrIdempotencyConflict.
func (l *Ledger) Apply(ctx context.Context, member string, op loyalty.Op) (loyalty.Entry, error) {
	res, err := l.ApplyEach(ctx, []LedgerOp{{Member: member, Op: op}})
	if err != nil {
		return loyalty.Entry{}, err
	}
	return res[0].Entry, res[0].Err
}

// ApplyEach applies ops in order in one transaction, for throughput. An
// op the ledger refuses gets its error in its result and the others go
// on; a storage failure aborts the batch (nothing is written) and is
// returned.
func (l *Ledger) ApplyEach(ctx context.Context, ops []LedgerOp) ([]LedgerResult, error) {
	var out []LedgerResult
	err := l.t.updateRetrying(ctx, func(tx storage.Tx) error {
		out = make([]LedgerResult, len(ops))
		lt := l.begin(tx)
		for i, o := range ops {
			e, err := lt.apply(ctx, o.Member, o.Op)
			if err != nil && !refusal(err) {
				return err
			}
			out[i] = LedgerResult{Entry: e, Err: err}
		}
		return lt.commit(ctx)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// updateRetrying runs fn in a transaction, again (up to maxLedgerRetries
// times) when it lost a race to another engine process: a version
// conflict, or a record or unique value written first by the other.
// Before each retry it waits a random while, growing with the attempts
// (up to 50ms), so that processes racing for one account stop colliding
// in step.
func (t *Tenant) updateRetrying(ctx context.Context, fn func(storage.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := t.update(ctx, fn)
		if (errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrExists)) && attempt < maxLedgerRetries {
			if attempt > 0 {
				ceiling := min(100*time.Microsecond<<attempt, 50*time.Millisecond)
				if !t.e.sleep(ctx, time.Duration(rand.Int64N(int64(ceiling)))) {
					return errors.Join(err, ctx.Err())
				}
			}
			continue
		}
		return err
	}
}

// ledgerTx is a ledger's work in one transaction: the accounts it read
// and changed, and the events to append.
type ledgerTx struct {
	l        *Ledger
	tx       storage.Tx
	accounts map[string]*ledgerAccount
	events   []storage.Event
}

func (l *Ledger) begin(tx storage.Tx) *ledgerTx {
	return &ledgerTx{l: l, tx: tx, accounts: map[string]*ledgerAccount{}}
}

func (lt *ledgerTx) apply(ctx context.Context, member string, op loyalty.Op) (loyalty.Entry, error) {
	return lt.l.apply(ctx, lt.tx, lt.accounts, member, op, &lt.events)
}

// commit writes the changed accounts and appends the events.
func (lt *ledgerTx) commit(ctx context.Context) error {
	for _, a := range lt.accounts {
		if !a.dirty {
			continue
		}
		rec, err := lt.tx.Put(ctx, ledgerAccountsCollection, storage.Record{ID: a.id, Version: a.version, Body: encodeLedgerState(&a.state)})
		if err != nil {
			return err
		}
		a.version, a.dirty = rec.Version, false
	}
	err := lt.tx.Append(ctx, lt.events...)
	lt.events = nil
	return err
}

// refusal reports whether err is the ledger refusing an operation, as
// opposed to the store failing.
func refusal(err error) bool {
	return errors.Is(err, loyalty.ErrInsufficientPoints) || errors.Is(err, loyalty.ErrInvalid) ||
		errors.Is(err, loyalty.ErrNotFound) || errors.Is(err, loyalty.ErrIdempotencyConflict) || errors.Is(err, ErrInvalid)
}

func (l *Ledger) accountID(member string) (string, error) {
	if l.program == "" || member == "" {
		return "", fmt.Errorf("%w: a ledger operation needs a program and a member", ErrInvalid)
	}
	if strings.Contains(l.program, "/") {
		return "", fmt.Errorf("%w: program name %q contains '/'", ErrInvalid, l.program)
	}
	id := l.program + "/" + member
	if err := storage.ValidateID("ledger account", id); err != nil {
		return "", fmt.Errorf("%w: program %q, member %q: %v", ErrInvalid, l.program, member, err)
	}
	return id, nil
}

// entryID is a record ID for key in account: a hash, so that any key
// fits the ID rules.
func entryID(account, key string) string {
	h := sha256.Sum256([]byte(account + "\x00" + key))
	return hex.EncodeToString(h[:20])
}

func (l *Ledger) load(ctx context.Context, tx storage.ReadTx, accounts map[string]*ledgerAccount, id, member string) (*ledgerAccount, error) {
	if a, ok := accounts[id]; ok {
		return a, nil
	}
	a := &ledgerAccount{id: id, state: loyalty.State{Member: member, AllowNegative: l.allowNegative}}
	rec, err := tx.Get(ctx, ledgerAccountsCollection, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if err := decodeLedgerState(rec.Body, &a.state); err != nil {
			return nil, fmt.Errorf("crm: ledger account %s: %w", id, err)
		}
		a.version = rec.Version
	}
	a.lotVersions = map[string]uint64{}
	a.state.Closed = func(key string) (loyalty.Lot, bool, error) {
		rec, err := tx.Get(ctx, ledgerLotsCollection, entryID(id, "lot\x00"+key))
		if errors.Is(err, storage.ErrNotFound) {
			return loyalty.Lot{}, false, nil
		}
		if err != nil {
			return loyalty.Lot{}, false, err
		}
		var l loyalty.Lot
		if err := json.Unmarshal(rec.Body, &l); err != nil {
			return loyalty.Lot{}, false, fmt.Errorf("crm: closed lot of %s: %w", id, err)
		}
		a.lotVersions[key] = rec.Version
		return l, true, nil
	}
	if accounts != nil {
		accounts[id] = a
	}
	return a, nil
}

// keepClosed stores the lots that closed in the account's last operation.
func (l *Ledger) keepClosed(ctx context.Context, tx storage.Tx, a *ledgerAccount) error {
	for _, lot := range a.state.TakeClosed() {
		body, err := json.Marshal(lot)
		if err != nil {
			return err
		}
		rec, err := tx.Put(ctx, ledgerLotsCollection, storage.Record{ID: entryID(a.id, "lot\x00"+lot.Key), Version: a.lotVersions[lot.Key], Body: body})
		if err != nil {
			return err
		}
		a.lotVersions[lot.Key] = rec.Version
	}
	return nil
}

func (l *Ledger) apply(ctx context.Context, tx storage.Tx, accounts map[string]*ledgerAccount, member string, op loyalty.Op, events *[]storage.Event) (loyalty.Entry, error) {
	id, err := l.accountID(member)
	if err != nil {
		return loyalty.Entry{}, err
	}
	if op.Key == "" {
		return loyalty.Entry{}, fmt.Errorf("%w: %s without an idempotency key", loyalty.ErrInvalid, op.Kind)
	}
	if first, ok, err := l.entry(ctx, tx, id, op.Key); err != nil {
		return loyalty.Entry{}, err
	} else if ok {
		if !first.Op.Same(op) {
			return loyalty.Entry{}, fmt.Errorf("%w: key %q was %s of %d at %s", loyalty.ErrIdempotencyConflict, op.Key, first.Op.Kind, first.Op.Points, first.Op.At.Format(time.RFC3339))
		}
		return first, nil
	}
	a, err := l.load(ctx, tx, accounts, id, member)
	if err != nil {
		return loyalty.Entry{}, err
	}
	if op.Ref != "" && op.Kind != loyalty.KindExpire {
		if _, ok, err := l.entry(ctx, tx, id, op.Ref); err != nil {
			return loyalty.Entry{}, err
		} else if !ok {
			return loyalty.Entry{}, fmt.Errorf("%w: %s %q: no entry %q", loyalty.ErrNotFound, op.Kind, op.Key, op.Ref)
		}
	}
	entries, applyErr := a.state.Apply(op)
	if err := l.keepClosed(ctx, tx, a); err != nil {
		return loyalty.Entry{}, err
	}
	for _, e := range entries {
		if err := l.write(ctx, tx, id, e, events); err != nil {
			return loyalty.Entry{}, err
		}
		a.dirty = true
	}
	if applyErr != nil {
		return loyalty.Entry{}, applyErr
	}
	return entries[len(entries)-1], nil
}

// write stores a journal entry and its event.
func (l *Ledger) write(ctx context.Context, tx storage.Tx, account string, e loyalty.Entry, events *[]storage.Event) error {
	body, err := json.Marshal(ledgerEntryRec{Account: account, Key: ledgerKey(account, e.Op.Key), Entry: e})
	if err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	if _, err := tx.Put(ctx, ledgerEntriesCollection, storage.Record{ID: id.String(), Body: body}); err != nil {
		return err
	}
	// The event's body is the entry record's, with the program: the same
	// bytes, not a second encoding.
	ev := make([]byte, 0, len(body)+len(l.program)+16)
	ev = append(ev, `{"program":`...)
	ev = appendJSONString(ev, l.program)
	ev = append(ev, ',')
	ev = append(ev, body[1:]...)
	*events = append(*events, storage.Event{Type: "loyalty.points_" + string(e.Op.Kind), Collection: ledgerAccountsCollection,
		RecordID: account, Time: l.t.e.clock.Now().UTC(), Body: ev})
	return nil
}

// entry returns the journal entry of account with key.
func (l *Ledger) entry(ctx context.Context, tx storage.ReadTx, account, key string) (loyalty.Entry, bool, error) {
	k := ledgerKey(account, key)
	if len(k) > storage.MaxIndexValueLen {
		return loyalty.Entry{}, false, fmt.Errorf("%w: idempotency key %q is too long", loyalty.ErrInvalid, key)
	}
	page, err := tx.Scan(ctx, ledgerEntriesCollection, storage.Query{Index: "key", Equal: k, Limit: 1})
	if err != nil {
		return loyalty.Entry{}, false, err
	}
	if len(page.Records) == 0 {
		return loyalty.Entry{}, false, nil
	}
	var r ledgerEntryRec
	if err := json.Unmarshal(page.Records[0].Body, &r); err != nil {
		return loyalty.Entry{}, false, fmt.Errorf("crm: ledger entry of %s: %w", account, err)
	}
	return r.Entry, true, nil
}

// State returns member's balances and lots (zero for a member with none).
func (l *Ledger) State(ctx context.Context, member string) (loyalty.State, error) {
	id, err := l.accountID(member)
	if err != nil {
		return loyalty.State{}, err
	}
	var st loyalty.State
	err = l.t.view(ctx, func(tx storage.ReadTx) error {
		st, err = l.stateOf(ctx, tx, id, member)
		return err
	})
	return st, err
}

// stateIn is State in a transaction.
func (l *Ledger) stateIn(ctx context.Context, tx storage.ReadTx, member string) (loyalty.State, error) {
	id, err := l.accountID(member)
	if err != nil {
		return loyalty.State{}, err
	}
	return l.stateOf(ctx, tx, id, member)
}

func (l *Ledger) stateOf(ctx context.Context, tx storage.ReadTx, id, member string) (loyalty.State, error) {
	a, err := l.load(ctx, tx, nil, id, member)
	if err != nil {
		return loyalty.State{}, err
	}
	st := a.state
	st.Closed = nil // bound to this transaction
	return st, nil
}

// Entry returns member's journal entry with idempotency key key.
func (l *Ledger) Entry(ctx context.Context, member, key string) (loyalty.Entry, bool, error) {
	id, err := l.accountID(member)
	if err != nil {
		return loyalty.Entry{}, false, err
	}
	var (
		e  loyalty.Entry
		ok bool
	)
	err = l.t.view(ctx, func(tx storage.ReadTx) error {
		var err error
		e, ok, err = l.entry(ctx, tx, id, key)
		return err
	})
	return e, ok, err
}

// Journal returns member's journal, oldest first, the state it built and
// the lots that have closed, read in one snapshot: an Account whose Check
// verifies the stored ledger.
func (l *Ledger) Journal(ctx context.Context, member string) (loyalty.Account, error) {
	id, err := l.accountID(member)
	if err != nil {
		return loyalty.Account{}, err
	}
	var out loyalty.Account
	err = l.t.view(ctx, func(tx storage.ReadTx) error {
		out, err = l.journalIn(ctx, tx, id, member)
		return err
	})
	return out, err
}

// journalIn reads an account's state and journal in tx.
func (l *Ledger) journalIn(ctx context.Context, tx storage.ReadTx, id, member string) (loyalty.Account, error) {
	var out loyalty.Account
	a, err := l.load(ctx, tx, nil, id, member)
	if err != nil {
		return out, err
	}
	out.State = a.state
	out.State.Closed = nil
	err = scanAll(ctx, tx, ledgerEntriesCollection, storage.Query{Index: "key", Prefix: id + sep}, func(rec storage.Record) error {
		var r ledgerEntryRec
		if err := json.Unmarshal(rec.Body, &r); err != nil {
			return fmt.Errorf("crm: ledger entry of %s: %w", id, err)
		}
		out.Journal = append(out.Journal, r.Entry)
		return nil
	})
	if err != nil {
		return out, err
	}
	// The index lists them by key; the journal is by Seq.
	slices.SortFunc(out.Journal, func(x, y loyalty.Entry) int { return cmp.Compare(x.Seq, y.Seq) })
	// The lots that closed, from their own records.
	open := map[string]bool{}
	for _, lot := range out.Lots {
		open[lot.Key] = true
	}
	for _, e := range out.Journal {
		k := e.Op.Kind
		credits := k == loyalty.KindEarn || k == loyalty.KindPending || (k == loyalty.KindAdjust || k == loyalty.KindTransfer) && e.Op.Points > 0
		if !credits || open[e.Op.Key] {
			continue
		}
		lot, ok, err := a.state.Closed(e.Op.Key)
		if err != nil {
			return out, err
		}
		if ok {
			if out.ClosedLots == nil {
				out.ClosedLots = map[string]loyalty.Lot{}
			}
			out.ClosedLots[lot.Key] = lot
		}
	}
	return out, nil
}

// ExpireDue expires member's lots due by at, as one operation.
func (l *Ledger) ExpireDue(ctx context.Context, member string, at time.Time) ([]loyalty.Entry, error) {
	return l.due(ctx, member, func(st *loyalty.State) ([]loyalty.Entry, error) { return st.ExpireDue(at) })
}

// ActivateDue activates member's pending lots due by at (their
// loyalty.Op.ActivatesAt), as one operation.
func (l *Ledger) ActivateDue(ctx context.Context, member string, at time.Time) ([]loyalty.Entry, error) {
	return l.due(ctx, member, func(st *loyalty.State) ([]loyalty.Entry, error) { return st.ActivateDue(at) })
}

// RunDue is the ledger's daily job: for every member of the program, it
// activates the pending points due by at, then expires the lots due. It
// returns how many entries it made. Each member is its own transaction.
func (l *Ledger) RunDue(ctx context.Context, at time.Time) (int, error) {
	var members []string
	prefix := l.program + "/"
	err := l.t.view(ctx, func(tx storage.ReadTx) error {
		return scanAll(ctx, tx, ledgerAccountsCollection, storage.Query{Prefix: prefix}, func(rec storage.Record) error {
			members = append(members, rec.ID[len(prefix):])
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range members {
		a, err := l.ActivateDue(ctx, m, at)
		n += len(a)
		if err != nil {
			return n, err
		}
		x, err := l.ExpireDue(ctx, m, at)
		n += len(x)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// due runs one of State's due-date jobs for member in a transaction.
func (l *Ledger) due(ctx context.Context, member string, job func(*loyalty.State) ([]loyalty.Entry, error)) ([]loyalty.Entry, error) {
	id, err := l.accountID(member)
	if err != nil {
		return nil, err
	}
	var out []loyalty.Entry
	err = l.t.updateRetrying(ctx, func(tx storage.Tx) error {
		out = nil
		lt := l.begin(tx)
		a, err := l.load(ctx, tx, lt.accounts, id, member)
		if err != nil {
			return err
		}
		entries, err := job(&a.state)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return nil
		}
		if err := l.keepClosed(ctx, tx, a); err != nil {
			return err
		}
		for _, e := range entries {
			if err := l.write(ctx, tx, id, e, &lt.events); err != nil {
				return err
			}
		}
		a.dirty = true
		out = entries
		return lt.commit(ctx)
	})
	return out, err
}

// Settlement returns every coalition partner's totals over [from, to)
// across the program's members (see loyalty.PartnerTotals), read in one
// snapshot.
func (l *Ledger) Settlement(ctx context.Context, from, to time.Time) ([]loyalty.PartnerTotals, error) {
	if l.program == "" || strings.Contains(l.program, "/") {
		return nil, fmt.Errorf("%w: program name %q", ErrInvalid, l.program)
	}
	totals := map[string]*loyalty.PartnerTotals{}
	err := l.t.view(ctx, func(tx storage.ReadTx) error {
		// The key index lists entries by account: one member's journal
		// after another.
		var account string
		var journal []loyalty.Entry
		err := scanAll(ctx, tx, ledgerEntriesCollection, storage.Query{Index: "key", Prefix: l.program + "/"}, func(rec storage.Record) error {
			var r ledgerEntryRec
			if err := json.Unmarshal(rec.Body, &r); err != nil {
				return fmt.Errorf("crm: ledger entry %s: %w", rec.ID, err)
			}
			if r.Account != account {
				loyalty.Settle(journal, from, to, totals)
				account, journal = r.Account, journal[:0]
			}
			journal = append(journal, r.Entry)
			return nil
		})
		loyalty.Settle(journal, from, to, totals)
		return err
	})
	if err != nil {
		return nil, err
	}
	return loyalty.Settlement(totals), nil
}
