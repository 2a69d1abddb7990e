// Package analytics computes the reports managers steer by from a tenant's
// records: the sales funnel, time in stage and overdue shares, rejections,
// plan versus fact, the weighted forecast and commission; leads and
// campaign effectiveness; product popularity; RFM segments, customer
// lifetime value, cohort retention and satisfaction (NPS, CSI, CDI).
//
// A report is a method of Reports that takes a query (a period, a Slice:
// owners, team, territory, industry, source, campaign, product, as the
// report allows) and returns a Go struct. Every struct is a Report: a
// Table (CSV), a Chart (SVG, drawn by package chart) and JSON; WriteHTML
// puts reports on one self-contained page. Reports read through the crm
// engine and stream: the stage and customer reports scan facts the engine
// keeps in index values (crm.StageMove, crm.Position, crm.OrderFact)
// instead of decoding every record, the others visit records one at a
// time (crm.Records.Each), and all hold only their aggregates in memory.
// A store that can aggregate where the data lives (FunnelAggregator,
// StageAggregator, RFMAggregator) gets the funnel, stage and RFM
// aggregation pushed down to it.
//
// Every number has an exact definition, in the doc comment of the field
// that holds it; times are counted in the engine's time zone
// (crm.Options.Location). Money is summed in minor units of one currency
// and never converted.
package analytics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

// ErrInvalid means a report query is malformed: an unknown pipeline or
// kind, an empty period, conflicting options. It wraps crm.ErrInvalid, so
// errors.Is(err, crm.ErrInvalid) also holds.
var ErrInvalid = fmt.Errorf("analytics: %w", crm.ErrInvalid)

// Reports computes reports over one tenant.
type Reports struct {
	t *crm.Tenant
}

// New returns the reports of tenant t.
func New(t *crm.Tenant) *Reports { return &Reports{t: t} }

// Period is the half-open time range [From, To). A zero bound is open:
// the zero Period is all time.
type Period struct {
	From, To time.Time
}

// Month returns the calendar month of year y in loc.
func Month(y int, m time.Month, loc *time.Location) Period {
	from := time.Date(y, m, 1, 0, 0, 0, 0, loc)
	return Period{From: from, To: from.AddDate(0, 1, 0)}
}

// Contains reports whether t lies in the period.
func (p Period) Contains(t time.Time) bool {
	return (p.From.IsZero() || !t.Before(p.From)) && (p.To.IsZero() || t.Before(p.To))
}

func (p Period) validate() error {
	if !p.From.IsZero() && !p.To.IsZero() && !p.From.Before(p.To) {
		return fmt.Errorf("%w: period from %s to %s is empty", ErrInvalid, p.From.Format(time.RFC3339), p.To.Format(time.RFC3339))
	}
	return nil
}

// By names the dimension a report groups its rows by.
type By string

// Dimensions a report can group by.
const (
	// All puts every record in one group, with the key "".
	All By = ""
	// ByOwner groups by the record's owner ("" for records without one).
	// Stage reports use the owner at the time of each move.
	ByOwner By = "owner"
)

// groupKey returns the key of the group a record with this owner falls in.
func groupKey(by By, owner string) string {
	if by == ByOwner {
		return owner
	}
	return ""
}

func checkBy(by By) error {
	if by != All && by != ByOwner {
		return fmt.Errorf("%w: cannot group by %q (use %q or nothing)", ErrInvalid, by, ByOwner)
	}
	return nil
}

// staged is what stage reports need of a kind's records.
type staged interface {
	ScanMoves(ctx context.Context, q crm.MovesQuery, fn func(*crm.StageMove) error) error
	ScanPositions(ctx context.Context, pipelineName string, fn func(*crm.Position) error) error
}

// pipelineOf returns the definition of a pipeline and its records' scans.
func (r *Reports) pipelineOf(ctx context.Context, name string) (*pipeline.Definition, staged, error) {
	if name == "" {
		return nil, nil, fmt.Errorf("%w: no pipeline given", ErrInvalid)
	}
	def, err := r.t.Pipelines().Get(ctx, name)
	if errors.Is(err, crm.ErrNotFound) {
		return nil, nil, fmt.Errorf("%w: no pipeline %q in tenant %s", ErrInvalid, name, r.t.ID())
	}
	if err != nil {
		return nil, nil, err
	}
	var s staged
	switch def.Kind {
	case pipeline.KindDeal:
		s = r.t.Deals()
	case pipeline.KindLead:
		s = r.t.Leads()
	case pipeline.KindCase:
		s = r.t.Cases()
	case pipeline.KindAccount:
		s = r.t.Accounts()
	default:
		return nil, nil, fmt.Errorf("%w: pipeline %q has unknown kind %q", ErrInvalid, name, def.Kind)
	}
	return def, s, nil
}

// prepareStages checks the common parts of a stage report's query and
// returns the pipeline, its records, the slicer and each stage key's
// position.
func (r *Reports) prepareStages(ctx context.Context, report, name string, p Period, s Slice, by By) (*pipeline.Definition, staged, *slicer, map[string]int, error) {
	if err := p.validate(); err != nil {
		return nil, nil, nil, nil, err
	}
	if err := checkBy(by); err != nil {
		return nil, nil, nil, nil, err
	}
	def, recs, err := r.pipelineOf(ctx, name)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	sl, err := r.slicer(ctx, s, report, dimOwner|dimIndustry|dimSource|dimCampaign)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if err := sl.selectRecords(ctx, r.t, def.Kind); err != nil {
		return nil, nil, nil, nil, err
	}
	stageIndex := make(map[string]int, len(def.Stages))
	for i, st := range def.Stages {
		stageIndex[st.Key] = i
	}
	return def, recs, sl, stageIndex, nil
}

// sortedKeys returns a map's keys in order.
func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// periodScan visits the records whose time index lies in the period.
func periodScan(index string, p Period) crm.EachOptions {
	opts := crm.EachOptions{By: index}
	if !p.From.IsZero() {
		opts.From = crm.SortableTime(p.From)
	}
	if !p.To.IsZero() {
		opts.To = crm.SortableTime(p.To)
	}
	return opts
}

// ratio returns a/b, or 0 when b is 0.
func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// div128 returns (hi<<64 | lo) / d, saturated to the int64 range.
func div128(hi, lo, d uint64) uint64 {
	if hi >= d {
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, d)
	return min(q, math.MaxInt64)
}
