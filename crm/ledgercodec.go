package crm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"github.com/rapportcrm/rapport/loyalty"
)

// A ledger account record is read and written once per operation, and a
// member's open lots make most of it: encoding/json spent 26 µs decoding
// 25 lots, mostly on their times. So the record has its own compact
// form: lots are arrays, times Unix seconds and nanoseconds.
//
//	{"member":"ann","negative":false,"balance":150,"pending":0,"debt":0,"seq":7,
//	 "lots":[[id,"key",points,remaining,earnedSec,earnedNsec,expiresSec,expiresNsec,"partner",flags,expired,activatesSec,activatesNsec],...]}
//
// flags: 1 pending, 2 reversed, 4 has an expiry, 8 has an activation time.
const (
	lotPending   = 1
	lotReversed  = 2
	lotExpires   = 4
	lotActivates = 8
	lotFields    = 13
)

func encodeLedgerState(st *loyalty.State) []byte {
	b := make([]byte, 0, 128+96*len(st.Lots))
	b = append(b, `{"member":`...)
	b = appendJSONString(b, st.Member)
	b = append(b, `,"negative":`...)
	b = strconv.AppendBool(b, st.AllowNegative)
	for _, f := range []struct {
		name string
		v    int64
	}{{"balance", st.Balance}, {"pending", st.Pending}, {"debt", st.Debt}, {"seq", st.Seq}} {
		b = append(b, `,"`...)
		b = append(b, f.name...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, f.v, 10)
	}
	b = append(b, `,"lots":[`...)
	for i, l := range st.Lots {
		if i > 0 {
			b = append(b, ',')
		}
		flags := 0
		if l.Pending {
			flags |= lotPending
		}
		if l.Reversed {
			flags |= lotReversed
		}
		var expSec, expNsec, actSec, actNsec int64
		if !l.ExpiresAt.IsZero() {
			flags |= lotExpires
			expSec, expNsec = l.ExpiresAt.Unix(), int64(l.ExpiresAt.Nanosecond())
		}
		if !l.ActivatesAt.IsZero() {
			flags |= lotActivates
			actSec, actNsec = l.ActivatesAt.Unix(), int64(l.ActivatesAt.Nanosecond())
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, l.ID, 10)
		b = append(b, ',')
		b = appendJSONString(b, l.Key)
		for _, n := range []int64{l.Points, l.Remaining, l.EarnedAt.Unix(), int64(l.EarnedAt.Nanosecond()), expSec, expNsec} {
			b = append(b, ',')
			b = strconv.AppendInt(b, n, 10)
		}
		b = append(b, ',')
		b = appendJSONString(b, l.Partner)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(flags), 10)
		for _, n := range []int64{l.Expired, actSec, actNsec} {
			b = append(b, ',')
			b = strconv.AppendInt(b, n, 10)
		}
		b = append(b, ']')
	}
	return append(b, "]}"...)
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := json.Marshal(s) // cannot fail for a string
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func decodeLedgerState(body []byte, st *loyalty.State) error {
	if !gjson.ValidBytes(body) {
		return fmt.Errorf("ledger account is not valid JSON")
	}
	r := gjson.ParseBytes(body)
	st.Member = r.Get("member").String()
	st.AllowNegative = r.Get("negative").Bool()
	st.Balance = r.Get("balance").Int()
	st.Pending = r.Get("pending").Int()
	st.Debt = r.Get("debt").Int()
	st.Seq = r.Get("seq").Int()
	lots := r.Get("lots")
	if !lots.IsArray() {
		return fmt.Errorf("ledger account has no lots array")
	}
	// gjson's Array builds a Result per element; the lots are read with
	// a scanner that knows their shape instead.
	sc := lotScanner{s: lots.Raw}
	st.Lots = st.Lots[:0]
	sc.expect('[')
	for sc.err == nil && !sc.peek(']') {
		if len(st.Lots) > 0 {
			sc.expect(',')
		}
		var l loyalty.Lot
		var earnSec, earnNsec, expSec, expNsec, actSec, actNsec, flags int64
		sc.expect('[')
		l.ID = sc.int()
		sc.expect(',')
		l.Key = sc.str()
		for _, p := range []*int64{&l.Points, &l.Remaining, &earnSec, &earnNsec, &expSec, &expNsec} {
			sc.expect(',')
			*p = sc.int()
		}
		sc.expect(',')
		l.Partner = sc.str()
		sc.expect(',')
		flags = sc.int()
		for _, p := range []*int64{&l.Expired, &actSec, &actNsec} {
			sc.expect(',')
			*p = sc.int()
		}
		sc.expect(']')
		l.EarnedAt = time.Unix(earnSec, earnNsec).UTC()
		if flags&lotExpires != 0 {
			l.ExpiresAt = time.Unix(expSec, expNsec).UTC()
		}
		if flags&lotActivates != 0 {
			l.ActivatesAt = time.Unix(actSec, actNsec).UTC()
		}
		l.Pending, l.Reversed = flags&lotPending != 0, flags&lotReversed != 0
		st.Lots = append(st.Lots, l)
	}
	sc.expect(']')
	if sc.err != nil {
		return fmt.Errorf("ledger account lots: %w", sc.err)
	}
	return nil
}

// lotScanner reads the lots array of a ledger account record.
type lotScanner struct {
	s   string
	i   int
	err error
}

func (sc *lotScanner) space() {
	for sc.i < len(sc.s) && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\n' || sc.s[sc.i] == '\t' || sc.s[sc.i] == '\r') {
		sc.i++
	}
}

func (sc *lotScanner) fail(what string) {
	if sc.err == nil {
		sc.err = fmt.Errorf("want %s at offset %d", what, sc.i)
	}
}

func (sc *lotScanner) peek(c byte) bool {
	sc.space()
	return sc.i < len(sc.s) && sc.s[sc.i] == c
}

func (sc *lotScanner) expect(c byte) {
	if sc.err != nil {
		return
	}
	if !sc.peek(c) {
		sc.fail(strconv.QuoteRune(rune(c)))
		return
	}
	sc.i++
}

func (sc *lotScanner) int() int64 {
	if sc.err != nil {
		return 0
	}
	sc.space()
	j := sc.i
	if j < len(sc.s) && sc.s[j] == '-' {
		j++
	}
	for j < len(sc.s) && sc.s[j] >= '0' && sc.s[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(sc.s[sc.i:j], 10, 64)
	if err != nil {
		sc.fail("an integer")
		return 0
	}
	sc.i = j
	return n
}

func (sc *lotScanner) str() string {
	if sc.err != nil {
		return ""
	}
	if !sc.peek('"') {
		sc.fail("a string")
		return ""
	}
	escaped := false
	for j := sc.i + 1; j < len(sc.s); j++ {
		switch sc.s[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			raw := sc.s[sc.i : j+1]
			sc.i = j + 1
			if !escaped {
				return raw[1 : len(raw)-1] // shares the record body's copy
			}
			var out string
			if err := json.Unmarshal([]byte(raw), &out); err != nil {
				sc.fail("a string")
			}
			return out
		}
	}
	sc.fail("the end of a string")
	return ""
}
