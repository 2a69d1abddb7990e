package crm_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	bbolt "go.etcd.io/bbolt"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

func benchContact(i int) crm.Contact {
	return crm.Contact{FirstName: "Customer", LastName: fmt.Sprint(i), Email: fmt.Sprintf("customer%d@example.com", i)}
}

// BenchmarkCreateDurable compares a durable single-contact create through
// the engine (validation, record, unique email index, outbox event, one
// fsync'd bbolt transaction) with raw bbolt Updates:
//   - raw-bbolt-record writes only the record's bytes, one key in one bucket;
//   - raw-bbolt-same-writes writes the same keys and values the engine
//     writes (record, index entry, outbox event), so the difference to the
//     engine is the engine's own work.
func BenchmarkCreateDurable(b *testing.B) {
	ctx := context.Background()
	b.Run("engine", func(b *testing.B) {
		e, err := crm.Open(ctx, crm.Options{Path: filepath.Join(b.TempDir(), "crm.db")})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		contacts := e.Contacts()
		i := 0
		for b.Loop() {
			if _, err := contacts.Create(ctx, benchContact(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	rawBody := func(i int) (id string, body []byte) {
		c := benchContact(i)
		c.ID, c.Tenant, c.Version = uuid.Must(uuid.NewV7()).String(), "default", 1
		c.CreatedAt = time.Now().UTC()
		c.UpdatedAt = c.CreatedAt
		body, err := json.Marshal(c)
		if err != nil {
			b.Fatal(err)
		}
		return c.ID, body
	}
	b.Run("raw-bbolt-record", func(b *testing.B) {
		rawBolt(b, rawBody, func(tx *bbolt.Tx, _ int, id string, body []byte) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("contacts"))
			if err != nil {
				return err
			}
			return bk.Put([]byte(id), body)
		})
	})
	b.Run("raw-bbolt-same-writes", func(b *testing.B) {
		rawBolt(b, rawBody, func(tx *bbolt.Tx, i int, id string, body []byte) error {
			recs, err := tx.CreateBucketIfNotExists([]byte("contacts"))
			if err != nil {
				return err
			}
			if err := recs.Put([]byte(id), body); err != nil {
				return err
			}
			ix, err := tx.CreateBucketIfNotExists([]byte("contacts-email"))
			if err != nil {
				return err
			}
			if err := ix.Put(fmt.Appendf(nil, "customer%d@example.com\x00%s", i, id), nil); err != nil {
				return err
			}
			ob, err := tx.CreateBucketIfNotExists([]byte("outbox"))
			if err != nil {
				return err
			}
			seq, err := ob.NextSequence()
			if err != nil {
				return err
			}
			return ob.Put(binary.BigEndian.AppendUint64(nil, seq), body)
		})
	})
}

// rawBolt runs one bbolt Update (default options) per iteration, writing
// the i-th contact's bytes with write.
func rawBolt(b *testing.B, rawBody func(int) (string, []byte), write func(tx *bbolt.Tx, i int, id string, body []byte) error) {
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	i := 0
	for b.Loop() {
		id, body := rawBody(i)
		err := db.Update(func(tx *bbolt.Tx) error { return write(tx, i, id, body) })
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkCreateMany creates contacts through the engine in transactions
// of 10,000 (an import) and reports records/s.
func BenchmarkCreateMany(b *testing.B) {
	ctx := context.Background()
	e, err := crm.Open(ctx, crm.Options{Path: filepath.Join(b.TempDir(), "crm.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	const batch = 10_000
	next := 0
	for b.Loop() {
		cs := make([]crm.Contact, batch)
		for i := range cs {
			cs[i] = benchContact(next + i)
			cs[i].Tags = []string{"import", fmt.Sprint("t", (next+i)%10)}
			cs[i].Owner = fmt.Sprint("u", (next+i)%20)
		}
		if _, err := e.Contacts().CreateMany(ctx, cs); err != nil {
			b.Fatal(err)
		}
		next += batch
	}
	b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkMoveDurable moves a deal back and forth between two stages
// through the engine on bbolt (pipeline check with a guard-free
// transition, deal update, history entry, event: one fsync'd
// transaction), against a raw bbolt Update of the deal's bytes.
func BenchmarkMoveDurable(b *testing.B) {
	ctx := context.Background()
	b.Run("engine", func(b *testing.B) {
		e, err := crm.Open(ctx, crm.Options{Path: filepath.Join(b.TempDir(), "crm.db")})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		def, err := pipeline.Builtin("b2b-deal")
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Pipelines().Save(ctx, def); err != nil {
			b.Fatal(err)
		}
		d, err := e.Deals().Create(ctx, crm.Deal{Title: "Rockets", Amount: crm.Money{Amount: 100, Currency: "EUR"}, Pipeline: "b2b-deal"})
		if err != nil {
			b.Fatal(err)
		}
		stages := [2]string{"proposal-prepared", "needs-clarification"}
		i := 0
		for b.Loop() {
			if d, err = e.Deals().Move(ctx, d.ID, stages[i%2], crm.MoveOptions{Version: d.Version}); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("raw-bbolt-record", func(b *testing.B) {
		body, err := json.Marshal(crm.Deal{Title: "Rockets", Amount: crm.Money{Amount: 100, Currency: "EUR"}, Pipeline: "b2b-deal", Stage: "needs-clarification"})
		if err != nil {
			b.Fatal(err)
		}
		id := uuid.Must(uuid.NewV7()).String()
		rawBolt(b, func(int) (string, []byte) { return id, body }, func(tx *bbolt.Tx, _ int, id string, body []byte) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("deals"))
			if err != nil {
				return err
			}
			return bk.Put([]byte(id), body)
		})
	})
}
