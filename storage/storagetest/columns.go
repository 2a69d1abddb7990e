package storagetest

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
)

// visitColumns are the columns of the "visit" index of testColumns.
var visitColumns = []storage.Column{{Name: "city"}, {Name: "at", Type: storage.ColumnTime}, {Name: "amount", Type: storage.ColumnInt}}

// testColumns declares an index with typed columns: its values scan like
// any index's, a value that does not parse is refused and leaves the
// store unchanged, and dropping or redefining the columns rebuilds it.
func (s *suite) testColumns(t *testing.T) {
	st := s.newStore(t)
	ctx := context.Background()
	visits := storage.Collection{Name: "visits", Indexes: []storage.Index{{Name: "visit", Field: "v", Columns: visitColumns}}}
	require.NoError(t, st.Declare(ctx, visits))
	v := func(city, at, amount string) string {
		return strings.Join([]string{city, at, amount}, storage.FieldSep)
	}
	good := v("Oslo", "2026-01-02T03:04:05.000000006Z", "-12")
	put(t, st, tenant, "visits", storage.Record{ID: "1", Body: body(t, map[string]string{"v": good})})
	put(t, st, tenant, "visits", storage.Record{ID: "2", Body: body(t, map[string]string{"v": v("Bergen", "", "0")})})
	keys := scan(t, st, tenant, "visits", storage.Query{Index: "visit", KeysOnly: true})
	assert.Equal(t, []string{v("Bergen", "", "0"), good}, keys.Keys)

	for name, bad := range map[string]string{
		"too few fields":  "Oslo" + storage.FieldSep + "2026-01-02T03:04:05.000000006Z",
		"too many fields": good + storage.FieldSep + "x",
		"bad time":        v("Oslo", "yesterday", "1"),
		"bad integer":     v("Oslo", "", "1.5"),
	} {
		err := putErr(st, tenant, "visits", storage.Record{ID: "1", Version: 1, Body: body(t, map[string]string{"v": bad})})
		require.ErrorIs(t, err, storage.ErrInvalid, name)
	}
	rec, err := get(t, st, tenant, "visits", "1")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rec.Version, "refused writes change nothing")

	// Stored values that do not fit new columns make Declare fail.
	other := storage.Collection{Name: "visits", Indexes: []storage.Index{{Name: "visit", Field: "v", Columns: visitColumns[:2]}}}
	require.ErrorIs(t, st.Declare(ctx, other), storage.ErrInvalid)
	assert.Len(t, scan(t, st, tenant, "visits", storage.Query{Index: "visit", KeysOnly: true}).Keys, 2)
	// Without columns, the same index is rebuilt as a plain one.
	plain := storage.Collection{Name: "visits", Indexes: []storage.Index{{Name: "visit", Field: "v"}}}
	require.NoError(t, st.Declare(ctx, plain))
	put(t, st, tenant, "visits", storage.Record{ID: "3", Body: body(t, map[string]string{"v": "anything"})})
	assert.Len(t, scan(t, st, tenant, "visits", storage.Query{Index: "visit", KeysOnly: true}).Keys, 3)

	for _, bad := range [][]storage.Column{
		{{Name: "a"}, {Name: "a"}},
		{{Name: "Bad"}},
		{{Name: "a", Type: 9}},
	} {
		c := storage.Collection{Name: "x", Indexes: []storage.Index{{Name: "i", Field: "v", Columns: bad}}}
		assert.ErrorIs(t, st.Declare(ctx, c), storage.ErrInvalid, "%+v", bad)
	}
}
