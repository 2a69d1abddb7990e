package loyalty_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/loyalty"
)

var t0 = time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)

func day(n int) time.Time { return t0.AddDate(0, 0, n) }

func earn(key string, points int64, at, expires time.Time) loyalty.Op {
	return loyalty.Op{Key: key, Kind: loyalty.KindEarn, Points: points, At: at, ExpiresAt: expires}
}

func spend(key string, points int64, at time.Time) loyalty.Op {
	return loyalty.Op{Key: key, Kind: loyalty.KindSpend, Points: points, At: at}
}

func apply(t *testing.T, a *loyalty.Account, ops ...loyalty.Op) []loyalty.Entry {
	t.Helper()
	var out []loyalty.Entry
	for _, op := range ops {
		e, err := a.Apply(op)
		require.NoError(t, err, op.Key)
		require.NoError(t, a.Check(), op.Key)
		out = append(out, e)
	}
	return out
}

func TestSpendTakesSoonestExpiringFirst(t *testing.T) {
	a := loyalty.NewAccount("m", false)
	apply(t, a,
		earn("never", 100, day(0), time.Time{}),
		earn("late", 100, day(1), day(300)),
		earn("soon", 100, day(2), day(30)),
		earn("soon-too", 50, day(3), day(30)),
	)
	e := apply(t, a, spend("s1", 170, day(4)))[0]
	// "soon" (lot 3) and "soon-too" (lot 4) expire first, oldest first;
	// then "late"; the lot that never expires is last.
	assert.Equal(t, []loyalty.LotChange{{Lot: 3, Points: -100}, {Lot: 4, Points: -50}, {Lot: 2, Points: -20}}, e.Lots)
	assert.Equal(t, int64(-170), e.Delta)
	assert.Equal(t, int64(180), a.Balance)
}

func TestExpiryRemovesExactlyTheRemainder(t *testing.T) {
	a := loyalty.NewAccount("m", false)
	apply(t, a, earn("e1", 100, day(0), day(30)), earn("e2", 40, day(1), time.Time{}), spend("s", 30, day(5)))
	assert.Equal(t, int64(40), a.Spendable(day(30)), "the lot that expires at day 30 is not spendable then")
	assert.Equal(t, int64(70), a.ExpiringBy(day(30)))
	es, err := a.ExpireDue(day(29))
	require.NoError(t, err)
	assert.Empty(t, es, "nothing is due the day before")
	es, err = a.ExpireDue(day(30))
	require.NoError(t, err)
	require.Len(t, es, 1)
	assert.Equal(t, loyalty.KindExpire, es[0].Op.Kind)
	assert.Equal(t, int64(-70), es[0].Delta, "100 earned, 30 spent: 70 expire")
	assert.Equal(t, int64(40), a.Balance)
	require.NoError(t, a.Check())
	again, err := a.ExpireDue(day(40))
	require.NoError(t, err)
	assert.Empty(t, again, "an expired lot expires once")
}

func TestSpendExpiresDueLotsFirst(t *testing.T) {
	a := loyalty.NewAccount("m", false)
	apply(t, a, earn("e1", 100, day(0), day(30)), earn("e2", 20, day(1), time.Time{}))
	before := len(a.Journal)
	_, err := a.Apply(spend("s", 50, day(31)))
	require.ErrorIs(t, err, loyalty.ErrInsufficientPoints, "the 100 points expired at day 30")
	require.NoError(t, a.Check())
	assert.Equal(t, int64(20), a.Balance)
	require.Len(t, a.Journal, before+1, "only the expiry entry was written")
	assert.Equal(t, loyalty.KindExpire, a.Journal[before].Op.Kind)
}

func TestIdempotency(t *testing.T) {
	a := loyalty.NewAccount("m", false)
	first := apply(t, a, earn("order-1", 100, day(0), time.Time{}))[0]
	again, err := a.Apply(earn("order-1", 100, day(0), time.Time{}))
	require.NoError(t, err)
	assert.Equal(t, first, again, "a retry returns the first result")
	assert.Equal(t, int64(100), a.Balance, "and is applied once")
	_, err = a.Apply(earn("order-1", 150, day(0), time.Time{}))
	require.ErrorIs(t, err, loyalty.ErrIdempotencyConflict)
	_, err = a.Apply(spend("order-1", 100, day(0)))
	require.ErrorIs(t, err, loyalty.ErrIdempotencyConflict)
	assert.Len(t, a.Journal, 1)
}

func TestInvalidOpsChangeNothing(t *testing.T) {
	a := loyalty.NewAccount("m", false)
	apply(t, a, earn("e", 100, day(0), time.Time{}), loyalty.Op{Key: "p", Kind: loyalty.KindPending, Points: 10, At: day(0)})
	want := snapshot(a)
	for name, op := range map[string]loyalty.Op{
		"no key":             {Kind: loyalty.KindEarn, Points: 1, At: day(1)},
		"no time":            {Key: "k", Kind: loyalty.KindEarn, Points: 1},
		"zero points":        {Key: "k", Kind: loyalty.KindEarn, At: day(1)},
		"negative earn":      {Key: "k", Kind: loyalty.KindEarn, Points: -5, At: day(1)},
		"unknown kind":       {Key: "k", Kind: "gift", Points: 5, At: day(1)},
		"adjust, no reason":  {Key: "k", Kind: loyalty.KindAdjust, Points: 5, At: day(1)},
		"expiry before":      {Key: "k", Kind: loyalty.KindEarn, Points: 5, At: day(1), ExpiresAt: day(0)},
		"activate unknown":   {Key: "k", Kind: loyalty.KindActivate, Ref: "nope", At: day(1)},
		"activate active":    {Key: "k", Kind: loyalty.KindActivate, Ref: "e", At: day(1)},
		"reverse unknown":    {Key: "k", Kind: loyalty.KindReverse, Ref: "nope", At: day(1)},
		"reverse too many":   {Key: "k", Kind: loyalty.KindReverse, Ref: "e", Points: 1000, At: day(1)},
		"reverse negative":   {Key: "k", Kind: loyalty.KindReverse, Ref: "e", Points: -3, At: day(1)},
		"expire not due":     {Key: "k", Kind: loyalty.KindExpire, Ref: "e", At: day(1)},
		"overspend":          spend("k", 101, day(1)),
		"transfer, no party": {Key: "k", Kind: loyalty.KindTransfer, Points: -5, At: day(1)},
		"deduct beyond":      {Key: "k", Kind: loyalty.KindAdjust, Points: -101, At: day(1), Reason: "fraud"},
	} {
		_, err := a.Apply(op)
		require.Error(t, err, name)
		assert.True(t, errorsIsAny(err, loyalty.ErrInvalid, loyalty.ErrNotFound, loyalty.ErrInsufficientPoints), "%s: %v", name, err)
		assert.Equal(t, want, snapshot(a), name)
	}
	_, err := a.Apply(loyalty.Op{Key: "r", Kind: loyalty.KindActivate, Ref: "r2", At: day(1)})
	assert.ErrorIs(t, err, loyalty.ErrNotFound)
}

func TestPendingPoints(t *testing.T) {
	a := loyalty.NewAccount("m", false)
	apply(t, a, loyalty.Op{Key: "order-1", Kind: loyalty.KindPending, Points: 80, At: day(0), ExpiresAt: day(365)})
	assert.Equal(t, int64(0), a.Balance)
	assert.Equal(t, int64(80), a.Pending)
	_, err := a.Apply(spend("s", 10, day(1)))
	require.ErrorIs(t, err, loyalty.ErrInsufficientPoints, "pending points cannot be spent")
	e := apply(t, a, loyalty.Op{Key: "order-1/activate", Kind: loyalty.KindActivate, Ref: "order-1", At: day(14)})[0]
	assert.Equal(t, int64(80), e.Delta)
	assert.Equal(t, int64(-80), e.PendingDelta)
	assert.Equal(t, int64(80), a.Balance)
	assert.Equal(t, int64(0), a.Pending)

	// A refund within the return period cancels pending points.
	apply(t, a, loyalty.Op{Key: "order-2", Kind: loyalty.KindPending, Points: 30, At: day(15)})
	e = apply(t, a, loyalty.Op{Key: "order-2/refund", Kind: loyalty.KindReverse, Ref: "order-2", At: day(16)})[0]
	assert.Equal(t, int64(0), e.Delta)
	assert.Equal(t, int64(-30), e.PendingDelta)
	assert.Equal(t, int64(80), a.Balance)
	// The cancelled lot is closed: it cannot be activated any more.
	l, ok := a.Lot("order-2")
	require.True(t, ok)
	assert.Equal(t, loyalty.Lot{ID: 3, Key: "order-2", EarnedAt: day(15), Reversed: true}, l)
	_, err = a.Apply(loyalty.Op{Key: "order-2/activate", Kind: loyalty.KindActivate, Ref: "order-2", At: day(30)})
	require.ErrorIs(t, err, loyalty.ErrNotFound)
	require.NoError(t, a.Check())
}

// TestPartialReverse takes back part of an entry's points, as a partial
// refund does: the remainder first, then spent points (owed), never
// expired ones, and never more than the entry has left.
func TestPartialReverse(t *testing.T) {
	a := loyalty.NewAccount("m1", false)
	apply(t, a, loyalty.Op{Key: "o1", Kind: loyalty.KindEarn, Points: 100, At: day(0)})
	apply(t, a, loyalty.Op{Key: "o2", Kind: loyalty.KindEarn, Points: 50, At: day(1)})
	apply(t, a, loyalty.Op{Key: "s1", Kind: loyalty.KindSpend, Points: 80, At: day(2)}) // o1 has 20 left

	// 30 of o1: its 20 remaining, then 10 it gave to the spend, owed
	// from o2.
	e := apply(t, a, loyalty.Op{Key: "o1/r1", Kind: loyalty.KindReverse, Ref: "o1", Points: 30, At: day(3)})[0]
	assert.Equal(t, int64(-30), e.Delta)
	assert.Equal(t, int64(40), a.Balance)
	l, ok := a.Lot("o1")
	require.True(t, ok)
	assert.Equal(t, int64(70), l.Points)
	assert.False(t, l.Reversed)

	// More than o1 has left to reverse is refused and changes nothing.
	_, err := a.Apply(loyalty.Op{Key: "o1/r2", Kind: loyalty.KindReverse, Ref: "o1", Points: 71, At: day(4)})
	require.ErrorIs(t, err, loyalty.ErrInvalid)
	assert.ErrorContains(t, err, "has 70 left to reverse")
	_, err = a.Apply(loyalty.Op{Key: "o1/r2", Kind: loyalty.KindReverse, Ref: "o1", Points: -1, At: day(4)})
	require.ErrorIs(t, err, loyalty.ErrInvalid)
	assert.Equal(t, int64(40), a.Balance)

	// The rest (Points 0): 70 owed, 40 there, 30 short without
	// negative balances.
	e = apply(t, a, loyalty.Op{Key: "o1/r2", Kind: loyalty.KindReverse, Ref: "o1", At: day(4)})[0]
	assert.Equal(t, int64(30), e.Shortfall)
	assert.Equal(t, int64(0), a.Balance)
	_, err = a.Apply(loyalty.Op{Key: "o1/r3", Kind: loyalty.KindReverse, Ref: "o1", Points: 1, At: day(5)})
	require.ErrorIs(t, err, loyalty.ErrInvalid)
	require.NoError(t, a.Check())
	assert.Equal(t, map[string]int64{"o1": 100}, loyalty.TakenBack(a.Journal), "30, then the other 70")

	// Expired points are not owed: 60 of a lot that expired whole.
	b := loyalty.NewAccount("m2", true)
	apply(t, b, loyalty.Op{Key: "o1", Kind: loyalty.KindEarn, Points: 100, At: day(0), ExpiresAt: day(10)})
	apply(t, b, loyalty.Op{Key: "o2", Kind: loyalty.KindEarn, Points: 50, At: day(1)})
	apply(t, b, loyalty.Op{Key: "s1", Kind: loyalty.KindSpend, Points: 40, At: day(2)}) // o1: 60 left, then expires
	e = apply(t, b, loyalty.Op{Key: "o1/r1", Kind: loyalty.KindReverse, Ref: "o1", Points: 60, At: day(11)})[0]
	assert.Equal(t, int64(0), e.Delta, "the 60 expired already")
	assert.Equal(t, loyalty.KindExpire, b.Journal[len(b.Journal)-2].Op.Kind, "expiry came first")
	assert.Equal(t, int64(50), b.Balance)
	// The other 40 were spent: owed.
	e = apply(t, b, loyalty.Op{Key: "o1/r2", Kind: loyalty.KindReverse, Ref: "o1", At: day(12)})[0]
	assert.Equal(t, int64(-40), e.Delta)
	assert.Equal(t, int64(10), b.Balance)
	require.NoError(t, b.Check())
}

func TestReverseSpentPoints(t *testing.T) {
	t.Run("negative balance allowed", func(t *testing.T) {
		a := loyalty.NewAccount("m", true)
		apply(t, a, earn("order-1", 100, day(0), time.Time{}), spend("s", 70, day(1)))
		e := apply(t, a, loyalty.Op{Key: "refund-1", Kind: loyalty.KindReverse, Ref: "order-1", At: day(2)})[0]
		assert.Equal(t, int64(-100), e.Delta)
		assert.Equal(t, int64(-70), a.Balance, "the member owes the 70 points spent")
		assert.Equal(t, int64(70), a.Debt)
		// The next earnings pay the debt first.
		apply(t, a, earn("order-2", 50, day(3), time.Time{}))
		assert.Equal(t, int64(-20), a.Balance)
		apply(t, a, earn("order-3", 50, day(4), time.Time{}))
		assert.Equal(t, int64(30), a.Balance)
		assert.Equal(t, int64(0), a.Debt)
		_, err := a.Apply(spend("s2", 31, day(5)))
		require.ErrorIs(t, err, loyalty.ErrInsufficientPoints)
		apply(t, a, spend("s3", 30, day(5)))
	})
	t.Run("negative balance forbidden", func(t *testing.T) {
		a := loyalty.NewAccount("m", false)
		apply(t, a, earn("order-1", 100, day(0), time.Time{}), earn("order-2", 50, day(0), time.Time{}), spend("s", 120, day(1)))
		e := apply(t, a, loyalty.Op{Key: "refund-1", Kind: loyalty.KindReverse, Ref: "order-1", At: day(2)})[0]
		// order-1's lot is empty; order-2's 30 left are taken back; the
		// other 70 were spent and cannot be.
		assert.Equal(t, int64(-30), e.Delta)
		assert.Equal(t, int64(70), e.Shortfall)
		assert.Equal(t, int64(0), a.Balance)
		_, err := a.Apply(loyalty.Op{Key: "refund-1b", Kind: loyalty.KindReverse, Ref: "order-1", At: day(3)})
		require.ErrorIs(t, err, loyalty.ErrInvalid, "a lot is reversed once")
	})
	t.Run("expired points are not owed", func(t *testing.T) {
		a := loyalty.NewAccount("m", true)
		apply(t, a, earn("order-1", 100, day(0), day(10)), spend("s", 40, day(1)), earn("order-2", 100, day(2), time.Time{}))
		_, err := a.ExpireDue(day(10))
		require.NoError(t, err)
		e := apply(t, a, loyalty.Op{Key: "refund-1", Kind: loyalty.KindReverse, Ref: "order-1", At: day(11)})[0]
		assert.Equal(t, int64(-40), e.Delta, "the 40 spent are taken back; the 60 that expired are gone already")
		assert.Equal(t, int64(60), a.Balance)
	})
}

func TestLedgerTransfer(t *testing.T) {
	l := loyalty.NewLedger(false)
	_, err := l.Apply("ann", earn("e1", 100, day(0), day(50)))
	require.NoError(t, err)
	_, err = l.Apply("ann", earn("e2", 100, day(0), time.Time{}))
	require.NoError(t, err)
	sent, got, err := l.Transfer("gift-1", "ann", "bob", 150, day(1))
	require.NoError(t, err)
	assert.Equal(t, int64(-150), sent.Delta)
	assert.Equal(t, int64(150), got.Delta)
	assert.Equal(t, day(50), got.Op.ExpiresAt, "the received points expire with the soonest of those sent")
	s2, g2, err := l.Transfer("gift-1", "ann", "bob", 150, day(1))
	require.NoError(t, err)
	assert.Equal(t, sent, s2)
	assert.Equal(t, got, g2)
	assert.Equal(t, int64(50), l.Balance("ann"))
	assert.Equal(t, int64(150), l.Balance("bob"))
	_, _, err = l.Transfer("gift-2", "ann", "bob", 51, day(1))
	require.ErrorIs(t, err, loyalty.ErrInsufficientPoints)
	_, _, err = l.Transfer("gift-3", "ann", "ann", 1, day(1))
	require.ErrorIs(t, err, loyalty.ErrInvalid)
	assert.Equal(t, int64(50), l.Balance("ann"))
	assert.Equal(t, int64(150), l.Balance("bob"))
}

// TestConcurrentSpendsNeverOverspend has 100 goroutines spend the same
// points at once.
func TestConcurrentSpendsNeverOverspend(t *testing.T) {
	l := loyalty.NewLedger(false)
	_, err := l.Apply("m", earn("e", 500, day(0), time.Time{}))
	require.NoError(t, err)
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 100 {
		wg.Go(func() {
			_, err := l.Apply("m", spend(fmt.Sprintf("s%d", g), 20, day(1)))
			switch {
			case err == nil:
				ok.Add(1)
			case errorsIsAny(err, loyalty.ErrInsufficientPoints):
				refused.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(25), ok.Load())
	assert.Equal(t, int64(75), refused.Load())
	a, _ := l.Account("m")
	assert.Equal(t, int64(0), a.Balance)
	require.NoError(t, a.Check())
}

// TestLedgerProperties runs thousands of random operations against
// accounts that allow and forbid negative balances and checks the
// invariants after each one, plus what each kind of entry must do.
func TestLedgerProperties(t *testing.T) {
	for _, negative := range []bool{false, true} {
		t.Run(fmt.Sprintf("negative=%v", negative), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(len(fmt.Sprint(negative)))))
			a := loyalty.NewAccount("m", negative)
			now := day(0)
			var keys []string // keys of earn and pending entries
			applied, failed := map[loyalty.Kind]int{}, map[loyalty.Kind]int{}
			var sums journalSums
			for i := range 3000 {
				now = now.Add(time.Duration(rng.IntN(48)) * time.Hour)
				op := randomOp(rng, i, now, keys, a.Balance)
				before := stateOf(a)
				e, err := a.Apply(op)
				if err != nil {
					require.True(t, errorsIsAny(err, loyalty.ErrInsufficientPoints, loyalty.ErrInvalid, loyalty.ErrNotFound, loyalty.ErrIdempotencyConflict), "%d: %v", i, err)
					failed[op.Kind]++
					assertOnlyExpiries(t, before, a)
					sums.check(t, a, i)
					continue
				}
				applied[op.Kind]++
				if e.Shortfall > 0 || e.DebtDelta > 0 {
					applied["owed"]++
				}
				sums.check(t, a, i)
				if e.Op.Key == op.Key && (op.Kind == loyalty.KindEarn || op.Kind == loyalty.KindPending) {
					keys = append(keys, op.Key)
				}
				switch op.Kind {
				case loyalty.KindSpend:
					assertSoonestFirst(t, a, e)
				}
				if rng.IntN(20) == 0 {
					expiryBefore := stateOf(a)
					es, err := a.ExpireDue(now)
					require.NoError(t, err)
					for _, x := range es {
						lot := lotOf(expiryBefore.lots, x.Lots[0].Lot)
						assert.Equal(t, -lot.Remaining, x.Delta, "expiry takes exactly the remainder")
					}
					sums.check(t, a, i)
				}
				// A retry returns the first result and changes nothing.
				if rng.IntN(10) == 0 {
					s := stateOf(a)
					again, err := a.Apply(op)
					require.NoError(t, err)
					assert.Equal(t, e, again)
					assert.Equal(t, s, stateOf(a))
				}
			}
			for _, e := range a.Journal {
				if e.Op.Kind == loyalty.KindExpire {
					applied[loyalty.KindExpire]++
				}
			}
			require.NoError(t, a.Check())
			t.Logf("applied %v; refused %v", applied, failed)
			// Every path was taken, many times.
			for _, k := range []loyalty.Kind{loyalty.KindEarn, loyalty.KindPending, loyalty.KindActivate, loyalty.KindSpend, loyalty.KindReverse, loyalty.KindAdjust, loyalty.KindExpire, "owed"} {
				assert.Greater(t, applied[k], 20, k)
			}
			for _, k := range []loyalty.Kind{loyalty.KindEarn, loyalty.KindSpend, loyalty.KindActivate, loyalty.KindReverse} {
				assert.Greater(t, failed[k], 20, k)
			}
		})
	}
}

func randomOp(rng *rand.Rand, i int, now time.Time, keys []string, balance int64) loyalty.Op {
	key := fmt.Sprintf("op-%d", i)
	var expires time.Time
	if rng.IntN(3) > 0 {
		expires = now.AddDate(0, 0, 1+rng.IntN(90))
	}
	ref := "missing"
	if len(keys) > 0 {
		ref = keys[rng.IntN(len(keys))]
	}
	switch rng.IntN(10) {
	case 0, 1, 2:
		return earn(key, 1+rng.Int64N(100), now, expires)
	case 3:
		return loyalty.Op{Key: key, Kind: loyalty.KindPending, Points: 1 + rng.Int64N(100), At: now, ExpiresAt: expires}
	case 4:
		return loyalty.Op{Key: key, Kind: loyalty.KindActivate, Ref: ref, At: now}
	case 5, 6:
		// Around the balance, so that some spends drain it and some fail.
		return spend(key, 1+rng.Int64N(max(balance, 0)*6/5+10), now)
	case 7:
		// All the entry has left, or part of it (a partial refund;
		// sometimes more than is left, which is refused).
		var pts int64
		if rng.IntN(2) == 0 {
			pts = 1 + rng.Int64N(60)
		}
		return loyalty.Op{Key: key, Kind: loyalty.KindReverse, Ref: ref, Points: pts, At: now}
	case 8:
		return loyalty.Op{Key: key, Kind: loyalty.KindAdjust, Points: rng.Int64N(200) - 120, At: now, Reason: "support", ExpiresAt: expires}
	default:
		// A retried key with other parameters: a conflict.
		if i > 0 {
			return earn(fmt.Sprintf("op-%d", rng.IntN(i)), 999_999, now, time.Time{})
		}
		return earn(key, 1, now, time.Time{})
	}
}

// assertSoonestFirst checks that a spend drew its lots in expiry order and
// left no earlier-expiring live lot with points.
func assertSoonestFirst(t *testing.T, a *loyalty.Account, e loyalty.Entry) {
	t.Helper()
	last := e.Lots[len(e.Lots)-1].Lot
	lastLot := lotOf(allLots(a), last)
	for _, l := range a.Lots {
		if l.Pending || l.Remaining == 0 || l.ID == last {
			continue
		}
		if !l.ExpiresAt.IsZero() && !l.ExpiresAt.After(e.Op.At) {
			continue // expired, not live
		}
		sooner := !l.ExpiresAt.IsZero() && (lastLot.ExpiresAt.IsZero() || l.ExpiresAt.Before(lastLot.ExpiresAt))
		assert.False(t, sooner, "spend %s left lot %d (expires %s) and drew lot %d (expires %s)", e.Op.Key, l.ID, l.ExpiresAt, last, lastLot.ExpiresAt)
	}
}

func allLots(a *loyalty.Account) []loyalty.Lot {
	out := append([]loyalty.Lot(nil), a.Lots...)
	for _, l := range a.ClosedLots {
		out = append(out, l)
	}
	return out
}

func lotOf(lots []loyalty.Lot, id int64) loyalty.Lot {
	for _, l := range lots {
		if l.ID == id {
			return l
		}
	}
	return loyalty.Lot{}
}

// journalSums checks the invariants incrementally, summing only the new
// entries (Account.Check sums the whole journal; it runs every 100
// operations and at the end).
type journalSums struct {
	seen                   int
	balance, pending, debt int64
}

func (s *journalSums) check(t *testing.T, a *loyalty.Account, i int) {
	t.Helper()
	for _, e := range a.Journal[s.seen:] {
		s.balance += e.Delta
		s.pending += e.PendingDelta
		s.debt += e.DebtDelta
	}
	s.seen = len(a.Journal)
	var active, pending int64
	for _, l := range a.Lots {
		if l.Remaining < 0 || l.Remaining > l.Points {
			t.Fatalf("op %d: lot %d holds %d of %d", i, l.ID, l.Remaining, l.Points)
		}
		if l.Pending {
			pending += l.Remaining
		} else {
			active += l.Remaining
		}
	}
	require.Equal(t, s.balance, a.Balance, "op %d: balance == sum of the journal", i)
	require.Equal(t, active-a.Debt, a.Balance, "op %d: balance == lots - debt", i)
	require.Equal(t, s.pending, a.Pending, "op %d", i)
	require.Equal(t, pending, a.Pending, "op %d", i)
	require.Equal(t, s.debt, a.Debt, "op %d", i)
	if !a.AllowNegative {
		require.GreaterOrEqual(t, a.Balance, int64(0), "op %d", i)
	}
	if i%100 == 0 {
		require.NoError(t, a.Check(), "op %d", i)
	}
}

// state is what an operation may change: the journal only grows.
type state struct {
	balance, pending, debt int64
	lots                   []loyalty.Lot
	entries                int
}

func stateOf(a *loyalty.Account) state {
	return state{a.Balance, a.Pending, a.Debt, append([]loyalty.Lot(nil), a.Lots...), len(a.Journal)}
}

// assertOnlyExpiries checks that a failed operation changed nothing but
// for expiry entries it wrote first.
func assertOnlyExpiries(t *testing.T, before state, after *loyalty.Account) {
	t.Helper()
	require.GreaterOrEqual(t, len(after.Journal), before.entries)
	for _, e := range after.Journal[before.entries:] {
		require.Equal(t, loyalty.KindExpire, e.Op.Kind)
	}
	if len(after.Journal) == before.entries {
		require.Equal(t, before, stateOf(after))
	}
}

func snapshot(a *loyalty.Account) *loyalty.Account {
	c := loyalty.NewAccount(a.Member, a.AllowNegative)
	c.Balance, c.Pending, c.Debt = a.Balance, a.Pending, a.Debt
	c.Lots = append([]loyalty.Lot(nil), a.Lots...)
	c.Journal = append([]loyalty.Entry(nil), a.Journal...)
	return c
}

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

func TestSettlement(t *testing.T) {
	l := loyalty.NewLedger(false)
	apply := func(member string, op loyalty.Op) {
		t.Helper()
		_, err := l.Apply(member, op)
		require.NoError(t, err)
	}
	apply("ann", loyalty.Op{Key: "fuel-1", Kind: loyalty.KindEarn, Points: 80, At: day(1), Partner: "fuelco"})
	apply("bob", loyalty.Op{Key: "fuel-2", Kind: loyalty.KindEarn, Points: 40, At: day(2), Partner: "fuelco"})
	apply("bob", loyalty.Op{Key: "hotel-1", Kind: loyalty.KindPending, Points: 500, At: day(3), Partner: "hotels"})
	apply("ann", loyalty.Op{Key: "own", Kind: loyalty.KindEarn, Points: 1000, At: day(3)})
	apply("ann", loyalty.Op{Key: "spend-at-fuel", Kind: loyalty.KindSpend, Points: 60, At: day(4), Partner: "fuelco"})
	apply("bob", loyalty.Op{Key: "refund-fuel-2", Kind: loyalty.KindReverse, Ref: "fuel-2", At: day(5)})
	apply("ann", loyalty.Op{Key: "fuel-3", Kind: loyalty.KindEarn, Points: 7, At: day(40), Partner: "fuelco"})
	// A partial refund in the period, the rest in the next.
	apply("bob", loyalty.Op{Key: "refund-hotel-1a", Kind: loyalty.KindReverse, Ref: "hotel-1", Points: 200, At: day(6)})
	apply("bob", loyalty.Op{Key: "refund-hotel-1b", Kind: loyalty.KindReverse, Ref: "hotel-1", At: day(41)})

	assert.Equal(t, []loyalty.PartnerTotals{
		{Partner: "fuelco", Earned: 120, Reversed: 40, Spent: 60},
		{Partner: "hotels", Earned: 500, Reversed: 200},
	}, l.Settlement(day(0), day(30)), "the own points and day 40 are not the period's partners'")
	assert.Equal(t, []loyalty.PartnerTotals{{Partner: "fuelco", Earned: 7}, {Partner: "hotels", Reversed: 300}}, l.Settlement(day(30), day(60)))
}
