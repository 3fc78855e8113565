package topics

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/laddertest"
)

// testSpec fits the embedded broker: one broker, so replication factor 1.
const testSpec = `
defaults:
  partitions: 3
  replicationFactor: 1
  minInsyncReplicas: 1
  maxOutage: 1h
ladder:
  tiers: [1s, 5s]
lanes:
  topics: [work]
overrides:
  work:
    partitions: 2
    configs:
      max.message.bytes: "2097152"
`

func mustParse(t *testing.T, spec string) *Spec {
	t.Helper()
	s, err := Parse([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newAdmin(t *testing.T, addr string) *Admin {
	t.Helper()
	a, err := NewAdmin(laddertest.Kafka(addr), laddertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func plan(t *testing.T, a *Admin, s *Spec) *Plan {
	t.Helper()
	p, err := a.Plan(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func apply(t *testing.T, a *Admin, s *Spec) *Plan {
	t.Helper()
	after, err := a.Apply(context.Background(), s, plan(t, a, s))
	if err != nil {
		t.Fatal(err)
	}
	return after
}

func rawAdmin(t *testing.T, addr string) sarama.ClusterAdmin {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	ca, err := sarama.NewClusterAdmin([]string{addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close() })
	return ca
}

// TestApplyCreatesThenNothing: the first apply creates every topic with its
// partitions and configs; the second finds nothing to do.
func TestApplyCreatesThenNothing(t *testing.T) {
	b := laddertest.Broker(t, 1)
	s := mustParse(t, testSpec)
	a := newAdmin(t, b.Addr())

	first := plan(t, a, s)
	var created []string
	for _, tp := range first.Create {
		created = append(created, tp.Name)
	}
	if strings.Join(created, " ") != "delay-1s delay-5s delay-dlq delay-control work" || first.Changes() != 5 {
		t.Fatalf("first plan creates %v (%d changes)", created, first.Changes())
	}
	after := apply(t, a, s)
	if after.Changes() != 0 || len(after.WillNot) != 0 || len(after.InSync) != 5 {
		t.Fatalf("after apply: %v, in sync %v", after.Drift(), after.InSync)
	}

	// What the cluster has, read with a separate client.
	ca := rawAdmin(t, b.Addr())
	md, err := ca.DescribeTopics([]string{"delay-1s", "work"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range md {
		want := map[string]int{"delay-1s": 3, "work": 2}[m.Name]
		if len(m.Partitions) != want {
			t.Errorf("%s has %d partitions, want %d", m.Name, len(m.Partitions), want)
		}
	}
	cfg := topicConfigs(t, ca, "delay-5s")
	// (5s + 1h) + 10% = 3965.5s, rounded up to the second.
	if cfg["retention.ms"] != "3966000" || cfg["cleanup.policy"] != "delete" || cfg["min.insync.replicas"] != "1" {
		t.Errorf("delay-5s configs %v", cfg)
	}
	if cfg := topicConfigs(t, ca, "work"); cfg["max.message.bytes"] != "2097152" || cfg["retention.ms"] != "604800000" {
		t.Errorf("work configs %v", cfg)
	}

	again := plan(t, a, s)
	if again.Changes() != 0 || len(again.WillNot) != 0 {
		t.Fatalf("second plan is not empty: %v", again.Drift())
	}
	if again.Summary() != "nothing to change: 5 topics match the spec" {
		t.Errorf("summary %q", again.Summary())
	}
}

func topicConfigs(t *testing.T, ca sarama.ClusterAdmin, topic string) map[string]string {
	t.Helper()
	entries, err := ca.DescribeConfigs([]*sarama.ConfigResource{{Type: sarama.TopicResource, Name: topic}}, sarama.DescribeConfigsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range entries[0].Configs {
		if c.Source == sarama.SourceTopic {
			out[c.Name] = c.Value
		}
	}
	return out
}

// TestDriftFoundAndRepaired alters the cluster by hand behind the spec's
// back: Plan finds every difference, Apply repairs what it may and leaves
// the rest (shrink, unmanaged config, stray topic) to the operator.
func TestDriftFoundAndRepaired(t *testing.T) {
	for _, incremental := range []bool{true, false} {
		name := map[bool]string{true: "IncrementalAlterConfigs", false: "AlterConfigs"}[incremental]
		t.Run(name, func(t *testing.T) {
			b := laddertest.Broker(t, 1)
			s := mustParse(t, testSpec)
			a := newAdmin(t, b.Addr())
			a.incremental = incremental
			apply(t, a, s)

			ca := rawAdmin(t, b.Addr())
			short, seg := "60000", "3600000"
			if err := ca.IncrementalAlterConfig(sarama.TopicResource, "delay-1s", map[string]sarama.IncrementalAlterConfigsEntry{
				"retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &short},
				"segment.ms":   {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &seg},
			}, false); err != nil {
				t.Fatal(err)
			}
			if err := ca.CreatePartitions("work", 4, nil, false); err != nil {
				t.Fatal(err)
			}
			if err := ca.DeleteTopic("delay-5s"); err != nil {
				t.Fatal(err)
			}
			if err := ca.CreateTopic("delay-2s", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
				t.Fatal(err)
			}

			// Kafka answers the deletion and the creation before its
			// metadata shows them; a plan in between fails to describe the
			// topic being deleted.
			laddertest.Eventually(t, 10*time.Second, func() bool {
				md, err := ca.DescribeTopics([]string{"delay-5s", "delay-2s"})
				if err != nil {
					return false
				}
				seen := map[string]sarama.KError{}
				for _, m := range md {
					seen[m.Name] = m.Err
				}
				created, ok := seen["delay-2s"]
				return ok && created == sarama.ErrNoError && seen["delay-5s"] == sarama.ErrUnknownTopicOrPartition
			}, "the deletion of delay-5s and the creation of delay-2s are not visible")
			p := plan(t, a, s)
			if len(p.Create) != 1 {
				t.Fatalf("plan creates %v, want the deleted delay-5s", p.Create)
			}
			drift := strings.Join(p.Drift(), "\n")
			for _, w := range []string{
				"delay-5s: missing",
				"delay-1s: retention=1m, spec says 1h6m2s",
				"work: has 4 partitions, spec says 2: will NOT shrink",
				"delay-1s: config segment.ms=3600000 is set on the topic but not in the spec: will NOT remove it",
			} {
				if !strings.Contains(drift, w) {
					t.Errorf("drift lacks %q:\n%s", w, drift)
				}
			}
			if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "delay-2s has the ladder's prefix but is not in the spec: will NOT delete") {
				t.Errorf("notes %v", p.Notes)
			}

			after := apply(t, a, s)
			if after.Changes() != 0 {
				t.Fatalf("after apply, changes left: %v", after.Drift())
			}
			if len(after.WillNot) != 2 {
				t.Errorf("after apply, refusals %v; want the shrink and the unmanaged config", after.WillNot)
			}
			cfg := topicConfigs(t, ca, "delay-1s")
			if cfg["retention.ms"] != "3962000" || cfg["segment.ms"] != "3600000" {
				t.Errorf("delay-1s configs after apply: %v (the unmanaged segment.ms must stay)", cfg)
			}
			md, err := ca.DescribeTopics([]string{"work", "delay-2s"})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range md {
				if m.Err != sarama.ErrNoError {
					t.Errorf("%s: %v (apply must not delete)", m.Name, m.Err)
				}
				if m.Name == "work" && len(m.Partitions) != 4 {
					t.Errorf("work has %d partitions after apply: it must never shrink", len(m.Partitions))
				}
			}
		})
	}
}

// TestApplyRaisesPartitions: raising a count in the spec adds partitions.
func TestApplyRaisesPartitions(t *testing.T) {
	b := laddertest.Broker(t, 1)
	a := newAdmin(t, b.Addr())
	apply(t, a, mustParse(t, testSpec))
	raised := mustParse(t, strings.Replace(testSpec, "partitions: 3", "partitions: 5", 1))
	p := plan(t, a, raised)
	var changes []string
	for _, c := range p.Partitions {
		changes = append(changes, c.Topic)
	}
	if !slices.Equal(changes, []string{"delay-1s", "delay-5s", "delay-dlq"}) || p.Partitions[0].From != 3 || p.Partitions[0].To != 5 {
		t.Fatalf("partition changes %+v", p.Partitions)
	}
	if after := apply(t, a, raised); after.Changes() != 0 || len(after.WillNot) != 0 {
		t.Fatalf("after raising: %v", after.Drift())
	}
}

// TestApplyPinsInheritedConfigs: a topic created without configs inherits
// the broker's; apply sets every managed config on the topic, even where the
// inherited value is the same, so a broker default change cannot change it.
func TestApplyPinsInheritedConfigs(t *testing.T) {
	b := laddertest.Broker(t, 1, "delay-1s")
	a := newAdmin(t, b.Addr())
	s := mustParse(t, testSpec)
	p := plan(t, a, s)
	var b2 strings.Builder
	p.Write(&b2)
	for _, w := range []string{
		"~ delay-1s: partitions 1 -> 3",
		"~ delay-1s: cleanup.policy delete (inherited) -> delete",
		"~ delay-1s: retention 7d (inherited) -> 1h6m2s",
	} {
		if !strings.Contains(b2.String(), w) {
			t.Errorf("plan lacks %q:\n%s", w, b2.String())
		}
	}
	if after := apply(t, a, s); after.Changes() != 0 || len(after.WillNot) != 0 {
		t.Fatalf("after apply: %v", after.Drift())
	}
	cfg := topicConfigs(t, rawAdmin(t, b.Addr()), "delay-1s")
	if cfg["cleanup.policy"] != "delete" || cfg["min.insync.replicas"] != "1" || cfg["retention.ms"] != "3962000" {
		t.Errorf("topic-level configs of delay-1s after apply: %v", cfg)
	}
}
