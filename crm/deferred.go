package crm

import (
	"context"
	"errors"

	"github.com/rapportcrm/rapport/storage"
)

// deferTx is the transaction of a single create or update on a store
// that can defer checks to the commit (storage.Deferrer, PostgreSQL).
// Through it, the record is written without waiting for the checks of
// its ID, version and unique values, and the custom-field schema comes
// from the engine's cache, with a check that it is still the stored one,
// instead of being read: a create, its event and the commit go in one
// round trip, an update in two.
type deferTx struct {
	storage.Tx
	d storage.Deferrer
	// coll is the collection of the records written without checks:
	// the transaction's own kind, whose errors Create and Update map;
	// other records it writes are checked at once.
	coll string
	// cached are the schemas taken from the cache, by entity, at the
	// version checked.
	cached map[string]uint64
	// created is the ID of the record created without checks: its
	// clash may fail any later statement, or the commit.
	created string
}

// deferring returns tx as a deferTx writing records of coll, if its
// store defers checks.
func deferring(tx storage.Tx, coll string) storage.Tx {
	if d, ok := tx.(storage.Deferrer); ok {
		return &deferTx{Tx: tx, d: d, coll: coll}
	}
	return tx
}

// maxExpectRetries bounds how many times a create or update starts over
// because the schema it took from the cache had changed.
const maxExpectRetries = 3

// staleSchema reports whether err is a failed check of a cached schema,
// forgetting that schema so that the next attempt reads it.
func (t *Tenant) staleSchema(err error) bool {
	var ee *storage.ExpectError
	if !errors.As(err, &ee) || ee.Collection != schemasCollection {
		return false
	}
	t.e.schemas.Delete(schemaKey(t.id, ee.ID))
	return true
}

// cachedSchemaFor returns the engine's copy of the schema of entity and
// has the transaction check, at its commit, that it is still the stored
// one; ok is false when the engine has no copy.
func (t *Tenant) cachedSchemaFor(ctx context.Context, dt *deferTx, entity string) (s *Schema, ok bool, err error) {
	c, found := t.e.schemas.Load(schemaKey(t.id, entity))
	if !found {
		return nil, false, nil
	}
	cs := c.(*cachedSchema)
	if err := dt.d.Expect(ctx, schemasCollection, entity, cs.version); err != nil {
		return nil, false, err
	}
	if dt.cached == nil {
		dt.cached = map[string]uint64{}
	}
	dt.cached[entity] = cs.version
	return cs.s, true, nil
}

// staleCache is called when the work of the transaction failed, which
// may be because of a cached schema that is no longer the stored one (a
// field it lacks is refused): the checks of the commit never run then,
// so it reads the schemas it took from the cache, and returns an
// *ExpectError if one changed, nil if not (or if it cannot tell).
func (dt *deferTx) staleCache(ctx context.Context) error {
	for entity, version := range dt.cached {
		rec, err := dt.Get(ctx, schemasCollection, entity)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			rec.Version = 0
		case errors.As(err, new(*storage.ExpectError)):
			return err
		case err != nil:
			return nil
		}
		if rec.Version != version {
			return &storage.ExpectError{Collection: schemasCollection, ID: entity, Version: version}
		}
	}
	return nil
}
