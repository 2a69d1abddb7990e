package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/crm"
)

// writeFile writes a file in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

const welcomeAutomations = `automations:
  - name: welcome
    on: {event: contact.created}
    do:
      - tag: {add: [welcomed]}
  - name: vip-call
    on: {event: contact.created}
    when: 'hasTag(contact.tags, "vip")'
    do:
      - activity: {type: call, subject: "Welcome call with {{.Contact.FirstName}}"}
`

func TestAutomationsCheck(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", welcomeAutomations)
	code, out, stderr := crmctl(t, "automations", "check", good)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, good+": 2 automations OK\n", out)

	bad := writeFile(t, dir, "bad.yaml", `automations:
  - name: welcome
    on: {event: contact.created}
    when: 'contact.email =='
    do:
      - tag: {add: [welcomed]}
  - name: call
    on: {event: contact.created}
    do:
      - activity: {type: lunch, subject: "Call"}
`)
	// Templates are checked against the data they will see.
	tmpl := writeFile(t, dir, "tmpl.yaml", `automations:
  - name: greet
    on: {event: contact.created}
    do:
      - tag: {add: [greeted]}
      - activity: {subject: "Hello {{.Contact.Nickname}}"}
`)
	code, out, _ = crmctl(t, "automations", "check", good, bad, tmpl, filepath.Join(dir, "none.yaml"))
	assert.Equal(t, 1, code)
	assert.Contains(t, out, good+": 2 automations OK\n")
	assert.Regexp(t, `(?m)^`+bad+`:2: automation welcome: when: rule welcome \(line 1, column \d+\): .+$`, out)
	assert.Contains(t, out, bad+`:10: automation call: activity: type "lunch": want task, call, meeting or email`+"\n")
	assert.Contains(t, out, tmpl+":6: automation greet: activity: subject: can't evaluate field Nickname in type crm.Contact\n")
	assert.Contains(t, out, "none.yaml: no such file or directory\n")
	assert.NotContains(t, out, "bad.yaml: 0 automations OK")
}

func TestAutomationsBuiltin(t *testing.T) {
	code, out, stderr := crmctl(t, "automations", "builtin")
	require.Equal(t, 0, code, stderr)
	require.NotEmpty(t, automation.Builtins())
	for _, name := range automation.Builtins() {
		assert.Contains(t, out, "\n"+name+" ")
	}
	assert.Regexp(t, `(?m)^deal-next-step +5 +A next-step task for the deal's owner at every stage of the b2b-deal pipeline, due within the stage's norm\.$`, out)

	code, out, stderr = crmctl(t, "automations", "builtin", "deal-next-step")
	require.Equal(t, 0, code, stderr)
	want, err := automation.BuiltinSource("deal-next-step")
	require.NoError(t, err)
	assert.Equal(t, string(want), out)

	// What it prints is a file check accepts, to copy and adapt.
	path := writeFile(t, t.TempDir(), "next.yaml", out)
	code, out, _ = crmctl(t, "automations", "check", path)
	assert.Equal(t, 0, code)
	assert.Equal(t, path+": 5 automations OK\n", out)

	code, _, stderr = crmctl(t, "automations", "builtin", "nope")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `no ready-made set "nope"`)
}

// settleAutomations waits until the engine's automation runner has
// taken up every event in db. crmctl's engines live for one command, so
// an event can be left for the runner of a later command; the test makes
// sure none is, so that what it sees is what simulate did. It reads the
// runner's outbox position under the name crm gives its consumer.
func settleAutomations(t *testing.T, db string) {
	t.Helper()
	ctx := context.Background()
	e, err := crm.Open(ctx, crm.Options{Path: db})
	require.NoError(t, err)
	defer func() { require.NoError(t, e.Close()) }()
	require.Eventually(t, func() bool {
		evs, err := e.Store().ReadOutbox(ctx, "sub:rapport-automations", 1)
		return err == nil && len(evs) == 0
	}, 10*time.Second, 5*time.Millisecond, "the automation runner did not catch up")
}

func TestAutomationsSaveAndSimulate(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "ctl.db")
	code, out, stderr := crmctl(t, "-db", db, "contacts", "add", "-first", "Ada", "-email", "ada@example.com", "-tags", "b2b")
	require.Equal(t, 0, code, stderr)
	var ada crm.Contact
	require.NoError(t, json.Unmarshal([]byte(out), &ada))
	settleAutomations(t, db)

	set := writeFile(t, dir, "welcome.yaml", welcomeAutomations)
	code, out, stderr = crmctl(t, "-db", db, "automations", "save", set)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, set+": 2 automations saved for tenant default\n", out)

	simulate := func(args ...string) (int, string, string) {
		return crmctl(t, append([]string{"-db", db, "automations", "simulate"}, args...)...)
	}
	code, out, stderr = simulate("-event", "contact.created", "-collection", "contacts", "-id", ada.ID)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "welcome: would run\n  added tags welcomed\n"+
		"vip-call: would not run: the condition is false\n", out)

	// Nothing was written.
	code, out, stderr = crmctl(t, "-db", db, "contacts", "get", ada.ID)
	require.Equal(t, 0, code, stderr)
	var got crm.Contact
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	assert.Equal(t, []string{"b2b"}, got.Tags)
	assert.Equal(t, ada.Version, got.Version)

	code, out, stderr = simulate("-event", "contact.updated", "-collection", "contacts", "-id", ada.ID, "-changed", "email")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "no automation takes up contact.updated\n", out)

	code, _, stderr = simulate("-event", "contact.created", "-collection", "contacts", "-id", "missing")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "not found")

	code, _, stderr = crmctl(t, "-db", db, "-tenant", "other", "automations", "simulate", "-event", "contact.created", "-collection", "contacts", "-id", ada.ID)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "tenant other has no automations")

	// A set that sends messages needs plugins, which crmctl has not.
	sends := writeFile(t, dir, "sends.yaml", `automations:
  - name: hello
    on: {event: contact.created}
    do:
      - message: {via: email, subject: "Hello", body: "Hello {{.Contact.FirstName}}"}
`)
	code, _, stderr = crmctl(t, "-db", db, "automations", "save", sends)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "automation hello sends a message, but the engine has no plugins")

	bad := writeFile(t, dir, "bad.yaml", "automations:\n  - name: x\n    on: {event: contact.created}\n    do: []\n")
	code, _, stderr = crmctl(t, "-db", db, "automations", "save", bad)
	assert.Equal(t, 1, code)
	assert.Equal(t, bad+":2: automation x: no actions (do)\n", stderr)

	// Neither replaced the saved set.
	code, out, _ = simulate("-event", "contact.created", "-collection", "contacts", "-id", ada.ID)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "welcome: would run\n")
}

func TestAutomationsSimulateFailingAction(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "ctl.db")
	code, out, stderr := crmctl(t, "-db", db, "contacts", "add", "-first", "Vic", "-tags", "vip")
	require.Equal(t, 0, code, stderr)
	var vic crm.Contact
	require.NoError(t, json.Unmarshal([]byte(out), &vic))
	settleAutomations(t, db)
	code, _, stderr = crmctl(t, "-db", db, "automations", "save", writeFile(t, dir, "welcome.yaml", welcomeAutomations))
	require.Equal(t, 0, code, stderr)

	// The condition holds, but the call is for the owner and Vic has none.
	code, out, stderr = crmctl(t, "-db", db, "automations", "simulate", "-event", "contact.created", "-collection", "contacts", "-id", vic.ID)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "welcome: would run\n  added tags welcomed\n")
	assert.Regexp(t, `(?m)^vip-call: would fail: action 1 \(activity\): .*no owner`, out)
}

func TestAutomationsUsage(t *testing.T) {
	db := filepath.Join(t.TempDir(), "ctl.db")
	for _, args := range [][]string{
		{"automations"},
		{"automations", "frobnicate"},
		{"automations", "check"},
		{"automations", "builtin", "a", "b"},
		{"-db", db, "automations", "save"},
		{"-db", db, "automations", "save", "a.yaml", "b.yaml"},
		{"-db", db, "automations", "simulate"},
		{"-db", db, "automations", "simulate", "-event", "contact.created", "-collection", "contacts"},
		{"-db", db, "automations", "simulate", "-event", "contact.created", "-collection", "contacts", "-id", "x", "extra"},
		{"-db", db, "automations", "simulate", "-file", "set.yaml"},
	} {
		code, _, stderr := crmctl(t, args...)
		assert.Equal(t, 2, code, "args %v: %s", args, stderr)
		assert.Contains(t, stderr, "usage", "args %v", args)
	}
	_, err := os.Stat(db)
	assert.ErrorIs(t, err, os.ErrNotExist, "a usage error opens no database")

	code, _, stderr := crmctl(t, "-db", db, "automations", "simulate", "-event", "contact.created", "-collection", "contacts", "-id", "x")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no database")
}
