package postgres_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage/postgres"
	"github.com/rapportcrm/rapport/storage/postgres/pgtest"
)

// Environment of a child process of TestMultiProcess.
const (
	envChild  = "RAPPORT_PG_CHILD_SCHEMA"
	envURL    = "RAPPORT_PG_CHILD_URL"
	envOut    = "RAPPORT_PG_CHILD_OUT"
	envDeals  = "RAPPORT_PG_CHILD_DEALS"
	childMove = 60 // moves per child
)

// TestMultiProcess runs engines in three processes (this one and two
// re-executed test binaries) on one database. The children move the same
// deals back and forth concurrently; each counts the moves that succeeded,
// and every process delivers events to one subscription name. Afterwards:
// every deal's version and history account for every successful move (no
// lost update), and every outbox event was delivered exactly once, by one
// of the processes.
func TestMultiProcess(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	schema := pgtest.Schema(t)
	st := openSchema(t, schema)
	e, err := crm.Open(ctx, crm.Options{Store: st, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	defer e.Close()
	def, err := pipeline.Builtin("b2b-deal")
	require.NoError(t, err)
	require.NoError(t, e.Pipelines().Save(ctx, def))
	amount, err := crm.ParseMoney("1000", "EUR")
	require.NoError(t, err)
	var ids []string
	for i := range 4 {
		d, err := e.Deals().Create(ctx, crm.Deal{Title: fmt.Sprintf("Deal %d", i), Pipeline: "b2b-deal", Amount: amount})
		require.NoError(t, err)
		ids = append(ids, d.ID)
	}
	dir := t.TempDir()
	parentOut := filepath.Join(dir, "parent")
	require.NoError(t, e.Subscribe(crm.Subscription{Name: "exactly-once", Handler: recordTo(parentOut)}))

	type child struct {
		cmd   *exec.Cmd
		out   string
		moves chan int
		stdin interface{ Close() error }
	}
	var children []*child
	for i := range 2 {
		c := &child{out: filepath.Join(dir, fmt.Sprintf("child%d", i)), moves: make(chan int, 1)}
		c.cmd = exec.Command(os.Args[0], "-test.run", "^TestMultiProcessChild$", "-test.v")
		c.cmd.Env = append(os.Environ(), envChild+"="+schema, envURL+"="+server.URL, envOut+"="+c.out, envDeals+"="+strings.Join(ids, ","))
		stdin, err := c.cmd.StdinPipe()
		require.NoError(t, err)
		c.stdin = stdin
		stdout, err := c.cmd.StdoutPipe()
		require.NoError(t, err)
		c.cmd.Stderr = os.Stderr
		require.NoError(t, c.cmd.Start())
		t.Cleanup(func() {
			if c.cmd.ProcessState == nil {
				_ = c.cmd.Process.Kill()
				_ = c.cmd.Wait()
			}
		})
		go func() {
			sc := bufio.NewScanner(stdout)
			n := -1
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "MOVES "); ok {
					n, _ = strconv.Atoi(v)
					c.moves <- n
				} else {
					fmt.Fprintf(os.Stderr, "child %d: %s\n", i, sc.Text())
				}
			}
			if n < 0 {
				c.moves <- -1
			}
		}()
		children = append(children, c)
	}
	total := 0
	for i, c := range children {
		select {
		case n := <-c.moves:
			require.GreaterOrEqual(t, n, 0, "child %d failed", i)
			total += n
		case <-time.After(3 * time.Minute):
			t.Fatalf("child %d did not finish its moves", i)
		}
	}

	// No lost update: each successful move added one version and one
	// history entry.
	moved := 0
	for _, id := range ids {
		d, err := e.Deals().Get(ctx, id)
		require.NoError(t, err)
		hist, err := e.Deals().History(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, uint64(len(hist)), d.Version, "deal %s: one version per history entry (creation included)", id)
		moved += len(hist) - 1
	}
	assert.Equal(t, total, moved, "moves reported by the children vs moves stored")

	// Exactly once: wait until the deliveries cover the outbox.
	head, err := st.OutboxHead(ctx)
	require.NoError(t, err)
	var seen map[uint64]int
	deadline := time.Now().Add(time.Minute)
	for {
		seen = map[uint64]int{}
		for _, f := range append([]string{parentOut}, children[0].out, children[1].out) {
			for _, seq := range readSeqs(t, f) {
				seen[seq]++
			}
		}
		if len(seen) >= int(head) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range children {
		require.NoError(t, c.stdin.Close())
		require.NoError(t, c.cmd.Wait())
	}
	require.Len(t, seen, int(head), "every event delivered")
	for seq, n := range seen {
		if n != 1 {
			t.Errorf("event %d delivered %d times", seq, n)
		}
	}
	t.Logf("%d moves by 2 processes, %d events delivered once each", total, head)
}

// recordTo returns a handler that appends each event's sequence number to
// a file.
func recordTo(path string) crm.Handler {
	return func(_ context.Context, ev crm.Event) error {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintln(f, ev.Seq); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
}

func readSeqs(t *testing.T, path string) []uint64 {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var out []uint64
	for line := range strings.FieldsSeq(string(raw)) {
		n, err := strconv.ParseUint(line, 10, 64)
		require.NoError(t, err)
		out = append(out, n)
	}
	return out
}

// TestMultiProcessChild is one child process of TestMultiProcess; run on
// its own it does nothing.
func TestMultiProcessChild(t *testing.T) {
	schema := os.Getenv(envChild)
	if schema == "" {
		t.Skip("a child process of TestMultiProcess")
	}
	ctx := context.Background()
	st, err := postgres.Open(ctx, os.Getenv(envURL), &postgres.Options{Schema: schema})
	require.NoError(t, err)
	e, err := crm.Open(ctx, crm.Options{Store: st, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	defer e.Close()
	defer st.Close()
	require.NoError(t, e.Subscribe(crm.Subscription{Name: "exactly-once", Handler: recordTo(os.Getenv(envOut))}))
	ids := strings.Split(os.Getenv(envDeals), ",")
	moves := 0
	for moves < childMove {
		id := ids[rand.IntN(len(ids))]
		d, err := e.Deals().Get(ctx, id)
		require.NoError(t, err)
		to := "proposal-prepared"
		if d.Stage == to {
			to = "needs-clarification"
		}
		_, err = e.Deals().Move(ctx, id, to, crm.MoveOptions{Version: d.Version})
		if errors.Is(err, crm.ErrConflict) {
			continue
		}
		require.NoError(t, err)
		moves++
	}
	fmt.Printf("MOVES %d\n", moves)
	// Keep delivering events until the parent closes stdin.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}
