package workahead

import (
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
	Err     error // the read failed: Members and Lag are not known
}

// Observe reads the active members of group that subscribe to topic
// (DescribeConsumerGroups) and the lag of group on topic (end offsets minus
// committed offsets). A group that does not exist, or exists without
// members (state Empty or Dead), has none; a member reading other topics
// only does not count.
func Observe(client sarama.Client, admin sarama.ClusterAdmin, topic, group string) Observation {
	members, err := groupMembers(admin, group, topic)
	if err != nil {
		return Observation{Err: err}
	}
	parts, err := offsets.Partitions(client, topic)
	if err != nil {
		return Observation{Members: members, Err: err}
	}
	lag, err := offsets.Lag(client, admin, group, parts)
	if err != nil {
		return Observation{Members: members, Err: err}
	}
	return Observation{Members: members, Lag: lag}
}

// groupMembers counts the members of group subscribed to topic. The
// subscription, not the assignment: a member keeps it through a rebalance,
// and a member beyond the partition count still consumes the topic as soon
// as another leaves. A member whose subscription is not a consumer's
// (another protocol type) does not count.
func groupMembers(admin sarama.ClusterAdmin, group, topic string) (int, error) {
	g, err := offsets.DescribeGroup(admin, group)
	if err != nil {
		return 0, fmt.Errorf("reading the members of the worker group: %w", err)
	}
	// Kafka answers an unknown group with state Dead (GROUP_ID_NOT_FOUND
	// from DescribeGroups v6 on): no members either way.
	if g == nil || errors.Is(g.Err, sarama.ErrGroupIDNotFound) || g.State == "Dead" || g.ProtocolType != "consumer" {
		return 0, nil
	}
	n := 0
	for _, m := range g.Members {
		if md, err := m.GetMemberMetadata(); err == nil && md != nil && slices.Contains(md.Topics, topic) {
			n++
		}
	}
	return n, nil
}

// Classify says what work-ahead does for a lane of topic, consumed by group,
// after observation o, with a lag threshold: the state and why, in words.
func Classify(o Observation, topic, group string, threshold int64) (State, string) {
	switch {
	case o.Err != nil:
		return StateUnknown, fmt.Sprintf("cannot read the lane: %v; nothing leaves early", o.Err)
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
