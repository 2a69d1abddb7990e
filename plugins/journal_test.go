package plugins_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
)

func TestJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sent.jsonl")
	j, err := plugins.OpenJournal(path)
	require.NoError(t, err)
	ctx := context.Background()

	// Ten concurrent sends of one key send once.
	var calls atomic.Int32
	var wg sync.WaitGroup
	receipts := make([]plugins.Receipt, 10)
	for i := range receipts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := j.Once(ctx, "k", func() (plugins.Receipt, error) {
				calls.Add(1)
				time.Sleep(20 * time.Millisecond)
				return plugins.Receipt{ProviderID: "p1", Status: plugins.StatusDelivered}, nil
			})
			assert.NoError(t, err)
			receipts[i] = rc
		}()
	}
	wg.Wait()
	assert.Equal(t, int32(1), calls.Load())
	for _, rc := range receipts {
		assert.Equal(t, plugins.Receipt{ProviderID: "p1", Status: plugins.StatusDelivered}, rc)
	}

	// A failed send records nothing: the next try sends.
	boom := errors.New("boom")
	_, err = j.Once(ctx, "k2", func() (plugins.Receipt, error) { return plugins.Receipt{}, boom })
	require.ErrorIs(t, err, boom)
	_, err = j.Once(ctx, "", func() (plugins.Receipt, error) { return plugins.Receipt{}, nil })
	require.ErrorIs(t, err, plugins.ErrRejected)
	require.NoError(t, j.Close())

	// Reopened, it remembers k (and not k2).
	j, err = plugins.OpenJournal(path)
	require.NoError(t, err)
	defer j.Close()
	rc, err := j.Once(ctx, "k", func() (plugins.Receipt, error) { panic("sent twice") })
	require.NoError(t, err)
	assert.Equal(t, plugins.Receipt{ProviderID: "p1", Status: plugins.StatusDelivered}, rc)
	sent := false
	_, err = j.Once(ctx, "k2", func() (plugins.Receipt, error) { sent = true; return plugins.Receipt{ProviderID: "p2"}, nil })
	require.NoError(t, err)
	assert.True(t, sent)

	// A torn last line (a crash mid-write) is ended, so that the next
	// record is readable after the next restart.
	require.NoError(t, j.Close())
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"key":"k3","provi`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	j, err = plugins.OpenJournal(path)
	require.NoError(t, err)
	_, err = j.Once(ctx, "k4", func() (plugins.Receipt, error) { return plugins.Receipt{ProviderID: "p4"}, nil })
	require.NoError(t, err)
	require.NoError(t, j.Close())
	j, err = plugins.OpenJournal(path)
	require.NoError(t, err)
	rc, err = j.Once(ctx, "k4", func() (plugins.Receipt, error) { panic("k4 sent twice") })
	require.NoError(t, err)
	assert.Equal(t, "p4", rc.ProviderID)

	_, err = plugins.OpenJournal(filepath.Join(t.TempDir(), "missing", "sent.jsonl"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
