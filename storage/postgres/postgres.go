// Package postgres is the PostgreSQL backend of Rapport, on
// github.com/jackc/pgx/v5: many engine processes on many machines share one
// database.
//
// # Model
//
// A store lives in one PostgreSQL schema ("rapport" by default): records
// (tenant, collection, ID, version, body), one row per index entry, one row
// per unique value (its primary key is what makes the database refuse a
// second holder), the outbox and the consumers' positions. Every key is
// bytea and compared byte by byte, as on the embedded backends. Open applies
// the embedded SQL migrations, under an advisory lock so that processes
// starting together do not race.
//
// Transactions are REPEATABLE READ: a View reads one snapshot, and an Update
// whose rows another transaction changed after its snapshot fails with an
// error wrapping storage.ErrConflict, as a stale version does, rather than
// overwriting. Outbox events are written when the transaction commits,
// pending, without a lock, so that such commits share disk flushes; a
// reader first numbers the committed pending events under a
// transaction-scoped advisory lock, so events become visible in sequence
// order (see queueSequencing). A commit with events fires the OutboxSignal
// of its own process at once, and a NOTIFY sent after it, outside the
// transaction, wakes the OutboxSignal of the other processes on the store
// (see notifier). An outbox consumer is leased to one process at a
// time (Options.Lease), so that each event is handled by one process of a
// group; another takes over when the holder dies or closes. Leases and
// acknowledgements commit without waiting for the disk: a database crash
// may forget the last ones, and their events are delivered again.
//
// A transaction's statements go in batches, one round trip each: BEGIN
// with the first statement, the writes of Put and Delete (once their
// checks have answered) with the next statement or with COMMIT, the
// events with COMMIT. Transactions implement storage.Deferrer: the rows
// of Create, of Replace (of a record the transaction read) and the check
// of Expect go with the next statement unchecked and unanswered, and the
// database refuses a taken key, a concurrent change or a changed version
// there or at COMMIT (migration 4 adds the function that fails an
// Expect); a create with its event is one round trip. A Declare that
// rebuilds indexes waits for the transactions whose deferred creates used
// the definitions before their declare lock was granted; while it waits
// or runs, Create checks as Put does.
//
// # Caveats
//
// Every process must declare the same collections: a process maintains
// indexes as it declared them. Event times are kept as written (RFC 3339
// text) so that they read back exactly.
package postgres

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/internal/broadcast"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Format is the storage format this package writes, stamped in meta.
const Format = "1"

// Options configures Open. The zero value means the defaults below.
type Options struct {
	// Schema is the PostgreSQL schema that holds the store, created if
	// missing. Defaults to "rapport". Several stores can share a database
	// in different schemas.
	Schema string
	// Logger receives the reconnects of the outbox listener. Defaults to
	// slog.Default().
	Logger *slog.Logger
	// Lease is how long a process keeps an outbox consumer after it last
	// read or acknowledged it: while it does, ReadOutbox of the same
	// consumer in other processes returns no events, so that each event is
	// handled by one process at a time. After a crash, another process
	// takes over (and gets the unacknowledged events again) when the lease
	// runs out. Close releases the store's leases. Defaults to 15s.
	Lease time.Duration
	// RowLevelSecurity adds PostgreSQL row-level security as a second
	// fence between tenants, behind the tenant in every key: each
	// transaction of a tenant sets rapport.tenant, and a policy on every
	// tenant-keyed table lets it see and write that tenant's rows only
	// (work for no tenant, such as outbox delivery and index rebuilds,
	// sees all). Open creates the policies when the connecting role owns
	// the tables; processes that connect as another role (which they
	// should: owners and superusers may bypass the policies) find them in
	// place. It costs one statement per transaction.
	RowLevelSecurity bool
}

// Store is a storage.Store on PostgreSQL.
type Store struct {
	pool   *pgxpool.Pool
	schema string
	log    *slog.Logger
	lease  time.Duration
	rls    bool // Options.RowLevelSecurity
	// instance names this Store as the holder of consumer leases.
	instance []byte
	// lockKey namespaces the advisory locks of this schema.
	lockKey int64

	mu    sync.Mutex
	colls map[string]storage.Collection
	// gen counts the switches of colls, starting at 1.
	gen      uint64
	closed   bool
	inflight sync.WaitGroup
	signal   broadcast.Signal

	declareMu sync.Mutex
	// defs is held shared by transactions whose deferred creates used
	// the definitions before their declare lock was granted (tx.Create),
	// and exclusively by a Declare that rebuilds indexes and switches
	// the definitions.
	defs      sync.RWMutex
	stop      context.CancelFunc
	listening sync.WaitGroup // the listener and the notifier
	// poke asks the notifier for a NOTIFY (capacity 1: pokes while one
	// is pending are one).
	poke chan struct{}
	// pids are the backend process IDs of the pool's connections: the
	// listener ignores the NOTIFYs they send.
	pids sync.Map // uint32 → struct{}
	// pendingGroup is how many events of a transaction share a draw of
	// a pending number (see tx.queueEvents): pendingGroup, but for tests.
	pendingGroup int
}

var _ storage.Store = (*Store)(nil)

var schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open connects to the database at url (a PostgreSQL connection string or
// URL), applies the migrations and returns the store.
func Open(ctx context.Context, url string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Schema == "" {
		o.Schema = "rapport"
	}
	if !schemaRE.MatchString(o.Schema) {
		return nil, fmt.Errorf("postgres: %w: schema %q: want 1-63 of [a-z0-9_], not starting with a digit", storage.ErrInvalid, o.Schema)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.Lease == 0:
		o.Lease = 15 * time.Second
	case o.Lease < 0:
		return nil, fmt.Errorf("postgres: %w: negative lease %s", storage.ErrInvalid, o.Lease)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w: connection string: %v", storage.ErrInvalid, err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = o.Schema
	h := fnv.New64a()
	h.Write([]byte("rapport\x00" + o.Schema))
	s := &Store{schema: o.Schema, log: o.Logger, lease: o.Lease, rls: o.RowLevelSecurity, instance: []byte(rand.Text()),
		lockKey: int64(h.Sum64() >> 1), colls: map[string]storage.Collection{}, gen: 1, poke: make(chan struct{}, 1), pendingGroup: pendingGroup}
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		s.pids.Store(c.PgConn().PID(), struct{}{})
		return nil
	}
	cfg.BeforeClose = func(c *pgx.Conn) { s.pids.Delete(c.PgConn().PID()) }
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s.pool = pool
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	lctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.listening.Add(2)
	go s.listen(lctx)
	go s.notifier(lctx)
	return s, nil
}

// Advisory lock keys: the schema's key plus one of these.
const (
	lockMigrate = iota
	_           // the declare lock, before it became a table (migration 3)
	lockOutbox
)

func (s *Store) lock(which int64) int64 { return s.lockKey ^ which<<56 }

// migrate applies the migrations the schema has not seen, in order, in one
// transaction under an advisory lock, and checks the format stamp.
func (s *Store) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	ident := pgx.Identifier{s.schema}.Sanitize()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lock(lockMigrate)); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	// CREATE SCHEMA needs the right to create in the database even when
	// the schema exists: a role that may only use an existing schema
	// must not need it.
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", s.schema).Scan(&exists); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if !exists {
		if _, err := tx.Exec(ctx, "CREATE SCHEMA "+ident); err != nil {
			return fmt.Errorf("postgres: migrate: %w", err)
		}
	}
	for _, q := range []string{
		"SET LOCAL search_path TO " + ident,
		"CREATE TABLE IF NOT EXISTS migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("postgres: migrate: %w", err)
		}
	}
	var applied int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM migrations").Scan(&applied); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if applied > len(names) {
		return fmt.Errorf("postgres: schema %s is at migration %d, this version of Rapport knows %d: %w", s.schema, applied, len(names), storage.ErrFormat)
	}
	for i, name := range names {
		v := i + 1
		if !strings.HasPrefix(name, fmt.Sprintf("migrations/%04d_", v)) {
			return fmt.Errorf("postgres: migration %s is out of sequence", name)
		}
		if v <= applied {
			continue
		}
		sql, err := migrationFiles.ReadFile(name)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("postgres: migration %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO migrations (version) VALUES ($1)", v); err != nil {
			return fmt.Errorf("postgres: migration %s: %w", name, err)
		}
	}
	var format []byte
	err = tx.QueryRow(ctx, "SELECT value FROM meta WHERE key = 'format'").Scan(&format)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, "INSERT INTO meta (key, value) VALUES ('format', $1)", []byte(Format)); err != nil {
			return fmt.Errorf("postgres: migrate: %w", err)
		}
	case err != nil:
		return fmt.Errorf("postgres: migrate: %w", err)
	case string(format) != Format:
		return fmt.Errorf("postgres: schema %s has storage format %q, this version of Rapport reads %q: %w", s.schema, format, Format, storage.ErrFormat)
	}
	if s.rls {
		rows, err := tx.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'cols\\_%'", s.schema)
		if err != nil {
			return fmt.Errorf("postgres: migrate: %w", err)
		}
		tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("postgres: migrate: %w", err)
		}
		for _, t := range append([]string{"records", "entries", "uniques", "outbox"}, tables...) {
			if err := fence(ctx, tx, pgx.Identifier{t}.Sanitize()); err != nil {
				return err
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// tenantPolicy admits the rows of the tenant in rapport.tenant, or every
// row when it is not set.
const tenantPolicy = `coalesce(current_setting('rapport.tenant', true), '') = ''
	OR tenant = convert_to(current_setting('rapport.tenant', true), 'UTF8')`

// fence puts table (a sanitized name) behind row-level security by
// tenant, if it is not already.
func fence(ctx context.Context, tx pgx.Tx, table string) error {
	var on bool
	err := tx.QueryRow(ctx, `SELECT c.relrowsecurity AND c.relforcerowsecurity AND EXISTS (
			SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'rapport_tenant')
		FROM pg_class c WHERE c.oid = $1::regclass`, table).Scan(&on)
	if err != nil || on {
		return err
	}
	for _, q := range []string{
		"ALTER TABLE " + table + " ENABLE ROW LEVEL SECURITY",
		"ALTER TABLE " + table + " FORCE ROW LEVEL SECURITY",
		"DROP POLICY IF EXISTS rapport_tenant ON " + table,
		"CREATE POLICY rapport_tenant ON " + table + " USING (" + tenantPolicy + ") WITH CHECK (" + tenantPolicy + ")",
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("postgres: row-level security on %s (open the store once as the owner of its tables): %w", table, err)
		}
	}
	return nil
}

// setTenant makes tenant the one rapport.tenant names for the rest of the
// transaction, when row-level security is on.
func (s *Store) setTenant(ctx context.Context, ptx pgx.Tx, tenant string) error {
	if !s.rls {
		return nil
	}
	if _, err := ptx.Exec(ctx, "SELECT set_config('rapport.tenant', $1, true)", tenant); err != nil {
		return fmt.Errorf("postgres: begin: %w", mapErr(err))
	}
	return nil
}

// Migration returns the migration the store's schema is at (Open brings
// it to Migrations()).
func (s *Store) Migration(ctx context.Context) (int, error) {
	var v int
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("postgres: migration: %w", err)
	}
	return v, nil
}

// Migrations returns the number of migrations this package embeds, the
// version a migrated schema is at.
func Migrations() int {
	names, _ := fs.Glob(migrationFiles, "migrations/*.sql")
	return len(names)
}

// Schema returns the schema the store lives in.
func (s *Store) Schema() string { return s.schema }

func (s *Store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	s.inflight.Add(1)
	return nil
}

func (s *Store) leave() { s.inflight.Done() }

func (s *Store) begin(ctx context.Context, tenant string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storage.ValidateID("tenant", tenant); err != nil {
		return err
	}
	return s.enter()
}

// Close waits for running calls, stops the outbox listener, releases the
// outbox consumers this store leased (waking the other processes on the
// store, so that one of them takes each over at once) and closes the
// connection pool. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.inflight.Wait()
	s.stop()
	s.listening.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The NOTIFY wakes the processes standing by on the consumers it held,
	// which take them over when they next read, instead of at their next
	// poll; it is sent only if there was a lease to release.
	_, err := s.pool.Exec(ctx, `WITH released AS (
			UPDATE consumers SET owner = NULL, lease_until = NULL WHERE owner = $1 RETURNING name)
		SELECT pg_notify($2, $3) WHERE EXISTS (SELECT FROM released)`, s.instance, notifyChannel, s.schema)
	s.pool.Close()
	if err != nil {
		return fmt.Errorf("postgres: close: releasing outbox leases: %w", err)
	}
	return nil
}

// generation returns the generation of the definitions, which changes
// whenever Declare switches them.
func (s *Store) generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

func (s *Store) collection(name string) (storage.Collection, error) {
	s.mu.Lock()
	c, ok := s.colls[name]
	s.mu.Unlock()
	if !ok {
		return c, fmt.Errorf("%w: %q", storage.ErrUnknownCollection, name)
	}
	return c, nil
}

// View implements storage.Store.
func (s *Store) View(ctx context.Context, tenant string, fn func(storage.ReadTx) error) error {
	if err := s.begin(ctx, tenant); err != nil {
		return err
	}
	defer s.leave()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", mapErr(err))
	}
	t := &tx{s: s, conn: conn, tenant: tenant, begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"}
	defer t.end(ctx)
	return fn(t)
}

// Update implements storage.Store.
func (s *Store) Update(ctx context.Context, tenant string, fn func(storage.Tx) error) (err error) {
	if err := s.begin(ctx, tenant); err != nil {
		return err
	}
	defer s.leave()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", mapErr(err))
	}
	t := &tx{s: s, conn: conn, tenant: tenant, writable: true, begin: "BEGIN ISOLATION LEVEL REPEATABLE READ"}
	defer t.end(ctx)
	if err := fn(t); err != nil {
		return err
	}
	if t.failed != nil {
		return fmt.Errorf("postgres: transaction rolled back after a failed write: %w", t.failed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("postgres: transaction rolled back: %w", err)
	}
	if err := t.commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	if len(t.events) > 0 {
		s.signal.Fire()
		select {
		case s.poke <- struct{}{}:
		default: // a NOTIFY is pending already
		}
	}
	return nil
}

// mapErr maps PostgreSQL errors to the storage sentinels: a serialization
// failure or deadlock is a conflict the caller may retry.
func mapErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "40001", pe.Code == "40P01":
			return fmt.Errorf("%w: %s (%s)", storage.ErrConflict, pe.Message, pe.Code)
		case pe.Code == "23505" && pe.TableName == "uniques":
			// A write's unique value, free when Put checked it, was taken
			// by a concurrent transaction before the write reached it.
			return fmt.Errorf("%w: a unique value was taken by a concurrent transaction: %s", storage.ErrConflict, pe.Message)
		case pe.Code == "23505":
			return fmt.Errorf("%w: %s", storage.ErrExists, pe.Message)
		case strings.HasPrefix(pe.Code, "08"), pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03":
			// Connection exceptions; the server shutting down or
			// terminating the session.
			return fmt.Errorf("%w: %s (%s)", storage.ErrUnavailable, pe.Message, pe.Code)
		}
		return err
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}

// Declare implements storage.Store. It runs in one transaction that holds
// the schema's declare lock (the lock of table declare_lock) exclusively;
// write transactions take it shared first thing, so no write commits
// between a rebuilt index and the definitions that maintain it.
func (s *Store) Declare(ctx context.Context, collections ...storage.Collection) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storage.ValidateCollections(collections...); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.declareMu.Lock()
	defer s.declareMu.Unlock()
	s.mu.Lock()
	old := s.colls
	s.mu.Unlock()
	switchTo := func() {
		colls := maps.Clone(old)
		for _, c := range collections {
			c.Indexes = slices.Clone(c.Indexes)
			colls[c.Name] = c
		}
		s.mu.Lock()
		s.colls = colls
		s.gen++
		s.mu.Unlock()
	}
	// When the store holds the collections as declared (an engine
	// starting, the common case), there is nothing to rebuild and no need
	// for the exclusive lock: waiting for it would queue every write
	// behind whatever holds the table, such as a running pg_dump.
	same, err := s.unchanged(ctx, collections)
	if err != nil {
		return fmt.Errorf("postgres: declare: %w", mapErr(err))
	}
	if same {
		switchTo()
		return nil
	}
	ptx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: declare: %w", err)
	}
	defer ptx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	// No transaction whose deferred creates used the definitions before
	// its declare lock was granted commits after the indexes are rebuilt
	// by new ones: wait for those running (new ones write with Put
	// meanwhile, see tx.Create). The connection is taken first: the
	// transactions waited for may need the pool.
	if err := s.lockDefs(ctx); err != nil {
		return fmt.Errorf("postgres: declare: %w", err)
	}
	defer s.defs.Unlock()
	if _, err := ptx.Exec(ctx, "LOCK TABLE declare_lock IN ACCESS EXCLUSIVE MODE"); err != nil {
		return fmt.Errorf("postgres: declare: %w", err)
	}
	for _, c := range collections {
		if err := declare(ctx, ptx, c, s.rls); err != nil {
			return fmt.Errorf("postgres: declare: %w", err)
		}
	}
	switchTo()
	if err := ptx.Commit(ctx); err != nil {
		s.mu.Lock()
		s.colls = old
		s.gen++
		s.mu.Unlock()
		return fmt.Errorf("postgres: declare: %w", mapErr(err))
	}
	return nil
}

// lockDefs takes s.defs exclusively, or gives up when ctx is done.
func (s *Store) lockDefs(ctx context.Context) error {
	locked := make(chan struct{})
	go func() {
		s.defs.Lock()
		close(locked)
	}()
	select {
	case <-locked:
		return nil
	case <-ctx.Done():
		go func() {
			<-locked
			s.defs.Unlock()
		}()
		return ctx.Err()
	}
}

// declare brings the stored indexes of c in line with its declaration.
func declare(ctx context.Context, ptx pgx.Tx, c storage.Collection, rls bool) error {
	key := "coll:" + c.Name
	var raw []byte
	err := ptx.QueryRow(ctx, "SELECT value FROM meta WHERE key = $1", key).Scan(&raw)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	want, rebuild, drop, err := plan(c, raw, err == nil)
	if err != nil || want == nil {
		return err
	}
	for _, name := range drop {
		if err := dropIndex(ctx, ptx, c.Name, name); err != nil {
			return err
		}
	}
	for _, i := range rebuild {
		if err := rebuildIndex(ctx, ptx, c, i, rls); err != nil {
			return err
		}
	}
	raw, err = json.Marshal(want)
	if err != nil {
		return err
	}
	_, err = ptx.Exec(ctx, "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", key, raw)
	return err
}

// plan compares the stored index definitions of c (raw, when known) with
// its declaration: the indexes to rebuild and to drop, and the definitions
// to store, or nil when nothing changes.
func plan(c storage.Collection, raw []byte, known bool) (want map[string]string, rebuild []int, drop []string, err error) {
	stored := map[string]string{}
	if known {
		if err := json.Unmarshal(raw, &stored); err != nil {
			return nil, nil, nil, fmt.Errorf("collection %s: reading index definitions: %w", c.Name, err)
		}
	}
	want = make(map[string]string, len(c.Indexes))
	for i, ix := range c.Indexes {
		want[ix.Name] = ix.Definition()
		if stored[ix.Name] != want[ix.Name] {
			rebuild = append(rebuild, i)
		}
	}
	for name := range stored {
		if _, ok := want[name]; !ok {
			drop = append(drop, name)
		}
	}
	if known && len(rebuild) == 0 && len(drop) == 0 {
		return nil, nil, nil, nil
	}
	return want, rebuild, drop, nil
}

// unchanged reports whether the store already holds the collections as
// declared, so that Declare has nothing to rebuild.
func (s *Store) unchanged(ctx context.Context, collections []storage.Collection) (bool, error) {
	keys := make([]string, len(collections))
	for i, c := range collections {
		keys[i] = "coll:" + c.Name
	}
	rows, err := s.pool.Query(ctx, "SELECT key, value FROM meta WHERE key = ANY($1)", keys)
	if err != nil {
		return false, err
	}
	stored, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) ([2][]byte, error) {
		var kv [2][]byte
		return kv, row.Scan(&kv[0], &kv[1])
	})
	if err != nil {
		return false, err
	}
	byKey := make(map[string][]byte, len(stored))
	for _, kv := range stored {
		byKey[string(kv[0])] = kv[1]
	}
	for _, c := range collections {
		raw, known := byKey["coll:"+c.Name]
		want, _, _, err := plan(c, raw, known)
		if err != nil || want != nil {
			return false, err
		}
	}
	return true, nil
}

func dropIndex(ctx context.Context, ptx pgx.Tx, coll, idx string) error {
	for _, q := range []string{"DELETE FROM entries WHERE coll = $1 AND idx = $2", "DELETE FROM uniques WHERE coll = $1 AND idx = $2"} {
		if _, err := ptx.Exec(ctx, q, coll, idx); err != nil {
			return err
		}
	}
	_, err := ptx.Exec(ctx, "DROP TABLE IF EXISTS "+columnsTable(coll, idx))
	return err
}

// rebuildIndex recomputes one index from every tenant's records.
func rebuildIndex(ctx context.Context, ptx pgx.Tx, c storage.Collection, i int, rls bool) error {
	ix := c.Indexes[i]
	if err := dropIndex(ctx, ptx, c.Name, ix.Name); err != nil {
		return err
	}
	if err := createColumnsTable(ctx, ptx, c.Name, ix, rls); err != nil {
		return err
	}
	one := storage.Collection{Name: c.Name, Indexes: []storage.Index{ix}}
	rows, err := ptx.Query(ctx, "SELECT tenant, id, body FROM records WHERE coll = $1 ORDER BY tenant, id", c.Name)
	if err != nil {
		return err
	}
	var entries, uniques, columns [][]any
	holders := map[string]string{} // tenant NUL value → id
	for rows.Next() {
		var tenant, id, body []byte
		if err := rows.Scan(&tenant, &id, &body); err != nil {
			rows.Close()
			return err
		}
		vals, err := one.IndexValues(body)
		if err != nil {
			rows.Close()
			return fmt.Errorf("record %s: %w", id, err)
		}
		if len(ix.Columns) > 0 {
			typed, err := columnRows(ix, tenant, id, toBytes(vals[0]))
			if err != nil {
				rows.Close()
				return err
			}
			columns = append(columns, typed...)
		}
		for _, v := range vals[0] {
			entries = append(entries, []any{tenant, c.Name, ix.Name, []byte(v), id})
			if ix.Unique {
				k := string(tenant) + "\x00" + v
				if other, ok := holders[k]; ok && other != string(id) {
					rows.Close()
					return &storage.UniqueError{Collection: c.Name, Index: ix.Name, Value: v, ExistingID: other}
				}
				holders[k] = string(id)
				uniques = append(uniques, []any{tenant, c.Name, ix.Name, []byte(v), id})
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	cols := []string{"tenant", "coll", "idx", "value", "id"}
	if err := copyRows(ctx, ptx, rls, "entries", cols, entries); err != nil {
		return err
	}
	if err := copyRows(ctx, ptx, rls, "uniques", cols, uniques); err != nil || len(ix.Columns) == 0 {
		return err
	}
	cols = []string{"tenant", "value", "id"}
	for _, col := range ix.Columns {
		cols = append(cols, "c_"+col.Name)
	}
	return copyRows(ctx, ptx, rls, storage.ColumnsTable(c.Name, ix.Name), cols, columns)
}

// copier is a transaction or a connection in one.
type copier interface {
	CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// copyRows writes rows into table: with COPY, or, under row-level
// security (which refuses COPY FROM), with multi-row INSERTs.
func copyRows(ctx context.Context, ptx copier, rls bool, table string, cols []string, rows [][]any) error {
	if !rls {
		_, err := ptx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows))
		return err
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = pgx.Identifier{c}.Sanitize()
	}
	head := "INSERT INTO " + pgx.Identifier{table}.Sanitize() + " (" + strings.Join(names, ", ") + ") VALUES "
	per := max(1, 60000/len(cols)) // rows per statement, within 65,535 parameters
	for start := 0; start < len(rows); start += per {
		chunk := rows[start:min(start+per, len(rows))]
		var b strings.Builder
		b.WriteString(head)
		args := make([]any, 0, len(chunk)*len(cols))
		for i, r := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			for j := range r {
				if j > 0 {
					b.WriteString(", ")
				}
				args = append(args, r[j])
				fmt.Fprintf(&b, "$%d", len(args))
			}
			b.WriteByte(')')
		}
		if _, err := ptx.Exec(ctx, b.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// OutboxHead implements storage.Store.
func (s *Store) OutboxHead(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	var head int64
	b := &pgx.Batch{}
	queueSequencing(b, s.lock(lockOutbox), nil, nil)
	// Events committed since the numbering are still pending (negative).
	b.Queue("SELECT coalesce(max(seq), 0) FROM outbox WHERE seq > 0").QueryRow(func(row pgx.Row) error { return row.Scan(&head) })
	if err := s.sendAlone(ctx, b); err != nil {
		return 0, fmt.Errorf("postgres: outbox head: %w", err)
	}
	return uint64(head), nil
}

// queueSequencing queues a transaction that numbers the pending events
// (those with a negative sequence number, see tx.queueEvents) committed
// when it takes the outbox lock (lock), in the order of their pending
// numbers: a transaction's events in the order appended, together (up to
// 2^20 of them), after those of every transaction that committed before
// it drew its pending number (which it does as it commits).
//
// Readers run it before they read, in the same round trip: so an event is
// read once numbered, every event committed before a read is numbered,
// and, the numbering transactions taking turns, each commits (on disk)
// before the next numbers anything, so no reader sees an event before one
// numbered lower.
//
// With a consumer (and the instance reading for it), the transaction
// numbers only if no other instance holds the consumer's lease, and
// leaves the decision in the session setting rapport.numbered ('1' or
// '0') for the lease statement that follows: a reader whose lease is held
// elsewhere reads nothing, and so it neither waits for the lock, nor
// writes, nor waits for the disk. Engines that stand by on the same
// store, waking on every commit, would otherwise number in turn with the
// holder, each numbering a transaction committed on disk.
//
// The setting is a session's, so the two transactions must run in one
// server session: they do, sent in one batch on one connection, unless a
// transaction-mode pooler (PgBouncer's pool_mode=transaction) sits
// between, which the store does not support (README). A lease that runs
// out between the two transactions (each reads its own now()) is not
// taken over by this read, which then returns nothing, but by the next
// one, at the next signal or poll.
func queueSequencing(b *pgx.Batch, lock int64, consumer, instance []byte) {
	b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	// The pending events are found by a plain scan of the primary key
	// (the range below 0) whatever the statistics say: on an outbox
	// vacuumed but not analysed, the planner took a third of it for
	// pending and scanned all of it, on every read; with a bitmap scan,
	// every read visited again the rows the last numbering moved, until
	// a vacuum, where an index scan marks their entries dead the first
	// time (TestNumberingFindsPendingByKey).
	b.Queue("SET LOCAL enable_seqscan = off")
	b.Queue("SET LOCAL enable_bitmapscan = off")
	if consumer == nil {
		b.Queue("SELECT pg_advisory_xact_lock($1)", lock)
		b.Queue("SELECT set_config('rapport.numbered', '1', false)")
	} else {
		b.Queue("SELECT set_config('rapport.numbered', '0', false)")
		b.Queue(`SELECT pg_advisory_xact_lock($1), set_config('rapport.numbered', '1', false)
			WHERE NOT EXISTS (SELECT FROM consumers WHERE name = $2 AND owner <> $3 AND lease_until >= now())`, lock, consumer, instance)
	}
	// READ COMMITTED: the statement's snapshot is taken once the lock is
	// held. Without the lock, the condition (evaluated once, before the
	// scan) leaves the outbox alone.
	b.Queue(`WITH pending AS (DELETE FROM outbox WHERE seq < 0 AND current_setting('rapport.numbered') = '1' RETURNING *)
		INSERT INTO outbox (seq, tenant, type, coll, record_id, time, body)
		SELECT nextval('outbox_seq'), p.tenant, p.type, p.coll, p.record_id, p.time, p.body
		FROM (SELECT * FROM pending ORDER BY seq DESC) p`)
	b.Queue("COMMIT")
}

// ReadOutbox implements storage.Store.
func (s *Store) ReadOutbox(ctx context.Context, consumer string, limit int) ([]storage.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := storage.ValidateID("consumer", consumer); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > storage.MaxScanLimit {
		return nil, fmt.Errorf("%w: outbox limit %d: want 1 to %d", storage.ErrInvalid, limit, storage.MaxScanLimit)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	// Take or renew the lease in the same statement; while another
	// process holds it, c is empty and so is the result. The lease is a
	// write, committed without waiting for the disk (see asyncCommit).
	// Only a reader that numbered (rapport.numbered, see queueSequencing)
	// tries: one whose lease was held elsewhere then inserts nothing, so
	// it locks no row, and writes nothing, and if that lease expired
	// since, it takes it over on its next read.
	var out []storage.Event
	b := &pgx.Batch{}
	queueSequencing(b, s.lock(lockOutbox), []byte(consumer), s.instance)
	b.QueuedQueries = append(b.QueuedQueries, asyncCommit().QueuedQueries...)
	b.Queue(`WITH c AS (
			INSERT INTO consumers AS k (name, acked, owner, lease_until)
			SELECT $1, 0, $3, now() + $4 * interval '1 microsecond' WHERE current_setting('rapport.numbered') = '1'
			ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until
				WHERE k.owner IS NULL OR k.owner = EXCLUDED.owner OR k.lease_until < now()
			RETURNING acked)
		SELECT seq, tenant, type, coll, record_id, time, body FROM outbox
		WHERE seq > (SELECT acked FROM c) ORDER BY seq LIMIT $2`, []byte(consumer), limit, s.instance, s.lease.Microseconds()).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			ev, err := scanEvent(rows)
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		return rows.Err()
	})
	b.Queue("COMMIT")
	if err := s.sendAlone(ctx, b); err != nil {
		return nil, fmt.Errorf("postgres: read outbox: %w", err)
	}
	return out, nil
}

// asyncCommit returns a batch that begins a transaction whose commit does
// not wait for the disk (synchronous_commit off). The outbox consumers'
// leases and positions are written so: a server crash may forget the last
// of them, and the events after the position it remembers are delivered
// again, as after a process crash between handling and acknowledging,
// which consumers must bear anyway. Each costs one round trip instead of
// one round trip and a disk flush, which the engines' writes then have to
// themselves.
func asyncCommit() *pgx.Batch {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit TO OFF")
	return b
}

// sendAlone sends a batch that holds a whole transaction on a connection
// of the pool, and rolls back what a failed statement left open.
func (s *Store) sendAlone(ctx context.Context, b *pgx.Batch) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return mapErr(err)
	}
	t := &tx{s: s, conn: conn}
	defer t.end(ctx)
	return mapErr(conn.SendBatch(ctx, b).Close())
}

func scanEvent(rows pgx.Rows) (storage.Event, error) {
	var (
		seq                          int64
		tenant, typ, coll, rid, body []byte
		at                           string
	)
	if err := rows.Scan(&seq, &tenant, &typ, &coll, &rid, &at, &body); err != nil {
		return storage.Event{}, err
	}
	var when time.Time
	if err := json.Unmarshal([]byte(strconv.Quote(at)), &when); err != nil {
		return storage.Event{}, fmt.Errorf("event %d: time %q: %w", seq, at, err)
	}
	ev := storage.Event{Seq: uint64(seq), Tenant: string(tenant), Type: string(typ), Collection: string(coll), RecordID: string(rid), Time: when}
	if len(body) > 0 {
		ev.Body = body
	}
	return ev, nil
}

// AckOutbox implements storage.Store.
func (s *Store) AckOutbox(ctx context.Context, consumer string, seq uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storage.ValidateID("consumer", consumer); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	// One round trip: the end of the outbox, and the position moved if
	// seq is within it (committed without waiting for the disk: see
	// asyncCommit).
	var last, moved int64
	b := asyncCommit()
	b.Queue("SELECT coalesce(max(seq), 0) FROM outbox WHERE seq > 0").QueryRow(func(row pgx.Row) error { return row.Scan(&last) })
	b.Queue(`INSERT INTO consumers AS k (name, acked, owner, lease_until)
		SELECT $1, $2, $3, now() + $4 * interval '1 microsecond' WHERE $2 <= (SELECT coalesce(max(seq), 0) FROM outbox WHERE seq > 0)
		ON CONFLICT (name) DO UPDATE SET acked = greatest(k.acked, EXCLUDED.acked), owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until
			WHERE k.owner IS NULL OR k.owner = EXCLUDED.owner OR k.lease_until < now()`,
		[]byte(consumer), int64(seq), s.instance, s.lease.Microseconds()).Exec(func(ct pgconn.CommandTag) error {
		moved = ct.RowsAffected()
		return nil
	})
	b.Queue("COMMIT")
	if err := s.sendAlone(ctx, b); err != nil {
		return fmt.Errorf("postgres: ack outbox: %w", err)
	}
	if seq > uint64(last) {
		return fmt.Errorf("postgres: ack outbox: %w: acknowledging event %d, but the outbox ends at %d", storage.ErrInvalid, seq, last)
	}
	if moved == 0 {
		return fmt.Errorf("postgres: ack outbox: %w: consumer %q is leased by another process", storage.ErrConflict, consumer)
	}
	return nil
}

// OutboxSignal implements storage.Store. Commits of this process fire it
// at once, and those of the other processes on the store through
// LISTEN/NOTIFY, within notifyInterval and a round trip.
func (s *Store) OutboxSignal() <-chan struct{} { return s.signal.Wait() }

// notifyChannel is the NOTIFY channel of every Rapport store; the payload
// names the schema.
const notifyChannel = "rapport_outbox"

// notifyInterval is the shortest time between two NOTIFYs of a store.
// A NOTIFY in the committing transaction cost each create about a
// sixth of its time, and PostgreSQL holds a database-wide lock from a
// notifying transaction's commit until its commit record is on disk, so
// notifying commits could not share a disk flush. Sent after the
// commit, one NOTIFY says that events were committed by all the
// transactions of the interval; other processes learn of a commit
// within the interval and a round trip. If the process dies before it
// sends, their consumers find the events when they next poll.
const notifyInterval = 5 * time.Millisecond

// notifier sends a NOTIFY when poked, at most one per notifyInterval,
// until ctx ends; then it sends the last one that was asked for.
func (s *Store) notifier(ctx context.Context) {
	defer s.listening.Done()
	for {
		select {
		case <-ctx.Done():
			select {
			case <-s.poke:
				s.notify(context.Background())
			default:
			}
			return
		case <-s.poke:
		}
		s.notify(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(notifyInterval):
		}
	}
}

// notify sends one NOTIFY in a transaction of its own, which does not
// wait for the disk: a notification is not durable anyway.
func (s *Store) notify(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := s.pool.Exec(ctx, "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)", notifyChannel, s.schema)
	if err != nil {
		s.log.Warn("postgres: outbox NOTIFY failed; other processes find the events when they next poll", "schema", s.schema, "err", err)
	}
}

// listen holds one connection that LISTENs for commits of other processes
// and fires the signal, reconnecting with backoff until ctx ends.
func (s *Store) listen(ctx context.Context) {
	defer s.listening.Done()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("postgres: outbox listener lost its connection; reconnecting", "schema", s.schema, "err", err, "in", backoff)
		// Commits may have been missed while disconnected.
		s.signal.Fire()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	defer func() {
		// Do not hand a listening connection back to the pool.
		if c := conn.Conn(); !c.IsClosed() {
			_ = c.Close(context.Background())
		}
	}()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if _, ours := s.pids.Load(n.PID); n.Payload == s.schema && !ours {
			s.signal.Fire()
		}
	}
}
