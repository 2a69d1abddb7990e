package analytics_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage/memory"
)

// clock is a settable fake clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// open returns an engine on a memory store whose clock starts at start.
func open(t *testing.T, start time.Time) (*crm.Engine, *clock) {
	t.Helper()
	return openWith(t, start, crm.Options{})
}

// openWith is open with more options; a memory store unless opts.Store
// is set (which it closes too).
func openWith(t *testing.T, start time.Time, opts crm.Options) (*crm.Engine, *clock) {
	t.Helper()
	c := &clock{now: start}
	if opts.Store == nil {
		opts.Store = memory.New()
	}
	st := opts.Store
	opts.Clock = c
	e, err := crm.Open(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, e.Close())
		require.NoError(t, st.Close())
	})
	return e, c
}

// salesPipeline has simple hour norms, so that overdue counts are easy to
// work out by hand.
const salesPipeline = `
name: sales
kind: deal
stages:
  - {key: new, probability: 10, norm: 48h}
  - {key: qualified, probability: 40, norm: 720h}
  - {key: proposal, probability: 70, norm: 24h}
  - {key: won, probability: 100, terminal: won}
  - {key: lost, probability: 0, terminal: lost}
`

func savePipeline(t testing.TB, e *crm.Engine, src string) {
	t.Helper()
	def, err := pipeline.Load("test.yaml", []byte(src))
	require.NoError(t, err)
	require.NoError(t, e.Pipelines().Save(context.Background(), def))
}

func day(m time.Month, d int) time.Time { return time.Date(2024, m, d, 0, 0, 0, 0, time.UTC) }
