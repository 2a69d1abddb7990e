package crm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/rapportcrm/rapport/storage"
)

// The lookup index serves search and duplicate detection. It is kept off
// the write path: every term of a name or an email is a separate index
// entry, and writing them in each create's transaction made a durable
// create nearly twice as slow (more B-tree pages to fsync). Instead an
// engine-internal outbox consumer, the indexer, reads the events of
// contacts, accounts and leads in batches and writes one lookup record
// per record, many per transaction, from each record as it is when it is
// indexed (deleted and erased records lose theirs). Search and Duplicates
// first let the indexer catch up with the outbox, so they see every
// committed write.
//
// Each indexed kind has its own lookup collection ("lookup_contacts", ...)
// whose record IDs are the indexed records' IDs; its "term" index holds
// "s" ‖ sep ‖ search term and "d" ‖ sep ‖ match key.
const lookupConsumer = "rapport:lookup"

type lookupEntry struct {
	RecordID string   `json:"record_id"`
	Terms    []string `json:"terms,omitempty"`
	Keys     []string `json:"keys,omitempty"`
}

// lookupOf returns the lookup collection of a record collection.
func lookupOf(collection string) string { return "lookup_" + collection }

// lookupCollections are the lookup collections the engine declares.
func lookupCollections() []storage.Collection {
	var out []storage.Collection
	for _, coll := range []string{contactsCollection, accountsCollection, leadsCollection} {
		out = append(out, storage.Collection{Name: lookupOf(coll), Indexes: []storage.Index{
			{Name: "term", Extract: func(body []byte) ([]string, error) {
				var e lookupEntry
				if err := json.Unmarshal(body, &e); err != nil {
					return nil, err
				}
				out := make([]string, 0, len(e.Terms)+len(e.Keys))
				for _, t := range e.Terms {
					if v := searchPrefix + t; len(v) <= storage.MaxIndexValueLen {
						out = append(out, v)
					}
				}
				for _, k := range e.Keys {
					if v := dupPrefix + k; len(v) <= storage.MaxIndexValueLen {
						out = append(out, v)
					}
				}
				return out, nil
			}},
		}})
	}
	return out
}

// lookupKinds are the kinds the indexer follows, by collection.
type lookupKind struct {
	name            string
	search, dupKeys func([]byte) ([]string, error)
}

func lookupKinds() map[string]lookupKind {
	return map[string]lookupKind{
		contactsCollection: {contactKind.name, contactKind.search, contactKind.dupKeys},
		accountsCollection: {accountKind.name, accountKind.search, accountKind.dupKeys},
		leadsCollection:    {leadKind.name, leadKind.search, leadKind.dupKeys},
	}
}

// entry computes the lookup entry of a record from its body.
func (k lookupKind) entry(id string, version uint64, body []byte) (*lookupRaw, error) {
	entry := lookupEntry{RecordID: id}
	var err error
	if entry.Terms, err = k.search(body); err != nil {
		return nil, err
	}
	if k.dupKeys != nil {
		if entry.Keys, err = k.dupKeys(body); err != nil {
			return nil, err
		}
	}
	raw, err := json.Marshal(entry)
	if err != nil {
		return nil, err
	}
	return &lookupRaw{version: version, entry: entry, raw: raw}, nil
}

// lookupRaw is a lookup entry worked out for one version of a record.
type lookupRaw struct {
	version uint64
	entry   lookupEntry
	raw     []byte
}

// prepare works out the lookup entry of the record an event carries
// ({"data": record}), or returns nil if the event carries none.
func (ix *indexer) prepare(ev storage.Event) *lookupRaw {
	k, ok := ix.kinds[ev.Collection]
	if !ok {
		return nil
	}
	data := gjson.GetBytes(ev.Body, "data")
	version := gjson.Get(data.Raw, "version").Uint()
	if !data.IsObject() || version == 0 || gjson.Get(data.Raw, "erased_at").String() != "" {
		return nil
	}
	pre, err := k.entry(ev.RecordID, version, []byte(data.Raw))
	if err != nil {
		return nil // apply works it out again from the stored record and reports the error
	}
	return pre
}

// indexer keeps the lookup collection up to date with the outbox.
type indexer struct {
	e     *Engine
	mu    sync.Mutex // one catch-up at a time; guards done
	kinds map[string]lookupKind
	// done is the last event indexed (and acknowledged) by this engine.
	done uint64
}

// lookupDelay is how long the indexer lets events gather after a commit
// before it indexes them, so that a burst of writes costs one index
// transaction rather than one each.
const lookupDelay = 250 * time.Millisecond

// run catches up shortly after events are committed, until the engine
// closes.
func (ix *indexer) run() {
	ctx := ix.e.runCtx
	for {
		signal := ix.e.store.OutboxSignal()
		if err := ix.catchUp(ctx); err != nil && ctx.Err() == nil {
			ix.e.log.Error("search index: catching up", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-signal:
		case <-time.After(ix.e.opts.PollInterval):
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(lookupDelay):
		}
	}
}

// catchUp indexes every event committed before it was called and stops
// once past that point, so that a stream of later writes cannot keep it
// going.
func (ix *indexer) catchUp(ctx context.Context) error {
	head, err := ix.e.store.OutboxHead(ctx)
	if err != nil {
		return err
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for ix.done < head {
		evs, err := ix.e.store.ReadOutbox(ctx, lookupConsumer, lookupBatch)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			ix.done = head
			return nil
		}
		byTenant := map[string][]storage.Event{}
		var tenants []string
		for _, ev := range evs {
			if _, ok := ix.kinds[ev.Collection]; !ok {
				continue
			}
			if byTenant[ev.Tenant] == nil {
				tenants = append(tenants, ev.Tenant)
			}
			byTenant[ev.Tenant] = append(byTenant[ev.Tenant], ev)
		}
		for _, tenant := range tenants {
			// Work out the entries before taking the write lock, from the
			// record each event carries; apply uses them when the stored
			// record is still that version. (A record deleted and created
			// again under its ID restarts at version 1, so an old event can
			// match a new record's version; the new record's own event comes
			// later in the outbox and corrects the entry.)
			evs := byTenant[tenant]
			pre := make([]*lookupRaw, len(evs))
			for i, ev := range evs {
				pre[i] = ix.prepare(ev)
			}
			err := ix.e.store.Update(ctx, tenant, func(tx storage.Tx) error {
				known, err := ix.prefetch(ctx, tx, evs)
				if err != nil {
					return err
				}
				b := &lookupWrites{known: known, created: map[[2]string]int{}}
				for i, ev := range evs {
					if err := ix.apply(ctx, tx, b, i, ev, pre[i]); err != nil {
						return err
					}
				}
				return ix.suspect(ctx, tx, b)
			})
			if err != nil {
				return err
			}
		}
		last := evs[len(evs)-1].Seq
		if err := ix.e.store.AckOutbox(ctx, lookupConsumer, last); err != nil {
			return err
		}
		ix.done = last
	}
	return nil
}

// lookupBatch is how many events the indexer reads, and indexes in one
// transaction, at a time. Batches of 10,000 did not catch up faster after
// a 1,000,000-contact import, and held the write lock long enough to halve
// the import's own speed.
const lookupBatch = 1000

// readCache holds records a transaction read, by collection and ID; a nil
// record is one known not to exist. It stays true within the transaction
// as long as every write to a cached collection is recorded with set.
type readCache map[string]map[string]*storage.Record

// get returns the record from the cache, or reads it with tx.
func (c readCache) get(ctx context.Context, tx storage.ReadTx, collection, id string) (storage.Record, error) {
	if rec, ok := c[collection][id]; ok {
		if rec == nil {
			return storage.Record{}, fmt.Errorf("%w: %s %q", storage.ErrNotFound, collection, id)
		}
		return *rec, nil
	}
	return tx.Get(ctx, collection, id)
}

// set records the stored state of a record (nil: none).
func (c readCache) set(collection, id string, rec *storage.Record) {
	if c[collection] == nil {
		c[collection] = map[string]*storage.Record{}
	}
	c[collection][id] = rec
}

// prefetch reads, on stores that read many records at once
// (storage.MultiGetter), the records of evs and their lookup records, so
// that apply does not read them one by one: two round trips per batch on
// PostgreSQL instead of two per event.
func (ix *indexer) prefetch(ctx context.Context, tx storage.ReadTx, evs []storage.Event) (readCache, error) {
	known := readCache{}
	mg, ok := tx.(storage.MultiGetter)
	if !ok {
		return known, nil
	}
	ids := map[string][]string{}
	for _, ev := range evs {
		ids[ev.Collection] = append(ids[ev.Collection], ev.RecordID)
		ids[lookupOf(ev.Collection)] = append(ids[lookupOf(ev.Collection)], ev.RecordID)
	}
	for coll, list := range ids {
		recs, err := mg.GetMany(ctx, coll, list)
		if err != nil {
			return nil, err
		}
		for _, id := range list {
			known.set(coll, id, nil)
		}
		for i := range recs {
			known.set(coll, recs[i].ID, &recs[i])
		}
	}
	return known, nil
}

// lookupWrites is what the indexer wrote in one batch's transaction.
type lookupWrites struct {
	known readCache
	// created holds, by lookup collection and ID, the position in the
	// batch of the event that created a lookup record the batch did not
	// find.
	created map[[2]string]int
	// checks are the new records to look for duplicates of, in order.
	checks []dupCheck
}

// dupCheck is a new record with match keys, at position at of the batch.
type dupCheck struct {
	ev   storage.Event
	kind lookupKind
	keys []string
	at   int
}

// apply brings the lookup record of an event's record, the event at
// position at of the batch, up to date with the record as it is now (not
// as the event says: an event read before an erasure redacted it must not
// bring erased data back), and notes a new record with match keys for
// suspect. On stores that defer writes (storage.Deferrer), the lookup
// record goes with the transaction's next statement: known says whether
// it exists.
func (ix *indexer) apply(ctx context.Context, tx storage.Tx, b *lookupWrites, at int, ev storage.Event, pre *lookupRaw) error {
	k := ix.kinds[ev.Collection]
	known := b.known
	lookup, id := lookupOf(ev.Collection), ev.RecordID
	_, what, _ := strings.Cut(ev.Type, ".")
	rec, err := known.get(ctx, tx, ev.Collection, ev.RecordID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && gjson.GetBytes(rec.Body, "erased_at").String() != "") {
		if rec, ok := known[lookup][id]; ok && rec == nil {
			return nil // known to have no lookup record
		}
		err := tx.Delete(ctx, lookup, id, 0)
		if errors.Is(err, storage.ErrNotFound) {
			err = nil
		}
		known.set(lookup, id, nil)
		return err
	}
	if err != nil {
		return err
	}
	body := rec.Body
	if pre == nil || pre.version != rec.Version {
		if pre, err = k.entry(ev.RecordID, rec.Version, body); err != nil {
			return err
		}
	}
	entry, raw := pre.entry, pre.raw
	d, deferring := tx.(storage.Deferrer)
	old, err := known.get(ctx, tx, lookup, id)
	switch {
	case err == nil:
		if bytes.Equal(old.Body, raw) {
			return nil
		}
		next := storage.Record{ID: id, Version: old.Version, Body: raw}
		var stored storage.Record
		if deferring {
			stored, err = d.Replace(ctx, lookup, next)
		} else {
			stored, err = tx.Put(ctx, lookup, next)
		}
		if err != nil {
			return err
		}
		known.set(lookup, id, &stored)
		return nil
	case !errors.Is(err, storage.ErrNotFound):
		return err
	}
	var stored storage.Record
	if deferring {
		stored, err = d.Create(ctx, lookup, storage.Record{ID: id, Body: raw})
	} else {
		stored, err = tx.Put(ctx, lookup, storage.Record{ID: id, Body: raw})
	}
	if err != nil {
		return err
	}
	known.set(lookup, id, &stored)
	if _, ok := b.created[[2]string{lookup, id}]; !ok {
		b.created[[2]string{lookup, id}] = at
	}
	if what != "created" || len(entry.Keys) == 0 || gjson.GetBytes(body, "archived_at").String() != "" {
		return nil
	}
	b.checks = append(b.checks, dupCheck{ev: ev, kind: k, keys: entry.Keys, at: at})
	return nil
}

// suspect appends "<kind>.duplicate_suspected" for each new record of the
// batch that shares match keys with stored, unarchived records of its
// kind: records indexed before the batch, or earlier in it (as if the
// batch's records were indexed one by one). The lookups of the whole
// batch run together once its lookup records are written, as do the
// reads of the matched records: a few round trips per batch on
// PostgreSQL rather than some per record.
func (ix *indexer) suspect(ctx context.Context, tx storage.Tx, b *lookupWrites) error {
	if len(b.checks) == 0 {
		return nil
	}
	// matches[i][j] are the IDs whose lookup values hold key j of check i.
	matches := make([][][]string, len(b.checks))
	type ref struct{ check, key int }
	queries, refs := map[string][]storage.Query{}, map[string][]ref{}
	var colls []string
	for i, c := range b.checks {
		matches[i] = make([][]string, len(c.keys))
		coll := c.ev.Collection
		if queries[coll] == nil {
			colls = append(colls, coll)
		}
		for j, key := range c.keys {
			queries[coll] = append(queries[coll], lookupQuery(dupPrefix+key, 100))
			refs[coll] = append(refs[coll], ref{i, j})
		}
	}
	for _, coll := range colls {
		pages, err := scanMany(ctx, tx, lookupOf(coll), queries[coll])
		if err != nil {
			return err
		}
		for q, pg := range pages {
			r := refs[coll][q]
			for _, rec := range pg.Records {
				matches[r.check][r.key] = append(matches[r.check][r.key], rec.ID)
			}
		}
	}
	// Leave out each record itself, and records created later in the
	// batch; read the others at once.
	unknown := map[string][]string{}
	for i, c := range b.checks {
		for j, ids := range matches[i] {
			kept := ids[:0]
			for _, other := range ids {
				if pos, ok := b.created[[2]string{lookupOf(c.ev.Collection), other}]; other == c.ev.RecordID || ok && pos > c.at {
					continue
				}
				kept = append(kept, other)
				if _, ok := b.known[c.ev.Collection][other]; !ok {
					unknown[c.ev.Collection] = append(unknown[c.ev.Collection], other)
				}
			}
			matches[i][j] = kept
		}
	}
	if mg, ok := tx.(storage.MultiGetter); ok {
		for _, coll := range colls {
			if len(unknown[coll]) == 0 {
				continue
			}
			recs, err := mg.GetMany(ctx, coll, unknown[coll])
			if err != nil {
				return err
			}
			for _, id := range unknown[coll] {
				b.known.set(coll, id, nil)
			}
			for i := range recs {
				b.known.set(coll, recs[i].ID, &recs[i])
			}
		}
	}
	for i, c := range b.checks {
		if err := ix.reportDuplicates(ctx, tx, c, matches[i], b.known); err != nil {
			return err
		}
	}
	return nil
}

// reportDuplicates appends the duplicate_suspected event of check c,
// whose key j matched the records ids[j], if any of them is stored and
// not archived.
func (ix *indexer) reportDuplicates(ctx context.Context, tx storage.Tx, c dupCheck, ids [][]string, known readCache) error {
	type candidate struct {
		ID      string   `json:"id"`
		Reasons []string `json:"reasons"`
	}
	var found []candidate
	at := map[string]int{}
	for j, key := range c.keys {
		for _, other := range ids[j] {
			rec, err := known.get(ctx, tx, c.ev.Collection, other)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if gjson.GetBytes(rec.Body, "archived_at").String() != "" {
				continue
			}
			if i, ok := at[other]; ok {
				found[i].Reasons = append(found[i].Reasons, key)
				continue
			}
			at[other] = len(found)
			found = append(found, candidate{ID: other, Reasons: []string{key}})
		}
	}
	if len(found) == 0 {
		return nil
	}
	data, err := json.Marshal(struct {
		ID         string      `json:"id"`
		Candidates []candidate `json:"candidates"`
	}{c.ev.RecordID, found})
	if err != nil {
		return err
	}
	return tx.Append(ctx, storage.Event{Type: c.kind.name + ".duplicate_suspected", Collection: c.ev.Collection, RecordID: c.ev.RecordID,
		Time: ix.e.clock.Now().UTC(), Body: append(append([]byte(`{"data":`), data...), '}')})
}

// scanMany runs qs on collection: at once where tx can
// (storage.MultiScanner), one by one otherwise.
func scanMany(ctx context.Context, tx storage.ReadTx, collection string, qs []storage.Query) ([]storage.Page, error) {
	if ms, ok := tx.(storage.MultiScanner); ok {
		return ms.ScanMany(ctx, collection, qs)
	}
	pages := make([]storage.Page, len(qs))
	for i, q := range qs {
		var err error
		if pages[i], err = tx.Scan(ctx, collection, q); err != nil {
			return nil, err
		}
	}
	return pages, nil
}

// lookupQuery is the scan of the IDs of the records whose lookup values
// equal (or, for a search term, start with) value.
func lookupQuery(value string, limit int) storage.Query {
	return storage.Query{Index: "term", Equal: value, Limit: limit, KeysOnly: true}
}

// lookupMatches returns the IDs of the records of collection whose lookup
// values equal (or, for a search term, start with) value.
func lookupMatches(ctx context.Context, tx storage.ReadTx, collection, value string, limit int) ([]string, error) {
	pg, err := tx.Scan(ctx, lookupOf(collection), lookupQuery(value, limit))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(pg.Records))
	for _, rec := range pg.Records {
		out = append(out, rec.ID)
	}
	return out, nil
}
