// Package topics is the declarative topic spec of a ladder (topics/topics.yaml):
// it parses and validates the spec, compares it with a cluster (Plan), brings
// the cluster up to it (Apply) without ever deleting or shrinking anything,
// and reports drift (Plan.Drift).
//
// The retention rule: a record can wait in a tier for up to the tier's delay,
// and longer when the forwarders are down. A tier's retention must therefore
// exceed its delay plus the longest forwarder outage the operator plans for
// (maxOutage), or records could expire before they are forwarded. A spec that
// breaks the rule is refused. When a tier's retention is not given, it is
// derived: (delay + maxOutage) plus Headroom.
package topics

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ladder/ladder/pkg/tier"
)

// Headroom is added to delay + maxOutage when a tier's retention is derived:
// 10% covers the time the forwarders need to drain the backlog an outage left
// and clock skew between producers.
const Headroom = 0.10

// Default retentions of the topics that are not tiers.
const (
	DefaultDeadLetterRetention = 14 * 24 * time.Hour
	DefaultLaneRetention       = 7 * 24 * time.Hour
	// DefaultControlRetention keeps `ladder drain` commands, which expire
	// within hours, for a day.
	DefaultControlRetention = 24 * time.Hour
)

// Roles of the topics of a spec.
const (
	RoleTier       = "tier"
	RoleDeadLetter = "dead-letter"
	RoleLane       = "lane"
	RoleControl    = "control" // one partition: commands to every forwarder (ladder drain)
)

// Spec is the decoded topics file. Every field is documented in
// topics/topics.yaml; Parse validates it and resolves its topics.
type Spec struct {
	Defaults   Defaults            `yaml:"defaults"`
	Ladder     LadderSpec          `yaml:"ladder"`
	DeadLetter DeadLetterSpec      `yaml:"deadLetter"`
	Lanes      LanesSpec           `yaml:"lanes"`
	Overrides  map[string]Override `yaml:"overrides"`

	ladder *tier.Ladder
	topics []Topic
}

// Defaults apply to every topic of the spec.
type Defaults struct {
	Partitions        int32    `yaml:"partitions"`
	ReplicationFactor int16    `yaml:"replicationFactor"`
	MinInsyncReplicas int      `yaml:"minInsyncReplicas"`
	MaxOutage         Duration `yaml:"maxOutage"`
	// Configs are extra Kafka topic configs set on every topic.
	Configs map[string]string `yaml:"configs"`
}

// LadderSpec names the tiers: prefix + delay label ("delay-15m").
type LadderSpec struct {
	TopicPrefix string   `yaml:"topicPrefix"`
	Tiers       []string `yaml:"tiers"`
}

// DeadLetterSpec configures the dead-letter topic (prefix + "dlq").
type DeadLetterSpec struct {
	Retention Duration `yaml:"retention"`
}

// LanesSpec lists the lane (work) topics the forwarders deliver to.
type LanesSpec struct {
	Retention Duration `yaml:"retention"`
	Topics    []string `yaml:"topics"`
}

// Override changes the defaults for one topic, named by its full name.
type Override struct {
	Partitions        *int32            `yaml:"partitions"`
	ReplicationFactor *int16            `yaml:"replicationFactor"`
	MinInsyncReplicas *int              `yaml:"minInsyncReplicas"`
	Retention         *Duration         `yaml:"retention"`
	Configs           map[string]string `yaml:"configs"`
}

// Topic is one topic as the spec wants it.
type Topic struct {
	Name              string
	Role              string        // RoleTier, RoleDeadLetter or RoleLane
	Delay             time.Duration // tiers only
	Partitions        int32
	ReplicationFactor int16
	// Configs is the complete set of topic configs the spec manages for this
	// topic: cleanup.policy, min.insync.replicas, retention.ms and any extra.
	Configs map[string]string
}

// Retention is the topic's retention.ms as a duration (negative: unlimited).
func (t Topic) Retention() time.Duration {
	ms, _ := strconv.ParseInt(t.Configs["retention.ms"], 10, 64)
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// Duration is a YAML duration: Go syntax ("90s", "72h") or whole days ("3d").
type Duration time.Duration

// UnmarshalYAML parses a duration scalar.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 72h or 3d", n.Line)
	}
	v, err := tier.ParseDuration(n.Value)
	if err != nil || v <= 0 {
		return fmt.Errorf("line %d: %q is not a positive duration such as 90s, 72h or 3d", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Load reads and parses the spec file at path.
func Load(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading topic spec: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("topic spec %s: %w", path, err)
	}
	return s, nil
}

// ErrInvalidSpec is returned (wrapped) for a spec that does not decode or
// breaks a rule; the message names every problem found.
var ErrInvalidSpec = errors.New("invalid topic spec")

// Parse decodes a spec strictly (an unknown field is an error, so a typo
// does not pass unnoticed), validates it and resolves its topics.
func Parse(data []byte) (*Spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Spec
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the file is empty", ErrInvalidSpec)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrInvalidSpec)
	}
	if err := s.resolve(); err != nil {
		return nil, err
	}
	return &s, nil
}

// TierLadder is the tier ladder the spec describes.
func (s *Spec) TierLadder() *tier.Ladder { return s.ladder }

// Topics returns every topic of the spec: the tiers (smallest delay first),
// the dead-letter topic, then the lanes in the order given.
func (s *Spec) Topics() []Topic { return s.topics }

// resolve validates the spec and computes its topics. It reports every
// problem, not only the first.
func (s *Spec) resolve() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	d := s.Defaults
	if d.Partitions < 1 {
		bad("defaults.partitions is %d: want 1 or more", d.Partitions)
	}
	if d.ReplicationFactor < 1 {
		bad("defaults.replicationFactor is %d: want 1 or more (3 for production)", d.ReplicationFactor)
	}
	if d.MinInsyncReplicas < 1 {
		bad("defaults.minInsyncReplicas is %d: want 1 or more (2 with replication factor 3)", d.MinInsyncReplicas)
	}
	if d.MaxOutage <= 0 {
		bad("defaults.maxOutage is missing: give the longest forwarder outage to plan for, such as 3d")
	}
	if s.Ladder.TopicPrefix == "" {
		s.Ladder.TopicPrefix = tier.DefaultPrefix
	}
	if len(s.Ladder.Tiers) == 0 {
		bad("ladder.tiers is empty: list the tier delays, such as [1m, 15m, 1h, 6h]")
	} else {
		l, err := tier.Parse(strings.Join(s.Ladder.Tiers, ","), s.Ladder.TopicPrefix)
		if err != nil {
			bad("ladder: %w", err)
		}
		s.ladder = l
	}
	if s.DeadLetter.Retention == 0 {
		s.DeadLetter.Retention = Duration(DefaultDeadLetterRetention)
	}
	if s.Lanes.Retention == 0 {
		s.Lanes.Retention = Duration(DefaultLaneRetention)
	}
	errs = append(errs, checkConfigs("defaults.configs", d.Configs, "")...)
	if s.ladder == nil {
		return joinErrs(errs)
	}

	// The topics, before overrides.
	var topics []Topic
	for _, t := range s.ladder.Tiers() {
		topics = append(topics, Topic{Name: t.Topic, Role: RoleTier, Delay: t.Delay})
	}
	topics = append(topics, Topic{Name: s.ladder.DLQTopic(), Role: RoleDeadLetter},
		Topic{Name: s.ladder.ControlTopic(), Role: RoleControl})
	seen := map[string]bool{}
	for _, t := range topics {
		seen[t.Name] = true
	}
	for _, name := range s.Lanes.Topics {
		switch err := tier.ValidateTopic(name); {
		case err != nil:
			bad("lanes.topics: %w", err)
		case seen[name]:
			bad("lanes.topics: %s is listed twice or is a topic of the ladder itself", name)
		default:
			seen[name] = true
			topics = append(topics, Topic{Name: name, Role: RoleLane})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Overrides)) {
		if !seen[name] {
			bad("overrides.%s: not a topic of this spec (tiers %s, dead-letter %s, lanes %v)",
				name, strings.Join(s.ladder.Topics(), ", "), s.ladder.DLQTopic(), s.Lanes.Topics)
		}
	}

	for i := range topics {
		errs = append(errs, s.resolveTopic(&topics[i])...)
	}
	s.topics = topics
	return joinErrs(errs)
}

// resolveTopic applies defaults and the topic's override, derives its
// retention and checks the rules. It returns the problems found.
func (s *Spec) resolveTopic(t *Topic) []error {
	d, o := s.Defaults, s.Overrides[t.Name]
	t.Partitions, t.ReplicationFactor = d.Partitions, d.ReplicationFactor
	if t.Role == RoleControl {
		t.Partitions = 1 // every forwarder reads it whole, in order
	}
	minISR := d.MinInsyncReplicas
	if o.Partitions != nil {
		t.Partitions = *o.Partitions
	}
	if o.ReplicationFactor != nil {
		t.ReplicationFactor = *o.ReplicationFactor
	}
	if o.MinInsyncReplicas != nil {
		minISR = *o.MinInsyncReplicas
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("topic %s: "+format, append([]any{t.Name}, args...)...))
	}
	if o.Partitions != nil && t.Partitions < 1 {
		bad("partitions is %d: want 1 or more", t.Partitions)
	}
	if o.ReplicationFactor != nil && t.ReplicationFactor < 1 {
		bad("replicationFactor is %d: want 1 or more", t.ReplicationFactor)
	}
	if minISR < 1 && o.MinInsyncReplicas != nil {
		bad("minInsyncReplicas is %d: want 1 or more", minISR)
	}
	if minISR > int(t.ReplicationFactor) && t.ReplicationFactor >= 1 {
		bad("minInsyncReplicas %d exceeds replicationFactor %d: every acks=all write would fail", minISR, t.ReplicationFactor)
	}
	errs = append(errs, checkConfigs("overrides."+t.Name+".configs", o.Configs, t.Role)...)

	t.Configs = map[string]string{}
	maps.Copy(t.Configs, d.Configs)
	maps.Copy(t.Configs, o.Configs)
	t.Configs["cleanup.policy"] = "delete"
	t.Configs["min.insync.replicas"] = strconv.Itoa(minISR)

	var retention time.Duration
	switch {
	case o.Retention != nil:
		retention = time.Duration(*o.Retention)
	case t.Role == RoleTier:
		required := t.Delay + time.Duration(d.MaxOutage)
		retention = ceilSecond(required + time.Duration(float64(required)*Headroom))
	case t.Role == RoleDeadLetter:
		retention = time.Duration(s.DeadLetter.Retention)
	case t.Role == RoleControl:
		retention = DefaultControlRetention
	default:
		retention = time.Duration(s.Lanes.Retention)
	}
	if retention%time.Millisecond != 0 {
		bad("retention %s is not a whole number of milliseconds", retention)
	}
	if t.Role == RoleTier {
		required := t.Delay + time.Duration(d.MaxOutage)
		if retention <= required {
			bad("retention %s (%d ms) does not exceed its delay %s + maxOutage %s = %s (%d ms): "+
				"records could expire before they are forwarded; raise the retention or leave it out to derive it",
				tier.Readable(retention), retention.Milliseconds(), tier.Readable(t.Delay), tier.Readable(time.Duration(d.MaxOutage)),
				tier.Readable(required), required.Milliseconds())
		}
	}
	t.Configs["retention.ms"] = strconv.FormatInt(retention.Milliseconds(), 10)
	return errs
}

// SetReplicationFactor gives every topic of the spec replication factor rf,
// whatever its defaults and overrides say, and lowers min.insync.replicas to
// rf where it is higher: the spec's topology and retention on a cluster of
// rf brokers, such as a one-broker development cluster (rf 1). It returns
// what it changed, in words.
func (s *Spec) SetReplicationFactor(rf int16) string {
	lowered := 0
	for i := range s.topics {
		t := &s.topics[i]
		t.ReplicationFactor = rf
		if isr, _ := strconv.Atoi(t.Configs["min.insync.replicas"]); isr > int(rf) {
			t.Configs["min.insync.replicas"] = strconv.Itoa(int(rf))
			lowered++
		}
	}
	note := fmt.Sprintf("replication factor %d for all %d topics", rf, len(s.topics))
	if lowered > 0 {
		note += fmt.Sprintf(", min.insync.replicas lowered to %d on %d (it cannot exceed the replication factor)", rf, lowered)
	}
	return note
}

func ceilSecond(d time.Duration) time.Duration {
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return d
}

// joinErrs wraps the problems found in ErrInvalidSpec, one per line.
func joinErrs(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = "  - " + e.Error()
	}
	return fmt.Errorf("%w:\n%s", ErrInvalidSpec, strings.Join(lines, "\n"))
}
