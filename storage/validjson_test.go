package storage

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// FuzzValidJSON checks that validJSON accepts exactly what encoding/json
// accepts. Run it with: go test ./storage -run '^$' -fuzz FuzzValidJSON
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,2,{"b":null}],"c":"\u00e9\n","d":true,"e":-0.1e+5}`,
		`{}`, `[]`, ` {"a":1} `, `01`, `1.`, `.5`, `-`, `1e`, `"\x"`, `"\u12"`,
		"\"\xff\"", "\"a\tb\"", `{"a":1,}`, `[1,]`, `{"a" 1}`, `{a:1}`, `nul`, `truee`,
		strings.Repeat("[", 1000) + strings.Repeat("]", 1000),
		strings.Repeat("[", 1000) + strings.Repeat("]", 999),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

// FuzzIndexValues checks that the one-pass read of top-level fields in
// IndexValues gives what one gjson lookup per index gives.
func FuzzIndexValues(f *testing.F) {
	for _, s := range []string{
		`{"a":"x","b":[1,"y",true,null,{"z":1}],"c":2.5,"x":{"y":"n"}}`,
		`{"a":"first","a":"second","b":"b"}`,
		`{"\u0061":"escaped","b":"\"q\""}`,
		`{"c":[],"b":{},"a":null}`,
		`{"x.y":"dotted","x":{"y":"nested"}}`,
	} {
		f.Add([]byte(s))
	}
	c := Collection{Name: "f", Indexes: []Index{
		{Name: "a", Field: "a"}, {Name: "b", Field: "b"}, {Name: "c", Field: "c"},
		{Name: "a2", Field: "a"}, {Name: "xy", Field: "x.y"}, {Name: "dash", Field: "d-e"},
	}}
	f.Fuzz(func(t *testing.T, body []byte) {
		if ValidateBody(body) != nil {
			return
		}
		got, gotErr := c.IndexValues(body)
		for i, ix := range c.Indexes {
			want, err := cleanValues(resultValues(gjson.GetBytes(body, ix.Field)))
			if err != nil {
				if gotErr == nil {
					t.Fatalf("%s: no error, want %v", ix.Name, err)
				}
				return
			}
			if gotErr != nil {
				t.Fatalf("unexpected error %v", gotErr)
			}
			if !slices.Equal(got[i], want) {
				t.Fatalf("index %s of %s: got %q, want %q", ix.Name, body, got[i], want)
			}
		}
	})
}
