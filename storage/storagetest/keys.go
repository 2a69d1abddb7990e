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

// testKeyBoundaries stores records under names that are prefixes of each
// other (tenants, collections, indexes, index values, IDs) and checks that
// they never mix, whatever key layout the backend uses, and that scans stop
// at the edges of their collection or index in both directions and across
// pages.
func (s *suite) testKeyBoundaries(t *testing.T) {
	st := s.newStore(t)
	ctx := context.Background()
	decl := func(name string, indexes ...string) storage.Collection {
		c := storage.Collection{Name: name}
		for _, ix := range indexes {
			c.Indexes = append(c.Indexes, storage.Index{Name: ix, Field: ix, Unique: ix == "tag"})
		}
		return c
	}
	// "a" sorts before the other index names, "z" after them.
	all := []string{"a", "tag", "tags", "z"}
	require.NoError(t, st.Declare(ctx, decl("thing", all...), decl("things", all...)))

	type doc struct {
		A    string   `json:"a,omitempty"`
		Tag  string   `json:"tag,omitempty"`
		Tags []string `json:"tags,omitempty"`
		Z    string   `json:"z,omitempty"`
	}
	type place struct{ tenant, coll string }
	places := []place{{"a", "thing"}, {"a", "things"}, {"ab", "thing"}, {"a b", "thing"}}
	// Every place gets the same IDs and values, each tagged with the place,
	// so that a record or entry seen in the wrong place shows.
	ids := []string{"x", "x1", "x\u00ff", "y"}
	for _, p := range places {
		for i, id := range ids {
			v := fmt.Sprintf("v%d", i%2) // v0, v1, v0, v1
			put(t, st, p.tenant, p.coll, storage.Record{ID: id, Body: body(t, doc{
				A: p.tenant + "/" + p.coll, Tag: v + id, Tags: []string{v, v + "1"}, Z: "z"})})
		}
	}

	// pages scans with one record per page, following cursors, and also in
	// one page, and checks that both agree.
	pages := func(t *testing.T, p place, q storage.Query) []string {
		t.Helper()
		one := q
		one.Limit = 1
		var got []string
		for _, r := range scanAll(t, st, p.tenant, p.coll, one) {
			got = append(got, r.ID)
			assert.Equal(t, p.tenant+"/"+p.coll, decode[doc](t, r.Body).A, "record from another place")
		}
		whole := scan(t, st, p.tenant, p.coll, q)
		assert.Equal(t, got, idsOf(whole.Records), "one page and pages of one differ for %+v", q)
		return got
	}
	rev := func(s []string) []string { s = slices.Clone(s); slices.Reverse(s); return s }
	for _, p := range places {
		t.Run(p.tenant+"/"+p.coll, func(t *testing.T) {
			assert.Equal(t, ids, pages(t, p, storage.Query{}))
			assert.Equal(t, rev(ids), pages(t, p, storage.Query{Reverse: true}))
			assert.Equal(t, []string{"x", "x1", "x\u00ff"}, pages(t, p, storage.Query{Prefix: "x"}))
			assert.Equal(t, []string{"x"}, pages(t, p, storage.Query{Equal: "x"}))
			assert.Equal(t, []string{"y"}, pages(t, p, storage.Query{Start: "x\u00ff\u00ff"}))
			assert.Empty(t, pages(t, p, storage.Query{Prefix: "\xff"}))
			assert.Empty(t, pages(t, p, storage.Query{Prefix: "\xff", Reverse: true}))
			assert.Empty(t, pages(t, p, storage.Query{Start: "\xff"}))

			// The first and the last index, whole, both ways.
			assert.Equal(t, ids, pages(t, p, storage.Query{Index: "a"}))
			assert.Equal(t, rev(ids), pages(t, p, storage.Query{Index: "a", Reverse: true}))
			assert.Equal(t, ids, pages(t, p, storage.Query{Index: "z"}))
			assert.Equal(t, rev(ids), pages(t, p, storage.Query{Index: "z", Reverse: true}))
			assert.Empty(t, pages(t, p, storage.Query{Index: "z", Prefix: "\xff"}))
			assert.Empty(t, pages(t, p, storage.Query{Index: "a", Start: "\xff", Reverse: true}))

			// "tag" and "tags" hold their own entries only.
			assert.Equal(t, []string{"x", "x\u00ff", "x1", "y"}, pages(t, p, storage.Query{Index: "tag"}),
				"tag values v0x, v0x\u00ff, v1x1, v1y")
			assert.Equal(t, []string{"x", "x\u00ff"}, pages(t, p, storage.Query{Index: "tags", Equal: "v0"}),
				"an equal value is not a prefix: v0 is not v01")
			assert.Equal(t, []string{"x", "x\u00ff", "x", "x\u00ff", "x1", "y", "x1", "y"},
				pages(t, p, storage.Query{Index: "tags"}))
			assert.Equal(t, []string{"x\u00ff", "x"}, pages(t, p, storage.Query{Index: "tags", Equal: "v01", Reverse: true}))
			assert.Empty(t, pages(t, p, storage.Query{Index: "tag", Equal: "v0"}))
		})
	}

	// A unique value is unique per tenant, collection and index only.
	err := putErr(st, "a", "thing", storage.Record{ID: "dup", Body: body(t, doc{Tag: "v0x"})})
	var ue *storage.UniqueError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, "x", ue.ExistingID)
	put(t, st, "a", "thing", storage.Record{ID: "w", Body: body(t, doc{A: "a/thing", Tag: "v0", Tags: []string{"v0x"}, Z: "z"})})
	put(t, st, "abc", "thing", storage.Record{ID: "dup", Body: body(t, doc{Tag: "v0x"})})

	// Dropping "tag" leaves "tags" and the records alone; declaring it
	// again rebuilds it.
	require.NoError(t, st.Declare(ctx, decl("thing", "a", "tags", "z")))
	p := place{"a", "thing"}
	withW := []string{"w", "x", "x1", "x\u00ff", "y"}
	assert.Equal(t, withW, pages(t, p, storage.Query{}))
	assert.Equal(t, withW, pages(t, p, storage.Query{Index: "z", Equal: "z"}))
	assert.Equal(t, []string{"x", "x\u00ff", "x", "x\u00ff", "w"}, pages(t, p, storage.Query{Index: "tags", Prefix: "v0"}),
		"values v0, v01, v0x")
	require.NoError(t, st.Declare(ctx, decl("thing", all...)))
	assert.Equal(t, []string{"w", "x", "x\u00ff", "x1", "y"}, pages(t, p, storage.Query{Index: "tag"}))
	assert.Equal(t, []string{"y", "x1", "x\u00ff", "x", "w"}, pages(t, p, storage.Query{Index: "tag", Reverse: true}))
	assert.Equal(t, []string{"x", "x\u00ff", "x1", "y"}, pages(t, place{"ab", "thing"}, storage.Query{Index: "tag", Prefix: "v"}))
}

func idsOf(recs []storage.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}
