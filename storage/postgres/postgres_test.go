package postgres_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/postgres"
	"github.com/rapportcrm/rapport/storage/postgres/pgtest"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

// server is the PostgreSQL server of this test binary, or startErr why
// there is none.
var (
	server   *pgtest.Server
	startErr error
)

func TestMain(m *testing.M) {
	server, startErr = pgtest.Start()
	code := m.Run()
	if err := server.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// open returns a store in a schema of its own, dropped when t ends.
func open(t *testing.T) *postgres.Store {
	t.Helper()
	pgtest.Need(t, startErr)
	return openSchema(t, pgtest.Schema(t))
}

func openSchema(t *testing.T, schema string) *postgres.Store {
	t.Helper()
	ctx := context.Background()
	s, err := postgres.Open(ctx, server.URL, &postgres.Options{Schema: schema})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = s.Close()
		dropSchema(t, schema)
	})
	return s
}

// openAlso opens another store on schema, as another process would, and
// closes it when the test ends; the schema is left to its first opener.
func openAlso(t *testing.T, schema string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), server.URL, &postgres.Options{Schema: schema})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func dropSchema(t *testing.T, schema string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, server.URL)
	if err != nil {
		t.Logf("drop schema %s: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		t.Logf("drop schema %s: %v", schema, err)
	}
}

func TestConformance(t *testing.T) {
	pgtest.Need(t, startErr)
	storagetest.Run(t,
		func(t *testing.T) storage.Store { return open(t) },
		storagetest.WithReopen(func(t *testing.T, s storage.Store) storage.Store {
			schema := s.(*postgres.Store).Schema()
			require.NoError(t, s.Close())
			re, err := postgres.Open(context.Background(), server.URL, &postgres.Options{Schema: schema})
			require.NoError(t, err)
			t.Cleanup(func() { _ = re.Close() })
			return re
		}),
	)
}

// poolSize returns url with its pool limited to conns connections.
func poolSize(url string, conns int) string {
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return fmt.Sprintf("%s%spool_max_conns=%d", url, sep, conns)
}
