package expression

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
)

// concatFunc replaces the + operator on strings so that a concatenation
// that would pass MaxStringLen fails before it allocates.
const concatFunc = "_concat"

// errTooLong is returned when a string or list function would build a
// value beyond the limits.
var errTooLong = errors.New("result would exceed the size limit")

// functions returns the CRM function library, bound to the clock, and the
// size-checked replacements of the builtins that can grow values.
func functions(lim Limits) []expr.Option {
	clock := lim.Clock
	day := 24 * time.Hour
	return []expr.Option{
		expr.Function("now", func(...any) (any, error) { return clock(), nil }, new(func() time.Time)),
		expr.Function("daysSince", func(p ...any) (any, error) {
			return int(clock().Sub(p[0].(time.Time)) / day), nil
		}, new(func(time.Time) int)),
		expr.Function("monthsSince", func(p ...any) (any, error) {
			return monthsBetween(p[0].(time.Time), clock()), nil
		}, new(func(time.Time) int)),
		expr.Function("age", func(p ...any) (any, error) {
			return monthsBetween(p[0].(time.Time), clock()) / 12, nil
		}, new(func(time.Time) int)),
		expr.Function("birthdayWithin", func(p ...any) (any, error) {
			return birthdayWithin(p[0].(time.Time), clock(), p[1].(int)), nil
		}, new(func(time.Time, int) bool)),
		expr.Function("hasTag", func(p ...any) (any, error) {
			tag := p[1].(string)
			switch tags := p[0].(type) {
			case []string:
				return slices.ContainsFunc(tags, func(t string) bool { return strings.EqualFold(t, tag) }), nil
			case []any: // from a JSON document
				return slices.ContainsFunc(tags, func(t any) bool { s, ok := t.(string); return ok && strings.EqualFold(s, tag) }), nil
			}
			return nil, fmt.Errorf("hasTag: tags are %T, not a list of strings", p[0])
		}, new(func([]string, string) bool)),
		expr.Function("between", func(p ...any) (any, error) {
			switch x := p[0].(type) {
			case int:
				return p[1].(int) <= x && x <= p[2].(int), nil
			case float64:
				return p[1].(float64) <= x && x <= p[2].(float64), nil
			}
			return nil, fmt.Errorf("between: unsupported %T", p[0])
		}, new(func(int, int, int) bool), new(func(float64, float64, float64) bool)),
		expr.Function("sumBy", func(p ...any) (any, error) {
			var sum int
			err := eachField(p[0], p[1].(string), lim.MaxCollectionLen, func(v reflect.Value) error {
				switch v.Kind() {
				case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
					sum += int(v.Int())
				case reflect.Uint8, reflect.Uint16, reflect.Uint32:
					sum += int(v.Uint())
				case reflect.Float64, reflect.Float32:
					if f := v.Float(); f == float64(int(f)) {
						sum += int(f)
						return nil
					}
					return fmt.Errorf("sumBy: %s is %v, not a whole number", p[1], v.Float())
				default:
					return fmt.Errorf("sumBy: %s is %s, not a number", p[1], v.Kind())
				}
				return nil
			})
			return sum, err
		}, new(func(any, string) int)),
		expr.Function("countBy", func(p ...any) (any, error) {
			counts := map[string]any{}
			err := eachField(p[0], p[1].(string), lim.MaxCollectionLen, func(v reflect.Value) error {
				k := fmt.Sprint(v.Interface())
				n, _ := counts[k].(int)
				counts[k] = n + 1
				return nil
			})
			return counts, err
		}, new(func(any, string) map[string]any)),
		expr.Function(concatFunc, func(p ...any) (any, error) {
			a, b := p[0].(string), p[1].(string)
			if len(a)+len(b) > lim.MaxStringLen {
				return nil, fmt.Errorf("string concatenation of %d bytes: %w (%d)", len(a)+len(b), errTooLong, lim.MaxStringLen)
			}
			return a + b, nil
		}, new(func(string, string) string)),
		expr.Operator("+", concatFunc),
		expr.DisableBuiltin("replace"),
		expr.Function("replace", func(p ...any) (any, error) {
			s, old, repl := p[0].(string), p[1].(string), p[2].(string)
			n := len(s)
			if old == "" {
				n += (utf8.RuneCountInString(s) + 1) * len(repl)
			} else {
				n += strings.Count(s, old) * (len(repl) - len(old))
			}
			if n > lim.MaxStringLen {
				return nil, fmt.Errorf("replace to %d bytes: %w (%d)", n, errTooLong, lim.MaxStringLen)
			}
			return strings.ReplaceAll(s, old, repl), nil
		}, new(func(string, string, string) string)),
		expr.DisableBuiltin("join"),
		expr.Function("join", func(p ...any) (any, error) {
			sep := ""
			if len(p) > 1 {
				sep = p[1].(string)
			}
			parts, err := strs(p[0])
			if err != nil {
				return nil, err
			}
			n := len(sep) * max(len(parts)-1, 0)
			for _, s := range parts {
				n += len(s)
			}
			if n > lim.MaxStringLen {
				return nil, fmt.Errorf("join to %d bytes: %w (%d)", n, errTooLong, lim.MaxStringLen)
			}
			return strings.Join(parts, sep), nil
		}, new(func([]string) string), new(func([]string, string) string), new(func([]any) string), new(func([]any, string) string)),
		expr.DisableBuiltin("concat"),
		expr.Function("concat", func(p ...any) (any, error) {
			var out []any
			for _, a := range p {
				v := reflect.ValueOf(a)
				if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
					return nil, fmt.Errorf("concat: %T is not a list", a)
				}
				if len(out)+v.Len() > int(lim.MemoryBudget) {
					return nil, fmt.Errorf("concat to %d elements: %w (%d)", len(out)+v.Len(), errTooLong, lim.MemoryBudget)
				}
				for i := range v.Len() {
					out = append(out, v.Index(i).Interface())
				}
			}
			return out, nil
		}),
	}
}

func strs(v any) ([]string, error) {
	switch v := v.(type) {
	case []string:
		return v, nil
	case []any:
		out := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("join: element %d is %T, not a string", i, e)
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("join: %T is not a list of strings", v)
}

// monthsBetween returns the whole months from a to b.
func monthsBetween(a, b time.Time) int {
	b = b.In(a.Location())
	m := (b.Year()-a.Year())*12 + int(b.Month()) - int(a.Month())
	if b.Day() < a.Day() {
		m--
	}
	return m
}

// birthdayWithin reports whether the next anniversary of birthday falls
// within days days from now (today included).
func birthdayWithin(birthday, now time.Time, days int) bool {
	now = now.In(birthday.Location())
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	next := time.Date(now.Year(), birthday.Month(), birthday.Day(), 0, 0, 0, 0, now.Location())
	if next.Before(today) {
		next = next.AddDate(1, 0, 0)
	}
	return next.Sub(today) <= time.Duration(days)*24*time.Hour
}

// eachField calls fn with the named field of every element of list (a
// slice or array of structs, pointers to structs or maps). A struct field
// is found by its expr tag, then its json tag, then its Go name.
func eachField(list any, field string, maxLen int, fn func(reflect.Value) error) error {
	v := reflect.ValueOf(list)
	if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
		return fmt.Errorf("%T is not a list", list)
	}
	if v.Len() > maxLen {
		return fmt.Errorf("list of %d elements: %w (%d)", v.Len(), errTooLong, maxLen)
	}
	for i := range v.Len() {
		e := v.Index(i)
		for e.Kind() == reflect.Interface || e.Kind() == reflect.Pointer {
			if e.IsNil() {
				return fmt.Errorf("element %d is nil", i)
			}
			e = e.Elem()
		}
		var f reflect.Value
		switch e.Kind() {
		case reflect.Struct:
			f = structField(e, field)
		case reflect.Map:
			if e.Type().Key().Kind() == reflect.String {
				f = e.MapIndex(reflect.ValueOf(field).Convert(e.Type().Key()))
			}
		}
		for f.IsValid() && f.Kind() == reflect.Interface && !f.IsNil() {
			f = f.Elem()
		}
		if !f.IsValid() {
			return fmt.Errorf("element %d has no field %q", i, field)
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

func structField(v reflect.Value, name string) reflect.Value {
	t := v.Type()
	for _, tag := range []string{"expr", "json"} {
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() && strings.Split(f.Tag.Get(tag), ",")[0] == name {
				return v.Field(i)
			}
		}
	}
	if f, ok := t.FieldByName(name); ok && f.IsExported() {
		return v.FieldByIndex(f.Index)
	}
	return reflect.Value{}
}
