package renderer

// pageData is what an HTML page sees: the View (document data, totals,
// Money and Percent) and Doc, the layout's filled texts.
type pageData struct {
	View
	Doc *filled
}

// defaultPage renders any layout to HTML. A template's own NAME.html
// replaces it; it sees the same pageData.
const defaultPage = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Doc.Heading}}</title>
<style>
body { font-family: sans-serif; max-width: 48rem; margin: 2rem auto; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.1rem; margin-top: 1.5rem; }
p, .col div { white-space: pre-line; }
.cols { display: flex; gap: 2rem; } .col { flex: 1; } .col h3 { font-size: .9rem; color: #666; margin: 0 0 .3rem; }
table { width: 100%; border-collapse: collapse; margin: 1rem 0; }
th, td { padding: .3rem .4rem; border-bottom: 1px solid #ddd; text-align: left; }
td.num, th.num { text-align: right; white-space: nowrap; }
tfoot td { border: none; } tfoot tr.total td { font-weight: bold; border-top: 2px solid #222; }
footer { margin-top: 2rem; font-size: .8rem; color: #666; }
</style>
</head>
<body>
<h1>{{.Doc.Heading}}</h1>
{{range .Doc.Blocks}}
{{- if .Heading}}<h2>{{.Heading}}</h2>
{{else if .Text}}<p>{{.Text}}</p>
{{else if .Columns}}<div class="cols">{{range .Columns}}<div class="col"><h3>{{.Title}}</h3><div>{{.Text}}</div></div>{{end}}</div>
{{else if .Lines}}{{template "lines" $}}
{{end}}
{{- end}}
{{with .Doc.Footer}}<footer>{{.}}</footer>{{end}}
</body>
</html>
{{define "lines"}}<table>
<thead><tr><th>#</th><th>Description</th><th class="num">Quantity</th><th class="num">Unit price</th><th class="num">Discount</th><th class="num">Tax</th><th class="num">Amount</th></tr></thead>
<tbody>
{{- range $i, $l := .View.Lines}}{{$t := index $.View.Totals.Lines $i}}
<tr><td>{{inc $i}}</td><td>{{$l.Description}}{{with $l.SKU}} ({{.}}){{end}}</td><td class="num">{{$l.Quantity}}{{with $l.Unit}} {{.}}{{end}}</td><td class="num">{{$.Money $l.UnitPrice}}</td><td class="num">{{if $t.Discount}}−{{$.Money $t.Discount}}{{end}}</td><td class="num">{{$.Percent $l.TaxBP}}</td><td class="num">{{$.Money $t.Net}}</td></tr>
{{- end}}
</tbody>
<tfoot>
<tr><td colspan="6" class="num">Net</td><td class="num">{{.Money .Totals.Net}}</td></tr>
{{- range .Totals.TaxByRate}}
<tr><td colspan="6" class="num">Tax {{$.Percent .RateBP}} on {{$.Money .Net}}</td><td class="num">{{$.Money .Tax}}</td></tr>
{{- end}}
<tr class="total"><td colspan="6" class="num">Total</td><td class="num">{{.Money .Totals.Gross}}</td></tr>
</tfoot>
</table>{{end}}`
