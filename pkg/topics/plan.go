package topics

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ladder/ladder/pkg/tier"
)

// Observed is what the cluster has of one topic.
type Observed struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16
	// Configs are the topic-level configs (source: topic), the ones someone
	// set on this topic rather than inherited from the broker.
	Configs map[string]string
	// Effective are the values in force, inherited ones included.
	Effective map[string]string
}

// Plan is the difference between a spec and a cluster: what Apply will do,
// and what it will not do and leaves to the operator.
type Plan struct {
	Create     []Topic
	Partitions []PartitionChange
	Configs    []ConfigChange
	// WillNot are differences Apply never resolves: a shrink, a replication
	// factor change, a topic-level config the spec does not manage. Each is
	// drift; Verify reports it.
	WillNot []Refusal
	// Blocked are changes of the plan the cluster cannot take, such as a
	// replication factor above its broker count. Apply changes nothing while
	// any is left (see ErrBlocked).
	Blocked []Refusal
	// Notes are facts worth knowing that are not drift, such as topics that
	// look like tiers but are not in the spec (never deleted).
	Notes []string
	// InSync are the spec's topics that match it exactly.
	InSync []string

	observed map[string]Observed // for AlterConfigs without the incremental API
}

// PartitionChange raises a topic's partition count.
type PartitionChange struct {
	Topic    string
	From, To int32
}

// ConfigChange sets one topic config.
type ConfigChange struct {
	Topic string
	Name  string
	From  string // value in force before ("" when unknown)
	To    string
	// Inherited is true when From is not set on the topic but inherited
	// from the broker: the spec pins every config it manages on the topic,
	// so a change of broker defaults cannot change a tier's retention.
	Inherited bool
}

func (c ConfigChange) from() string {
	_, from := display(c.Name, c.From)
	switch {
	case c.From == "":
		return "(unset)"
	case c.Inherited:
		return from + " (inherited)"
	}
	return from
}

// display is how a config is shown to people: retention.ms as "retention"
// and a duration (7d, 1h6m2s, unlimited), not raw milliseconds.
func display(name, value string) (string, string) {
	if name != "retention.ms" {
		return name, value
	}
	ms, err := strconv.ParseInt(value, 10, 64)
	switch {
	case err != nil:
		return "retention", value
	case ms < 0:
		return "retention", "unlimited"
	}
	return "retention", tier.Readable(time.Duration(ms) * time.Millisecond)
}

// Refusal is a difference Apply will not resolve.
type Refusal struct {
	Topic  string
	Reason string
}

// Changes is the number of things Apply would do.
func (p *Plan) Changes() int { return len(p.Create) + len(p.Partitions) + len(p.Configs) }

// Drift lists every difference between the spec and the cluster, one line
// each: the changes Apply would make and the ones it will not.
func (p *Plan) Drift() []string {
	var out []string
	for _, t := range p.Create {
		out = append(out, fmt.Sprintf("%s: missing", t.Name))
	}
	for _, c := range p.Partitions {
		out = append(out, fmt.Sprintf("%s: %d partitions, spec says %d", c.Topic, c.From, c.To))
	}
	for _, c := range p.Configs {
		name, to := display(c.Name, c.To)
		out = append(out, fmt.Sprintf("%s: %s=%s, spec says %s", c.Topic, name, c.from(), to))
	}
	for _, r := range p.WillNot {
		out = append(out, fmt.Sprintf("%s: %s", r.Topic, r.Reason))
	}
	return out
}

// Diff compares the spec with what the cluster has (observed, keyed by
// topic name, holding only topics that exist). existing lists every topic
// name of the cluster, to point out tier-like topics the spec no longer has.
func Diff(s *Spec, observed map[string]Observed, existing []string) *Plan {
	p := &Plan{}
	want := map[string]bool{}
	for _, t := range s.Topics() {
		want[t.Name] = true
		o, ok := observed[t.Name]
		if !ok {
			p.Create = append(p.Create, t)
			continue
		}
		before := len(p.Partitions) + len(p.Configs) + len(p.WillNot)
		switch {
		case o.Partitions < t.Partitions:
			p.Partitions = append(p.Partitions, PartitionChange{Topic: t.Name, From: o.Partitions, To: t.Partitions})
		case o.Partitions > t.Partitions:
			p.WillNot = append(p.WillNot, Refusal{t.Name, fmt.Sprintf(
				"has %d partitions, spec says %d: will NOT shrink (Kafka cannot; raise the spec to %d)",
				o.Partitions, t.Partitions, o.Partitions)})
		}
		if o.ReplicationFactor != t.ReplicationFactor {
			p.WillNot = append(p.WillNot, Refusal{t.Name, fmt.Sprintf(
				"replication factor %d, spec says %d: will NOT change it (that is a partition reassignment: kafka-reassign-partitions)",
				o.ReplicationFactor, t.ReplicationFactor)})
		}
		for _, name := range slices.Sorted(maps.Keys(t.Configs)) {
			if cur, ok := o.Configs[name]; !ok || cur != t.Configs[name] {
				p.Configs = append(p.Configs, ConfigChange{Topic: t.Name, Name: name, From: o.Effective[name], To: t.Configs[name], Inherited: !ok})
			}
		}
		for _, name := range slices.Sorted(maps.Keys(o.Configs)) {
			if _, managed := t.Configs[name]; !managed {
				p.WillNot = append(p.WillNot, Refusal{t.Name, fmt.Sprintf(
					"config %s=%s is set on the topic but not in the spec: will NOT remove it (add it to the spec, or delete it by hand)",
					name, o.Configs[name])})
			}
		}
		if len(p.Partitions)+len(p.Configs)+len(p.WillNot) == before {
			p.InSync = append(p.InSync, t.Name)
		}
	}
	prefix := s.TierLadder().Prefix()
	for _, name := range slices.Sorted(slices.Values(existing)) {
		if strings.HasPrefix(name, prefix) && !want[name] {
			p.Notes = append(p.Notes, fmt.Sprintf("%s has the ladder's prefix but is not in the spec: will NOT delete it "+
				"(if it is a tier you removed, let its records drain before deleting it by hand)", name))
		}
	}
	return p
}

// Write prints the plan for people: one line per change, then what will
// not be done, then a summary line.
func (p *Plan) Write(w io.Writer) {
	for _, t := range p.Create {
		fmt.Fprintf(w, "+ create %s: %d partitions, replication factor %d, %s\n",
			t.Name, t.Partitions, t.ReplicationFactor, formatConfigs(t.Configs))
	}
	for _, c := range p.Partitions {
		fmt.Fprintf(w, "~ %s: partitions %d -> %d\n", c.Topic, c.From, c.To)
	}
	for _, c := range p.Configs {
		name, to := display(c.Name, c.To)
		fmt.Fprintf(w, "~ %s: %s %s -> %s\n", c.Topic, name, c.from(), to)
	}
	for _, r := range p.Blocked {
		fmt.Fprintf(w, "x %s: %s\n", r.Topic, r.Reason)
	}
	for _, r := range p.WillNot {
		fmt.Fprintf(w, "! %s: %s\n", r.Topic, r.Reason)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	fmt.Fprintln(w, p.Summary())
}

// Summary is the plan in one line.
func (p *Plan) Summary() string {
	if p.Changes() == 0 && len(p.WillNot) == 0 {
		return fmt.Sprintf("nothing to change: %d topics match the spec", len(p.InSync))
	}
	blocked := ""
	if len(p.Blocked) > 0 {
		blocked = fmt.Sprintf(" (%d the cluster cannot take: apply changes nothing until they are resolved)", len(p.Blocked))
	}
	differences := "differences"
	if len(p.WillNot) == 1 {
		differences = "difference"
	}
	return fmt.Sprintf("%d to create, %d to add partitions to, %d configs to set%s; %d %s it will not resolve; %d topics match",
		len(p.Create), len(p.Partitions), len(p.Configs), blocked, len(p.WillNot), differences, len(p.InSync))
}

// check lists in Blocked the changes a cluster of brokers brokers cannot
// take: topics or partitions needing more replicas than there are brokers,
// and min.insync.replicas above a topic's replication factor (every acks=all
// write would fail).
func (p *Plan) check(brokers int) {
	have := fmt.Sprintf("the cluster has %d brokers", brokers)
	if brokers == 1 {
		have = "the cluster has 1 broker"
	}
	for _, t := range p.Create {
		if int(t.ReplicationFactor) > brokers {
			p.Blocked = append(p.Blocked, Refusal{t.Name, fmt.Sprintf("cannot create it with replication factor %d: %s",
				t.ReplicationFactor, have)})
		}
	}
	for _, c := range p.Partitions {
		if rf := p.observed[c.Topic].ReplicationFactor; int(rf) > brokers {
			p.Blocked = append(p.Blocked, Refusal{c.Topic, fmt.Sprintf("cannot add partitions with replication factor %d: %s", rf, have)})
		}
	}
	for _, c := range p.Configs {
		o, ok := p.observed[c.Topic]
		if n, err := strconv.Atoi(c.To); c.Name == "min.insync.replicas" && ok && err == nil && n > int(o.ReplicationFactor) {
			p.Blocked = append(p.Blocked, Refusal{c.Topic, fmt.Sprintf("cannot set min.insync.replicas=%d: the topic has replication factor %d, "+
				"so every acks=all write would fail", n, o.ReplicationFactor)})
		}
	}
	if len(p.Blocked) > 0 && brokers == 1 {
		p.Notes = append(p.Notes, "a one-broker cluster (such as ladder dev): provision it with --replication-factor 1 "+
			"(topics/provision.sh --replication-factor 1)")
	}
}

func formatConfigs(c map[string]string) string {
	keys := slices.Sorted(maps.Keys(c))
	parts := make([]string, len(keys))
	for i, k := range keys {
		name, v := display(k, c[k])
		parts[i] = name + "=" + v
	}
	return strings.Join(parts, " ")
}
