package forward_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/laddertest/realkafka"
	"github.com/ladder/ladder/pkg/tier"
)

// TestClusterTargetShortOfReplicas is TestTargetRefusesWrites on Apache Kafka,
// without fault injection: on three nodes, the target has replication
// factor 3 and min.insync.replicas=3; one node is stopped, so the broker
// answers NOT_ENOUGH_REPLICAS to every acks=all write to the target (the
// tiers, min.insync.replicas=2, still take writes) until the forwarder has
// reported not ready and 3 seconds more; then the node is started again.
// The forwarder retries (at-least-once: the producer, in order), every
// message arrives, none early, none dead-lettered, and it is ready again;
// in exactly-once mode each arrives once. (min.insync.replicas above the
// replication factor does not refuse writes on KRaft, KAFKA-18762, so one
// broker cannot play this.)
func TestClusterTargetShortOfReplicas(t *testing.T) {
	laddertest.NeedsReal(t)
	eachMode(t, func(t *testing.T, eos bool) {
		if eos {
			skipSaramaTxnRace(t) // each refused batch fails its records at once
		}
		c := laddertest.Cluster(t, 3, realkafka.Config{})
		l, err := tier.Parse(testTiers, tier.DefaultPrefix)
		if err != nil {
			t.Fatal(err)
		}
		b := laddertest.ClusterBroker(c, nil)
		b.EnsureLadder(t, l, 2, "work")
		addr := c.Node(1).Addr
		admin, err := sarama.NewClusterAdmin([]string{addr}, laddertestConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		all := "3"
		if err := admin.IncrementalAlterConfig(sarama.TopicResource, "work", map[string]sarama.IncrementalAlterConfigsEntry{
			"min.insync.replicas": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &all}}, false); err != nil {
			t.Fatalf("setting min.insync.replicas=3 on work: %v", err)
		}
		e := &env{broker: b, addr: addr, ladder: l, work: laddertest.Collect(t, addr, "work"), dlq: laddertest.Collect(t, addr, l.DLQTopic())}
		work := e.target(t, eos, "work")
		o := e.startObserved(t, eos)
		o.waitReady(t, 20*time.Second, "before the first record")
		down := c.Node(3)
		if err := down.Stop(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		// Its leaders moved to the other nodes: a forwarder with nothing to
		// forward is ready (its broker check refreshes its view of leaders).
		moved := time.Now()
		o.waitReady(t, 90*time.Second, "after node 3's controlled shutdown moved its leaders away")
		t.Logf("ready %s after node 3 stopped", time.Since(moved).Round(100*time.Millisecond))
		want := spread(t, e, "r", 200, 3*time.Second)
		reason := o.waitNotReady(t, 60*time.Second, "the target short of in-sync replicas")
		if !strings.Contains(reason, "producing fails") && !strings.Contains(reason, "not acknowledged yet") {
			t.Errorf("readiness says %q", reason)
		}
		refusedFor := time.Now()
		time.Sleep(3 * time.Second) // the outage lasts past readiness falling: the retries go on
		if n := work.Len(); n != 0 {
			t.Fatalf("%d records reached a target short of in-sync replicas", n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := down.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		recs := work.WaitDistinct(t, len(want), 90*time.Second)
		worst, _ := checkArrivals(t, recs, want, 60*time.Second)
		o.waitReady(t, 30*time.Second, "after the node was back")
		// At-least-once, the producer retried the refused batches itself, in
		// order (readiness fell for the records in flight, checked above);
		// exactly-once, the transactions aborted.
		if n := failures(t, o, eos); n == 0 && eos {
			t.Error("no aborted transaction counted")
		}
		if n := e.dlq.Len(); n != 0 {
			t.Errorf("%d records dead-lettered for NOT_ENOUGH_REPLICAS", n)
		}
		if eos {
			exactlyOnce(t, e, o.stop, work, "work", want)
		}
		t.Logf("node 3 stopped: not ready with %q; back after %s; all %d arrived, worst lateness %s; %v failures counted; %+v",
			reason, time.Since(refusedFor).Round(100*time.Millisecond), len(want), worst, failures(t, o, eos), o.Snapshot())
	})
}
