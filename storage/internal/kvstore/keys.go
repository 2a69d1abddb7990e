package kvstore

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rapportcrm/rapport/storage"
)

var (
	bucketMeta      = []byte("meta")
	bucketOutbox    = []byte("outbox")
	bucketConsumers = []byte("consumers")
	// metaFormat is the key in meta of the on-disk format version.
	metaFormat = []byte("format")
)

func recordBucket(tenant, coll string) []byte {
	return []byte("r\x00" + tenant + "\x00" + coll)
}

func indexBucket(tenant, coll, index string) []byte {
	return []byte("i\x00" + tenant + "\x00" + coll + "\x00" + index)
}

// parseRecordBucket splits a record bucket name into tenant and collection.
func parseRecordBucket(name []byte) (tenant, coll string, ok bool) {
	rest, found := bytes.CutPrefix(name, []byte("r\x00"))
	if !found {
		return "", "", false
	}
	t, c, found := bytes.Cut(rest, []byte{0})
	if !found {
		return "", "", false
	}
	return string(t), string(c), true
}

// indexKey is value ‖ 0 ‖ id: entries sort by value, then by ID.
func indexKey(value, id string) []byte {
	k := make([]byte, 0, len(value)+1+len(id))
	k = append(k, value...)
	k = append(k, 0)
	return append(k, id...)
}

// holder returns the ID of a record that holds value in index bucket ib.
func holder(ib Bucket, value string) (id string, ok bool) {
	prefix := indexKey(value, "")
	ib.Ascend(prefix, func(k, _ []byte) bool {
		if bytes.HasPrefix(k, prefix) {
			id, ok = string(k[len(prefix):]), true
		}
		return false
	})
	return id, ok
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func seqFromKey(k []byte) uint64 { return binary.BigEndian.Uint64(k) }

func encodeRecord(version uint64, body []byte) []byte {
	v := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint64(v, version)
	return append(v, body...)
}

// decodeRecord splits a stored value; body aliases v.
func decodeRecord(v []byte) (version uint64, body []byte, err error) {
	if len(v) < 8 {
		return 0, nil, fmt.Errorf("corrupt record value of %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), v[8:], nil
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil if there is none.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// eventHeader is an outbox event without its body.
type eventHeader struct {
	Seq        uint64    `json:"seq"`
	Tenant     string    `json:"tenant"`
	Type       string    `json:"type"`
	Collection string    `json:"collection,omitempty"`
	RecordID   string    `json:"record_id,omitempty"`
	Time       time.Time `json:"time"`
}

// encodeEvent stores an event as a 4-byte header length, the header as
// JSON, and the body as it is (validated on Append), so that the body is
// neither re-encoded nor re-validated.
func encodeEvent(ev storage.Event) ([]byte, error) {
	h, err := json.Marshal(eventHeader{Seq: ev.Seq, Tenant: ev.Tenant, Type: ev.Type,
		Collection: ev.Collection, RecordID: ev.RecordID, Time: ev.Time})
	if err != nil {
		return nil, err
	}
	v := make([]byte, 4, 4+len(h)+len(ev.Body))
	binary.BigEndian.PutUint32(v, uint32(len(h)))
	v = append(v, h...)
	return append(v, ev.Body...), nil
}

func decodeEvent(v []byte) (storage.Event, error) {
	if len(v) < 4 || int(binary.BigEndian.Uint32(v)) > len(v)-4 {
		return storage.Event{}, fmt.Errorf("corrupt event value of %d bytes", len(v))
	}
	n := binary.BigEndian.Uint32(v)
	var h eventHeader
	if err := json.Unmarshal(v[4:4+n], &h); err != nil {
		return storage.Event{}, err
	}
	ev := storage.Event{Seq: h.Seq, Tenant: h.Tenant, Type: h.Type, Collection: h.Collection, RecordID: h.RecordID, Time: h.Time}
	if body := v[4+n:]; len(body) > 0 {
		ev.Body = bytes.Clone(body)
	}
	return ev, nil
}

func encodeCursor(k []byte) string { return base64.RawURLEncoding.EncodeToString(k) }

func decodeCursor(c string) ([]byte, error) {
	k, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(k) == 0 {
		return nil, fmt.Errorf("%w: malformed cursor %q", storage.ErrInvalid, c)
	}
	return k, nil
}
