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
				for i, ev := range evs {
					if err := ix.apply(ctx, tx, ev, pre[i], known); err != nil {
						return err
					}
				}
				return nil
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

// apply brings the lookup record of an event's record up to date with the
// record as it is now (not as the event says: an event read before an
// erasure redacted it must not bring erased data back), and reports a new
// record that shares match keys with others.
func (ix *indexer) apply(ctx context.Context, tx storage.Tx, ev storage.Event, pre *lookupRaw, known readCache) error {
	k := ix.kinds[ev.Collection]
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
	old, err := known.get(ctx, tx, lookup, id)
	switch {
	case err == nil:
		if bytes.Equal(old.Body, raw) {
			return nil
		}
		stored, err := tx.Put(ctx, lookup, storage.Record{ID: id, Version: old.Version, Body: raw})
		if err != nil {
			return err
		}
		known.set(lookup, id, &stored)
		return nil
	case !errors.Is(err, storage.ErrNotFound):
		return err
	}
	stored, err := tx.Put(ctx, lookup, storage.Record{ID: id, Body: raw})
	if err != nil {
		return err
	}
	known.set(lookup, id, &stored)
	if what != "created" || len(entry.Keys) == 0 || gjson.GetBytes(body, "archived_at").String() != "" {
		return nil
	}
	return ix.suspect(ctx, tx, ev, k, entry, known)
}

// suspect appends "<kind>.duplicate_suspected" for a new record that
// shares match keys with stored, unarchived records of its kind.
func (ix *indexer) suspect(ctx context.Context, tx storage.Tx, ev storage.Event, k lookupKind, entry lookupEntry, known readCache) error {
	type candidate struct {
		ID      string   `json:"id"`
		Reasons []string `json:"reasons"`
	}
	var found []candidate
	at := map[string]int{}
	for _, key := range entry.Keys {
		ids, err := lookupMatches(ctx, tx, ev.Collection, dupPrefix+key, 100)
		if err != nil {
			return err
		}
		for _, other := range ids {
			if other == ev.RecordID {
				continue
			}
			rec, err := known.get(ctx, tx, ev.Collection, other)
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
	}{ev.RecordID, found})
	if err != nil {
		return err
	}
	return tx.Append(ctx, storage.Event{Type: k.name + ".duplicate_suspected", Collection: ev.Collection, RecordID: ev.RecordID,
		Time: ix.e.clock.Now().UTC(), Body: append(append([]byte(`{"data":`), data...), '}')})
}

// lookupMatches returns the IDs of the records of collection whose lookup
// values equal (or, for a search term, start with) value.
func lookupMatches(ctx context.Context, tx storage.ReadTx, collection, value string, limit int) ([]string, error) {
	pg, err := tx.Scan(ctx, lookupOf(collection), storage.Query{Index: "term", Equal: value, Limit: limit, KeysOnly: true})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(pg.Records))
	for _, rec := range pg.Records {
		out = append(out, rec.ID)
	}
	return out, nil
}
