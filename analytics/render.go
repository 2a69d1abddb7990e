package analytics

import (
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/rapportcrm/rapport/analytics/chart"
	"github.com/rapportcrm/rapport/crm"
)

// Every report marshals to JSON as it is (encoding/json; durations are
// nanoseconds there) and is a Report: a Table, which WriteCSV writes with
// a header row (durations in whole seconds, ratios with four decimals,
// money in minor units), and a Chart for people who would rather look
// than read (WriteHTML puts both on one self-contained page).

// Report is what every report struct of this package is.
type Report interface {
	// Title names the report, for headings.
	Title() string
	// Table is the report's rows, as CSV and HTML show them.
	Table() Table
	// Chart draws the report; nil when there is nothing to draw.
	Chart() Chart
}

// Chart draws itself as a self-contained SVG document (see package
// chart).
type Chart interface {
	WriteSVG(w io.Writer) error
}

// Table is a report's rows as text.
type Table struct {
	Columns []string
	Rows    [][]string
}

// WriteCSV writes the table with a header row.
func (t Table) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(t.Columns)
	for _, r := range t.Rows {
		_ = cw.Write(r)
	}
	cw.Flush()
	return cw.Error()
}

func (t *Table) add(cells ...string) { t.Rows = append(t.Rows, cells) }

func itoa(n int) string         { return strconv.Itoa(n) }
func i64(n int64) string        { return strconv.FormatInt(n, 10) }
func fmtRatio(x float64) string { return strconv.FormatFloat(x, 'f', 4, 64) }
func secs(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Second), 10)
}

// major converts minor units of currency to a float of major units, for
// charts only (tables keep exact minor units).
func major(minor int64, currency string) float64 {
	scale, err := crm.CurrencyScale(currency)
	if err != nil {
		scale = 2
	}
	return float64(minor) / math.Pow10(scale)
}

func withCurrency(title, currency string) string {
	if currency == "" {
		return title
	}
	return title + " (" + currency + ")"
}

// Title implements Report.
func (f *Funnel) Title() string { return "Funnel: " + f.Pipeline }

// Table has the columns group,stage,label,terminal,entered,reached,conversion.
func (f *Funnel) Table() Table {
	t := Table{Columns: []string{"group", "stage", "label", "terminal", "entered", "reached", "conversion"}}
	for _, g := range f.Groups {
		for _, s := range g.Stages {
			t.add(g.Key, s.Stage, s.Label, string(s.Terminal), itoa(s.Entered), itoa(s.Reached), fmtRatio(s.Conversion))
		}
	}
	return t
}

// Chart draws a funnel of Reached, or bars per group when grouped.
func (f *Funnel) Chart() Chart {
	if len(f.Groups) == 1 {
		c := &chart.Funnel{Title: f.Title()}
		for _, s := range f.Groups[0].Stages {
			note := ""
			if s.Terminal == "" {
				note = "→ " + chart.Format(100*s.Conversion) + "%"
			}
			c.Steps = append(c.Steps, chart.Step{Label: s.Label, Value: float64(s.Reached), Note: note})
		}
		return c
	}
	c := &chart.Bars{Title: f.Title() + " (reached)"}
	for i, g := range f.Groups {
		se := chart.Series{Name: cmp.Or(g.Key, "(none)")}
		for _, s := range g.Stages {
			if i == 0 {
				c.Labels = append(c.Labels, s.Label)
			}
			se.Values = append(se.Values, float64(s.Reached))
		}
		c.Series = append(c.Series, se)
	}
	return c
}

// WriteCSV writes Table as CSV.
func (f *Funnel) WriteCSV(w io.Writer) error { return f.Table().WriteCSV(w) }

// Title implements Report.
func (st *StageTimes) Title() string { return "Time in stage: " + st.Pipeline }

// Table has the columns
// group,stage,label,norm,exits,average_seconds,median_seconds,current,overdue,overdue_share.
func (st *StageTimes) Table() Table {
	t := Table{Columns: []string{"group", "stage", "label", "norm", "exits", "average_seconds", "median_seconds", "current", "overdue", "overdue_share"}}
	for _, g := range st.Groups {
		for _, s := range g.Stages {
			t.add(g.Key, s.Stage, s.Label, s.Norm, itoa(s.Exits), secs(s.Average), secs(s.Median), itoa(s.Current), itoa(s.Overdue), fmtRatio(s.OverdueShare))
		}
	}
	return t
}

// Chart draws the average and median stay per stage in days (the
// average per group when grouped); terminal stages have no stay.
func (st *StageTimes) Chart() Chart {
	c := &chart.Bars{Title: st.Title() + " (days)", Unit: " d"}
	days := func(d time.Duration) float64 { return d.Hours() / 24 }
	for i, g := range st.Groups {
		avg, med := chart.Series{Name: "average"}, chart.Series{Name: "median"}
		if len(st.Groups) > 1 {
			avg.Name = cmp.Or(g.Key, "(none)")
		}
		for _, s := range g.Stages {
			if s.Terminal != "" {
				continue
			}
			if i == 0 {
				c.Labels = append(c.Labels, s.Label)
			}
			avg.Values = append(avg.Values, days(s.Average))
			med.Values = append(med.Values, days(s.Median))
		}
		c.Series = append(c.Series, avg)
		if len(st.Groups) == 1 {
			c.Series = append(c.Series, med)
		}
	}
	return c
}

// WriteCSV writes Table as CSV.
func (st *StageTimes) WriteCSV(w io.Writer) error { return st.Table().WriteCSV(w) }

// Overdue is the overdue view of a stage report: how many records are in
// each stage now and how many of them are past its norm.
type Overdue StageTimes

// Title implements Report.
func (o *Overdue) Title() string { return "Overdue: " + o.Pipeline }

// Table has the columns group,stage,label,norm,current,overdue,overdue_share.
func (o *Overdue) Table() Table {
	t := Table{Columns: []string{"group", "stage", "label", "norm", "current", "overdue", "overdue_share"}}
	for _, g := range o.Groups {
		for _, s := range g.Stages {
			if s.Terminal == "" {
				t.add(g.Key, s.Stage, s.Label, s.Norm, itoa(s.Current), itoa(s.Overdue), fmtRatio(s.OverdueShare))
			}
		}
	}
	return t
}

// Chart draws the current and overdue counts per open stage.
func (o *Overdue) Chart() Chart {
	c := &chart.Bars{Title: o.Title()}
	cur, over := chart.Series{Name: "in stage"}, chart.Series{Name: "overdue"}
	for _, g := range o.Groups {
		for _, s := range g.Stages {
			if s.Terminal != "" {
				continue
			}
			label := s.Label
			if len(o.Groups) > 1 {
				label = cmp.Or(g.Key, "(none)") + ": " + s.Label
			}
			c.Labels = append(c.Labels, label)
			cur.Values = append(cur.Values, float64(s.Current))
			over.Values = append(over.Values, float64(s.Overdue))
		}
	}
	c.Series = []chart.Series{cur, over}
	return c
}

// Title implements Report.
func (l *Lost) Title() string { return withCurrency("Lost deals", l.Currency) }

// Table has the columns dimension,key,deals,value_minor, with the
// dimensions total, stage, reason, owner and industry.
func (l *Lost) Table() Table {
	t := Table{Columns: []string{"dimension", "key", "deals", "value_minor"}}
	t.add("total", "", itoa(l.Total.Deals), i64(l.Total.Value))
	for _, d := range []struct {
		name string
		rows []LostRow
	}{{"stage", l.ByStage}, {"reason", l.ByReason}, {"owner", l.ByOwner}, {"industry", l.ByIndustry}} {
		for _, r := range d.rows {
			t.add(d.name, r.Key, itoa(r.Deals), i64(r.Value))
		}
	}
	return t
}

// Chart draws the lost value by reason and by stage.
func (l *Lost) Chart() Chart {
	c := &chart.Bars{Title: l.Title(), Series: []chart.Series{{Name: "lost value"}}}
	for _, d := range []struct {
		name string
		rows []LostRow
	}{{"reason", l.ByReason}, {"stage", l.ByStage}} {
		for _, r := range d.rows {
			c.Labels = append(c.Labels, d.name+": "+cmp.Or(r.Key, "(none)"))
			c.Series[0].Values = append(c.Series[0].Values, major(r.Value, l.Currency))
		}
	}
	return c
}

// Title implements Report.
func (f *Forecast) Title() string { return withCurrency("Weighted forecast", f.Currency) }

// Table has the columns month,deals,amount_minor,weighted_minor, the
// total last with the month "total".
func (f *Forecast) Table() Table {
	t := Table{Columns: []string{"month", "deals", "amount_minor", "weighted_minor"}}
	for _, m := range append(f.Months, ForecastMonth{Month: "total", Deals: f.Total.Deals, Amount: f.Total.Amount, Weighted: f.Total.Weighted}) {
		t.add(m.Month, itoa(m.Deals), i64(m.Amount), i64(m.Weighted))
	}
	return t
}

// Chart draws the amount and the weighted amount per month.
func (f *Forecast) Chart() Chart {
	c := &chart.Bars{Title: f.Title(), Series: []chart.Series{{Name: "amount"}, {Name: "weighted"}}}
	for _, m := range f.Months {
		c.Labels = append(c.Labels, cmp.Or(m.Month, "no date"))
		c.Series[0].Values = append(c.Series[0].Values, major(m.Amount, f.Currency))
		c.Series[1].Values = append(c.Series[1].Values, major(m.Weighted, f.Currency))
	}
	return c
}

// Title implements Report.
func (c *Commission) Title() string { return withCurrency("Commission", c.Currency) }

// Table has the columns owner,deals,won_minor,rate_bp,earned_minor, the
// total last with the owner "total".
func (c *Commission) Table() Table {
	t := Table{Columns: []string{"owner", "deals", "won_minor", "rate_bp", "earned_minor"}}
	for _, r := range c.Owners {
		t.add(r.Owner, itoa(r.Deals), i64(r.Won), itoa(r.Rate), i64(r.Earned))
	}
	t.add("total", itoa(c.Total.Deals), i64(c.Total.Won), "", i64(c.Total.Earned))
	return t
}

// Chart draws what each owner earned.
func (c *Commission) Chart() Chart {
	ch := &chart.Bars{Title: c.Title(), Series: []chart.Series{{Name: "earned"}}}
	for _, r := range c.Owners {
		ch.Labels = append(ch.Labels, cmp.Or(r.Owner, "(none)"))
		ch.Series[0].Values = append(ch.Series[0].Values, major(r.Earned, c.Currency))
	}
	return ch
}

// Title implements Report.
func (p *Plan) Title() string { return "Plan vs fact" }

// Table has the columns
// target_id,level,who,period_start,period_end,currency,plan_minor,fact_minor,deals,fulfilment_percent.
func (p *Plan) Table() Table {
	t := Table{Columns: []string{"target_id", "level", "who", "period_start", "period_end", "currency", "plan_minor", "fact_minor", "deals", "fulfilment_percent"}}
	for _, r := range p.Targets {
		t.add(r.TargetID, r.Level, r.Who, r.PeriodStart, r.PeriodEnd, r.Currency, i64(r.Plan), i64(r.Fact), itoa(r.Deals), strconv.FormatFloat(r.Fulfilment, 'f', 2, 64))
	}
	return t
}

// Chart draws plan and fact per target.
func (p *Plan) Chart() Chart {
	c := &chart.Bars{Title: p.Title(), Series: []chart.Series{{Name: "plan"}, {Name: "fact"}}}
	for _, r := range p.Targets {
		c.Labels = append(c.Labels, fmt.Sprintf("%s %s %s…%s", r.Level, r.Who, r.PeriodStart[5:], r.PeriodEnd[5:]))
		c.Series[0].Values = append(c.Series[0].Values, major(r.Plan, r.Currency))
		c.Series[1].Values = append(c.Series[1].Values, major(r.Fact, r.Currency))
	}
	return c
}

// Title implements Report.
func (l *Leads) Title() string { return "Leads" }

// Table has the columns
// group,key,name,leads,converted,won,conversion_rate,win_rate,expected_minor,average_minor,
// with the groups total, source, campaign and status (key
// "<pipeline>/<stage>", leads = reached), then "accounts" with the
// number of accounts in leads.
func (l *Leads) Table() Table {
	t := Table{Columns: []string{"group", "key", "name", "leads", "converted", "won", "conversion_rate", "win_rate", "expected_minor", "average_minor"}}
	row := func(group string, g LeadGroup) {
		t.add(group, g.Key, g.Name, itoa(g.Leads), itoa(g.Converted), itoa(g.Won), fmtRatio(g.ConversionRate), fmtRatio(g.WinRate), i64(g.Expected), i64(g.Average))
	}
	row("total", l.Total)
	for _, g := range l.BySource {
		row("source", g)
	}
	for _, g := range l.ByCampaign {
		row("campaign", g)
	}
	for _, s := range l.ByStatus {
		t.add("status", s.Pipeline+"/"+s.Stage, "", itoa(s.Reached), itoa(s.Converted), "", fmtRatio(s.Rate), "", "", "")
	}
	t.add("accounts", "", "", itoa(l.Accounts), "", "", "", "", "", "")
	return t
}

// Chart draws the leads and the converted leads by source.
func (l *Leads) Chart() Chart {
	c := &chart.Bars{Title: "Leads by source", Series: []chart.Series{{Name: "leads"}, {Name: "converted"}}}
	for _, g := range l.BySource {
		c.Labels = append(c.Labels, cmp.Or(g.Key, "(none)"))
		c.Series[0].Values = append(c.Series[0].Values, float64(g.Leads))
		c.Series[1].Values = append(c.Series[1].Values, float64(g.Converted))
	}
	return c
}

// Title implements Report.
func (c *Campaigns) Title() string { return withCurrency("Campaigns", c.Currency) }

// Table has the columns
// id,name,channel,starts_on,responses,target,response_rate,converted,won,budget_minor,cost_minor,budget_used,cost_per_lead_minor,cost_per_won_minor,revenue_minor,roi,
// the total last with the id "total".
func (c *Campaigns) Table() Table {
	t := Table{Columns: []string{"id", "name", "channel", "starts_on", "responses", "target", "response_rate", "converted", "won",
		"budget_minor", "cost_minor", "budget_used", "cost_per_lead_minor", "cost_per_won_minor", "revenue_minor", "roi"}}
	tot := c.Total
	tot.ID = "total"
	for _, r := range append(c.Campaigns, tot) {
		t.add(r.ID, r.Name, r.Channel, r.StartsOn, itoa(r.Responses), itoa(r.Target), fmtRatio(r.ResponseRate), itoa(r.Converted), itoa(r.Won),
			i64(r.Budget), i64(r.Cost), fmtRatio(r.BudgetUsed), i64(r.CostPerLead), i64(r.CostPerWon), i64(r.Revenue), fmtRatio(r.ROI))
	}
	return t
}

// Chart draws each campaign's cost and revenue.
func (c *Campaigns) Chart() Chart {
	ch := &chart.Bars{Title: c.Title(), Series: []chart.Series{{Name: "cost"}, {Name: "revenue"}}}
	for _, r := range c.Campaigns {
		ch.Labels = append(ch.Labels, cmp.Or(r.Name, r.ID))
		ch.Series[0].Values = append(ch.Series[0].Values, major(r.Cost, c.Currency))
		ch.Series[1].Values = append(ch.Series[1].Values, major(r.Revenue, c.Currency))
	}
	return ch
}

// chartTop is how many products or customers a chart shows.
const chartTop = 20

// Title implements Report.
func (p *Products) Title() string { return withCurrency("Products by sales", p.Currency) }

// Table has the columns
// rank,sku,name,category,orders,customers,quantity,revenue_minor,share.
func (p *Products) Table() Table {
	t := Table{Columns: []string{"rank", "sku", "name", "category", "orders", "customers", "quantity", "revenue_minor", "share"}}
	for _, r := range p.Products {
		t.add(itoa(r.Rank), r.SKU, r.Name, r.Category, itoa(r.Orders), itoa(r.Customers), i64(r.Quantity), i64(r.Revenue), fmtRatio(r.Share))
	}
	return t
}

// Chart draws the revenue of the best sellers.
func (p *Products) Chart() Chart {
	c := &chart.Bars{Title: p.Title(), Series: []chart.Series{{Name: "revenue"}}}
	for _, r := range p.Products[:min(len(p.Products), chartTop)] {
		c.Labels = append(c.Labels, cmp.Or(r.Name, r.SKU))
		c.Series[0].Values = append(c.Series[0].Values, major(r.Revenue, p.Currency))
	}
	return c
}

// Title implements Report.
func (r *RFM) Title() string { return "RFM segments" }

// Table has exactly the columns
// customer_id,recency_days,frequency,monetary_minor,r,f,m,segment, where
// customer_id is the row's ExternalID when it has one and its CustomerID
// otherwise.
func (r *RFM) Table() Table {
	t := Table{Columns: []string{"customer_id", "recency_days", "frequency", "monetary_minor", "r", "f", "m", "segment"}}
	for _, row := range r.Rows {
		t.add(cmp.Or(row.ExternalID, row.CustomerID), itoa(row.RecencyDays), itoa(row.Frequency), i64(row.Monetary),
			itoa(row.R), itoa(row.F), itoa(row.M), row.Segment)
	}
	return t
}

// Chart draws the customers on the R × F grid (rows R 5 to 1, columns F
// 1 to 5), each cell with its count and its segment.
func (r *RFM) Chart() Chart {
	var counts [6][6]int
	var names [6][6]string
	for _, row := range r.Rows {
		counts[row.R][row.F]++
		names[row.R][row.F] = row.Segment
	}
	c := &chart.Heatmap{Title: "RFM: customers by recency (R) and frequency (F)", Cols: []string{"F 1", "F 2", "F 3", "F 4", "F 5"}}
	for rs := 5; rs >= 1; rs-- {
		c.Rows = append(c.Rows, "R "+itoa(rs))
		vals, text := make([]float64, 5), make([]string, 5)
		for f := 1; f <= 5; f++ {
			vals[f-1] = float64(counts[rs][f])
			if counts[rs][f] == 0 {
				vals[f-1] = math.NaN()
				continue
			}
			text[f-1] = itoa(counts[rs][f]) + " " + names[rs][f]
		}
		c.Values, c.Text = append(c.Values, vals), append(c.Text, text)
	}
	return c
}

// WriteCSV writes Table as CSV.
func (r *RFM) WriteCSV(w io.Writer) error { return r.Table().WriteCSV(w) }

// Title implements Report.
func (c *CLV) Title() string { return withCurrency("Customer lifetime value", c.Currency) }

// Table has the columns
// customer_id,first_order,orders,historic_minor,years,yearly_minor,predicted_minor
// (customer_id as for RFM).
func (c *CLV) Table() Table {
	t := Table{Columns: []string{"customer_id", "first_order", "orders", "historic_minor", "years", "yearly_minor", "predicted_minor"}}
	for _, r := range c.Rows {
		t.add(cmp.Or(r.ExternalID, r.CustomerID), r.FirstOrder.Format(time.RFC3339), itoa(r.Orders), i64(r.Historic),
			strconv.FormatFloat(r.Years, 'f', 4, 64), i64(r.Yearly), i64(r.Predicted))
	}
	return t
}

// Chart draws the historic and predicted value of the customers with
// the highest predicted value.
func (c *CLV) Chart() Chart {
	top := slices.Clone(c.Rows)
	slices.SortStableFunc(top, func(a, b CLVRow) int { return cmp.Compare(b.Predicted, a.Predicted) })
	ch := &chart.Bars{Title: c.Title() + ": top customers", Series: []chart.Series{{Name: "historic"}, {Name: "predicted"}}}
	for _, r := range top[:min(len(top), chartTop)] {
		ch.Labels = append(ch.Labels, cmp.Or(r.ExternalID, r.CustomerID))
		ch.Series[0].Values = append(ch.Series[0].Values, major(r.Historic, c.Currency))
		ch.Series[1].Values = append(ch.Series[1].Values, major(r.Predicted, c.Currency))
	}
	return ch
}

// Title implements Report.
func (c *Cohorts) Title() string { return "Retention by cohort" }

// Table has the columns cohort,customers,repeat,repeat_rate,m0,m1,…
// (retention k months after the first; empty after the clock's month).
func (c *Cohorts) Table() Table {
	t := Table{Columns: []string{"cohort", "customers", "repeat", "repeat_rate"}}
	for k := 0; k <= c.Months; k++ {
		t.Columns = append(t.Columns, "m"+itoa(k))
	}
	for _, co := range c.Cohorts {
		row := []string{co.Month, itoa(co.Customers), itoa(co.Repeat), fmtRatio(co.RepeatRate)}
		for k := 0; k <= c.Months; k++ {
			cell := ""
			if k < len(co.Retention) {
				cell = fmtRatio(co.Retention[k])
			}
			row = append(row, cell)
		}
		t.add(row...)
	}
	return t
}

// Chart draws the retention heat map: a row per cohort, a column per
// month after the first.
func (c *Cohorts) Chart() Chart {
	h := &chart.Heatmap{Title: c.Title()}
	for k := 0; k <= c.Months; k++ {
		h.Cols = append(h.Cols, "+"+itoa(k))
	}
	for _, co := range c.Cohorts {
		h.Rows = append(h.Rows, co.Month+" ("+itoa(co.Customers)+")")
		vals, text := make([]float64, len(co.Retention)), make([]string, len(co.Retention))
		for k, v := range co.Retention {
			vals[k], text[k] = 100*v, chart.Format(100*v)+"%"
		}
		h.Values, h.Text = append(h.Values, vals), append(h.Text, text)
	}
	return h
}

// Title implements Report.
func (s *Satisfaction) Title() string { return "Customer satisfaction" }

// Table has the columns
// group,responses,nps_answers,promoters,passives,detractors,nps,items,csi,cdi.
func (s *Satisfaction) Table() Table {
	t := Table{Columns: []string{"group", "responses", "nps_answers", "promoters", "passives", "detractors", "nps", "items", "csi", "cdi"}}
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
	for _, g := range s.Groups {
		t.add(g.Key, itoa(g.Responses), itoa(g.NPSAnswers), itoa(g.Promoters), itoa(g.Passives), itoa(g.Detractors), f(g.NPS), itoa(g.Items), f(g.CSI), f(g.CDI))
	}
	return t
}

// Chart draws NPS, CSI and CDI per group.
func (s *Satisfaction) Chart() Chart {
	c := &chart.Bars{Title: s.Title(), Series: []chart.Series{{Name: "NPS"}, {Name: "CSI"}, {Name: "CDI"}}}
	for _, g := range s.Groups {
		c.Labels = append(c.Labels, cmp.Or(g.Key, "all"))
		c.Series[0].Values = append(c.Series[0].Values, g.NPS)
		c.Series[1].Values = append(c.Series[1].Values, g.CSI)
		c.Series[2].Values = append(c.Series[2].Values, g.CDI)
	}
	return c
}
