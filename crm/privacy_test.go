package crm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/memory"
)

var errInjected = errors.New("injected failure")

// faultyStore fails every Put to one collection while armed, to check
// that multi-record operations are atomic, and the next redactConflicts
// calls of RedactEvents with ErrConflict, as PostgreSQL does when events
// were numbered meanwhile.
type faultyStore struct {
	storage.Store
	failOn          string
	armed           atomic.Bool
	redactConflicts atomic.Int32
	redacts         atomic.Int32 // calls of RedactEvents
	// reads counts the Gets of the record watch names.
	watch atomic.Value // string
	reads atomic.Int32
}

func (f *faultyStore) Update(ctx context.Context, tenant string, fn func(storage.Tx) error) error {
	return f.Store.Update(ctx, tenant, func(tx storage.Tx) error { return fn(&faultyTx{Tx: tx, f: f}) })
}

type faultyTx struct {
	storage.Tx
	f *faultyStore
}

func (t *faultyTx) Put(ctx context.Context, coll string, rec storage.Record) (storage.Record, error) {
	if t.f.armed.Load() && coll == t.f.failOn {
		return storage.Record{}, errInjected
	}
	return t.Tx.Put(ctx, coll, rec)
}

func (t *faultyTx) Get(ctx context.Context, coll, id string) (storage.Record, error) {
	if w, _ := t.f.watch.Load().(string); w == id {
		t.f.reads.Add(1)
	}
	return t.Tx.Get(ctx, coll, id)
}

func (t *faultyTx) RedactEvents(ctx context.Context, coll string, ids []string, body []byte) (int, error) {
	t.f.redacts.Add(1)
	if t.f.redactConflicts.Add(-1) >= 0 {
		return 0, fmt.Errorf("%w: injected", storage.ErrConflict)
	}
	return t.Tx.RedactEvents(ctx, coll, ids, body)
}

// An erasure that meets a conflict runs again, up to a limit; one based
// on a version the contact is no longer at does not.
func TestEraseContactRetriesConflicts(t *testing.T) {
	st := &faultyStore{Store: memory.New()}
	t.Cleanup(func() { require.NoError(t, st.Store.Close()) })
	ctx := context.Background()
	e, err := crm.Open(ctx, crm.Options{Store: st, Clock: newClock()})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	create := func(email string) crm.Contact {
		c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Ann", Email: email})
		require.NoError(t, err)
		return c
	}
	erased := func(id string) bool {
		c, err := e.Contacts().Get(ctx, id)
		require.NoError(t, err)
		return !c.ErasedAt.IsZero()
	}

	ann := create("ann@example.com")
	st.redactConflicts.Store(2)
	_, err = e.Default().EraseContact(ctx, ann.ID, crm.ChangeOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(3), st.redacts.Load(), "two conflicts, then the erasure")
	assert.True(t, erased(ann.ID))

	bob := create("bob@example.com")
	st.redacts.Store(0)
	st.redactConflicts.Store(100)
	_, err = e.Default().EraseContact(ctx, bob.ID, crm.ChangeOptions{})
	require.ErrorIs(t, err, crm.ErrConflict)
	assert.Equal(t, int32(6), st.redacts.Load(), "one try and five more")
	assert.False(t, erased(bob.ID), "nothing of a failed erasure is kept")

	st.redactConflicts.Store(0)
	st.watch.Store(bob.ID)
	_, err = e.Default().EraseContact(ctx, bob.ID, crm.ChangeOptions{Version: bob.Version + 1})
	require.ErrorIs(t, err, crm.ErrConflict)
	assert.Equal(t, int32(1), st.reads.Load(), "a stale version is not tried again")
	assert.False(t, erased(bob.ID))
}

// dump returns every stored record and outbox event of a tenant as text.
func dump(t *testing.T, st storage.Store) string {
	t.Helper()
	var b strings.Builder
	for _, line := range snapshot(t, st, "default") {
		b.WriteString(line + "\n")
	}
	evs, err := st.ReadOutbox(context.Background(), "dump", 10000)
	require.NoError(t, err)
	for _, ev := range evs {
		b.WriteString(ev.Type + " " + ev.RecordID + " " + string(ev.Body) + "\n")
	}
	return b.String()
}

func TestExportAndEraseContact(t *testing.T) {
	st := &faultyStore{Store: memory.New(), failOn: "erasures"}
	t.Cleanup(func() { require.NoError(t, st.Store.Close()) })
	clock := newClock()
	ctx := context.Background()
	e, err := crm.Open(ctx, crm.Options{Store: st, Clock: clock})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })

	lead, err := e.Leads().Create(ctx, crm.Lead{FirstName: "Hank", LastName: "Scorpio", Email: "hank@globex.example", Company: "Globex"})
	require.NoError(t, err)
	conv, err := e.Leads().Convert(ctx, lead.ID, crm.ConvertOptions{})
	require.NoError(t, err)
	hank := conv.Contact
	hank.Phone, hank.Tags, hank.Custom = "+1 555 0100", []string{"volcano"}, map[string]any{"hobby": "doomsday devices"}
	hank, err = e.Contacts().Update(ctx, hank)
	require.NoError(t, err)
	_, err = e.Interactions().Create(ctx, crm.Interaction{Channel: "phone", Summary: "Hank asked about the hammock district",
		Body: "Call Hank Scorpio back on +1 555 0100", Links: crm.Links{ContactID: hank.ID, DealID: conv.Deal.ID}})
	require.NoError(t, err)
	_, err = e.Activities().Create(ctx, crm.Activity{Type: crm.Call, Subject: "Call Hank Scorpio", Links: crm.Links{ContactID: hank.ID}})
	require.NoError(t, err)
	order, err := e.Orders().Create(ctx, crm.Order{Number: "1", ContactID: hank.ID, OrderedAt: clock.Now(), Currency: "USD",
		Lines: []crm.OrderLine{{SKU: "HAMMOCK", Quantity: 2, UnitPrice: crm.Money{Amount: 5000}}}})
	require.NoError(t, err)
	_, err = e.Contacts().Create(ctx, crm.Contact{FirstName: "Homer", Email: "homer@globex.example"})
	require.NoError(t, err)
	// Hank's other traces: a duplicate merged into him, a survey comment,
	// a second lead converted into him with a call logged on the lead.
	twin, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Hank", LastName: "Scorpio", Email: "h.scorpio@globex.example", Phone: "+1 555 0199"})
	require.NoError(t, err)
	_, err = e.Default().MergeContacts(ctx, hank.ID, twin.ID, crm.MergeOptions{})
	require.NoError(t, err)
	hank, err = e.Contacts().Get(ctx, hank.ID)
	require.NoError(t, err)
	nine := 9
	_, err = e.Default().SurveyResponses().Create(ctx, crm.SurveyResponse{Survey: "nps", ContactID: hank.ID, NPS: &nine, Comment: "Scorpio loves hammocks"})
	require.NoError(t, err)
	lead2, err := e.Leads().Create(ctx, crm.Lead{FirstName: "Hank", LastName: "Scorpio", Phone: "+1 555 0177"})
	require.NoError(t, err)
	_, err = e.Interactions().Create(ctx, crm.Interaction{Channel: "meeting", Summary: "Met Scorpio at the volcano", Links: crm.Links{LeadID: lead2.ID}})
	require.NoError(t, err)
	_, err = e.Leads().Convert(ctx, lead2.ID, crm.ConvertOptions{ContactID: hank.ID, NoDeal: true})
	require.NoError(t, err)

	// Art. 20: everything about Hank, as JSON.
	data, err := e.ExportPersonalData(ctx, hank.ID)
	require.NoError(t, err)
	raw, err := json.Marshal(data)
	require.NoError(t, err)
	for _, want := range []string{"hank@globex.example", "Scorpio", "+15550100", "hammock district", "doomsday devices", "HAMMOCK"} {
		assert.Contains(t, string(raw), want)
	}
	assert.NotContains(t, string(raw), "homer")
	require.NotNil(t, data.Lead)
	assert.Len(t, data.OtherLeads, 1)
	assert.Len(t, data.Surveys, 1)
	assert.Len(t, data.Deals, 1)
	assert.Len(t, data.Orders, 1)
	assert.Len(t, data.Interactions, 1)
	assert.Len(t, data.Activities, 1)
	assert.NotEmpty(t, data.Timeline)

	// Art. 17: a failure at the last step leaves everything as it was.
	before := dump(t, st)
	st.armed.Store(true)
	_, err = e.EraseContact(ctx, hank.ID, crm.ChangeOptions{Actor: "dpo"})
	require.ErrorIs(t, err, errInjected)
	assert.Equal(t, before, dump(t, st))
	st.armed.Store(false)

	clock.Advance(time.Hour)
	erasure, err := e.EraseContact(ctx, hank.ID, crm.ChangeOptions{Actor: "dpo", Reason: "request 42"})
	require.NoError(t, err)
	assert.Positive(t, erasure.Events)
	assert.Equal(t, 2, erasure.Records["interactions"])
	assert.Equal(t, 2, erasure.Records["contacts"], "Hank and the twin merged into him")
	assert.Equal(t, 2, erasure.Records["leads"])
	assert.Equal(t, 1, erasure.Records["survey_responses"])

	// No trace of Hank's personal data anywhere: records, timeline, outbox.
	after := dump(t, st)
	for _, gone := range []string{"Hank", "hank@globex.example", "Scorpio", "15550100", "15550199", "15550177", "hammock", "doomsday", "volcano"} {
		assert.NotContains(t, after, gone)
	}
	found, err := e.Contacts().Search(ctx, "hank", crm.SearchOptions{})
	require.NoError(t, err)
	assert.Empty(t, found.Items, "the search index forgot Hank")
	// What aggregates need stays: the contact's ID, the order, the deal.
	got, err := e.Contacts().Get(ctx, hank.ID)
	require.NoError(t, err)
	assert.Equal(t, clock.Now(), got.ErasedAt)
	assert.Empty(t, got.Email)
	gotOrder, err := e.Orders().Get(ctx, order.ID)
	require.NoError(t, err)
	assert.Equal(t, order.Total, gotOrder.Total)
	assert.Equal(t, hank.ID, gotOrder.ContactID)
	_, err = e.Deals().Get(ctx, conv.Deal.ID)
	require.NoError(t, err)
	homer, err := e.Contacts().FindBy(ctx, "email", []string{"homer@globex.example"})
	require.NoError(t, err)
	assert.Contains(t, homer, "homer@globex.example", "other contacts are untouched")

	// The erasure is recorded, without the data; erased contacts stay erased.
	recorded, err := e.Default().Erasures(ctx, hank.ID)
	require.NoError(t, err)
	require.Len(t, recorded, 1)
	assert.Equal(t, "request 42", recorded[0].Reason)
	_, err = e.Contacts().Update(ctx, got)
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	_, err = e.EraseContact(ctx, hank.ID, crm.ChangeOptions{})
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = e.EraseContact(ctx, "missing", crm.ChangeOptions{})
	require.ErrorIs(t, err, crm.ErrNotFound)
	_, err = e.Contacts().Create(ctx, crm.Contact{FirstName: "X", ErasedAt: clock.Now()})
	require.ErrorAs(t, err, &ve)
}
