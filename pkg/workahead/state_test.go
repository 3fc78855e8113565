package workahead

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/IBM/sarama"
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
	// user data, owned partitions (work/0), generation (v2), rack (v3)
	v3 := append(append([]byte{}, noUserData...), 0, 0, 0, 1, 0, 4, 'w', 'o', 'r', 'k', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 2, 'r', '1')
	for name, b := range map[string][]byte{
		"v0 without user data (aiokafka)":          subscription(0, topics, noUserData...),
		"v0 with user data":                        subscription(0, topics, 0, 0, 0, 2, 'h', 'i'),
		"v0 cut after the topics (some clients)":   subscription(0, topics),
		"v3 with owned partitions and rack (Java)": subscription(3, topics, v3...),
		"v9, with fields not yet defined appended": subscription(9, topics, append(v3, 1, 2, 3)...),
		"a v4 number with a v0 layout":             subscription(4, topics, noUserData...),
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

// describeAdmin answers DescribeConsumerGroups with group, as Kafka
// describes it; the rest of the ClusterAdmin is not used.
type describeAdmin struct {
	sarama.ClusterAdmin
	group *sarama.GroupDescription
}

func (a describeAdmin) DescribeConsumerGroups([]string) ([]*sarama.GroupDescription, error) {
	return []*sarama.GroupDescription{a.group}, nil
}

// TestGroupMembers counts the members of a described group that subscribe
// to the lane's topic. A rebalancing group's members come without their
// subscriptions (Kafka and kfake describe them only when stable): the count
// is not known then, rather than 0.
func TestGroupMembers(t *testing.T) {
	member := func(topics ...string) *sarama.GroupMemberDescription {
		if topics == nil {
			return &sarama.GroupMemberDescription{} // as described while rebalancing
		}
		return &sarama.GroupMemberDescription{MemberMetadata: subscription(1, topics, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0)}
	}
	for name, c := range map[string]struct {
		g    *sarama.GroupDescription
		want int
		err  error
	}{
		"stable, one of two reading work": {&sarama.GroupDescription{GroupId: "w", State: "Stable", ProtocolType: "consumer",
			Members: map[string]*sarama.GroupMemberDescription{"a": member("work", "other"), "b": member("other")}}, 1, nil},
		"stable, none reading work": {&sarama.GroupDescription{GroupId: "w", State: "Stable", ProtocolType: "consumer",
			Members: map[string]*sarama.GroupMemberDescription{"a": member("delay-dlq")}}, 0, nil},
		"preparing a rebalance": {&sarama.GroupDescription{GroupId: "w", State: "PreparingRebalance", ProtocolType: "consumer",
			Members: map[string]*sarama.GroupMemberDescription{"a": member(), "b": member()}}, 0, errRebalancing},
		"completing a rebalance": {&sarama.GroupDescription{GroupId: "w", State: "CompletingRebalance", ProtocolType: "consumer",
			Members: map[string]*sarama.GroupMemberDescription{"a": member()}}, 0, errRebalancing},
		"empty":          {&sarama.GroupDescription{GroupId: "w", State: "Empty", ProtocolType: "consumer"}, 0, nil},
		"unknown (Dead)": {&sarama.GroupDescription{GroupId: "w", State: "Dead"}, 0, nil},
		"not a consumer group": {&sarama.GroupDescription{GroupId: "w", State: "Stable", ProtocolType: "connect",
			Members: map[string]*sarama.GroupMemberDescription{"a": member("work")}}, 0, nil},
	} {
		n, err := groupMembers(describeAdmin{group: c.g}, "w", "work")
		if n != c.want || !errors.Is(err, c.err) {
			t.Errorf("%s: %d members, %v; want %d, %v", name, n, err, c.want, c.err)
		}
	}
}

// TestRecordKeepsMembersWhileRebalancing: a read during a rebalance leaves
// the lane's member count of the last stable read, and its state unknown.
func TestRecordKeepsMembersWhileRebalancing(t *testing.T) {
	c, err := New(Config{Lanes: map[string]string{"work": "workers"}, LagThreshold: 100, Rate: 10})
	if err != nil {
		t.Fatal(err)
	}
	l := c.lanes["work"]
	c.record(l, Observation{Members: 2, Lag: 5})
	c.record(l, Observation{Rebalancing: true, Lag: 7})
	if got := c.Lanes()[0]; got.Members != 2 || got.Lag != 7 || got.State != StateUnknown {
		t.Errorf("after a rebalancing read: %d members, lag %d, %s; want 2, 7, unknown", got.Members, got.Lag, got.State)
	}
}
