package schedule

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/tier"
)

func TestRecord(t *testing.T) {
	l, err := tier.Parse(tier.DefaultTiers, tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_767_225_600_000).Add(123 * time.Microsecond)
	for _, tc := range []struct {
		name  string
		m     Message
		topic string
	}{
		{"past", Message{Topic: "work", Delay: -time.Minute}, "work"},
		{"now", Message{Topic: "work"}, "work"},
		{"30s", Message{Topic: "work", Delay: 30 * time.Second}, "delay-1m"},
		{"90m", Message{Topic: "work", Delay: 90 * time.Minute}, "delay-1h"},
		{"at 7h", Message{Topic: "work", At: now.Add(7 * time.Hour)}, "delay-6h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.m.Key, tc.m.Value = []byte("k"), []byte("v")
			tc.m.Headers = []sarama.RecordHeader{{Key: []byte("own"), Value: []byte("1")}, {Key: []byte(envelope.Hops), Value: []byte("99")}}
			pm, err := Record(l, tc.m, now)
			if err != nil {
				t.Fatal(err)
			}
			if pm.Topic != tc.topic || !pm.Timestamp.Equal(now) {
				t.Errorf("topic %s at %s, want %s at %s", pm.Topic, pm.Timestamp, tc.topic, now)
			}
			hs := make([]*sarama.RecordHeader, len(pm.Headers))
			for i := range pm.Headers {
				hs[i] = &pm.Headers[i]
			}
			env, err := envelope.Decode(hs)
			if err != nil {
				t.Fatal(err)
			}
			due := tc.m.At
			if due.IsZero() {
				due = now.Add(tc.m.Delay)
			}
			if env.Target != "work" || env.Hops != 0 || !env.Due.Equal(due.Truncate(time.Millisecond)) || !env.Scheduled.Equal(now.Truncate(time.Millisecond)) {
				t.Errorf("envelope %+v", env)
			}
			if string(pm.Headers[0].Key) != "own" {
				t.Errorf("caller header not kept first: %q", pm.Headers)
			}
		})
	}
	for _, bad := range []string{"", "a b", "delay-1h", "delay-dlq"} {
		if _, err := Record(l, Message{Topic: bad, Delay: time.Minute}, now); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("target %q: err %v, want ErrInvalidMessage", bad, err)
		}
	}
	pm, _ := Record(l, Message{Topic: "work", Delay: time.Minute}, now)
	if pm.Key != nil || pm.Value != nil {
		t.Errorf("nil key and value must stay nil encoders, got %v %v", pm.Key, pm.Value)
	}
}

// TestScheduleReceipt: the receipt names the due time carried in ladder-due,
// the tier picked, and the partition and offset where the broker stored the
// record (read back over TCP from the embedded broker).
func TestScheduleReceipt(t *testing.T) {
	l, err := tier.Parse("1s,5s,15s", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b := laddertest.Ladder(t, l, 2, "work")
	s, err := New(Config{Ladder: l, Kafka: laddertest.Kafka(b.Addr()), Log: laddertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		m     Message
		topic string
	}{
		{Message{Topic: "work", Key: []byte("d"), Delay: 7 * time.Second}, "delay-5s"},
		{Message{Topic: "work", Key: []byte("a"), At: time.UnixMilli(4_102_444_800_123)}, "delay-15s"},
		{Message{Topic: "work", Key: []byte("p"), Delay: -time.Second}, "work"},
	} {
		before := time.Now()
		r, err := s.ScheduleReceipt(context.Background(), tc.m)
		after := time.Now()
		if err != nil {
			t.Fatalf("%s: %v", tc.m.Key, err)
		}
		want := tc.m.At
		if want.IsZero() && (r.Due.Before(before.Add(tc.m.Delay).Truncate(time.Millisecond)) || r.Due.After(after.Add(tc.m.Delay))) {
			t.Errorf("%s: due %s, not %s from the send", tc.m.Key, r.Due, tc.m.Delay)
		}
		if !want.IsZero() && !r.Due.Equal(want) {
			t.Errorf("%s: due %s, want %s", tc.m.Key, r.Due, want)
		}
		if r.Topic != tc.topic {
			t.Errorf("%s: receipt topic %s, want %s", tc.m.Key, r.Topic, tc.topic)
		}
		m := readAt(t, b.Addr(), r)
		if string(m.Key) != string(tc.m.Key) {
			t.Errorf("%s: the receipt points at the record with key %q", tc.m.Key, m.Key)
		}
		hs, err := envelope.Decode(m.Headers)
		if err != nil || !hs.Due.Equal(r.Due) {
			t.Errorf("%s: ladder-due on the wire %v (%v), receipt %s", tc.m.Key, hs.Due, err, r.Due)
		}
	}
}

// readAt reads the one record the receipt points at.
func readAt(t *testing.T, addr string, r Receipt) *sarama.ConsumerMessage {
	t.Helper()
	sc, err := laddertest.Kafka(addr).Base()
	if err != nil {
		t.Fatal(err)
	}
	c, err := sarama.NewConsumer([]string{addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(r.Topic, r.Partition, r.Offset)
	if err != nil {
		t.Fatalf("reading %s/%d at %d: %v", r.Topic, r.Partition, r.Offset, err)
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		return m
	case <-time.After(30 * time.Second):
		t.Fatalf("no record at %s/%d offset %d", r.Topic, r.Partition, r.Offset)
		return nil
	}
}
