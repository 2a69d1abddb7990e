package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage/bolt"
	"github.com/rapportcrm/rapport/storage/postgres"
)

// database is where crmctl works: a bbolt file, or a PostgreSQL server
// (a postgres:// URL) and the schema that holds the store.
type database struct {
	path   string
	schema string
}

func (d database) postgres() bool {
	return strings.HasPrefix(d.path, "postgres://") || strings.HasPrefix(d.path, "postgresql://")
}

// mustExist refuses a bbolt file that does not exist, for commands that
// only read (a server is checked when connecting).
func (d database) mustExist() error {
	if d.postgres() {
		return nil
	}
	if _, err := os.Stat(d.path); err != nil {
		return fmt.Errorf("no database: %w", err)
	}
	return nil
}

// open opens an engine on the database; close closes both.
func (d database) open(ctx context.Context) (engine *crm.Engine, close func() error, err error) {
	if !d.postgres() {
		e, err := crm.Open(ctx, crm.Options{Path: d.path})
		if err != nil {
			return nil, nil, err
		}
		return e, e.Close, nil
	}
	st, err := postgres.Open(ctx, d.path, &postgres.Options{Schema: d.schema})
	if err != nil {
		return nil, nil, err
	}
	e, err := crm.Open(ctx, crm.Options{Store: st})
	if err != nil {
		return nil, nil, errors.Join(err, st.Close())
	}
	return e, func() error { return errors.Join(e.Close(), st.Close()) }, nil
}

// migrate brings the database's format up to date and says where it is:
// PostgreSQL migrations are applied (under an advisory lock, so it is safe
// while engines run); a bbolt file is created or checked.
func migrate(ctx context.Context, d database, stdout io.Writer) error {
	if !d.postgres() {
		s, err := bolt.Open(d.path, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: bbolt, format current\n", d.path)
		return s.Close()
	}
	st, err := postgres.Open(ctx, d.path, &postgres.Options{Schema: d.schema})
	if err != nil {
		return err
	}
	defer st.Close()
	v, err := st.Migration(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "schema %s: migration %d (current)\n", st.Schema(), v)
	return nil
}
