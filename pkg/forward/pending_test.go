package forward_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/tier"
)

// pendingGauge reads ladder_pending_records of tier from reg.
func pendingGauge(t *testing.T, reg *prometheus.Registry, tier string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ladder_pending_records" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "tier" && l.GetValue() == tier {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// TestPendingSkipsTransactionMarkers: exactly-once forwarders write the
// tiers in transactions, and each transaction leaves a marker at an offset
// of its own in every partition it wrote. ladder_pending_records counts
// records, not offsets: a tier whose records were all forwarded shows 0
// (its end offset is one past the committed offset: the last marker), and
// a tier holding n records written in one transaction shows n, not n+1.
func TestPendingSkipsTransactionMarkers(t *testing.T) {
	l, err := tier.Parse("1s,1m", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b := laddertest.Ladder(t, l, 1, "work")
	e := &env{broker: b, addr: b.Addr(), ladder: l}
	work := laddertest.CollectCommitted(t, e.addr, "work")
	reg := prometheus.NewRegistry()
	e.startForwarder(t, func(c *forward.Config) {
		c.ExactlyOnce = true
		c.TxnInterval = time.Second // the records released together share one transaction
		c.HealthInterval = 200 * time.Millisecond
		c.Registerer = reg
	})

	// Into delay-1s, released after 1s: "soon" (due in 2.5s) goes back into
	// delay-1s and on to work; "held" (due in 90s) goes to delay-1m, held there.
	p := laddertest.Producer(t, e.addr)
	now := time.Now()
	var msgs []*sarama.ProducerMessage
	add := func(key string, due time.Time) {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: "delay-1s", Key: sarama.StringEncoder(key), Value: sarama.StringEncoder("v"),
			Timestamp: now, Headers: []sarama.RecordHeader{header("ladder-target", "work"), header("ladder-due", strconv.FormatInt(due.UnixMilli(), 10))}})
	}
	const soon, held = 3, 4
	for i := range soon {
		add("soon-"+strconv.Itoa(i), now.Add(2500*time.Millisecond))
	}
	for i := range held {
		add("held-"+strconv.Itoa(i), now.Add(90*time.Second))
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
	work.WaitDistinct(t, soon, 30*time.Second)

	client, err := sarama.NewClient([]string{e.addr}, laddertestConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	end := func(topic string) int64 {
		off, err := client.GetOffset(topic, 0, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		return off
	}
	last := ""
	laddertest.Eventually(t, 20*time.Second, func() bool {
		fast, slow := pendingGauge(t, reg, "delay-1s"), pendingGauge(t, reg, "delay-1m")
		if now := fmt.Sprintf("delay-1s %v (end offset %d), delay-1m %v (end offset %d)", fast, end("delay-1s"), slow, end("delay-1m")); now != last {
			t.Logf("ladder_pending_records: %s", now)
			last = now
		}
		return fast == 0 && slow == held
	}, "ladder_pending_records never showed delay-1s 0 and delay-1m %d (see the values logged)", held)
	// The markers are there: delay-1s holds the plain records, their second hop and markers; delay-1m the held ones and a marker.
	if got := end("delay-1m"); got <= held {
		t.Errorf("delay-1m ends at %d: no transaction marker after the %d held records", got, held)
	}
}
