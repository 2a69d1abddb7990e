package plugins_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rapportcrm/rapport/plugins"
)

// TestCrashRestartCycles crashes a plugin 1,000 times, each time starting
// it again, and checks that nothing accumulates: no process is left
// behind, the goroutine count does not grow (goleak), and the heap is
// stable.
func TestCrashRestartCycles(t *testing.T) {
	const cycles = 1000
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m, err := plugins.NewManager(plugins.Options{Logger: quietLogger(), MinBackoff: time.Microsecond, MaxBackoff: time.Microsecond},
		testConfig(t, "fake", plugins.KindConnector))
	require.NoError(t, err)
	c, err := m.Connector("fake")
	require.NoError(t, err)
	ctx := context.Background()

	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var heapAt100 uint64
	var goroutinesAt100 int
	for i := range cycles {
		if i == 100 {
			heapAt100, goroutinesAt100 = heap(), runtime.NumGoroutine()
		}
		_, err := c.Send(ctx, plugins.Message{Recipient: "crash", IdempotencyKey: fmt.Sprint(i)})
		require.ErrorIs(t, err, plugins.ErrCrashed, "cycle %d", i)
	}
	heapAtEnd, goroutinesAtEnd := heap(), runtime.NumGoroutine()
	st := m.Plugins()[0]
	assert.Equal(t, cycles, st.Starts)
	assert.Equal(t, cycles, st.Crashes)
	assert.Empty(t, children(t), "every crashed process was reaped")
	assert.LessOrEqual(t, goroutinesAtEnd, goroutinesAt100+2, "goroutines do not grow with crashes")
	assert.Less(t, heapAtEnd, heapAt100+4<<20, "the heap does not grow with crashes: %d then %d bytes", heapAt100, heapAtEnd)
	t.Logf("heap after 100 cycles %d bytes, after %d: %d; goroutines %d then %d", heapAt100, cycles, heapAtEnd, goroutinesAt100, goroutinesAtEnd)

	// The plugin still works after all that.
	_, err = c.Send(ctx, plugins.Message{Recipient: "ada@example.com", IdempotencyKey: "after"})
	require.NoError(t, err)
	require.NoError(t, m.Close())
	assert.Empty(t, children(t))
}
