package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

	"github.com/rapportcrm/rapport/storage"
)

// Search is case- and accent-insensitive prefix search over names,
// emails, phones and company names. Each searchable record is indexed
// under its search terms ("search" index): every word of its names
// folded to lower case without accents ("Zoë Núñez" → "zoe", "nunez"),
// its email and the words of the email ("zoe.nunez@example.com" → "zoe",
// "nunez", "example", "com"), its phone's digits, its domain's words.
// A query matches a record when each of its words is a prefix of one of
// the record's terms.

// Lookup values put search terms and duplicate match keys behind a
// prefix, so that one index serves both (see lookup.go).
const (
	searchPrefix = "s" + sep
	dupPrefix    = "d" + sep
)

// fold returns s in lower case without accents or other marks.
func fold(s string) string {
	if isASCII(s) { // nothing to decompose: skip the Unicode transforms
		return strings.ToLower(s)
	}
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	out, _, err := transform.String(t, s)
	if err != nil {
		out = s
	}
	return strings.ToLower(out)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// words splits folded text into words of letters and digits.
func words(s string) []string {
	return strings.FieldsFunc(fold(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// searchTerms indexes the JSON fields of a record for search: words of
// text fields, whole emails and their local parts, phone digits.
func searchTerms(text, emails, phones []string) func([]byte) ([]string, error) {
	return func(body []byte) ([]string, error) {
		var terms []string
		add := func(t string) {
			if t != "" && len(t) <= storage.MaxIndexValueLen && !slices.Contains(terms, t) {
				terms = append(terms, t)
			}
		}
		for _, f := range text {
			for _, w := range words(gjsonString(body, f)) {
				add(w)
			}
		}
		for _, f := range emails {
			if e := fold(gjsonString(body, f)); e != "" {
				add(e)
				for _, w := range words(e) { // the local part's and the domain's words
					add(w)
				}
			}
		}
		for _, f := range phones {
			digits := strings.Map(func(r rune) rune {
				if r >= '0' && r <= '9' {
					return r
				}
				return -1
			}, gjsonString(body, f))
			add(digits)
		}
		return terms, nil
	}
}

// SearchOptions page through search results.
type SearchOptions struct {
	// Limit is the most records returned; 0 means 50.
	Limit int
	// Cursor continues after the previous page.
	Cursor string
}

// Search returns records matching query, a few words typed by a person:
// each word must be a prefix of one of the record's search terms (names,
// email, phone digits, company or domain, depending on the kind), case
// and accents ignored; archived records are left out. Records come in the
// order of their terms matching
// the query's longest word. A record with several terms that match can
// appear on two pages. Kinds without a search index (contacts, accounts
// and leads have one) fail with ErrInvalid.
func (r *Records[T]) Search(ctx context.Context, query string, opts SearchOptions) (Page[T], error) {
	var page Page[T]
	if r.k.search == nil {
		return page, fmt.Errorf("crm: %s: %w: not searchable", r.k.name, ErrInvalid)
	}
	qs := searchQuery(query)
	if len(qs) == 0 {
		return page, fmt.Errorf("crm: %s search: %w: the query %q has no letters or digits", r.k.name, ErrInvalid, query)
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = 50
	}
	if limit > storage.MaxScanLimit {
		limit = storage.MaxScanLimit
	}
	if err := r.t.e.catchUpLookup(ctx); err != nil {
		return page, err
	}
	// Scan the lookup index by the longest word (fewest candidates), keep
	// the records whose terms cover every word.
	first := slices.MaxFunc(qs, func(a, b string) int { return len(a) - len(b) })
	coll := r.k.collection.Name
	q := storage.Query{Index: "term", Prefix: searchPrefix + first, Cursor: opts.Cursor}
	err := r.view(ctx, func(tx storage.ReadTx) error {
		seen := map[string]bool{}
		for len(page.Items) < limit {
			// Each entry scanned adds at most one item, so a page never
			// overshoots the limit and the cursor stays exact.
			q.Limit = limit - len(page.Items)
			pg, err := tx.Scan(ctx, lookupOf(coll), q)
			if err != nil {
				return err
			}
			for _, l := range pg.Records {
				var e lookupEntry
				if err := json.Unmarshal(l.Body, &e); err != nil {
					return err
				}
				if seen[e.RecordID] || !covers(e.Terms, qs) {
					continue
				}
				seen[e.RecordID] = true
				rec, err := tx.Get(ctx, coll, e.RecordID)
				if errors.Is(err, storage.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				v, err := r.decode(rec)
				if err != nil {
					return err
				}
				if !r.k.meta(&v).ArchivedAt.IsZero() {
					continue
				}
				page.Items = append(page.Items, v)
			}
			page.Next = pg.Next
			if pg.Next == "" {
				return nil
			}
			q.Cursor = pg.Next
		}
		return nil
	})
	return page, err
}

// searchQuery splits a query into folded words; a query that looks like
// an email or a phone number is kept whole.
func searchQuery(query string) []string {
	q := strings.TrimSpace(query)
	if strings.Contains(q, "@") && !strings.ContainsAny(q, " \t") {
		return []string{fold(q)}
	}
	if strings.Trim(q, "+0123456789 ()-./") == "" {
		digits := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, q)
		if digits != "" {
			return []string{digits}
		}
	}
	return words(q)
}

// covers reports whether every query word is a prefix of some term.
func covers(terms, query []string) bool {
	for _, w := range query {
		if !slices.ContainsFunc(terms, func(t string) bool { return strings.HasPrefix(t, w) }) {
			return false
		}
	}
	return true
}
