package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
)

func crmctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestContactsAddListGet(t *testing.T) {
	db := filepath.Join(t.TempDir(), "ctl.db")
	code, out, stderr := crmctl(t, "-db", db, "contacts", "add", "-first", "Ada", "-email", "ADA@example.com", "-tags", "vip,b2b")
	require.Equal(t, 0, code, stderr)
	var c crm.Contact
	require.NoError(t, json.Unmarshal([]byte(out), &c))
	assert.Equal(t, "ada@example.com", c.Email)

	code, _, _ = crmctl(t, "-db", db, "contacts", "add", "-first", "Bob", "-tags", "b2b")
	require.Equal(t, 0, code)

	code, out, _ = crmctl(t, "-db", db, "contacts", "list", "-tag", "vip")
	require.Equal(t, 0, code)
	assert.Equal(t, 1, strings.Count(out, "\n"))
	code, out, _ = crmctl(t, "-db", db, "contacts", "list")
	require.Equal(t, 0, code)
	assert.Equal(t, 2, strings.Count(out, "\n"))

	code, out, _ = crmctl(t, "-db", db, "contacts", "get", c.ID)
	require.Equal(t, 0, code)
	assert.Contains(t, out, `"first_name":"Ada"`)

	code, out, _ = crmctl(t, "-db", db, "-tenant", "other", "contacts", "list")
	require.Equal(t, 0, code)
	assert.Empty(t, out)

	code, out, _ = crmctl(t, "-db", db, "check")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "ok")
}

func TestErrors(t *testing.T) {
	db := filepath.Join(t.TempDir(), "ctl.db")
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "usage"},
		{[]string{"frobnicate"}, 1, "unknown command"},
		{[]string{"-db", db, "contacts"}, 2, "usage"},
		{[]string{"-db", db, "contacts", "add", "-email", "nope"}, 1, "not an email address"},
		{[]string{"-db", db, "contacts", "get", "missing"}, 1, "not found"},
		{[]string{"-db", db, "contacts", "list", "-tag", "a", "-owner", "b"}, 1, "not both"},
		{[]string{"-db", db, "contacts", "add", "-bogus"}, 2, "flag provided but not defined"},
		{[]string{"-db", filepath.Join(t.TempDir(), "none.db"), "check"}, 1, "no such file"},
	}
	for _, c := range cases {
		code, _, stderr := crmctl(t, c.args...)
		assert.Equal(t, c.code, code, "args %v: %s", c.args, stderr)
		assert.Contains(t, stderr, c.msg, "args %v", c.args)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.db")
	require.NoError(t, os.WriteFile(garbage, bytes.Repeat([]byte("x"), 8192), 0o600))
	code, _, _ := crmctl(t, "-db", garbage, "check")
	assert.Equal(t, 1, code)
}
