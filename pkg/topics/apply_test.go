package topics

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ladder/ladder/pkg/laddertest"
)

// unchanged fails the test unless the cluster at addr holds only delay-1s,
// with 1 partition and no topic-level config: what it had before Apply.
func unchanged(t *testing.T, addr string) {
	t.Helper()
	ca := rawAdmin(t, addr)
	names, err := ca.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for n := range names {
		got = append(got, n)
	}
	if slices.Sort(got); !slices.Equal(got, []string{"delay-1s"}) || names["delay-1s"].NumPartitions != 1 {
		t.Errorf("a refused apply changed the topics: %v (delay-1s: %d partitions)", got, names["delay-1s"].NumPartitions)
	}
	if cfg := topicConfigs(t, ca, "delay-1s"); len(cfg) != 0 {
		t.Errorf("a refused apply set configs on delay-1s: %v", cfg)
	}
}

// TestApplyChangesNothingUnlessAll: a plan the cluster cannot take in full
// changes nothing. On one broker, the replication factor 3 of a production
// spec blocks every topic to create and min.insync.replicas=2 on a topic
// with one replica: Plan lists them in Blocked, and Apply refuses before
// raising the partitions it could have raised. With the replication factor
// set to 1 (--replication-factor 1) the same spec applies.
func TestApplyChangesNothingUnlessAll(t *testing.T) {
	b := laddertest.Broker(t, 1, "delay-1s")
	a := newAdmin(t, b.Addr())
	prod := strings.NewReplacer("replicationFactor: 1", "replicationFactor: 3", "minInsyncReplicas: 1", "minInsyncReplicas: 2").Replace(testSpec)
	s := mustParse(t, prod)
	p := plan(t, a, s)
	var w strings.Builder
	p.Write(&w)
	t.Logf("plan:\n%s", w.String())
	if len(p.Blocked) != 5 || len(p.Partitions) != 1 {
		t.Errorf("blocked %v, partitions %v: want the 4 topics to create and min.insync.replicas of delay-1s blocked, its partitions raisable", p.Blocked, p.Partitions)
	}
	for _, want := range []string{
		"x delay-5s: cannot create it with replication factor 3: the cluster has 1 broker\n",
		"note: a one-broker cluster (such as ladder dev): provision it with --replication-factor 1",
		"x delay-1s: cannot set min.insync.replicas=2: the topic has replication factor 1, so every acks=all write would fail",
		"! delay-1s: replication factor 1, spec says 3: will NOT change it",
		"(5 the cluster cannot take: apply changes nothing until they are resolved); 1 difference it will not resolve",
	} {
		if !strings.Contains(w.String(), want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	if _, err := a.Apply(context.Background(), s, p); !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "work: cannot create it with replication factor 3") {
		t.Errorf("apply of a blocked plan: %v, want ErrBlocked naming every reason", err)
	}
	unchanged(t, b.Addr())

	s = mustParse(t, prod)
	if note := s.SetReplicationFactor(1); note != "replication factor 1 for all 5 topics, min.insync.replicas lowered to 1 on 5 (it cannot exceed the replication factor)" {
		t.Errorf("note %q", note)
	}
	if after := apply(t, a, s); after.Changes() != 0 || len(after.WillNot) != 0 || len(after.Blocked) != 0 {
		t.Errorf("with replication factor 1: %v", after.Drift())
	}
}

// TestApplyValidatesFirst: a change the cluster itself refuses (here a
// policy refuses to add partitions) is found by the validate-only run of
// every request: Apply changes nothing, neither the topics it could create
// nor the configs it could set.
func TestApplyValidatesFirst(t *testing.T) {
	b := laddertest.Broker(t, 1, "delay-1s")
	c := b.Fake(t, "a policy refusing CreatePartitions through kfake's ControlKey (Apache Kafka needs a Java policy class for that)")
	c.ControlKey(int16(kmsg.CreatePartitions), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.CreatePartitionsRequest)
		resp := r.ResponseKind().(*kmsg.CreatePartitionsResponse)
		for _, tp := range r.Topics {
			rt := kmsg.NewCreatePartitionsResponseTopic()
			rt.Topic, rt.ErrorCode = tp.Topic, kerr.PolicyViolation.Code
			msg := "no new partitions here"
			rt.ErrorMessage = &msg
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	a := newAdmin(t, b.Addr())
	s := mustParse(t, testSpec)
	p := plan(t, a, s)
	if len(p.Create) != 4 || len(p.Partitions) != 1 || len(p.Configs) == 0 || len(p.Blocked) != 0 {
		t.Fatalf("plan: create %d, partitions %d, configs %d, blocked %v", len(p.Create), len(p.Partitions), len(p.Configs), p.Blocked)
	}
	_, err := a.Apply(context.Background(), s, p)
	if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "raising partitions of delay-1s from 1 to 3") {
		t.Errorf("apply: %v, want ErrBlocked naming the refused change", err)
	}
	unchanged(t, b.Addr())
}
