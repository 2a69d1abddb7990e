package postgres_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/postgres"
	"github.com/rapportcrm/rapport/storage/postgres/pgtest"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

// rlsStore sets up a schema with row-level security as the server's
// superuser (the owner of the tables), then opens it as an ordinary role,
// as a deployment should: the policies apply to that role. It returns the
// store and the URL of the role.
func rlsStore(t *testing.T) (*postgres.Store, string) {
	t.Helper()
	pgtest.Need(t, startErr)
	ctx := context.Background()
	schema := pgtest.Schema(t)
	owner, err := postgres.Open(ctx, server.URL, &postgres.Options{Schema: schema, RowLevelSecurity: true})
	require.NoError(t, err)
	require.NoError(t, owner.Close())
	role := schema + "_app"
	ident := pgx.Identifier{schema}.Sanitize()
	for _, q := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT USAGE, CREATE ON SCHEMA " + ident + " TO " + role,
		"GRANT ALL ON ALL TABLES IN SCHEMA " + ident + " TO " + role,
		"GRANT ALL ON ALL SEQUENCES IN SCHEMA " + ident + " TO " + role,
	} {
		execSQL(t, q)
	}
	u, err := url.Parse(server.URL)
	require.NoError(t, err)
	u.User = url.User(role)
	st, err := postgres.Open(ctx, u.String(), &postgres.Options{Schema: schema, RowLevelSecurity: true})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = st.Close()
		dropSchema(t, schema)
		execSQL(t, "DROP OWNED BY "+role)
		execSQL(t, "DROP ROLE "+role)
	})
	return st, u.String()
}

// TestRowLevelSecurity checks the fence itself: a tenant's transaction
// sees and writes only its rows even through SQL that forgets the tenant.
func TestRowLevelSecurity(t *testing.T) {
	st, roleURL := rlsStore(t)
	ctx := context.Background()
	require.NoError(t, st.Declare(ctx, storagetest.Collections()...))
	for _, tenant := range []string{"a", "b"} {
		require.NoError(t, st.Update(ctx, tenant, func(tx storage.Tx) error {
			_, err := tx.Put(ctx, "counters", storage.Record{ID: "x", Body: []byte(`{"n":1}`)})
			return err
		}))
	}
	conn, err := pgx.Connect(ctx, roleURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SET search_path TO "+pgx.Identifier{st.Schema()}.Sanitize())
	require.NoError(t, err)
	count := func(tenant string) int {
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx) //nolint:errcheck
		_, err = tx.Exec(ctx, "SELECT set_config('rapport.tenant', $1, true)", tenant)
		require.NoError(t, err)
		var n int
		require.NoError(t, tx.QueryRow(ctx, "SELECT count(*) FROM records WHERE coll = 'counters'").Scan(&n))
		return n
	}
	assert.Equal(t, 1, count("a"), "tenant a sees its row only")
	assert.Equal(t, 0, count("c"))
	assert.Equal(t, 2, count(""), "work for no tenant sees all")

	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SELECT set_config('rapport.tenant', 'a', true)")
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "INSERT INTO records (tenant, coll, id, version, body) VALUES ('b', 'counters', 'y', 1, '{}')")
	assert.ErrorContains(t, err, "row-level security", "tenant a cannot write b's rows")
	_ = tx.Rollback(ctx)
}

// TestConformanceRowLevelSecurity runs the conformance suite on stores
// with row-level security, opened as an ordinary role.
func TestConformanceRowLevelSecurity(t *testing.T) {
	pgtest.Need(t, startErr)
	storagetest.Run(t, func(t *testing.T) storage.Store {
		st, _ := rlsStore(t)
		return st
	})
}

// Roles granted their rights before migration 3 added the declare lock's
// table have none on it: the migration lets every role lock it, so their
// writes and Declares go on.
func TestDeclareLockNeedsNoGrant(t *testing.T) {
	st, _ := rlsStore(t)
	ctx := context.Background()
	role := st.Schema() + "_app"
	execSQL(t, "REVOKE ALL ON "+pgx.Identifier{st.Schema(), "declare_lock"}.Sanitize()+" FROM "+role)
	require.NoError(t, st.Declare(ctx, storagetest.Collections()...))
	require.NoError(t, st.Update(ctx, "t", func(tx storage.Tx) error {
		_, err := tx.Put(ctx, "people", storagetest.BenchRecord(1))
		return err
	}))
	require.NoError(t, st.Declare(ctx, storage.Collection{Name: "people", Indexes: []storage.Index{{Name: "email", Field: "email", Unique: true}}}))
}
