package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage/postgres"
	"github.com/rapportcrm/rapport/storage/postgres/pgtest"
)

// pg is the PostgreSQL server of the tests that need one, started by the
// first of them.
var pg struct {
	once sync.Once
	srv  *pgtest.Server
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pg.srv != nil {
		if err := pg.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// pgSchema returns the server's URL and a schema for t, dropped when t
// ends; it skips t (or fails it under make test) without PostgreSQL.
func pgSchema(t *testing.T) (url, schema string) {
	pg.once.Do(func() { pg.srv, pg.err = pgtest.Start() })
	pgtest.Need(t, pg.err)
	schema = pgtest.Schema(t)
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, pg.srv.URL)
		require.NoError(t, err)
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		require.NoError(t, err)
	})
	return pg.srv.URL, schema
}

// TestPostgres runs crmctl against PostgreSQL: migrate, then the same
// commands as on a file.
func TestPostgres(t *testing.T) {
	url, schema := pgSchema(t)
	db := []string{"-db", url, "-schema", schema}
	for range 2 {
		code, out, stderr := crmctl(t, append(db, "migrate")...)
		require.Equal(t, 0, code, stderr)
		assert.Equal(t, fmt.Sprintf("schema %s: migration %d (current)\n", schema, postgres.Migrations()), out)
	}
	code, _, stderr := crmctl(t, append(db, "contacts", "add", "-first", "Ada", "-email", "ada@example.com")...)
	require.Equal(t, 0, code, stderr)
	code, out, stderr := crmctl(t, append(db, "contacts", "list")...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, `"email":"ada@example.com"`)
	code, out, stderr = crmctl(t, append(db, "export", "contacts")...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "ada@example.com")

	code, _, stderr = crmctl(t, append(db, "check")...)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "verifies a bbolt file")
	code, _, stderr = crmctl(t, "-db", url, "-schema", "Bad-Schema", "migrate")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "schema")
}

func TestMigrateBolt(t *testing.T) {
	db := t.TempDir() + "/m.db"
	code, out, stderr := crmctl(t, "-db", db, "migrate")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, db+": bbolt, format current\n", out)
}
