package analytics

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"time"
)

// HTMLOptions configure WriteHTML.
type HTMLOptions struct {
	// Title heads the page; empty means "Rapport reports".
	Title string
	// Generated is printed under the title when it is not zero.
	Generated time.Time
}

var page = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>{{.Title}}</title>
<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
.chart svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 0.85em; margin-top: 1em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; }
th { background: #f4f6f8; } td:first-child, th:first-child { text-align: left; }
details { margin-top: 0.5em; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{if .Generated}}<p>Generated {{.Generated}}</p>{{end}}
{{range .Sections}}<section>
<h2>{{.Title}}</h2>
{{if .SVG}}<div class="chart">{{.SVG}}</div>{{end}}
<details{{if .Open}} open{{end}}><summary>{{len .Table.Rows}} rows</summary>
<table>
<thead><tr>{{range .Table.Columns}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>{{range .Table.Rows}}
<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}
</tbody>
</table>
</details>
</section>
{{end}}</body>
</html>
`))

// openRows is how many table rows a section shows unfolded.
const openRows = 50

// WriteHTML writes one self-contained HTML page with a section per
// report: its chart as inline SVG and its table. The page loads nothing:
// no script, no style sheet, font or image from elsewhere (its content
// security policy forbids it), so it opens offline and can be mailed as
// it is.
func WriteHTML(w io.Writer, opts HTMLOptions, reports ...Report) error {
	type section struct {
		Title string
		SVG   template.HTML
		Table Table
		Open  bool
	}
	data := struct {
		Title, Generated string
		Sections         []section
	}{Title: opts.Title}
	if data.Title == "" {
		data.Title = "Rapport reports"
	}
	if !opts.Generated.IsZero() {
		data.Generated = opts.Generated.Format(time.RFC1123)
	}
	for _, r := range reports {
		s := section{Title: r.Title(), Table: r.Table()}
		s.Open = len(s.Table.Rows) <= openRows
		if c := r.Chart(); c != nil {
			var buf bytes.Buffer
			if err := c.WriteSVG(&buf); err != nil {
				return fmt.Errorf("analytics: chart of %s: %w", s.Title, err)
			}
			// The chart package escapes every text it draws.
			s.SVG = template.HTML(buf.String())
		}
		data.Sections = append(data.Sections, s)
	}
	return page.Execute(w, data)
}
