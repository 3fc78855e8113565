package workahead

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/offsets"
)

// State is what work-ahead does for a lane now. Only StateIdle releases
// heads early.
type State int

const (
	// StateUnknown: the lane's members or lag could not be read (or not
	// yet): nothing leaves early.
	StateUnknown State = iota
	// StateUnattended: the lane's worker group has no active member: nobody
	// consumes the lane, so nothing leaves early.
	StateUnattended
	// StateBusy: the lane's lag is at or above the threshold.
	StateBusy
	// StateIdle: the worker group has members and its lag is under the
	// threshold: the earliest heads bound for the lane leave early.
	StateIdle
)

// States lists every State, for metrics and tests.
var States = []State{StateUnknown, StateUnattended, StateBusy, StateIdle}

// String is the state's name, as in the metric label and in status output.
func (s State) String() string {
	switch s {
	case StateUnattended:
		return "unattended"
	case StateBusy:
		return "busy"
	case StateIdle:
		return "idle"
	}
	return "unknown"
}

// Observation is one read of a lane: its worker group's active members and
// its lag.
type Observation struct {
	Members int
	Lag     int64
	// Rebalancing: the group is rebalancing, and Kafka describes its members
	// without their subscriptions until it is stable: Members is not known
	// (0), Lag is.
	Rebalancing bool
	Err         error // the read failed: Members and Lag are not known
}

// Observe reads the active members of group that subscribe to topic
// (DescribeConsumerGroups) and the lag of group on topic (end offsets minus
// committed offsets). A group that does not exist, or exists without
// members (state Empty or Dead), has none; a member reading other topics
// only does not count.
func Observe(client sarama.Client, admin sarama.ClusterAdmin, topic, group string) Observation {
	members, err := groupMembers(admin, group, topic)
	o := Observation{Members: members, Rebalancing: errors.Is(err, errRebalancing)}
	if err != nil && !o.Rebalancing {
		return Observation{Err: err}
	}
	parts, err := offsets.Partitions(client, topic)
	if err == nil {
		o.Lag, err = offsets.Lag(client, admin, group, parts)
	}
	o.Err = err
	return o
}

// errRebalancing: the group's members are known, their subscriptions not.
var errRebalancing = errors.New("the worker group is rebalancing")

// groupMembers counts the members of group subscribed to topic: their
// subscriptions, not their assignments, for a member beyond the partition
// count consumes the topic as soon as another leaves. Kafka describes the
// subscriptions of a stable group only (errRebalancing otherwise). A
// member whose subscription is not a consumer's does not count.
func groupMembers(admin sarama.ClusterAdmin, group, topic string) (int, error) {
	g, err := offsets.DescribeGroup(admin, group)
	if err != nil {
		return 0, fmt.Errorf("reading the members of the worker group: %w", err)
	}
	// Kafka answers an unknown group with state Dead (GROUP_ID_NOT_FOUND
	// from DescribeGroups v6 on): no members either way.
	if g == nil || errors.Is(g.Err, sarama.ErrGroupIDNotFound) || g.State == "Dead" || g.ProtocolType != "consumer" || len(g.Members) == 0 {
		return 0, nil
	}
	if g.State != "Stable" {
		return 0, errRebalancing
	}
	n := 0
	for _, m := range g.Members {
		if topics, err := subscribedTopics(m.MemberMetadata); err == nil && slices.Contains(topics, topic) {
			n++
		}
	}
	return n, nil
}

// subscribedTopics reads the topics of a consumer protocol subscription:
// its version (int16), then its topics (an int32 count of int16-length
// strings), the start of every version. What follows (user data, owned
// partitions, rack, and what later versions add) is left unread, as Kafka's
// protocol asks of readers, so a newer client still counts.
func subscribedTopics(b []byte) ([]string, error) {
	if len(b) < 6 {
		return nil, fmt.Errorf("a subscription of %d bytes", len(b))
	}
	n := int32(binary.BigEndian.Uint32(b[2:6]))
	b = b[6:]
	if n < 0 || int(n) > len(b)/2 {
		return nil, fmt.Errorf("a subscription of %d topics in %d bytes", n, len(b))
	}
	topics := make([]string, 0, n)
	for range n {
		if len(b) < 2 {
			return nil, errors.New("a subscription cut short")
		}
		l := int(int16(binary.BigEndian.Uint16(b)))
		if l < 0 || len(b) < 2+l {
			return nil, errors.New("a subscription cut short")
		}
		topics = append(topics, string(b[2:2+l]))
		b = b[2+l:]
	}
	return topics, nil
}

// Classify says what work-ahead does for a lane of topic, consumed by group,
// after observation o, with a lag threshold: the state and why, in words.
func Classify(o Observation, topic, group string, threshold int64) (State, string) {
	switch {
	case o.Err != nil:
		return StateUnknown, fmt.Sprintf("cannot read the lane: %v; nothing leaves early", o.Err)
	case o.Rebalancing:
		return StateUnknown, fmt.Sprintf("worker group %s is rebalancing: its members' topics are read once it is stable; nothing leaves early", group)
	case o.Members == 0:
		return StateUnattended, fmt.Sprintf("worker group %s has no member reading %s: nobody consumes it, so nothing leaves early", group, topic)
	case o.Lag >= threshold:
		return StateBusy, fmt.Sprintf("%s, lag %d ≥ threshold %d: nothing leaves early", members(o.Members), o.Lag, threshold)
	}
	return StateIdle, fmt.Sprintf("%s, lag %d < threshold %d: its earliest heads leave early, marked ladder-early",
		members(o.Members), o.Lag, threshold)
}

func members(n int) string {
	if n == 1 {
		return "1 member"
	}
	return fmt.Sprintf("%d members", n)
}

// Reader reads the members and lag of a set of lanes over its own
// connection, for status output (`ladder dev`'s banner and demo).
type Reader struct {
	client sarama.Client
	admin  sarama.ClusterAdmin
	lanes  map[string]string
}

// NewReader connects to brokers; lanes maps each lane (topic) to its worker group.
func NewReader(brokers []string, sc *sarama.Config, lanes map[string]string) (*Reader, error) {
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("connecting to read the lanes: %w", err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("admin client to read the lanes: %w", err)
	}
	return &Reader{client: client, admin: admin, lanes: lanes}, nil
}

// Observe reads every lane once.
func (r *Reader) Observe() map[string]Observation {
	out := make(map[string]Observation, len(r.lanes))
	for topic, group := range r.lanes {
		out[topic] = Observe(r.client, r.admin, topic, group)
	}
	return out
}

// Close disconnects.
func (r *Reader) Close() error { return r.admin.Close() } // closes the client too
