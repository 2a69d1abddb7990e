package crm_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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
	// raw-bbolt-same-writes writes what a move writes: the deal, its stage
	// and due-time index entries (old ones deleted), a timeline entry and
	// its index entry, and the outbox event, in one transaction.
	b.Run("raw-bbolt-same-writes", func(b *testing.B) {
		d := crm.Deal{Title: "Rockets", Amount: crm.Money{Amount: 100, Currency: "EUR"}, Pipeline: "b2b-deal", Stage: "needs-clarification",
			Meta: crm.Meta{ID: uuid.Must(uuid.NewV7()).String(), Tenant: "default", Version: 1, CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()}}
		body, err := json.Marshal(d)
		if err != nil {
			b.Fatal(err)
		}
		entry := bytes.Repeat([]byte("h"), 420)
		event := append(bytes.Repeat([]byte("e"), 120), body...)
		var seq uint64
		rawBolt(b, func(int) (string, []byte) { return d.ID, body }, func(tx *bbolt.Tx, i int, id string, body []byte) error {
			put := func(bucket string, k, v []byte) error {
				bk, err := tx.CreateBucketIfNotExists([]byte(bucket))
				if err != nil {
					return err
				}
				return bk.Put(k, v)
			}
			if err := put("deals", []byte(id), body); err != nil {
				return err
			}
			for _, ix := range []string{"deals-stage", "deals-stage_due"} {
				bk, err := tx.CreateBucketIfNotExists([]byte(ix))
				if err != nil {
					return err
				}
				if err := bk.Delete(fmt.Appendf(nil, "%s-%d\x00%s", ix, i-1, id)); err != nil {
					return err
				}
				if err := bk.Put(fmt.Appendf(nil, "%s-%d\x00%s", ix, i, id), nil); err != nil {
					return err
				}
			}
			key := []byte(time.Now().UTC().Format(time.RFC3339Nano) + uuid.Must(uuid.NewV7()).String())
			if err := put("timeline", key, entry); err != nil {
				return err
			}
			if err := put("timeline-record", append([]byte("deals\x1f"+id+"\x1f"), key...), nil); err != nil {
				return err
			}
			seq++
			return put("outbox", binary.BigEndian.AppendUint64(nil, seq), event)
		})
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

// overdueDB is a bbolt file holding 1,000,000 open deals, built once per
// test binary and shared by the runs of BenchmarkOverdue (-count).
var overdueDB struct {
	once sync.Once
	path string
	err  error
	now  time.Time
}

const overdueDeals = 1_000_000

// populateOverdue creates overdueDeals open deals in the "new" stage of
// the b2c-deal pipeline (norm 24h), every tenth one entered 25h before
// overdueDB.now and the others 1h before, so 10% are overdue at now and
// all of them are 24h later.
func populateOverdue(b *testing.B) (string, time.Time) {
	overdueDB.once.Do(func() {
		dir, err := os.MkdirTemp("", "rapport-overdue-bench-")
		if err != nil {
			overdueDB.err = err
			return
		}
		benchDirs = append(benchDirs, dir)
		overdueDB.path = filepath.Join(dir, "crm.db")
		overdueDB.now = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		overdueDB.err = func() error {
			ctx := context.Background()
			clock := crm.ClockFunc(func() time.Time { return overdueDB.now })
			e, err := crm.Open(ctx, crm.Options{Path: overdueDB.path, Clock: clock})
			if err != nil {
				return err
			}
			defer e.Close()
			def, err := pipeline.Builtin("b2c-deal")
			if err != nil {
				return err
			}
			if err := e.Pipelines().Save(ctx, def); err != nil {
				return err
			}
			owners := []string{"ann", "bob", "cy", "dee"}
			batch := make([]crm.Deal, 0, 10_000)
			for i := range overdueDeals {
				entered := overdueDB.now.Add(-time.Hour)
				if i%10 == 0 {
					entered = overdueDB.now.Add(-25 * time.Hour)
				}
				batch = append(batch, crm.Deal{Title: fmt.Sprint("Deal ", i), Pipeline: "b2c-deal", StageEnteredAt: entered,
					Amount: crm.Money{Amount: int64(i), Currency: "EUR"}, Meta: crm.Meta{Owner: owners[i%len(owners)]}})
				if len(batch) == cap(batch) {
					if _, err := e.Deals().CreateMany(ctx, batch); err != nil {
						return err
					}
					batch = batch[:0]
				}
			}
			return nil
		}()
	})
	if overdueDB.err != nil {
		b.Fatal(overdueDB.err)
	}
	return overdueDB.path, overdueDB.now
}

// BenchmarkOverdue lists every overdue deal among 1,000,000 open deals on
// bbolt, following Next through pages of 10,000: "10pct" when 100,000 are
// overdue, "all" when every deal is, "owner" for one of four owners' share
// of the 10%. One op is the whole listing.
func BenchmarkOverdue(b *testing.B) {
	path, now := populateOverdue(b)
	for _, bc := range []struct {
		name   string
		later  time.Duration
		owners []string
		want   int
	}{
		{"10pct", 0, nil, overdueDeals / 10},
		{"all", 24 * time.Hour, nil, overdueDeals},
		{"owner", 0, []string{"ann"}, overdueDeals / 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			clock := crm.ClockFunc(func() time.Time { return now.Add(bc.later) })
			e, err := crm.Open(ctx, crm.Options{Path: path, Clock: clock})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			for b.Loop() {
				n := 0
				opts := crm.OverdueOptions{Limit: 10_000, Owners: bc.owners}
				for {
					pg, err := e.Deals().Overdue(ctx, opts)
					if err != nil {
						b.Fatal(err)
					}
					n += len(pg.Items)
					if pg.Next == "" {
						break
					}
					opts.Cursor = pg.Next
				}
				if n != bc.want {
					b.Fatalf("%d overdue deals, want %d", n, bc.want)
				}
			}
			b.ReportMetric(float64(bc.want), "deals/op")
		})
	}
}
