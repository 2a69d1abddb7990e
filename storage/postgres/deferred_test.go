package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/postgres"
	"github.com/rapportcrm/rapport/storage/postgres/pgtest"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

func person(id, email string) storage.Record {
	return storage.Record{ID: id, Body: []byte(fmt.Sprintf(`{"email":%q,"tags":["a"],"address":{"city":"Oslo"}}`, email))}
}

// createEvent is a write's event, so that a test can see that a failed
// transaction wrote none.
func createEvent(id string) storage.Event {
	return storage.Event{Type: "person.created", Collection: "people", RecordID: id, Time: time.Now()}
}

// assertOnly checks that the people of tenant are exactly ids, each in
// the email and tag indexes, and that the outbox holds events events.
func assertOnly(t *testing.T, st *postgres.Store, tenant string, events uint64, ids ...string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, st.View(ctx, tenant, func(tx storage.ReadTx) error {
		pg, err := tx.Scan(ctx, "people", storage.Query{})
		require.NoError(t, err)
		var got []string
		for _, r := range pg.Records {
			got = append(got, r.ID)
		}
		assert.ElementsMatch(t, ids, got, "records")
		pg, err = tx.Scan(ctx, "people", storage.Query{Index: "tags", Equal: "a", KeysOnly: true})
		require.NoError(t, err)
		assert.Len(t, pg.Records, len(ids), "index entries")
		return nil
	}))
	head, err := st.OutboxHead(ctx)
	require.NoError(t, err)
	assert.Equal(t, events, head, "events")
}

// A deferred create is checked by the database at commit: an ID or a
// unique value that is taken fails the commit with the error Put would
// have returned, and the transaction writes nothing, its event included.
func TestDeferredCreate(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	for _, rls := range []bool{false, true} {
		t.Run(fmt.Sprintf("rls=%v", rls), func(t *testing.T) {
			st := open(t)
			if rls {
				st, _ = rlsStore(t)
			}
			require.NoError(t, st.Declare(ctx, storagetest.Collections()...))
			create := func(recs ...storage.Record) error {
				return st.Update(ctx, "t", func(tx storage.Tx) error {
					for _, r := range recs {
						got, err := tx.(storage.Deferrer).Create(ctx, "people", r)
						if err != nil {
							return err
						}
						assert.Equal(t, uint64(1), got.Version)
						if err := tx.Append(ctx, createEvent(r.ID)); err != nil {
							return err
						}
					}
					return nil
				})
			}
			require.NoError(t, create(person("ann", "ann@x"), person("bob", "bob@x")))
			assertOnly(t, st, "t", 2, "ann", "bob")

			// A taken ID, found at commit.
			err := create(person("cid", "cid@x"), person("ann", "other@x"))
			require.ErrorIs(t, err, storage.ErrExists)
			assert.Contains(t, err.Error(), `people "ann"`)
			assertOnly(t, st, "t", 2, "ann", "bob")

			// A taken unique value, found at commit: the UniqueError
			// names the holder.
			err = create(person("cid", "cid@x"), person("dan", "bob@x"))
			var ue *storage.UniqueError
			require.ErrorAs(t, err, &ue)
			assert.Equal(t, storage.UniqueError{Collection: "people", Index: "email", Value: "bob@x", ExistingID: "bob"}, *ue)
			assertOnly(t, st, "t", 2, "ann", "bob")

			// The same tenant's value is free in another tenant.
			require.NoError(t, st.Update(ctx, "u", func(tx storage.Tx) error {
				_, err := tx.(storage.Deferrer).Create(ctx, "people", person("dan", "bob@x"))
				return err
			}))
		})
	}
}

// Clashes among a transaction's own writes are found by Create at once,
// and the transaction goes on: what the database would not show once the
// transaction rolled back.
func TestDeferredCreateInTransaction(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	st := open(t)
	require.NoError(t, st.Declare(ctx, storagetest.Collections()...))
	err := st.Update(ctx, "t", func(tx storage.Tx) error {
		d := tx.(storage.Deferrer)
		_, err := d.Create(ctx, "people", person("ann", "ann@x"))
		require.NoError(t, err)
		_, err = d.Create(ctx, "people", person("ann", "new@x"))
		require.ErrorIs(t, err, storage.ErrExists, "an ID created before in the transaction")
		_, err = d.Create(ctx, "people", person("bob", "ann@x"))
		var ue *storage.UniqueError
		require.ErrorAs(t, err, &ue, "a value created before in the transaction")
		assert.Equal(t, "ann", ue.ExistingID)
		_, err = d.Create(ctx, "people", storage.Record{ID: "bad", Body: []byte(`[1]`)})
		require.ErrorIs(t, err, storage.ErrInvalid)
		_, err = d.Create(ctx, "people", storage.Record{ID: "v", Version: 3, Body: []byte(`{}`)})
		require.ErrorIs(t, err, storage.ErrInvalid)
		_, err = d.Create(ctx, "nowhere", person("x", "x@x"))
		require.ErrorIs(t, err, storage.ErrUnknownCollection)

		// A Put sees the deferred create.
		_, err = tx.Put(ctx, "people", person("cid", "ann@x"))
		require.ErrorAs(t, err, &ue)
		assert.Equal(t, "ann", ue.ExistingID)
		got, err := tx.Get(ctx, "people", "ann")
		require.NoError(t, err)
		assert.Equal(t, uint64(1), got.Version)
		// After a Put to the collection, Create checks at once (it is Put).
		_, err = tx.Put(ctx, "people", person("cid", "cid@x"))
		require.NoError(t, err)
		_, err = d.Create(ctx, "people", person("dan", "cid@x"))
		require.ErrorAs(t, err, &ue)
		assert.Equal(t, "cid", ue.ExistingID)
		_, err = d.Create(ctx, "people", person("dan", "dan@x"))
		return err
	})
	require.NoError(t, err)
	assertOnly(t, st, "t", 0, "ann", "cid", "dan")
}

// A concurrent transaction that takes a value between a deferred create
// and its commit makes the commit fail with the UniqueError naming it.
func TestDeferredCreateLosesRace(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	st := open(t)
	require.NoError(t, st.Declare(ctx, storagetest.Collections()...))
	err := st.Update(ctx, "t", func(tx storage.Tx) error {
		if _, err := tx.(storage.Deferrer).Create(ctx, "people", person("second", "same@x")); err != nil {
			return err
		}
		require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
			_, err := tx.Put(ctx, "people", person("first", "same@x"))
			return err
		}))
		return tx.Append(ctx, createEvent("second"))
	})
	var ue *storage.UniqueError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, "first", ue.ExistingID)
	assertOnly(t, st, "t", 0, "first")
}

// Expect fails the transaction, with nothing written, when the record is
// not at the expected version as the transaction sees it.
func TestExpect(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	for _, rls := range []bool{false, true} {
		t.Run(fmt.Sprintf("rls=%v", rls), func(t *testing.T) {
			st := open(t)
			if rls {
				st, _ = rlsStore(t)
			}
			require.NoError(t, st.Declare(ctx, storagetest.Collections()...))
			write := func(id string, expect uint64) error {
				return st.Update(ctx, "t", func(tx storage.Tx) error {
					if err := tx.(storage.Deferrer).Expect(ctx, "counters", "c", expect); err != nil {
						return err
					}
					if _, err := tx.(storage.Deferrer).Create(ctx, "people", person(id, id+"@x")); err != nil {
						return err
					}
					return tx.Append(ctx, createEvent(id))
				})
			}
			require.NoError(t, write("ann", 0), "c does not exist")
			require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
				_, err := tx.Put(ctx, "counters", storage.Record{ID: "c", Body: []byte(`{"n":1}`)})
				return err
			}))
			err := write("bob", 0)
			var ee *storage.ExpectError
			require.ErrorAs(t, err, &ee)
			assert.Equal(t, storage.ExpectError{Collection: "counters", ID: "c", Version: 0}, *ee)
			require.ErrorIs(t, err, storage.ErrConflict)
			require.NoError(t, write("bob", 1), "c is at version 1")
			err = write("cid", 2)
			require.ErrorAs(t, err, &ee)
			assert.Equal(t, uint64(2), ee.Version)
			assertOnly(t, st, "t", 2, "ann", "bob")

			// Another tenant's record of the same ID is not this one.
			require.NoError(t, st.Update(ctx, "u", func(tx storage.Tx) error {
				return tx.(storage.Deferrer).Expect(ctx, "counters", "c", 0)
			}))
			// Bad input is refused at once.
			require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
				require.ErrorIs(t, tx.(storage.Deferrer).Expect(ctx, "nowhere", "c", 0), storage.ErrUnknownCollection)
				require.ErrorIs(t, tx.(storage.Deferrer).Expect(ctx, "counters", "", 0), storage.ErrInvalid)
				return nil
			}))
		})
	}
}

// A Declare waits for a transaction whose deferred creates used the
// definitions before its declare lock was granted, so the records it
// creates are in the indexes as declared now.
func TestDeferredCreateBeforeDeclare(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	st := open(t)
	old := storage.Collection{Name: "people", Indexes: []storage.Index{{Name: "email", Field: "email", Unique: true}}}
	require.NoError(t, st.Declare(ctx, old))
	declared := make(chan error, 1)
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		if _, err := tx.(storage.Deferrer).Create(ctx, "people", person("ann", "ann@x")); err != nil {
			return err
		}
		// The Declare adds the tags and city indexes; without the wait it
		// would rebuild them before this record is committed, and the
		// record would be written by the old definitions.
		go func() { declared <- st.Declare(ctx, storagetest.Collections()[0]) }()
		select {
		case err := <-declared:
			t.Errorf("the Declare did not wait for the transaction (err %v)", err)
			declared <- err
		case <-time.After(300 * time.Millisecond):
		}
		return nil
	}))
	require.NoError(t, <-declared)
	require.NoError(t, st.View(ctx, "t", func(tx storage.ReadTx) error {
		pg, err := tx.Scan(ctx, "people", storage.Query{Index: "city", Equal: "Oslo"})
		require.NoError(t, err)
		require.Len(t, pg.Records, 1)
		assert.Equal(t, "ann", pg.Records[0].ID)
		return nil
	}))
}

// An engine create on PostgreSQL goes in one round trip: the contact is
// created unchecked and the custom-field schema comes from the engine's
// cache, checked at commit. A taken email is still a *ValidationError
// naming the field, with nothing written; a schema another process saved
// meanwhile is read again and applies.
func TestEngineDeferredCreate(t *testing.T) {
	ctx := context.Background()
	st, e := openEngine(t)
	st2, err := postgres.Open(ctx, server.URL, &postgres.Options{Schema: st.Schema()})
	require.NoError(t, err)
	other, err := crm.Open(ctx, crm.Options{Store: st2})
	require.NoError(t, err)
	defer func() {
		require.NoError(t, other.Close())
		require.NoError(t, st2.Close())
	}()

	ada, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", Email: "ada@example.com"})
	require.NoError(t, err)
	head, err := st.OutboxHead(ctx)
	require.NoError(t, err)

	_, err = e.Contacts().Create(ctx, crm.Contact{FirstName: "Imposter", Email: "ada@example.com"})
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Fields, 1)
	assert.Equal(t, "email", ve.Fields[0].Field)
	assert.Contains(t, ve.Fields[0].Message, ada.ID)
	var ue *storage.UniqueError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, ada.ID, ue.ExistingID)
	page, err := e.Contacts().List(ctx, crm.ListOptions{})
	require.NoError(t, err)
	require.Len(t, page.Items, 1, "nothing written")
	after, err := st.OutboxHead(ctx)
	require.NoError(t, err)
	assert.Equal(t, head, after, "no event")

	// An order's number, taken, fails the statement that writes its
	// timeline entry: the same *ValidationError.
	order := crm.Order{Number: "1", ContactID: ada.ID, OrderedAt: time.Now(), Currency: "USD",
		Lines: []crm.OrderLine{{SKU: "HAMMOCK", Quantity: 1, UnitPrice: crm.Money{Amount: 5000}}}}
	first, err := e.Orders().Create(ctx, order)
	require.NoError(t, err)
	_, err = e.Orders().Create(ctx, order)
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Fields, 1)
	assert.Equal(t, "number", ve.Fields[0].Field)
	assert.Contains(t, ve.Fields[0].Message, first.ID)

	// Another process gives contacts a schema: this engine, which has
	// cached "no schema" (any custom field goes), must apply it.
	tier := crm.FieldDef{Key: "tier", Type: crm.FieldString}
	require.NoError(t, other.Schemas().Save(ctx, &crm.Schema{Entity: "contact", Fields: []crm.FieldDef{tier}}))
	_, err = e.Contacts().Create(ctx, crm.Contact{FirstName: "Bob", Meta: crm.Meta{Custom: map[string]any{"color": "red"}}})
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "custom.color", ve.Fields[0].Field)
	// And a default it gives the field later.
	tier.Default = "gold"
	require.NoError(t, other.Schemas().Save(ctx, &crm.Schema{Entity: "contact", Fields: []crm.FieldDef{tier}}))
	bob, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Bob"})
	require.NoError(t, err)
	assert.Equal(t, "gold", bob.Custom["tier"])
	got, err := other.Contacts().Get(ctx, bob.ID)
	require.NoError(t, err)
	assert.Equal(t, "gold", got.Custom["tier"])

	// An update takes the schema from the cache too: a field the other
	// process adds now is known.
	color := crm.FieldDef{Key: "color", Type: crm.FieldString}
	require.NoError(t, other.Schemas().Save(ctx, &crm.Schema{Entity: "contact", Fields: []crm.FieldDef{tier, color}}))
	bob.Custom["color"] = "red"
	bob, err = e.Contacts().Update(ctx, bob)
	require.NoError(t, err)
	assert.Equal(t, "red", bob.Custom["color"])
	assert.Equal(t, uint64(2), bob.Version)
	// An update to a taken email is found at commit: the same
	// *ValidationError, nothing written.
	bob.Email = "ada@example.com"
	_, err = e.Contacts().Update(ctx, bob)
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Fields, 1)
	assert.Equal(t, "email", ve.Fields[0].Field)
	assert.Contains(t, ve.Fields[0].Message, ada.ID)
	got, err = e.Contacts().Get(ctx, bob.ID)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), got.Version)
	assert.Empty(t, got.Email)
	// And an update based on an old version is a conflict.
	bob.Email = "bob@example.com"
	got.Title = "Dr"
	_, err = e.Contacts().Update(ctx, got)
	require.NoError(t, err)
	_, err = e.Contacts().Update(ctx, bob)
	require.ErrorIs(t, err, crm.ErrConflict)

	// And a create: a field the cached schema lacks is no error when the
	// stored one has it.
	size := crm.FieldDef{Key: "size", Type: crm.FieldString}
	require.NoError(t, other.Schemas().Save(ctx, &crm.Schema{Entity: "contact", Fields: []crm.FieldDef{tier, color, size}}))
	cid, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Cid", Meta: crm.Meta{Custom: map[string]any{"size": "XL"}}})
	require.NoError(t, err)
	assert.Equal(t, "XL", cid.Custom["size"])
}

// While a Declare waits for a transaction with deferred creates, other
// transactions, even one nested in it, create records without waiting
// (they check as Put does), and every record ends up in the indexes as
// declared now.
func TestCreateWhileDeclareWaits(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	st := open(t)
	old := storage.Collection{Name: "people", Indexes: []storage.Index{{Name: "email", Field: "email", Unique: true}}}
	require.NoError(t, st.Declare(ctx, old))
	declared := make(chan error, 1)
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		if _, err := tx.(storage.Deferrer).Create(ctx, "people", person("ann", "ann@x")); err != nil {
			return err
		}
		go func() { declared <- st.Declare(ctx, storagetest.Collections()[0]) }()
		time.Sleep(200 * time.Millisecond) // the Declare waits for this transaction
		create := func(id string) error {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return st.Update(wctx, "t", func(tx storage.Tx) error {
				_, err := tx.(storage.Deferrer).Create(wctx, "people", person(id, id+"@x"))
				return err
			})
		}
		require.NoError(t, create("bob"), "nested")
		done := make(chan error, 1)
		go func() { done <- create("cid") }()
		require.NoError(t, <-done, "in another goroutine")
		return nil
	}))
	require.NoError(t, <-declared)
	require.NoError(t, st.View(ctx, "t", func(tx storage.ReadTx) error {
		pg, err := tx.Scan(ctx, "people", storage.Query{Index: "city", Equal: "Oslo"})
		require.NoError(t, err)
		assert.Len(t, pg.Records, 3)
		return nil
	}))
}

// A Replace of a record the transaction read goes unchecked: the index
// entries move, a unique value taken is a *UniqueError at commit and a
// concurrent change an ErrConflict, with nothing written either way.
func TestDeferredReplace(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	st := open(t)
	require.NoError(t, st.Declare(ctx, storagetest.Collections()...))
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		for _, r := range []storage.Record{person("ann", "ann@x"), person("bob", "bob@x")} {
			if _, err := tx.Put(ctx, "people", r); err != nil {
				return err
			}
		}
		return nil
	}))
	replace := func(id, body string, meanwhile func()) error {
		return st.Update(ctx, "t", func(tx storage.Tx) error {
			cur, err := tx.Get(ctx, "people", id)
			if err != nil {
				return err
			}
			got, err := tx.(storage.Deferrer).Replace(ctx, "people", storage.Record{ID: id, Version: cur.Version, Body: []byte(body)})
			if err != nil {
				return err
			}
			assert.Equal(t, cur.Version+1, got.Version)
			if meanwhile != nil {
				meanwhile()
			}
			return tx.Append(ctx, createEvent(id))
		})
	}
	email := func(id string) string {
		var rec storage.Record
		require.NoError(t, st.View(ctx, "t", func(tx storage.ReadTx) error {
			var err error
			rec, err = tx.Get(ctx, "people", id)
			return err
		}))
		return string(rec.Body)
	}
	scan := func(index, value string) []string {
		var ids []string
		require.NoError(t, st.View(ctx, "t", func(tx storage.ReadTx) error {
			pg, err := tx.Scan(ctx, "people", storage.Query{Index: index, Equal: value, KeysOnly: true})
			for _, r := range pg.Records {
				ids = append(ids, r.ID)
			}
			return err
		}))
		return ids
	}

	require.NoError(t, replace("ann", `{"email":"ann@y","tags":["b"],"address":{"city":"Bergen"}}`, nil))
	assert.Equal(t, []string{"ann"}, scan("email", "ann@y"))
	assert.Empty(t, scan("email", "ann@x"))
	assert.Equal(t, []string{"ann"}, scan("city", "Bergen"))
	assert.Equal(t, []string{"bob"}, scan("city", "Oslo"))

	// A value another record holds.
	err := replace("ann", `{"email":"bob@x"}`, nil)
	var ue *storage.UniqueError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, storage.UniqueError{Collection: "people", Index: "email", Value: "bob@x", ExistingID: "bob"}, *ue)
	assert.Contains(t, email("ann"), "ann@y")

	// The record changed by another transaction after this one read it.
	err = replace("ann", `{"email":"ann@z"}`, func() {
		// (A Replace that locked the row would make this wait.)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		require.NoError(t, st.Update(wctx, "t", func(tx storage.Tx) error {
			cur, err := tx.Get(wctx, "people", "ann")
			if err != nil {
				return err
			}
			_, err = tx.Put(wctx, "people", storage.Record{ID: "ann", Version: cur.Version, Body: []byte(`{"email":"ann@w"}`)})
			return err
		}))
	})
	require.ErrorIs(t, err, storage.ErrConflict)
	assert.Contains(t, email("ann"), "ann@w")
	assert.Equal(t, []string{"ann"}, scan("email", "ann@w"))
	head, err := st.OutboxHead(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), head, "only the first replace's event")

	// The body the transaction read may change in the caller's hands:
	// the index entries still move by the values stored.
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		cur, err := tx.Get(ctx, "people", "bob")
		if err != nil {
			return err
		}
		body := cur.Body
		copy(body, bytes.Replace(body, []byte("bob@x"), []byte("bob@y"), 1))
		_, err = tx.(storage.Deferrer).Replace(ctx, "people", storage.Record{ID: "bob", Version: cur.Version, Body: body})
		return err
	}))
	assert.Equal(t, []string{"bob"}, scan("email", "bob@y"))
	assert.Empty(t, scan("email", "bob@x"))
	// An unchecked update is of the row at the version read, or fails.
	err = st.Update(ctx, "t", func(tx storage.Tx) error {
		if _, err := tx.Get(ctx, "people", "bob"); err != nil {
			return err
		}
		postgres.SetSeenVersion(tx, "people", "bob", 9)
		_, err := tx.(storage.Deferrer).Replace(ctx, "people", storage.Record{ID: "bob", Version: 9, Body: []byte(`{"email":"bob@z"}`)})
		return err
	})
	var ee *storage.ExpectError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, []string{"bob"}, scan("email", "bob@y"))

	// Without a read, or at another version, Replace checks as Put does.
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		_, err := tx.(storage.Deferrer).Replace(ctx, "people", storage.Record{ID: "bob", Version: 7, Body: []byte(`{}`)})
		require.ErrorIs(t, err, storage.ErrConflict)
		_, err = tx.(storage.Deferrer).Replace(ctx, "people", storage.Record{ID: "bob", Body: []byte(`{}`)})
		require.ErrorIs(t, err, storage.ErrInvalid)
		// A value a deferred create of this transaction took.
		_, err = tx.(storage.Deferrer).Create(ctx, "people", person("cid", "cid@x"))
		require.NoError(t, err)
		cur, err := tx.Get(ctx, "people", "bob")
		require.NoError(t, err)
		_, err = tx.(storage.Deferrer).Replace(ctx, "people", storage.Record{ID: "bob", Version: cur.Version, Body: []byte(`{"email":"cid@x"}`)})
		require.ErrorAs(t, err, &ue)
		assert.Equal(t, "cid", ue.ExistingID)
		return nil
	}))
}

// In a collection without unique indexes, a deferred Replace leaves later
// creates and replaces there unchecked too (where values could be
// released and taken again, they check as Put does): a record changed by
// another transaction meanwhile fails the commit, and was not locked.
func TestDeferredReplacesWithoutUniqueIndex(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	st := open(t)
	require.NoError(t, st.Declare(ctx, storage.Collection{Name: "things", Indexes: []storage.Index{{Name: "tag", Field: "tag"}}}))
	thing := func(id, tag string) storage.Record {
		return storage.Record{ID: id, Body: []byte(fmt.Sprintf(`{"tag":%q}`, tag))}
	}
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		for _, id := range []string{"a", "c"} {
			if _, err := tx.Put(ctx, "things", thing(id, "old")); err != nil {
				return err
			}
		}
		return nil
	}))
	tagged := func(tag string) []string {
		var ids []string
		require.NoError(t, st.View(ctx, "t", func(tx storage.ReadTx) error {
			pg, err := tx.Scan(ctx, "things", storage.Query{Index: "tag", Equal: tag})
			for _, r := range pg.Records {
				ids = append(ids, r.ID)
			}
			return err
		}))
		return ids
	}
	write := func(meanwhile func()) error {
		return st.Update(ctx, "t", func(tx storage.Tx) error {
			d := tx.(storage.Deferrer)
			got, err := tx.(storage.MultiGetter).GetMany(ctx, "things", []string{"a", "c"})
			if err != nil {
				return err
			}
			a, c := got[0], got[1]
			a.Body, c.Body = thing("a", "new").Body, thing("c", "new").Body
			if _, err := d.Replace(ctx, "things", a); err != nil {
				return err
			}
			if _, err := d.Create(ctx, "things", thing("b", "new")); err != nil {
				return err
			}
			if _, err := d.Replace(ctx, "things", c); err != nil {
				return err
			}
			meanwhile()
			return nil
		})
	}
	// Another transaction changes c before this one commits. (A Replace
	// that locked c would make it wait.)
	err := write(func() {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		require.NoError(t, st.Update(wctx, "t", func(tx storage.Tx) error {
			cur, err := tx.Get(wctx, "things", "c")
			if err != nil {
				return err
			}
			_, err = tx.Put(wctx, "things", storage.Record{ID: "c", Version: cur.Version, Body: thing("c", "other").Body})
			return err
		}))
	})
	require.ErrorIs(t, err, storage.ErrConflict)
	assert.Equal(t, []string{"a"}, tagged("old"), "nothing of the failed transaction is written")
	assert.Equal(t, []string{"c"}, tagged("other"))

	require.NoError(t, write(func() {}))
	assert.Equal(t, []string{"a", "b", "c"}, tagged("new"))
	assert.Empty(t, tagged("old"))
	assert.Empty(t, tagged("other"))
}
