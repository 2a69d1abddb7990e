package kvstore

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"

	"github.com/rapportcrm/rapport/storage"
)

var (
	bucketMeta      = []byte("meta")
	bucketOutbox    = []byte("outbox")
	bucketConsumers = []byte("consumers")
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

func splitIndexKey(k []byte) (value, id string) {
	v, i, _ := bytes.Cut(k, []byte{0})
	return string(v), string(i)
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

func encodeCursor(k []byte) string { return base64.RawURLEncoding.EncodeToString(k) }

func decodeCursor(c string) ([]byte, error) {
	k, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(k) == 0 {
		return nil, fmt.Errorf("%w: malformed cursor %q", storage.ErrInvalid, c)
	}
	return k, nil
}
