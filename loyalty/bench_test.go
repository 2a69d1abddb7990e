package loyalty_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rapportcrm/rapport/loyalty"
)

// twentySegments are typical marketing-list rules.
func twentySegments(b *testing.B) *loyalty.Segments {
	rules := []string{
		`member.total_spent >= 100000`,
		`member.order_count > 0 && daysSince(member.last_order_at) > 90`,
		`hasTag(member.tags, "vip")`,
		`member.r >= 4 && member.f >= 4 && member.m >= 4`,
		`member.r <= 2 && member.f >= 3`,
		`member.city == "Berlin" && member.industry == "construction"`,
		`member.tier == "gold"`,
		`member.tier in ["silver", "gold"] && member.balance > 1000`,
		`member.order_count == 1`,
		`member.order_count >= 10 && member.total_spent < 50000`,
		`daysSince(member.joined_at) < 30`,
		`birthdayWithin(member.birthday, 7)`,
		`age(member.birthday) >= 65`,
		`member.city in ["Paris", "Lyon", "Lille"]`,
		`"newsletter" in member.tags`,
		`member.m == 5 && member.r == 5`,
		`member.balance >= 500 && member.balance < 1000`,
		`member.industry == "retail" || member.industry == "hospitality"`,
		`member.total_spent > 0 && member.total_spent / member.order_count > 10000`,
		`!hasTag(member.tags, "no-marketing") && member.order_count > 2`,
	}
	s := &loyalty.Segments{}
	for i, r := range rules {
		s.Segments = append(s.Segments, loyalty.Segment{Name: fmt.Sprintf("s%d", i), Rule: r})
	}
	if err := s.Compile(func() time.Time { return day(0) }); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkSegments evaluates 20 segment rules over 1,000,000 members in
// memory on every CPU (goal: ≤ 2 s).
func BenchmarkSegments(b *testing.B) {
	s := twentySegments(b)
	cities := []string{"Berlin", "Paris", "Lyon", "Madrid"}
	industries := []string{"construction", "retail", "hospitality", "finance"}
	tiers := []string{"", "silver", "gold"}
	members := make([]loyalty.Member, 1_000_000)
	for i := range members {
		members[i] = loyalty.Member{ID: fmt.Sprintf("m%d", i), Tier: tiers[i%3], Tags: []string{"newsletter", "vip"}[:i%3],
			City: cities[i%4], Industry: industries[i%4/2+i%2], Birthday: day(-365 * (20 + i%60)), JoinedAt: day(-i % 400),
			Balance: int64(i % 2000), TotalSpent: int64(i%300) * 1000, OrderCount: i % 15, LastOrderAt: day(-i % 200),
			R: 1 + i%5, F: 1 + i/5%5, M: 1 + i/25%5}
	}
	var in int
	for b.Loop() {
		m, err := s.Evaluate(context.Background(), members, 0)
		if err != nil {
			b.Fatal(err)
		}
		in = 0
		for _, l := range m.Members {
			in += len(l)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20e6, "ns/rule")
	b.ReportMetric(float64(in), "memberships")
}
