package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/postgres"
	"github.com/rapportcrm/rapport/storage/postgres/pgtest"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

func execSQL(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, server.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	require.NoError(t, err)
}

func TestOpenConcurrentlyMigratesOnce(t *testing.T) {
	pgtest.Need(t, startErr)
	schema := pgtest.Schema(t)
	var wg sync.WaitGroup
	stores := make([]*postgres.Store, 4)
	errs := make([]error, 4)
	for i := range stores {
		wg.Go(func() {
			stores[i], errs[i] = postgres.Open(context.Background(), server.URL, &postgres.Options{Schema: schema})
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, s := range stores {
			if s != nil {
				_ = s.Close()
			}
		}
		dropSchema(t, schema)
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, server.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var n, maxV int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*), max(version) FROM "+pgx.Identifier{schema, "migrations"}.Sanitize()).Scan(&n, &maxV))
	assert.Equal(t, postgres.Migrations(), n)
	assert.Equal(t, postgres.Migrations(), maxV)
}

func TestOpenRefusesOtherFormats(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	s := open(t)
	schema := s.Schema()
	require.NoError(t, s.Close())

	execSQL(t, "UPDATE "+pgx.Identifier{schema, "meta"}.Sanitize()+" SET value = '2' WHERE key = 'format'")
	_, err := postgres.Open(ctx, server.URL, &postgres.Options{Schema: schema})
	require.ErrorIs(t, err, storage.ErrFormat)
	execSQL(t, "UPDATE "+pgx.Identifier{schema, "meta"}.Sanitize()+" SET value = '1' WHERE key = 'format'")

	execSQL(t, "INSERT INTO "+pgx.Identifier{schema, "migrations"}.Sanitize()+" (version) VALUES (999)")
	_, err = postgres.Open(ctx, server.URL, &postgres.Options{Schema: schema})
	require.ErrorIs(t, err, storage.ErrFormat)
	assert.Contains(t, err.Error(), "migration 999")
}

func TestOpenBadInput(t *testing.T) {
	ctx := context.Background()
	for _, schema := range []string{"Upper", "1x", "a-b", "x y", "a;drop"} {
		_, err := postgres.Open(ctx, "postgres://localhost/x", &postgres.Options{Schema: schema})
		require.ErrorIs(t, err, storage.ErrInvalid, schema)
	}
	_, err := postgres.Open(ctx, "postgres://localhost/x", &postgres.Options{Lease: -time.Second})
	require.ErrorIs(t, err, storage.ErrInvalid)
	_, err = postgres.Open(ctx, "not a url ::: =", nil)
	require.ErrorIs(t, err, storage.ErrInvalid)
}

// TestConsumerLease checks that one process at a time reads a consumer,
// and that another takes over when the first closes.
func TestConsumerLease(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	a := open(t)
	require.NoError(t, a.Declare(ctx, storagetest.Collections()...))
	b, err := postgres.Open(ctx, server.URL, &postgres.Options{Schema: a.Schema()})
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Declare(ctx, storagetest.Collections()...))
	require.NoError(t, a.Update(ctx, "t", func(tx storage.Tx) error {
		return tx.Append(ctx, storage.Event{Type: "x.one"}, storage.Event{Type: "x.two"}, storage.Event{Type: "x.three"})
	}))

	evs, err := a.ReadOutbox(ctx, "group", 10)
	require.NoError(t, err)
	require.Len(t, evs, 3)
	other, err := b.ReadOutbox(ctx, "group", 10)
	require.NoError(t, err)
	assert.Empty(t, other, "the consumer is leased to a")
	require.ErrorIs(t, b.AckOutbox(ctx, "group", evs[0].Seq), storage.ErrConflict)
	require.NoError(t, a.AckOutbox(ctx, "group", evs[0].Seq))

	mine, err := b.ReadOutbox(ctx, "b-only", 10)
	require.NoError(t, err)
	assert.Len(t, mine, 3, "other consumers are not affected")

	require.NoError(t, a.Close())
	other, err = b.ReadOutbox(ctx, "group", 10)
	require.NoError(t, err)
	require.Len(t, other, 2, "b takes over after a's acknowledged position")
	assert.Equal(t, evs[1].Seq, other[0].Seq)
}

// TestConsumerLeaseExpires checks that a lease left by a process that did
// not close (it crashed) runs out.
func TestConsumerLeaseExpires(t *testing.T) {
	pgtest.Need(t, startErr)
	ctx := context.Background()
	schema := pgtest.Schema(t)
	a := openSchema(t, schema)
	require.NoError(t, a.Declare(ctx, storagetest.Collections()...))
	require.NoError(t, a.Update(ctx, "t", func(tx storage.Tx) error { return tx.Append(ctx, storage.Event{Type: "x.one"}) }))
	execSQL(t, "INSERT INTO "+pgx.Identifier{schema, "consumers"}.Sanitize()+" (name, acked, owner, lease_until) VALUES ('dead', 0, 'gone', now() + interval '300 milliseconds')")
	evs, err := a.ReadOutbox(ctx, "dead", 10)
	require.NoError(t, err)
	assert.Empty(t, evs, "leased to a process that is gone")
	time.Sleep(400 * time.Millisecond)
	evs, err = a.ReadOutbox(ctx, "dead", 10)
	require.NoError(t, err)
	assert.Len(t, evs, 1, "taken over once the lease ran out")
}
