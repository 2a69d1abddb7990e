package bolt_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/bolt"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

// bigSize is the number of records of the shared read-benchmark store.
const bigSize = 1_000_000

// bigStore is built once per test binary run and shared by the read
// benchmarks (and by every -count repetition).
var bigStore struct {
	once sync.Once
	dir  string
	st   *bolt.Store
	err  error
}

func openBig(b *testing.B) *bolt.Store {
	bigStore.once.Do(func() {
		dir, err := os.MkdirTemp("", "rapport-bench")
		if err != nil {
			bigStore.err = err
			return
		}
		bigStore.dir = dir
		path := filepath.Join(dir, "big.db")
		// Load without fsync, then reopen normally for the measurements.
		st, err := bolt.Open(path, &bolt.Options{NoSync: true})
		if err != nil {
			bigStore.err = err
			return
		}
		if err := storagetest.Populate(context.Background(), st, 0, bigSize, 10_000); err != nil {
			bigStore.err = err
			return
		}
		if err := st.Close(); err != nil {
			bigStore.err = err
			return
		}
		bigStore.st, bigStore.err = bolt.Open(path, nil)
		if bigStore.err == nil {
			bigStore.err = bigStore.st.Declare(context.Background(), storagetest.Collections()...)
		}
	})
	if bigStore.err != nil {
		b.Fatal(bigStore.err)
	}
	return bigStore.st
}

func newBenchStore(b *testing.B) storage.Store {
	s, err := bolt.Open(filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkStorePut compares a durable single-record create through the
// store with a raw bbolt Update that writes the same bytes.
func BenchmarkStorePut(b *testing.B) {
	b.Run("store", func(b *testing.B) {
		storagetest.BenchmarkPut(b, newBenchStore(b))
	})
	b.Run("raw-bbolt", func(b *testing.B) {
		db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		i := 1 << 30
		for b.Loop() {
			rec := storagetest.BenchRecord(i)
			i++
			err := db.Update(func(tx *bbolt.Tx) error {
				bk, err := tx.CreateBucketIfNotExists([]byte("people"))
				if err != nil {
					return err
				}
				return bk.Put([]byte(rec.ID), rec.Body)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkStoreBatchPut creates 10,000 records in one transaction.
func BenchmarkStoreBatchPut(b *testing.B) {
	storagetest.BenchmarkBatchPut(b, newBenchStore(b), 10_000)
}

// BenchmarkStoreGet reads random records by ID from a 1,000,000-record store.
func BenchmarkStoreGet(b *testing.B) {
	storagetest.BenchmarkGet(b, openBig(b), bigSize)
}

// BenchmarkStoreScanIndex scans 100,000 records by index value in a
// 1,000,000-record store.
func BenchmarkStoreScanIndex(b *testing.B) {
	storagetest.BenchmarkScanIndex(b, openBig(b), bigSize)
}
