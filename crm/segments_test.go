package crm_test

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/loyalty"
)

func exampleSegments(t *testing.T, clock func() time.Time) *loyalty.Segments {
	t.Helper()
	data, err := os.ReadFile("../examples/loyalty/segments.yaml")
	require.NoError(t, err)
	s, err := loyalty.LoadSegments("segments.yaml", data, clock)
	require.NoError(t, err)
	return s
}

// TestWatchSegments follows contacts and their orders into and out of
// segments, with an event for every change.
func TestWatchSegments(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	var mu sync.Mutex
	var seen []string
	require.NoError(t, env.engine.Subscribe(crm.Subscription{Name: "seen", Events: []string{"segment.*"}, Handler: func(ctx context.Context, ev crm.Event) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, ev.Type)
		return nil
	}}))
	require.NoError(t, env.engine.WatchSegments("marketing", exampleSegments(t, env.clock.Now), "EUR", nil))
	tn := env.engine.Default()
	set := tn.SegmentSet("marketing", exampleSegments(t, env.clock.Now), "EUR")
	members := func(segment string) []string {
		m, err := set.Members(ctx, segment)
		require.NoError(t, err)
		return m
	}

	ann, err := tn.Contacts().Create(ctx, crm.Contact{FirstName: "Ann", Meta: crm.Meta{Tags: []string{"VIP"}}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return slices.Equal(members("vip"), []string{ann.ID}) }, 10*time.Second, 10*time.Millisecond)

	// Orders over 1,000.00 make a big spender.
	_, err = tn.Orders().Create(ctx, foodOrder(ann.ID, "1", time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), 120000))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return slices.Equal(members("big-spenders"), []string{ann.ID}) }, 10*time.Second, 10*time.Millisecond)

	// Losing the tag leaves vip.
	ann.Tags = nil
	ann, err = tn.Contacts().Update(ctx, ann)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(members("vip")) == 0 }, 10*time.Second, 10*time.Millisecond)
	// Segments read the engine's clock: 100 days on, ann has lapsed
	// (the next change to her record shows it).
	env.clock.Advance(100 * 24 * time.Hour)
	ann.Title = "Dr"
	_, err = tn.Contacts().Update(ctx, ann)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return slices.Equal(members("lapsed"), []string{ann.ID}) }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Equal(seen, []string{"segment.entered", "segment.entered", "segment.left", "segment.entered"})
	}, 10*time.Second, 10*time.Millisecond, "events: %v", seenNow(&mu, &seen))

	// A refresh without a change records nothing.
	changes, err := set.Refresh(ctx, ann.ID)
	require.NoError(t, err)
	assert.Empty(t, changes)
	// A contact that does not exist is in no segment.
	changes, err = set.Refresh(ctx, "nobody")
	require.NoError(t, err)
	assert.Empty(t, changes)
	_, err = tn.SegmentSet("bad\x1fname", exampleSegments(t, env.clock.Now), "EUR").Refresh(ctx, ann.ID)
	require.ErrorIs(t, err, crm.ErrInvalid)
}

func seenNow(mu *sync.Mutex, seen *[]string) []string {
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(*seen)
}
