package loyalty_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/loyalty"
)

func segments(t testing.TB) *loyalty.Segments {
	t.Helper()
	data, err := os.ReadFile("../examples/loyalty/segments.yaml")
	require.NoError(t, err)
	s, err := loyalty.LoadSegments("segments.yaml", data, func() time.Time { return day(0) })
	require.NoError(t, err)
	return s
}

func TestSegmentsOf(t *testing.T) {
	s := segments(t)
	for _, c := range []struct {
		m    loyalty.Member
		want []string
	}{
		{loyalty.Member{ID: "a", TotalSpent: 100000}, []string{"big-spenders"}},
		{loyalty.Member{ID: "b", TotalSpent: 99999, OrderCount: 3, LastOrderAt: day(-91)}, []string{"lapsed"}},
		{loyalty.Member{ID: "c", OrderCount: 3, LastOrderAt: day(-90)}, nil},
		{loyalty.Member{ID: "d", Tags: []string{"VIP"}, R: 4, F: 5, M: 4}, []string{"vip", "champions"}},
		{loyalty.Member{ID: "hand-picked-1"}, []string{"vip"}},
		{loyalty.Member{ID: "e", City: "Berlin", Industry: "construction", R: 3, F: 5, M: 5}, []string{"berlin-builders"}},
		{loyalty.Member{ID: "cfo"}, []string{"board"}},
	} {
		got, err := s.Of(c.m)
		require.NoError(t, err)
		assert.Equal(t, c.want, got, c.m.ID)
	}
}

func TestSegmentsDiff(t *testing.T) {
	s := segments(t)
	before := loyalty.Member{ID: "a", TotalSpent: 99000, OrderCount: 5, LastOrderAt: day(-100)}
	after := before
	after.TotalSpent, after.OrderCount, after.LastOrderAt = 101000, 6, day(0)
	got, err := s.Diff(before, after)
	require.NoError(t, err)
	assert.Equal(t, []loyalty.Change{{Segment: "big-spenders", Member: "a", Entered: true}, {Segment: "lapsed", Member: "a", Entered: false}}, got)
	same, err := s.Diff(after, after)
	require.NoError(t, err)
	assert.Empty(t, same)
}

func TestSegmentsEvaluate(t *testing.T) {
	s := segments(t)
	members := make([]loyalty.Member, 10_001)
	for i := range members {
		members[i] = loyalty.Member{ID: itoa(i % 100), TotalSpent: int64(i) * 20, City: "Berlin", Industry: []string{"construction", "retail"}[i%2]}
	}
	for _, workers := range []int{1, 2, 7} {
		got, err := s.Evaluate(context.Background(), members, workers)
		require.NoError(t, err)
		assert.Equal(t, s.Names(), got.Segments)
		// Big spenders: i*20 >= 100000, i >= 5000: 5000..10000.
		require.Len(t, got.Members[0], 5001, workers)
		assert.Equal(t, int32(5000), got.Members[0][0])
		assert.Equal(t, int32(10000), got.Members[0][5000])
		assert.Len(t, got.Members[4], 5001, "berlin-builders: the even ones")
		assert.Empty(t, got.Members[1])
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Evaluate(ctx, members, 2)
	require.ErrorIs(t, err, context.Canceled)
}

func TestSegmentsErrors(t *testing.T) {
	_, err := loyalty.LoadSegments("s.yaml", []byte("segments:\n  - name: a\n  - name: a\n    rule: member.nope > 1\n  - rule: 'true'\n"), nil)
	require.ErrorIs(t, err, loyalty.ErrInvalid)
	for _, want := range []string{"s.yaml", `segment "a" has neither a rule nor members`, `segment "a" is defined twice`, "rule a (line 1, column 8)", "segment 3 has no name"} {
		assert.Contains(t, err.Error(), want)
	}
	var raw loyalty.Segments
	_, err = raw.Of(loyalty.Member{ID: "x"})
	require.ErrorIs(t, err, loyalty.ErrInvalid)
	s := segments(t)
	_, err = s.Of(loyalty.Member{ID: "x", Tags: make([]string, 1001)})
	require.ErrorIs(t, err, loyalty.ErrInvalid)
	assert.ErrorContains(t, err, "member x")
	_, err = s.Evaluate(context.Background(), []loyalty.Member{{ID: "ok"}, {ID: "y", Custom: map[string]any{"big": 1}, Tags: make([]string, 1001)}}, 1)
	require.ErrorIs(t, err, loyalty.ErrInvalid)

	// A segment has no event: its rules see the member alone.
	_, err = loyalty.LoadSegments("s.yaml", []byte("segments:\n  - name: a\n    rule: event.kind == 'order'\n"), nil)
	require.ErrorIs(t, err, loyalty.ErrInvalid)
	assert.ErrorContains(t, err, "unknown name event")
}
