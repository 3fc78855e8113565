package forward_test

import (
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
		{"hop-loop", []sarama.RecordHeader{header(envelope.Target, "work"), header(envelope.Hops, "10000")}, "routing loop"},
		{"year-3000", []sarama.RecordHeader{header(envelope.Target, "work"), header(envelope.Due, "32503680000000")}, "beyond the maximum delay"},
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
