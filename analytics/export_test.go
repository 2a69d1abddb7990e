package analytics

import "github.com/rapportcrm/rapport/crm"

// AggregateRFM runs the RFM aggregation over facts grouped by customer,
// for benchmarks, and returns the number of customers.
func AggregateRFM(facts []crm.OrderFact) (int, error) {
	a := &rfmAcc{}
	for i := range facts {
		if err := a.add(&facts[i]); err != nil {
			return 0, err
		}
	}
	a.flush()
	return a.rows.n, nil
}

// ParseUUID is parseUUID, for tests.
var ParseUUID = parseUUID
