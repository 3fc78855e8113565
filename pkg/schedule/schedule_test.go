package schedule

import (
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
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
