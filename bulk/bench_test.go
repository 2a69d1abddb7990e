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
// last name, email, external ID) from CSV into a fresh bbolt file per op,
// with the default options. The goal is at least 50,000 rows/s.
//   - stored: until ImportContacts returns, every contact durable;
//   - searchable: and until the search index (kept from the outbox, off the
//     write path) has caught up, so that Search finds the last contact.
func BenchmarkImportContacts(b *testing.B) {
	const n = 1_000_000
	var buf bytes.Buffer
	buf.WriteString("first_name,last_name,email,external_id\n")
	for i := range n {
		fmt.Fprintf(&buf, "Customer,Number %d,customer%d@example.com,C%d\n", i, i, i)
	}
	ctx := context.Background()
	for _, searchable := range []bool{false, true} {
		name := "stored"
		if searchable {
			name = "searchable"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				e, err := crm.Open(ctx, crm.Options{Path: filepath.Join(b.TempDir(), "crm.db")})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				res, err := bulk.ImportContacts(ctx, e.Default(), bytes.NewReader(buf.Bytes()), bulk.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if res.Created != n {
					b.Fatalf("created %d contacts: %v", res.Created, res.Errors)
				}
				if searchable {
					pg, err := e.Contacts().Search(ctx, fmt.Sprintf("customer%d@", n-1), crm.SearchOptions{})
					if err != nil || len(pg.Items) != 1 {
						b.Fatalf("search for the last contact: %d found, %v", len(pg.Items), err)
					}
				}
				b.StopTimer()
				if err := e.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
