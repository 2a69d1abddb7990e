package crm_test

import (
	"context"
	"fmt"
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

// TestRefreshAll is the daily sweep: time alone moves members into a
// time-based segment, and deleted contacts leave theirs.
func TestRefreshAll(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	tn := env.engine.Default()
	set := tn.SegmentSet("daily", exampleSegments(t, env.clock.Now), "EUR")
	const n = 450 // more than two batches
	var ids []string
	var firstOrder string
	for i := range n {
		c, err := tn.Contacts().Create(ctx, crm.Contact{FirstName: "C", LastName: fmt.Sprint(i)})
		require.NoError(t, err)
		ids = append(ids, c.ID)
		if i%3 == 0 {
			o, err := tn.Orders().Create(ctx, foodOrder(c.ID, fmt.Sprint(i), env.clock.Now(), 1000))
			require.NoError(t, err)
			if i == 0 {
				firstOrder = o.ID
			}
		}
	}
	changes, err := set.RefreshAll(ctx)
	require.NoError(t, err)
	assert.Zero(t, changes, "no contact is in a segment yet")

	env.clock.Advance(100 * 24 * time.Hour)
	changes, err = set.RefreshAll(ctx)
	require.NoError(t, err)
	assert.Equal(t, n/3, changes)
	lapsed, err := set.Members(ctx, "lapsed")
	require.NoError(t, err)
	assert.Len(t, lapsed, n/3)
	assert.Contains(t, lapsed, ids[0])
	assert.NotContains(t, lapsed, ids[1])

	// A second sweep finds nothing new; a deleted contact leaves.
	changes, err = set.RefreshAll(ctx)
	require.NoError(t, err)
	assert.Zero(t, changes)
	require.NoError(t, tn.Orders().Delete(ctx, firstOrder))
	require.NoError(t, tn.Contacts().Delete(ctx, ids[0]))
	changes, err = set.RefreshAll(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, changes)
	lapsed, err = set.Members(ctx, "lapsed")
	require.NoError(t, err)
	assert.Len(t, lapsed, n/3-1)
	assert.NotContains(t, lapsed, ids[0])

	_, err = tn.SegmentSet("a/b", exampleSegments(t, env.clock.Now), "EUR").RefreshAll(ctx)
	require.ErrorIs(t, err, crm.ErrInvalid)
}
