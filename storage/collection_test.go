package storage_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
)

func TestIndexValuesFromFields(t *testing.T) {
	c := storage.Collection{Name: "things", Indexes: []storage.Index{
		{Name: "s", Field: "s"},
		{Name: "n", Field: "n"},
		{Name: "b", Field: "b"},
		{Name: "arr", Field: "arr"},
		{Name: "nested", Field: "a.b.c"},
		{Name: "missing", Field: "nope"},
		{Name: "null", Field: "z"},
		{Name: "obj", Field: "a"},
		{Name: "escaped", Field: "e"},
	}}
	require.NoError(t, c.Validate())
	body := []byte(`{"s":"x","n":12.50,"b":true,"arr":["p","q","p","",1,null,{"k":1}],"a":{"b":{"c":"deep"}},"z":null,"e":"line\u00e9\"q"}`)
	vals, err := c.IndexValues(body)
	require.NoError(t, err)
	assert.Equal(t, [][]string{
		{"x"}, {"12.50"}, {"true"}, {"p", "q", "1"}, {"deep"}, nil, nil, nil, {"lineé\"q"},
	}, vals)
}

func TestIndexValuesFromExtract(t *testing.T) {
	boom := errors.New("boom")
	c := storage.Collection{Name: "things", Indexes: []storage.Index{
		{Name: "x", Extract: func(b []byte) ([]string, error) { return []string{"a", "a", "", "b"}, nil }},
	}}
	vals, err := c.IndexValues([]byte(`{}`))
	require.NoError(t, err)
	assert.Equal(t, [][]string{{"a", "b"}}, vals)

	c.Indexes[0].Extract = func([]byte) ([]string, error) { return nil, boom }
	_, err = c.IndexValues([]byte(`{}`))
	require.ErrorIs(t, err, storage.ErrInvalid)
	assert.Contains(t, err.Error(), "boom")

	c.Indexes[0].Extract = func([]byte) ([]string, error) { return []string{strings.Repeat("v", storage.MaxIndexValueLen+1)}, nil }
	_, err = c.IndexValues([]byte(`{}`))
	require.ErrorIs(t, err, storage.ErrInvalid)
}

func TestValidateInput(t *testing.T) {
	for _, id := range []string{"a", "0192f3c4-1234-7abc-8def-0123456789ab", "12923.0", "ünïcode", strings.Repeat("x", storage.MaxIDLen)} {
		assert.NoError(t, storage.ValidateID("id", id), id)
	}
	for _, id := range []string{"", strings.Repeat("x", storage.MaxIDLen+1), "a\x00", "a\tb", "\xc3"} {
		assert.ErrorIs(t, storage.ValidateID("id", id), storage.ErrInvalid, "%q", id)
	}
	for _, body := range []string{`{}`, ` {"a":[1,2]} `, `{"a":{"b":null}}`} {
		assert.NoError(t, storage.ValidateBody([]byte(body)), body)
	}
	for _, body := range []string{``, `null`, `[]`, `1`, `"s"`, `{`, `{"a":}`, `{} {}`} {
		assert.ErrorIs(t, storage.ValidateBody([]byte(body)), storage.ErrInvalid, body)
	}
	assert.ErrorIs(t, storage.ValidateEvent(storage.Event{Type: strings.Repeat("t", storage.MaxEventTypeLen+1)}), storage.ErrInvalid)
	assert.NoError(t, storage.ValidateEvent(storage.Event{Type: "t", Body: []byte(`[1]`)}))
}

func TestUniqueErrorMatchesErrExists(t *testing.T) {
	var err error = &storage.UniqueError{Collection: "people", Index: "email", Value: "a@x.io", ExistingID: "p1"}
	assert.ErrorIs(t, err, storage.ErrExists)
	assert.NotErrorIs(t, err, storage.ErrConflict)
	assert.Equal(t, `storage: unique index people.email: value "a@x.io" is already used by record p1`, err.Error())
}
