package crm

import (
	"context"
	"errors"

	"github.com/rapportcrm/rapport/storage"
)

// heldTx is the transaction of a CreateMany on a store that creates many
// records at once (storage.BulkCreator): it holds the creations of
// records of coll and sends them together when flushed, and passes
// everything else on. Any other access to coll (a read, an update, a
// delete) flushes first, so that it sees what was created before it.
//
// It also remembers the records of other collections it read (the
// custom-field schema, a referenced account): every record of the batch
// reads them again, and on a server each read is a round trip. A write
// to such a collection through the transaction forgets them.
type heldTx struct {
	storage.Tx
	bulk storage.BulkCreator
	coll string
	// current is the position, in CreateMany's records, of the record
	// being created; pos holds it for each held creation.
	current int
	held    []storage.Record
	pos     []int
	read    map[readKey]readResult
}

type readKey struct{ collection, id string }

type readResult struct {
	rec storage.Record
	err error
}

// heldError is a held creation that the store refused.
type heldError struct {
	index int // in CreateMany's records
	id    string
	err   error
}

func (e *heldError) Error() string { return e.err.Error() }
func (e *heldError) Unwrap() error { return e.err }

// flush creates the held records.
func (h *heldTx) flush(ctx context.Context) error {
	if len(h.held) == 0 {
		return nil
	}
	held, pos := h.held, h.pos
	h.held, h.pos = nil, nil
	_, err := h.bulk.CreateMany(ctx, h.coll, held)
	var re *storage.RecordError
	if errors.As(err, &re) {
		return &heldError{index: pos[re.Index], id: re.ID, err: re.Err}
	}
	return err
}

func (h *heldTx) Put(ctx context.Context, collection string, rec storage.Record) (storage.Record, error) {
	h.forget(collection)
	if collection == h.coll && rec.Version == 0 {
		h.held = append(h.held, rec)
		h.pos = append(h.pos, h.current)
		return storage.Record{ID: rec.ID, Version: 1, Body: rec.Body}, nil
	}
	if err := h.flushFor(ctx, collection); err != nil {
		return storage.Record{}, err
	}
	return h.Tx.Put(ctx, collection, rec)
}

func (h *heldTx) Delete(ctx context.Context, collection, id string, version uint64) error {
	h.forget(collection)
	if err := h.flushFor(ctx, collection); err != nil {
		return err
	}
	return h.Tx.Delete(ctx, collection, id, version)
}

func (h *heldTx) Get(ctx context.Context, collection, id string) (storage.Record, error) {
	if collection == h.coll {
		if err := h.flush(ctx); err != nil {
			return storage.Record{}, err
		}
		return h.Tx.Get(ctx, collection, id)
	}
	k := readKey{collection, id}
	if r, ok := h.read[k]; ok {
		return r.rec, r.err
	}
	rec, err := h.Tx.Get(ctx, collection, id)
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		if h.read == nil {
			h.read = map[readKey]readResult{}
		}
		h.read[k] = readResult{rec, err}
	}
	return rec, err
}

// forget drops what was read of collection.
func (h *heldTx) forget(collection string) {
	for k := range h.read {
		if k.collection == collection {
			delete(h.read, k)
		}
	}
}

func (h *heldTx) Scan(ctx context.Context, collection string, q storage.Query) (storage.Page, error) {
	if err := h.flushFor(ctx, collection); err != nil {
		return storage.Page{}, err
	}
	return h.Tx.Scan(ctx, collection, q)
}

func (h *heldTx) flushFor(ctx context.Context, collection string) error {
	if collection != h.coll {
		return nil
	}
	return h.flush(ctx)
}
