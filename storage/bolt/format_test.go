package bolt_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/bolt"
)

// rawFile writes buckets of keys and values into a new bbolt file.
func rawFile(t *testing.T, buckets map[string]map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "raw.db")
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		for name, kv := range buckets {
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			for k, v := range kv {
				if err := b.Put([]byte(k), []byte(v)); err != nil {
					return err
				}
			}
		}
		return nil
	}))
	require.NoError(t, db.Close())
	return path
}

func TestOpenRefusesOtherFormats(t *testing.T) {
	version1 := "\x00\x00\x00\x00\x00\x00\x00\x01" + `{"name":"A"}`
	cases := map[string]map[string]map[string]string{
		// The layout before format versions: a bucket of records and one
		// per index, and no "format" key in meta.
		"format 1": {
			"meta":                       {"coll\x00people": `{"email":"email unique=true field:email v0"}`},
			"r\x00t1\x00people":          {"p1": version1},
			"i\x00t1\x00people\x00email": {"a@x.io\x00p1": ""},
		},
		"format 1 with only an outbox": {
			"outbox": {"\x00\x00\x00\x00\x00\x00\x00\x01": "{}"},
		},
		"a newer format": {
			"meta": {"format": "3"},
		},
	}
	for name, buckets := range cases {
		t.Run(name, func(t *testing.T) {
			path := rawFile(t, buckets)
			before, err := os.ReadFile(path)
			require.NoError(t, err)

			_, err = bolt.Open(path, nil)
			require.ErrorIs(t, err, storage.ErrFormat)
			assert.Contains(t, err.Error(), path)
			assert.Contains(t, err.Error(), "format")

			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, before, after, "a refused file is left as it was")
			// The file is not left locked: opening it again gives the
			// same answer at once.
			_, err = bolt.Open(path, &bolt.Options{Timeout: -1})
			require.ErrorIs(t, err, storage.ErrFormat)
		})
	}
}

func TestNewFileIsStampedWithItsFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	s, err := bolt.Open(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		require.NotNil(t, meta)
		assert.Equal(t, "2", string(meta.Get([]byte("format"))))
		return nil
	}))
}
