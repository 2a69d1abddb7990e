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

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/loyalty"
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
	// Ledger spends: the parent credits ledgerPoints; each child tries
	// childSpends spends of spendPoints, together more than there is.
	ledgerPoints = 1000
	childSpends  = 100
	spendPoints  = 7
)

// TestMultiProcess runs engines in three processes (this one and two
// re-executed test binaries) on one database. The children move the same
// deals back and forth concurrently; each counts the moves that succeeded,
// and every process delivers events to one subscription name. Afterwards:
// every deal's version and history account for every successful move (no
// lost update), and every outbox event was delivered exactly once, by one
// of the processes. The children also spend the same loyalty points at
// once: the spends that succeed never take more than was credited.
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
	ledger := e.Default().Ledger("beans", false)
	_, err = ledger.Apply(ctx, "ann", loyalty.Op{Key: "credit", Kind: loyalty.KindEarn, Points: ledgerPoints, At: time.Now()})
	require.NoError(t, err)
	dir := t.TempDir()
	parentOut := filepath.Join(dir, "parent")
	require.NoError(t, e.Subscribe(crm.Subscription{Name: "exactly-once", Handler: recordTo(parentOut)}))

	type child struct {
		cmd    *exec.Cmd
		out    string
		moves  chan int
		spends chan int
		stdin  interface{ Close() error }
	}
	var children []*child
	for i := range 2 {
		c := &child{out: filepath.Join(dir, fmt.Sprintf("child%d", i)), moves: make(chan int, 1), spends: make(chan int, 1)}
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
			n, spent := -1, -1
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "MOVES "); ok {
					n, _ = strconv.Atoi(v)
					c.moves <- n
				} else if v, ok := strings.CutPrefix(sc.Text(), "SPENDS "); ok {
					spent, _ = strconv.Atoi(v)
					c.spends <- spent
				} else {
					fmt.Fprintf(os.Stderr, "child %d: %s\n", i, sc.Text())
				}
			}
			if n < 0 {
				c.moves <- -1
			}
			if spent < 0 {
				c.spends <- -1
			}
		}()
		children = append(children, c)
	}
	total, spends := 0, 0
	for i, c := range children {
		select {
		case n := <-c.moves:
			require.GreaterOrEqual(t, n, 0, "child %d failed", i)
			total += n
		case <-time.After(3 * time.Minute):
			t.Fatalf("child %d did not finish its moves", i)
		}
		select {
		case n := <-c.spends:
			require.GreaterOrEqual(t, n, 0, "child %d failed", i)
			spends += n
		case <-time.After(3 * time.Minute):
			t.Fatalf("child %d did not finish its spends", i)
		}
	}

	// No overspend: the spends that succeeded are exactly those the
	// credit covers, and the stored ledger adds up.
	j, err := ledger.Journal(ctx, "ann")
	require.NoError(t, err)
	require.NoError(t, j.Check())
	assert.Equal(t, ledgerPoints/spendPoints, spends, "spends that succeeded")
	assert.Equal(t, int64(ledgerPoints-spends*spendPoints), j.Balance)
	assert.Len(t, j.Journal, 1+spends)

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
	t.Logf("%d moves and %d spends by 2 processes, %d events delivered once each", total, spends, head)
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
	ledger := e.Default().Ledger("beans", false)
	spends := 0
	for i := range childSpends {
		_, err := ledger.Apply(ctx, "ann", loyalty.Op{Key: fmt.Sprintf("%s-%d-%d", schema, os.Getpid(), i), Kind: loyalty.KindSpend, Points: spendPoints, At: time.Now()})
		if errors.Is(err, loyalty.ErrInsufficientPoints) {
			continue
		}
		require.NoError(t, err)
		spends++
	}
	fmt.Printf("SPENDS %d\n", spends)
	// Keep delivering events until the parent closes stdin.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// Environment of the child of TestKillMidDelivery.
const (
	envKillSchema = "RAPPORT_PG_KILL_SCHEMA"
	envKillOut    = "RAPPORT_PG_KILL_OUT"
	killAfter     = 150 // the child hangs in the handler of its 151st event, in its second batch
	killLease     = 2 * time.Second
)

// TestKillMidDelivery kills a process (SIGKILL) in the middle of handling
// an event. Another process takes the subscription over when the dead
// one's lease runs out and delivers everything left: no event is lost,
// and the only events delivered twice are those of the batch the dead
// process had not acknowledged.
func TestKillMidDelivery(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	schema := pgtest.Schema(t)
	t.Cleanup(func() { dropSchema(t, schema) }) // after the child is gone and the store closed
	st, err := postgres.Open(ctx, server.URL, &postgres.Options{Schema: schema, Lease: killLease})
	require.NoError(t, err)
	defer st.Close()
	e, err := crm.Open(ctx, crm.Options{Store: st, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	defer e.Close()
	for i := range 250 {
		_, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "C", LastName: fmt.Sprint(i)})
		require.NoError(t, err)
	}
	head, err := st.OutboxHead(ctx)
	require.NoError(t, err)

	dir := t.TempDir()
	childOut, parentOut := filepath.Join(dir, "child"), filepath.Join(dir, "parent")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestKillMidDeliveryChild$", "-test.v")
	cmd.Env = append(os.Environ(), envKillSchema+"="+schema, envURL+"="+server.URL, envKillOut+"="+childOut)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	hung := make(chan uint64, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "HUNG "); ok {
				n, _ := strconv.ParseUint(v, 10, 64)
				hung <- n
				return
			}
		}
		close(hung)
	}()
	var inFlight uint64
	select {
	case n, ok := <-hung:
		require.True(t, ok, "the child ended before hanging")
		inFlight = n
	case <-time.After(time.Minute):
		t.Fatal("the child did not reach its hanging event")
	}
	conn, err := pgx.Connect(ctx, server.URL)
	require.NoError(t, err)
	var acked uint64
	err = conn.QueryRow(ctx, "SELECT acked FROM "+pgx.Identifier{schema, "consumers"}.Sanitize()+" WHERE name = $1", []byte("sub:durable")).Scan(&acked)
	conn.Close(ctx)
	require.NoError(t, err)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()

	// The survivor subscribes under the same name and finishes the job.
	require.NoError(t, e.Subscribe(crm.Subscription{Name: "durable", Handler: recordTo(parentOut)}))
	seen := map[uint64]int{}
	deadline := time.Now().Add(time.Minute)
	for len(seen) < int(head) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		seen = map[uint64]int{}
		for _, f := range []string{childOut, parentOut} {
			for _, seq := range readSeqs(t, f) {
				seen[seq]++
			}
		}
	}
	require.Len(t, seen, int(head), "every event delivered, none lost")
	assert.Equal(t, 1, seen[inFlight], "the event in flight is delivered by the survivor")
	again := 0
	for seq, n := range seen {
		if n > 1 {
			again++
			assert.Greater(t, seq, acked, "event %d delivered %d times, but it was acknowledged", seq, n)
			assert.Less(t, seq, inFlight, "event %d delivered %d times", seq, n)
		}
	}
	assert.Positive(t, acked, "the child acknowledged its first batch")
	t.Logf("%d events; the child acknowledged up to %d and died in event %d; %d delivered again", head, acked, inFlight, again)
}

// TestKillMidDeliveryChild is the process TestKillMidDelivery kills; run
// on its own it does nothing.
func TestKillMidDeliveryChild(t *testing.T) {
	schema := os.Getenv(envKillSchema)
	if schema == "" {
		t.Skip("a child process of TestKillMidDelivery")
	}
	ctx := context.Background()
	st, err := postgres.Open(ctx, os.Getenv(envURL), &postgres.Options{Schema: schema, Lease: killLease})
	require.NoError(t, err)
	e, err := crm.Open(ctx, crm.Options{Store: st, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	record := recordTo(os.Getenv(envKillOut))
	n := 0
	require.NoError(t, e.Subscribe(crm.Subscription{Name: "durable", Handler: func(ctx context.Context, ev crm.Event) error {
		if n++; n > killAfter {
			fmt.Printf("HUNG %d\n", ev.Seq)
			select {} // until killed
		}
		return record(ctx, ev)
	}}))
	select {}
}
