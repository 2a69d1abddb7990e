package bolt_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/bolt"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

func openTemp(t *testing.T) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "rapport.db"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t,
		func(t *testing.T) storage.Store { return openTemp(t) },
		storagetest.WithReopen(func(t *testing.T, s storage.Store) storage.Store {
			path := s.(*bolt.Store).Path()
			require.NoError(t, s.Close())
			re, err := bolt.Open(path, nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = re.Close() })
			require.NoError(t, re.Check())
			return re
		}),
	)
}
