package crm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/memory"
)

// snapshot returns every stored record and event of a tenant, for
// "nothing changed" assertions.
func snapshot(t *testing.T, st storage.Store, tenant string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	require.NoError(t, st.View(ctx, tenant, func(tx storage.ReadTx) error {
		for _, coll := range []string{"contacts", "accounts", "deals", "leads", "cases", "contracts", "activities", "interactions", "timeline", "notices", "pipelines", "pipeline_versions", "products", "orders", "erasures", "dead_letters"} {
			p, err := tx.Scan(ctx, coll, storage.Query{Limit: storage.MaxScanLimit})
			if err != nil {
				return err
			}
			for _, r := range p.Records {
				out = append(out, fmt.Sprintf("%s/%s v%d %s", coll, r.ID, r.Version, r.Body))
			}
		}
		return nil
	}))
	evs, err := st.ReadOutbox(ctx, "snapshot", storage.MaxScanLimit)
	require.NoError(t, err)
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("event %d %s %s", ev.Seq, ev.Type, ev.RecordID))
	}
	return out
}

func TestContactLifecycle(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	contacts := env.engine.Contacts()

	c, err := contacts.Create(ctx, crm.Contact{
		Meta:      crm.Meta{Owner: "u-7", Tags: []string{" vip ", "newsletter", "vip"}, Custom: map[string]any{"shoe_size": 42}},
		FirstName: " Ada ", LastName: "Lovelace", Email: " Ada@Example.COM ", Phone: "+44 (20) 7946-0958",
	})
	require.NoError(t, err)
	assert.Len(t, c.ID, 36, "a UUID")
	assert.Equal(t, "default", c.Tenant)
	assert.Equal(t, uint64(1), c.Version)
	assert.Equal(t, env.clock.Now(), c.CreatedAt)
	assert.Equal(t, c.CreatedAt, c.UpdatedAt)
	assert.Equal(t, "Ada", c.FirstName)
	assert.Equal(t, "ada@example.com", c.Email)
	assert.Equal(t, "+442079460958", c.Phone)
	assert.Equal(t, []string{"vip", "newsletter"}, c.Tags)
	assert.Equal(t, "Ada Lovelace", c.Name())

	got, err := contacts.Get(ctx, c.ID)
	require.NoError(t, err)
	assert.Equal(t, c.Email, got.Email)
	assert.Equal(t, json.Number("42"), got.Custom["shoe_size"], "custom numbers come back exact, as json.Number")

	env.clock.Advance(time.Hour)
	got.Title = "Analyst"
	got.Tags = append(got.Tags, "b2b")
	upd, err := contacts.Update(ctx, got)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), upd.Version)
	assert.Equal(t, c.CreatedAt, upd.CreatedAt, "creation time never changes")
	assert.Equal(t, env.clock.Now(), upd.UpdatedAt)

	// An update from the stale version fails and changes nothing.
	stale := got
	stale.Title = "CEO"
	before := snapshot(t, env.store, "default")
	_, err = contacts.Update(ctx, stale)
	require.ErrorIs(t, err, crm.ErrConflict)
	assert.Equal(t, before, snapshot(t, env.store, "default"))

	// An update that changes nothing writes nothing.
	same, err := contacts.Update(ctx, upd)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), same.Version)
	assert.Equal(t, before, snapshot(t, env.store, "default"))

	// Tenant, creation time and ID cannot be changed through Update.
	sneaky := upd
	sneaky.Tenant, sneaky.CreatedAt = "other", time.Time{}
	sneaky.LastName = "King"
	res, err := contacts.Update(ctx, sneaky)
	require.NoError(t, err)
	assert.Equal(t, "default", res.Tenant)
	assert.Equal(t, c.CreatedAt, res.CreatedAt)

	require.NoError(t, contacts.Delete(ctx, c.ID))
	_, err = contacts.Get(ctx, c.ID)
	require.ErrorIs(t, err, crm.ErrNotFound)
	require.ErrorIs(t, contacts.Delete(ctx, c.ID), crm.ErrNotFound)
	_, err = contacts.Update(ctx, res)
	require.ErrorIs(t, err, crm.ErrNotFound)
}

func TestContactValidation(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	contacts := env.engine.Contacts()
	existing, err := contacts.Create(ctx, crm.Contact{FirstName: "Existing", Email: "taken@example.com"})
	require.NoError(t, err)
	before := snapshot(t, env.store, "default")

	cases := []struct {
		name   string
		c      crm.Contact
		fields []string
	}{
		{"no name and no email", crm.Contact{Title: "x"}, []string{"name"}},
		{"bad email", crm.Contact{Email: "not-an-email"}, []string{"email"}},
		{"email with display name", crm.Contact{FirstName: "A", Email: "Ada <ada@example.com>"}, []string{"email"}},
		{"email without domain dot", crm.Contact{FirstName: "A", Email: "ada@localhost"}, []string{"email"}},
		{"phone with letters", crm.Contact{FirstName: "A", Phone: "call me"}, []string{"phone"}},
		{"phone too short", crm.Contact{FirstName: "A", Phone: "123"}, []string{"phone"}},
		{"phone too long", crm.Contact{FirstName: "A", Phone: "+1234567890123456"}, []string{"phone"}},
		{"name too long", crm.Contact{FirstName: strings.Repeat("a", crm.MaxTextLen+1)}, []string{"first_name"}},
		{"control character", crm.Contact{FirstName: "A\x07"}, []string{"first_name"}},
		{"invalid UTF-8", crm.Contact{LastName: "\xff\xfe"}, []string{"last_name"}},
		{"missing account", crm.Contact{FirstName: "A", AccountID: "no-such-account"}, []string{"account_id"}},
		{"empty tag", crm.Contact{FirstName: "A", Meta: crm.Meta{Tags: []string{"ok", " "}}}, []string{"tags"}},
		{"too many tags", crm.Contact{FirstName: "A", Meta: crm.Meta{Tags: manyTags(crm.MaxTags + 1)}}, []string{"tags"}},
		{"long tag", crm.Contact{FirstName: "A", Meta: crm.Meta{Tags: []string{strings.Repeat("t", crm.MaxTagLen+1)}}}, []string{"tags"}},
		{"bad custom key", crm.Contact{FirstName: "A", Meta: crm.Meta{Custom: map[string]any{"Bad Key": 1}}}, []string{"custom.Bad Key"}},
		{"unencodable custom value", crm.Contact{FirstName: "A", Meta: crm.Meta{Custom: map[string]any{"f": func() {}}}}, []string{"custom"}},
		{"owner with newline", crm.Contact{FirstName: "A", Meta: crm.Meta{Owner: "u\n1"}}, []string{"owner"}},
		{"over-long ID", crm.Contact{FirstName: "A", Meta: crm.Meta{ID: strings.Repeat("i", storage.MaxIDLen+1)}}, []string{"id"}},
		{"version on create", crm.Contact{FirstName: "A", Meta: crm.Meta{Version: 3}}, []string{"version"}},
		{"duplicate email", crm.Contact{FirstName: "B", Email: "TAKEN@example.com"}, []string{"email"}},
		{"oversize record", crm.Contact{FirstName: "A", Meta: crm.Meta{Custom: map[string]any{"blob": strings.Repeat("x", storage.MaxBodySize)}}}, []string{"record"}},
		{"several at once", crm.Contact{Email: "bad", Phone: "x", Title: strings.Repeat("t", 500)}, []string{"email", "phone", "title"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := contacts.Create(ctx, c.c)
			var ve *crm.ValidationError
			require.ErrorAs(t, err, &ve)
			assert.ErrorIs(t, err, crm.ErrInvalid)
			assert.Equal(t, "contact", ve.Entity)
			var got []string
			for _, f := range ve.Fields {
				got = append(got, f.Field)
				assert.NotEmpty(t, f.Message)
			}
			assert.ElementsMatch(t, c.fields, got, "error: %v", err)
			assert.Equal(t, before, snapshot(t, env.store, "default"), "a rejected create wrote something")
		})
	}

	t.Run("duplicate email is also ErrExists", func(t *testing.T) {
		_, err := contacts.Create(ctx, crm.Contact{Email: "taken@example.com"})
		require.ErrorIs(t, err, crm.ErrExists)
		var ve *crm.ValidationError
		require.ErrorAs(t, err, &ve)
		f, ok := ve.Field("email")
		require.True(t, ok)
		assert.Contains(t, f.Message, existing.ID)
	})

	t.Run("invalid update changes nothing", func(t *testing.T) {
		bad := existing
		bad.Email = "broken"
		_, err := contacts.Update(ctx, bad)
		var ve *crm.ValidationError
		require.ErrorAs(t, err, &ve)
		_, err = contacts.Update(ctx, crm.Contact{FirstName: "no id"})
		require.ErrorAs(t, err, &ve)
		assert.Equal(t, before, snapshot(t, env.store, "default"))
	})

	t.Run("caller-chosen ID taken", func(t *testing.T) {
		_, err := contacts.Create(ctx, crm.Contact{FirstName: "A", Meta: crm.Meta{ID: existing.ID}})
		require.ErrorIs(t, err, crm.ErrExists)
	})

	t.Run("bad IDs on read", func(t *testing.T) {
		_, err := contacts.Get(ctx, "")
		require.ErrorIs(t, err, crm.ErrInvalid)
		_, err = contacts.Get(ctx, strings.Repeat("x", 200))
		require.ErrorIs(t, err, crm.ErrInvalid)
		require.ErrorIs(t, contacts.Delete(ctx, "a\x00b"), crm.ErrInvalid)
	})

	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := contacts.Create(cctx, crm.Contact{FirstName: "A"})
		require.ErrorIs(t, err, context.Canceled)
		_, err = contacts.Get(cctx, existing.ID)
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, before, snapshot(t, env.store, "default"))
	})

	t.Run("bad tenant", func(t *testing.T) {
		_, err := env.engine.Tenant("").Contacts().Create(ctx, crm.Contact{FirstName: "A"})
		require.ErrorIs(t, err, crm.ErrInvalid)
		_, err = env.engine.Tenant(strings.Repeat("t", 300)).Contacts().Get(ctx, existing.ID)
		require.ErrorIs(t, err, crm.ErrInvalid)
	})
}

func TestCustomNumbersStayExact(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	const big = int64(1234567890123456789)
	c, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "A", Meta: crm.Meta{Custom: map[string]any{"ext": big}}})
	require.NoError(t, err)
	got, err := env.engine.Contacts().Get(ctx, c.ID)
	require.NoError(t, err)
	got.LastName = "B"
	upd, err := env.engine.Contacts().Update(ctx, got)
	require.NoError(t, err)
	again, err := env.engine.Contacts().Get(ctx, upd.ID)
	require.NoError(t, err)
	n, ok := again.Custom["ext"].(json.Number)
	require.True(t, ok, "%T", again.Custom["ext"])
	v, err := n.Int64()
	require.NoError(t, err)
	assert.Equal(t, big, v)
}

func manyTags(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("tag%d", i)
	}
	return out
}

func TestCreateManyIsAllOrNothing(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	contacts := env.engine.Contacts()
	before := snapshot(t, env.store, "default")
	_, err := contacts.CreateMany(ctx, []crm.Contact{
		{FirstName: "A", Email: "a@example.com"},
		{FirstName: "B", Email: "b@example.com"},
		{FirstName: "C", Email: "a@example.com"}, // duplicate within the batch
	})
	require.ErrorIs(t, err, crm.ErrExists)
	assert.Contains(t, err.Error(), "record 2 of 3")
	assert.Equal(t, before, snapshot(t, env.store, "default"))

	out, err := contacts.CreateMany(ctx, []crm.Contact{{FirstName: "A"}, {FirstName: "B"}})
	require.NoError(t, err)
	require.Len(t, out, 2)
	assert.Less(t, out[0].ID, out[1].ID, "UUIDv7 IDs sort by creation")
}

func TestTenantIsolation(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	acme, globex := env.engine.Tenant("acme"), env.engine.Tenant("globex")
	a, err := acme.Contacts().Create(ctx, crm.Contact{FirstName: "A", Email: "same@example.com"})
	require.NoError(t, err)
	assert.Equal(t, "acme", a.Tenant)
	_, err = globex.Contacts().Create(ctx, crm.Contact{FirstName: "G", Email: "same@example.com"})
	require.NoError(t, err, "uniqueness is per tenant")

	_, err = globex.Contacts().Get(ctx, a.ID)
	require.ErrorIs(t, err, crm.ErrNotFound)
	require.ErrorIs(t, globex.Contacts().Delete(ctx, a.ID), crm.ErrNotFound)
	p, err := env.engine.Contacts().List(ctx, crm.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, p.Items, "the default tenant sees neither")

	// A reference to another tenant's account does not resolve.
	acc, err := acme.Accounts().Create(ctx, crm.Account{Name: "Acme"})
	require.NoError(t, err)
	_, err = globex.Contacts().Create(ctx, crm.Contact{FirstName: "X", AccountID: acc.ID})
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	_, ok := ve.Field("account_id")
	assert.True(t, ok)
	assert.Equal(t, "acme", acme.ID())
}

func TestListByIndexWithPagination(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	contacts := env.engine.Contacts()
	var vip []string
	for i := range 25 {
		tags := []string{"all"}
		if i%3 == 0 {
			tags = append(tags, "vip")
		}
		c, err := contacts.Create(ctx, crm.Contact{FirstName: fmt.Sprint("C", i), Meta: crm.Meta{Owner: fmt.Sprint("u", i%2), Tags: tags}})
		require.NoError(t, err)
		if i%3 == 0 {
			vip = append(vip, c.ID)
		}
	}
	var got []string
	opts := crm.ListOptions{By: "tag", Value: "vip", Limit: 4}
	for {
		p, err := contacts.List(ctx, opts)
		require.NoError(t, err)
		for _, c := range p.Items {
			got = append(got, c.ID)
			assert.Contains(t, c.Tags, "vip")
		}
		if p.Next == "" {
			break
		}
		opts.Cursor = p.Next
	}
	assert.Equal(t, vip, got)

	p, err := contacts.List(ctx, crm.ListOptions{By: "owner", Value: "u1", Limit: 100})
	require.NoError(t, err)
	assert.Len(t, p.Items, 12)
	p, err = contacts.List(ctx, crm.ListOptions{Limit: 3, Reverse: true})
	require.NoError(t, err)
	assert.Equal(t, "C24", p.Items[0].FirstName, "newest first")

	_, err = contacts.List(ctx, crm.ListOptions{By: "shoe_size"})
	require.ErrorIs(t, err, storage.ErrUnknownIndex)
	_, err = contacts.List(ctx, crm.ListOptions{Value: "x"})
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = contacts.List(ctx, crm.ListOptions{Limit: -1})
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = contacts.List(ctx, crm.ListOptions{Cursor: "!!"})
	require.ErrorIs(t, err, crm.ErrInvalid)
}

func TestPhoneNumbersInE164(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	e, err := crm.Open(ctx, crm.Options{Store: st, PhoneRegion: "GB"})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	for in, want := range map[string]string{
		"020 7946 0958":      "+442079460958",
		"+44 (20) 7946-0958": "+442079460958",
		"+33 1 23 45 67 89":  "+33123456789",
	} {
		c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "P", Phone: in})
		require.NoError(t, err, in)
		assert.Equal(t, want, c.Phone, in)
	}
	l, err := e.Leads().Create(ctx, crm.Lead{FirstName: "L", Phone: "07700 900123"})
	require.NoError(t, err)
	assert.Equal(t, "+447700900123", l.Phone)
	_, err = e.Contacts().Create(ctx, crm.Contact{FirstName: "P", Phone: "12"})
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	_, ok := ve.Field("phone")
	assert.True(t, ok)
	_, err = crm.Open(ctx, crm.Options{Store: st, PhoneRegion: "Narnia"})
	require.ErrorIs(t, err, crm.ErrInvalid)
}
