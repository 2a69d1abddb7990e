package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

// GetMany reads many records in one round trip: those that exist, in the
// order asked, each once, as Get would see them in the transaction.
func TestGetMany(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	require.NoError(t, st.Declare(ctx, storagetest.Collections()...))
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		for i := range 3 {
			if _, err := tx.Put(ctx, "people", storagetest.BenchRecord(i)); err != nil {
				return err
			}
		}
		return nil
	}))
	id := storagetest.BenchID
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		// A write not sent yet is seen.
		if _, err := tx.Put(ctx, "people", storagetest.BenchRecord(3)); err != nil {
			return err
		}
		got, err := tx.(storage.MultiGetter).GetMany(ctx, "people", []string{id(3), "missing", id(0), id(3), id(2)})
		require.NoError(t, err)
		require.Len(t, got, 3)
		assert.Equal(t, []string{id(3), id(0), id(2)}, []string{got[0].ID, got[1].ID, got[2].ID})
		assert.Equal(t, storagetest.BenchRecord(0).Body, got[1].Body)
		assert.Equal(t, uint64(1), got[1].Version)

		_, err = tx.(storage.MultiGetter).GetMany(ctx, "people", []string{id(0), ""})
		assert.ErrorIs(t, err, storage.ErrInvalid)
		_, err = tx.(storage.MultiGetter).GetMany(ctx, "nowhere", []string{id(0)})
		assert.ErrorIs(t, err, storage.ErrUnknownCollection)
		return nil
	}))
	// Another tenant's records are not seen.
	require.NoError(t, st.View(ctx, "other", func(tx storage.ReadTx) error {
		got, err := tx.(storage.MultiGetter).GetMany(ctx, "people", []string{id(0), id(1)})
		require.NoError(t, err)
		assert.Empty(t, got)
		return nil
	}))
}

// ScanMany runs many scans of a collection in one round trip: each page
// as Scan would give it in the transaction, in the order asked; one
// invalid query refuses them all.
func TestScanMany(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	require.NoError(t, st.Declare(ctx, storagetest.Collections()...))
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		for i := range 20 {
			if _, err := tx.Put(ctx, "people", storagetest.BenchRecord(i)); err != nil {
				return err
			}
		}
		return nil
	}))
	id := storagetest.BenchID
	qs := []storage.Query{
		{Index: "tags", Equal: "t3", KeysOnly: true},
		{Index: "city", Prefix: "City 1", Limit: 2},
		{Index: "email", Equal: "nobody@example.com"},
		{Limit: 3, Reverse: true},
	}
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		// A write not sent yet is seen.
		if _, err := tx.Put(ctx, "people", storagetest.BenchRecord(23)); err != nil {
			return err
		}
		pages, err := tx.(storage.MultiScanner).ScanMany(ctx, "people", qs)
		require.NoError(t, err)
		require.Len(t, pages, len(qs))
		for i, q := range qs {
			one, err := tx.Scan(ctx, "people", q)
			require.NoError(t, err)
			assert.Equal(t, one, pages[i], "query %d", i)
		}
		ids := func(p storage.Page) (out []string) {
			for _, r := range p.Records {
				out = append(out, r.ID)
			}
			return out
		}
		assert.Equal(t, []string{id(3), id(13), id(23)}, ids(pages[0]))
		assert.Equal(t, []string{id(10), id(11)}, ids(pages[1]))
		assert.NotEmpty(t, pages[1].Next)
		assert.Empty(t, pages[2].Records)
		assert.Equal(t, []string{id(23), id(19), id(18)}, ids(pages[3]))

		// One bad query, and none runs: the transaction goes on.
		_, err = tx.(storage.MultiScanner).ScanMany(ctx, "people", []storage.Query{qs[0], {Index: "nope", Equal: "x"}})
		assert.ErrorIs(t, err, storage.ErrUnknownIndex)
		_, err = tx.(storage.MultiScanner).ScanMany(ctx, "people", []storage.Query{qs[0], {Index: "tags", Cursor: "%%%"}})
		assert.ErrorIs(t, err, storage.ErrInvalid)
		_, err = tx.(storage.MultiScanner).ScanMany(ctx, "nowhere", qs[:1])
		assert.ErrorIs(t, err, storage.ErrUnknownCollection)
		got, err := tx.(storage.MultiScanner).ScanMany(ctx, "people", nil)
		require.NoError(t, err)
		assert.Empty(t, got)
		_, err = tx.Put(ctx, "people", storagetest.BenchRecord(24))
		return err
	}))
	require.NoError(t, st.View(ctx, "t", func(tx storage.ReadTx) error {
		_, err := tx.Get(ctx, "people", id(24))
		return err
	}))
}

// The engine's search index on PostgreSQL, whose indexer reads a batch's
// records with GetMany: new, changed and deleted contacts, and a
// suspected duplicate.
func TestEngineLookupOnPostgres(t *testing.T) {
	_, e := openEngine(t)
	ctx := context.Background()
	events := make(chan crm.Event, 10)
	require.NoError(t, e.Subscribe(crm.Subscription{Name: "dups", Events: []string{"contact.duplicate_suspected"},
		Handler: func(_ context.Context, ev crm.Event) error { events <- ev; return nil }}))
	contacts := e.Contacts()
	ada, err := contacts.Create(ctx, crm.Contact{FirstName: "Ada", LastName: "Lovelace", Phone: "+44 20 7946 0958"})
	require.NoError(t, err)
	grace, err := contacts.Create(ctx, crm.Contact{FirstName: "Grace", LastName: "Hopper"})
	require.NoError(t, err)
	dup, err := contacts.Create(ctx, crm.Contact{FirstName: "A.", LastName: "Lovelace", Phone: "020 7946 0958"})
	require.NoError(t, err)
	select {
	case ev := <-events:
		assert.Equal(t, dup.ID, ev.ID)
		assert.Contains(t, string(ev.Data), ada.ID)
	case <-time.After(10 * time.Second):
		t.Fatal("no contact.duplicate_suspected")
	}

	search := func(q string) []string { return searchIDs(t, contacts, q) }
	assert.ElementsMatch(t, []string{ada.ID, dup.ID}, search("lovelace"))
	grace.LastName = "Murray"
	_, err = contacts.Update(ctx, grace)
	require.NoError(t, err)
	require.NoError(t, contacts.Delete(ctx, dup.ID))
	assert.Equal(t, []string{ada.ID}, search("lovelace"))
	assert.Empty(t, search("hopper"))
	assert.Equal(t, []string{grace.ID}, search("murray"))

	// Created, changed and deleted before the indexer looks: one batch
	// holds the record's three events.
	linus, err := contacts.Create(ctx, crm.Contact{FirstName: "Linus", LastName: "Torvalds"})
	require.NoError(t, err)
	linus.LastName = "Benedict"
	linus, err = contacts.Update(ctx, linus)
	require.NoError(t, err)
	kim, err := contacts.Create(ctx, crm.Contact{FirstName: "Kim", LastName: "Gone"})
	require.NoError(t, err)
	require.NoError(t, contacts.Delete(ctx, kim.ID))
	assert.Empty(t, search("torvalds"))
	assert.Equal(t, []string{linus.ID}, search("benedict"))
	assert.Empty(t, search("gone"))
}

// On PostgreSQL the indexer writes a batch's lookup records unchecked
// and runs its duplicate lookups together (ScanMany): a record created
// with its duplicate in one batch is suspected once, by the later one.
func TestEngineDuplicatesInOneBatchOnPostgres(t *testing.T) {
	_, e := openEngine(t)
	ctx := context.Background()
	events := make(chan crm.Event, 10)
	require.NoError(t, e.Subscribe(crm.Subscription{Name: "dups", Events: []string{"contact.duplicate_suspected", "contact.updated"},
		Handler: func(_ context.Context, ev crm.Event) error { events <- ev; return nil }}))
	contacts := e.Contacts()
	batch, err := contacts.CreateMany(ctx, []crm.Contact{
		{FirstName: "Ada", Email: "ada@example.com"},
		{FirstName: "Ada", Email: "ada+b@example.com"},
		{FirstName: "Grace", Email: "grace@example.com"},
	})
	require.NoError(t, err)
	_, err = contacts.Search(ctx, "ada", crm.SearchOptions{}) // the batch is indexed
	require.NoError(t, err)
	grace := batch[2]
	grace.Title = "Rear Admiral"
	_, err = contacts.Update(ctx, grace) // delivered after the suspicions
	require.NoError(t, err)
	var got []crm.Event
	for len(got) == 0 || got[len(got)-1].Type != "contact.updated" {
		select {
		case ev := <-events:
			got = append(got, ev)
		case <-time.After(10 * time.Second):
			t.Fatalf("events so far: %v", got)
		}
	}
	require.Len(t, got, 2)
	assert.Equal(t, "contact.duplicate_suspected", got[0].Type)
	assert.Equal(t, batch[1].ID, got[0].ID)
	assert.Contains(t, string(got[0].Data), batch[0].ID)
	assert.ElementsMatch(t, []string{batch[0].ID, batch[1].ID}, searchIDs(t, contacts, "ada"))
}

// searchIDs returns the IDs of the contacts a search finds.
func searchIDs(t *testing.T, contacts *crm.Records[crm.Contact], q string) []string {
	t.Helper()
	page, err := contacts.Search(context.Background(), q, crm.SearchOptions{})
	require.NoError(t, err)
	var ids []string
	for _, c := range page.Items {
		ids = append(ids, c.ID)
	}
	return ids
}
