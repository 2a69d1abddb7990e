package crm_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/crm"
)

// BenchmarkAutomationLatency measures event-to-action latency on bbolt
// (fsync on every commit): contacts are created at a steady 1,000 per
// second (b.N of them, by eight writers, one transaction each), and an
// automation on contact.created gives each a task. The latency of an
// event is the task's creation time less the contact's. Run it with
// -benchtime 5000x or more, so that it runs for seconds:
//
//	go test ./crm -run '^$' -bench AutomationLatency -benchtime 5000x -count 5
func BenchmarkAutomationLatency(b *testing.B) {
	const rate = 1000 // events per second
	const writers = 8
	ctx := context.Background()
	e, err := crm.Open(ctx, crm.Options{Path: filepath.Join(b.TempDir(), "latency.db")})
	require.NoError(b, err)
	defer e.Close()
	set, err := automation.Load("latency.yaml", []byte(`
automations:
  - name: first-call
    on: {event: contact.created}
    when: contact.email != nil
    do:
      - activity: {type: call, subject: "Call {{.Contact.FirstName}}", for: "user:rep", due: 24h}
`), nil)
	require.NoError(b, err)
	require.NoError(b, e.Automations().Save(ctx, set))

	b.ResetTimer()
	began := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := range writers {
		wg.Go(func() {
			n := b.N / writers
			if w < b.N%writers {
				n++
			}
			interval := time.Second * writers / rate
			next := time.Now().Add(time.Duration(w) * interval / writers)
			for i := range n {
				time.Sleep(time.Until(next))
				next = next.Add(interval)
				_, err := e.Contacts().Create(ctx, crm.Contact{FirstName: fmt.Sprintf("W%dC%d", w, i), Email: fmt.Sprintf("w%dc%d@example.com", w, i)})
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	produced := time.Since(began)
	require.NoError(b, firstErr)
	// Wait for every task.
	var acts []crm.Activity
	deadline := time.Now().Add(time.Minute)
	for {
		acts = acts[:0]
		require.NoError(b, e.Activities().Each(ctx, crm.EachOptions{}, func(a *crm.Activity) error {
			acts = append(acts, *a)
			return nil
		}))
		if len(acts) == b.N || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	require.Len(b, acts, b.N)
	created := map[string]time.Time{}
	require.NoError(b, e.Contacts().Each(ctx, crm.EachOptions{}, func(c *crm.Contact) error {
		created[c.ID] = c.CreatedAt
		return nil
	}))
	lat := make([]time.Duration, 0, len(acts))
	for _, a := range acts {
		lat = append(lat, a.CreatedAt.Sub(created[a.ContactID]))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
	b.ReportMetric(float64(b.N)/produced.Seconds(), "events/s")
}
