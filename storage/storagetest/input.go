package storagetest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
)

// testBadInput feeds every kind of bad input to every operation: each must
// return an error wrapping the right sentinel, never panic, and leave the
// stored data exactly as it was.
func (s *suite) testBadInput(t *testing.T) {
	st := s.open(t)
	ctx := context.Background()
	put(t, st, tenant, people, storage.Record{ID: "p1", Body: body(t, person{Name: "A", Email: "a@x.io"})})
	before := dump(t, st, tenant)
	good := body(t, person{Name: "B"})
	big := json.RawMessage(`{"name":"` + strings.Repeat("x", storage.MaxBodySize) + `"}`)

	type op func(tx storage.Tx) error
	putOp := func(coll string, rec storage.Record) op {
		return func(tx storage.Tx) error { _, err := tx.Put(ctx, coll, rec); return err }
	}
	scanOp := func(coll string, q storage.Query) op {
		return func(tx storage.Tx) error { _, err := tx.Scan(ctx, coll, q); return err }
	}
	cases := []struct {
		name string
		op   op
		want error
	}{
		{"invalid JSON", putOp(people, storage.Record{ID: "n", Body: json.RawMessage(`{"name":`)}), storage.ErrInvalid},
		{"JSON array", putOp(people, storage.Record{ID: "n", Body: json.RawMessage(`[1,2]`)}), storage.ErrInvalid},
		{"JSON string", putOp(people, storage.Record{ID: "n", Body: json.RawMessage(`"x"`)}), storage.ErrInvalid},
		{"empty body", putOp(people, storage.Record{ID: "n"}), storage.ErrInvalid},
		{"trailing garbage", putOp(people, storage.Record{ID: "n", Body: json.RawMessage(`{} x`)}), storage.ErrInvalid},
		{"oversize body", putOp(people, storage.Record{ID: "n", Body: big}), storage.ErrInvalid},
		{"empty ID", putOp(people, storage.Record{Body: good}), storage.ErrInvalid},
		{"over-long ID", putOp(people, storage.Record{ID: strings.Repeat("i", storage.MaxIDLen+1), Body: good}), storage.ErrInvalid},
		{"control character in ID", putOp(people, storage.Record{ID: "a\nb", Body: good}), storage.ErrInvalid},
		{"NUL in ID", putOp(people, storage.Record{ID: "a\x00b", Body: good}), storage.ErrInvalid},
		{"invalid UTF-8 ID", putOp(people, storage.Record{ID: "a\xffb", Body: good}), storage.ErrInvalid},
		{"NUL in index value", putOp(people, storage.Record{ID: "n", Body: json.RawMessage(`{"email":"a\u0000b"}`)}), storage.ErrInvalid},
		{"over-long index value", putOp(people, storage.Record{ID: "n", Body: body(t, person{Email: strings.Repeat("e", storage.MaxIndexValueLen+1)})}), storage.ErrInvalid},
		{"unknown collection put", putOp("nope", storage.Record{ID: "n", Body: good}), storage.ErrUnknownCollection},
		{"unknown collection get", func(tx storage.Tx) error { _, err := tx.Get(ctx, "nope", "p1"); return err }, storage.ErrUnknownCollection},
		{"unknown collection delete", func(tx storage.Tx) error { return tx.Delete(ctx, "nope", "p1", 0) }, storage.ErrUnknownCollection},
		{"unknown collection scan", scanOp("nope", storage.Query{}), storage.ErrUnknownCollection},
		{"get empty ID", func(tx storage.Tx) error { _, err := tx.Get(ctx, people, ""); return err }, storage.ErrInvalid},
		{"delete over-long ID", func(tx storage.Tx) error { return tx.Delete(ctx, people, strings.Repeat("i", 500), 0) }, storage.ErrInvalid},
		{"unknown index", scanOp(people, storage.Query{Index: "nope"}), storage.ErrUnknownIndex},
		{"equal and prefix", scanOp(people, storage.Query{Equal: "a", Prefix: "a"}), storage.ErrInvalid},
		{"start after end", scanOp(people, storage.Query{Start: "b", End: "a"}), storage.ErrInvalid},
		{"limit too large", scanOp(people, storage.Query{Limit: storage.MaxScanLimit + 1}), storage.ErrInvalid},
		{"negative limit", scanOp(people, storage.Query{Limit: -1}), storage.ErrInvalid},
		{"NUL in prefix", scanOp(people, storage.Query{Index: "email", Prefix: "a\x00"}), storage.ErrInvalid},
		{"NUL in range end", scanOp(people, storage.Query{Index: "email", End: "a\x00"}), storage.ErrInvalid},
		{"NUL in equal", scanOp(people, storage.Query{Equal: "p1\x00"}), storage.ErrInvalid},
		{"malformed cursor", scanOp(people, storage.Query{Cursor: "%%%"}), storage.ErrInvalid},
		{"event without type", func(tx storage.Tx) error { return tx.Append(ctx, storage.Event{}) }, storage.ErrInvalid},
		{"event with invalid body", func(tx storage.Tx) error {
			return tx.Append(ctx, storage.Event{Type: "t", Body: json.RawMessage(`{`)})
		}, storage.ErrInvalid},
		{"event with bad record ID", func(tx storage.Tx) error {
			return tx.Append(ctx, storage.Event{Type: "t", RecordID: "a\x01"})
		}, storage.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The operation fails and the function commits anyway: still
			// nothing may be written.
			var opErr error
			err := st.Update(ctx, tenant, func(tx storage.Tx) error {
				opErr = c.op(tx)
				return nil
			})
			require.Error(t, opErr)
			assert.ErrorIs(t, opErr, c.want)
			assert.NoError(t, err)
			assert.Equal(t, before, dump(t, st, tenant))
		})
	}

	for _, bad := range []string{"", strings.Repeat("t", storage.MaxIDLen+1), "a\tb", "\xff"} {
		err := st.Update(ctx, bad, func(storage.Tx) error { return nil })
		assert.ErrorIs(t, err, storage.ErrInvalid, "tenant %q", bad)
		err = st.View(ctx, bad, func(storage.ReadTx) error { return nil })
		assert.ErrorIs(t, err, storage.ErrInvalid, "tenant %q", bad)
	}
	assert.Equal(t, before, dump(t, st, tenant))
}
