package storage

import (
	"fmt"
	"regexp"

	"github.com/tidwall/gjson"
)

// Collection declares a collection and its secondary indexes.
type Collection struct {
	// Name is 1 to 64 characters of lower-case letters, digits and '_',
	// starting with a letter or '_'.
	Name string
	// Indexes are kept consistent with the records in every transaction.
	Indexes []Index
}

// Index declares a secondary index. An index maps each record to zero or
// more string values, taken either from a field of the body (Field) or by a
// function (Extract). Empty values are not indexed.
type Index struct {
	// Name is unique within the collection and follows the rules for
	// collection names.
	Name string
	// Unique allows each value at most once per tenant and collection.
	Unique bool
	// Field is a dot-separated path to a field of the body, for example
	// "email" or "address.city". A string is indexed as it is, a number or
	// boolean as its JSON text, an array as each of its elements; null,
	// objects and missing fields are not indexed.
	Field string
	// Extract computes the values instead of Field. It must be a pure
	// function of the body. When its logic changes, change Version so that
	// Declare rebuilds the index.
	Extract func(body []byte) ([]string, error)
	// Version is part of the index definition; changing it makes Declare
	// rebuild the index from the stored records.
	Version int
	// Columns, when set, declares that every value of the index is
	// len(Columns) fields joined by FieldSep, of these names and types: a
	// write whose value does not parse is refused (ErrInvalid). A store
	// that can query typed data keeps them in typed columns too, so that
	// reports aggregate where the data lives (PostgreSQL: a table named
	// by ColumnsTable).
	Columns []Column
}

// Definition returns a string that identifies the index's definition; an
// index is rebuilt by Declare when its definition changes.
func (ix Index) Definition() string {
	src := "field:" + ix.Field
	if ix.Extract != nil {
		src = "extract"
	}
	return fmt.Sprintf("%s unique=%t %s v%d", ix.Name, ix.Unique, src, ix.Version) + ix.columnsDefinition()
}

var (
	nameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,63}$`)
	// fieldRE is a dot path of plain JSON member names: no characters that
	// gjson would read as wildcards, queries or modifiers.
	fieldRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// Validate reports whether the declaration follows the rules.
func (c Collection) Validate() error {
	if !nameRE.MatchString(c.Name) {
		return invalidf("collection name %q: want 1-64 of [a-z0-9_], not starting with a digit", c.Name)
	}
	seen := make(map[string]bool, len(c.Indexes))
	for _, ix := range c.Indexes {
		if !nameRE.MatchString(ix.Name) {
			return invalidf("collection %s: index name %q: want 1-64 of [a-z0-9_], not starting with a digit", c.Name, ix.Name)
		}
		if seen[ix.Name] {
			return invalidf("collection %s: index %q declared twice", c.Name, ix.Name)
		}
		seen[ix.Name] = true
		if (ix.Field == "") == (ix.Extract == nil) {
			return invalidf("collection %s: index %s: set exactly one of Field and Extract", c.Name, ix.Name)
		}
		if ix.Field != "" && !fieldRE.MatchString(ix.Field) {
			return invalidf("collection %s: index %s: field %q: want member names of [A-Za-z0-9_-] joined by dots", c.Name, ix.Name, ix.Field)
		}
		cols := map[string]bool{}
		for _, col := range ix.Columns {
			if !nameRE.MatchString(col.Name) || cols[col.Name] {
				return invalidf("collection %s: index %s: column name %q: want 1-64 of [a-z0-9_], not starting with a digit, once", c.Name, ix.Name, col.Name)
			}
			if col.Type < ColumnText || col.Type > ColumnTime {
				return invalidf("collection %s: index %s: column %s: unknown type %d", c.Name, ix.Name, col.Name, col.Type)
			}
			cols[col.Name] = true
		}
	}
	return nil
}

// Index returns the index with the given name.
func (c Collection) Index(name string) (Index, bool) {
	for _, ix := range c.Indexes {
		if ix.Name == name {
			return ix, true
		}
	}
	return Index{}, false
}

// IndexValues returns the values each index of c takes for body, in the
// order of c.Indexes, deduplicated and validated. body must be a valid JSON
// object.
func (c Collection) IndexValues(body []byte) ([][]string, error) {
	if len(c.Indexes) == 0 {
		return nil, nil
	}
	out := make([][]string, len(c.Indexes))
	top := topLevelFields(body, c.Indexes)
	for i, ix := range c.Indexes {
		var vals []string
		switch {
		case ix.Extract != nil:
			v, err := ix.Extract(body)
			if err != nil {
				return nil, invalidf("collection %s: index %s: %v", c.Name, ix.Name, err)
			}
			vals = v
		case top != nil && plainKey(ix.Field):
			vals = resultValues(top[i])
		default:
			vals = resultValues(gjson.GetBytes(body, ix.Field))
		}
		vals, err := cleanValues(vals)
		if err != nil {
			return nil, fmt.Errorf("collection %s: index %s: %w", c.Name, ix.Name, err)
		}
		if len(ix.Columns) > 0 {
			for _, v := range vals {
				if _, err := ParseColumns(ix, v); err != nil {
					return nil, fmt.Errorf("collection %s: %w", c.Name, err)
				}
			}
		}
		out[i] = vals
	}
	return out, nil
}

// plainKey reports whether path names a top-level field: no dots, and
// nothing gjson would read as a wildcard, modifier or escape.
func plainKey(path string) bool {
	if path == "" {
		return false
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// topLevelFields reads, in one pass over body, the values of the indexes
// whose field is a top-level key: result i belongs to indexes[i]. It
// returns nil when fewer than two indexes have such a field, where one
// gjson lookup each is as cheap. As with gjson.Get, the first occurrence
// of a key wins.
func topLevelFields(body []byte, indexes []Index) []gjson.Result {
	want := 0
	for _, ix := range indexes {
		if ix.Extract == nil && plainKey(ix.Field) {
			want++
		}
	}
	if want < 2 {
		return nil
	}
	out := make([]gjson.Result, len(indexes))
	seen := make([]bool, len(indexes))
	gjson.ParseBytes(body).ForEach(func(k, v gjson.Result) bool {
		for i, ix := range indexes {
			if !seen[i] && ix.Extract == nil && ix.Field == k.Str {
				out[i], seen[i] = v, true
				want--
			}
		}
		return want > 0
	})
	return out
}

// resultValues renders a field's value as index values: a scalar as one
// value, an array as one value per scalar element, anything else as none.
func resultValues(r gjson.Result) []string {
	if r.IsArray() {
		var out []string
		r.ForEach(func(_, e gjson.Result) bool {
			if s, ok := scalarString(e); ok {
				out = append(out, s)
			}
			return true
		})
		return out
	}
	if s, ok := scalarString(r); ok {
		return []string{s}
	}
	return nil
}

// scalarString renders a string, number or boolean as an index value.
func scalarString(r gjson.Result) (string, bool) {
	switch r.Type {
	case gjson.String:
		return r.Str, true
	case gjson.Number:
		return r.Raw, true
	case gjson.True:
		return "true", true
	case gjson.False:
		return "false", true
	default:
		return "", false
	}
}

// cleanValues drops empty values and duplicates and checks the limits.
func cleanValues(vals []string) ([]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := vals[:0:0]
	for _, v := range vals {
		if v == "" {
			continue
		}
		if err := ValidateIndexValue(v); err != nil {
			return nil, err
		}
		dup := false
		for _, o := range out {
			if o == v {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, v)
		}
	}
	return out, nil
}

// ValidateCollections checks the declarations of one Store.Declare call:
// each valid, and no collection declared twice.
func ValidateCollections(collections ...Collection) error {
	names := make(map[string]bool, len(collections))
	for _, c := range collections {
		if err := c.Validate(); err != nil {
			return err
		}
		if names[c.Name] {
			return invalidf("collection %q declared twice", c.Name)
		}
		names[c.Name] = true
	}
	return nil
}

// ValidateScan checks a query against the collection it scans: its shape,
// and that its index is declared (ErrUnknownIndex if not).
func (c Collection) ValidateScan(q Query) error {
	if err := ValidateQuery(q); err != nil {
		return err
	}
	if q.Index != "" {
		if _, ok := c.Index(q.Index); !ok {
			return fmt.Errorf("%w: %s.%s", ErrUnknownIndex, c.Name, q.Index)
		}
	}
	return nil
}
