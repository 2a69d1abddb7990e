package postgres

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rapportcrm/rapport/storage"
)

// tx is a storage.Tx (or ReadTx) over one PostgreSQL transaction, on a
// connection of its own for the transaction's life.
//
// Its statements go in batches, one round trip each. BEGIN goes with the
// first statement; the writes of Put and Delete, once their checks have
// answered, wait to go with the transaction's next statement or with the
// COMMIT. So a transaction that reads a record, creates one with an event
// and commits takes three round trips, not seven. A write that fails in
// the database after its Put returned (a unique value a concurrent
// transaction took meanwhile) fails the transaction at its next statement
// or at its commit, with an error wrapping storage.ErrConflict.
//
// Create, Replace (of a record the transaction read) and Expect
// (storage.Deferrer) do not wait: their statements go with the next round
// trip, and the database's keys, its serialization checks and
// rapport_expect refuse what Put and Get would have found, failing the
// transaction. A transaction that creates a record with an event and
// commits is then one round trip.
type tx struct {
	s        *Store
	conn     *pgxpool.Conn
	begin    string // the BEGIN statement
	begun    bool   // BEGIN is sent or queued
	tenant   string
	writable bool
	done     bool
	// next holds the statements for the next round trip: the writes of
	// Put and Delete wait here.
	next *pgx.Batch
	// lockGen is the generation of the definitions when a write
	// transaction queued its BEGIN and declare lock, until the send that
	// takes the lock compares it (see stale).
	lockGen uint64
	// failed is the error of a write that may have left the transaction
	// half-done; the transaction cannot commit.
	failed error
	// events are appended at commit, when their sequence numbers are drawn.
	events []storage.Event
	// locked is set once a write transaction's declare lock is held.
	locked bool
	// holdsDefs is set while the transaction holds Store.defs (shared):
	// from its first deferred create, made before its declare lock was
	// held, to its end.
	holdsDefs bool
	// deferred are the writes of Create and Replace, by which a failed
	// send or commit is explained (see explain); claimed maps the unique
	// values of the creates to their IDs. written holds the collections
	// written otherwise (by Put, Delete, CreateMany, or Replace where an
	// index is unique), where Create and Replace check at once (as Put).
	deferred   []deferredWrite
	createdIDs map[[2]string]bool // collection, ID
	claimed    map[claimKey]string
	written    map[string]bool
	// outboxLocked is set once the transaction has queued the outbox
	// lock (RedactEvents).
	outboxLocked bool
	// expects are the Expect checks, in order; a failed one names its
	// position.
	expects []storage.ExpectError
	// seen holds, in a write transaction, the records it read in
	// collections it has not written, by collection and ID: what Replace
	// needs to write one unchecked.
	seen map[[2]string]storage.Record
}

// see notes rec of collection, as a write transaction read it, for
// Replace; not in a collection it wrote, where Replace is Put.
func (t *tx) see(collection string, rec storage.Record) {
	if !t.writable || t.written[collection] {
		return
	}
	if t.seen == nil {
		t.seen = map[[2]string]storage.Record{}
	}
	rec.Body = bytes.Clone(rec.Body) // the caller's copy may change
	t.seen[[2]string{collection, rec.ID}] = rec
}

// deferredWrite is a record created (tx.Create) or updated (tx.Replace)
// without checks.
type deferredWrite struct {
	coll, id string
	uniques  []claimKey // the unique values it takes
	replace  bool       // a deferred Replace: only its unique values may clash
}

type claimKey struct{ coll, idx, value string }

func (t *tx) check(ctx context.Context, write bool) error {
	if t.done {
		return storage.ErrTxDone
	}
	if write && !t.writable {
		return storage.ErrReadOnly
	}
	if t.failed != nil {
		return fmt.Errorf("transaction already failed: %w", t.failed)
	}
	return ctx.Err()
}

// queue returns the batch of the next round trip, which starts with BEGIN
// (and the tenant, under row-level security) if the transaction has not
// begun.
func (t *tx) queue() *pgx.Batch {
	if t.next == nil {
		t.next = &pgx.Batch{}
	}
	if !t.begun {
		t.begun = true
		t.next.Queue(t.begin)
		if t.writable {
			// Before anything that takes the snapshot: see writeLock.
			t.next.Queue(writeLock)
			t.lockGen = t.s.generation()
		}
		if t.s.rls {
			t.next.Queue("SELECT set_config('rapport.tenant', $1, true)", t.tenant)
		}
	}
	return t.next
}

// send sends the queued statements in one round trip and runs their
// callbacks. Any error leaves the transaction failed: PostgreSQL aborts a
// transaction at its first failed statement.
func (t *tx) send(ctx context.Context) error {
	b := t.next
	t.next = nil
	if b == nil || b.Len() == 0 {
		return nil
	}
	if err := t.conn.SendBatch(ctx, b).Close(); err != nil {
		err = t.explain(ctx, err)
		t.failed = err
		return err
	}
	if t.writable {
		t.locked = true
	}
	return nil
}

// writeLock is the first statement of every write transaction: the
// declare lock, shared. A Declare holds it exclusively while it rebuilds
// indexes, so a write never maintains an index by the old definition, and
// a write that waited for a Declare has its snapshot taken after it (LOCK
// TABLE, unlike a SELECT, takes no snapshot), so it sees the index rows
// the Declare rebuilt.
const writeLock = "LOCK TABLE declare_lock IN ACCESS SHARE MODE"

// stale reports, after the send that took the declare lock, whether a
// Declare switched the definitions since the lock was queued: a write
// that read them before that send starts over. Once the lock is held they
// cannot change.
func (t *tx) stale() bool {
	if t.lockGen == 0 {
		return false
	}
	g := t.lockGen
	t.lockGen = 0
	return g != t.s.generation()
}

// fail records err as the transaction's failure and returns it mapped.
func (t *tx) fail(err error) error {
	err = mapErr(err)
	t.failed = err
	return err
}

// end ends the transaction if it is still open on the connection (rolling
// back a failed or abandoned one) and hands the connection back.
func (t *tx) end(ctx context.Context) {
	t.done = true
	t.next = nil
	if t.holdsDefs {
		t.holdsDefs = false
		t.s.defs.RUnlock()
	}
	c := t.conn.Conn()
	if !c.IsClosed() && c.PgConn().TxStatus() != 'I' {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if _, err := c.Exec(rctx, "ROLLBACK"); err != nil {
			_ = c.Close(rctx) // the pool drops a closed connection
		}
		cancel()
	}
	t.conn.Release()
}

// commit sends what is queued, the events and COMMIT, in one round trip.
// A statement that fails there skips the rest, COMMIT included, and end
// rolls the transaction back. A transaction that sent nothing and has no
// events has nothing to commit. Many events (copyEventsMin) are written
// with COPY first (see copyEvents).
func (t *tx) commit(ctx context.Context) error {
	if !t.begun && len(t.events) == 0 {
		return nil
	}
	events := t.events
	if len(events) >= copyEventsMin && !t.s.rls {
		if err := t.copyEvents(ctx); err != nil {
			return err
		}
		events = nil
	}
	b := t.queue()
	t.next = nil
	if err := t.queueEvents(b, events); err != nil {
		return err
	}
	b.Queue("COMMIT")
	if err := t.conn.SendBatch(ctx, b).Close(); err != nil {
		return t.explain(ctx, err)
	}
	return nil
}

// explain maps the error of a send or commit that failed. A failed Expect
// is an *ExpectError. A deferred create that met a stored ID or unique
// value is ErrExists or a *UniqueError, as Put would have returned: which
// one is read once the transaction is rolled back, because PostgreSQL's
// message does not say it in a form to rely on (it is translated, and
// quotes bytea in the server's output format).
func (t *tx) explain(ctx context.Context, err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return mapErr(err)
	}
	if pe.Code == expectFailed {
		if n, perr := strconv.Atoi(pe.Message); perr == nil && n >= 0 && n < len(t.expects) {
			e := t.expects[n]
			return &e
		}
		return mapErr(err)
	}
	if pe.Code != "23505" || len(t.deferred) == 0 || (pe.TableName != "records" && pe.TableName != "uniques") {
		return mapErr(err)
	}
	// Roll back, and read what holds the keys in a new transaction (with
	// the tenant set, under row-level security).
	c := t.conn.Conn()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, rerr := c.Exec(rctx, "ROLLBACK"); rerr != nil {
		return mapErr(err)
	}
	ptx, rerr := c.BeginTx(rctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if rerr != nil {
		return mapErr(err)
	}
	defer ptx.Rollback(rctx) //nolint:errcheck // read only
	if t.s.rls {
		if _, rerr := ptx.Exec(rctx, "SELECT set_config('rapport.tenant', $1, true)", t.tenant); rerr != nil {
			return mapErr(err)
		}
	}
	tenant := []byte(t.tenant)
	if pe.TableName == "records" {
		var colls []string
		var ids [][]byte
		for _, d := range t.deferred {
			if !d.replace {
				colls, ids = append(colls, d.coll), append(ids, []byte(d.id))
			}
		}
		taken := map[[2]string]bool{}
		rows, qerr := ptx.Query(rctx, sqlTakenKeys, tenant, colls, ids)
		if qerr != nil {
			return mapErr(err)
		}
		for rows.Next() {
			var coll string
			var id []byte
			if rows.Scan(&coll, &id) == nil {
				taken[[2]string{coll, string(id)}] = true
			}
		}
		rows.Close()
		for _, d := range t.deferred {
			if !d.replace && taken[[2]string{d.coll, d.id}] {
				return fmt.Errorf("%w: %s %q", storage.ErrExists, d.coll, d.id)
			}
		}
		return mapErr(err)
	}
	var colls, idxs []string
	var vals [][]byte
	for _, d := range t.deferred {
		for _, k := range d.uniques {
			colls, idxs, vals = append(colls, k.coll), append(idxs, k.idx), append(vals, []byte(k.value))
		}
	}
	holders := map[claimKey]string{}
	rows, qerr := ptx.Query(rctx, sqlHeldKeys, tenant, colls, idxs, vals)
	if qerr != nil {
		return mapErr(err)
	}
	for rows.Next() {
		var k claimKey
		var value, id []byte
		if rows.Scan(&k.coll, &k.idx, &value, &id) == nil {
			k.value = string(value)
			holders[k] = string(id)
		}
	}
	rows.Close()
	for _, d := range t.deferred {
		for _, k := range d.uniques {
			if holder, ok := holders[k]; ok && holder != d.id {
				return &storage.UniqueError{Collection: k.coll, Index: k.idx, Value: k.value, ExistingID: holder}
			}
		}
	}
	// The holder is gone since: the clash was with a concurrent
	// transaction, and a retry may succeed.
	return mapErr(err)
}

// expectFailed is the SQLSTATE of a failed Expect (migration 4).
const expectFailed = "RX001"

// Tenant implements storage.ReadTx.
func (t *tx) Tenant() string { return t.tenant }

func notFound(collection, id string) error {
	return fmt.Errorf("%w: %s %q", storage.ErrNotFound, collection, id)
}

// checkKey is check, for a statement about record id of collection.
func (t *tx) checkKey(ctx context.Context, write bool, collection, id string) error {
	if err := t.check(ctx, write); err != nil {
		return err
	}
	if _, err := t.s.collection(collection); err != nil {
		return err
	}
	return storage.ValidateID("record ID", id)
}

// Get implements storage.ReadTx.
func (t *tx) Get(ctx context.Context, collection, id string) (storage.Record, error) {
	if err := t.checkKey(ctx, false, collection, id); err != nil {
		return storage.Record{}, err
	}
	var ver int64
	var body []byte
	found := true
	t.queue().Queue("SELECT version, body FROM records WHERE tenant = $1 AND coll = $2 AND id = $3",
		[]byte(t.tenant), collection, []byte(id)).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&ver, &body)
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		return err
	})
	if err := t.send(ctx); err != nil {
		return storage.Record{}, err
	}
	if !found {
		return storage.Record{}, notFound(collection, id)
	}
	rec := storage.Record{ID: id, Version: uint64(ver), Body: body}
	t.see(collection, rec)
	return rec, nil
}

var _ storage.MultiGetter = (*tx)(nil)

// GetMany implements storage.MultiGetter in one round trip.
func (t *tx) GetMany(ctx context.Context, collection string, ids []string) ([]storage.Record, error) {
	if err := t.check(ctx, false); err != nil {
		return nil, err
	}
	if _, err := t.s.collection(collection); err != nil {
		return nil, err
	}
	keys := make([][]byte, len(ids))
	for i, id := range ids {
		if err := storage.ValidateID("record ID", id); err != nil {
			return nil, err
		}
		keys[i] = []byte(id)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	found := make(map[string]storage.Record, len(ids))
	t.queue().Queue(sqlGetMany,
		[]byte(t.tenant), collection, keys).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id, body []byte
			var ver int64
			if err := rows.Scan(&id, &ver, &body); err != nil {
				return err
			}
			found[string(id)] = storage.Record{ID: string(id), Version: uint64(ver), Body: body}
			t.see(collection, found[string(id)])
		}
		return rows.Err()
	})
	if err := t.send(ctx); err != nil {
		return nil, err
	}
	out := make([]storage.Record, 0, len(found))
	for _, id := range ids {
		if r, ok := found[id]; ok {
			out = append(out, r)
			delete(found, id)
		}
	}
	return out, nil
}

// parse checks rec for a write to collection and returns the
// collection's definition and rec's index values.
func (t *tx) parse(collection string, rec storage.Record) (storage.Collection, [][]string, error) {
	c, err := t.s.collection(collection)
	if err != nil {
		return c, nil, err
	}
	if err := storage.ValidateID("record ID", rec.ID); err != nil {
		return c, nil, err
	}
	if err := storage.ValidateBody(rec.Body); err != nil {
		return c, nil, fmt.Errorf("%s %q: %w", collection, rec.ID, err)
	}
	vals, err := c.IndexValues(rec.Body)
	if err != nil {
		return c, nil, fmt.Errorf("%s %q: %w", collection, rec.ID, err)
	}
	return c, vals, nil
}

// Put implements storage.Tx.
func (t *tx) Put(ctx context.Context, collection string, rec storage.Record) (storage.Record, error) {
	if err := t.check(ctx, true); err != nil {
		return storage.Record{}, err
	}
	c, newVals, err := t.parse(collection, rec)
	if err != nil {
		return storage.Record{}, err
	}
	tenant, id := []byte(t.tenant), []byte(rec.ID)

	// One round trip: the stored record (locked) and the holders of the
	// unique values this write would take.
	var uIdx []string
	var uVal [][]byte
	for i, ix := range c.Indexes {
		if ix.Unique {
			for _, v := range newVals[i] {
				uIdx, uVal = append(uIdx, ix.Name), append(uVal, []byte(v))
			}
		}
	}
	b := t.queue()
	var oldVer int64
	var oldBody []byte
	found := true
	b.Queue("SELECT version, body FROM records WHERE tenant = $1 AND coll = $2 AND id = $3 FOR UPDATE",
		tenant, collection, id).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&oldVer, &oldBody)
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		return err
	})
	// One lookup per unique value, by the whole primary key, so that
	// the plan is an index probe whatever the table's statistics say (a
	// join over the values degraded to a scan per write within a large
	// transaction); the first clash in (index, value) order wins.
	var clash *storage.UniqueError
	order := make([]int, len(uIdx))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		x, y := order[a], order[b]
		if uIdx[x] != uIdx[y] {
			return uIdx[x] < uIdx[y]
		}
		return string(uVal[x]) < string(uVal[y])
	})
	for _, i := range order {
		idx, val := uIdx[i], uVal[i]
		b.Queue(`SELECT id FROM uniques WHERE tenant = $1 AND coll = $2 AND idx = $3 AND value = $4 AND id <> $5`,
			tenant, collection, idx, val, id).QueryRow(func(row pgx.Row) error {
			var other []byte
			err := row.Scan(&other)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			if err == nil && clash == nil {
				clash = &storage.UniqueError{Collection: collection, Index: idx, Value: string(val), ExistingID: string(other)}
			}
			return err
		})
	}
	if err := t.send(ctx); err != nil {
		return storage.Record{}, err
	}
	if t.stale() {
		// A Declare switched the definitions before the lock was granted.
		return t.Put(ctx, collection, rec)
	}
	switch {
	case rec.Version == 0 && found:
		return storage.Record{}, fmt.Errorf("%w: %s %q", storage.ErrExists, collection, rec.ID)
	case rec.Version != 0 && !found:
		return storage.Record{}, notFound(collection, rec.ID)
	case found && uint64(oldVer) != rec.Version:
		return storage.Record{}, fmt.Errorf("%w: %s %q is at version %d, the write expected %d",
			storage.ErrConflict, collection, rec.ID, oldVer, rec.Version)
	}
	var oldVals [][]string
	if found {
		if oldVals, err = c.IndexValues(oldBody); err != nil {
			return storage.Record{}, fmt.Errorf("%s %q: stored body: %w", collection, rec.ID, err)
		}
	}
	// A unique value the record already holds is not a clash; the query
	// left out rows held by this ID, so any row found is another's.
	if clash != nil {
		return storage.Record{}, clash
	}
	ver := oldVer + 1
	if err := t.queueWrite(c, rec, found, ver, oldVals, newVals, -1); err != nil {
		return storage.Record{}, err
	}
	t.wrote(collection)
	return storage.Record{ID: rec.ID, Version: uint64(ver), Body: bytes.Clone(rec.Body)}, nil
}

// wrote notes that the transaction wrote to collection other than by a
// deferred create.
func (t *tx) wrote(collection string) {
	if t.written == nil {
		t.written = map[string]bool{}
	}
	t.written[collection] = true
}

// queueWrite queues, for the transaction's next round trip, the writes
// of rec at version ver: its row (an update if found), and the changes
// of its index values from oldVals to newVals. They go all of them or, on
// an error here, none.
//
// With guard (a position in t.expects), the update is of the row at
// version ver-1 only, and the transaction fails with that Expect if the
// row is at another: an unchecked write never moves index entries by
// values the row did not have.
func (t *tx) queueWrite(c storage.Collection, rec storage.Record, found bool, ver int64, oldVals, newVals [][]string, guard int) error {
	collection := c.Name
	tenant, id := []byte(t.tenant), []byte(rec.ID)
	body := bytes.Clone(rec.Body) // sent later: the caller may reuse rec.Body
	w := &pgx.Batch{}
	switch {
	case found && guard >= 0:
		w.Queue(`WITH u AS (UPDATE records SET version = $4, body = $5 WHERE tenant = $1 AND coll = $2 AND id = $3 AND version = $6 RETURNING 1)
			SELECT rapport_expect(EXISTS (SELECT 1 FROM u), $7)`,
			tenant, collection, id, ver, body, ver-1, strconv.Itoa(guard))
	case found:
		w.Queue("UPDATE records SET version = $4, body = $5 WHERE tenant = $1 AND coll = $2 AND id = $3",
			tenant, collection, id, ver, body)
	default:
		w.Queue("INSERT INTO records (tenant, coll, id, version, body) VALUES ($1, $2, $3, $4, $5)",
			tenant, collection, id, ver, body)
	}
	for i, ix := range c.Indexes {
		var was []string
		if oldVals != nil {
			was = oldVals[i]
		}
		gone, added := diffValues(was, newVals[i])
		if len(ix.Columns) > 0 {
			if err := queueColumns(w, collection, ix, tenant, id, gone, added); err != nil {
				return err
			}
		}
		if len(gone) > 0 {
			w.Queue(sqlDeleteEntries,
				tenant, collection, ix.Name, id, gone)
			if ix.Unique {
				w.Queue(sqlDeleteUniques,
					tenant, collection, ix.Name, id, gone)
			}
		}
		if len(added) > 0 {
			w.Queue("INSERT INTO entries (tenant, coll, idx, value, id) SELECT $1, $2, $3, v, $4 FROM unnest($5::bytea[]) AS v",
				tenant, collection, ix.Name, id, added)
			if ix.Unique {
				// A value another transaction took after the check
				// (Put) or meanwhile (Create) is a unique violation,
				// which explain and mapErr report.
				w.Queue(`INSERT INTO uniques (tenant, coll, idx, value, id) SELECT $1, $2, $3, v, $4 FROM unnest($5::bytea[]) AS v`,
					tenant, collection, ix.Name, id, added)
			}
		}
	}
	next := t.queue()
	next.QueuedQueries = append(next.QueuedQueries, w.QueuedQueries...)
	return nil
}

var _ storage.Deferrer = (*tx)(nil)

// Create implements storage.Deferrer: the record's row, index entries and
// unique values go with the transaction's next round trip, unchecked; the
// database's keys refuse a taken ID or unique value, and explain says
// which. In a collection the transaction wrote otherwise, whose writes
// could clash with it in ways the stored data would not show once rolled
// back, Create is Put.
func (t *tx) Create(ctx context.Context, collection string, rec storage.Record) (storage.Record, error) {
	if err := t.check(ctx, true); err != nil {
		return storage.Record{}, err
	}
	if rec.Version != 0 {
		return storage.Record{}, fmt.Errorf("%w: create of %s %q at version %d", storage.ErrInvalid, collection, rec.ID, rec.Version)
	}
	if t.written[collection] {
		return t.Put(ctx, collection, rec)
	}
	if !t.locked && !t.holdsDefs {
		// The definitions read below must hold until the declare lock,
		// which goes with the writes, is granted: a Declare of this
		// store that rebuilds indexes waits (Store.defs) until the
		// transaction ends. While one waits or runs, Create is Put,
		// which checks the definitions once the lock is held: waiting
		// here could wait for a transaction that waits for this one.
		if !t.s.defs.TryRLock() {
			return t.Put(ctx, collection, rec)
		}
		t.holdsDefs = true
	}
	c, vals, err := t.parse(collection, rec)
	if err != nil {
		return storage.Record{}, err
	}
	// Clashes among this transaction's deferred creates are found here:
	// once rolled back, the database would not show them.
	d := deferredWrite{coll: collection, id: rec.ID}
	if t.createdIDs[[2]string{collection, rec.ID}] {
		return storage.Record{}, fmt.Errorf("%w: %s %q", storage.ErrExists, collection, rec.ID)
	}
	for i, ix := range c.Indexes {
		if !ix.Unique {
			continue
		}
		for _, v := range vals[i] {
			k := claimKey{collection, ix.Name, v}
			if holder, ok := t.claimed[k]; ok {
				return storage.Record{}, &storage.UniqueError{Collection: collection, Index: ix.Name, Value: v, ExistingID: holder}
			}
			d.uniques = append(d.uniques, k)
		}
	}
	if err := t.queueWrite(c, rec, false, 1, nil, vals, -1); err != nil {
		return storage.Record{}, err
	}
	if t.claimed == nil {
		t.claimed, t.createdIDs = map[claimKey]string{}, map[[2]string]bool{}
	}
	t.createdIDs[[2]string{collection, rec.ID}] = true
	for _, k := range d.uniques {
		t.claimed[k] = rec.ID
	}
	t.deferred = append(t.deferred, d)
	return storage.Record{ID: rec.ID, Version: 1, Body: bytes.Clone(rec.Body)}, nil
}

// Replace implements storage.Deferrer. A record this transaction read
// at rec.Version, before writing anything else to its collection (but
// deferred creates, and in a collection without unique indexes deferred
// replaces), is updated without a round trip of checks: its old index values are
// known, a concurrent change or delete since the transaction's snapshot
// makes the UPDATE a serialization failure (ErrConflict), and a unique
// value it takes is refused by the database and explained as for Create.
// The UPDATE is also guarded by the version read (an *ExpectError). In
// any other case Replace is Put.
func (t *tx) Replace(ctx context.Context, collection string, rec storage.Record) (storage.Record, error) {
	if err := t.check(ctx, true); err != nil {
		return storage.Record{}, err
	}
	if rec.Version == 0 {
		return storage.Record{}, fmt.Errorf("%w: replace of %s %q at version 0", storage.ErrInvalid, collection, rec.ID)
	}
	old, ok := t.seen[[2]string{collection, rec.ID}]
	if !ok || old.Version != rec.Version || t.written[collection] || !t.locked {
		return t.Put(ctx, collection, rec)
	}
	// The declare lock is held (the read sent it): the definitions hold.
	c, newVals, err := t.parse(collection, rec)
	if err != nil {
		return storage.Record{}, err
	}
	oldVals, err := c.IndexValues(old.Body)
	if err != nil {
		return storage.Record{}, fmt.Errorf("%s %q: stored body: %w", collection, rec.ID, err)
	}
	d := deferredWrite{coll: collection, id: rec.ID, replace: true}
	for i, ix := range c.Indexes {
		if !ix.Unique {
			continue
		}
		_, added := diffValues(oldVals[i], newVals[i])
		for _, v := range added {
			k := claimKey{collection, ix.Name, string(v)}
			if holder, ok := t.claimed[k]; ok && holder != rec.ID {
				return storage.Record{}, &storage.UniqueError{Collection: collection, Index: ix.Name, Value: string(v), ExistingID: holder}
			}
			d.uniques = append(d.uniques, k)
		}
	}
	ver := int64(rec.Version) + 1
	guard := len(t.expects)
	if err := t.queueWrite(c, rec, true, ver, oldVals, newVals, guard); err != nil {
		return storage.Record{}, err
	}
	t.expects = append(t.expects, storage.ExpectError{Collection: collection, ID: rec.ID, Version: rec.Version})
	t.deferred = append(t.deferred, d)
	if hasUnique(c) {
		// The values it releases could be taken by a later write there,
		// which explain could not tell from the rolled-back data: later
		// writes there check as Put does. Without unique indexes, only
		// IDs can clash, and the stored data says which are taken.
		t.wrote(collection)
	}
	return storage.Record{ID: rec.ID, Version: uint64(ver), Body: bytes.Clone(rec.Body)}, nil
}

// hasUnique reports whether c has a unique index.
func hasUnique(c storage.Collection) bool {
	for _, ix := range c.Indexes {
		if ix.Unique {
			return true
		}
	}
	return false
}

// Expect implements storage.Deferrer: the check goes with the
// transaction's next round trip, in its snapshot.
func (t *tx) Expect(ctx context.Context, collection, id string, version uint64) error {
	if err := t.checkKey(ctx, true, collection, id); err != nil {
		return err
	}
	n := len(t.expects)
	t.expects = append(t.expects, storage.ExpectError{Collection: collection, ID: id, Version: version})
	t.queue().Queue("SELECT rapport_expect(coalesce((SELECT version FROM records WHERE tenant = $1 AND coll = $2 AND id = $3), 0) = $4, $5)",
		[]byte(t.tenant), collection, []byte(id), int64(version), strconv.Itoa(n))
	return nil
}

// diffValues returns the values of was not in now, and of now not in was.
func diffValues(was, now []string) (gone, added [][]byte) {
	for _, v := range was {
		if !slices.Contains(now, v) {
			gone = append(gone, []byte(v))
		}
	}
	for _, v := range now {
		if !slices.Contains(was, v) {
			added = append(added, []byte(v))
		}
	}
	return gone, added
}

// Delete implements storage.Tx.
func (t *tx) Delete(ctx context.Context, collection, id string, version uint64) error {
	if err := t.checkKey(ctx, true, collection, id); err != nil {
		return err
	}
	tenant := []byte(t.tenant)
	var oldVer int64
	var oldBody []byte
	found := true
	t.queue().Queue("SELECT version, body FROM records WHERE tenant = $1 AND coll = $2 AND id = $3 FOR UPDATE",
		tenant, collection, []byte(id)).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&oldVer, &oldBody)
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		return err
	})
	if err := t.send(ctx); err != nil {
		return err
	}
	// The definitions, read now that the lock is held.
	c, err := t.s.collection(collection)
	if err != nil {
		return err
	}
	t.stale()
	if !found {
		return notFound(collection, id)
	}
	if version != 0 && version != uint64(oldVer) {
		return fmt.Errorf("%w: %s %q is at version %d, the delete expected %d",
			storage.ErrConflict, collection, id, oldVer, version)
	}
	oldVals, err := c.IndexValues(oldBody)
	if err != nil {
		return fmt.Errorf("%s %q: stored body: %w", collection, id, err)
	}
	// The deletes go with the transaction's next round trip, all of them
	// or (on an error here) none.
	b := &pgx.Batch{}
	b.Queue("DELETE FROM records WHERE tenant = $1 AND coll = $2 AND id = $3", tenant, collection, []byte(id))
	for i, ix := range c.Indexes {
		gone, _ := diffValues(oldVals[i], nil)
		if len(gone) == 0 {
			continue
		}
		if len(ix.Columns) > 0 {
			if err := queueColumns(b, collection, ix, tenant, []byte(id), gone, nil); err != nil {
				return err
			}
		}
		b.Queue(sqlDeleteEntries,
			tenant, collection, ix.Name, []byte(id), gone)
		if ix.Unique {
			b.Queue(sqlDeleteUniques,
				tenant, collection, ix.Name, []byte(id), gone)
		}
	}
	next := t.queue()
	next.QueuedQueries = append(next.QueuedQueries, b.QueuedQueries...)
	t.wrote(collection)
	delete(t.seen, [2]string{collection, id})
	return nil
}

// Append implements storage.Tx. The events are written when the
// transaction commits.
func (t *tx) Append(ctx context.Context, events ...storage.Event) error {
	if err := t.check(ctx, true); err != nil {
		return err
	}
	for _, ev := range events {
		if err := storage.ValidateEvent(ev); err != nil {
			return err
		}
	}
	for _, ev := range events {
		ev.Tenant, ev.Seq = t.tenant, 0
		ev.Body = bytes.Clone(ev.Body)
		t.events = append(t.events, ev)
	}
	return nil
}

// queueEvents queues the appended events' inserts, pending: with
// negative sequence numbers, which readers replace with their numbers once
// committed (see queueSequencing). No lock is taken, so that commits of
// events share disk flushes. A pending number is -(g·2^20 + i): g is
// drawn once per statement from outbox_pending_seq and i is the event's
// position, so numbering in order of pending numbers keeps a
// transaction's events in order, and together, and puts a transaction
// after every one that committed before it drew. A transaction of more
// than 2^20 events draws once per 2^20: its events stay in order, but
// those of a transaction that drew in between may come among them.
func (t *tx) queueEvents(b *pgx.Batch, events []storage.Event) error {
	group := t.s.pendingGroup
	for from := 0; from < len(events); from += group {
		if err := t.queueEventGroup(b, events[from:min(from+group, len(events))], group); err != nil {
			return err
		}
	}
	return nil
}

// copyEventsMin is the least number of events that a transaction writes
// with COPY (copyEvents) rather than with one INSERT in its commit's
// round trip. An INSERT of the events unnested from array parameters
// took twice as long as COPY from a thousand events on (10,000: 0.09–0.3
// s against 0.04 s); below a few hundred, COPY's two more round trips
// cost as much as it saves.
const copyEventsMin = 512

// copyEvents writes the transaction's events pending, numbered as
// queueEvents numbers them, with COPY: it sends what is queued with the
// draws of their pending numbers, then copies the rows. Row-level
// security refuses COPY FROM, so a store under it keeps the INSERT.
func (t *tx) copyEvents(ctx context.Context) error {
	group := t.s.pendingGroup
	rows := make([][]any, len(t.events))
	for i, ev := range t.events {
		at, err := eventTime(ev)
		if err != nil {
			return err
		}
		var body []byte
		if len(ev.Body) > 0 {
			body = ev.Body
		}
		rows[i] = []any{int64(0), []byte(ev.Tenant), []byte(ev.Type), []byte(ev.Collection), []byte(ev.RecordID), at, body}
	}
	draws := make([]int64, (len(rows)+group-1)/group)
	b := t.queue()
	for k := range draws {
		b.Queue("SELECT nextval('outbox_pending_seq')").QueryRow(func(row pgx.Row) error { return row.Scan(&draws[k]) })
	}
	if err := t.send(ctx); err != nil {
		return err
	}
	for i := range rows {
		rows[i][0] = -(draws[i/group]*int64(group) + int64(i%group))
	}
	if _, err := t.conn.CopyFrom(ctx, pgx.Identifier{"outbox"}, []string{"seq", "tenant", "type", "coll", "record_id", "time", "body"}, pgx.CopyFromRows(rows)); err != nil {
		return t.fail(err)
	}
	return nil
}

// eventTime is ev's time as the outbox keeps it: RFC 3339 with
// nanoseconds and the offset.
func eventTime(ev storage.Event) (string, error) {
	at, err := json.Marshal(ev.Time)
	if err != nil {
		return "", fmt.Errorf("%w: event %s: time: %v", storage.ErrInvalid, ev.Type, err)
	}
	return strings.Trim(string(at), `"`), nil
}

// pendingGroup is how many events share a draw of a pending number.
const pendingGroup = 1 << 20

func (t *tx) queueEventGroup(b *pgx.Batch, events []storage.Event, group int) error {
	n := len(events)
	tenants, types, colls, ids, bodies := make([][]byte, n), make([][]byte, n), make([][]byte, n), make([][]byte, n), make([][]byte, n)
	times := make([]string, n)
	for i, ev := range events {
		at, err := eventTime(ev)
		if err != nil {
			return err
		}
		tenants[i], types[i], colls[i], ids[i] = []byte(ev.Tenant), []byte(ev.Type), []byte(ev.Collection), []byte(ev.RecordID)
		times[i] = at
		if len(ev.Body) > 0 {
			bodies[i] = ev.Body
		}
	}
	// A WITH query that calls a volatile function runs once.
	b.Queue(`WITH g AS (SELECT nextval('outbox_pending_seq') AS v)
		INSERT INTO outbox (seq, tenant, type, coll, record_id, time, body)
		SELECT -(g.v * $7 + u.n - 1), u.tenant, u.type, u.coll, u.record_id, u.time, u.body
		FROM g, unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::text[], $6::bytea[])
			WITH ORDINALITY AS u(tenant, type, coll, record_id, time, body, n)`,
		tenants, types, colls, ids, times, bodies, int64(group))
	return nil
}

// RedactEvents implements storage.Tx.
func (t *tx) RedactEvents(ctx context.Context, collection string, ids []string, body []byte) (int, error) {
	if err := t.check(ctx, true); err != nil {
		return 0, err
	}
	keys := make([][]byte, 0, len(ids))
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		if err := storage.ValidateID("record ID", id); err != nil {
			return 0, err
		}
		if !set[id] {
			keys, set[id] = append(keys, []byte(id)), true
		}
	}
	if len(body) > 0 {
		if err := storage.ValidateBody(body); err != nil {
			return 0, err
		}
	} else {
		body = nil
	}
	n := 0
	for i, ev := range t.events {
		if ev.Collection == collection && set[ev.RecordID] {
			t.events[i].Body = bytes.Clone(body)
			n++
		}
	}
	if len(keys) == 0 {
		return n, nil
	}
	b := t.queue()
	if !t.outboxLocked {
		// Pending events are numbered (moved) under the outbox lock, and
		// a numbering locks their rows in an order of its own: taking the
		// lock first, a redaction does not lock some of them and wait for
		// a numbering that waits for those (a deadlock). Numberings wait
		// for the transaction to end; erasures are rare.
		b.Queue("SELECT pg_advisory_xact_lock($1)", t.s.lock(lockOutbox))
		t.outboxLocked = true
	}
	b.Queue(sqlRedactEvents,
		[]byte(t.tenant), []byte(collection), keys, body).Exec(func(ct pgconn.CommandTag) error {
		n += int(ct.RowsAffected())
		return nil
	})
	if err := t.send(ctx); err != nil {
		return 0, err
	}
	return n, nil
}

// Scan implements storage.ReadTx.
func (t *tx) Scan(ctx context.Context, collection string, q storage.Query) (storage.Page, error) {
	pages, err := t.ScanMany(ctx, collection, []storage.Query{q})
	if err != nil {
		return storage.Page{}, err
	}
	return pages[0], nil
}

var _ storage.MultiScanner = (*tx)(nil)

// ScanMany implements storage.MultiScanner in one round trip.
func (t *tx) ScanMany(ctx context.Context, collection string, qs []storage.Query) ([]storage.Page, error) {
	if err := t.check(ctx, false); err != nil {
		return nil, err
	}
	c, err := t.s.collection(collection)
	if err != nil {
		return nil, err
	}
	for _, q := range qs {
		if err := c.ValidateScan(q); err != nil {
			return nil, err
		}
	}
	pages := make([]storage.Page, len(qs))
	w := &pgx.Batch{} // nothing of a refused call is sent
	for i, q := range qs {
		if err := t.queueScan(w, collection, q, &pages[i]); err != nil {
			return nil, err
		}
	}
	next := t.queue()
	next.QueuedQueries = append(next.QueuedQueries, w.QueuedQueries...)
	if err := t.send(ctx); err != nil {
		return nil, err
	}
	return pages, nil
}

// queueScan queues on w the statement of a valid query q of collection,
// which fills page when it is answered.
func (t *tx) queueScan(w *pgx.Batch, collection string, q storage.Query, page *storage.Page) error {
	limit := q.Limit
	if limit == 0 {
		limit = storage.DefaultScanLimit
	}
	// key is the column the scan orders by: the ID, or the index value
	// (then the ID breaks ties).
	args := []any{[]byte(t.tenant), collection}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	var sql strings.Builder
	key := "r.id"
	switch {
	case q.Index == "" && q.KeysOnly:
		sql.WriteString("SELECT r.id, 0::bigint, NULL::bytea, ''::bytea FROM records r WHERE r.tenant = $1 AND r.coll = $2")
	case q.Index == "":
		sql.WriteString("SELECT r.id, r.version, r.body, ''::bytea FROM records r WHERE r.tenant = $1 AND r.coll = $2")
	case q.KeysOnly:
		key = "e.value"
		sql.WriteString(`SELECT e.id, 0::bigint, NULL::bytea, e.value FROM entries e
			WHERE e.tenant = $1 AND e.coll = $2 AND e.idx = ` + arg(q.Index))
	default:
		key = "e.value"
		// Each entry's record is probed by its whole primary key (LIMIT
		// keeps the subquery from being flattened into a join): with
		// statistics from when the tables were small, a join scanned the
		// collection's records for every entry.
		sql.WriteString(`SELECT e.id, r.version, r.body, e.value FROM entries e
			CROSS JOIN LATERAL (SELECT version, body FROM records
				WHERE tenant = e.tenant AND coll = e.coll AND id = e.id LIMIT 1) r
			WHERE e.tenant = $1 AND e.coll = $2 AND e.idx = ` + arg(q.Index))
	}
	switch {
	case q.Equal != "":
		sql.WriteString(" AND " + key + " = " + arg([]byte(q.Equal)))
	case q.Prefix != "":
		sql.WriteString(" AND " + key + " >= " + arg([]byte(q.Prefix)))
		if end := prefixEnd([]byte(q.Prefix)); end != nil {
			sql.WriteString(" AND " + key + " < " + arg(end))
		}
	default:
		if q.Start != "" {
			sql.WriteString(" AND " + key + " >= " + arg([]byte(q.Start)))
		}
		if q.End != "" {
			sql.WriteString(" AND " + key + " < " + arg([]byte(q.End)))
		}
	}
	if q.Index == "" && q.Equal == "" && q.Prefix == "" && q.Start == "" {
		// A bound on the ID, though every ID meets it, keeps the scan in
		// the primary key's order whatever the statistics say: without
		// one, on a table never analysed, the planner took the tenant's
		// collection for a few rows and read all of it, to sort it, for
		// the first page of a listing (TestScanFirstPageReadsOnlyIt).
		sql.WriteString(" AND r.id >= ''::bytea")
	}
	cmp, dir := ">", "ASC"
	if q.Reverse {
		cmp, dir = "<", "DESC"
	}
	if q.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || len(raw) == 0 {
			return fmt.Errorf("%w: malformed cursor %q", storage.ErrInvalid, q.Cursor)
		}
		if q.Index == "" {
			sql.WriteString(" AND r.id " + cmp + " " + arg(raw))
		} else {
			val, id, ok := bytes.Cut(raw, []byte{0})
			if !ok {
				return fmt.Errorf("%w: malformed cursor %q", storage.ErrInvalid, q.Cursor)
			}
			sql.WriteString(" AND (e.value, e.id) " + cmp + " (" + arg(val) + ", " + arg(id) + ")")
		}
	}
	if q.Index == "" {
		sql.WriteString(" ORDER BY r.id " + dir)
	} else {
		sql.WriteString(" ORDER BY e.value " + dir + ", e.id " + dir)
	}
	sql.WriteString(" LIMIT " + arg(limit+1))
	page.Records = make([]storage.Record, 0, min(limit, 1024))
	w.Queue(sql.String(), args...).Query(func(rows pgx.Rows) error {
		var lastKey []byte
		for rows.Next() {
			var id, body, val []byte
			var ver int64
			if err := rows.Scan(&id, &ver, &body, &val); err != nil {
				return err
			}
			if len(page.Records) == limit {
				page.Next = base64.RawURLEncoding.EncodeToString(lastKey)
				break
			}
			page.Records = append(page.Records, storage.Record{ID: string(id), Version: uint64(ver), Body: body})
			if q.Index == "" {
				lastKey = id
			} else {
				page.Keys = append(page.Keys, string(val))
				lastKey = append(append(append(lastKey[:0:0], val...), 0), id...)
			}
		}
		return rows.Err()
	})
	return nil
}

// prefixEnd returns the smallest key greater than every key that starts
// with p, or nil if there is none.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
