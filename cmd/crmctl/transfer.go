package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/rapportcrm/rapport/bulk"
	"github.com/rapportcrm/rapport/crm"
)

// errPartial reports an import that skipped some rows (exit code 3).
var errPartial = errors.New("some rows were skipped")

// mapFlag collects --map column=field pairs.
type mapFlag map[string]string

func (m mapFlag) String() string { return fmt.Sprint(map[string]string(m)) }

func (m mapFlag) Set(s string) error {
	col, field, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(col) == "" || strings.TrimSpace(field) == "" {
		return fmt.Errorf("want column=field, not %q", s)
	}
	m[strings.TrimSpace(col)] = strings.TrimSpace(field)
	return nil
}

// formatOf returns the format flag's value, or the file's by extension.
func formatOf(flagValue, file string) bulk.Format {
	if flagValue != "" {
		return bulk.Format(flagValue)
	}
	if ext := strings.ToLower(filepath.Ext(file)); ext == ".jsonl" || ext == ".ndjson" {
		return bulk.JSONL
	}
	return bulk.CSV
}

type importer func(context.Context, *crm.Tenant, io.Reader, bulk.Options) (bulk.Result, error)

var importers = map[string]importer{
	"contacts": bulk.ImportContacts, "accounts": bulk.ImportAccounts,
	"products": bulk.ImportProducts, "orders": bulk.ImportOrders,
}

// importCmd runs "crmctl import KIND FILE [flags]".
func importCmd(ctx context.Context, db database, tenant string, args []string, stdout, stderr io.Writer) (err error) {
	const use = "usage: crmctl import contacts|accounts|products|orders FILE [--map col=field]... [--format csv|jsonl] [--currency C] [--refund-prefix P] [--stop-on-error] [--batch N]"
	if len(args) < 2 || importers[args[0]] == nil {
		fmt.Fprintln(stderr, use)
		return errUsage
	}
	kind := args[0]
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mapping := mapFlag{}
	fs.Var(mapping, "map", "rename an input column to a field: column=field (repeatable)")
	format := fs.String("format", "", "csv or jsonl (default: by the file's extension, else csv)")
	currency := fs.String("currency", "", "currency of order lines without one")
	refund := fs.String("refund-prefix", "", "order numbers starting with this are refunds")
	stop := fs.Bool("stop-on-error", false, "stop at the first bad row")
	batch := fs.Int("batch", 0, "records per transaction (default 10000)")
	// Flags may come before or after FILE.
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, use)
		return errUsage
	}
	file := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments %q\n%s\n", fs.Args(), use)
		return errUsage
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	engine, closeDB, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeDB()) }()

	opts := bulk.Options{Format: formatOf(*format, file), Mapping: mapping, Currency: *currency,
		RefundPrefix: *refund, StopOnError: *stop, BatchSize: *batch}
	tty := isTerminal(stderr)
	if tty {
		opts.Progress = func(p bulk.Progress) { fmt.Fprintf(stderr, "\r%s: %d rows read, %d stored", kind, p.Rows, p.Stored) }
	}
	res, err := importers[kind](ctx, engine.Tenant(tenant), f, opts)
	if tty {
		fmt.Fprintln(stderr)
	}
	for _, e := range res.Errors {
		fmt.Fprintf(stderr, "%s:%v\n", file, e)
	}
	if more := res.Skipped - len(res.Errors); more > 0 && len(res.Errors) < res.Skipped {
		fmt.Fprintf(stderr, "%s: and %d more bad rows\n", file, more)
	}
	summary := struct {
		Kind             string `json:"kind"`
		Rows             int    `json:"rows"`
		Created          int    `json:"created"`
		Existing         int    `json:"existing"`
		CustomersCreated int    `json:"customers_created,omitempty"`
		Skipped          int    `json:"skipped"`
	}{kind, res.Rows, res.Created, res.Existing, res.CustomersCreated, res.Skipped}
	if jerr := json.NewEncoder(stdout).Encode(summary); jerr != nil {
		return errors.Join(err, jerr)
	}
	if err != nil {
		return err
	}
	if res.Skipped > 0 {
		return errPartial
	}
	return nil
}

type exporter func(context.Context, *crm.Tenant, io.Writer, bulk.Format) error

var exporters = map[string]exporter{
	"contacts": bulk.ExportContacts, "accounts": bulk.ExportAccounts,
	"products": bulk.ExportProducts, "orders": bulk.ExportOrders,
}

// exportCmd runs "crmctl export KIND [-o FILE] [--format csv|jsonl]".
func exportCmd(ctx context.Context, db database, tenant string, args []string, stdout, stderr io.Writer) (err error) {
	if len(args) < 1 || exporters[args[0]] == nil {
		fmt.Fprintln(stderr, "usage: crmctl export contacts|accounts|products|orders [-o FILE] [--format csv|jsonl]")
		return errUsage
	}
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write to FILE instead of standard output")
	format := fs.String("format", "", "csv or jsonl (default: by -o's extension, else csv)")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	if err := db.mustExist(); err != nil {
		return err
	}
	engine, closeDB, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeDB()) }()
	w := stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, f.Close()) }()
		w = f
	}
	return exporters[args[0]](ctx, engine.Tenant(tenant), w, formatOf(*format, *out))
}

// isTerminal reports whether w is a terminal, for progress output.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
