package crm_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
)

const contactSchema = `
- entity: contact
  fields:
    - {key: tier, type: enum, options: [bronze, silver, gold], required: true, default: bronze}
    - {key: score, type: number}
    - {key: vip, type: bool}
    - {key: birthday, type: date}
    - {key: interests, type: multi_enum, options: [golf, sailing, chess]}
    - {key: budget, type: money}
    - {key: employer, type: reference, ref: account}
    - {key: notes, type: text}
    - {key: nickname, type: string}
`

func TestCustomFieldSchemas(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	schemas, err := crm.LoadSchemas("fields.yaml", []byte(contactSchema))
	require.NoError(t, err)
	require.Len(t, schemas, 1)
	require.NoError(t, env.engine.Schemas().Save(ctx, &schemas[0]))
	acct, err := env.engine.Accounts().Create(ctx, crm.Account{Name: "Initech"})
	require.NoError(t, err)

	c, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", Meta: crm.Meta{Custom: map[string]any{
		"score": json.Number("12345678901234567890.5"), "vip": true, "birthday": "1815-12-10",
		"interests": []string{"chess", "sailing"}, "budget": map[string]any{"amount": 250000, "currency": "GBP"},
		"employer": acct.ID, "notes": "Line one\nline two", "nickname": "Countess",
	}}})
	require.NoError(t, err)
	assert.Equal(t, "bronze", c.Custom["tier"], "the default fills a missing value")
	got, err := env.engine.Contacts().Get(ctx, c.ID)
	require.NoError(t, err)
	assert.Equal(t, json.Number("12345678901234567890.5"), got.Custom["score"], "numbers stay exact")
	_, err = env.engine.Contacts().Update(ctx, got)
	require.NoError(t, err, "a stored record passes its own schema")

	// Custom values are listed by.
	for by, value := range map[string]string{"custom.tier": "bronze", "custom.interests": "sailing", "custom.vip": "true", "custom.employer": acct.ID} {
		pg, err := env.engine.Contacts().List(ctx, crm.ListOptions{By: by, Value: value})
		require.NoError(t, err, by)
		require.Len(t, pg.Items, 1, by)
	}

	// Every bad value is named; nothing is stored.
	before := snapshot(t, env.store, "default")
	_, err = env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "Bad", Meta: crm.Meta{Custom: map[string]any{
		"tier": "platinum", "score": "high", "vip": "yes", "birthday": "10/12/1815", "interests": []string{"golf", "golf"},
		"budget": map[string]any{"amount": 1, "currency": "XXX"}, "employer": "missing", "nickname": "two\nlines", "shoe": 42,
	}}})
	var ve *crm.ValidationError
	require.ErrorAs(t, err, &ve)
	var fields []string
	for _, f := range ve.Fields {
		fields = append(fields, f.Field)
	}
	assert.ElementsMatch(t, []string{"custom.tier", "custom.score", "custom.vip", "custom.birthday", "custom.interests",
		"custom.budget", "custom.employer", "custom.nickname", "custom.shoe"}, fields)
	assert.Equal(t, before, snapshot(t, env.store, "default"))

	// Changes that would orphan stored values are refused.
	change := func(edit func(*crm.Schema)) error {
		s := schemas[0]
		s.Fields = append([]crm.FieldDef(nil), schemas[0].Fields...)
		edit(&s)
		return env.engine.Schemas().Save(ctx, &s)
	}
	require.ErrorIs(t, change(func(s *crm.Schema) { s.Fields = s.Fields[1:] }), crm.ErrSchemaInUse, "removing tier")
	require.ErrorIs(t, change(func(s *crm.Schema) { s.Fields[1].Type = crm.FieldString }), crm.ErrSchemaInUse, "retyping score")
	require.ErrorIs(t, change(func(s *crm.Schema) {
		s.Fields[4].Options = []string{"golf", "sailing"}
	}), crm.ErrSchemaInUse, "dropping chess")
	require.ErrorIs(t, change(func(s *crm.Schema) {
		s.Fields = append(s.Fields, crm.FieldDef{Key: "region", Type: crm.FieldString, Required: true})
	}), crm.ErrSchemaInUse, "a new required field without a default")
	require.NoError(t, change(func(s *crm.Schema) {
		s.Fields = append(s.Fields, crm.FieldDef{Key: "region", Type: crm.FieldString, Required: true, Default: "EMEA"})
	}))
	require.NoError(t, change(func(s *crm.Schema) { s.Fields[0].Options = append(s.Fields[0].Options, "platinum") }))
	stored, err := env.engine.Schemas().Get(ctx, "contact")
	require.NoError(t, err)
	assert.Contains(t, stored.Fields[0].Options, "platinum")

	// Values the index does not hold are checked too: money, long text,
	// and required fields that lose their default.
	require.ErrorIs(t, change(func(s *crm.Schema) {
		s.Fields = append(s.Fields[:5:5], s.Fields[6:]...) // drop budget (money)
	}), crm.ErrSchemaInUse, "removing a used money field")
	require.NoError(t, change(func(s *crm.Schema) {
		s.Fields = append(s.Fields, crm.FieldDef{Key: "region", Type: crm.FieldString, Required: true, Default: "EMEA"})
	}))
	require.ErrorIs(t, change(func(s *crm.Schema) {
		s.Fields = append(s.Fields, crm.FieldDef{Key: "region", Type: crm.FieldString, Required: true})
	}), crm.ErrSchemaInUse, "required without a default, and stored records lack it")
	_, err = env.engine.Accounts().Create(ctx, crm.Account{Name: "Long", Meta: crm.Meta{Custom: map[string]any{"essay": strings.Repeat("words ", 100)}}})
	require.NoError(t, err)
	err = env.engine.Schemas().Save(ctx, &crm.Schema{Entity: "account", Fields: []crm.FieldDef{{Key: "other", Type: crm.FieldString}}})
	require.ErrorIs(t, err, crm.ErrSchemaInUse, "a long value the index skips")

	// A first schema must cover values stored without one.
	_, err = env.engine.Deals().Create(ctx, crm.Deal{Title: "D", Meta: crm.Meta{Custom: map[string]any{"legacy": "x"}}})
	require.NoError(t, err)
	err = env.engine.Schemas().Save(ctx, &crm.Schema{Entity: "deal", Fields: []crm.FieldDef{{Key: "other", Type: crm.FieldString}}})
	require.ErrorIs(t, err, crm.ErrSchemaInUse)
	_, err = env.engine.Schemas().Get(ctx, "deal")
	require.ErrorIs(t, err, crm.ErrNotFound)
}

func TestLoadSchemasRejectsBadDefinitions(t *testing.T) {
	for name, src := range map[string]string{
		"unknown field":     "entity: contact\nfields: [{key: a, type: string, colour: red}]\n",
		"unknown entity":    "entity: planet\nfields: []\n",
		"bad type":          "entity: contact\nfields: [{key: a, type: blob}]\n",
		"bad key":           "entity: contact\nfields: [{key: A-1, type: string}]\n",
		"duplicate key":     "entity: contact\nfields: [{key: a, type: string}, {key: a, type: bool}]\n",
		"enum, no options":  "entity: contact\nfields: [{key: a, type: enum}]\n",
		"bad default":       "entity: contact\nfields: [{key: a, type: number, default: many}]\n",
		"reference, no ref": "entity: contact\nfields: [{key: a, type: reference}]\n",
		"empty":             "",
	} {
		_, err := crm.LoadSchemas("f.yaml", []byte(src))
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "f.yaml", name)
	}
	list, err := crm.LoadSchemas("f.json", []byte(`{"entity":"deal","fields":[{"key":"size","type":"number","default":3}]}`))
	require.NoError(t, err)
	assert.Equal(t, json.Number("3"), list[0].Fields[0].Default)
}

func TestLoadSchemasReadsYAMLValues(t *testing.T) {
	list, err := crm.LoadSchemas("f.yaml", []byte(`
- entity: contact
  fields:
    - {key: since, type: date, default: 2026-01-01}
    - {key: big, type: number, default: 18446744073709551615}
`))
	require.NoError(t, err)
	assert.Equal(t, "2026-01-01", list[0].Fields[0].Default)
	assert.Equal(t, json.Number("18446744073709551615"), list[0].Fields[1].Default)
	_, err = crm.LoadSchemas("f.yaml", []byte("- entity: contact\n  fields:\n    - {key: a, type: string, colour: red}\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "colour", "the unknown key is named")
}
