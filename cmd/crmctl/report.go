package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rapportcrm/rapport/analytics"
)

const reportUsage = `usage: crmctl report KIND [flags]
  funnel, stages, overdue: --pipeline P [--from DAY] [--to DAY] [--by owner] [SLICE]
  lost:       [--pipeline P] [--from DAY] [--to DAY] [--currency C] [SLICE]
  forecast:   [--pipeline P] [--from DAY] [--to DAY] [--currency C] [SLICE]
  plan:       [--from DAY] [--to DAY]
  commission: [--from DAY] [--to DAY] [--currency C] [--rate BP] [--rates u1=BP,u2=BP] [SLICE]
  leads:      [--from DAY] [--to DAY] [--currency C] [SLICE]
  campaigns:  [--from DAY] [--to DAY] [--currency C] [--campaign ID] [OWNERS]
  products:   [--from DAY] [--to DAY] [--category K] [--currency C] [--industry I] [--campaign ID] [--product SKU] [OWNERS]
  rfm:        [--reference DAY] [--currency C] [CUSTOMERS]
  clv:        [--reference DAY] [--currency C] [--horizon YEARS] [--discount RATE] [--retention RATE] [--margin RATE] [CUSTOMERS]
  cohorts:    [--from DAY] [--to DAY] [--months N] [CUSTOMERS]
  nps:        [--from DAY] [--to DAY] [--survey S] [--by month|survey|segment] [CUSTOMERS]
  all:        [--format table|csv|json|html|svg]
OWNERS is [--owner a,b] [--team T] [--territory T]; SLICE is OWNERS plus
[--industry I] [--source S] [--campaign ID]; CUSTOMERS is OWNERS plus
[--industry I], applied to the customers' contacts. Slices combine: a
record is kept when it matches every one given.
DAY is YYYY-MM-DD (UTC); --from and --to are both inclusive. Money is in
minor units (cents). BP is basis points (250 = 2.5%). nps --by segment
groups by RFM segment. html is a self-contained page with the chart and
the table; svg is the chart alone.`

// The slice flags each kind of report takes.
var (
	byOwner    = []string{"owner", "team", "territory"}
	byRecord   = append(byOwner[:len(byOwner):len(byOwner)], "industry", "source", "campaign")
	byCustomer = append(byOwner[:len(byOwner):len(byOwner)], "industry")
)

// reportFlags lists the flags each report takes, beyond --format.
var reportFlags = map[string][]string{
	"funnel":     append([]string{"pipeline", "from", "to", "by"}, byRecord...),
	"stages":     append([]string{"pipeline", "from", "to", "by"}, byRecord...),
	"overdue":    append([]string{"pipeline", "from", "to", "by"}, byRecord...),
	"lost":       append([]string{"pipeline", "from", "to", "currency"}, byRecord...),
	"forecast":   append([]string{"pipeline", "from", "to", "currency"}, byRecord...),
	"plan":       {"from", "to"},
	"commission": append([]string{"from", "to", "currency", "rate", "rates"}, byRecord...),
	"leads":      append([]string{"from", "to", "currency"}, byRecord...),
	"campaigns":  append([]string{"from", "to", "currency", "campaign"}, byOwner...),
	"products":   append([]string{"from", "to", "category", "currency", "industry", "campaign", "product"}, byOwner...),
	"rfm":        append([]string{"reference", "currency"}, byCustomer...),
	"clv":        append([]string{"reference", "currency", "horizon", "discount", "retention", "margin"}, byCustomer...),
	"cohorts":    append([]string{"from", "to", "months"}, byCustomer...),
	"nps":        append([]string{"from", "to", "survey", "by"}, byCustomer...),
}

// reportCmd runs one report and prints it.
func reportCmd(ctx context.Context, db database, tenant string, args []string, stdout, stderr io.Writer) (err error) {
	if len(args) == 0 {
		fmt.Fprintln(stderr, reportUsage)
		return errUsage
	}
	kind := args[0]
	usage := func(format string, a ...any) error {
		fmt.Fprintf(stderr, format+"\n%s\n", append(a, reportUsage)...)
		return errUsage
	}
	allowed, ok := reportFlags[kind]
	if !ok {
		return usage("unknown report %q", kind)
	}
	fs := flag.NewFlagSet("report "+kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, reportUsage) }
	format := fs.String("format", "table", "table, csv, json, html or svg")
	pipelineName := fs.String("pipeline", "", "pipeline")
	from := fs.String("from", "", "first day, YYYY-MM-DD")
	to := fs.String("to", "", "last day, YYYY-MM-DD")
	by := fs.String("by", "", "group by")
	owners := fs.String("owner", "", "comma-separated owners to keep")
	team := fs.String("team", "", "keep the records of this team's members")
	territory := fs.String("territory", "", "keep the records of this territory's users")
	industry := fs.String("industry", "", "keep the records of accounts in this industry")
	source := fs.String("source", "", "keep the leads from this source and their deals")
	campaign := fs.String("campaign", "", "keep the records of this campaign (ID)")
	product := fs.String("product", "", "keep the order lines of this product (SKU)")
	reference := fs.String("reference", "", "reference day, YYYY-MM-DD (default: the day after the last order)")
	currency := fs.String("currency", "", "currency (default: the only one)")
	rate := fs.Int("rate", 0, "default commission rate, basis points")
	rates := fs.String("rates", "", "commission rates per owner, owner=BP,...")
	category := fs.String("category", "", "product category")
	horizon := fs.Int("horizon", 0, "CLV horizon in years (default 3)")
	discount := fs.Float64("discount", 0, "CLV yearly discount rate, e.g. 0.1")
	retention := fs.Float64("retention", 0, "CLV yearly retention, e.g. 0.8 (default 1)")
	margin := fs.Float64("margin", 0, "CLV margin, e.g. 0.3 (default 1)")
	months := fs.Int("months", 0, "months to follow each cohort (default 12)")
	survey := fs.String("survey", "", "survey to keep")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		return usage("unexpected arguments %q", fs.Args())
	}
	var wrong []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "format" && !slices.Contains(allowed, f.Name) {
			wrong = append(wrong, "--"+f.Name)
		}
	})
	if len(wrong) > 0 {
		return usage("%s does not take %s", kind, strings.Join(wrong, ", "))
	}
	if !slices.Contains([]string{"table", "csv", "json", "html", "svg"}, *format) {
		return usage("unknown format %q", *format)
	}
	var period analytics.Period
	var ref time.Time
	for _, d := range []struct {
		flag, value string
		to          *time.Time
	}{{"--from", *from, &period.From}, {"--to", *to, &period.To}, {"--reference", *reference, &ref}} {
		if *d.to, err = parseDay(d.flag, d.value); err != nil {
			return usage("%v", err)
		}
	}
	if !period.To.IsZero() {
		period.To = period.To.AddDate(0, 0, 1)
	}
	var slice analytics.Slice
	if *owners != "" {
		slice.Owners = strings.Split(*owners, ",")
	}
	slice.Team, slice.Territory, slice.Industry = *team, *territory, *industry
	slice.Source, slice.Campaign, slice.Product = *source, *campaign, *product
	commission := analytics.CommissionRates{Default: *rate}
	if *rates != "" {
		commission.Owners = map[string]int{}
		for _, kv := range strings.Split(*rates, ",") {
			owner, bp, ok := strings.Cut(kv, "=")
			n, err := strconv.Atoi(bp)
			if !ok || owner == "" || err != nil {
				return usage("--rates %q: want owner=BP,owner=BP", *rates)
			}
			commission.Owners[owner] = n
		}
	}

	engine, closeDB, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeDB()) }()
	r := analytics.New(engine.Tenant(tenant))

	var rep analytics.Report
	switch kind {
	case "funnel":
		rep, err = r.Funnel(ctx, analytics.FunnelQuery{Pipeline: *pipelineName, Period: period, Slice: slice, By: analytics.By(*by)})
	case "stages", "overdue":
		var st *analytics.StageTimes
		st, err = r.Stages(ctx, analytics.StagesQuery{Pipeline: *pipelineName, Period: period, Slice: slice, By: analytics.By(*by)})
		rep = st
		if kind == "overdue" && err == nil {
			rep = (*analytics.Overdue)(st)
		}
	case "lost":
		rep, err = r.Lost(ctx, analytics.LostQuery{Pipeline: *pipelineName, Period: period, Slice: slice, Currency: *currency})
	case "forecast":
		rep, err = r.Forecast(ctx, analytics.ForecastQuery{Pipeline: *pipelineName, Period: period, Slice: slice, Currency: *currency})
	case "plan":
		rep, err = r.Plan(ctx, analytics.PlanQuery{Period: period})
	case "commission":
		rep, err = r.Commission(ctx, analytics.CommissionQuery{Period: period, Slice: slice, Rates: commission, Currency: *currency})
	case "leads":
		rep, err = r.Leads(ctx, analytics.LeadsQuery{Period: period, Slice: slice, Currency: *currency})
	case "campaigns":
		rep, err = r.Campaigns(ctx, analytics.CampaignsQuery{Period: period, Slice: slice, Currency: *currency})
	case "products":
		rep, err = r.Products(ctx, analytics.ProductsQuery{Period: period, Category: *category, Slice: slice, Currency: *currency})
	case "rfm":
		rep, err = r.RFM(ctx, analytics.RFMOptions{Currency: *currency, Reference: ref, ExternalIDs: true, Slice: slice})
	case "clv":
		rep, err = r.CLV(ctx, analytics.CLVOptions{Currency: *currency, Reference: ref, ExternalIDs: true, Slice: slice,
			Horizon: *horizon, DiscountRate: *discount, Retention: *retention, Margin: *margin})
	case "cohorts":
		rep, err = r.Cohorts(ctx, analytics.CohortsQuery{Period: period, Months: *months, Slice: slice})
	case "nps":
		q := analytics.SatisfactionQuery{Period: period, Survey: *survey, By: analytics.By(*by), Slice: slice}
		if q.By == analytics.BySegment {
			rfm, err := r.RFM(ctx, analytics.RFMOptions{})
			if err != nil {
				return fmt.Errorf("segments: %w", err)
			}
			q.Segments = rfm.Segments()
		}
		rep, err = r.Satisfaction(ctx, q)
	}
	if err != nil {
		return err
	}
	return writeReport(stdout, rep, *format)
}

// writeReport prints a report in one of the formats.
func writeReport(w io.Writer, rep analytics.Report, format string) error {
	switch format {
	case "csv":
		return rep.Table().WriteCSV(w)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case "html":
		return analytics.WriteHTML(w, analytics.HTMLOptions{Title: rep.Title(), Generated: time.Now()}, rep)
	case "svg":
		return rep.Chart().WriteSVG(w)
	}
	t := rep.Table()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, rep.Title())
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(t.Columns, "\t")))
	for _, row := range t.Rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// parseDay reads a YYYY-MM-DD day as midnight UTC; "" is the zero time.
func parseDay(flagName, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q is not a YYYY-MM-DD date", flagName, s)
	}
	return t, nil
}
