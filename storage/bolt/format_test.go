package bolt_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/bolt"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

// storedFormat returns the format version stamped in a closed file, or nil.
func storedFormat(t *testing.T, path string) []byte {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	var v []byte
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		if meta := tx.Bucket([]byte("meta")); meta != nil {
			v = append(v, meta.Get([]byte("format"))...)
		}
		return nil
	}))
	return v
}

// setFormat stamps a closed file with version, or removes the stamp if
// version is "".
func setFormat(t *testing.T, path, version string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists([]byte("meta"))
		if err != nil {
			return err
		}
		if version == "" {
			return meta.Delete([]byte("format"))
		}
		return meta.Put([]byte("format"), []byte(version))
	}))
	require.NoError(t, db.Close())
}

// writeSome creates a file with one record and returns its path.
func writeSome(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rapport.db")
	s, err := bolt.Open(path, nil)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Declare(ctx, storagetest.Collections()...))
	require.NoError(t, s.Update(ctx, "t", func(tx storage.Tx) error {
		_, err := tx.Put(ctx, "people", storage.Record{ID: "p1", Body: []byte(`{"email":"a@x.io"}`)})
		return err
	}))
	require.NoError(t, s.Close())
	return path
}

func TestNewFileIsStampedWithItsFormat(t *testing.T) {
	assert.Equal(t, "1", string(storedFormat(t, writeSome(t))))
}

func TestOpenReadsFileWrittenBeforeTheStamp(t *testing.T) {
	path := writeSome(t)
	setFormat(t, path, "")
	s, err := bolt.Open(path, nil)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Declare(ctx, storagetest.Collections()...))
	require.NoError(t, s.View(ctx, "t", func(tx storage.ReadTx) error {
		p, err := tx.Scan(ctx, "people", storage.Query{Index: "email", Equal: "a@x.io"})
		require.NoError(t, err)
		require.Len(t, p.Records, 1)
		assert.Equal(t, "p1", p.Records[0].ID)
		return nil
	}))
	require.NoError(t, s.Close())
}

func TestOpenRefusesAnotherFormat(t *testing.T) {
	path := writeSome(t)
	setFormat(t, path, "2")
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	_, err = bolt.Open(path, nil)
	require.ErrorIs(t, err, storage.ErrFormat)
	assert.Contains(t, err.Error(), path)
	assert.Contains(t, err.Error(), `format "2"`)

	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after, "a refused file is left as it was")
	// The refused file is not left locked: opening it again gives the same
	// answer at once.
	_, err = bolt.Open(path, &bolt.Options{Timeout: -1})
	require.ErrorIs(t, err, storage.ErrFormat)
}

// pageSize returns the page size of a closed file.
func pageSize(t *testing.T, path string) int {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	return db.Info().PageSize
}

func TestPageSize(t *testing.T) {
	ctx := context.Background()
	path := writeSome(t)
	assert.Equal(t, bolt.DefaultPageSize, pageSize(t, path), "new files get the default")

	small := filepath.Join(t.TempDir(), "small.db")
	s, err := bolt.Open(small, &bolt.Options{PageSize: 4096})
	require.NoError(t, err)
	require.NoError(t, s.Declare(ctx, storagetest.Collections()...))
	require.NoError(t, s.Update(ctx, "t", func(tx storage.Tx) error {
		_, err := tx.Put(ctx, "people", storage.Record{ID: "p1", Body: []byte(`{"email":"a@x.io"}`)})
		return err
	}))
	require.NoError(t, s.Close())
	s, err = bolt.Open(small, nil)
	require.NoError(t, err, "a file keeps its own page size under other options")
	require.NoError(t, s.Declare(ctx, storagetest.Collections()...))
	require.NoError(t, s.View(ctx, "t", func(tx storage.ReadTx) error {
		_, err := tx.Get(ctx, "people", "p1")
		return err
	}))
	require.NoError(t, s.Close())
	assert.Equal(t, 4096, pageSize(t, small))

	for _, bad := range []int{-1, 512, 4095, 6000, 131072} {
		p := filepath.Join(t.TempDir(), "bad.db")
		_, err := bolt.Open(p, &bolt.Options{PageSize: bad})
		require.ErrorIs(t, err, storage.ErrInvalid, "page size %d", bad)
		assert.Contains(t, err.Error(), "page size")
		_, statErr := os.Stat(p)
		assert.True(t, os.IsNotExist(statErr), "no file is created for page size %d", bad)
	}
}
