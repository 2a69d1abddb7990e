package crm_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
)

// TestCreateEachLeavesNothingOfBadRecords: a record too large for its
// events is refused before it is written, so CreateEach stores the others
// and nothing of it.
func TestCreateEachLeavesNothingOfBadRecords(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	huge := crm.Contact{FirstName: "Huge", Meta: crm.Meta{Custom: map[string]any{"blob": strings.Repeat("x", 1<<20-1000)}}}
	created, errs, err := env.engine.Contacts().CreateEach(ctx, []crm.Contact{{FirstName: "Ok"}, huge, {Email: "not an email"}})
	require.NoError(t, err)
	require.Len(t, errs, 3)
	assert.NoError(t, errs[0])
	var ve *crm.ValidationError
	require.ErrorAs(t, errs[1], &ve)
	_, ok := ve.Field("record")
	assert.True(t, ok, "%v", errs[1])
	require.ErrorAs(t, errs[2], &ve)
	all, err := env.engine.Contacts().List(ctx, crm.ListOptions{})
	require.NoError(t, err)
	require.Len(t, all.Items, 1)
	assert.Equal(t, created[0].ID, all.Items[0].ID)
	evs, err := env.store.ReadOutbox(ctx, "check", 100)
	require.NoError(t, err)
	require.Len(t, evs, 1, "one record, one event")
}
