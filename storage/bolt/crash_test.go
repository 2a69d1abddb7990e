package bolt_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/bolt"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

const crashChildEnv = "RAPPORT_BOLT_CRASH_CHILD"

// TestMain lets the test binary act as the writer process of
// TestCrashKeepsAcknowledgedWrites.
func TestMain(m *testing.M) {
	if arg := os.Getenv(crashChildEnv); arg != "" {
		var start int
		path, startText, _ := strings.Cut(arg, "|")
		fmt.Sscan(startText, &start)
		if err := crashChild(path, start); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if bigStore.st != nil {
		_ = bigStore.st.Close()
		_ = os.RemoveAll(bigStore.dir)
	}
	os.Exit(code)
}

func crashRecord(i int) (string, storage.Record) {
	id := fmt.Sprintf("rec-%06d", i)
	body := fmt.Sprintf(`{"name":%q,"email":"%s@example.com","tags":["t%d"],"pad":%q}`,
		id, id, i%10, strings.Repeat("p", 200+i%500))
	return id, storage.Record{ID: id, Body: []byte(body)}
}

// crashChild writes records one transaction at a time and prints "ack ID"
// after each commit returns, until it is killed.
func crashChild(path string, start int) error {
	s, err := bolt.Open(path, nil)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := s.Declare(ctx, storagetest.Collections()...); err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	for i := start; ; i++ {
		id, rec := crashRecord(i)
		err := s.Update(ctx, "crash", func(tx storage.Tx) error {
			if _, err := tx.Put(ctx, "people", rec); err != nil {
				return err
			}
			return tx.Append(ctx, storage.Event{Type: "crash.written", Collection: "people", RecordID: id})
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "ack %s\n", id)
		if err := out.Flush(); err != nil {
			return err
		}
	}
}

// TestCrashKeepsAcknowledgedWrites kills a writer process with SIGKILL in the
// middle of a stream of writes, reopens the file, and checks that every
// write the writer saw committed is there and the file is consistent.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	start := 0
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d", crashChildEnv, path, start))
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())

		var acked []string
		sc := bufio.NewScanner(stdout)
		killAt := 200 + round*150
		for sc.Scan() {
			id, ok := strings.CutPrefix(sc.Text(), "ack ")
			require.True(t, ok, "unexpected child output %q", sc.Text())
			acked = append(acked, id)
			if len(acked) == killAt {
				require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
				break
			}
		}
		// Drain what the child printed before the kill landed: those
		// writes were acknowledged too.
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
				acked = append(acked, id)
			}
		}
		err = cmd.Wait()
		require.Error(t, err, "the child must have been killed; stderr: %s", stderr.String())

		s, err := bolt.Open(path, nil)
		require.NoError(t, err)
		require.NoError(t, s.Check(), "bbolt consistency check after SIGKILL")
		ctx := context.Background()
		require.NoError(t, s.Declare(ctx, storagetest.Collections()...))
		events := map[string]bool{}
		for {
			evs, err := s.ReadOutbox(ctx, "verify", storage.MaxScanLimit)
			require.NoError(t, err)
			if len(evs) == 0 {
				break
			}
			for _, ev := range evs {
				events[ev.RecordID] = true
			}
			require.NoError(t, s.AckOutbox(ctx, "verify", evs[len(evs)-1].Seq))
		}
		require.NoError(t, s.View(ctx, "crash", func(tx storage.ReadTx) error {
			for _, id := range acked {
				rec, err := tx.Get(ctx, "people", id)
				if err != nil {
					return fmt.Errorf("acknowledged write %s lost: %w", id, err)
				}
				var i int
				fmt.Sscanf(id, "rec-%d", &i)
				_, want := crashRecord(i)
				assert.JSONEq(t, string(want.Body), string(rec.Body))
				assert.True(t, events[id], "event of acknowledged write %s lost", id)
				p, err := tx.Scan(ctx, "people", storage.Query{Index: "email", Equal: id + "@example.com"})
				if err != nil {
					return err
				}
				assert.Len(t, p.Records, 1, "index entry of %s", id)
			}
			return nil
		}))
		require.NoError(t, s.Close())
		// The next round's writer appends to the same file.
		start += len(acked) + 1000
		t.Logf("round %d: %d acknowledged writes survived SIGKILL", round, len(acked))
	}
}

func TestSecondOpenerGetsLockedError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locked.db")
	first, err := bolt.Open(path, nil)
	require.NoError(t, err)
	defer first.Close()

	start := time.Now()
	_, err = bolt.Open(path, &bolt.Options{Timeout: 200 * time.Millisecond})
	require.ErrorIs(t, err, storage.ErrLocked)
	assert.Contains(t, err.Error(), path)
	assert.Less(t, time.Since(start), 5*time.Second)

	// With default options the wait is bounded too (one second).
	_, err = bolt.Open(path, nil)
	require.ErrorIs(t, err, storage.ErrLocked)
	assert.Contains(t, err.Error(), "1s")

	require.NoError(t, first.Close())
	again, err := bolt.Open(path, nil)
	require.NoError(t, err, "the lock is released on Close")
	require.NoError(t, again.Close())
}

func TestOpenErrors(t *testing.T) {
	_, err := bolt.Open("", nil)
	require.ErrorIs(t, err, storage.ErrInvalid)
	_, err = bolt.Open(filepath.Join(t.TempDir(), "missing-dir", "x.db"), nil)
	require.Error(t, err)
	notDB := filepath.Join(t.TempDir(), "garbage.db")
	require.NoError(t, os.WriteFile(notDB, []byte(strings.Repeat("not a database ", 1000)), 0o600))
	_, err = bolt.Open(notDB, nil)
	require.Error(t, err, "a file that is not a bbolt database")
}

func TestDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "durable.db")
	ctx := context.Background()
	s, err := bolt.Open(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Declare(ctx, storagetest.Collections()...))
	var stored []storage.Record
	require.NoError(t, s.Update(ctx, "t", func(tx storage.Tx) error {
		for i := range 100 {
			_, rec := crashRecord(i)
			r, err := tx.Put(ctx, "people", rec)
			if err != nil {
				return err
			}
			stored = append(stored, r)
		}
		return nil
	}))
	require.NoError(t, s.Close())

	s, err = bolt.Open(path, nil)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Declare(ctx, storagetest.Collections()...))
	require.NoError(t, s.View(ctx, "t", func(tx storage.ReadTx) error {
		for _, want := range stored {
			got, err := tx.Get(ctx, "people", want.ID)
			if err != nil {
				return err
			}
			assert.Equal(t, want, got)
		}
		p, err := tx.Scan(ctx, "people", storage.Query{Index: "tags", Equal: "t3"})
		assert.Len(t, p.Records, 10)
		return err
	}))
	require.NoError(t, s.Check())
}
