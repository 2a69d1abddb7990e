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

// RecordKeys gives ids keys and returns the IDs the keys give back, and
// how many distinct keys there were.
func RecordKeys(ids ...string) ([]string, int) {
	var r recordKeys
	out, distinct := []string{}, map[[16]byte]bool{}
	for _, id := range ids {
		k := r.key(id)
		distinct[k] = true
		out = append(out, r.id(k))
	}
	return out, len(distinct)
}
