package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/inspect"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/laddertest/realkafka"
	"github.com/ladder/ladder/pkg/offsets"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

// The tests of this file need what only a cluster of Apache Kafka brokers
// shows: a broker that dies or restarts under load. They run with
// LADDER_TEST_KAFKA=real (make test-kafka) on three nodes, each broker and
// controller, topics with replication factor 3 and min.insync.replicas=2.

// clusterLoad is how many messages each failure test schedules, with delays
// from 0 to clusterSpread.
const (
	clusterLoad   = 20_000
	clusterSpread = 10 * time.Second
)

// clusterLadder is one ladder on a three-node cluster: its own topic prefix,
// target topic and group, so several share a cluster.
type clusterLadder struct {
	c      *realkafka.Cluster
	l      *tier.Ladder
	prefix string
	work   string
	group  string
	eos    bool
}

func newClusterLadder(t *testing.T, c *realkafka.Cluster, name string, eos bool) *clusterLadder {
	t.Helper()
	prefix := name + "-"
	l, err := tier.Parse(e2eTiers, prefix)
	if err != nil {
		t.Fatal(err)
	}
	cl := &clusterLadder{c: c, l: l, prefix: prefix, work: name + "-work", group: name, eos: eos}
	laddertest.ClusterBroker(c, nil).EnsureLadder(t, l, 6, cl.work)
	return cl
}

// kafka is the client configuration of the test's own clients.
func (cl *clusterLadder) kafka() kafkaconf.Config {
	return kafkaconf.Config{Brokers: cl.c.Addrs(), KafkaVersion: "3.0.0", ClientID: "ladder-test"}
}

// run starts `ladder run` as process id.
func (cl *clusterLadder) run(t *testing.T, id string) *proc {
	t.Helper()
	env := []string{"LADDER_BROKERS=" + cl.c.Bootstrap(), "LADDER_TIERS=" + e2eTiers, "LADDER_TOPIC_PREFIX=" + cl.prefix,
		"LADDER_GROUP=" + cl.group, "LADDER_RESUME_LEAD=200ms", "LADDER_HTTP_ADDR=127.0.0.1:0", "LADDER_CLIENT_ID=" + id}
	if cl.eos {
		env = append(env, "LADDER_EXACTLY_ONCE=true", "LADDER_TRANSACTIONAL_ID="+cl.group+"-"+id)
	}
	return start(t, env, "run")
}

// collect reads the target the way its readers must: read_committed in
// exactly-once mode.
func (cl *clusterLadder) collect(t *testing.T, addr string) *laddertest.Collector {
	t.Helper()
	if cl.eos {
		return laddertest.CollectCommitted(t, addr, cl.work)
	}
	return laddertest.Collect(t, addr, cl.work)
}

// scheduler schedules into the ladder, to every node.
func (cl *clusterLadder) scheduler(t *testing.T) *schedule.Scheduler {
	t.Helper()
	s, err := schedule.New(schedule.Config{Ladder: cl.l, Kafka: cl.kafka(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// messages are n messages keyed prefix-000000..., due now plus a random
// delay up to clusterSpread, with their due times by key.
func (cl *clusterLadder) messages(prefix string, n int, seed uint64) ([]schedule.Message, map[string]time.Time) {
	r := rand.New(rand.NewPCG(seed, 7))
	now := time.Now()
	ms := make([]schedule.Message, n)
	want := make(map[string]time.Time, n)
	for i := range n {
		key := fmt.Sprintf("%s-%06d", prefix, i)
		at := now.Add(time.Duration(r.Int64N(int64(clusterSpread))))
		ms[i] = schedule.Message{Topic: cl.work, Key: []byte(key), Value: []byte("payload-" + key), At: at}
		want[key] = at.Truncate(time.Millisecond)
	}
	return ms, want
}

// sendAll schedules ms pipelined and schedules again, up to 20 times, the
// messages whose producer gave up (their first copy may have been written
// all the same). It returns the keys sent more than once and the first
// errors.
func sendAll(t *testing.T, s *schedule.Scheduler, ms []schedule.Message) (resent []string, errs []string) {
	t.Helper()
	for attempt := 0; len(ms) > 0; attempt++ {
		if attempt == 20 {
			t.Errorf("%d messages could not be scheduled in 20 attempts: %v", len(ms), errs)
			return resent, errs
		}
		var (
			mu     sync.Mutex
			failed []schedule.Message
			wg     sync.WaitGroup
		)
		for _, m := range ms {
			wg.Add(1)
			if err := s.Send(context.Background(), m, func(err error) {
				if err != nil {
					mu.Lock()
					failed = append(failed, m)
					if len(errs) < 3 {
						errs = append(errs, err.Error())
					}
					mu.Unlock()
				}
				wg.Done()
			}); err != nil {
				wg.Done()
				t.Errorf("scheduling: %v", err)
				return resent, errs
			}
		}
		wg.Wait()
		for _, m := range failed {
			resent = append(resent, string(m.Key))
		}
		ms = failed
		if len(ms) > 0 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	return resent, errs
}

// leadership is which node leads how many partitions of the ladder's tiers
// and of its target.
func (cl *clusterLadder) leadership(t *testing.T) (tiers, target map[int32]int) {
	t.Helper()
	tiers, target = map[int32]int{}, map[int32]int{}
	for _, topic := range cl.l.Topics() {
		for _, leader := range laddertest.Leaders(t, cl.c, topic) {
			tiers[leader]++
		}
	}
	for _, leader := range laddertest.Leaders(t, cl.c, cl.work) {
		target[leader]++
	}
	return tiers, target
}

// busiestLeader is the node leading the most tier and target partitions,
// at least one of each.
func (cl *clusterLadder) busiestLeader(t *testing.T) *realkafka.Node {
	t.Helper()
	tiers, target := cl.leadership(t)
	best := int32(-1)
	for id := range tiers {
		if target[id] > 0 && (best < 0 || tiers[id]+target[id] > tiers[best]+target[best]) {
			best = id
		}
	}
	if best < 0 {
		t.Fatalf("no node leads both tier and target partitions: tiers %v, target %v", tiers, target)
	}
	return cl.c.Node(int(best))
}

// survivor is the address of a node other than n.
func survivor(c *realkafka.Cluster, n *realkafka.Node) string {
	for _, m := range c.Nodes() {
		if m != n {
			return m.Addr
		}
	}
	return ""
}

// clusterCounts is what reached the target.
type clusterCounts struct {
	scheduled, delivered, duplicates, early, lost, deadLettered int
	worstLate                                                   time.Duration
}

func (c clusterCounts) String() string {
	return fmt.Sprintf("%d scheduled: %d delivered, %d duplicates, %d early, %d lost, %d dead-lettered; latest %s after its due time",
		c.scheduled, c.delivered, c.duplicates, c.early, c.lost, c.deadLettered, c.worstLate.Round(time.Millisecond))
}

// count compares what the target holds with what was scheduled.
func count(recs []laddertest.Received, want map[string]time.Time) clusterCounts {
	c := clusterCounts{scheduled: len(want)}
	got := laddertest.Distinct(recs)
	c.duplicates = len(recs) - len(got)
	for key, due := range want {
		r, ok := got[key]
		if !ok {
			c.lost++
			continue
		}
		c.delivered++
		if r.Timestamp.Before(due) || r.At.Before(due) {
			c.early++
		}
		c.worstLate = max(c.worstLate, r.At.Sub(due))
	}
	return c
}

// finish waits until every message arrived and every tier record was
// committed, stops the forwarders (SIGTERM), reads the target to its end
// and counts.
func (cl *clusterLadder) finish(t *testing.T, addr string, work *laddertest.Collector, want map[string]time.Time, procs ...*proc) (clusterCounts, []laddertest.Received) {
	t.Helper()
	if _, ok := work.WaitFor(3*time.Minute, func(rs []laddertest.Received) bool { return len(laddertest.Distinct(rs)) >= len(want) }); !ok {
		t.Errorf("after 3 minutes, %d of %d messages arrived", len(laddertest.Distinct(work.Records())), len(want))
	}
	v := newKafkaView(t, addr)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		pending := cl.pending(v)
		if pending == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2m, group %s has not forwarded and committed every tier record: %s", cl.group, pending)
		}
	}
	for _, p := range procs {
		laddertest.Eventually(t, 30*time.Second, func() bool { return strings.Contains(p.out.String(), "forwarder started") },
			"a forwarder never logged its start:\n%s", p.out)
		if err := p.stop(t, syscall.SIGTERM, 60*time.Second); err != nil {
			t.Errorf("ladder run exited with %v after SIGTERM", err)
		}
	}
	recs := work.ReadToEnd(t, addr, cl.work)
	c := count(recs, want)
	c.deadLettered = int(v.mustEnd(t, cl.l.DLQTopic()))
	if c.lost > 0 || c.early > 0 || c.deadLettered > 0 {
		t.Errorf("%s", c)
	}
	return c, recs
}

// pending names a tier partition holding a record beyond what the group
// committed ("" when none). In exactly-once mode a partition ends with a
// transaction marker, which the group's offset never passes: what counts is
// whether a record lies between the committed offset and the end.
func (cl *clusterLadder) pending(v *kafkaView) string {
	tps, err := offsets.Partitions(v.client, cl.l.Topics()...)
	if err != nil {
		return err.Error()
	}
	committed, err := offsets.Committed(v.admin, cl.group, tps)
	if err != nil {
		return err.Error()
	}
	end, err := offsets.End(v.client, tps)
	if err != nil {
		return err.Error()
	}
	for tp, e := range end {
		if committed[tp] >= e {
			continue
		}
		m, err := offsets.FirstRecord(context.Background(), v.client, tp.Topic, tp.Partition, committed[tp], e)
		if err != nil {
			return err.Error()
		}
		if m != nil {
			return fmt.Sprintf("%s/%d: committed %d, a record at %d, end %d", tp.Topic, tp.Partition, committed[tp], m.Offset, e)
		}
	}
	return ""
}

var clusterModes = []struct {
	name string
	eos  bool
}{{"at-least-once", false}, {"exactly-once", true}}

// TestClusterBrokerKilled runs two `ladder run` processes on a three-node
// cluster while 20,000 messages with delays from 0 to 10 s flow through
// the tiers, SIGKILLs the node leading the most tier and target partitions
// (no controlled shutdown: its partitions are leaderless until the
// controller fences it), and starts it again. Every message arrives, none
// early, none dead-lettered; in exactly-once mode a read_committed reader
// sees each once.
func TestClusterBrokerKilled(t *testing.T) {
	c := laddertest.Cluster(t, 3, realkafka.Config{})
	for i, m := range clusterModes {
		t.Run(m.name, func(t *testing.T) {
			cl := newClusterLadder(t, c, fmt.Sprintf("kill%d", i), m.eos)
			victim := cl.busiestLeader(t)
			addr := survivor(c, victim)
			work := cl.collect(t, addr)
			procs := []*proc{cl.run(t, "a"), cl.run(t, "b")}
			admin := newKafkaView(t, addr).admin
			if !offsets.GroupSettled(admin, cl.group, time.Second, 60*time.Second) {
				t.Fatalf("group %s did not settle", cl.group)
			}
			ms, want := cl.messages(cl.group, clusterLoad, uint64(i)+1)
			if err := cl.scheduler(t).ScheduleBatch(context.Background(), ms); err != nil {
				t.Fatalf("scheduling: %v", err)
			}
			if _, ok := work.WaitFor(60*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= clusterLoad/10 }); !ok {
				t.Fatalf("a tenth of the messages did not arrive in 60s (%d did)", work.Len())
			}
			tiers, target := cl.leadership(t)
			atKill := work.Len()
			if err := victim.Kill(); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			if atKill >= clusterLoad {
				t.Fatalf("every message had arrived before the kill: nothing was tested")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := victim.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			back := time.Since(killed)
			counts, _ := cl.finish(t, addr, work, want, procs...)
			if m.eos && counts.duplicates > 0 {
				t.Errorf("exactly-once: read_committed saw %d duplicates", counts.duplicates)
			}
			t.Logf("%s: SIGKILL of node %d (leading %d of %d tier and %d of %d target partitions) with %d of %d delivered; "+
				"back %s later; %s", m.name, victim.ID, tiers[int32(victim.ID)], 6*len(cl.l.Topics()), target[int32(victim.ID)], 6,
				atKill, clusterLoad, back.Round(100*time.Millisecond), counts)
		})
	}
}

// TestClusterRollingRestart restarts the three nodes one after the other
// (SIGTERM: controlled shutdown, then start; the next only once every
// replica is back in sync, as an operator does) while 20,000 messages with
// delays from 0 to 10 s are scheduled throughout and forwarded by two
// `ladder run` processes. Every message arrives, none early, none
// dead-lettered; in exactly-once mode a read_committed reader sees each
// once. A message the test had to schedule again (its producer gave up
// during a restart) may be on the target twice, and is counted apart.
func TestClusterRollingRestart(t *testing.T) {
	c := laddertest.Cluster(t, 3, realkafka.Config{})
	for i, m := range clusterModes {
		t.Run(m.name, func(t *testing.T) {
			cl := newClusterLadder(t, c, fmt.Sprintf("roll%d", i), m.eos)
			addr := c.Node(1).Addr
			work := cl.collect(t, addr)
			procs := []*proc{cl.run(t, "a"), cl.run(t, "b")}
			if !offsets.GroupSettled(newKafkaView(t, addr).admin, cl.group, time.Second, 60*time.Second) {
				t.Fatalf("group %s did not settle", cl.group)
			}

			// Schedule in 100 batches while the nodes restart, each
			// message due up to 10 s after it was scheduled.
			s := cl.scheduler(t)
			want := map[string]time.Time{}
			var resent, failures []string
			stopLoad := make(chan struct{})
			loadDone := make(chan struct{})
			endLoad := sync.OnceFunc(func() { close(stopLoad); <-loadDone })
			t.Cleanup(endLoad) // before the scheduler closes
			go func() {
				defer close(loadDone)
				const batches = 100
				for b := range batches {
					ms, due := cl.messages(fmt.Sprintf("%s-b%02d", cl.group, b), clusterLoad/batches, uint64(100*i+b))
					maps.Copy(want, due)
					again, errs := sendAll(t, s, ms)
					resent, failures = append(resent, again...), append(failures, errs...)
					select {
					case <-stopLoad:
					case <-time.After(300 * time.Millisecond):
					}
				}
			}()

			began := time.Now()
			var restarts []string
			for _, n := range c.Nodes() {
				laddertest.WaitReplicated(t, c, 2*time.Minute)
				at := work.Len()
				stopped := time.Now()
				if err := n.Stop(60 * time.Second); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				err := n.Restart(ctx)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				restarts = append(restarts, fmt.Sprintf("node %d at %d delivered (down %s)", n.ID, at, time.Since(stopped).Round(100*time.Millisecond)))
			}
			laddertest.WaitReplicated(t, c, 2*time.Minute)
			rolled := time.Since(began)
			endLoad()
			counts, recs := cl.finish(t, addr, work, want, procs...)
			seen := map[string]int{}
			for _, r := range recs {
				seen[string(r.Key)]++
			}
			resentDups := 0
			for _, k := range resent {
				resentDups += max(0, seen[k]-1)
			}
			if m.eos && counts.duplicates > resentDups {
				t.Errorf("exactly-once: read_committed saw %d duplicates of messages scheduled once", counts.duplicates-resentDups)
			}
			slices.Sort(failures)
			t.Logf("%s: rolling restart in %s (%s); %s; %d messages scheduled again after a producer error (%d duplicates among them): %v",
				m.name, rolled.Round(100*time.Millisecond), strings.Join(restarts, ", "), counts, len(resent), resentDups, failures)
		})
	}
}

// TestClusterTopicsAndInspect provisions the shipped spec (topics/topics.yaml:
// replication factor 3, min.insync.replicas=2) on a three-node cluster
// with topics/provision.sh, checks every partition has three in-sync
// replicas, finds a topic made by hand with replication factor 1 reported
// (and left alone), and reads a held backlog with `ladder inspect` and
// topics/inspect.sh, also with a node down.
func TestClusterTopicsAndInspect(t *testing.T) {
	kc := kcat(t)
	c := laddertest.Cluster(t, 3, realkafka.Config{})
	spec, err := filepath.Abs(filepath.Join("..", "..", "topics", "topics.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"LADDER_BROKERS=" + c.Bootstrap(), "TOPICS_FILE=" + spec}
	// One run, on a cluster whose brokers learn of each new topic a moment
	// apart: apply waits until every broker answers for them.
	out, code := runScript(t, env, "provision.sh")
	if code != 0 || !strings.Contains(out, "replication factor 3") || !strings.Contains(out, "topics match "+spec) {
		t.Fatalf("provision.sh of the shipped spec exited %d:\n%s", code, out)
	}
	t.Logf("provision.sh:\n%s", out)
	ca := rawAdmin(t, c.Node(1).Addr)
	l, err := tier.Parse("1m,15m,1h,6h", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	topics := append(append(l.Topics(), l.DLQTopic(), l.ControlTopic()), "work-fast", "work-slow")
	laddertest.WaitReplicated(t, c, 2*time.Minute, topics...)
	// apply settled until every broker knew every topic: node 1 (or
	// whichever broker the admin asks) answers for them at once.
	md, err := ca.DescribeTopics(topics)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range md {
		if m.Err != sarama.ErrNoError || len(m.Partitions) == 0 {
			t.Errorf("%s: %v, %d partitions", m.Name, m.Err, len(m.Partitions))
		}
		for _, p := range m.Partitions {
			if len(p.Replicas) != 3 {
				t.Errorf("%s/%d: replicas %v, want 3", m.Name, p.ID, p.Replicas)
			}
		}
		// DescribeConfigs goes to any broker: each knows the topic.
		cfg, err := describeTopicConfig(ca, m.Name)
		if err != nil {
			t.Fatal(err)
		}
		if cfg["min.insync.replicas"] != "2" {
			t.Errorf("%s: min.insync.replicas=%q, want 2", m.Name, cfg["min.insync.replicas"])
		}
	}

	// A lane topic re-made by hand with replication factor 1: verify
	// reports it and apply leaves it (a reassignment is the operator's).
	if err := ca.DeleteTopic("work-slow"); err != nil {
		t.Fatal(err)
	}
	laddertest.Eventually(t, 30*time.Second, func() bool {
		return ca.CreateTopic("work-slow", &sarama.TopicDetail{NumPartitions: 12, ReplicationFactor: 1}, false) == nil
	}, "re-creating work-slow")
	var verify string
	laddertest.Eventually(t, 30*time.Second, func() bool {
		verify, code = runLadder(t, []string{"LADDER_BROKERS=" + c.Bootstrap()}, "topics", "verify", "-f", spec)
		return strings.Contains(verify, "replication factor 1, spec says 3: will NOT change it")
	}, "verify does not report the replication factor of work-slow")
	if code != 1 {
		t.Errorf("verify exited %d on a replication factor it will not change, want 1:\n%s", code, verify)
	}

	// A held backlog: 10 messages due in two hours wait in delay-1h.
	ladderEnv := []string{"LADDER_BROKERS=" + c.Bootstrap(), "LADDER_TIERS=1m,15m,1h,6h", "LADDER_GROUP=inspect-cluster"}
	s, err := schedule.New(schedule.Config{Ladder: l, Kafka: kafkaconf.Config{Brokers: c.Addrs(), KafkaVersion: "3.0.0", ClientID: "ladder-test"},
		Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var batch []schedule.Message
	for i := range 10 {
		batch = append(batch, schedule.Message{Topic: "work-fast", Key: []byte(fmt.Sprintf("held-%d", i)), Value: []byte("v"), At: time.Now().Add(2 * time.Hour)})
	}
	if err := s.ScheduleBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	start(t, ladderEnv, "run")
	inspectPending := func(why string) {
		t.Helper()
		var r inspect.Report
		laddertest.Eventually(t, 60*time.Second, func() bool {
			out, code := runLadder(t, ladderEnv, "inspect", "--json")
			r = inspect.Report{}
			if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
				return false
			}
			return r.Summary.Pending == 10 && r.Summary.Members == 1
		}, "%s: ladder inspect never showed 10 pending and one forwarder", why)
		out, code := runScript(t, append(ladderEnv, "KCAT="+kc), "inspect.sh", "count")
		if code != 0 || !strings.Contains(out, "delay-1h total 10 records") {
			t.Errorf("%s: inspect.sh count (exit %d):\n%s", why, code, out)
		}
		t.Logf("%s: ladder inspect: %d pending, group %s with %d member(s); inspect.sh count agrees", why, r.Summary.Pending, r.GroupState, r.Summary.Members)
	}
	inspectPending("three nodes")
	if err := c.Node(2).Kill(); err != nil {
		t.Fatal(err)
	}
	inspectPending("node 2 killed")
}
