package analytics

import (
	"cmp"
	"context"
	"fmt"
	"math/bits"
	"slices"
	"time"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

// StagesQuery selects the records of a stage report.
type StagesQuery struct {
	// Pipeline is required.
	Pipeline string
	// Period selects the stays that count, by when they ended.
	Period Period
	// Slice is as for FunnelQuery: stays by the owner at the move out,
	// current records by their owner now.
	Slice Slice
	By    By
}

// StageTimes reports how long records stay in each stage of a pipeline,
// and how many of those in it now are overdue.
type StageTimes struct {
	Pipeline string
	Period   Period
	By       By
	// At is the engine clock's time the current counts were taken at.
	At time.Time
	// Groups has one group per value of By, in key order; with By All it
	// has exactly one group, with the key "".
	Groups []StageTimesGroup
}

// StageTimesGroup is the stage report of one group of records.
type StageTimesGroup struct {
	Key    string
	Stages []StageTime
}

// StageTime is one stage of a stage report, in the pipeline's order.
type StageTime struct {
	Stage, Label string
	Terminal     pipeline.Terminal
	// Norm is the stage's time norm ("" for none).
	Norm string
	// Exits counts the stays in the stage that ended in the period: moves
	// out of it, including to another pipeline, grouped by the owner at
	// the time of the move.
	Exits int
	// Average is the mean length of those stays, rounded toward zero to
	// the nanosecond. Median is their middle length (the lower of the two
	// middle ones for an even count). Both are 0 without exits.
	Average, Median time.Duration
	// Current counts the records in the stage at At, grouped by their
	// owner now; Overdue counts those of them whose due time (by the
	// stage's norm or an SLA) is before At. OverdueShare is
	// Overdue/Current, 0 when Current is 0. Terminal stages are never
	// overdue.
	Current, Overdue int
	OverdueShare     float64
}

// Stages computes the time-in-stage report of q.Pipeline: stays from the
// stage history, current counts from the records' positions, both from
// index values only. Each stay's length is kept until the medians are
// taken. A store that implements StageAggregator computes the numbers
// itself.
func (r *Reports) Stages(ctx context.Context, q StagesQuery) (*StageTimes, error) {
	def, recs, sl, stageIndex, err := r.prepareStages(ctx, "stages", q.Pipeline, q.Period, q.Slice, q.By)
	if err != nil {
		return nil, err
	}
	now := r.t.Now()
	var counts []StageCounts
	agg, ok := aggregator[StageAggregator](r)
	if ok && sl.pushable() {
		fq, err := r.factsQuery(def, q.Period, sl, q.By)
		if err != nil {
			return nil, err
		}
		counts, err = agg.AggregateStages(ctx, StageAggregate{FactsQuery: fq, At: now})
		if ok, err = pushed(err); err != nil {
			return nil, err
		}
		if ok {
			if err := checkStageCounts(counts, len(def.Stages)); err != nil {
				return nil, err
			}
		}
	}
	if !ok {
		if counts, err = streamStages(ctx, recs, q, len(def.Stages), sl, stageIndex, now); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(counts, func(a, b StageCounts) int { return cmp.Compare(a.Group, b.Group) })
	if q.By == All && len(counts) == 0 {
		counts = []StageCounts{newStageCounts("", len(def.Stages))}
	}

	out := &StageTimes{Pipeline: q.Pipeline, Period: q.Period, By: q.By, At: now}
	for _, c := range counts {
		g := StageTimesGroup{Key: c.Group, Stages: make([]StageTime, len(def.Stages))}
		for i, s := range def.Stages {
			st := StageTime{Stage: s.Key, Label: s.Label, Terminal: s.Terminal, Current: c.Current[i],
				Exits: c.Exits[i], Average: c.Average[i], Median: c.Median[i]}
			if s.Terminal == pipeline.Open {
				st.Overdue = c.Overdue[i]
			}
			if st.Label == "" {
				st.Label = s.Key
			}
			if !s.Norm.IsZero() {
				st.Norm = s.Norm.String()
			}
			st.OverdueShare = ratio(st.Overdue, st.Current)
			g.Stages[i] = st
		}
		out.Groups = append(out.Groups, g)
	}
	return out, nil
}

func newStageCounts(group string, stages int) StageCounts {
	return StageCounts{Group: group, Exits: make([]int, stages), Average: make([]time.Duration, stages),
		Median: make([]time.Duration, stages), Current: make([]int, stages), Overdue: make([]int, stages)}
}

// checkStageCounts checks that an aggregator's counts have one value per
// stage and distinct groups.
func checkStageCounts(counts []StageCounts, stages int) error {
	seen := map[string]bool{}
	for _, c := range counts {
		for _, n := range []int{len(c.Exits), len(c.Average), len(c.Median), len(c.Current), len(c.Overdue)} {
			if n != stages {
				return fmt.Errorf("analytics: stage aggregator: group %q has %d values for %d stages", c.Group, n, stages)
			}
		}
		if seen[c.Group] {
			return fmt.Errorf("analytics: stage aggregator: group %q repeated", c.Group)
		}
		seen[c.Group] = true
	}
	return nil
}

// streamStages computes the stage numbers from the stage changes and the
// positions.
func streamStages(ctx context.Context, recs staged, q StagesQuery, stages int, sl *slicer, stageIndex map[string]int, now time.Time) ([]StageCounts, error) {
	type acc struct {
		stays []chunked[time.Duration]
		StageCounts
	}
	groups := map[string]*acc{}
	group := func(key string) *acc {
		a := groups[key]
		if a == nil {
			a = &acc{stays: make([]chunked[time.Duration], stages), StageCounts: newStageCounts(key, stages)}
			groups[key] = a
		}
		return a
	}
	err := recs.ScanMoves(ctx, crm.MovesQuery{Pipeline: q.Pipeline, From: q.Period.From, To: q.Period.To}, func(m *crm.StageMove) error {
		i, ok := stageIndex[m.From]
		if !ok || !sl.keep(m.RecordID, m.Owner) {
			return nil
		}
		a := group(groupKey(q.By, m.Owner))
		a.stays[i].add(m.InPrevious)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = recs.ScanPositions(ctx, q.Pipeline, func(p *crm.Position) error {
		i, ok := stageIndex[p.Stage]
		if !ok || !sl.keep(p.RecordID, p.Owner) {
			return nil
		}
		a := group(groupKey(q.By, p.Owner))
		a.Current[i]++
		if !p.DueAt.IsZero() && p.DueAt.Before(now) {
			a.Overdue[i]++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]StageCounts, 0, len(groups))
	for _, a := range groups {
		for i := range a.stays {
			a.Exits[i], a.Average[i], a.Median[i] = summarize(a.stays[i].all())
		}
		out = append(out, a.StageCounts)
	}
	return out, nil
}

// summarize returns the count, mean and median of d, sorting d. The mean
// is summed in 128 bits, so no realistic input overflows.
func summarize(d []time.Duration) (n int, mean, median time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	var hi, lo uint64 // the sum as a 128-bit unsigned number (stays are never negative)
	for _, v := range d {
		var carry uint64
		lo, carry = bits.Add64(lo, uint64(v), 0)
		hi += carry
	}
	q := div128(hi, lo, uint64(len(d)))
	return len(d), time.Duration(q), d[(len(d)-1)/2]
}
