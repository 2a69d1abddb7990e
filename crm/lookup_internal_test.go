package crm

import (
	"context"
	"testing"

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
