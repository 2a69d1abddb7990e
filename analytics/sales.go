package analytics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

// dealPipelines returns the named deal pipeline, or every deal pipeline
// when name is "".
func (r *Reports) dealPipelines(ctx context.Context, name string) ([]*pipeline.Definition, error) {
	if name == "" {
		return r.t.Pipelines().List(ctx, pipeline.KindDeal)
	}
	def, _, err := r.pipelineOf(ctx, name)
	if err != nil {
		return nil, err
	}
	if def.Kind != pipeline.KindDeal {
		return nil, fmt.Errorf("%w: pipeline %q is for %ss, not deals", ErrInvalid, name, def.Kind)
	}
	return []*pipeline.Definition{def}, nil
}

// closedDeal is a deal's move into a won or lost stage, with the deal as
// it is now.
type closedDeal struct {
	move crm.StageMove
	deal crm.Deal
}

// closedDeals returns the moves into stages with the given terminal
// outcome in the period, of the deals and owners (at the move) the slice
// keeps, in time order per pipeline. Deals deleted since are left out.
func (r *Reports) closedDeals(ctx context.Context, defs []*pipeline.Definition, p Period, sl *slicer, outcome pipeline.Terminal) ([]closedDeal, error) {
	var out []closedDeal
	deals := r.t.Deals()
	for _, def := range defs {
		closing := map[string]bool{}
		for _, st := range def.Stages {
			if st.Terminal == outcome {
				closing[st.Key] = true
			}
		}
		if len(closing) == 0 {
			continue
		}
		var moves []crm.StageMove
		err := deals.ScanMoves(ctx, crm.MovesQuery{Pipeline: def.Name, From: p.From, To: p.To}, func(m *crm.StageMove) error {
			if closing[m.To] && sl.owner(m.Owner) {
				moves = append(moves, *m)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, m := range moves {
			d, err := deals.Get(ctx, m.RecordID)
			if errors.Is(err, crm.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if !sl.deal(&d) {
				continue
			}
			out = append(out, closedDeal{move: m, deal: d})
		}
	}
	return out, nil
}

// LostQuery selects the deals of a rejections report.
type LostQuery struct {
	// Pipeline names one deal pipeline; "" takes every deal pipeline.
	Pipeline string
	// Period selects the losses by when the deal moved to a lost stage.
	Period Period
	// Slice keeps the deals of some owners (the owner at the time of the
	// loss), industries, sources and campaigns; it takes no Product.
	Slice Slice
	// Currency is the currency of the lost value: deals in other
	// currencies count in Deals but not in Value. Empty means the one
	// currency the lost deals are in; several are then an error.
	Currency string
}

// Lost reports where deals are lost: the losses of the period counted and
// valued by the stage they were lost from, the reason given, the owner
// and the industry of the deal's account.
type Lost struct {
	Pipeline string
	Period   Period
	Currency string
	// Total covers every loss; the other lists split it, each in key
	// order ("" collects losses without a reason, owner or industry).
	Total      LostRow
	ByStage    []LostRow
	ByReason   []LostRow
	ByOwner    []LostRow
	ByIndustry []LostRow
}

// LostRow is one group of losses.
type LostRow struct {
	Key string
	// Deals counts moves to a lost stage (a deal lost, reopened and lost
	// again counts twice).
	Deals int
	// Value is the sum of those deals' amounts now, in minor units of
	// Lost.Currency; deals without an amount add 0.
	Value int64
}

// Lost computes the rejections report: every move of a deal to a stage
// whose terminal outcome is lost, in the period. The reason is the one
// given with the move (pipeline.Definition.LostReasons); the stage is
// the one the deal left; owner and industry are the deal's owner at the
// move and its account's industry now.
func (r *Reports) Lost(ctx context.Context, q LostQuery) (*Lost, error) {
	if err := q.Period.validate(); err != nil {
		return nil, err
	}
	pick, err := newCurrencyPick(q.Currency, "LostQuery.Currency")
	if err != nil {
		return nil, err
	}
	defs, err := r.dealPipelines(ctx, q.Pipeline)
	if err != nil {
		return nil, err
	}
	sl, err := r.slicer(ctx, q.Slice, "lost", dimOwner|dimIndustry|dimSource|dimCampaign)
	if err != nil {
		return nil, err
	}
	lost, err := r.closedDeals(ctx, defs, q.Period, sl, pipeline.Lost)
	if err != nil {
		return nil, err
	}
	groups := [4]map[string]*LostRow{{}, {}, {}, {}}
	var total LostRow
	industries := map[string]string{}
	for _, c := range lost {
		value := int64(0)
		ok, err := pick.keep(c.deal.Amount)
		if err != nil {
			return nil, err
		}
		if ok {
			value = c.deal.Amount.Amount
		}
		reason, err := r.lostReason(ctx, &c.move)
		if err != nil {
			return nil, err
		}
		industry, err := r.industry(ctx, industries, c.deal.AccountID)
		if err != nil {
			return nil, err
		}
		for i, key := range [4]string{c.move.From, reason, c.move.Owner, industry} {
			row := groups[i][key]
			if row == nil {
				row = &LostRow{Key: key}
				groups[i][key] = row
			}
			row.Deals++
			if err := addMoney(&row.Value, value, "lost value"); err != nil {
				return nil, err
			}
		}
		total.Deals++
		if err := addMoney(&total.Value, value, "lost value"); err != nil {
			return nil, err
		}
	}
	rows := func(m map[string]*LostRow) []LostRow {
		out := make([]LostRow, 0, len(m))
		for _, k := range sortedKeys(m) {
			out = append(out, *m[k])
		}
		return out
	}
	return &Lost{
		Pipeline: q.Pipeline, Period: q.Period, Currency: pick.currency, Total: total,
		ByStage: rows(groups[0]), ByReason: rows(groups[1]), ByOwner: rows(groups[2]), ByIndustry: rows(groups[3]),
	}, nil
}

// lostReason returns the reason recorded with a move to a lost stage.
func (r *Reports) lostReason(ctx context.Context, m *crm.StageMove) (string, error) {
	history, err := r.t.Deals().History(ctx, m.RecordID)
	if err != nil {
		return "", err
	}
	for i := len(history) - 1; i >= 0; i-- {
		h := &history[i]
		if h.Pipeline == m.Pipeline && h.To == m.To && h.At.Equal(m.At) {
			return h.Reason, nil
		}
	}
	return "", nil
}

// industry returns an account's industry, caching it in seen.
func (r *Reports) industry(ctx context.Context, seen map[string]string, accountID string) (string, error) {
	if accountID == "" {
		return "", nil
	}
	if v, ok := seen[accountID]; ok {
		return v, nil
	}
	a, err := r.t.Accounts().Get(ctx, accountID)
	if err != nil && !errors.Is(err, crm.ErrNotFound) {
		return "", err
	}
	seen[accountID] = a.Industry
	return a.Industry, nil
}

// ForecastQuery selects the deals of a weighted forecast.
type ForecastQuery struct {
	// Pipeline names one deal pipeline; "" takes every deal pipeline.
	Pipeline string
	// Period keeps the deals expected to close in it (the expected close
	// date's midnight in the engine's time zone lies in the period). Deals
	// without an expected close date are kept only when the period is
	// open at both ends.
	Period Period
	// Slice is as for LostQuery, with the deal's owner now.
	Slice Slice
	// Currency is as for LostQuery; deals in other currencies are left
	// out.
	Currency string
}

// Forecast is the weighted forecast: open deals by the month they are
// expected to close in.
type Forecast struct {
	Pipeline string
	Period   Period
	Currency string
	// Months are in order; the month "" (deals without an expected close
	// date) comes first when present.
	Months []ForecastMonth
	// Total sums the months.
	Total ForecastMonth
}

// ForecastMonth is one expected close month of a forecast.
type ForecastMonth struct {
	// Month is YYYY-MM.
	Month string
	// Deals counts the open deals (in a stage that is not terminal) with
	// an amount in the report's currency.
	Deals int
	// Amount sums their amounts; Weighted sums amount × the stage's
	// probability / 100, rounded half up to the minor unit once per month
	// (the total is the sum of the months' rounded values).
	Amount, Weighted int64
}

// Forecast computes the weighted forecast over the deals in open stages.
func (r *Reports) Forecast(ctx context.Context, q ForecastQuery) (*Forecast, error) {
	if err := q.Period.validate(); err != nil {
		return nil, err
	}
	pick, err := newCurrencyPick(q.Currency, "ForecastQuery.Currency")
	if err != nil {
		return nil, err
	}
	defs, err := r.dealPipelines(ctx, q.Pipeline)
	if err != nil {
		return nil, err
	}
	sl, err := r.slicer(ctx, q.Slice, "forecast", dimOwner|dimIndustry|dimSource|dimCampaign)
	if err != nil {
		return nil, err
	}
	loc := r.t.Location()
	type acc struct {
		deals  int
		amount int64
		w      wide
	}
	months := map[string]*acc{}
	for _, def := range defs {
		probability := map[string]int{}
		for _, st := range def.Stages {
			if st.Terminal == "" {
				probability[st.Key] = st.Probability
			}
		}
		opts := crm.EachOptions{By: "stage", From: def.Name + "/", To: def.Name + "0"} // '0' follows '/'
		err := r.t.Deals().Each(ctx, opts, func(d *crm.Deal) error {
			prob, open := probability[d.Stage]
			if !open || !sl.owner(d.Owner) || !sl.deal(d) {
				return nil
			}
			month := ""
			if d.ExpectedClose != "" {
				day, err := time.ParseInLocation(time.DateOnly, d.ExpectedClose, loc)
				if err != nil {
					return fmt.Errorf("analytics: deal %s: expected close: %w", d.ID, err)
				}
				if !q.Period.Contains(day) {
					return nil
				}
				month = d.ExpectedClose[:7]
			} else if !q.Period.From.IsZero() || !q.Period.To.IsZero() {
				return nil
			}
			if ok, err := pick.keep(d.Amount); err != nil || !ok {
				return err
			}
			a := months[month]
			if a == nil {
				a = &acc{}
				months[month] = a
			}
			a.deals++
			if err := addMoney(&a.amount, d.Amount.Amount, "forecast amount"); err != nil {
				return err
			}
			a.w.addMul(uint64(d.Amount.Amount), uint64(prob))
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := &Forecast{Pipeline: q.Pipeline, Period: q.Period, Currency: pick.currency, Total: ForecastMonth{}}
	for _, m := range sortedKeys(months) {
		a := months[m]
		row := ForecastMonth{Month: m, Deals: a.deals, Amount: a.amount, Weighted: a.w.divRound(100)}
		out.Months = append(out.Months, row)
		out.Total.Deals += row.Deals
		if err := addMoney(&out.Total.Amount, row.Amount, "forecast amount"); err != nil {
			return nil, err
		}
		if err := addMoney(&out.Total.Weighted, row.Weighted, "forecast amount"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CommissionQuery selects the won deals commission is paid on.
type CommissionQuery struct {
	// Period selects the deals by when they were won: today's period
	// answers "what did I earn today".
	Period Period
	// Slice is as for LostQuery, with the owner at the time of the win.
	Slice Slice
	// Rates are the commission rates.
	Rates CommissionRates
	// Currency is as for LostQuery; deals in other currencies earn
	// nothing here.
	Currency string
}

// CommissionRates are commission rates in basis points (1/100 of a
// percent: 250 is 2.5%), at most 10000.
type CommissionRates struct {
	// Default applies to owners without a rate of their own.
	Default int
	// Owners holds the rates of some owners, by user ID.
	Owners map[string]int
}

func (c CommissionRates) validate() error {
	check := func(who string, bp int) error {
		if bp < 0 || bp > 10000 {
			return fmt.Errorf("%w: commission rate %s is %d basis points; want 0-10000", ErrInvalid, who, bp)
		}
		return nil
	}
	if err := check("Default", c.Default); err != nil {
		return err
	}
	for _, o := range sortedKeys(c.Owners) {
		if err := check("of "+o, c.Owners[o]); err != nil {
			return err
		}
	}
	return nil
}

func (c CommissionRates) of(owner string) int {
	if bp, ok := c.Owners[owner]; ok {
		return bp
	}
	return c.Default
}

// Commission is what each owner earned on the deals won in the period.
type Commission struct {
	Period   Period
	Currency string
	// Owners are in owner order; owners without a won deal are absent.
	Owners []CommissionRow
	// Total sums the rows.
	Total CommissionRow
}

// CommissionRow is one owner's commission.
type CommissionRow struct {
	// Owner is the deal's owner when it was won.
	Owner string
	// Deals counts the deals won in the period; Won sums their amounts
	// (minor units).
	Deals int
	Won   int64
	// Rate is the owner's rate in basis points (0 in the total).
	Rate int
	// Earned is Won × Rate / 10000, rounded half up to the minor unit.
	Earned int64
}

// Commission computes the commission earned per owner: every deal moved
// into a won stage in the period (once, however often it was won), at the
// deal's amount now, in every deal pipeline.
func (r *Reports) Commission(ctx context.Context, q CommissionQuery) (*Commission, error) {
	if err := q.Period.validate(); err != nil {
		return nil, err
	}
	if err := q.Rates.validate(); err != nil {
		return nil, err
	}
	sl, err := r.slicer(ctx, q.Slice, "commission", dimOwner|dimIndustry|dimSource|dimCampaign)
	if err != nil {
		return nil, err
	}
	won, pick, err := r.wonDeals(ctx, q.Period, sl, q.Currency, "CommissionQuery.Currency")
	if err != nil {
		return nil, err
	}
	rows := map[string]*CommissionRow{}
	for _, c := range won {
		row := rows[c.move.Owner]
		if row == nil {
			row = &CommissionRow{Owner: c.move.Owner, Rate: q.Rates.of(c.move.Owner)}
			rows[c.move.Owner] = row
		}
		row.Deals++
		if err := addMoney(&row.Won, c.deal.Amount.Amount, "won amount"); err != nil {
			return nil, err
		}
	}
	out := &Commission{Period: q.Period, Currency: pick.currency}
	for _, o := range sortedKeys(rows) {
		row := rows[o]
		var w wide
		w.addMul(uint64(row.Won), uint64(row.Rate))
		row.Earned = w.divRound(10000)
		out.Owners = append(out.Owners, *row)
		out.Total.Deals += row.Deals
		if err := addMoney(&out.Total.Won, row.Won, "won amount"); err != nil {
			return nil, err
		}
		if err := addMoney(&out.Total.Earned, row.Earned, "commission"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// wonDeals returns the deals won in the period with an amount in the
// chosen currency, in the order they were won; a deal won more than once
// in the period (reopened in between) counts once, at its first win.
func (r *Reports) wonDeals(ctx context.Context, p Period, sl *slicer, currency, option string) ([]closedDeal, *currencyPick, error) {
	pick, err := newCurrencyPick(currency, option)
	if err != nil {
		return nil, nil, err
	}
	defs, err := r.dealPipelines(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	won, err := r.closedDeals(ctx, defs, p, sl, pipeline.Won)
	if err != nil {
		return nil, nil, err
	}
	slices.SortStableFunc(won, func(a, b closedDeal) int { return a.move.At.Compare(b.move.At) })
	kept, seen := won[:0], map[string]bool{}
	for _, c := range won {
		if seen[c.deal.ID] {
			continue // won, reopened and won again: once
		}
		seen[c.deal.ID] = true
		ok, err := pick.keep(c.deal.Amount)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			kept = append(kept, c)
		}
	}
	return kept, pick, nil
}

// PlanQuery selects the sales targets of a plan-versus-fact report.
type PlanQuery struct {
	// Period keeps the targets whose dates overlap it.
	Period Period
}

// Plan compares sales targets with what was won.
type Plan struct {
	Period  Period
	Targets []PlanRow
}

// PlanRow is one sales target and its fact.
type PlanRow struct {
	TargetID string
	// Level is "user", "team" or "territory"; Who is that user's, team's
	// or territory's ID.
	Level, Who string
	// PeriodStart and PeriodEnd are the target's dates, both included.
	PeriodStart, PeriodEnd string
	Currency               string
	// Plan is the target amount; Fact sums the amounts (now) of the deals
	// won from the target's first day to its last, in the engine's time
	// zone, in its currency, by the user, by a member of the team or of a
	// sub-team (crm.Tenant.Members, as now), or by a user of the territory
	// or of a sub-territory: the owner at the time of the win counts.
	Plan, Fact int64
	// Deals counts those deals.
	Deals int
	// Fulfilment is Fact / Plan × 100 (0 when Plan is 0).
	Fulfilment float64
}

// Plan computes plan versus fact for the sales targets that overlap the
// period, in the order of their start date, level and ID.
func (r *Reports) Plan(ctx context.Context, q PlanQuery) (*Plan, error) {
	if err := q.Period.validate(); err != nil {
		return nil, err
	}
	loc := r.t.Location()
	var targets []crm.SalesTarget
	err := r.t.SalesTargets().Each(ctx, crm.EachOptions{}, func(st *crm.SalesTarget) error {
		targets = append(targets, *st)
		return nil
	})
	if err != nil {
		return nil, err
	}
	terr, err := r.territoryUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := &Plan{Period: q.Period}
	for _, st := range targets {
		from, err := time.ParseInLocation(time.DateOnly, st.PeriodStart, loc)
		if err != nil {
			return nil, fmt.Errorf("analytics: sales target %s: %w", st.ID, err)
		}
		last, err := time.ParseInLocation(time.DateOnly, st.PeriodEnd, loc)
		if err != nil {
			return nil, fmt.Errorf("analytics: sales target %s: %w", st.ID, err)
		}
		span := Period{From: from, To: last.AddDate(0, 0, 1)}
		if (!q.Period.To.IsZero() && !span.From.Before(q.Period.To)) || (!q.Period.From.IsZero() && !q.Period.From.Before(span.To)) {
			continue
		}
		row := PlanRow{TargetID: st.ID, PeriodStart: st.PeriodStart, PeriodEnd: st.PeriodEnd, Currency: st.Amount.Currency, Plan: st.Amount.Amount}
		var s Slice
		switch {
		case st.UserID != "":
			row.Level, row.Who = "user", st.UserID
			s.Owners = []string{st.UserID}
		case st.TeamID != "":
			row.Level, row.Who = "team", st.TeamID
			s.Team = st.TeamID
		default:
			row.Level, row.Who = "territory", st.TerritoryID
			s.Owners = terr(st.TerritoryID)
		}
		if len(s.Owners) > 0 || s.Team != "" {
			sl, err := r.slicer(ctx, s, "plan", dimOwner)
			if err != nil {
				return nil, err
			}
			won, _, err := r.wonDeals(ctx, span, sl, st.Amount.Currency, "the target's currency")
			if err != nil {
				return nil, err
			}
			for _, c := range won {
				row.Deals++
				if err := addMoney(&row.Fact, c.deal.Amount.Amount, "fact"); err != nil {
					return nil, err
				}
			}
		}
		if row.Plan != 0 {
			row.Fulfilment = float64(row.Fact) * 100 / float64(row.Plan)
		}
		out.Targets = append(out.Targets, row)
	}
	slices.SortStableFunc(out.Targets, func(a, b PlanRow) int {
		return cmp.Or(cmp.Compare(a.PeriodStart, b.PeriodStart), cmp.Compare(a.Level, b.Level), cmp.Compare(a.TargetID, b.TargetID))
	})
	return out, nil
}

// territoryUsers returns a function giving the users of a territory and
// of its sub-territories.
func (r *Reports) territoryUsers(ctx context.Context) (func(string) []string, error) {
	children := map[string][]string{}
	err := r.t.Territories().Each(ctx, crm.EachOptions{Archived: crm.ArchivedIncluded}, func(t *crm.Territory) error {
		children[t.ParentID] = append(children[t.ParentID], t.ID)
		return nil
	})
	if err != nil {
		return nil, err
	}
	users := map[string][]string{}
	err = r.t.Users().Each(ctx, crm.EachOptions{Archived: crm.ArchivedIncluded}, func(u *crm.User) error {
		if u.TerritoryID != "" {
			users[u.TerritoryID] = append(users[u.TerritoryID], u.ID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return func(id string) []string {
		var out []string
		seen := map[string]bool{}
		var walk func(string)
		walk = func(t string) {
			if seen[t] {
				return
			}
			seen[t] = true
			out = append(out, users[t]...)
			for _, c := range children[t] {
				walk(c)
			}
		}
		walk(id)
		return out
	}, nil
}
