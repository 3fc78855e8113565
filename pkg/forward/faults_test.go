package forward_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

// proxied is setup with the broker behind a TCP proxy.
func proxied(t *testing.T, partitions int32) (*env, *laddertest.Proxy) {
	t.Helper()
	l, err := tier.Parse(testTiers, tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b, p := laddertest.ProxiedLadder(t, l, partitions, "work")
	return &env{broker: b, addr: b.Addr(), ladder: l, work: laddertest.Collect(t, b.Addr(), "work"),
		dlq: laddertest.Collect(t, b.Addr(), l.DLQTopic())}, p
}

func fastHealth(c *forward.Config) { c.HealthInterval = 500 * time.Millisecond }

// spread schedules n messages due evenly over d, starting in a second (so
// each passes through a tier first).
func spread(t *testing.T, e *env, prefix string, n int, d time.Duration) map[string]schedule.Message {
	t.Helper()
	now := time.Now()
	want := map[string]schedule.Message{}
	var batch []schedule.Message
	for i := range n {
		m := schedule.Message{Topic: "work", Key: []byte(fmt.Sprintf("%s%04d", prefix, i)), Value: []byte("v"),
			At: now.Add(time.Second + time.Duration(i)*d/time.Duration(n))} // due after the first hop
		want[string(m.Key)] = m
		batch = append(batch, m)
	}
	if err := e.scheduler(t).ScheduleBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	return want
}

// TestBrokerUnreachable cuts every connection to the broker for 8 seconds
// while messages flow: the forwarder reports not ready, dead-letters
// nothing, does not stop, and once the broker is back every message
// arrives, none early.
func TestBrokerUnreachable(t *testing.T) {
	e, proxy := proxied(t, 2)
	f, _ := e.startForwarder(t, fastHealth)
	want := spread(t, e, "u", 300, 12*time.Second)
	e.work.WaitFor(30*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= 100 })
	laddertest.Eventually(t, 10*time.Second, func() bool { return f.Ready() == nil }, "not ready before the cut: %v", f.Ready())

	proxy.Cut()
	cutAt := time.Now()
	laddertest.Eventually(t, 10*time.Second, func() bool { return f.Ready() != nil }, "still ready with the broker unreachable")
	reason := f.Ready()
	for time.Since(cutAt) < 8*time.Second {
		time.Sleep(100 * time.Millisecond) // the outage itself: its length is the point
	}
	proxy.Restore()

	recs := e.work.WaitDistinct(t, len(want), 90*time.Second)
	worst, _ := checkArrivals(t, recs, want, 60*time.Second)
	laddertest.Eventually(t, 30*time.Second, func() bool { return f.Ready() == nil }, "not ready again after the outage: %v", f.Ready())
	if n := e.dlq.Len(); n != 0 {
		t.Errorf("%d records dead-lettered for a transient outage", n)
	}
	t.Logf("8s outage: not ready with %q; all %d arrived (%d records), worst lateness %s; %+v",
		reason, len(want), len(recs), worst, f.Snapshot())
}

// TestSlowBroker delays every packet by 150ms each way: slower, but nothing
// lost, early or dead-lettered.
func TestSlowBroker(t *testing.T) {
	e, proxy := proxied(t, 2)
	proxy.SetDelay(150 * time.Millisecond)
	e.startForwarder(t)
	want := spread(t, e, "s", 200, 8*time.Second)
	recs := e.work.WaitDistinct(t, len(want), 90*time.Second)
	worst, median := checkArrivals(t, recs, want, 30*time.Second)
	if n := e.dlq.Len(); n != 0 {
		t.Errorf("%d records dead-lettered on a slow broker", n)
	}
	t.Logf("150ms each way: all %d arrived, lateness median %s worst %s", len(want), median, worst)
}

// TestMissingTargetTopic: a record for a topic that does not exist yet is
// retried with back-off, never dead-lettered, its offset held (the records
// behind it still flow); readiness reports the failure; once the topic is
// created the record arrives.
func TestMissingTargetTopic(t *testing.T) {
	l, err := tier.Parse(testTiers, tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b := laddertest.Ladder(t, l, 1, "work")
	e := &env{broker: b, addr: b.Addr(), ladder: l, work: laddertest.Collect(t, b.Addr(), "work"), dlq: laddertest.Collect(t, b.Addr(), l.DLQTopic())}
	f, _ := e.startForwarder(t, fastHealth)
	p := laddertest.Producer(t, e.addr)
	due := strconv.FormatInt(time.Now().Add(500*time.Millisecond).UnixMilli(), 10)
	send(t, p, "delay-1s", "for-later", []sarama.RecordHeader{header(envelope.Target, "later"), header(envelope.Due, due)})
	send(t, p, "delay-1s", "behind", []sarama.RecordHeader{header(envelope.Target, "work"), header(envelope.Due, due)})

	e.work.WaitDistinct(t, 1, 20*time.Second) // the record behind is not blocked
	laddertest.Eventually(t, 20*time.Second, func() bool { return f.Snapshot().Retried >= 2 }, "no retries: %+v", f.Snapshot())
	laddertest.Eventually(t, 20*time.Second, func() bool { return f.Ready() != nil }, "ready while producing fails")
	reason := f.Ready()
	if !strings.Contains(reason.Error(), "producing fails") {
		t.Errorf("readiness says %q", reason)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.EnsureTopics(ctx, nil, 1, "later"); err != nil {
		t.Fatal(err)
	}
	later := laddertest.Collect(t, e.addr, "later")
	got := later.WaitDistinct(t, 1, 40*time.Second)
	if string(got[0].Key) != "for-later" {
		t.Errorf("got %q", got[0].Key)
	}
	laddertest.Eventually(t, 20*time.Second, func() bool { return f.Ready() == nil }, "not ready after the topic appeared: %v", f.Ready())
	if n := e.dlq.Len(); n != 0 {
		t.Errorf("%d records dead-lettered for a missing topic", n)
	}
	t.Logf("missing topic: %d retries, not ready with %q, delivered once the topic existed", f.Snapshot().Retried, reason)
}

// TestTargetRefusesWrites: for 4 seconds the broker answers
// NOT_ENOUGH_REPLICAS to every produce request that writes to the target
// (a broker short of in-sync replicas); the forwarder retries, and every
// message arrives, none early, none dead-lettered.
func TestTargetRefusesWrites(t *testing.T) {
	e := setup(t, 2)
	var refused atomic.Int64
	until := time.Now().Add(4 * time.Second)
	c := e.broker.Cluster()
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		toWork := false
		for _, tp := range pr.Topics {
			toWork = toWork || tp.Topic == "work"
		}
		if !toWork || time.Now().After(until) {
			return nil, nil, false
		}
		refused.Add(1)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, tp := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = tp.Topic
			for _, pp := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = pp.Partition
				rp.ErrorCode = kerr.NotEnoughReplicas.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	f, _ := e.startForwarder(t)
	want := spread(t, e, "r", 200, 3*time.Second)
	recs := e.work.WaitDistinct(t, len(want), 60*time.Second)
	worst, _ := checkArrivals(t, recs, want, 40*time.Second)
	if refused.Load() == 0 {
		t.Fatal("no produce request was refused: nothing was tested")
	}
	if n := e.dlq.Len(); n != 0 {
		t.Errorf("%d records dead-lettered for NOT_ENOUGH_REPLICAS", n)
	}
	t.Logf("%d produce requests refused over 4s: all %d arrived, worst lateness %s; %+v", refused.Load(), len(want), worst, f.Snapshot())
}
