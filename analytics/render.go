package analytics

import (
	"encoding/csv"
	"io"
	"strconv"
	"time"
)

// Every report marshals to JSON as it is (encoding/json); durations are
// nanoseconds there. WriteCSV writes one row per line with a header row;
// durations are whole seconds there, ratios have four decimals.

// WriteCSV writes the funnel with the columns
// group,stage,label,terminal,entered,reached,conversion.
func (f *Funnel) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"group", "stage", "label", "terminal", "entered", "reached", "conversion"})
	for _, g := range f.Groups {
		for _, s := range g.Stages {
			_ = cw.Write([]string{g.Key, s.Stage, s.Label, string(s.Terminal), strconv.Itoa(s.Entered), strconv.Itoa(s.Reached), fmtRatio(s.Conversion)})
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteCSV writes the stage report with the columns
// group,stage,label,norm,exits,average_seconds,median_seconds,current,overdue,overdue_share.
func (st *StageTimes) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"group", "stage", "label", "norm", "exits", "average_seconds", "median_seconds", "current", "overdue", "overdue_share"})
	for _, g := range st.Groups {
		for _, s := range g.Stages {
			_ = cw.Write([]string{g.Key, s.Stage, s.Label, s.Norm, strconv.Itoa(s.Exits), secs(s.Average), secs(s.Median),
				strconv.Itoa(s.Current), strconv.Itoa(s.Overdue), fmtRatio(s.OverdueShare)})
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteCSV writes the RFM rows with exactly the columns
// customer_id,recency_days,frequency,monetary_minor,r,f,m,segment, where
// customer_id is the row's ExternalID when it has one and its CustomerID
// otherwise.
func (r *RFM) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"customer_id", "recency_days", "frequency", "monetary_minor", "r", "f", "m", "segment"})
	for _, row := range r.Rows {
		id := row.CustomerID
		if row.ExternalID != "" {
			id = row.ExternalID
		}
		_ = cw.Write([]string{id, strconv.Itoa(row.RecencyDays), strconv.Itoa(row.Frequency), strconv.FormatInt(row.Monetary, 10),
			strconv.Itoa(row.R), strconv.Itoa(row.F), strconv.Itoa(row.M), row.Segment})
	}
	cw.Flush()
	return cw.Error()
}

func fmtRatio(x float64) string { return strconv.FormatFloat(x, 'f', 4, 64) }

func secs(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }
