package storage

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Limits on input, enforced by every backend.
const (
	// MaxIDLen is the maximum length in bytes of a record ID, a tenant name
	// and an outbox consumer name.
	MaxIDLen = 128
	// MaxBodySize is the maximum size in bytes of a record body or an event
	// body: 1 MiB.
	MaxBodySize = 1 << 20
	// MaxIndexValueLen is the maximum length in bytes of one index value.
	MaxIndexValueLen = 512
	// DefaultScanLimit is the page size of a Query with Limit 0.
	DefaultScanLimit = 100
	// MaxScanLimit is the largest page a Query may ask for.
	MaxScanLimit = 10000
	// MaxEventTypeLen is the maximum length of an event type.
	MaxEventTypeLen = 128
)

// ValidateID checks an ID, tenant or consumer name: 1 to MaxIDLen bytes of
// valid UTF-8 with no control characters. what names the value in the error.
func ValidateID(what, id string) error {
	switch {
	case id == "":
		return invalidf("%s is empty", what)
	case len(id) > MaxIDLen:
		return invalidf("%s is %d bytes long, the limit is %d", what, len(id), MaxIDLen)
	case !utf8.ValidString(id):
		return invalidf("%s %q is not valid UTF-8", what, id)
	case strings.IndexFunc(id, unicode.IsControl) >= 0:
		return invalidf("%s %q contains a control character", what, id)
	}
	return nil
}

// ValidateIndexValue checks one index value.
func ValidateIndexValue(v string) error {
	switch {
	case len(v) > MaxIndexValueLen:
		return invalidf("index value is %d bytes long, the limit is %d", len(v), MaxIndexValueLen)
	case strings.IndexByte(v, 0) >= 0:
		return invalidf("index value %q contains a NUL byte", v)
	}
	return nil
}

// ValidateBody checks a record body: a JSON object of at most MaxBodySize bytes.
func ValidateBody(body json.RawMessage) error {
	if len(body) > MaxBodySize {
		return invalidf("body is %d bytes, the limit is %d", len(body), MaxBodySize)
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return invalidf("body is not a JSON object")
	}
	if !validJSON(body) {
		return invalidf("body is not valid JSON")
	}
	return nil
}

// ValidateEvent checks an event before it is appended.
func ValidateEvent(ev Event) error {
	if ev.Type == "" || len(ev.Type) > MaxEventTypeLen {
		return invalidf("event type %q: want 1 to %d bytes", ev.Type, MaxEventTypeLen)
	}
	if ev.RecordID != "" {
		if err := ValidateID("event record ID", ev.RecordID); err != nil {
			return err
		}
	}
	if len(ev.Body) > 0 {
		if len(ev.Body) > MaxBodySize {
			return invalidf("event body is %d bytes, the limit is %d", len(ev.Body), MaxBodySize)
		}
		if !validJSON(ev.Body) {
			return invalidf("event body is not valid JSON")
		}
	}
	return nil
}

// ValidateQuery checks a query's shape (not whether its index exists).
func ValidateQuery(q Query) error {
	n := 0
	if q.Equal != "" {
		n++
	}
	if q.Prefix != "" {
		n++
	}
	if q.Start != "" || q.End != "" {
		n++
	}
	if n > 1 {
		return invalidf("query: use at most one of Equal, Prefix and Start/End")
	}
	for _, v := range []string{q.Equal, q.Prefix, q.Start, q.End} {
		if strings.IndexByte(v, 0) >= 0 {
			return invalidf("query: %q contains a NUL byte", v)
		}
	}
	if q.Start != "" && q.End != "" && q.Start > q.End {
		return invalidf("query: Start %q is after End %q", q.Start, q.End)
	}
	if q.Limit < 0 || q.Limit > MaxScanLimit {
		return invalidf("query: Limit %d: want 0 to %d", q.Limit, MaxScanLimit)
	}
	return nil
}

// validJSON reports whether b is valid JSON. It accepts exactly what
// encoding/json.Valid accepts (FuzzValidJSON compares the two) and is about
// four times faster, which matters because every write validates its body.
func validJSON(b []byte) bool { return gjson.ValidBytes(b) }
