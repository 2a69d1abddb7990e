// Package bulk imports and exports contacts, accounts, products and orders
// as CSV or JSON Lines through a crm.Tenant.
//
// An import reads rows, maps their columns to field names (by header, with
// Options.Mapping for other names), and stores the valid ones in batches,
// one transaction per batch. A row that is wrong is reported with its line
// number and skipped; the rest go on unless Options.StopOnError is set.
// Imports are restartable: a record whose external key (a contact's
// external ID or email, an account's external ID or domain, a product's
// SKU, an order's number) is stored already is counted as existing and not
// created again, so an import interrupted half way can simply be run
// again.
//
// Order lines use the field names order_number, customer_external_id,
// ordered_at, sku, description, quantity, unit_price, currency, country
// and, optionally, refund (true marks a refund when the number does not
// say so); lines that share an order_number form one order, whether or
// not they are adjacent in the file. Records without an external key
// cannot be recognised on a second run and are created again.
package bulk

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Format is a file format.
type Format string

// Formats.
const (
	CSV   Format = "csv"
	JSONL Format = "jsonl"
)

// ErrInvalid is wrapped by errors about the options or the file as a
// whole (an unknown format, a missing required column).
var ErrInvalid = errors.New("bulk: invalid input")

// RowError is a problem with one row of the input.
type RowError struct {
	// Line is the 1-based line number in the file (for CSV, the line the
	// row starts on; the header is line 1).
	Line int
	// Key names the record the row belongs to, if known (an order number).
	Key string
	Err error
}

func (e *RowError) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("line %d (%s): %v", e.Line, e.Key, e.Err)
	}
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

func (e *RowError) Unwrap() error { return e.Err }

// row is one input row: field name → value, after mapping.
type row struct {
	line   int
	fields map[string]string
}

func (r row) get(field string) string { return strings.TrimSpace(r.fields[field]) }

// rowReader reads rows from a CSV or JSON Lines file.
type rowReader interface {
	next() (row, error) // io.EOF at the end
}

// newRowReader returns a reader of rows with columns renamed by mapping
// (column → field; unmapped columns keep their name).
func newRowReader(r io.Reader, format Format, mapping map[string]string) (rowReader, error) {
	switch format {
	case CSV, "":
		cr := csv.NewReader(bufio.NewReaderSize(r, 1<<16))
		cr.ReuseRecord = true
		cr.FieldsPerRecord = -1 // short rows are reported per field, not per row
		header, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the file is empty (no header row)", ErrInvalid)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: header: %v", ErrInvalid, err)
		}
		names := make([]string, len(header))
		for i, h := range header {
			h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
			if f, ok := mapping[h]; ok {
				h = f
			}
			names[i] = h
		}
		return &csvRows{r: cr, names: names}, nil
	case JSONL:
		s := bufio.NewScanner(r)
		s.Buffer(make([]byte, 0, 64<<10), 2<<20) // rows up to 2 MiB
		return &jsonRows{s: s, mapping: mapping}, nil
	}
	return nil, fmt.Errorf("%w: format %q: want csv or jsonl", ErrInvalid, format)
}

type csvRows struct {
	r     *csv.Reader
	names []string
}

func (c *csvRows) next() (row, error) {
	rec, err := c.r.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return row{line: pe.StartLine}, &RowError{Line: pe.StartLine, Err: pe.Err}
		}
		return row{}, err
	}
	line, _ := c.r.FieldPos(0)
	fields := make(map[string]string, len(c.names))
	for i, v := range rec {
		if i < len(c.names) {
			fields[c.names[i]] = v
		}
	}
	return row{line: line, fields: fields}, nil
}

type jsonRows struct {
	s       *bufio.Scanner
	mapping map[string]string
	line    int
}

func (j *jsonRows) next() (row, error) {
	for j.s.Scan() {
		j.line++
		b := bytes.TrimSpace(j.s.Bytes())
		if len(b) == 0 {
			continue
		}
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return row{line: j.line}, &RowError{Line: j.line, Err: fmt.Errorf("not a JSON object: %v", err)}
		}
		fields := make(map[string]string, len(m))
		for k, v := range m {
			if f, ok := j.mapping[k]; ok {
				k = f
			}
			switch v := v.(type) {
			case nil:
			case string:
				fields[k] = v
			case json.Number:
				fields[k] = v.String()
			case bool:
				fields[k] = fmt.Sprint(v)
			default:
				raw, _ := json.Marshal(v)
				fields[k] = string(raw)
			}
		}
		return row{line: j.line, fields: fields}, nil
	}
	if err := j.s.Err(); err != nil {
		return row{}, fmt.Errorf("%w: after line %d: %v", ErrInvalid, j.line, err)
	}
	return row{}, io.EOF
}
