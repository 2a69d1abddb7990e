package analytics

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

// FunnelQuery selects the records of a funnel.
type FunnelQuery struct {
	// Pipeline is required; its kind says which records are counted.
	Pipeline string
	// Period selects the stage entries that count, by when they happened.
	Period Period
	// Slice keeps the records of some owners (at the time of each entry)
	// and, by their attributes now, of industries (the account's; an
	// account's own), sources and campaigns (leads, and deals through
	// their lead); it takes no Product. A slice by attributes reads every
	// record of the kind once, and is never pushed down.
	Slice Slice
	By    By
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
// 24 bytes per stage entry until it has counted them; a store that
// implements FunnelAggregator counts them itself.
func (r *Reports) Funnel(ctx context.Context, q FunnelQuery) (*Funnel, error) {
	def, recs, sl, stageIndex, err := r.prepareStages(ctx, "funnel", q.Pipeline, q.Period, q.Slice, q.By)
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

	var counts []FunnelCounts
	agg, ok := aggregator[FunnelAggregator](r)
	if ok && sl.pushable() {
		fq, err := r.factsQuery(def, q.Period, sl, q.By)
		if err != nil {
			return nil, err
		}
		counts, err = agg.AggregateFunnel(ctx, FunnelAggregate{FactsQuery: fq, PathRank: pathPos})
		if ok, err = pushed(err); err != nil {
			return nil, err
		}
		if ok {
			if err := checkCounts(counts, len(def.Stages)); err != nil {
				return nil, err
			}
		}
	}
	if !ok {
		if counts, err = streamFunnel(ctx, recs, q, def, sl, stageIndex, pathPos); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(counts, func(a, b FunnelCounts) int { return cmp.Compare(a.Group, b.Group) })
	if q.By == All && len(counts) == 0 {
		counts = []FunnelCounts{{Entered: make([]int, len(def.Stages)), Furthest: make([]int, len(def.Stages))}}
	}

	out := &Funnel{Pipeline: q.Pipeline, Period: q.Period, By: q.By}
	for _, c := range counts {
		// reached[p] = records whose furthest position is p or later.
		reached := make([]int, len(path)+1)
		for p := len(path) - 1; p >= 0; p-- {
			reached[p] = reached[p+1] + c.Furthest[path[p]]
		}
		fg := FunnelGroup{Key: c.Group, Stages: make([]FunnelStage, len(def.Stages))}
		for i, s := range def.Stages {
			fs := FunnelStage{Stage: s.Key, Label: s.Label, Terminal: s.Terminal, Entered: c.Entered[i], Reached: c.Entered[i]}
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

// checkCounts checks that an aggregator's counts have one value per
// stage and distinct groups.
func checkCounts(counts []FunnelCounts, stages int) error {
	seen := map[string]bool{}
	for _, c := range counts {
		if len(c.Entered) != stages || len(c.Furthest) != stages || seen[c.Group] {
			return fmt.Errorf("analytics: funnel aggregator: group %q: %d and %d counts for %d stages, or a repeated group", c.Group, len(c.Entered), len(c.Furthest), stages)
		}
		seen[c.Group] = true
	}
	return nil
}

// streamFunnel counts the funnel from the stage changes.
func streamFunnel(ctx context.Context, recs staged, q FunnelQuery, def *pipeline.Definition, sl *slicer, stageIndex map[string]int, pathPos []int) ([]FunnelCounts, error) {
	// Every entry becomes (record key, group, stage) and goes to one of
	// 256 buckets by the key's last byte (random in engine-assigned
	// IDs), so that all the entries of a record share a bucket. Sorted,
	// the entries of one record in one group come together, and a pass
	// counts them. Sorting a bucket at a time keeps the work in cache and
	// never needs one slice of every entry; sorting is cheaper than a hash
	// map over a million records.
	var ids recordKeys
	var groups groupNumbers
	var buckets [256][][]entry
	const bucketChunk = 4096
	err := recs.ScanMoves(ctx, crm.MovesQuery{Pipeline: q.Pipeline, From: q.Period.From, To: q.Period.To}, func(m *crm.StageMove) error {
		i, ok := stageIndex[m.To]
		if !ok || !sl.keep(m.RecordID, m.Owner) {
			return nil
		}
		k := ids.key(m.RecordID)
		e := entry{hi: binary.BigEndian.Uint64(k[:8]), lo: binary.BigEndian.Uint64(k[8:]), group: groups.number(groupKey(q.By, m.Owner)), stage: int32(i)}
		b := &buckets[byte(e.lo)]
		if len(*b) == 0 || len((*b)[len(*b)-1]) == bucketChunk {
			*b = append(*b, make([]entry, 0, bucketChunk))
		}
		last := &(*b)[len(*b)-1]
		*last = append(*last, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	counts := make([]FunnelCounts, len(groups.keys))
	for g, key := range groups.keys {
		counts[g] = FunnelCounts{Group: key, Entered: make([]int, len(def.Stages)), Furthest: make([]int, len(def.Stages))}
	}
	seen := make([]bool, len(def.Stages))
	var entries []entry // one bucket's, reused
	for b := range buckets {
		entries = entries[:0]
		for _, ch := range buckets[b] {
			entries = append(entries, ch...)
		}
		buckets[b] = nil
		slices.SortFunc(entries, func(a, b entry) int {
			switch {
			case a.hi != b.hi:
				return cmp.Compare(a.hi, b.hi)
			case a.lo != b.lo:
				return cmp.Compare(a.lo, b.lo)
			}
			return cmp.Compare(a.group, b.group)
		})
		for i := 0; i < len(entries); {
			e := entries[i]
			furthest := -1
			clear(seen)
			j := i
			for ; j < len(entries) && entries[j].group == e.group && entries[j].hi == e.hi && entries[j].lo == e.lo; j++ {
				st := entries[j].stage
				if !seen[st] {
					seen[st] = true
					counts[e.group].Entered[st]++
					if furthest < 0 || pathPos[st] > pathPos[furthest] {
						furthest = int(st)
					}
				}
			}
			if furthest >= 0 && pathPos[furthest] >= 0 {
				counts[e.group].Furthest[furthest]++
			}
			i = j
		}
	}
	return counts, nil
}

// entry is one stage entry of a record, for counting: the record's key
// (recordKeys) as two big-endian halves, which compare as the key does.
type entry struct {
	hi, lo uint64
	group  uint32
	stage  int32
}

// chunked collects values in fixed-size chunks, so that collecting
// millions never copies them (as a growing slice does, again and again).
type chunked[T any] struct {
	chunks [][]T
	n      int
}

const chunkLen = 1 << 15

// all returns the values in one slice, copying them once, and empties c.
func (c *chunked[T]) all() []T {
	out := make([]T, 0, c.n)
	for _, ch := range c.chunks {
		out = append(out, ch...)
	}
	c.chunks, c.n = nil, 0
	return out
}

func (c *chunked[T]) add(v T) {
	if len(c.chunks) == 0 || len(c.chunks[len(c.chunks)-1]) == cap(c.chunks[len(c.chunks)-1]) {
		// Chunks grow with the count up to chunkLen, so that a few
		// values take little memory.
		c.chunks = append(c.chunks, make([]T, 0, min(chunkLen, max(64, c.n))))
	}
	last := &c.chunks[len(c.chunks)-1]
	*last = append(*last, v)
	c.n++
}

// groupNumbers numbers group keys in the order they are first seen.
type groupNumbers struct {
	numbers map[string]uint32
	keys    []string
	// last caches the previous key's number: moves of one group often
	// come together, and without grouping there is one group.
	last   string
	lastNo uint32
	cached bool
}

func (g *groupNumbers) number(key string) uint32 {
	if g.cached && key == g.last {
		return g.lastNo
	}
	if g.numbers == nil {
		g.numbers = map[string]uint32{}
	}
	n, ok := g.numbers[key]
	if !ok {
		n = uint32(len(g.keys))
		g.numbers[key] = n
		g.keys = append(g.keys, key)
	}
	g.last, g.lastNo, g.cached = key, n, true
	return n
}

// recordKeys gives record IDs fixed-size keys. A canonical RFC 9562 UUID
// (versions 1-8, the usual variant: every ID the engine assigns) is its
// own 16 bytes. Any other ID is numbered through a map, into a key whose
// version nibble is 0xf, which no accepted UUID has, so the two kinds of
// key never meet.
type recordKeys struct {
	others map[string][16]byte
	names  []string // the other IDs, by number
}

// id returns the record ID of key k.
func (r *recordKeys) id(k [16]byte) string {
	if k[6]>>4 == 0xf {
		return r.names[binary.BigEndian.Uint64(k[8:])]
	}
	var b [36]byte
	hex.Encode(b[:8], k[:4])
	hex.Encode(b[9:13], k[4:6])
	hex.Encode(b[14:18], k[6:8])
	hex.Encode(b[19:23], k[8:10])
	hex.Encode(b[24:], k[10:])
	b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
	return string(b[:])
}

func (r *recordKeys) key(id string) [16]byte {
	if u, ok := parseUUID(id); ok {
		return u
	}
	if k, ok := r.others[id]; ok {
		return k
	}
	if r.others == nil {
		r.others = map[string][16]byte{}
	}
	var k [16]byte
	k[6] = 0xf0
	binary.BigEndian.PutUint64(k[8:], uint64(len(r.others)))
	id = strings.Clone(id) // kept: it may share memory with other keys
	r.others[id] = k
	r.names = append(r.names, id)
	return k
}

// parseUUID reads a canonical lower-case UUID
// (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx) of version 1 to 8 and the RFC
// 9562 variant. Anything else is not one, even if it names the same UUID
// differently, so the same ID always gets the same key.
func parseUUID(s string) (u [16]byte, ok bool) {
	if len(s) != 36 {
		return u, false
	}
	_ = s[35]
	if s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	// Two digits make a byte; an invalid digit (0xff) sets bit 7 of bad.
	// Unrolled, with constant offsets: twice as fast as a loop, and a
	// report parses one ID per record.
	pair := func(i int) (byte, uint16) {
		hi, lo := hexDigit[s[i]], hexDigit[s[i+1]]
		return hi<<4 | lo&0x0f, uint16(hi) | uint16(lo)
	}
	var bad, b uint16
	u[0], b = pair(0)
	bad |= b
	u[1], b = pair(2)
	bad |= b
	u[2], b = pair(4)
	bad |= b
	u[3], b = pair(6)
	bad |= b
	u[4], b = pair(9)
	bad |= b
	u[5], b = pair(11)
	bad |= b
	u[6], b = pair(14)
	bad |= b
	u[7], b = pair(16)
	bad |= b
	u[8], b = pair(19)
	bad |= b
	u[9], b = pair(21)
	bad |= b
	u[10], b = pair(24)
	bad |= b
	u[11], b = pair(26)
	bad |= b
	u[12], b = pair(28)
	bad |= b
	u[13], b = pair(30)
	bad |= b
	u[14], b = pair(32)
	bad |= b
	u[15], b = pair(34)
	bad |= b
	if bad&0x80 != 0 {
		return u, false
	}
	if v := u[6] >> 4; v < 1 || v > 8 || u[8]&0xc0 != 0x80 {
		return u, false
	}
	return u, true
}

// hexDigit maps a lower-case hex digit to its value, and anything else to
// 0xff.
var hexDigit = func() (t [256]byte) {
	for c := range t {
		switch {
		case c >= '0' && c <= '9':
			t[c] = byte(c - '0')
		case c >= 'a' && c <= 'f':
			t[c] = byte(c - 'a' + 10)
		default:
			t[c] = 0xff
		}
	}
	return t
}()
