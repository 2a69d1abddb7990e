package crm

import (
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"

	"github.com/rapportcrm/rapport/storage"
)

// Limits on field values.
const (
	// MaxTextLen is the maximum length in characters of a short text field
	// (names, titles, industry).
	MaxTextLen = 200
	// MaxTags is the maximum number of tags on a record.
	MaxTags = 100
	// MaxTagLen is the maximum length in characters of one tag.
	MaxTagLen = 64
	// MaxLongTextLen is the maximum length in characters of a long text
	// field (descriptions, notes, message bodies), which may hold line
	// breaks and tabs.
	MaxLongTextLen = 100_000
)

var customKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// checkMeta normalises and validates the fields every entity has.
func checkMeta(m *Meta, p *problems) {
	if m.ID != "" { // empty on create: the engine assigns one
		if err := storage.ValidateID("id", m.ID); err != nil {
			p.add("id", "%v", err)
		}
	}
	m.Owner = strings.TrimSpace(m.Owner)
	if m.Owner != "" {
		if err := storage.ValidateID("owner", m.Owner); err != nil {
			p.add("owner", "%v", err)
		}
	}
	if len(m.Tags) > MaxTags {
		p.add("tags", "%d tags, the limit is %d", len(m.Tags), MaxTags)
	}
	tags := make([]string, 0, len(m.Tags))
	for _, t := range m.Tags {
		t = strings.TrimSpace(t)
		switch {
		case t == "":
			p.add("tags", "a tag is empty")
		case !isText(t, MaxTagLen):
			p.add("tags", "tag %q: want at most %d printable characters", t, MaxTagLen)
		default:
			if !contains(tags, t) {
				tags = append(tags, t)
			}
		}
	}
	if len(tags) == 0 {
		tags = nil
	}
	m.Tags = tags
	for k := range m.Custom {
		if !customKeyRE.MatchString(k) {
			p.add("custom."+k, "custom field key must be 1-64 of [a-z0-9_], starting with a letter")
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// isText reports whether s is valid UTF-8, at most max characters, with
// no control characters.
// minTime and maxTime bound the times records hold: years 1 to 9998, so
// that times serialise as RFC 3339 and index values, plus a day, stay in
// four-digit years.
var (
	minTime = time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9998, 12, 31, 0, 0, 0, 0, time.UTC)
)

// checkTime validates a time field: zero, or between minTime and maxTime.
func checkTime(p *problems, field string, t time.Time) {
	if !t.IsZero() && (t.Before(minTime) || t.After(maxTime)) {
		p.add(field, "%s is outside the years 1 to 9998", t.Format(time.RFC3339))
	}
}

// checkLongText validates a long text field: valid UTF-8, at most
// MaxLongTextLen characters, no control characters but line breaks and
// tabs.
func checkLongText(p *problems, field, s string) {
	ok := utf8.ValidString(s) && utf8.RuneCountInString(s) <= MaxLongTextLen &&
		strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' }) < 0
	if !ok {
		p.add(field, "want at most %d characters of text (no control characters but line breaks and tabs)", MaxLongTextLen)
	}
}

func isText(s string, max int) bool {
	return utf8.ValidString(s) && utf8.RuneCountInString(s) <= max && strings.IndexFunc(s, unicode.IsControl) < 0
}

// checkText trims a short text field and validates its length: at most
// MaxTextLen characters and, because such fields may be indexed, at most
// storage.MaxIndexValueLen bytes.
func checkText(p *problems, field string, s *string) {
	*s = strings.TrimSpace(*s)
	switch {
	case *s == "":
	case !isText(*s, MaxTextLen):
		p.add(field, "want at most %d printable characters", MaxTextLen)
	case len(*s) > storage.MaxIndexValueLen:
		p.add(field, "is %d bytes long, the limit is %d", len(*s), storage.MaxIndexValueLen)
	}
}

// checkEmail trims and lower-cases an email address and validates it.
func checkEmail(p *problems, field string, s *string) {
	*s = strings.ToLower(strings.TrimSpace(*s))
	if *s == "" {
		return
	}
	addr, err := mail.ParseAddress(*s)
	if err != nil || addr.Name != "" || addr.Address != *s || len(*s) > 254 {
		p.add(field, "%q is not an email address", *s)
		return
	}
	_, domain, _ := strings.Cut(*s, "@")
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		p.add(field, "%q has no valid domain", *s)
	}
}

// checkPhone normalises a phone number by dropping spaces, dots, dashes
// and parentheses, keeping a leading '+', and checks that 7 to 15 digits
// remain (the E.164 maximum).
// normalisePhone rewrites a phone number checked by checkPhone in E.164
// form when it has a country code or region gives one.
func normalisePhone(p *problems, field string, s *string, region string) {
	if *s == "" || (region == "" && !strings.HasPrefix(*s, "+")) || p.has(field) {
		return
	}
	n, err := phonenumbers.Parse(*s, region)
	if err != nil || !phonenumbers.IsPossibleNumber(n) {
		p.add(field, "%q is not a possible phone number", *s)
		return
	}
	*s = phonenumbers.Format(n, phonenumbers.E164)
}

func checkPhone(p *problems, field string, s *string) {
	in := strings.TrimSpace(*s)
	if in == "" {
		*s = ""
		return
	}
	var b strings.Builder
	for i, r := range in {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			p.add(field, "%q contains %q; a phone number has digits, spaces, dashes, dots, parentheses and a leading +", in, r)
			return
		}
	}
	out := b.String()
	digits := len(strings.TrimPrefix(out, "+"))
	if digits < 7 || digits > 15 {
		p.add(field, "%q has %d digits, want 7 to 15", in, digits)
		return
	}
	*s = out
}

var domainRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)

// checkDomain normalises a web domain ("https://www.Example.com/" →
// "example.com") and validates it.
func checkDomain(p *problems, field string, s *string) {
	d := strings.ToLower(strings.TrimSpace(*s))
	d = strings.TrimPrefix(strings.TrimPrefix(d, "https://"), "http://")
	d = strings.TrimPrefix(d, "www.")
	d = strings.TrimSuffix(d, "/")
	*s = d
	if d != "" && (len(d) > 253 || !domainRE.MatchString(d)) {
		p.add(field, "%q is not a domain name", d)
	}
}
