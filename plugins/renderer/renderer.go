// Package renderer is Rapport's reference document renderer: commercial
// proposals, contracts and invoices as PDF or HTML, filled from
// plugins.DocumentData. It implements plugins.Renderer in-process;
// rapport-renderer serves it as a plugin.
//
// A template is a layout (YAML): a heading, blocks (paragraphs, side by
// side columns, the table of priced lines with its totals) and a footer,
// whose texts are Go text/template templates over the document data. The
// same layout renders to PDF (with an embedded Unicode font) and to HTML
// (through html/template). A directory can add templates or replace the
// built-in ones (NAME.yaml), and give a template its own HTML page
// (NAME.html, an html/template over the same data).
//
// Templates are checked when they are loaded: a template that refers to a
// field the data does not have is a load error, not an empty string in a
// customer's document.
package renderer

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"

	"go.yaml.in/yaml/v3"

	"github.com/rapportcrm/rapport/plugins"
)

//go:embed templates/*.yaml
var builtin embed.FS

// Layout is a template's description, as its YAML file gives it.
type Layout struct {
	// Name is the template's name; it must match the file's name.
	Name string `yaml:"name"`
	// Title is its human-readable name.
	Title string `yaml:"title"`
	// FileName names the output, without extension (a template).
	FileName string `yaml:"file_name"`
	// Heading is the document's title line (a template).
	Heading string  `yaml:"heading"`
	Blocks  []Block `yaml:"blocks"`
	// Footer is printed at the bottom of each page (a template).
	Footer string `yaml:"footer"`
}

// Block is one part of a document; exactly one field is set.
type Block struct {
	// Heading is a section title (a template).
	Heading string `yaml:"heading,omitempty"`
	// Text is a paragraph (a template); one that renders empty is left
	// out.
	Text string `yaml:"text,omitempty"`
	// Columns are boxes side by side, each with a title and a text (a
	// template).
	Columns []Column `yaml:"columns,omitempty"`
	// Lines places the table of priced lines and the totals.
	Lines bool `yaml:"lines,omitempty"`
}

// Column is one box of a Columns block.
type Column struct {
	Title string `yaml:"title"`
	Text  string `yaml:"text"`
}

// Options configure a Renderer.
type Options struct {
	// Dir, if set, holds templates that add to or replace the built-in
	// ones: NAME.yaml layouts and NAME.html pages.
	Dir string
}

// Renderer renders documents from layouts. It is safe for concurrent use.
type Renderer struct {
	templates map[string]*compiled
	order     []string
}

type compiled struct {
	layout   Layout
	fileName *template.Template
	heading  *template.Template
	blocks   []compiledBlock
	footer   *template.Template
	page     *htmltemplate.Template // NAME.html, or the default page
}

type compiledBlock struct {
	heading *template.Template
	text    *template.Template
	columns []compiledColumn
	lines   bool
}

type compiledColumn struct {
	title string
	text  *template.Template
}

// New loads the built-in templates and those of opts.Dir.
func New(opts Options) (*Renderer, error) {
	r := &Renderer{templates: map[string]*compiled{}}
	if err := r.loadDir(builtin, "templates", "built-in"); err != nil {
		return nil, err
	}
	if opts.Dir != "" {
		if err := r.loadDir(os.DirFS(opts.Dir), ".", opts.Dir); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *Renderer) loadDir(fsys fs.FS, dir, origin string) error {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return fmt.Errorf("renderer: templates in %s: %w", origin, err)
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != ".yaml" {
			continue
		}
		name := strings.TrimSuffix(e.Name(), ".yaml")
		src, err := fs.ReadFile(fsys, pathJoin(dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var page []byte
		if p, err := fs.ReadFile(fsys, pathJoin(dir, name+".html")); err == nil {
			page = p
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		c, err := compile(name, src, page)
		if err != nil {
			errs = append(errs, fmt.Errorf("renderer: template %s in %s: %w", e.Name(), origin, err))
			continue
		}
		if _, ok := r.templates[name]; !ok {
			r.order = append(r.order, name)
		}
		r.templates[name] = c
	}
	return errors.Join(errs...)
}

func pathJoin(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// Compile checks a layout (and an optional HTML page for it) as New would
// load it from NAME.yaml and NAME.html, so that template authors can test
// theirs.
func Compile(name string, layout, page []byte) error {
	_, err := compile(name, layout, page)
	return err
}

func compile(name string, src, page []byte) (*compiled, error) {
	var l Layout
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("layout: %w", err)
	}
	if l.Name != name {
		return nil, fmt.Errorf("name %q differs from the file's name %q", l.Name, name)
	}
	if l.Title == "" {
		l.Title = name
	}
	c := &compiled{layout: l}
	var errs []error
	parse := func(field, text string) *template.Template {
		t, err := template.New(field).Option("missingkey=error").Parse(text)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			return nil
		}
		return t
	}
	fileName := l.FileName
	if fileName == "" {
		fileName = name + "-{{.Number}}"
	}
	c.fileName = parse("file_name", fileName)
	c.heading = parse("heading", l.Heading)
	c.footer = parse("footer", l.Footer)
	hasLines := false
	for i, b := range l.Blocks {
		f := fmt.Sprintf("blocks[%d]", i)
		set := 0
		var cb compiledBlock
		if b.Heading != "" {
			set++
			cb.heading = parse(f+".heading", b.Heading)
		}
		if b.Text != "" {
			set++
			cb.text = parse(f+".text", b.Text)
		}
		if len(b.Columns) > 0 {
			set++
			for j, col := range b.Columns {
				cb.columns = append(cb.columns, compiledColumn{title: col.Title, text: parse(fmt.Sprintf("%s.columns[%d].text", f, j), col.Text)})
			}
		}
		if b.Lines {
			set++
			cb.lines = true
			hasLines = true
		}
		if set != 1 {
			errs = append(errs, fmt.Errorf("%s: exactly one of heading, text, columns and lines must be set", f))
		}
		c.blocks = append(c.blocks, cb)
	}
	if !hasLines {
		errs = append(errs, errors.New("no lines block: a document without its priced lines is not one this renderer makes"))
	}
	pageSrc := defaultPage
	if page != nil {
		pageSrc = string(page)
	}
	p, err := htmltemplate.New(name + ".html").Option("missingkey=error").Funcs(htmltemplate.FuncMap{"inc": func(i int) int { return i + 1 }}).Parse(pageSrc)
	if err != nil {
		errs = append(errs, fmt.Errorf("html page: %w", err))
	}
	c.page = p
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Fill it once with sample data: a reference to a field that does
	// not exist fails here rather than in a customer's document.
	sample := sampleView()
	doc, err := c.fill(sample)
	if err != nil {
		return nil, err
	}
	if err := c.page.Execute(&bytes.Buffer{}, pageData{View: sample, Doc: doc}); err != nil {
		return nil, fmt.Errorf("html page: %w", err)
	}
	return c, nil
}

// View is what a template sees: the document data, its totals, and
// helpers to format amounts.
type View struct {
	plugins.DocumentData
	Totals plugins.Totals
}

// Money formats an amount in minor units in the document's currency,
// e.g. "1,234.56 EUR".
func (v View) Money(minor int64) string {
	return plugins.FormatAmount(minor, v.Scale, v.Currency)
}

// Percent formats a rate in basis points, e.g. "20%" or "7.5%".
func (v View) Percent(bp int64) string {
	s := plugins.FormatAmount(bp, 2, "")
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "%"
}

func sampleView() View {
	d := plugins.DocumentData{
		Number: "SAMPLE-1", IssuedOn: "2026-01-02", DueOn: "2026-02-01", ValidUntil: "2026-02-01",
		Currency: "EUR", Scale: 2,
		Seller:   plugins.Party{Name: "Seller", Email: "s@example.com", Phone: "+1", Address: "1 Main St", TaxID: "T1"},
		Customer: plugins.Party{Name: "Customer", Email: "c@example.com", Phone: "+2", Address: "2 Side St", TaxID: "T2"},
		Account:  plugins.Party{Name: "Account", Address: "3 High St", TaxID: "T3"},
		Deal:     plugins.Deal{ID: "d1", Title: "Deal", Stage: "proposal", Owner: "owner", ExpectedClose: "2026-03-01"},
		Lines:    []plugins.Line{{SKU: "S1", Description: "Item", Unit: "piece", Quantity: 1, UnitPrice: 100, TaxBP: 2000}},
		Notes:    "Notes",
	}
	t, _ := d.Totals()
	return View{DocumentData: d, Totals: t}
}

// filled is a layout filled with data: plain strings, ready for PDF or
// HTML.
type filled struct {
	FileName string
	Heading  string
	Blocks   []filledBlock
	Footer   string
}

type filledBlock struct {
	Heading string
	Text    string
	Columns []filledColumn
	Lines   bool
}

type filledColumn struct{ Title, Text string }

func (c *compiled) fill(v View) (*filled, error) {
	var errs []error
	exec := func(t *template.Template) string {
		var b strings.Builder
		if err := t.Execute(&b, v); err != nil {
			errs = append(errs, err)
		}
		return strings.TrimSpace(collapseBlankLines(b.String()))
	}
	f := &filled{FileName: exec(c.fileName), Heading: exec(c.heading), Footer: exec(c.footer)}
	for _, b := range c.blocks {
		var fb filledBlock
		switch {
		case b.heading != nil:
			fb.Heading = exec(b.heading)
		case b.text != nil:
			fb.Text = exec(b.text)
			if fb.Text == "" {
				continue
			}
		case b.columns != nil:
			for _, col := range b.columns {
				fb.Columns = append(fb.Columns, filledColumn{Title: col.title, Text: exec(col.text)})
			}
		default:
			fb.Lines = true
		}
		f.Blocks = append(f.Blocks, fb)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

// collapseBlankLines drops the empty lines a template's {{with}} leaves
// inside a paragraph, keeping blank lines between paragraphs single.
func collapseBlankLines(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for i, l := range lines {
		l = strings.TrimRight(l, " \t")
		if l == "" && (len(out) == 0 || out[len(out)-1] == "" || i == len(lines)-1) {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// Templates implements plugins.Renderer.
func (r *Renderer) Templates(context.Context) ([]plugins.Template, error) {
	var out []plugins.Template
	for _, n := range r.order {
		out = append(out, plugins.Template{Name: n, Title: r.templates[n].layout.Title, Formats: []plugins.Format{plugins.PDF, plugins.HTML}})
	}
	return out, nil
}

// Render implements plugins.Renderer. Unknown templates and formats and
// invalid data are errors wrapping plugins.ErrRejected.
func (r *Renderer) Render(ctx context.Context, req plugins.RenderRequest) (plugins.Document, error) {
	c, ok := r.templates[req.Template]
	if !ok {
		return plugins.Document{}, plugins.Rejectf("renderer: no template %q (have %s)", req.Template, strings.Join(r.order, ", "))
	}
	if !slices.Contains([]plugins.Format{plugins.PDF, plugins.HTML}, req.Format) {
		return plugins.Document{}, plugins.Rejectf("renderer: format %q is not pdf or html", req.Format)
	}
	totals, err := req.Data.Totals()
	if err != nil {
		return plugins.Document{}, err
	}
	if err := ctx.Err(); err != nil {
		return plugins.Document{}, err
	}
	v := View{DocumentData: req.Data, Totals: totals}
	f, err := c.fill(v)
	if err != nil {
		return plugins.Document{}, plugins.Rejectf("renderer: template %s: %v", req.Template, err)
	}
	name := safeFileName(f.FileName, req.Template)
	switch req.Format {
	case plugins.HTML:
		var b bytes.Buffer
		if err := c.page.Execute(&b, pageData{View: v, Doc: f}); err != nil {
			return plugins.Document{}, plugins.Rejectf("renderer: template %s: %v", req.Template, err)
		}
		return plugins.Document{Content: b.Bytes(), MIMEType: "text/html; charset=utf-8", FileName: name + ".html"}, nil
	default:
		b, err := renderPDF(v, f)
		if err != nil {
			return plugins.Document{}, fmt.Errorf("renderer: template %s: %w", req.Template, err)
		}
		return plugins.Document{Content: b, MIMEType: "application/pdf", FileName: name + ".pdf"}, nil
	}
}

// safeFileName keeps letters, digits, '-', '_' and '.' of a file name.
func safeFileName(s, fallback string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		case r == ' ' || r == '/':
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-.")
	if out == "" {
		return fallback
	}
	return out
}
