package storagetest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
)

func (s *suite) testScanByID(t *testing.T) {
	st := s.open(t)
	for _, id := range []string{"b1", "a2", "a1", "c", "a10", "b"} {
		put(t, st, tenant, people, storage.Record{ID: id, Body: body(t, person{Name: id})})
	}
	cases := []struct {
		name string
		q    storage.Query
		want []string
	}{
		{"all", storage.Query{}, []string{"a1", "a10", "a2", "b", "b1", "c"}},
		{"reverse", storage.Query{Reverse: true}, []string{"c", "b1", "b", "a2", "a10", "a1"}},
		{"equal", storage.Query{Equal: "b"}, []string{"b"}},
		{"equal missing", storage.Query{Equal: "zz"}, nil},
		{"prefix", storage.Query{Prefix: "a1"}, []string{"a1", "a10"}},
		{"prefix reverse", storage.Query{Prefix: "a", Reverse: true}, []string{"a2", "a10", "a1"}},
		{"range", storage.Query{Start: "a10", End: "b1"}, []string{"a10", "a2", "b"}},
		{"range reverse", storage.Query{Start: "a10", End: "b1", Reverse: true}, []string{"b", "a2", "a10"}},
		{"from", storage.Query{Start: "b"}, []string{"b", "b1", "c"}},
		{"until", storage.Query{End: "a2"}, []string{"a1", "a10"}},
		{"limit", storage.Query{Limit: 2}, []string{"a1", "a10"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := scan(t, st, tenant, people, c.q)
			if c.want == nil {
				assert.Empty(t, p.Records)
			} else {
				assert.Equal(t, c.want, ids(p))
			}
		})
	}
}

func (s *suite) testScanByIndex(t *testing.T) {
	st := s.open(t)
	cities := map[string]string{"p1": "Oslo", "p2": "Bergen", "p3": "Oslo", "p4": "Rome", "p5": "", "p6": "Osaka"}
	for _, id := range []string{"p1", "p2", "p3", "p4", "p5", "p6"} {
		put(t, st, tenant, people, storage.Record{ID: id, Body: body(t, person{Name: id, Address: &address{City: cities[id]}, Tags: []string{"t-" + id, "all"}})})
	}
	cases := []struct {
		name     string
		q        storage.Query
		want     []string
		wantKeys []string
	}{
		{"all values in order", storage.Query{Index: "city"}, []string{"p2", "p6", "p1", "p3", "p4"}, []string{"Bergen", "Osaka", "Oslo", "Oslo", "Rome"}},
		{"equal", storage.Query{Index: "city", Equal: "Oslo"}, []string{"p1", "p3"}, nil},
		{"equal is not a prefix", storage.Query{Index: "city", Equal: "Osl"}, nil, nil},
		{"prefix", storage.Query{Index: "city", Prefix: "Os"}, []string{"p6", "p1", "p3"}, nil},
		{"range", storage.Query{Index: "city", Start: "Bergen", End: "Oslo"}, []string{"p2", "p6"}, nil},
		{"reverse", storage.Query{Index: "city", Reverse: true}, []string{"p4", "p3", "p1", "p6", "p2"}, nil},
		{"equal reverse", storage.Query{Index: "city", Equal: "Oslo", Reverse: true}, []string{"p3", "p1"}, nil},
		{"multi-valued", storage.Query{Index: "tags", Equal: "all"}, []string{"p1", "p2", "p3", "p4", "p5", "p6"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := scan(t, st, tenant, people, c.q)
			if c.want == nil {
				assert.Empty(t, p.Records)
				return
			}
			assert.Equal(t, c.want, ids(p))
			if c.wantKeys != nil {
				assert.Equal(t, c.wantKeys, p.Keys)
			}
			for _, r := range p.Records {
				assert.Equal(t, r.ID, decode[person](t, r.Body).Name, "body must belong to the record")
			}
		})
	}
}

func (s *suite) testScanPagination(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	var want []string
	require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error {
		for i := range 250 {
			id := fmt.Sprintf("r%04d", i)
			want = append(want, id)
			tags := []string{"even"}
			if i%2 == 1 {
				tags = []string{"odd"}
			}
			if _, err := tx.Put(ctx, people, storage.Record{ID: id, Body: body(t, person{Name: id, Tags: tags})}); err != nil {
				return err
			}
		}
		return nil
	}))
	for _, reverse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reverse=%t", reverse), func(t *testing.T) {
			q := storage.Query{Limit: 7, Reverse: reverse}
			var got []string
			pages := 0
			for {
				p := scan(t, st, tenant, people, q)
				pages++
				require.LessOrEqual(t, len(p.Records), 7)
				got = append(got, ids(p)...)
				if p.Next == "" {
					break
				}
				q.Cursor = p.Next
			}
			exp := slices.Clone(want)
			if reverse {
				slices.Reverse(exp)
			}
			assert.Equal(t, exp, got, "pages must cover every record once, in order")
			assert.Equal(t, 36, pages)
		})
	}

	t.Run("exact page has no next", func(t *testing.T) {
		p := scan(t, st, tenant, people, storage.Query{Prefix: "r000", Limit: 10})
		assert.Len(t, p.Records, 10)
		assert.Empty(t, p.Next)
	})

	t.Run("index with writes between pages", func(t *testing.T) {
		q := storage.Query{Index: "tags", Equal: "odd", Limit: 50}
		p := scan(t, st, tenant, people, q)
		require.Len(t, p.Records, 50)
		require.NotEmpty(t, p.Next)
		last := p.Records[49].ID
		// A record that sorts before the cursor is not seen; one after it is.
		put(t, st, tenant, people, storage.Record{ID: "r0000a", Body: body(t, person{Tags: []string{"odd"}})})
		put(t, st, tenant, people, storage.Record{ID: "r9999", Body: body(t, person{Tags: []string{"odd"}})})
		q.Cursor = p.Next
		rest := scanAll(t, st, tenant, people, q)
		require.NotEmpty(t, rest)
		assert.Greater(t, rest[0].ID, last)
		assert.Equal(t, "r9999", rest[len(rest)-1].ID)
		assert.Len(t, rest, 125-50+1)
	})

	t.Run("default limit", func(t *testing.T) {
		p := scan(t, st, tenant, people, storage.Query{})
		assert.Len(t, p.Records, storage.DefaultScanLimit)
		assert.NotEmpty(t, p.Next)
	})
}

func (s *suite) testScanKeysOnly(t *testing.T) {
	st := s.open(t)
	cities := map[string]string{"k1": "Oslo", "k2": "Bergen", "k3": "Oslo", "k4": "Rome", "k5": ""}
	for _, id := range []string{"k1", "k2", "k3", "k4", "k5"} {
		put(t, st, tenant, people, storage.Record{ID: id, Body: body(t, person{Name: id, Address: &address{City: cities[id]}})})
	}
	for _, q := range []storage.Query{
		{}, {Reverse: true}, {Prefix: "k2"}, {Index: "city"}, {Index: "city", Equal: "Oslo"}, {Index: "city", Start: "Bergen", End: "Rome", Reverse: true},
	} {
		t.Run(fmt.Sprintf("%+v", q), func(t *testing.T) {
			full := scanAll(t, st, tenant, people, q)
			q.KeysOnly = true
			var got []storage.Record
			var keys []string
			for q.Limit = 2; ; {
				p := scan(t, st, tenant, people, q)
				for _, r := range p.Records {
					assert.Zero(t, r.Version, "a keys-only record has no version")
					assert.Nil(t, r.Body, "a keys-only record has no body")
				}
				got = append(got, p.Records...)
				keys = append(keys, p.Keys...)
				if p.Next == "" {
					break
				}
				q.Cursor = p.Next
			}
			assert.Equal(t, idsOf(full), idsOf(got), "a keys-only scan returns the same records, in the same order")
			if q.Index == "" {
				assert.Empty(t, keys)
				return
			}
			require.Len(t, keys, len(full))
			for i, r := range full {
				assert.Equal(t, decode[person](t, r.Body).Address.City, keys[i], "the key of %s", r.ID)
			}
		})
	}
}
