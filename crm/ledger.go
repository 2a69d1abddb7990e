package crm

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
// to another engine process (storage.ErrConflict or ErrExists).
const maxLedgerRetries = 20

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
	for attempt := 0; ; attempt++ {
		out = make([]LedgerResult, len(ops))
		err := l.t.update(ctx, func(tx storage.Tx) error {
			accounts := map[string]*ledgerAccount{}
			var events []storage.Event
			for i, o := range ops {
				e, err := l.apply(ctx, tx, accounts, o.Member, o.Op, &events)
				if err != nil && !refusal(err) {
					return err
				}
				out[i] = LedgerResult{Entry: e, Err: err}
			}
			for _, a := range accounts {
				if !a.dirty {
					continue
				}
				body := encodeLedgerState(&a.state)
				if _, err := tx.Put(ctx, ledgerAccountsCollection, storage.Record{ID: a.id, Version: a.version, Body: body}); err != nil {
					return err
				}
			}
			return tx.Append(ctx, events...)
		})
		if err == nil {
			return out, nil
		}
		// Another process changed an account or wrote an entry first:
		// start again from what it wrote.
		if (errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrExists)) && attempt < maxLedgerRetries {
			continue
		}
		return nil, err
	}
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
		a, err := l.load(ctx, tx, nil, id, member)
		if err != nil {
			return err
		}
		st = a.state
		st.Closed = nil // bound to this transaction
		return nil
	})
	return st, err
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

// Journal returns member's journal, oldest first, and the state it
// built, read in one snapshot.
func (l *Ledger) Journal(ctx context.Context, member string) (loyalty.Account, error) {
	id, err := l.accountID(member)
	if err != nil {
		return loyalty.Account{}, err
	}
	var out loyalty.Account
	err = l.t.view(ctx, func(tx storage.ReadTx) error {
		a, err := l.load(ctx, tx, nil, id, member)
		if err != nil {
			return err
		}
		out.State = a.state
		out.State.Closed = nil
		q := storage.Query{Index: "key", Prefix: id + sep, Limit: storage.MaxScanLimit}
		for {
			page, err := tx.Scan(ctx, ledgerEntriesCollection, q)
			if err != nil {
				return err
			}
			for _, rec := range page.Records {
				var r ledgerEntryRec
				if err := json.Unmarshal(rec.Body, &r); err != nil {
					return fmt.Errorf("crm: ledger entry of %s: %w", id, err)
				}
				out.Journal = append(out.Journal, r.Entry)
			}
			if page.Next == "" {
				// The index lists them by key; the journal is by Seq.
				slices.SortFunc(out.Journal, func(x, y loyalty.Entry) int { return cmp.Compare(x.Seq, y.Seq) })
				return nil
			}
			q.Cursor = page.Next
		}
	})
	return out, err
}

// ExpireDue expires member's lots due by at, as one operation.
func (l *Ledger) ExpireDue(ctx context.Context, member string, at time.Time) ([]loyalty.Entry, error) {
	id, err := l.accountID(member)
	if err != nil {
		return nil, err
	}
	var out []loyalty.Entry
	err = l.t.update(ctx, func(tx storage.Tx) error {
		out = nil
		a, err := l.load(ctx, tx, nil, id, member)
		if err != nil {
			return err
		}
		entries, err := a.state.ExpireDue(at)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return nil
		}
		if err := l.keepClosed(ctx, tx, a); err != nil {
			return err
		}
		var events []storage.Event
		for _, e := range entries {
			if err := l.write(ctx, tx, id, e, &events); err != nil {
				return err
			}
		}
		body := encodeLedgerState(&a.state)
		if _, err := tx.Put(ctx, ledgerAccountsCollection, storage.Record{ID: id, Version: a.version, Body: body}); err != nil {
			return err
		}
		out = entries
		return tx.Append(ctx, events...)
	})
	return out, err
}
