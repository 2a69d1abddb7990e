package crm_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/crm"
)

const (
	automationChildEnv = "RAPPORT_AUTOMATION_CHILD"
	automationHookEnv  = "RAPPORT_AUTOMATION_HOOK"
)

// killSet is the set the kill test runs: store actions before and after
// a webhook, so that a kill can fall anywhere in a run.
func killSet(hook string) string {
	return `
automations:
  - name: onboard
    on: {event: contact.created}
    do:
      - tag: {add: [welcomed]}
      - points: {program: stars, points: 10, reason: welcome}
      - activity: {subject: "Call {{.Contact.FirstName}}", for: "user:rep"}
      - webhook: {url: "` + hook + `"}
      - tag: {add: [synced]}
`
}

// automationChild opens the engine on the bbolt file at path and creates
// contacts, one transaction each, printing "created N" after each, until
// it is killed. Its runner works on them meanwhile.
func automationChild(path, hook string) error {
	ctx := context.Background()
	e, err := crm.Open(ctx, crm.Options{Path: path, PollInterval: 5 * time.Millisecond, RetryBackoff: 5 * time.Millisecond,
		HTTPClient: &http.Client{Timeout: time.Second}})
	if err != nil {
		return err
	}
	set, err := automation.Load("kill.yaml", []byte(killSet(hook)), nil)
	if err != nil {
		return err
	}
	if err := e.Automations().Save(ctx, set); err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	for i := 1; ; i++ {
		if _, err := e.Contacts().Create(ctx, crm.Contact{FirstName: fmt.Sprintf("C%04d", i)}); err != nil {
			return err
		}
		fmt.Fprintf(out, "created %d\n", i)
		if err := out.Flush(); err != nil {
			return err
		}
	}
}

// TestAutomationsSurviveKill kills an engine process (SIGKILL) while its
// runner is busy, twice, and checks with a third engine that every
// contact got its run exactly once: one activity, one tag of each, 10
// points, every run done, and webhook calls only repeated with the same
// idempotency key.
func TestAutomationsSurviveKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts engine processes")
	}
	var mu sync.Mutex
	calls := map[string]int{}
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "kill.db")
	for round := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), automationChildEnv+"="+path, automationHookEnv+"="+srv.URL)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(stdout)
		want := 150 * (round + 1)
		n := 0
		for n < want && sc.Scan() {
			fmt.Sscanf(sc.Text(), "created %d", &n)
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		require.GreaterOrEqual(t, n, want, "the child stopped early")
	}
	ctx := context.Background()
	// A run the killed engine had claimed waits out its lease (twice the
	// HTTP timeout) before this engine takes it up.
	e, err := crm.Open(ctx, crm.Options{Path: path, PollInterval: 5 * time.Millisecond, RetryBackoff: time.Millisecond,
		HTTPClient: &http.Client{Timeout: time.Second}})
	require.NoError(t, err)
	defer e.Close()
	var contacts []crm.Contact
	require.NoError(t, e.Contacts().Each(ctx, crm.EachOptions{}, func(c *crm.Contact) error {
		contacts = append(contacts, *c)
		return nil
	}))
	require.GreaterOrEqual(t, len(contacts), 300)
	eventually(t, func() bool {
		done := 0
		require.NoError(t, e.Automations().AllRuns(ctx, func(r crm.AutomationRun) error {
			if r.Status == crm.RunDone {
				done++
			}
			return nil
		}))
		return done == len(contacts)
	}, "not every run is done")
	for _, c := range contacts {
		got, err := e.Contacts().Get(ctx, c.ID)
		require.NoError(t, err)
		require.Equal(t, []string{"welcomed", "synced"}, got.Tags, c.FirstName)
		require.Len(t, linked(t, e, "contact", c.ID), 1, c.FirstName)
		st, err := e.Default().Ledger("stars", false).State(ctx, c.ID)
		require.NoError(t, err)
		require.Equal(t, int64(10), st.Balance, c.FirstName)
		runs, err := e.Automations().Runs(ctx, "contacts", c.ID)
		require.NoError(t, err)
		require.Len(t, runs, 1, c.FirstName)
	}
	h.mu.Lock()
	for _, r := range h.calls {
		mu.Lock()
		calls[r.Header.Get("Idempotency-Key")]++
		mu.Unlock()
	}
	h.mu.Unlock()
	assert.Len(t, calls, len(contacts), "one webhook key per contact")
	repeats := 0
	for k, n := range calls {
		require.True(t, strings.HasPrefix(k, "default/"), k)
		repeats += n - 1
	}
	t.Logf("%d contacts, %d webhook calls repeated after a kill (same key)", len(contacts), repeats)
}
