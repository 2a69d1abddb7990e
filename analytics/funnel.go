package analytics

import (
	"context"
	"math/bits"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

// FunnelQuery selects the records of a funnel.
type FunnelQuery struct {
	// Pipeline is required; its kind says which records are counted.
	Pipeline string
	// Period selects the stage entries that count, by when they happened.
	Period Period
	Slice  Slice
	By     By
}

// Funnel is the sales funnel of a pipeline over a period: how many
// records entered each stage, and how many went on to the next.
type Funnel struct {
	Pipeline string
	Period   Period
	By       By
	// Groups has one group per value of By, in key order; with By All it
	// has exactly one group, with the key "", even when it is empty.
	Groups []FunnelGroup
}

// FunnelGroup is the funnel of one group of records.
type FunnelGroup struct {
	Key    string
	Stages []FunnelStage
}

// FunnelStage is one stage of a funnel, in the pipeline's order.
//
// The path of a pipeline is its open stages followed by the stages that
// end it well (won, converted, closed), in definition order; lost and
// disqualified stages are off the path. Entries are stage changes (and
// the entry into the pipeline on create) whose time lies in the period;
// a record is counted once per stage however often it entered it, and in
// the group of its owner at the time of the entry. Stages that the
// current definition no longer has are left out.
type FunnelStage struct {
	Stage, Label string
	Terminal     pipeline.Terminal
	// Entered counts the distinct records that entered the stage.
	Entered int
	// Reached counts the distinct records that entered the stage or a
	// later stage of the path, so that records that skip a stage still
	// count as having passed it. Off the path, Reached equals Entered.
	Reached int
	// Conversion is Reached of the next stage of the path divided by
	// Reached of this one: the stage-to-stage conversion. It is 0 for the
	// last stage of the path, for stages off the path and when Reached is
	// 0.
	Conversion float64
}

// Funnel computes the funnel of q.Pipeline. It reads the stage changes of
// the period only, from index values (crm.Staged.ScanMoves), and keeps
// one bit per stage for each record seen.
func (r *Reports) Funnel(ctx context.Context, q FunnelQuery) (*Funnel, error) {
	if err := q.Period.validate(); err != nil {
		return nil, err
	}
	if err := checkBy(q.By); err != nil {
		return nil, err
	}
	def, recs, err := r.pipelineOf(ctx, q.Pipeline)
	if err != nil {
		return nil, err
	}
	keep, err := r.owners(ctx, q.Slice)
	if err != nil {
		return nil, err
	}
	stageIndex := make(map[string]int, len(def.Stages))
	for i, s := range def.Stages {
		stageIndex[s.Key] = i
	}
	words := (len(def.Stages) + 63) / 64
	// seen maps a record (prefixed by its group when grouping) to its
	// slot; bits holds words bits per slot, group the slot's group.
	seen := map[string]int32{}
	var bitset []uint64
	var slotGroup []int32
	groups := map[string]int32{}
	var groupKeys []string
	if q.By == All {
		groups[""] = 0
		groupKeys = append(groupKeys, "")
	}
	err = recs.ScanMoves(ctx, crm.MovesQuery{Pipeline: q.Pipeline, From: q.Period.From, To: q.Period.To}, func(m *crm.StageMove) error {
		i, ok := stageIndex[m.To]
		if !ok || (keep != nil && !keep[m.Owner]) {
			return nil
		}
		gk := groupKey(q.By, m.Owner)
		key := m.RecordID
		if q.By != All {
			key = gk + "\x1f" + m.RecordID
		}
		slot, ok := seen[key]
		if !ok {
			g, ok := groups[gk]
			if !ok {
				g = int32(len(groupKeys))
				groups[gk] = g
				groupKeys = append(groupKeys, gk)
			}
			slot = int32(len(slotGroup))
			seen[key] = slot
			slotGroup = append(slotGroup, g)
			bitset = append(bitset, make([]uint64, words)...)
		}
		bitset[int(slot)*words+i/64] |= 1 << (i % 64)
		return nil
	})
	if err != nil {
		return nil, err
	}

	// pathPos is a stage's position on the path, or -1 off it.
	pathPos := make([]int, len(def.Stages))
	var path []int
	for i, s := range def.Stages {
		pathPos[i] = -1
		switch s.Terminal {
		case pipeline.Open:
			pathPos[i] = len(path)
			path = append(path, i)
		}
	}
	for i, s := range def.Stages {
		switch s.Terminal {
		case pipeline.Won, pipeline.Converted, pipeline.Closed:
			pathPos[i] = len(path)
			path = append(path, i)
		}
	}
	entered := make([][]int, len(groupKeys))
	reachedUpTo := make([][]int, len(groupKeys)) // records whose furthest path position is p
	for g := range groupKeys {
		entered[g] = make([]int, len(def.Stages))
		reachedUpTo[g] = make([]int, len(path))
	}
	for slot, g := range slotGroup {
		furthest := -1
		for w := range words {
			b := bitset[slot*words+w]
			for b != 0 {
				i := w*64 + bits.TrailingZeros64(b)
				b &= b - 1
				entered[g][i]++
				furthest = max(furthest, pathPos[i])
			}
		}
		if furthest >= 0 {
			reachedUpTo[g][furthest]++
		}
	}

	out := &Funnel{Pipeline: q.Pipeline, Period: q.Period, By: q.By}
	order := sortedKeys(groups)
	for _, gk := range order {
		g := groups[gk]
		// reached[p] = records whose furthest position is p or later.
		reached := make([]int, len(path)+1)
		for p := len(path) - 1; p >= 0; p-- {
			reached[p] = reached[p+1] + reachedUpTo[g][p]
		}
		fg := FunnelGroup{Key: gk, Stages: make([]FunnelStage, len(def.Stages))}
		for i, s := range def.Stages {
			fs := FunnelStage{Stage: s.Key, Label: s.Label, Terminal: s.Terminal, Entered: entered[g][i], Reached: entered[g][i]}
			if fs.Label == "" {
				fs.Label = s.Key
			}
			if p := pathPos[i]; p >= 0 {
				fs.Reached = reached[p]
				if p+1 < len(path) {
					fs.Conversion = ratio(reached[p+1], reached[p])
				}
			}
			fg.Stages[i] = fs
		}
		out.Groups = append(out.Groups, fg)
	}
	return out, nil
}
