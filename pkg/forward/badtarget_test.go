package forward_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/laddertest"
)

// badRecord is one bad record of the bad-input tests and where it must end.
type badRecord struct {
	key, target string
	reason      envelope.Reason // expected dead-letter reason; "" when it must be delivered
	atOnce      bool            // dead-lettered without waiting for the target timeout
}

// TestBadTargetsNeverBlock writes, into one tier partition and under one
// key, good records around records whose target is missing, internal or
// invalid, and one whose target appears a second later. The good records
// arrive on time; the missing target's record is dead-lettered with reason
// unknown_target once it has waited LADDER_TARGET_TIMEOUT (not before),
// the internal and invalid ones at once; the one whose target appears is
// delivered. The forwarder stays ready, aborts no transaction, and the
// partition's committed offset reaches its end.
func TestBadTargetsNeverBlock(t *testing.T) {
	eachMode(t, func(t *testing.T, eos bool) {
		const timeout = 3 * time.Second
		e := setup(t, 1)
		work := e.target(t, eos, "work")
		dlq := e.target(t, eos, e.ladder.DLQTopic())
		o := e.startObserved(t, eos, func(c *forward.Config) { c.TargetTimeout = timeout })
		o.waitReady(t, 20*time.Second, "before the first record")
		p := laddertest.Producer(t, e.addr)
		start := time.Now()
		due := start.Add(500 * time.Millisecond)
		bad := []badRecord{
			{key: "missing", target: "nosuchtopic-x", reason: forward.ReasonUnknownTarget},
			{key: "internal", target: "__consumer_offsets", reason: envelope.ReasonInvalidTarget, atOnce: true},
			{key: "invalid", target: "no spaces", reason: envelope.ReasonInvalidTarget, atOnce: true},
			{key: "appears", target: "later"},
		}
		want := map[string]bool{}
		n := 0
		for i := range 40 {
			if i%10 == 5 {
				b := bad[n]
				n++
				sendKeyed(t, p, "same", b.key, b.target, due)
				continue
			}
			key := fmt.Sprintf("good-%02d", i)
			want[key] = true
			sendKeyed(t, p, "same", key, "work", due)
		}
		time.AfterFunc(time.Second, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := e.broker.EnsureTopics(ctx, nil, 1, "later"); err != nil {
				t.Errorf("creating topic later: %v", err)
			}
		})
		got := waitValues(t, work, len(want), 20*time.Second)
		for _, r := range got {
			if late := r.At.Sub(due); late > 2*time.Second || late < 0 {
				t.Errorf("%s arrived %s after its due time, want within 2s behind records whose target is bad", r.Value, late)
			}
		}
		if ok, body := o.readyz(t); !ok {
			t.Errorf("not ready with a record waiting for its target: %q (bad input is not a forwarder fault)", body)
		}
		dl, ok := dlq.WaitFor(timeout+15*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= 3 })
		if !ok {
			t.Fatalf("%d of 3 bad records dead-lettered: %+v", len(dl), o.Snapshot())
		}
		for _, b := range bad {
			if b.reason == "" {
				continue
			}
			r, found := findValue(dl, b.key)
			if !found {
				t.Errorf("%s (target %q) was not dead-lettered", b.key, b.target)
				continue
			}
			if msg := r.Headers[envelope.Error]; !strings.Contains(msg, b.target) {
				t.Errorf("%s dead-lettered with ladder-error %q, which does not name its target", b.key, msg)
			}
			waited := r.At.Sub(due)
			if b.atOnce && waited > 2*time.Second {
				t.Errorf("%s dead-lettered %s after it was due, want at once", b.key, waited)
			}
			if !b.atOnce && waited < timeout-time.Second {
				t.Errorf("%s dead-lettered %s after it was due, before the %s target timeout", b.key, waited, timeout)
			}
			// The counter moves when the acknowledgement reaches the
			// forwarder, which may be after a consumer sees the dead letter.
			o.waitMetric(t, 10*time.Second, 1, "ladder_dead_lettered_records_total", fmt.Sprintf("reason=%q", b.reason))
		}
		later := e.target(t, eos, "later")
		if recs := waitValues(t, later, 1, 20*time.Second); string(recs[0].Value) != "appears" {
			t.Errorf("later got %q", recs[0].Value)
		}
		if n := failures(t, o, eos); n != 0 {
			t.Errorf("%v failed attempts (aborted transactions) for bad targets, want none: they wait, they do not fail", n)
		}
		waitCommitted(t, e, "delay-1s", 0)
		if eos {
			exactlyOnceValues(t, e, o.stop, work, "work", want)
		}
		t.Logf("bad targets: %d good records on time, 3 dead-lettered, 1 delivered once its topic appeared, in %s", len(want), time.Since(start).Round(time.Millisecond))
	})
}

// TestRestartWhileParkedRepeatsNothing: a graceful stop while a record waits
// for its target forwards nothing twice: the commit stops at the parked
// record and its metadata says the records behind it were forwarded, so the
// next forwarder forwards the parked one (dead-lettered after its timeout)
// and skips the others.
func TestRestartWhileParkedRepeatsNothing(t *testing.T) {
	eachMode(t, func(t *testing.T, eos bool) {
		e := setup(t, 1)
		work := e.target(t, eos, "work")
		dlq := e.target(t, eos, e.ladder.DLQTopic())
		first := e.startObserved(t, eos, func(c *forward.Config) { c.TargetTimeout = time.Hour })
		p := laddertest.Producer(t, e.addr)
		due := time.Now().Add(300 * time.Millisecond)
		sendKeyed(t, p, "same", "missing", "nosuchtopic-y", due)
		want := map[string]bool{}
		for i := range 200 {
			key := fmt.Sprintf("good-%03d", i)
			want[key] = true
			sendKeyed(t, p, "same", key, "work", due)
		}
		waitValues(t, work, len(want), 20*time.Second)
		first.stop()
		second := e.startObserved(t, eos, func(c *forward.Config) { c.TargetTimeout = 2 * time.Second })
		if _, ok := dlq.WaitFor(20*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= 1 }); !ok {
			t.Fatalf("the parked record was not dead-lettered by the next forwarder: %+v", second.Snapshot())
		}
		waitCommitted(t, e, "delay-1s", 0)
		if eos {
			exactlyOnceValues(t, e, second.stop, work, "work", want)
			return
		}
		second.stop()
		counts := map[string]int{}
		for _, r := range work.ReadToEnd(t, e.addr, "work") {
			counts[string(r.Value)]++
		}
		for k := range want {
			if counts[k] != 1 {
				t.Errorf("%s delivered %d times across the restart, want once", k, counts[k])
			}
		}
	})
}

// TestForbiddenTargetIsDeadLettered: a target this forwarder may not
// describe (the broker answers TOPIC_AUTHORIZATION_FAILED for it) parks its
// record, which is dead-lettered with reason not_authorized after
// LADDER_TARGET_TIMEOUT, while the records behind it flow.
func TestForbiddenTargetIsDeadLettered(t *testing.T) {
	eachMode(t, func(t *testing.T, eos bool) {
		e := setup(t, 1)
		work := e.target(t, eos, "work")
		dlq := e.target(t, eos, e.ladder.DLQTopic())
		c := e.broker.Fake(t, "answers metadata requests through kfake's ControlKey (on Apache Kafka: TestClusterSecured's ACLs)")
		c.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			mr := req.(*kmsg.MetadataRequest)
			if len(mr.Topics) != 1 || mr.Topics[0].Topic == nil || *mr.Topics[0].Topic != "locked" {
				return nil, nil, false
			}
			resp := mr.ResponseKind().(*kmsg.MetadataResponse)
			rt := kmsg.NewMetadataResponseTopic()
			name := "locked"
			rt.Topic, rt.ErrorCode = &name, kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, rt)
			return resp, nil, true
		})
		o := e.startObserved(t, eos, func(c *forward.Config) { c.TargetTimeout = 2 * time.Second })
		p := laddertest.Producer(t, e.addr)
		due := time.Now().Add(300 * time.Millisecond)
		sendKeyed(t, p, "same", "forbidden", "locked", due)
		want := map[string]bool{}
		for i := range 20 {
			key := fmt.Sprintf("good-%02d", i)
			want[key] = true
			sendKeyed(t, p, "same", key, "work", due)
		}
		waitValues(t, work, len(want), 20*time.Second)
		dl, ok := dlq.WaitFor(20*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= 1 })
		if !ok {
			t.Fatalf("the record for a forbidden target was not dead-lettered: %+v", o.Snapshot())
		}
		if msg := dl[0].Headers[envelope.Error]; !strings.Contains(msg, "locked") || !strings.Contains(msg, "refuses") {
			t.Errorf("ladder-error %q", msg)
		}
		o.waitMetric(t, 10*time.Second, 1, "ladder_dead_lettered_records_total", `reason="not_authorized"`)
		if eos {
			exactlyOnceValues(t, e, o.stop, work, "work", want)
		}
	})
}

// sendKeyed writes one record with key key and value value to the only
// partition of delay-1s, for target, due at due.
func sendKeyed(t *testing.T, p sarama.SyncProducer, key, value, target string, due time.Time) {
	t.Helper()
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "delay-1s", Key: sarama.StringEncoder(key), Value: sarama.StringEncoder(value),
		Headers: []sarama.RecordHeader{header(envelope.Target, target), header(envelope.Due, strconv.FormatInt(due.UnixMilli(), 10))}}); err != nil {
		t.Fatalf("producing %s: %v", value, err)
	}
}

// waitValues waits until c has read n distinct values and returns one record of each.
func waitValues(t *testing.T, c *laddertest.Collector, n int, timeout time.Duration) []laddertest.Received {
	t.Helper()
	recs, ok := c.WaitFor(timeout, func(rs []laddertest.Received) bool { return len(distinctValues(rs)) >= n })
	if !ok {
		t.Fatalf("read %d distinct values in %s, want %d", len(distinctValues(recs)), timeout, n)
	}
	var out []laddertest.Received
	for _, r := range distinctValues(recs) {
		out = append(out, r)
	}
	return out
}

func distinctValues(recs []laddertest.Received) map[string]laddertest.Received {
	out := map[string]laddertest.Received{}
	for _, r := range recs {
		if _, ok := out[string(r.Value)]; !ok {
			out[string(r.Value)] = r
		}
	}
	return out
}

func findValue(recs []laddertest.Received, v string) (laddertest.Received, bool) {
	for _, r := range recs {
		if string(r.Value) == v {
			return r, true
		}
	}
	return laddertest.Received{}, false
}

// exactlyOnceValues is exactlyOnce for records told apart by value.
func exactlyOnceValues(t *testing.T, e *env, stop func(), c *laddertest.Collector, topic string, want map[string]bool) {
	t.Helper()
	stop()
	counts := map[string]int{}
	for _, r := range c.ReadToEnd(t, e.addr, topic) {
		counts[string(r.Value)]++
	}
	for v := range want {
		if counts[v] != 1 {
			t.Errorf("read_committed saw %s %d times, want once", v, counts[v])
		}
	}
}

// waitCommitted waits until the forwarders' group has committed tier
// partition topic/partition to its end offset.
func waitCommitted(t *testing.T, e *env, topic string, partition int32) {
	t.Helper()
	sc := laddertestConfig()
	client, err := sarama.NewClient([]string{e.addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	var committed, end int64
	laddertest.Eventually(t, 20*time.Second, func() bool {
		end, err = client.GetOffset(topic, partition, sarama.OffsetNewest)
		if err != nil {
			return false
		}
		resp, err := admin.ListConsumerGroupOffsets("ladder-test", map[string][]int32{topic: {partition}})
		if err != nil {
			return false
		}
		if b := resp.GetBlock(topic, partition); b != nil {
			committed = b.Offset
		}
		return committed >= end
	}, "%s/%d committed at %d, end %d: the commit did not move past the bad records", topic, partition, committed, end)
}
