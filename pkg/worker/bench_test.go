package worker_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/tier"
)

// BenchmarkWorkerIO measures one worker process (this test binary in child
// mode "io") whose handler waits 20 ms, as if for I/O, and then reschedules
// the message an hour later through the ladder: messages per second at each
// concurrency, and the process's peak resident memory (VmHWM). The broker
// runs in the benchmark's own process; the worker's rate is counted from the
// records it wrote to the tiers. Each run starts on a seeded backlog of
// about 5 seconds of work at the ideal rate (concurrency / 20 ms); the last
// case repeats concurrency 256 on a backlog four times larger.
//
//	go test -run '^$' -bench WorkerIO -benchtime 1x ./pkg/worker
func BenchmarkWorkerIO(b *testing.B) {
	cases := []struct{ conc, backlog int }{
		{1, 250}, {64, 16_000}, {256, 64_000}, {1024, 150_000},
		{256, 250_000}, // the same concurrency with a backlog four times larger: memory must not follow it
	}
	for _, c := range cases {
		b.Run(fmt.Sprintf("concurrency=%d/backlog=%d", c.conc, c.backlog), func(b *testing.B) {
			var rate, hwm float64
			for range b.N {
				r, h := benchRun(b, c.conc, c.backlog)
				rate += r / float64(b.N)
				hwm = max(hwm, h)
			}
			b.ReportMetric(0, "ns/op") // a run includes the broker's and the worker's start: not a figure
			b.ReportMetric(rate, "msg/s")
			b.ReportMetric(hwm, "peak-RSS-MiB")
		})
	}
}

func benchRun(b *testing.B, conc, n int) (rate, hwmMiB float64) {
	l, err := tier.Parse(tier.DefaultTiers, tier.DefaultPrefix)
	if err != nil {
		b.Fatal(err)
	}
	const partitions = 6
	br := laddertest.Broker(b, partitions, append(append(l.Topics(), l.DLQTopic()), "work")...)
	seed(b, br.Addr(), "work", n, func(i int) string { return fmt.Sprintf("b%06d", i) })

	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	client, err := sarama.NewClient([]string{br.Addr()}, sc)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	written := func() int { // records in the tiers
		total := int64(0)
		for _, topic := range l.Topics() {
			for p := range int32(partitions) {
				off, err := client.GetOffset(topic, p, sarama.OffsetNewest)
				if err != nil {
					b.Fatalf("end offset of %s/%d: %v", topic, p, err)
				}
				total += off
			}
		}
		return int(total)
	}

	c := startChild(b, childSettings{Mode: "io", Addr: br.Addr(), Tiers: tier.DefaultTiers, Lane: "work", Concurrency: conc})
	timeout := 2*time.Minute + time.Duration(n)*20*time.Millisecond/time.Duration(conc)*4
	var (
		t0     time.Time
		c0, c1 int
	)
	waitFor(b, timeout, func() bool {
		got := written()
		if t0.IsZero() && got > 0 {
			t0, c0 = time.Now(), got
		}
		c1 = got
		return got >= n
	}, func() string { return fmt.Sprintf("worker wrote %d of %d", c1, n) })
	elapsed := time.Since(t0)
	hwm, _ := c.rss(b)
	if err := c.signal(b, syscall.SIGTERM, time.Minute); err != nil {
		b.Errorf("worker process did not stop cleanly: %v", err)
	}
	return float64(n-c0) / elapsed.Seconds(), float64(hwm) / 1024
}
