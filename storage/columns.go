package storage

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
)

// FieldSep separates the fields of a value of an index with Columns.
const FieldSep = "\x1f"

// TimeLayout is the layout of a ColumnTime field: UTC with nanoseconds,
// so that values sort by time.
const TimeLayout = "2006-01-02T15:04:05.000000000Z"

// ColumnType is the type of one field of a columned index value.
type ColumnType int

// Column types.
const (
	// ColumnText is the field as it is (compared byte by byte).
	ColumnText ColumnType = iota
	// ColumnInt is a base-10 int64.
	ColumnInt
	// ColumnTime is a time in TimeLayout, or "" for no time.
	ColumnTime
)

// Column names and types one field of a columned index value.
type Column struct {
	// Name follows the rules for collection names.
	Name string
	Type ColumnType
}

// ParseColumns splits a value of ix, an index with Columns, into its
// fields: []byte for text, int64 for an integer, int64 Unix nanoseconds
// or nil for a time. A value that does not split into len(ix.Columns)
// fields or whose fields do not parse is ErrInvalid.
func ParseColumns(ix Index, value string) ([]any, error) {
	out := make([]any, len(ix.Columns))
	rest := value
	for i, c := range ix.Columns {
		field := rest
		if i < len(ix.Columns)-1 {
			var ok bool
			field, rest, ok = strings.Cut(rest, FieldSep)
			if !ok {
				return nil, invalidf("index %s: value %q has %d fields, the columns %d", ix.Name, value, i+1, len(ix.Columns))
			}
		} else if strings.Contains(field, FieldSep) {
			return nil, invalidf("index %s: value %q has more fields than the %d columns", ix.Name, value, len(ix.Columns))
		}
		switch c.Type {
		case ColumnText:
			out[i] = []byte(field)
		case ColumnInt:
			n, err := strconv.ParseInt(field, 10, 64)
			if err != nil {
				return nil, invalidf("index %s: column %s: %q is not an integer", ix.Name, c.Name, field)
			}
			out[i] = n
		case ColumnTime:
			if field == "" {
				continue
			}
			t, err := time.Parse(TimeLayout, field)
			if err != nil {
				return nil, invalidf("index %s: column %s: %q is not a time in TimeLayout", ix.Name, c.Name, field)
			}
			out[i] = t.UnixNano()
		default:
			return nil, invalidf("index %s: column %s: unknown type %d", ix.Name, c.Name, c.Type)
		}
	}
	return out, nil
}

// columnsDefinition is the part of Index.Definition that Columns adds.
func (ix Index) columnsDefinition() string {
	if len(ix.Columns) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" columns=")
	for i, c := range ix.Columns {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%d", c.Name, c.Type)
	}
	return b.String()
}

// ColumnsTable names the table of typed columns that a SQL store keeps
// for an index with Columns: cols_<collection>_<index>, or, when that is
// longer than a SQL identifier may be (63 bytes), cols_ and a hash.
func ColumnsTable(collection, index string) string {
	name := "cols_" + collection + "_" + index
	if len(name) <= 63 {
		return name
	}
	h := fnv.New64a()
	h.Write([]byte(collection + "\x00" + index))
	return fmt.Sprintf("cols_%016x", h.Sum64())
}
