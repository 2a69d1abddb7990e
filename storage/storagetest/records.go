package storagetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
)

func (s *suite) testCRUD(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()

	_, err := get(t, st, tenant, people, "p1")
	require.ErrorIs(t, err, storage.ErrNotFound)

	created := put(t, st, tenant, people, storage.Record{ID: "p1", Body: body(t, person{Name: "Ada", Email: "ada@example.com"})})
	assert.Equal(t, uint64(1), created.Version)
	assert.Equal(t, "p1", created.ID)

	got, err := get(t, st, tenant, people, "p1")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), got.Version)
	assert.Equal(t, "Ada", decode[person](t, got.Body).Name)

	// The returned body is a copy: changing it changes nothing stored.
	got.Body[2] = 'X'
	again, err := get(t, st, tenant, people, "p1")
	require.NoError(t, err)
	assert.Equal(t, "Ada", decode[person](t, again.Body).Name)

	updated := put(t, st, tenant, people, storage.Record{ID: "p1", Version: 1, Body: body(t, person{Name: "Ada L.", Email: "ada@example.com"})})
	assert.Equal(t, uint64(2), updated.Version)
	got, err = get(t, st, tenant, people, "p1")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), got.Version)
	assert.Equal(t, "Ada L.", decode[person](t, got.Body).Name)

	require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error {
		return tx.Delete(ctx, people, "p1", 2)
	}))
	_, err = get(t, st, tenant, people, "p1")
	require.ErrorIs(t, err, storage.ErrNotFound)

	// A deleted ID can be created again and starts at version 1.
	re := put(t, st, tenant, people, storage.Record{ID: "p1", Body: body(t, person{Name: "New"})})
	assert.Equal(t, uint64(1), re.Version)
}

func (s *suite) testVersions(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	put(t, st, tenant, people, storage.Record{ID: "p1", Body: body(t, person{Name: "A"})})
	put(t, st, tenant, people, storage.Record{ID: "p1", Version: 1, Body: body(t, person{Name: "B"})})
	before := dump(t, st, tenant)

	err := putErr(st, tenant, people, storage.Record{ID: "p1", Body: body(t, person{Name: "C"})})
	require.ErrorIs(t, err, storage.ErrExists, "create of an existing ID")

	err = putErr(st, tenant, people, storage.Record{ID: "p1", Version: 1, Body: body(t, person{Name: "C"})})
	require.ErrorIs(t, err, storage.ErrConflict, "update with a stale version")

	err = putErr(st, tenant, people, storage.Record{ID: "p1", Version: 7, Body: body(t, person{Name: "C"})})
	require.ErrorIs(t, err, storage.ErrConflict, "update with a future version")

	err = putErr(st, tenant, people, storage.Record{ID: "nobody", Version: 1, Body: body(t, person{Name: "C"})})
	require.ErrorIs(t, err, storage.ErrNotFound, "update of a missing record")

	err = st.Update(ctx, tenant, func(tx storage.Tx) error { return tx.Delete(ctx, people, "p1", 1) })
	require.ErrorIs(t, err, storage.ErrConflict, "delete with a stale version")

	err = st.Update(ctx, tenant, func(tx storage.Tx) error { return tx.Delete(ctx, people, "nobody", 0) })
	require.ErrorIs(t, err, storage.ErrNotFound, "delete of a missing record")

	assert.Equal(t, before, dump(t, st, tenant), "failed writes changed stored data")

	// Version 0 deletes whatever version is stored.
	require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error { return tx.Delete(ctx, people, "p1", 0) }))
	_, err = get(t, st, tenant, people, "p1")
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func (s *suite) testUniqueIndex(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	put(t, st, tenant, people, storage.Record{ID: "p1", Body: body(t, person{Name: "A", Email: "a@x.io"})})
	before := dump(t, st, tenant)

	err := putErr(st, tenant, people, storage.Record{ID: "p2", Body: body(t, person{Name: "B", Email: "a@x.io"})})
	var ue *storage.UniqueError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, people, ue.Collection)
	assert.Equal(t, "email", ue.Index)
	assert.Equal(t, "a@x.io", ue.Value)
	assert.Equal(t, "p1", ue.ExistingID)
	assert.ErrorIs(t, err, storage.ErrExists)
	assert.Contains(t, err.Error(), "a@x.io")
	assert.Equal(t, before, dump(t, st, tenant))

	// Updating the holder and keeping its value is fine.
	put(t, st, tenant, people, storage.Record{ID: "p1", Version: 1, Body: body(t, person{Name: "A2", Email: "a@x.io"})})
	// Changing the value frees the old one.
	put(t, st, tenant, people, storage.Record{ID: "p1", Version: 2, Body: body(t, person{Name: "A3", Email: "new@x.io"})})
	put(t, st, tenant, people, storage.Record{ID: "p2", Body: body(t, person{Name: "B", Email: "a@x.io"})})
	// Deleting frees the value.
	require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error { return tx.Delete(ctx, people, "p2", 0) }))
	put(t, st, tenant, people, storage.Record{ID: "p3", Body: body(t, person{Name: "C", Email: "a@x.io"})})

	// Within one transaction: the second writer of a value fails, and the
	// failure does not undo the first write unless the function returns it.
	err = st.Update(ctx, tenant, func(tx storage.Tx) error {
		if _, err := tx.Put(ctx, people, storage.Record{ID: "p4", Body: body(t, person{Email: "d@x.io"})}); err != nil {
			return err
		}
		_, err := tx.Put(ctx, people, storage.Record{ID: "p5", Body: body(t, person{Email: "d@x.io"})})
		require.ErrorAs(t, err, &ue)
		return nil
	})
	require.NoError(t, err)
	_, err = get(t, st, tenant, people, "p4")
	require.NoError(t, err)
	_, err = get(t, st, tenant, people, "p5")
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func (s *suite) testIndexConsistency(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	put(t, st, tenant, people, storage.Record{ID: "p1", Body: body(t, person{Name: "v1", Tags: []string{"vip", "b2b"}, Address: &address{City: "Oslo"}})})
	put(t, st, tenant, people, storage.Record{ID: "p2", Body: body(t, person{Name: "other", Tags: []string{"vip"}})})
	put(t, st, tenant, people, storage.Record{ID: "p1", Version: 1, Body: body(t, person{Name: "v2", Tags: []string{"b2b", "new", "new"}, Address: &address{City: "Rome"}})})

	assert.Equal(t, []string{"p2"}, ids(scan(t, st, tenant, people, storage.Query{Index: "tags", Equal: "vip"})))
	p := scan(t, st, tenant, people, storage.Query{Index: "tags", Equal: "b2b"})
	require.Equal(t, []string{"p1"}, ids(p))
	assert.Equal(t, "v2", decode[person](t, p.Records[0].Body).Name, "index must return the current version")
	assert.Equal(t, uint64(2), p.Records[0].Version)
	assert.Equal(t, []string{"p1"}, ids(scan(t, st, tenant, people, storage.Query{Index: "tags", Equal: "new"})), "a repeated value is indexed once")
	assert.Empty(t, scan(t, st, tenant, people, storage.Query{Index: "city", Equal: "Oslo"}).Records)
	assert.Equal(t, []string{"p1"}, ids(scan(t, st, tenant, people, storage.Query{Index: "city", Equal: "Rome"})))

	require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error { return tx.Delete(ctx, people, "p1", 0) }))
	for _, q := range []storage.Query{{Index: "tags"}, {Index: "city"}, {Index: "email"}} {
		for _, r := range scanAll(t, st, tenant, people, q) {
			assert.NotEqual(t, "p1", r.ID, "index %s points at a deleted record", q.Index)
		}
	}
	assert.Equal(t, []string{"p2"}, ids(scan(t, st, tenant, people, storage.Query{Index: "tags"})))
}

func (s *suite) testDeclare(t *testing.T) {
	st := s.newStore(t)
	ctx := context.Background()
	plain := storage.Collection{Name: "things"}
	require.NoError(t, st.Declare(ctx, plain))
	require.NoError(t, st.Declare(ctx, plain), "declaring again is a no-op")
	for i, kind := range []string{"a", "b", "a"} {
		put(t, st, tenant, "things", storage.Record{ID: string(rune('1' + i)), Body: body(t, map[string]string{"kind": kind})})
	}
	put(t, st, "t2", "things", storage.Record{ID: "9", Body: body(t, map[string]string{"kind": "a"})})

	// A new index is built from the records already stored, in every tenant.
	withKind := storage.Collection{Name: "things", Indexes: []storage.Index{{Name: "kind", Field: "kind"}}}
	require.NoError(t, st.Declare(ctx, withKind))
	assert.Equal(t, []string{"1", "3"}, ids(scan(t, st, tenant, "things", storage.Query{Index: "kind", Equal: "a"})))
	assert.Equal(t, []string{"9"}, ids(scan(t, st, "t2", "things", storage.Query{Index: "kind", Equal: "a"})))

	// A unique index over duplicate values is refused and changes nothing.
	uniq := storage.Collection{Name: "things", Indexes: []storage.Index{{Name: "kind", Field: "kind", Unique: true}}}
	err := st.Declare(ctx, uniq)
	var ue *storage.UniqueError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, "a", ue.Value)
	assert.Equal(t, []string{"1", "3"}, ids(scan(t, st, tenant, "things", storage.Query{Index: "kind", Equal: "a"})))
	_, err = get(t, st, tenant, "things", "4")
	require.ErrorIs(t, err, storage.ErrNotFound)
	put(t, st, tenant, "things", storage.Record{ID: "4", Body: body(t, map[string]string{"kind": "a"})})

	// An index computed by a function; changing its Version rebuilds it.
	upper := storage.Collection{Name: "things", Indexes: []storage.Index{{Name: "kind", Extract: func(b []byte) ([]string, error) {
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
		return []string{"K-" + m["kind"]}, nil
	}}}}
	require.NoError(t, st.Declare(ctx, upper))
	assert.Equal(t, []string{"2"}, ids(scan(t, st, tenant, "things", storage.Query{Index: "kind", Equal: "K-b"})))

	// Dropping the index makes it unknown to queries.
	require.NoError(t, st.Declare(ctx, plain))
	err = st.View(ctx, tenant, func(tx storage.ReadTx) error {
		_, err := tx.Scan(ctx, "things", storage.Query{Index: "kind"})
		return err
	})
	require.ErrorIs(t, err, storage.ErrUnknownIndex)

	for _, bad := range []storage.Collection{
		{Name: ""},
		{Name: "Upper"},
		{Name: "9lives"},
		{Name: "x", Indexes: []storage.Index{{Name: "a", Field: "a"}, {Name: "a", Field: "b"}}},
		{Name: "x", Indexes: []storage.Index{{Name: "a"}}},
		{Name: "x", Indexes: []storage.Index{{Name: "a", Field: "a", Extract: func([]byte) ([]string, error) { return nil, nil }}}},
		{Name: "x", Indexes: []storage.Index{{Name: "bad name", Field: "a"}}},
		{Name: "x", Indexes: []storage.Index{{Name: "a", Field: "tags.#"}}},
		{Name: "x", Indexes: []storage.Index{{Name: "a", Field: "a..b"}}},
	} {
		err := st.Declare(ctx, bad)
		assert.ErrorIs(t, err, storage.ErrInvalid, "declaration %+v", bad)
	}
	require.ErrorIs(t, st.Declare(ctx, plain, plain), storage.ErrInvalid, "a collection declared twice in one call")
}

// testDeclareUnderWrites adds an index while another goroutine keeps
// writing: every record must end up in the new index.
func (s *suite) testDeclareUnderWrites(t *testing.T) {
	st := s.newStore(t)
	ctx := context.Background()
	plain := storage.Collection{Name: "things"}
	require.NoError(t, st.Declare(ctx, plain))
	stop := make(chan struct{})
	written := make(chan int)
	go func() {
		n := 0
		defer func() { written <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			err := st.Update(ctx, tenant, func(tx storage.Tx) error {
				_, err := tx.Put(ctx, "things", storage.Record{ID: fmt.Sprintf("r%06d", n), Body: body(t, map[string]string{"kind": "k"})})
				return err
			})
			if err != nil {
				t.Error(err)
				return
			}
			n++
		}
	}()
	for range 20 {
		time.Sleep(time.Millisecond)
		require.NoError(t, st.Declare(ctx, storage.Collection{Name: "things", Indexes: []storage.Index{{Name: "kind", Field: "kind"}}}))
		require.NoError(t, st.Declare(ctx, plain))
	}
	require.NoError(t, st.Declare(ctx, storage.Collection{Name: "things", Indexes: []storage.Index{{Name: "kind", Field: "kind"}}}))
	time.Sleep(5 * time.Millisecond)
	close(stop)
	n := <-written
	require.Positive(t, n)
	indexed := scanAll(t, st, tenant, "things", storage.Query{Index: "kind", Equal: "k", Limit: storage.MaxScanLimit})
	assert.Len(t, indexed, n, "records written around Declare are missing from the index")
}

func (s *suite) testTenantIsolation(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	put(t, st, "acme", people, storage.Record{ID: "p1", Body: body(t, person{Name: "acme's", Email: "same@x.io", Tags: []string{"vip"}})})
	put(t, st, "globex", people, storage.Record{ID: "p1", Body: body(t, person{Name: "globex's", Email: "same@x.io", Tags: []string{"vip"}})})
	put(t, st, "globex", people, storage.Record{ID: "p2", Body: body(t, person{Name: "only globex"})})

	a, err := get(t, st, "acme", people, "p1")
	require.NoError(t, err)
	assert.Equal(t, "acme's", decode[person](t, a.Body).Name)
	_, err = get(t, st, "acme", people, "p2")
	require.ErrorIs(t, err, storage.ErrNotFound)
	assert.Equal(t, []string{"p1"}, ids(scan(t, st, "acme", people, storage.Query{})))
	assert.Equal(t, []string{"p1"}, ids(scan(t, st, "acme", people, storage.Query{Index: "tags", Equal: "vip"})))
	assert.Empty(t, scan(t, st, "initech", people, storage.Query{}).Records)

	// Deleting in one tenant leaves the other alone.
	require.NoError(t, st.Update(ctx, "acme", func(tx storage.Tx) error { return tx.Delete(ctx, people, "p1", 0) }))
	_, err = get(t, st, "globex", people, "p1")
	require.NoError(t, err)

	// Events carry the tenant of their transaction, whatever the caller set.
	require.NoError(t, st.Update(ctx, "acme", func(tx storage.Tx) error {
		return tx.Append(ctx, storage.Event{Type: "x.happened", Tenant: "globex"})
	}))
	evs, err := st.ReadOutbox(ctx, "iso", 10)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	assert.Equal(t, "acme", evs[0].Tenant)
}

func (s *suite) testReopen(t *testing.T) {
	st := s.open(t)
	put(t, st, tenant, people, storage.Record{ID: "p1", Body: body(t, person{Name: "A", Email: "a@x.io", Tags: []string{"vip"}})})
	put(t, st, tenant, people, storage.Record{ID: "p1", Version: 1, Body: body(t, person{Name: "B", Email: "a@x.io", Tags: []string{"vip"}})})
	before := dump(t, st, tenant)

	st = s.reopen(t, st)
	require.NoError(t, st.Declare(context.Background(), Collections()...))
	assert.Equal(t, before, dump(t, st, tenant))
	got, err := get(t, st, tenant, people, "p1")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), got.Version)
	err = putErr(st, tenant, people, storage.Record{ID: "p2", Body: body(t, person{Email: "a@x.io"})})
	require.True(t, errors.Is(err, storage.ErrExists), "unique index must survive a reopen: %v", err)
}
