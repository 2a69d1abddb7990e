package bulk_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/bulk"
	"github.com/rapportcrm/rapport/crm"
)

func TestImportContactsRestartable(t *testing.T) {
	e, _ := newTenant(t)
	ctx := context.Background()
	src := "Vorname,last_name,email,phone,external_id,tags,custom.shoe_size\n" +
		"Ada,Lovelace,ADA@example.com,+44 20 7946 0958,17.0,vip;early,41\n" +
		"Grace,Hopper,grace@example.com,,,,\n" +
		",,,,,,\n" + // nothing to name the contact
		"Alan,Turing,not-an-email,,,,\n" +
		"Ada,Again,ada@example.com,,,,\n" + // the same batch takes the email twice
		"Bob,One,bob@example.com,,,,\n"
	opts := bulk.Options{Mapping: map[string]string{"Vorname": "first_name"}}
	res, err := bulk.ImportContacts(ctx, e.Default(), strings.NewReader(src), opts)
	require.NoError(t, err)
	assert.Equal(t, 6, res.Rows)
	assert.Equal(t, 3, res.Created)
	assert.Equal(t, 3, res.Skipped)
	require.Len(t, res.Errors, 3)
	assert.Equal(t, []int{4, 5, 6}, []int{res.Errors[0].Line, res.Errors[1].Line, res.Errors[2].Line})
	assert.Contains(t, res.Errors[0].Error(), "name")
	assert.Contains(t, res.Errors[1].Error(), "email")
	assert.Contains(t, res.Errors[2].Error(), "already used")

	found, err := e.Contacts().FindBy(ctx, "external_id", []string{"17"})
	require.NoError(t, err)
	ada := found["17"]
	assert.Equal(t, "Ada", ada.FirstName)
	assert.Equal(t, "+442079460958", ada.Phone)
	assert.Equal(t, []string{"vip", "early"}, ada.Tags)
	assert.Equal(t, "41", ada.Custom["shoe_size"])

	// Running it again, in small batches, creates nothing new: a stored
	// external ID or email means the row was imported.
	opts.BatchSize = 2
	res, err = bulk.ImportContacts(ctx, e.Default(), strings.NewReader(src), opts)
	require.NoError(t, err)
	assert.Equal(t, 0, res.Created)
	assert.Equal(t, 4, res.Existing, "Ada by external ID, the others by email")
	assert.Equal(t, 2, res.Skipped)
}

func TestImportAccountsAndProducts(t *testing.T) {
	e, _ := newTenant(t)
	ctx := context.Background()
	res, err := bulk.ImportAccounts(ctx, e.Default(), strings.NewReader(
		`{"name":"Initech","domain":"https://www.Initech.example/","employees":250,"type":"B2B"}
{"name":"Umbrella","employees":"many"}
{"name":"Globex","type":"b2z"}
`), bulk.Options{Format: bulk.JSONL})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Created)
	require.Len(t, res.Errors, 2)
	assert.Contains(t, res.Errors[0].Error(), "employees")
	assert.Contains(t, res.Errors[1].Error(), "type")
	found, err := e.Accounts().FindBy(ctx, "domain", []string{"initech.example"})
	require.NoError(t, err)
	assert.Equal(t, 250, found["initech.example"].Employees)
	assert.Equal(t, crm.B2B, found["initech.example"].Type)
	res, err = bulk.ImportAccounts(ctx, e.Default(), strings.NewReader(`{"name":"Initech 2","domain":"initech.example"}`+"\n"), bulk.Options{Format: bulk.JSONL})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Existing)

	res, err = bulk.ImportProducts(ctx, e.Default(), strings.NewReader("sku,name,category\n85123A,WHITE HANGING HEART T-LIGHT HOLDER,home\n85123A,duplicate,home\n,no sku,\n"), bulk.Options{})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Created)
	assert.Equal(t, 2, res.Skipped)
}
