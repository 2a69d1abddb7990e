// Package storagetest is the conformance suite of storage.Store. Every
// backend runs it unchanged from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store {
//			s := memory.New()
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// A durable backend also passes WithReopen, so that the suite checks what
// survives a close and reopen (records, versions, indexes, outbox positions).
// The suite uses github.com/stretchr/testify and runs its cases in parallel,
// each on a store of its own.
package storagetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
)

// NewStore returns a new, empty store for one test. It registers its own
// cleanup with t.
type NewStore func(t *testing.T) storage.Store

// Reopen closes s and returns a store opened on the same data.
type Reopen func(t *testing.T, s storage.Store) storage.Store

// Option configures Run.
type Option func(*suite)

// WithReopen tells the suite how to close and reopen a store, which enables
// the durability cases.
func WithReopen(r Reopen) Option { return func(s *suite) { s.reopen = r } }

type suite struct {
	newStore NewStore
	reopen   Reopen
}

// The collections every case declares.
const (
	people   = "people"   // unique index email, multi-valued index tags, index city
	counters = "counters" // no index
)

// Collections returns the declarations the suite uses; benchmarks use them too.
func Collections() []storage.Collection {
	return []storage.Collection{
		{Name: people, Indexes: []storage.Index{
			{Name: "email", Field: "email", Unique: true},
			{Name: "tags", Field: "tags"},
			{Name: "city", Field: "address.city"},
		}},
		{Name: counters},
	}
}

// Run runs the conformance suite against the stores newStore returns.
func Run(t *testing.T, newStore NewStore, opts ...Option) {
	s := &suite{newStore: newStore}
	for _, o := range opts {
		o(s)
	}
	cases := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"CRUD", s.testCRUD},
		{"Versions", s.testVersions},
		{"UniqueIndex", s.testUniqueIndex},
		{"IndexConsistency", s.testIndexConsistency},
		{"Declare", s.testDeclare},
		{"DeclareUnderWrites", s.testDeclareUnderWrites},
		{"ScanByID", s.testScanByID},
		{"ScanByIndex", s.testScanByIndex},
		{"ScanPagination", s.testScanPagination},
		{"ScanKeysOnly", s.testScanKeysOnly},
		{"Columns", s.testColumns},
		{"Rollback", s.testRollback},
		{"RollbackOnPanic", s.testRollbackOnPanic},
		{"TxAfterReturn", s.testTxAfterReturn},
		{"ConcurrentIncrements", s.testConcurrentIncrements},
		{"SnapshotUnderWrites", s.testSnapshot},
		{"TenantIsolation", s.testTenantIsolation},
		{"KeyBoundaries", s.testKeyBoundaries},
		{"Outbox", s.testOutbox},
		{"OutboxRollback", s.testOutboxRollback},
		{"OutboxSignal", s.testOutboxSignal},
		{"OutboxUnderConcurrentWrites", s.testOutboxConcurrent},
		{"RedactEvents", s.testRedactEvents},
		{"BadInput", s.testBadInput},
		{"CancelledContext", s.testCancelledContext},
		{"Closed", s.testClosed},
		{"CloseWaitsForTransactions", s.testCloseWaits},
	}
	if s.reopen != nil {
		cases = append(cases, []struct {
			name string
			fn   func(t *testing.T)
		}{
			{"Reopen", s.testReopen},
			{"OutboxAfterReopen", s.testOutboxAfterReopen},
		}...)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t)
		})
	}
}

// open returns a new store with the suite's collections declared.
func (s *suite) open(t *testing.T) storage.Store {
	t.Helper()
	st := s.newStore(t)
	require.NoError(t, st.Declare(context.Background(), Collections()...))
	return st
}

const tenant = "t1"

// person is the body of a people record.
type person struct {
	Name    string   `json:"name"`
	Email   string   `json:"email,omitempty"`
	Tags    []string `json:"tags,omitempty"`
	Address *address `json:"address,omitempty"`
	N       int      `json:"n"`
}

type address struct {
	City string `json:"city"`
}

func body(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func decode[T any](t testing.TB, raw json.RawMessage) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(raw, &v))
	return v
}

// put writes rec in its own transaction and returns the stored record.
func put(t testing.TB, st storage.Store, tenant, coll string, rec storage.Record) storage.Record {
	t.Helper()
	var out storage.Record
	require.NoError(t, st.Update(context.Background(), tenant, func(tx storage.Tx) error {
		var err error
		out, err = tx.Put(context.Background(), coll, rec)
		return err
	}))
	return out
}

func putErr(st storage.Store, tenant, coll string, rec storage.Record) error {
	return st.Update(context.Background(), tenant, func(tx storage.Tx) error {
		_, err := tx.Put(context.Background(), coll, rec)
		return err
	})
}

func get(t testing.TB, st storage.Store, tenant, coll, id string) (storage.Record, error) {
	t.Helper()
	var out storage.Record
	err := st.View(context.Background(), tenant, func(tx storage.ReadTx) error {
		var err error
		out, err = tx.Get(context.Background(), coll, id)
		return err
	})
	return out, err
}

func scan(t testing.TB, st storage.Store, tenant, coll string, q storage.Query) storage.Page {
	t.Helper()
	var p storage.Page
	require.NoError(t, st.View(context.Background(), tenant, func(tx storage.ReadTx) error {
		var err error
		p, err = tx.Scan(context.Background(), coll, q)
		return err
	}))
	return p
}

func ids(p storage.Page) []string {
	out := make([]string, len(p.Records))
	for i, r := range p.Records {
		out[i] = r.ID
	}
	return out
}

// scanAll follows cursors until the scan is complete.
func scanAll(t testing.TB, st storage.Store, tenant, coll string, q storage.Query) []storage.Record {
	t.Helper()
	var all []storage.Record
	for {
		p := scan(t, st, tenant, coll, q)
		all = append(all, p.Records...)
		if p.Next == "" {
			return all
		}
		q.Cursor = p.Next
	}
}

// dump returns every record of every suite collection and index entry of a
// tenant, plus the whole outbox, as comparable text: a test that expects
// "nothing changed" compares two dumps.
func dump(t testing.TB, st storage.Store, tenants ...string) []string {
	t.Helper()
	var out []string
	for _, tn := range tenants {
		for _, c := range Collections() {
			for _, r := range scanAll(t, st, tn, c.Name, storage.Query{Limit: storage.MaxScanLimit}) {
				out = append(out, fmt.Sprintf("%s/%s/%s v%d %s", tn, c.Name, r.ID, r.Version, r.Body))
			}
			for _, ix := range c.Indexes {
				p := scanAll(t, st, tn, c.Name, storage.Query{Index: ix.Name, Limit: storage.MaxScanLimit})
				for _, r := range p {
					out = append(out, fmt.Sprintf("%s/%s/%s→%s", tn, c.Name, ix.Name, r.ID))
				}
			}
		}
	}
	evs, err := st.ReadOutbox(context.Background(), "storagetest-dump", storage.MaxScanLimit)
	require.NoError(t, err)
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("event %d %s %s %s", ev.Seq, ev.Tenant, ev.Type, ev.RecordID))
	}
	sort.Strings(out)
	return out
}
