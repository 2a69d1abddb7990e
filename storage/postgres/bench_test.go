package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rapportcrm/rapport/analytics"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/postgres"
	"github.com/rapportcrm/rapport/storage/postgres/pgtest"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

// benchStore opens a store in a schema of its own for a benchmark, with
// a pool for raw SQL on the same server.
func benchStore(b *testing.B) (*postgres.Store, *pgxpool.Pool) { return benchStoreConns(b, 0) }

// benchStoreConns is benchStore with pools of conns connections each (0:
// pgxpool's default, the larger of 4 and the number of CPUs).
func benchStoreConns(b *testing.B, conns int) (*postgres.Store, *pgxpool.Pool) {
	b.Helper()
	pgtest.Need(b, startErr)
	ctx := context.Background()
	schema := pgtest.Schema(b)
	url := server.URL
	if conns > 0 {
		url = poolSize(url, conns)
	}
	st, err := postgres.Open(ctx, url, &postgres.Options{Schema: schema})
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_, _ = pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		pool.Close()
		_ = st.Close()
	})
	if _, err := pool.Exec(ctx, `CREATE TABLE raw (id bytea PRIMARY KEY, body bytea NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	return st, pool
}

// benchEngine opens an engine on a store of its own (benchStoreConns),
// closed when the benchmark ends.
func benchEngine(b *testing.B, conns int) *crm.Engine {
	b.Helper()
	st, _ := benchStoreConns(b, conns)
	e, err := crm.Open(context.Background(), crm.Options{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	return e
}

// BenchmarkWrite compares writes of the benchmark records (~300 bytes,
// fsync and synchronous_commit on) through the store and the engine
// with raw pgx on a plain table (id, body) of the same data:
//   - insert: one record per transaction: raw autocommit INSERT, the
//     store's rows written raw (one batch: BEGIN, the record, its four
//     index entries and one unique value, COMMIT), store Put (the same
//     rows), engine contact create (validation, record, indexes, lookup
//     terms, outbox event); raw INSERT and engine create again from
//     eight clients at once (-8); the rows engine creates wrote, written
//     raw (raw-engine-rows), and the least rows a create with its event
//     could write (raw-lean-rows);
//   - update: one stored record per transaction: raw autocommit UPDATE,
//     engine contact update;
//   - bulk: 10,000 records per transaction: raw COPY, the store's rows
//     written raw with COPY, store Puts, the store's CreateMany
//     (storage.BulkCreator), engine CreateMany and CreateEach (the import
//     path), which use it.
func BenchmarkWrite(b *testing.B) {
	ctx := context.Background()
	b.Run("insert/raw-pgx", func(b *testing.B) {
		_, pool := benchStore(b)
		i := 0
		for b.Loop() {
			r := storagetest.BenchRecord(i)
			if _, err := pool.Exec(ctx, "INSERT INTO raw (id, body) VALUES ($1, $2)", []byte(r.ID), []byte(r.Body)); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
	})
	// The same rows the store writes for a Put (the record, its index
	// entries and unique value), in one transaction sent as one batch:
	// the floor of a transaction of these rows.
	b.Run("insert/raw-same-rows", func(b *testing.B) {
		st, pool := benchStore(b)
		if err := st.Declare(ctx, storagetest.Collections()...); err != nil {
			b.Fatal(err)
		}
		i := 0
		for b.Loop() {
			bt := &pgx.Batch{}
			bt.Queue("BEGIN ISOLATION LEVEL REPEATABLE READ")
			benchRows(b, i).queue(bt)
			bt.Queue("COMMIT")
			if err := pool.SendBatch(ctx, bt).Close(); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("insert/store", func(b *testing.B) {
		st, _ := benchStore(b)
		if err := st.Declare(ctx, storagetest.Collections()...); err != nil {
			b.Fatal(err)
		}
		i := 0
		for b.Loop() {
			err := st.Update(ctx, storagetest.BenchTenant, func(tx storage.Tx) error {
				_, err := tx.Put(ctx, "people", storagetest.BenchRecord(i))
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("insert/engine", func(b *testing.B) {
		e := benchEngine(b, 0)
		i := 0
		for b.Loop() {
			if _, err := e.Contacts().Create(ctx, benchContact(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
	})
	// The same with eight clients at once, as a server sees them: the
	// commits share the disk flushes (group commit). The pools have a
	// connection for each client, and the engine's some more for its
	// consumers and outbox listener.
	const clientConns = 12
	b.Run("insert/raw-pgx-8", func(b *testing.B) {
		_, pool := benchStoreConns(b, clientConns)
		var next atomic.Int64
		b.SetParallelism(8 / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r := storagetest.BenchRecord(int(next.Add(1)))
				if _, err := pool.Exec(ctx, "INSERT INTO raw (id, body) VALUES ($1, $2)", []byte(r.ID), []byte(r.Body)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("insert/engine-8", func(b *testing.B) {
		e := benchEngine(b, clientConns)
		var next atomic.Int64
		b.SetParallelism(8 / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := e.Contacts().Create(ctx, benchContact(int(next.Add(1)))); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	// Updates of stored records, one per transaction: a raw autocommit
	// UPDATE of the body, and an engine contact update (read, validation,
	// record, event).
	b.Run("update/raw-pgx", func(b *testing.B) {
		_, pool := benchStore(b)
		const n = 1000
		for i := range n {
			r := storagetest.BenchRecord(i)
			if _, err := pool.Exec(ctx, "INSERT INTO raw (id, body) VALUES ($1, $2)", []byte(r.ID), []byte(r.Body)); err != nil {
				b.Fatal(err)
			}
		}
		i := 0
		for b.Loop() {
			r := storagetest.BenchRecord(i % n)
			if _, err := pool.Exec(ctx, "UPDATE raw SET body = $2 WHERE id = $1", []byte(r.ID), []byte(r.Body)); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("update/engine", func(b *testing.B) {
		e := benchEngine(b, 0)
		cs := make([]crm.Contact, 1000)
		var err error
		for i := range cs {
			if cs[i], err = e.Contacts().Create(ctx, benchContact(i)); err != nil {
				b.Fatal(err)
			}
		}
		i := 0
		for b.Loop() {
			c := &cs[i%len(cs)]
			c.Title = fmt.Sprint("Title ", i)
			if *c, err = e.Contacts().Update(ctx, *c); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
	})
	// The rows engine creates wrote (records, index entries, unique
	// values, events), each contact's in one transaction sent as one
	// batch, into a schema of the same tables.
	b.Run("insert/raw-engine-rows", func(b *testing.B) {
		rows := engineRows(b, b.N, 1)
		pool := engineTables(b)
		b.ResetTimer()
		for i := range b.N {
			bt := &pgx.Batch{}
			bt.Queue("BEGIN ISOLATION LEVEL REPEATABLE READ")
			rows[i].queue(bt)
			bt.Queue("COMMIT")
			if err := pool.SendBatch(ctx, bt).Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	// The least a create with its event could write, whatever the
	// layout: the contact's row with its email in a column of its own
	// (unique) instead of index rows, and its event, each contact's in
	// one transaction sent as one batch.
	b.Run("insert/raw-lean-rows", func(b *testing.B) {
		rows := engineRows(b, b.N, 1)
		pool := engineTables(b)
		if _, err := pool.Exec(ctx, `CREATE TABLE lean (tenant bytea NOT NULL, coll text NOT NULL, id bytea NOT NULL,
			version bigint NOT NULL, body bytea NOT NULL, email bytea NOT NULL,
			PRIMARY KEY (tenant, coll, id), UNIQUE (tenant, coll, email))`); err != nil {
			b.Fatal(err)
		}
		lean := insertSQL("lean", append(slices.Clone(recordCols), "email"))
		b.ResetTimer()
		for i := range b.N {
			r := rows[i]
			if len(r.records) != 1 || len(r.uniques) != 1 || len(r.outbox) != 1 {
				b.Fatalf("contact %d wrote %d records, %d unique values, %d events", i, len(r.records), len(r.uniques), len(r.outbox))
			}
			bt := &pgx.Batch{}
			bt.Queue("BEGIN ISOLATION LEVEL REPEATABLE READ")
			bt.Queue(lean, append(slices.Clone(r.records[0]), r.uniques[0][3])...)
			bt.Queue(insertSQL("outbox", outboxCols), r.outbox[0]...)
			bt.Queue("COMMIT")
			if err := pool.SendBatch(ctx, bt).Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	const batch = 10_000
	b.Run("bulk/raw-copy", func(b *testing.B) {
		_, pool := benchStore(b)
		next := 0
		for b.Loop() {
			rows := make([][]any, batch)
			for i := range rows {
				r := storagetest.BenchRecord(next + i)
				rows[i] = []any{[]byte(r.ID), []byte(r.Body)}
			}
			if _, err := pool.CopyFrom(ctx, pgx.Identifier{"raw"}, []string{"id", "body"}, pgx.CopyFromRows(rows)); err != nil {
				b.Fatal(err)
			}
			next += batch
		}
		b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "records/s")
	})
	// The same rows the store writes (records, index entries, unique
	// values), each table with one COPY, in one transaction.
	b.Run("bulk/raw-copy-same-rows", func(b *testing.B) {
		st, pool := benchStore(b)
		if err := st.Declare(ctx, storagetest.Collections()...); err != nil {
			b.Fatal(err)
		}
		next := 0
		for b.Loop() {
			var all tableRows
			for i := range batch {
				all.add(benchRows(b, next+i))
			}
			tx, err := pool.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := all.copy(ctx, tx); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			next += batch
		}
		b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "records/s")
	})
	// The rows the engine's CreateMany wrote, each table with one COPY
	// per batch, into a schema of the same tables.
	b.Run("bulk/raw-copy-engine-rows", func(b *testing.B) {
		rows := engineRows(b, b.N*batch, batch)
		pool := engineTables(b)
		b.ResetTimer()
		for n := range b.N {
			var all tableRows
			for _, r := range rows[n*batch : (n+1)*batch] {
				all.add(r)
			}
			tx, err := pool.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := all.copy(ctx, tx); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("bulk/store", func(b *testing.B) {
		st, _ := benchStore(b)
		next := 0
		for b.Loop() {
			if err := storagetest.Populate(ctx, st, next, next+batch, batch); err != nil {
				b.Fatal(err)
			}
			next += batch
		}
		b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("bulk/store-createmany", func(b *testing.B) {
		st, _ := benchStore(b)
		if err := st.Declare(ctx, storagetest.Collections()...); err != nil {
			b.Fatal(err)
		}
		next := 0
		for b.Loop() {
			recs := make([]storage.Record, batch)
			for i := range recs {
				recs[i] = storagetest.BenchRecord(next + i)
			}
			err := st.Update(ctx, storagetest.BenchTenant, func(tx storage.Tx) error {
				_, err := tx.(storage.BulkCreator).CreateMany(ctx, "people", recs)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			next += batch
		}
		b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "records/s")
	})
	// The engine's two batch creates, on contacts.
	for name, create := range map[string]func(e *crm.Engine, cs []crm.Contact) error{
		"bulk/engine": func(e *crm.Engine, cs []crm.Contact) error {
			_, err := e.Contacts().CreateMany(ctx, cs)
			return err
		},
		"bulk/engine-each": func(e *crm.Engine, cs []crm.Contact) error {
			_, errs, err := e.Contacts().CreateEach(ctx, cs)
			return errors.Join(append(errs, err)...)
		},
	} {
		b.Run(name, func(b *testing.B) {
			e := benchEngine(b, 0)
			next := 0
			for b.Loop() {
				cs := make([]crm.Contact, batch)
				for i := range cs {
					cs[i] = benchContact(next + i)
				}
				if err := create(e, cs); err != nil {
					b.Fatal(err)
				}
				next += batch
			}
			b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// benchRows returns the rows the store writes for the i-th benchmark
// record: the record, its index entries and its unique values.
func benchRows(b *testing.B, i int) tableRows {
	r := storagetest.BenchRecord(i)
	c := storagetest.Collections()[0]
	vals, err := c.IndexValues(r.Body)
	if err != nil {
		b.Fatal(err)
	}
	tenant, id := []byte(storagetest.BenchTenant), []byte(r.ID)
	rows := tableRows{records: [][]any{{tenant, c.Name, id, int64(1), []byte(r.Body)}}}
	for k, ix := range c.Indexes {
		for _, v := range vals[k] {
			e := []any{tenant, c.Name, ix.Name, []byte(v), id}
			rows.entries = append(rows.entries, e)
			if ix.Unique {
				rows.uniques = append(rows.uniques, e)
			}
		}
	}
	return rows
}

// tableRows are rows of the store's tables, as pgx values.
type tableRows struct{ records, entries, uniques, outbox [][]any }

var (
	recordCols = []string{"tenant", "coll", "id", "version", "body"}
	entryCols  = []string{"tenant", "coll", "idx", "value", "id"}
	outboxCols = []string{"seq", "tenant", "type", "coll", "record_id", "time", "body"}
)

func (r *tableRows) add(o tableRows) {
	r.records = append(r.records, o.records...)
	r.entries = append(r.entries, o.entries...)
	r.uniques = append(r.uniques, o.uniques...)
	r.outbox = append(r.outbox, o.outbox...)
}

func insertSQL(table string, cols []string) string {
	ph := make([]string, len(cols))
	for i := range cols {
		ph[i] = fmt.Sprintf("$%d", i+1)
	}
	return "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(ph, ", ") + ")"
}

// queue queues the rows' INSERTs.
func (r tableRows) queue(b *pgx.Batch) {
	for _, w := range []struct {
		sql  string
		rows [][]any
	}{{insertSQL("records", recordCols), r.records}, {insertSQL("entries", entryCols), r.entries},
		{insertSQL("uniques", entryCols), r.uniques}, {insertSQL("outbox", outboxCols), r.outbox}} {
		for _, row := range w.rows {
			b.Queue(w.sql, row...)
		}
	}
}

// copy writes the rows with one COPY per table.
func (r tableRows) copy(ctx context.Context, tx pgx.Tx) error {
	for _, w := range []struct {
		table string
		cols  []string
		rows  [][]any
	}{{"records", recordCols, r.records}, {"entries", entryCols, r.entries}, {"uniques", entryCols, r.uniques}, {"outbox", outboxCols, r.outbox}} {
		if len(w.rows) == 0 {
			continue
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{w.table}, w.cols, pgx.CopyFromRows(w.rows)); err != nil {
			return err
		}
	}
	return nil
}

// engineRows creates n contacts through an engine, per transactions of
// per (CreateMany when per > 1), and returns the rows each one wrote, in
// order of creation.
func engineRows(b *testing.B, n, per int) []tableRows {
	b.Helper()
	ctx := context.Background()
	st, pool := benchStore(b)
	e, err := crm.Open(ctx, crm.Options{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	for from := 0; from < n; from += per {
		if per == 1 {
			c, err := e.Contacts().Create(ctx, benchContact(from))
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, c.ID)
			continue
		}
		cs := make([]crm.Contact, min(per, n-from))
		for i := range cs {
			cs[i] = benchContact(from + i)
		}
		out, err := e.Contacts().CreateMany(ctx, cs)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range out {
			ids = append(ids, c.ID)
		}
	}
	if err := e.Close(); err != nil {
		b.Fatal(err)
	}
	byID := make(map[string]*tableRows, len(ids))
	for _, id := range ids {
		byID[id] = &tableRows{}
	}
	read := func(sql string, cols int, idAt int, into func(*tableRows, []any)) {
		rows, err := pool.Query(ctx, sql)
		if err != nil {
			b.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				b.Fatal(err)
			}
			if r := byID[string(vals[idAt].([]byte))]; r != nil {
				into(r, vals[:cols])
			}
		}
		if rows.Err() != nil {
			b.Fatal(rows.Err())
		}
	}
	read("SELECT tenant, coll, id, version, body FROM records WHERE coll = 'contacts'", 5, 2, func(r *tableRows, v []any) { r.records = append(r.records, v) })
	read("SELECT tenant, coll, idx, value, id FROM entries WHERE coll = 'contacts'", 5, 4, func(r *tableRows, v []any) { r.entries = append(r.entries, v) })
	read("SELECT tenant, coll, idx, value, id FROM uniques WHERE coll = 'contacts'", 5, 4, func(r *tableRows, v []any) { r.uniques = append(r.uniques, v) })
	read("SELECT seq, tenant, type, coll, record_id, time, body FROM outbox WHERE coll = 'contacts' AND type = 'contact.created'", 7, 4, func(r *tableRows, v []any) { r.outbox = append(r.outbox, v) })
	out := make([]tableRows, len(ids))
	for i, id := range ids {
		out[i] = *byID[id]
	}
	return out
}

// engineTables returns a pool on an empty schema with the tables an
// engine declares.
func engineTables(b *testing.B) *pgxpool.Pool {
	b.Helper()
	st, pool := benchStore(b)
	e, err := crm.Open(context.Background(), crm.Options{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Close(); err != nil {
		b.Fatal(err)
	}
	return pool
}

func benchContact(i int) crm.Contact {
	return crm.Contact{FirstName: "Customer", LastName: fmt.Sprint(i), Email: fmt.Sprintf("customer%d@example.com", i)}
}

// reportFixture is a schema with 1,000,000 stage moves (200,000 deals,
// five moves each, ten owners, over a year) and 1,000,000 order facts
// (100,000 customers, ten orders each, one in twenty a refund), written
// straight into the index and typed tables with COPY.
type reportFixture struct {
	st     *postgres.Store
	pool   *pgxpool.Pool
	engine *crm.Engine // on the store: reports push down
	stream *crm.Engine // on the store without its aggregators
	stages []string
	from   time.Time
}

var (
	fixtureOnce sync.Once
	fixture     *reportFixture
	fixtureErr  error
)

func reports(b *testing.B) *reportFixture {
	b.Helper()
	pgtest.Need(b, startErr)
	fixtureOnce.Do(func() { fixture, fixtureErr = buildReportFixture() })
	if fixtureErr != nil {
		b.Fatal(fixtureErr)
	}
	return fixture
}

const sep = storage.FieldSep

func buildReportFixture() (*reportFixture, error) {
	ctx := context.Background()
	schema := "bench_reports_" + fmt.Sprint(time.Now().UnixNano())
	st, err := postgres.Open(ctx, server.URL, &postgres.Options{Schema: schema})
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(server.URL)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	f := &reportFixture{st: st, pool: pool, from: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	if f.engine, err = crm.Open(ctx, crm.Options{Store: st}); err != nil {
		return nil, err
	}
	if f.stream, err = crm.Open(ctx, crm.Options{Store: streaming{st}}); err != nil {
		return nil, err
	}
	def, err := pipeline.Builtin("b2b-deal")
	if err != nil {
		return nil, err
	}
	if err := f.engine.Pipelines().Save(ctx, def); err != nil {
		return nil, err
	}
	for _, s := range def.Stages {
		f.stages = append(f.stages, s.Key)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	tenant := []byte("default")
	year := int64(365 * 24 * time.Hour)

	var entries, cols [][]any
	for d := range 200_000 {
		rec := fmt.Sprintf("deal-%07d", d)
		owner := fmt.Sprintf("u%d", d%10)
		at := f.from.Add(time.Duration(rng.Int64N(year / 2)))
		from := ""
		for m := range 5 {
			to := f.stages[min(m+rng.IntN(2), len(f.stages)-1)]
			stay := time.Duration(rng.Int64N(int64(20 * 24 * time.Hour)))
			if from == "" {
				stay = 0
			}
			v := "deals" + sep + "b2b-deal" + sep + at.Format(storage.TimeLayout) + sep + to + sep + from + sep + rec + sep + owner + sep + fmt.Sprint(int64(stay))
			id := []byte(fmt.Sprintf("%s-%d", rec, m))
			entries = append(entries, []any{tenant, "timeline", "moves", []byte(v), id})
			cols = append(cols, []any{tenant, []byte(v), id, []byte("deals"), []byte("b2b-deal"), at.UnixNano(), []byte(to), []byte(from), []byte(rec), []byte(owner), int64(stay)})
			from = to
			at = at.Add(stay + time.Hour)
		}
	}
	if err := copyFacts(ctx, pool, "timeline", "moves", entries, cols,
		[]string{"c_collection", "c_pipeline", "c_at", "c_to_stage", "c_from_stage", "c_record_id", "c_owner", "c_in_previous"}); err != nil {
		return nil, err
	}
	entries, cols = entries[:0], cols[:0]
	for c := range 100_000 {
		customer := fmt.Sprintf("cust-%07d", c)
		for o := range 10 {
			at := f.from.Add(time.Duration(rng.Int64N(year)))
			refund := int64(0)
			total := 100 + rng.Int64N(50_000)
			if rng.IntN(20) == 0 {
				refund, total = 1, -total
			}
			v := customer + sep + at.Format(storage.TimeLayout) + sep + fmt.Sprint(refund) + sep + "EUR" + sep + fmt.Sprint(total)
			id := []byte(fmt.Sprintf("%s-%d", customer, o))
			entries = append(entries, []any{tenant, "orders", "customer_facts", []byte(v), id})
			cols = append(cols, []any{tenant, []byte(v), id, []byte(customer), at.UnixNano(), refund, []byte("EUR"), total})
		}
	}
	if err := copyFacts(ctx, pool, "orders", "customer_facts", entries, cols,
		[]string{"c_customer", "c_ordered_at", "c_refund", "c_currency", "c_total"}); err != nil {
		return nil, err
	}
	_, err = pool.Exec(ctx, "ANALYZE")
	return f, err
}

func copyFacts(ctx context.Context, pool *pgxpool.Pool, coll, idx string, entries, cols [][]any, names []string) error {
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"entries"}, []string{"tenant", "coll", "idx", "value", "id"}, pgx.CopyFromRows(entries)); err != nil {
		return err
	}
	_, err := pool.CopyFrom(ctx, pgx.Identifier{storage.ColumnsTable(coll, idx)}, append([]string{"tenant", "value", "id"}, names...), pgx.CopyFromRows(cols))
	return err
}

// BenchmarkReports runs the funnel and RFM over 1,000,000 facts each:
//   - raw-groupby is the simplest funnel GROUP BY on the typed columns
//     (moves per stage), for scale;
//   - raw-sql is the pushdown's own SQL run through pgx, rows read as
//     values: the baseline of the store's overhead;
//   - pushdown is the store's aggregator (the full funnel: distinct
//     records per stage and the furthest stage of each);
//   - report is the analytics report on the store (pushed down);
//   - streaming is the same report with the aggregators hidden: the
//     facts stream out of the index and the engine counts them.
func BenchmarkReports(b *testing.B) {
	ctx := context.Background()
	f := reports(b)
	ranks := make([]int, len(f.stages))
	for i := range ranks {
		ranks[i] = i
	}
	fq := analytics.FactsQuery{Tenant: "default", Kind: pipeline.KindDeal, Records: "deals", Timeline: "timeline", Pipeline: "b2b-deal", Stages: f.stages}
	rawRows := func(b *testing.B, sql string, args ...any) int {
		rows, err := f.pool.Query(ctx, sql, args...)
		if err != nil {
			b.Fatal(err)
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			if _, err := rows.Values(); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if rows.Err() != nil || n == 0 {
			b.Fatal(rows.Err(), n)
		}
		return n
	}
	b.Run("funnel/raw-groupby", func(b *testing.B) {
		for b.Loop() {
			rawRows(b, `SELECT c_to_stage, count(*) FROM `+storage.ColumnsTable("timeline", "moves")+
				` WHERE tenant = 'default' AND c_collection = 'deals' AND c_pipeline = 'b2b-deal' GROUP BY c_to_stage`)
		}
	})
	ranks32 := make([]int32, len(ranks))
	for i, r := range ranks {
		ranks32[i] = int32(r)
	}
	b.Run("funnel/raw-sql", func(b *testing.B) {
		args := append(postgres.FactsArgs(fq), ranks32)
		for b.Loop() {
			rawRows(b, postgres.FunnelSQL("timeline"), args...)
		}
	})
	b.Run("funnel/pushdown", func(b *testing.B) {
		for b.Loop() {
			if _, err := f.st.AggregateFunnel(ctx, analytics.FunnelAggregate{FactsQuery: fq, PathRank: ranks}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("funnel/report", func(b *testing.B) {
		r := analytics.New(f.engine.Default())
		for b.Loop() {
			if _, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "b2b-deal"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("funnel/streaming", func(b *testing.B) {
		r := analytics.New(f.stream.Default())
		for b.Loop() {
			if _, err := r.Funnel(ctx, analytics.FunnelQuery{Pipeline: "b2b-deal"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	ref := f.from.AddDate(1, 0, 1)
	b.Run("rfm/raw-sql", func(b *testing.B) {
		for b.Loop() {
			if n := rawRows(b, postgres.RFMSQL("orders"), []byte("default"), []byte("EUR")); n != 100_000 {
				b.Fatal(n)
			}
		}
	})
	b.Run("rfm/pushdown", func(b *testing.B) {
		for b.Loop() {
			t, err := f.st.AggregateRFM(ctx, analytics.RFMAggregate{Tenant: "default", Orders: "orders", Currency: "EUR"})
			if err != nil || len(t) != 100_000 {
				b.Fatal(err, len(t))
			}
		}
	})
	b.Run("rfm/report", func(b *testing.B) {
		r := analytics.New(f.engine.Default())
		for b.Loop() {
			if _, err := r.RFM(ctx, analytics.RFMOptions{Currency: "EUR", Reference: ref}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rfm/streaming", func(b *testing.B) {
		r := analytics.New(f.stream.Default())
		for b.Loop() {
			if _, err := r.RFM(ctx, analytics.RFMOptions{Currency: "EUR", Reference: ref}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLookupCatchUp measures the engine's search indexer on
// PostgreSQL: each iteration creates 2,000 contacts in one CreateMany
// (not timed), then times the Search that first lets the indexer catch
// up with them (their lookup records, duplicate checks and events).
func BenchmarkLookupCatchUp(b *testing.B) {
	ctx := context.Background()
	st, _ := benchStore(b)
	e, err := crm.Open(ctx, crm.Options{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	const per = 2000
	next := 0
	for b.Loop() {
		b.StopTimer()
		cs := make([]crm.Contact, per)
		for i := range cs {
			cs[i] = benchContact(next + i)
		}
		next += per
		if _, err := e.Contacts().CreateMany(ctx, cs); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := e.Contacts().Search(ctx, "customer", crm.SearchOptions{Limit: 1}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkIndexScan reads one record by an index value (a Scan with
// Equal, bodies included) among 50,000, right after they were written:
// each entry's record is probed by its primary key whatever the
// statistics say.
func BenchmarkIndexScan(b *testing.B) {
	ctx := context.Background()
	st, _ := benchStore(b)
	if err := st.Declare(ctx, storagetest.Collections()...); err != nil {
		b.Fatal(err)
	}
	const n = 50_000
	recs := make([]storage.Record, n)
	for i := range recs {
		recs[i] = storagetest.BenchRecord(i)
	}
	err := st.Update(ctx, storagetest.BenchTenant, func(tx storage.Tx) error {
		_, err := tx.(storage.BulkCreator).CreateMany(ctx, "people", recs)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i = (i + 7919) % n
		err := st.View(ctx, storagetest.BenchTenant, func(tx storage.ReadTx) error {
			pg, err := tx.Scan(ctx, "people", storage.Query{Index: "email", Equal: fmt.Sprintf("customer%d@example.com", i)})
			if err == nil && len(pg.Records) != 1 {
				err = fmt.Errorf("%d records", len(pg.Records))
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewTenant works on a tenant whose records were written after
// the tables' last ANALYZE, as a tenant new to a large table is until an
// analysis that may not come for long (autovacuum analyses a table once a
// tenth of it changed): 100,000 records of another tenant, analysed, then
// 100,000 of this one, with autovacuum off so that the statistics stay
// so. get-many reads 100 of its records by ID (storage.MultiGetter);
// update changes one record's email, whose index entry and unique value
// are removed and added. The statements probe each key (keyed.go)
// whatever the statistics say.
func BenchmarkNewTenant(b *testing.B) {
	ctx := context.Background()
	st, pool := benchStore(b)
	if err := st.Declare(ctx, storagetest.Collections()...); err != nil {
		b.Fatal(err)
	}
	for _, table := range []string{"records", "entries", "uniques"} {
		if _, err := pool.Exec(ctx, "ALTER TABLE "+table+" SET (autovacuum_enabled = off)"); err != nil {
			b.Fatal(err)
		}
	}
	const n = 100_000
	load := func(tenant string) {
		for start := 0; start < n; start += 10_000 {
			recs := make([]storage.Record, 10_000)
			for i := range recs {
				recs[i] = storagetest.BenchRecord(start + i)
			}
			err := st.Update(ctx, tenant, func(tx storage.Tx) error {
				_, err := tx.(storage.BulkCreator).CreateMany(ctx, "people", recs)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	load("old")
	if _, err := pool.Exec(ctx, "ANALYZE records, entries, uniques"); err != nil {
		b.Fatal(err)
	}
	load(storagetest.BenchTenant)
	b.Run("get-many", func(b *testing.B) {
		ids := make([]string, 100)
		k := 0
		for b.Loop() {
			for i := range ids {
				k = (k + 7919) % n
				ids[i] = storagetest.BenchID(k)
			}
			err := st.View(ctx, storagetest.BenchTenant, func(tx storage.ReadTx) error {
				got, err := tx.(storage.MultiGetter).GetMany(ctx, "people", ids)
				if err == nil && len(got) != len(ids) {
					err = fmt.Errorf("%d records", len(got))
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("update", func(b *testing.B) {
		versions := make([]uint64, n)
		k, j := 0, 0
		for b.Loop() {
			j = (j + 7919) % n
			if versions[j] == 0 {
				versions[j] = 1
			}
			r := storagetest.BenchRecord(j)
			r.Body = []byte(strings.Replace(string(r.Body), "@example.com", fmt.Sprintf("-%d@example.com", k), 1))
			r.Version = versions[j]
			err := st.Update(ctx, storagetest.BenchTenant, func(tx storage.Tx) error {
				got, err := tx.Put(ctx, "people", r)
				versions[j] = got.Version
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			k++
		}
	})
}

// BenchmarkStandbyEngines creates contacts through one engine while
// others (0 or 3) stand by on the same store: open, their consumers
// waking on every commit and finding their leases held by the first
// engine. It reports the creates per second and the WAL the server
// wrote per create (wal-B/op), standbys included.
func BenchmarkStandbyEngines(b *testing.B) {
	ctx := context.Background()
	for _, k := range []int{0, 3} {
		b.Run(fmt.Sprintf("standbys=%d", k), func(b *testing.B) {
			e := benchEngine(b, 0)
			schema := e.Store().(*postgres.Store).Schema()
			for range k {
				st, err := postgres.Open(ctx, server.URL, &postgres.Options{Schema: schema})
				if err != nil {
					b.Fatal(err)
				}
				o, err := crm.Open(ctx, crm.Options{Store: st})
				if err != nil {
					_ = st.Close()
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = o.Close(); _ = st.Close() })
			}
			conn, err := pgx.Connect(ctx, server.URL)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close(ctx)
			var start, end int64
			if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn() - '0/0'").Scan(&start); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				if _, err := e.Contacts().Create(ctx, benchContact(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
			if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn() - '0/0'").Scan(&end); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(end-start)/float64(i), "wal-B/op")
		})
	}
}
