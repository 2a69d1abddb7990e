package kvstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/rapportcrm/rapport/storage"
)

// tx implements storage.Tx over a KVTx, bound to one tenant.
type tx struct {
	s        *Store
	kv       KVTx
	tenant   string
	writable bool
	done     bool
	appended bool
	// failed is set when a write failed half-way; the transaction then
	// refuses to commit so that no half-written record survives.
	failed error
}

var _ storage.Tx = (*tx)(nil)

func (t *tx) finish() { t.done = true }

func (t *tx) Tenant() string { return t.tenant }

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

// Get implements storage.ReadTx.
func (t *tx) Get(ctx context.Context, collection, id string) (storage.Record, error) {
	if err := t.check(ctx, false); err != nil {
		return storage.Record{}, err
	}
	if _, err := t.s.collection(collection); err != nil {
		return storage.Record{}, err
	}
	if err := storage.ValidateID("record ID", id); err != nil {
		return storage.Record{}, err
	}
	rb := t.kv.Bucket(recordBucket(t.tenant, collection))
	if rb == nil {
		return storage.Record{}, notFound(collection, id)
	}
	v := rb.Get([]byte(id))
	if v == nil {
		return storage.Record{}, notFound(collection, id)
	}
	return makeRecord(id, v)
}

func notFound(collection, id string) error {
	return fmt.Errorf("%w: %s %q", storage.ErrNotFound, collection, id)
}

// makeRecord copies a stored value into a Record.
func makeRecord(id string, v []byte) (storage.Record, error) {
	ver, body, err := decodeRecord(v)
	if err != nil {
		return storage.Record{}, fmt.Errorf("record %q: %w", id, err)
	}
	return storage.Record{ID: id, Version: ver, Body: bytes.Clone(body)}, nil
}

// Put implements storage.Tx. All checks run before the first write.
func (t *tx) Put(ctx context.Context, collection string, rec storage.Record) (storage.Record, error) {
	if err := t.check(ctx, true); err != nil {
		return storage.Record{}, err
	}
	c, err := t.s.collection(collection)
	if err != nil {
		return storage.Record{}, err
	}
	if err := storage.ValidateID("record ID", rec.ID); err != nil {
		return storage.Record{}, err
	}
	if err := storage.ValidateBody(rec.Body); err != nil {
		return storage.Record{}, fmt.Errorf("%s %q: %w", collection, rec.ID, err)
	}
	newVals, err := c.IndexValues(rec.Body)
	if err != nil {
		return storage.Record{}, fmt.Errorf("%s %q: %w", collection, rec.ID, err)
	}
	rb := t.kv.Bucket(recordBucket(t.tenant, collection))
	var old []byte
	if rb != nil {
		old = rb.Get([]byte(rec.ID))
	}
	var oldVer uint64
	var oldVals [][]string
	switch {
	case rec.Version == 0 && old != nil:
		return storage.Record{}, fmt.Errorf("%w: %s %q", storage.ErrExists, collection, rec.ID)
	case rec.Version != 0 && old == nil:
		return storage.Record{}, notFound(collection, rec.ID)
	case old != nil:
		var oldBody []byte
		oldVer, oldBody, err = decodeRecord(old)
		if err != nil {
			return storage.Record{}, err
		}
		if oldVer != rec.Version {
			return storage.Record{}, fmt.Errorf("%w: %s %q is at version %d, the write expected %d",
				storage.ErrConflict, collection, rec.ID, oldVer, rec.Version)
		}
		if oldVals, err = c.IndexValues(oldBody); err != nil {
			return storage.Record{}, fmt.Errorf("%s %q: stored body: %w", collection, rec.ID, err)
		}
	}
	// Unique checks for the values this write adds.
	for i, ix := range c.Indexes {
		if !ix.Unique {
			continue
		}
		ib := t.kv.Bucket(indexBucket(t.tenant, collection, ix.Name))
		if ib == nil {
			continue
		}
		for _, v := range newVals[i] {
			if other, ok := holder(ib, v); ok && other != rec.ID {
				return storage.Record{}, &storage.UniqueError{Collection: collection, Index: ix.Name, Value: v, ExistingID: other}
			}
		}
	}
	if err := t.write(collection, c, rec, oldVer+1, oldVals, newVals); err != nil {
		t.failed = err
		return storage.Record{}, err
	}
	return storage.Record{ID: rec.ID, Version: oldVer + 1, Body: bytes.Clone(rec.Body)}, nil
}

func (t *tx) write(collection string, c storage.Collection, rec storage.Record, ver uint64, oldVals, newVals [][]string) error {
	for i, ix := range c.Indexes {
		var was []string
		if oldVals != nil {
			was = oldVals[i]
		}
		if err := t.reindex(collection, ix.Name, rec.ID, was, newVals[i]); err != nil {
			return err
		}
	}
	rb, err := t.kv.CreateBucket(recordBucket(t.tenant, collection))
	if err != nil {
		return err
	}
	return rb.Put([]byte(rec.ID), encodeRecord(ver, rec.Body))
}

// reindex replaces the entries of id in one index: was → now.
func (t *tx) reindex(collection, index, id string, was, now []string) error {
	if len(was) == 0 && len(now) == 0 {
		return nil
	}
	ib, err := t.kv.CreateBucket(indexBucket(t.tenant, collection, index))
	if err != nil {
		return err
	}
	for _, v := range was {
		if !slices.Contains(now, v) {
			if err := ib.Delete(indexKey(v, id)); err != nil {
				return err
			}
		}
	}
	for _, v := range now {
		if !slices.Contains(was, v) {
			if err := ib.Put(indexKey(v, id), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements storage.Tx.
func (t *tx) Delete(ctx context.Context, collection, id string, version uint64) error {
	if err := t.check(ctx, true); err != nil {
		return err
	}
	c, err := t.s.collection(collection)
	if err != nil {
		return err
	}
	if err := storage.ValidateID("record ID", id); err != nil {
		return err
	}
	rb := t.kv.Bucket(recordBucket(t.tenant, collection))
	if rb == nil {
		return notFound(collection, id)
	}
	old := rb.Get([]byte(id))
	if old == nil {
		return notFound(collection, id)
	}
	oldVer, oldBody, err := decodeRecord(old)
	if err != nil {
		return err
	}
	if version != 0 && version != oldVer {
		return fmt.Errorf("%w: %s %q is at version %d, the delete expected %d",
			storage.ErrConflict, collection, id, oldVer, version)
	}
	oldVals, err := c.IndexValues(oldBody)
	if err != nil {
		return fmt.Errorf("%s %q: stored body: %w", collection, id, err)
	}
	err = func() error {
		for i, ix := range c.Indexes {
			if err := t.reindex(collection, ix.Name, id, oldVals[i], nil); err != nil {
				return err
			}
		}
		return rb.Delete([]byte(id))
	}()
	if err != nil {
		t.failed = err
	}
	return err
}

// RedactEvents implements storage.Tx.
func (t *tx) RedactEvents(ctx context.Context, collection string, ids []string, body []byte) (int, error) {
	if err := t.check(ctx, true); err != nil {
		return 0, err
	}
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		if err := storage.ValidateID("record ID", id); err != nil {
			return 0, err
		}
		set[id] = true
	}
	if len(body) > 0 {
		if err := storage.ValidateBody(body); err != nil {
			return 0, err
		}
	}
	ob := t.kv.Bucket(bucketOutbox)
	if ob == nil {
		return 0, nil
	}
	// Collect first: a bucket must not change while it is iterated.
	type change struct{ k, v []byte }
	var changes []change
	var bad error
	ob.Ascend(nil, func(k, v []byte) bool {
		ev, err := decodeEvent(v)
		if err != nil {
			bad = fmt.Errorf("outbox event %d: %w", seqFromKey(k), err)
			return false
		}
		if ev.Tenant != t.tenant || ev.Collection != collection || !set[ev.RecordID] {
			return true
		}
		ev.Body = body
		raw, err := encodeEvent(ev)
		if err != nil {
			bad = err
			return false
		}
		changes = append(changes, change{bytes.Clone(k), raw})
		return true
	})
	if bad != nil {
		return 0, bad
	}
	for _, c := range changes {
		if err := ob.Put(c.k, c.v); err != nil {
			t.failed = err
			return 0, err
		}
	}
	return len(changes), nil
}

// Append implements storage.Tx.
func (t *tx) Append(ctx context.Context, events ...storage.Event) error {
	if err := t.check(ctx, true); err != nil {
		return err
	}
	for _, ev := range events {
		if err := storage.ValidateEvent(ev); err != nil {
			return err
		}
	}
	if len(events) == 0 {
		return nil
	}
	err := func() error {
		ob, err := t.kv.CreateBucket(bucketOutbox)
		if err != nil {
			return err
		}
		for _, ev := range events {
			seq, err := ob.NextSequence()
			if err != nil {
				return err
			}
			ev.Tenant, ev.Seq = t.tenant, seq
			raw, err := encodeEvent(ev)
			if err != nil {
				return fmt.Errorf("%w: event %s: %v", storage.ErrInvalid, ev.Type, err)
			}
			if err := ob.Put(seqKey(seq), raw); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		t.failed = err
		return err
	}
	t.appended = true
	return nil
}

// Scan implements storage.ReadTx.
func (t *tx) Scan(ctx context.Context, collection string, q storage.Query) (storage.Page, error) {
	if err := t.check(ctx, false); err != nil {
		return storage.Page{}, err
	}
	c, err := t.s.collection(collection)
	if err != nil {
		return storage.Page{}, err
	}
	if err := c.ValidateScan(q); err != nil {
		return storage.Page{}, err
	}
	limit := q.Limit
	if limit == 0 {
		limit = storage.DefaultScanLimit
	}
	var cursor []byte
	if q.Cursor != "" {
		if cursor, err = decodeCursor(q.Cursor); err != nil {
			return storage.Page{}, err
		}
	}
	lo, hi := bounds(q)
	rb := t.kv.Bucket(recordBucket(t.tenant, collection))
	if rb == nil {
		return storage.Page{}, nil
	}
	b := rb
	if q.Index != "" {
		b = t.kv.Bucket(indexBucket(t.tenant, collection, q.Index))
		if b == nil {
			return storage.Page{}, nil
		}
	}

	page := storage.Page{Records: make([]storage.Record, 0, min(limit, 1024))}
	var lastKey []byte
	var ierr error
	// A keys-only scan copies the page's keys into 64 KiB chunks, which
	// are never reallocated nor written again once a key is in them, so
	// the IDs and values are strings that share the chunks' bytes: one
	// allocation per chunk instead of two per record.
	var chunk []byte
	if q.KeysOnly {
		// Keys are small: a full page is the likely outcome.
		page.Records = make([]storage.Record, 0, limit)
		if q.Index != "" {
			page.Keys = make([]string, 0, limit)
		}
	}
	visit := func(k, v []byte) bool {
		if len(page.Records) == limit {
			page.Next = encodeCursor(lastKey)
			return false
		}
		switch {
		case q.KeysOnly:
			if len(chunk)+len(k) > cap(chunk) {
				chunk = make([]byte, 0, max(64<<10, len(k)))
			}
			start := len(chunk)
			chunk = append(chunk, k...)
			key := unsafe.String(&chunk[start], len(k))
			if q.Index == "" {
				page.Records = append(page.Records, storage.Record{ID: key})
				break
			}
			nul := strings.IndexByte(key, 0)
			page.Records = append(page.Records, storage.Record{ID: key[nul+1:]})
			page.Keys = append(page.Keys, key[:nul])
		case q.Index == "":
			rec, err := makeRecord(string(k), v)
			if err != nil {
				ierr = err
				return false
			}
			page.Records = append(page.Records, rec)
		default:
			val, id, _ := bytes.Cut(k, []byte{0})
			rv := rb.Get(id)
			if rv == nil {
				ierr = fmt.Errorf("index %s.%s has an entry for missing record %q", collection, q.Index, id)
				return false
			}
			rec, err := makeRecord(string(id), rv)
			if err != nil {
				ierr = err
				return false
			}
			page.Records = append(page.Records, rec)
			page.Keys = append(page.Keys, string(val))
		}
		lastKey = k
		return true
	}
	if !q.Reverse {
		from := lo
		if cursor != nil && bytes.Compare(cursor, from) >= 0 {
			from = cursor
		}
		b.Ascend(from, func(k, v []byte) bool {
			if cursor != nil && bytes.Compare(k, cursor) <= 0 {
				return true
			}
			if hi != nil && bytes.Compare(k, hi) >= 0 {
				return false
			}
			return visit(k, v)
		})
	} else {
		from := hi
		if cursor != nil && (from == nil || bytes.Compare(cursor, from) < 0) {
			from = cursor
		}
		b.Descend(from, func(k, v []byte) bool {
			if from != nil && bytes.Compare(k, from) >= 0 {
				return true
			}
			if lo != nil && bytes.Compare(k, lo) < 0 {
				return false
			}
			return visit(k, v)
		})
	}
	if ierr != nil {
		return storage.Page{}, fmt.Errorf("%s: scan %s: %w", t.s.name, collection, ierr)
	}
	if q.Index == "" {
		page.Keys = nil
	}
	return page, nil
}

// bounds returns the key range [lo, hi) of a query; nil means unbounded.
func bounds(q storage.Query) (lo, hi []byte) {
	switch {
	case q.Equal != "" && q.Index != "":
		return indexKey(q.Equal, ""), append([]byte(q.Equal), 1)
	case q.Equal != "":
		return []byte(q.Equal), append([]byte(q.Equal), 0)
	case q.Prefix != "":
		return []byte(q.Prefix), prefixEnd([]byte(q.Prefix))
	}
	if q.Start != "" {
		lo = []byte(q.Start)
	}
	if q.End != "" {
		hi = []byte(q.End)
	}
	return lo, hi
}
