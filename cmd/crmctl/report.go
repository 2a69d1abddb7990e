package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rapportcrm/rapport/analytics"
	"github.com/rapportcrm/rapport/crm"
)

const reportUsage = `usage: crmctl report funnel|stages|rfm [flags]
  funnel, stages: --pipeline P [--from DATE] [--to DATE] [--by owner] [--owner a,b] [--team T]
  rfm:            [--reference DATE] [--currency C]
  all:            [--format table|csv|json]
DATE is YYYY-MM-DD (UTC); --from and --to are both inclusive.`

// reportCmd runs one report and prints it.
func reportCmd(ctx context.Context, path, tenant string, args []string, stdout, stderr io.Writer) (err error) {
	if len(args) == 0 {
		fmt.Fprintln(stderr, reportUsage)
		return errUsage
	}
	kind := args[0]
	fs := flag.NewFlagSet("report "+kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, reportUsage) }
	format := fs.String("format", "table", "table, csv or json")
	pipelineName := fs.String("pipeline", "", "pipeline (funnel, stages)")
	from := fs.String("from", "", "first day, YYYY-MM-DD")
	to := fs.String("to", "", "last day, YYYY-MM-DD")
	by := fs.String("by", "", "group by: owner")
	owners := fs.String("owner", "", "comma-separated owners to keep")
	team := fs.String("team", "", "keep the records of this team's members")
	reference := fs.String("reference", "", "RFM reference day, YYYY-MM-DD (default: the day after the last order)")
	currency := fs.String("currency", "", "RFM currency (default: the only one)")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments %q\n%s\n", fs.Args(), reportUsage)
		return errUsage
	}
	if *format != "table" && *format != "csv" && *format != "json" {
		fmt.Fprintf(stderr, "unknown format %q\n%s\n", *format, reportUsage)
		return errUsage
	}
	var period analytics.Period
	var ref time.Time
	for _, d := range []struct {
		flag, value string
		to          *time.Time
	}{{"--from", *from, &period.From}, {"--to", *to, &period.To}, {"--reference", *reference, &ref}} {
		if *d.to, err = parseDay(d.flag, d.value); err != nil {
			fmt.Fprintf(stderr, "%v\n%s\n", err, reportUsage)
			return errUsage
		}
	}
	if !period.To.IsZero() {
		period.To = period.To.AddDate(0, 0, 1)
	}
	var slice analytics.Slice
	if *owners != "" {
		slice.Owners = strings.Split(*owners, ",")
	}
	slice.Team = *team

	engine, err := crm.Open(ctx, crm.Options{Path: path})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, engine.Close()) }()
	r := analytics.New(engine.Tenant(tenant))

	var rep interface{ WriteCSV(io.Writer) error }
	var table func(*tabwriter.Writer)
	switch kind {
	case "funnel":
		f, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: *pipelineName, Period: period, Slice: slice, By: analytics.By(*by)})
		if err != nil {
			return err
		}
		rep, table = f, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "GROUP\tSTAGE\tENTERED\tREACHED\tCONVERSION")
			for _, g := range f.Groups {
				for _, s := range g.Stages {
					fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\n", g.Key, s.Label, s.Entered, s.Reached, percent(s.Conversion))
				}
			}
		}
	case "stages":
		st, err := r.Stages(ctx, analytics.StagesQuery{Pipeline: *pipelineName, Period: period, Slice: slice, By: analytics.By(*by)})
		if err != nil {
			return err
		}
		rep, table = st, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "GROUP\tSTAGE\tNORM\tEXITS\tAVERAGE\tMEDIAN\tNOW\tOVERDUE")
			for _, g := range st.Groups {
				for _, s := range g.Stages {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d (%s)\n", g.Key, s.Label, s.Norm, s.Exits,
						s.Average.Round(time.Minute), s.Median.Round(time.Minute), s.Current, s.Overdue, percent(s.OverdueShare))
				}
			}
		}
	case "rfm":
		if *pipelineName != "" || *by != "" || *owners != "" || *team != "" || *from != "" || *to != "" {
			fmt.Fprintf(stderr, "rfm takes --reference and --currency, not pipelines, periods or slices\n%s\n", reportUsage)
			return errUsage
		}
		opts := analytics.RFMOptions{Currency: *currency, Reference: ref, ExternalIDs: true}
		rfm, err := r.RFM(ctx, opts)
		if err != nil {
			return err
		}
		rep, table = rfm, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "reference %s, amounts in %s minor units\n", rfm.Reference.Format(time.DateOnly), rfm.Currency)
			fmt.Fprintln(w, "CUSTOMER\tRECENCY\tFREQUENCY\tMONETARY\tR\tF\tM\tSEGMENT")
			for _, row := range rfm.Rows {
				id := row.CustomerID
				if row.ExternalID != "" {
					id = row.ExternalID
				}
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", id, row.RecencyDays, row.Frequency, row.Monetary, row.R, row.F, row.M, row.Segment)
			}
		}
	default:
		fmt.Fprintf(stderr, "unknown report %q\n%s\n", kind, reportUsage)
		return errUsage
	}
	switch *format {
	case "csv":
		return rep.WriteCSV(stdout)
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	default:
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		table(w)
		return w.Flush()
	}
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

func percent(x float64) string { return strconv.FormatFloat(100*x, 'f', 1, 64) + "%" }
