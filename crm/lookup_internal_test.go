package crm

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/rapportcrm/rapport/storage/memory"
)

// TestIndexerPreparesFromEvents checks that the entry the indexer works
// out from an event, outside its write transaction, names the version the
// event carries, so that apply uses it only for that stored version.
func TestIndexerPreparesFromEvents(t *testing.T) {
	ctx := context.Background()
	e, err := Open(ctx, Options{Store: memory.New()})
	require.NoError(t, err)
	defer e.Close()
	c, err := e.Contacts().Create(ctx, Contact{FirstName: "Zoë", LastName: "Ångström", Email: "zoe@example.com"})
	require.NoError(t, err)
	c.Email = "zoe@example.org"
	c, err = e.Contacts().Update(ctx, c)
	require.NoError(t, err)

	evs, err := e.store.ReadOutbox(ctx, "test-prepare", 100)
	require.NoError(t, err)
	var versions []uint64
	for _, ev := range evs {
		if ev.Collection != contactsCollection {
			continue
		}
		pre := e.lookup.prepare(ev)
		require.NotNil(t, pre, ev.Type)
		versions = append(versions, pre.version)
		want, err := contactKind.search([]byte(gjson.GetBytes(ev.Body, "data").Raw))
		require.NoError(t, err)
		require.Equal(t, want, pre.entry.Terms)
	}
	require.Equal(t, []uint64{1, c.Version}, versions)
	last := e.lookup.prepare(evs[len(evs)-1]).entry
	require.Contains(t, last.Terms, "zoe@example.org")
	require.Contains(t, last.Terms, "angstrom")
	require.Equal(t, []string{"email:zoe@example.org"}, last.Keys)
}

// TestParseSortableTime checks the fast parser against the time package
// over random times from year 0 to 9999, and refuses malformed input.
func TestParseSortableTime(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lo := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	hi := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
	for range 100_000 {
		want := time.Unix(lo+r.Int64N(hi-lo), r.Int64N(1e9)).UTC()
		s := want.Format(sortableTimeLayout)
		got, err := parseSortableTime(s)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Fatalf("%s: got %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"2024-13-01T00:00:00.000000000Z", "2024-00-01T00:00:00.000000000Z", "2024-01-32T00:00:00.000000000Z",
		"2024-01-01T24:00:00.000000000Z", "2024-01-01T00:60:00.000000000Z", "2024-01-01 00:00:00.000000000Z", "2024-01-01T00:00:00Z"} {
		_, err := parseSortableTime(s)
		assert.Error(t, err, s)
	}
}
