package plugins_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/internal/fake"
)

// BenchmarkRoundTrip compares a Send with a 1 KB body through a plugin
// process (gRPC over mutual TLS on a Unix socket) with the same call on
// the in-process connector. It reports p50 and p99 latency and calls/s.
func BenchmarkRoundTrip(b *testing.B) {
	body := strings.Repeat("x", 1024)
	run := func(b *testing.B, c plugins.Connector) {
		ctx := context.Background()
		msg := plugins.Message{Recipient: "ada@example.com", Subject: "Hi", Body: body, IdempotencyKey: "same"}
		if _, err := c.Send(ctx, msg); err != nil { // warm up: start the plugin
			b.Fatal(err)
		}
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			t0 := time.Now()
			if _, err := c.Send(ctx, msg); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		total := time.Since(start)
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
		b.ReportMetric(float64(b.N)/total.Seconds(), "calls/s")
	}
	b.Run("plugin", func(b *testing.B) {
		m := newManager(b, plugins.Options{}, testConfig(b, "fake", plugins.KindConnector))
		c, err := m.Connector("fake")
		require.NoError(b, err)
		run(b, c)
	})
	b.Run("in-process", func(b *testing.B) {
		run(b, fake.NewConnector())
	})
}

// BenchmarkStart measures a plugin's start-up: launch, checksum check,
// go-plugin handshake with AutoMTLS, and a first call.
func BenchmarkStart(b *testing.B) {
	cfg := testConfig(b, "fake", plugins.KindConnector)
	ctx := context.Background()
	for range b.N {
		m, err := plugins.NewManager(plugins.Options{Logger: quietLogger()}, cfg)
		require.NoError(b, err)
		c, _ := m.Connector("fake")
		if _, err := c.Describe(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = m.Close()
		b.StartTimer()
	}
}
