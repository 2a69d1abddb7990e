package bulk_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/rapportcrm/rapport/bulk"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage/memory"
)

// Import order lines from CSV with a column mapping: lines with the same
// invoice number form one order, customers are created from their IDs,
// and bad rows are reported with their line numbers.
func ExampleImportOrders() {
	ctx := context.Background()
	store := memory.New()
	defer store.Close()
	engine, err := crm.Open(ctx, crm.Options{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()

	csv := `InvoiceNo,CustomerID,InvoiceDate,StockCode,Quantity,UnitPrice
536365,17850.0,2010-12-01 08:26:00,85123A,6,2.55
536365,17850.0,2010-12-01 08:26:00,71053,6,3.39
C536379,17850.0,2010-12-01 09:41:00,85123A,-1,2.55
536370,,2010-12-01 08:45:00,22728,24,3.75
`
	res, err := bulk.ImportOrders(ctx, engine.Default(), strings.NewReader(csv), bulk.Options{
		Mapping: map[string]string{"InvoiceNo": "order_number", "CustomerID": "customer_external_id",
			"InvoiceDate": "ordered_at", "StockCode": "sku", "Quantity": "quantity", "UnitPrice": "unit_price"},
		Currency: "GBP", RefundPrefix: "C",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d rows: %d orders, %d customer, %d skipped\n", res.Rows, res.Created, res.CustomersCreated, res.Skipped)
	for _, e := range res.Errors {
		fmt.Println(e)
	}
	orders, err := engine.Orders().FindBy(ctx, "number", []string{"536365", "C536379"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(orders["536365"].Total, orders["C536379"].Total, orders["C536379"].Refund)
	// Output:
	// 4 rows: 2 orders, 1 customer, 1 skipped
	// line 5 (536370): no customer: order lines without a customer_external_id are skipped
	// 35.64 GBP -2.55 GBP true
}
