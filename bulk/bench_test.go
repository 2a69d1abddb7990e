package bulk_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/rapportcrm/rapport/bulk"
	"github.com/rapportcrm/rapport/crm"
)

// BenchmarkImportOnlineRetail imports the 30,000 real lines of the Online
// Retail sample as orders into a fresh bbolt file per op: grouping by
// invoice, 3,569 customers created from CustomerID, cancellations as
// refunds, 11,727 orders. The goal is under 3 s per op.
func BenchmarkImportOnlineRetail(b *testing.B) {
	path := retailFile(b)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		e, err := crm.Open(ctx, crm.Options{Path: filepath.Join(b.TempDir(), "crm.db")})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := bulk.ImportOrders(ctx, e.Default(), bytesReader(data), bulk.Options{Mapping: retailMapping, Currency: "GBP", RefundPrefix: "C"})
		if err != nil {
			b.Fatal(err)
		}
		if res.Created != 11727 {
			b.Fatalf("created %d orders", res.Created)
		}
		b.StopTimer()
		if err := e.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(30000, "lines/op")
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// BenchmarkImportContacts imports 1,000,000 generated contacts (first and
// last name, email, external ID) from CSV into a fresh bbolt file per op.
// The goal is at least 50,000 rows/s.
func BenchmarkImportContacts(b *testing.B) {
	const n = 1_000_000
	var buf bytes.Buffer
	buf.WriteString("first_name,last_name,email,external_id\n")
	for i := range n {
		fmt.Fprintf(&buf, "Customer,Number %d,customer%d@example.com,C%d\n", i, i, i)
	}
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		e, err := crm.Open(ctx, crm.Options{Path: filepath.Join(b.TempDir(), "crm.db")})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := bulk.ImportContacts(ctx, e.Default(), bytes.NewReader(buf.Bytes()), bulk.Options{BatchSize: 10_000})
		if err != nil {
			b.Fatal(err)
		}
		if res.Created != n {
			b.Fatalf("created %d contacts: %v", res.Created, res.Errors)
		}
		b.StopTimer()
		if err := e.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
