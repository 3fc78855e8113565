package forward_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/laddertest"
)

func header(k, v string) sarama.RecordHeader {
	return sarama.RecordHeader{Key: []byte(k), Value: []byte(v)}
}

// TestMalformedRecordsAreDeadLettered writes malformed records into one tier
// partition ahead of a good one: each lands on the dead-letter topic with a
// reason and its original headers, and the good record behind them still
// arrives on time.
func TestMalformedRecordsAreDeadLettered(t *testing.T) {
	e := setup(t, 1)
	e.startForwarder(t)
	p := laddertest.Producer(t, e.addr)
	due := time.Now().Add(1500 * time.Millisecond)
	dueMs := strconv.FormatInt(due.UnixMilli(), 10)
	bad := []struct {
		key     string
		headers []sarama.RecordHeader
		reason  string
	}{
		{"no-target", []sarama.RecordHeader{header("trace", "1"), header(envelope.Due, dueMs)}, "ladder-target: header is missing"},
		{"bad-due", []sarama.RecordHeader{header(envelope.Target, "work"), header(envelope.Due, "tomorrow")}, "ladder-due: \"tomorrow\""},
		{"seconds-due", []sarama.RecordHeader{header(envelope.Target, "work"), header(envelope.Due, strconv.FormatInt(due.Unix(), 10))}, "not seconds"},
		{"bad-target", []sarama.RecordHeader{header(envelope.Target, "no spaces allowed"), header(envelope.Due, dueMs)}, "ladder-target: topic name"},
		{"loop-target", []sarama.RecordHeader{header(envelope.Target, "delay-5s"), header(envelope.Due, dueMs)}, "would loop"},
		{"hop-loop", []sarama.RecordHeader{header(envelope.Target, "work"), header(envelope.Hops, "100000000")}, "routing loop"},
		{"year-3000", []sarama.RecordHeader{header(envelope.Target, "work"), header(envelope.Due, "32503680000000")}, "3000-01-01T00:00:00Z"},
		{"negative-due", []sarama.RecordHeader{header(envelope.Target, "work"), header(envelope.Due, "-5")}, "not a non-negative decimal"},
		{"empty-target", []sarama.RecordHeader{header(envelope.Target, ""), header(envelope.Due, dueMs)}, "ladder-target: is empty"},
	}
	for _, b := range bad {
		send(t, p, "delay-1s", b.key, b.headers)
	}
	send(t, p, "delay-1s", "good", []sarama.RecordHeader{header(envelope.Target, "work"), header(envelope.Due, dueMs), header("trace", "g")})

	dl, ok := e.dlq.WaitFor(20*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= len(bad) })
	if !ok {
		t.Fatalf("%d of %d malformed records dead-lettered", len(dl), len(bad))
	}
	for i, b := range bad {
		r := dl[i]
		if string(r.Key) != b.key {
			t.Errorf("dead letter %d is %q, want %q (order kept)", i, r.Key, b.key)
			continue
		}
		if !strings.Contains(r.Headers[envelope.Error], b.reason) {
			t.Errorf("%s: ladder-error %q, want it to contain %q", b.key, r.Headers[envelope.Error], b.reason)
		}
		if b.key == "year-3000" {
			// The due time and the limit in human terms, not a saturated
			// time.Duration ("2562047h47m16.854775807s").
			for _, part := range []string{"years ahead", "maximum delay of 365d"} {
				if !strings.Contains(r.Headers[envelope.Error], part) {
					t.Errorf("%s: ladder-error %q, want it to say %q", b.key, r.Headers[envelope.Error], part)
				}
			}
			if strings.Contains(r.Headers[envelope.Error], "2562047h") {
				t.Errorf("%s: ladder-error %q shows a saturated duration", b.key, r.Headers[envelope.Error])
			}
		}
		for _, h := range b.headers {
			if r.Headers[string(h.Key)] != string(h.Value) {
				t.Errorf("%s: header %s = %q on the dead-letter topic, want the original %q", b.key, h.Key, r.Headers[string(h.Key)], h.Value)
			}
		}
	}
	good := e.work.WaitDistinct(t, 1, 10*time.Second)[0]
	if string(good.Key) != "good" || good.At.Before(due.Truncate(time.Millisecond)) || good.Headers["trace"] != "g" {
		t.Errorf("good record: key %q at %s (due %s), headers %v", good.Key, good.At, due, good.Headers)
	}
}

// TestNullKeyAndValuePassThrough: a record with a null key and a null value
// comes out with both still null, and an empty value stays empty.
func TestNullKeyAndValuePassThrough(t *testing.T) {
	e := setup(t, 1)
	e.startForwarder(t)
	p := laddertest.Producer(t, e.addr)
	dueMs := strconv.FormatInt(time.Now().Add(500*time.Millisecond).UnixMilli(), 10)
	for _, v := range []sarama.Encoder{nil, sarama.ByteEncoder{}} {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "delay-1s", Value: v,
			Headers: []sarama.RecordHeader{header(envelope.Target, "work"), header(envelope.Due, dueMs)}}); err != nil {
			t.Fatal(err)
		}
	}
	recs, ok := e.work.WaitFor(10*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= 2 })
	if !ok {
		t.Fatalf("%d of 2 records arrived", len(recs))
	}
	for _, r := range recs {
		if r.Key != nil {
			t.Errorf("key %q, want null", r.Key)
		}
	}
	nulls := 0
	for _, r := range recs {
		if r.Value == nil {
			nulls++
		}
	}
	if nulls != 1 {
		t.Errorf("%d null values among %d records, want exactly 1 (the other one empty)", nulls, len(recs))
	}
}

func send(t *testing.T, p sarama.SyncProducer, topic, key string, headers []sarama.RecordHeader) {
	t.Helper()
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key),
		Value: sarama.StringEncoder("v-" + key), Headers: headers}); err != nil {
		t.Fatalf("producing %s: %v", key, err)
	}
}

// TestFutureTimestampIsClamped: a record whose timestamp is an hour ahead
// (a producer with a skewed clock) does not hold its partition for an hour:
// it counts as entering the tier when the forwarder first sees it.
func TestFutureTimestampIsClamped(t *testing.T) {
	e := setup(t, 1)
	e.startForwarder(t)
	p := laddertest.Producer(t, e.addr)
	due := time.Now().Add(1500 * time.Millisecond)
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "delay-1s", Key: sarama.StringEncoder("skewed"),
		Timestamp: time.Now().Add(time.Hour), Headers: []sarama.RecordHeader{header(envelope.Target, "work"),
			header(envelope.Due, strconv.FormatInt(due.UnixMilli(), 10))}}); err != nil {
		t.Fatal(err)
	}
	r := e.work.WaitDistinct(t, 1, 15*time.Second)[0]
	if r.At.Before(due.Truncate(time.Millisecond)) || r.At.Sub(due) > 2*time.Second {
		t.Errorf("skewed record arrived %s after its due time", r.At.Sub(due))
	}
}

// TestOversizeRecordIsDeadLettered: a target whose max.message.bytes is
// smaller than the record refuses it for good; after a few attempts it goes
// to the dead-letter topic with the reason, and the partition moves on.
func TestOversizeRecordIsDeadLettered(t *testing.T) {
	for _, eos := range []bool{false, true} {
		t.Run(map[bool]string{false: "at-least-once", true: "exactly-once"}[eos], func(t *testing.T) {
			e := setup(t, 1)
			admin, err := sarama.NewClusterAdmin([]string{e.addr}, laddertestConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			limit := "2000"
			if err := admin.CreateTopic("small", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
				ConfigEntries: map[string]*string{"max.message.bytes": &limit}}, false); err != nil {
				t.Fatal(err)
			}
			small := laddertest.CollectCommitted(t, e.addr, "small")
			e.startForwarder(t, func(c *forward.Config) { c.ExactlyOnce = eos })
			p := laddertest.Producer(t, e.addr)
			due := strconv.FormatInt(time.Now().Add(300*time.Millisecond).UnixMilli(), 10)
			big := make([]byte, 8000)
			for _, m := range []*sarama.ProducerMessage{
				{Topic: "delay-1s", Key: sarama.StringEncoder("big"), Value: sarama.ByteEncoder(big)},
				{Topic: "delay-1s", Key: sarama.StringEncoder("fits"), Value: sarama.StringEncoder("small")},
			} {
				m.Headers = []sarama.RecordHeader{header(envelope.Target, "small"), header(envelope.Due, due)}
				if _, _, err := p.SendMessage(m); err != nil {
					t.Fatal(err)
				}
			}
			dl, ok := e.dlq.WaitFor(60*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= 1 })
			if !ok {
				t.Fatal("the oversize record was not dead-lettered")
			}
			if string(dl[0].Key) != "big" || !strings.Contains(dl[0].Headers[envelope.Error], "refused the record") || len(dl[0].Value) != len(big) {
				t.Errorf("dead letter %q with ladder-error %q (%d bytes)", dl[0].Key, dl[0].Headers[envelope.Error], len(dl[0].Value))
			}
			got := small.WaitDistinct(t, 1, 30*time.Second)
			if string(got[0].Key) != "fits" || len(got) != 1 {
				t.Errorf("target got %d records, first %q", len(got), got[0].Key)
			}
		})
	}
}

func laddertestConfig() *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	return sc
}

// TestRecordOverProducerLimitIsDeadLettered: a tier topic may allow larger
// records than the forwarder's producer sends (Producer.MaxMessageBytes,
// 1 MiB), and sarama refuses such a record on every attempt without asking
// the broker. It is dead-lettered at once with reason too_large, its value
// dropped because even the dead letter would not fit, and the record behind
// it is forwarded.
func TestRecordOverProducerLimitIsDeadLettered(t *testing.T) {
	eachMode(t, func(t *testing.T, eos bool) {
		e := setup(t, 1)
		admin, err := sarama.NewClusterAdmin([]string{e.addr}, laddertestConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		limit := strconv.Itoa(4 << 20)
		if err := admin.AlterConfig(sarama.TopicResource, "delay-1s", map[string]*string{"max.message.bytes": &limit}, false); err != nil {
			t.Fatal(err)
		}
		work := e.target(t, eos, "work")
		dlq := e.target(t, eos, e.ladder.DLQTopic())
		o := e.startObserved(t, eos)
		sc := laddertestConfig()
		sc.Producer.Return.Successes = true
		sc.Producer.MaxMessageBytes = 4 << 20
		p, err := sarama.NewSyncProducer([]string{e.addr}, sc)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		due := strconv.FormatInt(time.Now().Add(300*time.Millisecond).UnixMilli(), 10)
		huge := make([]byte, 1536<<10)
		for _, m := range []*sarama.ProducerMessage{
			{Topic: "delay-1s", Key: sarama.StringEncoder("huge"), Value: sarama.ByteEncoder(huge)},
			{Topic: "delay-1s", Key: sarama.StringEncoder("fits"), Value: sarama.StringEncoder("small")},
		} {
			m.Headers = []sarama.RecordHeader{header(envelope.Target, "work"), header(envelope.Due, due), header("trace", "t")}
			if _, _, err := p.SendMessage(m); err != nil {
				t.Fatal(err)
			}
		}
		dl, ok := dlq.WaitFor(30*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= 1 })
		if !ok {
			t.Fatalf("the record over the producer's limit was not dead-lettered: %+v", o.Snapshot())
		}
		msg := dl[0].Headers[envelope.Error]
		if string(dl[0].Key) != "huge" || len(dl[0].Value) != 0 || dl[0].Headers["trace"] != "t" ||
			!strings.Contains(msg, "1 MiB") || !strings.Contains(msg, "value of 1572864 bytes dropped") {
			t.Errorf("dead letter %q (%d bytes of value, headers %v) with ladder-error %q", dl[0].Key, len(dl[0].Value), dl[0].Headers, msg)
		}
		got := work.WaitDistinct(t, 1, 30*time.Second)
		if string(got[0].Key) != "fits" {
			t.Errorf("target got %q", got[0].Key)
		}
		if n := o.metric(t, "ladder_dead_lettered_records_total", `reason="too_large"`); n != 1 {
			t.Errorf("ladder_dead_lettered_records_total{reason=too_large} = %v, want 1", n)
		}
		if n := failures(t, o, eos); n != 0 {
			t.Errorf("%v failed attempts counted: the record must be dead-lettered before any attempt", n)
		}
		if eos {
			exactlyOnce(t, e, o.stop, work, "work", map[string]bool{"fits": true})
			exactlyOnce(t, e, o.stop, dlq, e.ladder.DLQTopic(), map[string]bool{"huge": true})
		}
	})
}

// TestRefusedRecordsAmongMany: 600 records for a target whose
// max.message.bytes (2000) refuses 6 of them, spread over 3 partitions and
// due at once, so refused and accepted records travel in the same produce
// requests (and transactions). Each refused record is dead-lettered with
// reason rejected_by_target, every other one is delivered (exactly once in
// exactly-once mode), and none is dead-lettered for sharing a batch with a
// refused one.
func TestRefusedRecordsAmongMany(t *testing.T) {
	eachMode(t, func(t *testing.T, eos bool) {
		if eos {
			skipSaramaTxnRace(t)
		}
		e := setup(t, 3)
		admin, err := sarama.NewClusterAdmin([]string{e.addr}, laddertestConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		limit := "2000"
		if err := admin.CreateTopic("small", &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1,
			ConfigEntries: map[string]*string{"max.message.bytes": &limit}}, false); err != nil {
			t.Fatal(err)
		}
		small := e.target(t, eos, "small")
		dlq := e.target(t, eos, e.ladder.DLQTopic())
		p := laddertest.Producer(t, e.addr)
		due := strconv.FormatInt(time.Now().Add(2*time.Second).UnixMilli(), 10)
		big := make([]byte, 8000)
		want, refused := map[string]bool{}, map[string]bool{}
		var batch []*sarama.ProducerMessage
		for i := range 600 {
			key := fmt.Sprintf("k%03d", i)
			m := &sarama.ProducerMessage{Topic: "delay-1s", Key: sarama.StringEncoder(key), Value: sarama.StringEncoder("small"),
				Headers: []sarama.RecordHeader{header(envelope.Target, "small"), header(envelope.Due, due)}}
			if i%100 == 7 {
				m.Value = sarama.ByteEncoder(big)
				refused[key] = true
			} else {
				want[key] = true
			}
			batch = append(batch, m)
		}
		if err := p.SendMessages(batch); err != nil {
			t.Fatal(err)
		}
		o := e.startObserved(t, eos)
		small.WaitDistinct(t, len(want), 90*time.Second)
		dl, ok := dlq.WaitFor(30*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= len(refused) })
		if !ok {
			t.Fatalf("%d of %d refused records dead-lettered", len(dl), len(refused))
		}
		for _, r := range dl {
			if !refused[string(r.Key)] || !strings.Contains(r.Headers[envelope.Error], "refused the record") {
				t.Errorf("dead letter %q with ladder-error %q", r.Key, r.Headers[envelope.Error])
			}
		}
		// The counter moves when the acknowledgement reaches the partition,
		// which may be after a consumer sees the dead letter.
		laddertest.Eventually(t, 10*time.Second, func() bool {
			return o.metric(t, "ladder_dead_lettered_records_total", `reason="rejected_by_target"`) == float64(len(refused))
		}, "ladder_dead_lettered_records_total{reason=rejected_by_target} = %v, want %d",
			o.metric(t, "ladder_dead_lettered_records_total", `reason="rejected_by_target"`), len(refused))
		if eos {
			exactlyOnce(t, e, o.stop, small, "small", want)
			exactlyOnce(t, e, o.stop, dlq, e.ladder.DLQTopic(), refused)
		} else if keys := laddertest.Distinct(dlq.Records()); len(keys) != len(refused) {
			t.Errorf("%d distinct keys dead-lettered, want the %d refused", len(keys), len(refused))
		}
		t.Logf("%d delivered, %d dead-lettered; %v failed attempts", len(want), len(dl), o.metric(t, "ladder_produce_errors_total"))
	})
}
