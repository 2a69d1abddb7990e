package crm

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/memory"
)

// The runner remembers the tenants it found without a set, so that their
// events cost it no read; a tenant's first set still takes up the events
// after it is saved.
func TestRunnerForgetsNoSetWhenSaved(t *testing.T) {
	ctx := context.Background()
	e, err := Open(ctx, Options{Store: memory.New()})
	require.NoError(t, err)
	defer e.Close()
	before, err := e.Contacts().Create(ctx, Contact{FirstName: "Before"})
	require.NoError(t, err)
	// The runner has handled (and acknowledged) the event: it found the
	// tenant without a set. Reading without acknowledging takes nothing
	// from it.
	require.Eventually(t, func() bool {
		evs, err := e.store.ReadOutbox(ctx, automationConsumer, 1)
		return err == nil && len(evs) == 0
	}, 10*time.Second, 5*time.Millisecond)

	set, err := automation.Load("tag.yaml", []byte(`
automations:
  - name: tag-new
    on: {event: contact.created}
    do:
      - tag: {add: [new]}
`), e.clock.Now)
	require.NoError(t, err)
	require.NoError(t, e.Automations().Save(ctx, set))
	after, err := e.Contacts().Create(ctx, Contact{FirstName: "After"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		c, err := e.Contacts().Get(ctx, after.ID)
		return err == nil && slices.Contains(c.Tags, "new")
	}, 10*time.Second, 5*time.Millisecond, "the first set's automation ran")
	c, err := e.Contacts().Get(ctx, before.ID)
	require.NoError(t, err)
	assert.Empty(t, c.Tags)
}

// automateBatch skips the tenants of noSet, adds those it finds without a
// set and drops those whose set is saved in the batch.
func TestAutomateBatchNoSet(t *testing.T) {
	ctx := context.Background()
	e, err := Open(ctx, Options{Store: memory.New()})
	require.NoError(t, err)
	defer e.Close()
	ev := func(seq uint64, tenant, typ string) storage.Event {
		return storage.Event{Seq: seq, Tenant: tenant, Type: typ, Collection: contactsCollection, RecordID: "x", Time: time.Now()}
	}
	noSet := map[string]bool{"b": true}
	require.NoError(t, e.automateBatch(ctx, []storage.Event{ev(1, "a", "contact.created"), ev(2, "b", "automation.saved"), ev(3, "c", "contact.created")}, noSet))
	assert.Equal(t, map[string]bool{"a": true, "c": true}, noSet, "b's set was saved; a and c have none")
}
