package plan

import (
	"context"
	"testing"

	"github.com/ladder/ladder/pkg/tier"
)

// BenchmarkSimulate simulates the user's workload (delays in three buckets
// around 5m, 30m and 2h on the default ladder) with 1,000,000 pending
// messages over one mean delay, and reports simulated events (a record
// released or scheduled) and messages delivered per second of wall time.
func BenchmarkSimulate(b *testing.B) {
	l, err := tier.Parse(tier.DefaultTiers, tier.DefaultPrefix)
	if err != nil {
		b.Fatal(err)
	}
	d, err := ParseDelays("3m-7m:0.5,20m-40m:0.3,90m-150m:0.2")
	if err != nil {
		b.Fatal(err)
	}
	w := Workload{Pending: 1_000_000, ValueBytes: 100, Delays: d, PartitionRate: 100}
	p, err := Compute(l, w)
	if err != nil {
		b.Fatal(err)
	}
	cfg := SimConfigFor(l, w, p, int(w.Pending), 0, 1)
	var events, delivered int64
	b.ReportAllocs()
	for b.Loop() {
		r, err := Simulate(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		events += r.Events
		delivered += r.Delivered
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(events)/sec, "events/s")
	b.ReportMetric(float64(delivered)/sec, "msgs/s")
}
