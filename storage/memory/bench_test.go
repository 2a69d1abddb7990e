package memory_test

import (
	"context"
	"testing"

	"github.com/rapportcrm/rapport/storage"
	"github.com/rapportcrm/rapport/storage/memory"
	"github.com/rapportcrm/rapport/storage/storagetest"
)

const readSize = 100_000

func populated(b *testing.B) storage.Store {
	st := memory.New()
	b.Cleanup(func() { _ = st.Close() })
	if err := storagetest.Populate(context.Background(), st, 0, readSize, 10_000); err != nil {
		b.Fatal(err)
	}
	return st
}

func BenchmarkStorePut(b *testing.B) {
	st := memory.New()
	defer st.Close()
	storagetest.BenchmarkPut(b, st)
}

func BenchmarkStoreBatchPut(b *testing.B) {
	st := memory.New()
	defer st.Close()
	storagetest.BenchmarkBatchPut(b, st, 10_000)
}

func BenchmarkStoreGet(b *testing.B) { storagetest.BenchmarkGet(b, populated(b), readSize) }

func BenchmarkStoreScanIndex(b *testing.B) {
	storagetest.BenchmarkScanIndex(b, populated(b), readSize)
}
