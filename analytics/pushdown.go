package analytics

import (
	"context"
	"errors"
	"time"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

// Pushdown. The funnel, the stage report and RFM aggregate millions of
// facts into a few numbers. A store that can compute those numbers where
// the data lives (a SQL database, over typed columns) implements the
// matching interface below; the report then asks the tenant's store
// (crm.Tenant.Store) for the aggregates instead of streaming the facts
// through the engine, and only dresses them (labels, conversions,
// scores). A store that does not implement an interface, or returns an
// error that wraps errors.ErrUnsupported for a query, gets the streaming
// path. Either way the report is the same: an implementation must give
// exactly the numbers the streaming path gives over the facts that
// crm.Staged.ScanMoves, crm.Staged.ScanPositions and
// crm.Tenant.ScanOrderFacts report, with the definitions in the doc
// comments of the report fields.

// FunnelAggregator computes funnel counts where the data lives.
type FunnelAggregator interface {
	AggregateFunnel(ctx context.Context, q FunnelAggregate) ([]FunnelCounts, error)
}

// StageAggregator computes the numbers of a stage report where the data
// lives.
type StageAggregator interface {
	AggregateStages(ctx context.Context, q StageAggregate) ([]StageCounts, error)
}

// RFMAggregator computes per-customer order totals where the data lives.
type RFMAggregator interface {
	AggregateRFM(ctx context.Context, q RFMAggregate) ([]CustomerTotals, error)
}

// FactsQuery selects the stage facts of a pushed-down stage report.
type FactsQuery struct {
	Tenant string
	// Kind is the kind of records the pipeline holds; Records is their
	// collection and Timeline the collection of their stage changes
	// (crm.FactsCollections).
	Kind              pipeline.Kind
	Records, Timeline string
	Pipeline          string
	// From and To bound the moves' times: From <= At < To; a zero bound
	// is open.
	From, To time.Time
	// Stages are the pipeline's stage keys in definition order; counts
	// are per stage, in this order. Facts about other stages are left
	// out.
	Stages []string
	// Owners, when not nil, keeps only the facts whose owner (at the time
	// of the move, or now for positions) is one of them. It is never
	// empty but not nil.
	Owners []string
	// ByOwner groups by that owner; otherwise there is one group, "".
	ByOwner bool
}

// FunnelAggregate asks for the entries into each stage of the moves
// that FactsQuery selects.
type FunnelAggregate struct {
	FactsQuery
	// PathRank is each stage's position on the funnel's path (the same
	// length as Stages), -1 for a stage off the path.
	PathRank []int
}

// FunnelCounts are the funnel counts of one group.
type FunnelCounts struct {
	Group string
	// Entered counts, per stage, the distinct records with a move into
	// the stage.
	Entered []int
	// Furthest counts, per stage on the path, the distinct records whose
	// move with the highest PathRank is into the stage; 0 off the path.
	Furthest []int
}

// StageAggregate asks for the stays that ended in the period (moves out
// of a stage, grouped by the owner at the move) and for where the records
// are at At (grouped by their owner now). Period bounds do not apply to
// positions.
type StageAggregate struct {
	FactsQuery
	At time.Time
}

// StageCounts are the numbers of one group of a stage report, per stage.
type StageCounts struct {
	Group string
	// Exits counts the moves out of the stage; Average is the mean time
	// the records had been in it (InPrevious), rounded toward zero to the
	// nanosecond; Median the lower middle one.
	Exits           []int
	Average, Median []time.Duration
	// Current counts the records in the stage; Overdue those of them due
	// before At (Position.DueAt set and before At), whatever the stage.
	Current, Overdue []int
}

// RFMAggregate asks for the order totals of every customer.
type RFMAggregate struct {
	Tenant string
	// Orders is the collection of orders (crm.OrdersCollection).
	Orders string
	// Currency, when set, keeps only orders in it.
	Currency string
}

// CustomerTotals are one customer's orders in one currency. Rows come in
// customer ID order, then currency order; a customer whose orders in a
// currency are all refunds has a row with Frequency 0.
type CustomerTotals struct {
	CustomerID, Currency string
	// Frequency counts the orders that are not refunds; Last is the time
	// of the latest of them. Monetary sums the totals of all the orders,
	// refunds included, in minor units.
	Frequency int
	Last      time.Time
	Monetary  int64
}

// aggregator returns the tenant's store as A, if it implements it.
func aggregator[A any](r *Reports) (A, bool) {
	a, ok := r.t.Store().(A)
	return a, ok
}

// pushed reports whether a pushdown answered: false, with no error, when
// the store declined the query (errors.ErrUnsupported).
func pushed(err error) (bool, error) {
	if errors.Is(err, errors.ErrUnsupported) {
		return false, nil
	}
	return err == nil, err
}

// factsQuery builds the FactsQuery of a stage report.
func (r *Reports) factsQuery(def *pipeline.Definition, p Period, sl *slicer, by By) (FactsQuery, error) {
	records, timeline, err := crm.FactsCollections(def.Kind)
	if err != nil {
		return FactsQuery{}, err
	}
	q := FactsQuery{Tenant: r.t.ID(), Kind: def.Kind, Records: records, Timeline: timeline, Pipeline: def.Name, From: p.From, To: p.To, ByOwner: by == ByOwner}
	for _, s := range def.Stages {
		q.Stages = append(q.Stages, s.Key)
	}
	if sl.owners != nil {
		q.Owners = sortedKeys(sl.owners)
	}
	return q, nil
}
