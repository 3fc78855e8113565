package forward_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
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
