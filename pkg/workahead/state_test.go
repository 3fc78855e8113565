package workahead

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

// subscription encodes a consumer protocol subscription of version v with
// topics, followed by tail (user data, owned partitions, rack, or what a
// later version adds).
func subscription(v int16, topics []string, tail ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(v))
	b = binary.BigEndian.AppendUint32(b, uint32(len(topics)))
	for _, t := range topics {
		b = binary.BigEndian.AppendUint16(b, uint16(len(t)))
		b = append(b, t...)
	}
	return append(b, tail...)
}

// TestSubscribedTopics: the topics of every subscription version are read,
// whatever follows them: a later version's fields do not hide a worker
// (sarama's decoder refuses trailing bytes).
func TestSubscribedTopics(t *testing.T) {
	topics := []string{"work", "work-slow"}
	noUserData := []byte{0xff, 0xff, 0xff, 0xff}
	v3 := append(append([]byte{}, noUserData...), 0, 0, 0, 1, 0, 4, 'w', 'o', 'r', 'k', 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 'r', '1')
	for name, b := range map[string][]byte{
		"v0 without user data (aiokafka)":          subscription(0, topics, noUserData...),
		"v0 with user data":                        subscription(0, topics, 0, 0, 0, 2, 'h', 'i'),
		"v0 cut after the topics (some clients)":   subscription(0, topics),
		"v3 with owned partitions and rack (Java)": subscription(3, topics, v3...),
		"v9, with fields not yet defined appended": subscription(9, topics, append(v3, 1, 2, 3)...),
		"v4 number with a v0 layout (Faust's)":     subscription(4, topics, noUserData...),
	} {
		got, err := subscribedTopics(b)
		if err != nil || !slices.Equal(got, topics) {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
	for name, b := range map[string][]byte{
		"empty (a rebalancing group's member)": nil,
		"the version alone":                    {0, 0},
		"more topics than bytes":               {0, 0, 0, 0, 0x03, 0xe8, 0, 1, 'w'},
		"a topic cut short":                    subscription(0, topics)[:12],
		"a negative count":                     {0, 0, 0xff, 0xff, 0xff, 0xff},
	} {
		if got, err := subscribedTopics(b); err == nil {
			t.Errorf("%s: %q, want an error", name, got)
		} else if !strings.Contains(err.Error(), "subscription") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestClassifyRebalancing: while the worker group rebalances, Kafka
// describes its members without their subscriptions; the lane is unknown
// then, said so, not unattended ("no member reading work" would be false).
func TestClassifyRebalancing(t *testing.T) {
	state, reason := Classify(Observation{Rebalancing: true, Lag: 3}, "work", "workers", 100)
	if state != StateUnknown || !strings.Contains(reason, "worker group workers is rebalancing") {
		t.Errorf("rebalancing: %s, %q", state, reason)
	}
	if state, _ := Classify(Observation{Lag: 3}, "work", "workers", 100); state != StateUnattended {
		t.Errorf("stable without members: %s", state)
	}
}
