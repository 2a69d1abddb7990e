package analytics_test

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/analytics"
)

// allReports computes one report of every kind over the hand-made
// histories.
func allReports(t *testing.T) []analytics.Report {
	t.Helper()
	ctx := context.Background()
	var out []analytics.Report
	add := func(rep analytics.Report, err error) {
		t.Helper()
		require.NoError(t, err)
		out = append(out, rep)
	}
	sales := analytics.New(salesHistory(t).Default())
	f, err := sales.Funnel(ctx, analytics.FunnelQuery{Pipeline: "sales", Period: march})
	add(f, err)
	st, err := sales.Stages(ctx, analytics.StagesQuery{Pipeline: "sales", Period: march})
	add(st, err)
	add((*analytics.Overdue)(st), nil)
	closed := analytics.New(closedHistory(t).Default())
	l, err := closed.Lost(ctx, analytics.LostQuery{Period: march})
	add(l, err)
	fc, err := closed.Forecast(ctx, analytics.ForecastQuery{})
	add(fc, err)
	c, err := closed.Commission(ctx, analytics.CommissionQuery{Period: march, Rates: analytics.CommissionRates{Default: 250}})
	add(c, err)
	p, err := closed.Plan(ctx, analytics.PlanQuery{})
	add(p, err)
	me, _ := marketingHistory(t)
	mk := analytics.New(me.Default())
	ld, err := mk.Leads(ctx, analytics.LeadsQuery{Period: march})
	add(ld, err)
	cp, err := mk.Campaigns(ctx, analytics.CampaignsQuery{})
	add(cp, err)
	pr, err := mk.Products(ctx, analytics.ProductsQuery{})
	add(pr, err)
	re, _ := rfmOrders(t, time.UTC)
	rr := analytics.New(re.Default())
	rfm, err := rr.RFM(ctx, analytics.RFMOptions{})
	add(rfm, err)
	clv, err := rr.CLV(ctx, analytics.CLVOptions{})
	add(clv, err)
	co, err := analytics.New(cohortOrders(t, time.UTC).Default()).Cohorts(ctx, analytics.CohortsQuery{Months: 3})
	add(co, err)
	sat, err := rr.Satisfaction(ctx, analytics.SatisfactionQuery{})
	add(sat, err)
	return out
}

// externalRef finds anything in a page that a browser would fetch.
var externalRef = regexp.MustCompile(`(?i)(src|href|action)\s*=|url\(|@import|<script|<link|<iframe|<img`)

func TestHTMLReport(t *testing.T) {
	reports := allReports(t)
	var buf bytes.Buffer
	require.NoError(t, analytics.WriteHTML(&buf, analytics.HTMLOptions{Title: "March <review>", Generated: day(time.April, 5)}, reports...))
	html := buf.String()

	assert.Contains(t, html, "<title>March &lt;review&gt;</title>", "the title is escaped")
	for _, r := range reports {
		assert.Contains(t, html, "<h2>"+templateEscape(r.Title())+"</h2>")
		tab := r.Table()
		for _, col := range tab.Columns {
			assert.Contains(t, html, "<th>"+col+"</th>", r.Title())
		}
		for _, row := range tab.Rows {
			var cells strings.Builder
			for _, c := range row {
				cells.WriteString("<td>" + templateEscape(c) + "</td>")
			}
			assert.Contains(t, html, "<tr>"+cells.String()+"</tr>", "%s: every row of the table", r.Title())
		}
	}
	assert.Equal(t, len(reports), strings.Count(html, "<svg "), "a chart per report")
	assert.Empty(t, externalRef.FindAllString(html, -1), "the page loads nothing from elsewhere")
	assert.Equal(t, strings.Count(html, "http"), strings.Count(html, `xmlns="http://www.w3.org/2000/svg"`)+1,
		"no address but the SVG namespace (and the CSP meta tag's http-equiv)")

	dir := t.ArtifactDir()
	page := filepath.Join(dir, "report.html")
	require.NoError(t, os.WriteFile(page, buf.Bytes(), 0o644))
	for _, r := range reports {
		var svg bytes.Buffer
		require.NoError(t, r.Chart().WriteSVG(&svg))
		name := strings.Map(func(c rune) rune {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
				return c
			}
			return '-'
		}, r.Title())
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".svg"), svg.Bytes(), 0o644))
	}
	screenshot(t, page, filepath.Join(dir, "report.png"))
}

func templateEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;", "+", "&#43;").Replace(s)
}

// screenshot opens the page in headless Chromium with every network
// request refused, and checks that it drew the charts.
func screenshot(t *testing.T, page, out string) {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv("RAPPORT_REQUIRE_CHROMIUM") != "" {
			t.Fatal("Chromium is not installed; make deps installs it (Debian package chromium)")
		}
		t.Skip("Chromium is not installed: the HTML report is checked but not opened; run make test (which installs Debian's chromium) to open it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", // no network
		"--user-data-dir="+t.TempDir(), "--window-size=1200,2400", "--screenshot="+out, "file://"+page)
	// Chromium starts helper processes that inherit its output: kill the
	// whole process group at the deadline, and stop waiting for the
	// output soon after, so that a hung browser fails the test instead of
	// hanging it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	output, err := cmd.CombinedOutput()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind
	}
	require.NoError(t, err, "chromium: %s", output)
	f, err := os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	// The first series colour (#4e79a7) must be on screen: the charts drew.
	b := img.Bounds()
	found := false
	for y := b.Min.Y; y < b.Max.Y && !found; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 == 0x4e && g>>8 == 0x79 && bl>>8 == 0xa7 {
				found = true
				break
			}
		}
	}
	assert.True(t, found, "the screenshot %s shows the charts", out)
	t.Logf("screenshot: %s", out)
}
