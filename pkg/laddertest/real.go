package laddertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ladder/ladder/pkg/devbroker"
	"github.com/ladder/ladder/pkg/laddertest/realkafka"
)

// SwitchVar chooses the broker of the integration tests: unset or
// "embedded" for the embedded kfake broker, "real" for Apache Kafka
// (pkg/laddertest/KAFKA.md).
const SwitchVar = "LADDER_TEST_KAFKA"

// Real reports whether the tests run against Apache Kafka (LADDER_TEST_KAFKA=real).
func Real() bool { return testKafka() == "real" }

// testKafka is LADDER_TEST_KAFKA as the test binary started with it: Main
// removes it from the environment, so the ladder processes a test starts
// do not warn about a LADDER_* variable they do not know.
var testKafka = sync.OnceValue(func() string { return os.Getenv(SwitchVar) })

func checkSwitch(tb testing.TB) {
	tb.Helper()
	switch v := testKafka(); v {
	case "", "embedded", "real":
	default:
		tb.Fatalf("%s=%q: accepted: real (Apache Kafka), embedded or unset (the embedded broker)", SwitchVar, v)
	}
}

// NeedsEmbedded skips the test on Apache Kafka: why names what only the
// embedded broker does (fault injection, ApplyRetention, a data directory
// to restart from, one of its quirks).
func NeedsEmbedded(tb testing.TB, why string) {
	tb.Helper()
	if Real() {
		tb.Skipf("embedded broker only (%s=real): %s", SwitchVar, why)
	}
}

// NeedsReal skips the test unless it runs against Apache Kafka.
func NeedsReal(tb testing.TB) {
	tb.Helper()
	checkSwitch(tb)
	if !Real() {
		tb.Skipf("needs Apache Kafka: run with %s=real (make test-kafka)", SwitchVar)
	}
}

// TestBroker is the broker a test runs against: the embedded broker, or
// with LADDER_TEST_KAFKA=real an Apache Kafka cluster.
type TestBroker struct {
	addr string
	fake *devbroker.Broker
	real *realkafka.Cluster
	sc   *sarama.Config // the admin configuration (SASL, TLS); nil for plain
}

// Addr is the bootstrap address, host:port.
func (b *TestBroker) Addr() string { return b.addr }

// Real is the Apache Kafka cluster, nil on the embedded broker.
func (b *TestBroker) Real() *realkafka.Cluster { return b.real }

// Fake is the embedded broker's kfake cluster (fault injection with
// ControlKey, ApplyRetention); on Apache Kafka it skips the test saying why
// it needs kfake.
func (b *TestBroker) Fake(tb testing.TB, why string) *kfake.Cluster {
	tb.Helper()
	if b.fake == nil {
		tb.Skipf("embedded broker only (%s=real): %s", SwitchVar, why)
	}
	return b.fake.Cluster()
}

// EnsureTopics creates the topics that do not exist yet with partitions
// partitions each (replication factor 1; the cluster's default on a
// three-node cluster). sc configures the admin client (nil: the broker's
// own client configuration).
func (b *TestBroker) EnsureTopics(ctx context.Context, sc *sarama.Config, partitions int32, topics ...string) error {
	if sc == nil {
		sc = b.sc
	}
	if b.real != nil {
		return devbroker.CreateTopics(ctx, b.real.Addrs(), sc, partitions, -1, topics...)
	}
	return b.fake.EnsureTopics(ctx, sc, partitions, topics...)
}

// mainRan is set by Main: the shared broker is stopped when the tests end.
var mainRan atomic.Bool

// Main runs the tests of a package and then stops the Apache Kafka broker
// they shared. A package whose tests use the broker helpers has
//
//	func TestMain(m *testing.M) { os.Exit(laddertest.Main(m)) }
//
// It also takes LADDER_TEST_KAFKA out of the environment (Real still
// answers): it is the tests' switch, not a variable of ladder's.
func Main(m *testing.M) int {
	mainRan.Store(true)
	testKafka()
	os.Unsetenv(SwitchVar)
	code := m.Run()
	if err := stopShared(); err != nil {
		fmt.Fprintln(os.Stderr, "laddertest: stopping the shared Kafka broker:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// shared is the one Apache Kafka broker the tests of a package binary
// share: starting a JVM takes seconds, so each test gets the broker
// emptied (every topic and consumer group deleted) instead of a new one.
var shared struct {
	mu      sync.Mutex
	cluster *realkafka.Cluster
	proxy   *Proxy // in front of the PROXIED listener, for ProxiedLadder
	err     error
	owner   testing.TB // the test using it now; nil between tests
}

// testBrokerConfig is what the test brokers set beyond realkafka's
// defaults: retention checked every second (Kafka's default is 5 minutes),
// so retention is testable.
var testBrokerConfig = map[string]string{
	"log.retention.check.interval.ms": "1000",
}

func startShared(tb testing.TB) (*realkafka.Cluster, *Proxy) {
	tb.Helper()
	checkSwitch(tb)
	if !mainRan.Load() {
		tb.Fatalf("%s=real: this package has no TestMain calling laddertest.Main, so the shared Kafka broker would outlive its tests; add\n\tfunc TestMain(m *testing.M) { os.Exit(laddertest.Main(m)) }", SwitchVar)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil && shared.err == nil {
		began := time.Now()
		shared.proxy, shared.err = newProxy()
		if shared.err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			shared.cluster, shared.err = realkafka.Start(ctx, realkafka.Config{BrokerConfig: testBrokerConfig,
				Proxied: func(int) string { return shared.proxy.Addr() }})
			cancel()
		}
		if shared.err != nil {
			if shared.proxy != nil {
				shared.proxy.close()
			}
			shared.err = fmt.Errorf("starting the shared Apache Kafka %s broker: %w", realkafka.Version, shared.err)
		} else {
			shared.proxy.SetTarget(shared.cluster.Node(1).ProxiedAddr)
			tb.Logf("laddertest: Apache Kafka %s started in %s on %s (shared by this package's tests)",
				realkafka.Version, time.Since(began).Round(time.Millisecond), shared.cluster.Bootstrap())
		}
	}
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.cluster, shared.proxy
}

func stopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil {
		return nil
	}
	shared.proxy.close()
	err := shared.cluster.Stop()
	shared.cluster = nil
	return err
}

// claimShared gives the test the shared broker, emptied first, and says
// so. A test (or a subtest of one) that asks for a second broker while it
// holds the shared one gets a broker of its own, as it would from the
// embedded broker: a JVM more, seconds more. When the test ends, its part
// of the shared broker's log is printed if it failed.
func claimShared(tb testing.TB) (b *TestBroker, isShared bool) {
	tb.Helper()
	c, proxy := startShared(tb)
	shared.mu.Lock()
	owner := shared.owner
	shared.mu.Unlock()
	if owner != nil {
		if owner == tb || strings.HasPrefix(tb.Name(), owner.Name()+"/") {
			own := Cluster(tb, 1, realkafka.Config{})
			return &TestBroker{addr: own.Node(1).Addr, real: own}, false
		}
		tb.Fatalf("%s=real: %s wants the shared Kafka broker while %s still uses it (parallel tests cannot share it)", SwitchVar, tb.Name(), owner.Name())
	}
	b = &TestBroker{addr: c.Node(1).Addr, real: c}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	if err := empty(ctx, c.Node(1).Addr); err != nil {
		tb.Fatalf("emptying the shared Kafka broker for %s: %v", tb.Name(), err)
	}
	if d := time.Since(began); d > 5*time.Second {
		tb.Logf("laddertest: emptying the shared Kafka broker took %s", d.Round(time.Millisecond))
	}
	mark := logSize(c)
	shared.mu.Lock()
	shared.owner = tb
	shared.mu.Unlock()
	tb.Cleanup(func() {
		proxy.reset()
		if tb.Failed() {
			tb.Logf("the shared Kafka broker's log during %s:\n%s", tb.Name(), logSince(c, mark))
		}
		shared.mu.Lock()
		shared.owner = nil
		shared.mu.Unlock()
	})
	return b, true
}

// empty deletes every topic (but Kafka's own) and every consumer group of
// the broker at addr. A group with members left by a process a test killed
// cannot be deleted until their session times out: it waits for that.
func empty(ctx context.Context, addr string) error {
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	admin, err := sarama.NewClusterAdmin([]string{addr}, sc)
	if err != nil {
		return err
	}
	defer admin.Close()
	topics, err := admin.ListTopics()
	if err != nil {
		return fmt.Errorf("listing topics: %w", err)
	}
	var deleted []string
	for t := range topics {
		if strings.HasPrefix(t, "__") {
			continue
		}
		if err := admin.DeleteTopic(t); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return fmt.Errorf("deleting topic %s: %w", t, err)
		}
		deleted = append(deleted, t)
	}
	for {
		groups, err := admin.ListConsumerGroups()
		if err != nil {
			return fmt.Errorf("listing consumer groups: %w", err)
		}
		var busy []string
		for g := range groups {
			if err := admin.DeleteConsumerGroup(g); err != nil && !errors.Is(err, sarama.ErrGroupIDNotFound) {
				if !errors.Is(err, sarama.ErrNonEmptyGroup) && !errors.Is(err, sarama.ErrOffsetsLoadInProgress) {
					return fmt.Errorf("deleting consumer group %s: %w", g, err)
				}
				busy = append(busy, g)
			}
		}
		left, err := admin.ListTopics()
		if err != nil {
			return fmt.Errorf("listing topics: %w", err)
		}
		for t := range left {
			if strings.HasPrefix(t, "__") {
				continue
			}
			if !slices.Contains(deleted, t) {
				// Created just before the last test ended, it reached the
				// broker's metadata after the first listing.
				if err := admin.DeleteTopic(t); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
					return fmt.Errorf("deleting topic %s: %w", t, err)
				}
				deleted = append(deleted, t)
			}
			busy = append(busy, "topic "+t)
		}
		if len(busy) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still there: %v: %w", busy, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Cluster starts an Apache Kafka cluster of its own for the test (nodes
// nodes; three or more: replication factor 3, min.insync.replicas=2) with
// cfg's other settings, and stops it when the test ends, printing each
// node's log first if the test failed. It skips the test unless
// LADDER_TEST_KAFKA=real.
func Cluster(tb testing.TB, nodes int, cfg realkafka.Config) *realkafka.Cluster {
	tb.Helper()
	NeedsReal(tb)
	cfg.Nodes = nodes
	bc := make(map[string]string, len(testBrokerConfig)+len(cfg.BrokerConfig))
	for k, v := range testBrokerConfig {
		bc[k] = v
	}
	for k, v := range cfg.BrokerConfig {
		bc[k] = v
	}
	cfg.BrokerConfig = bc
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	c, err := realkafka.Start(ctx, cfg)
	if err != nil {
		tb.Fatalf("starting a %d-node Apache Kafka %s cluster: %v", nodes, realkafka.Version, err)
	}
	tb.Logf("laddertest: %d-node Apache Kafka %s cluster started in %s on %s", nodes, realkafka.Version,
		time.Since(began).Round(time.Millisecond), c.Bootstrap())
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("Kafka logs:\n%s", logSince(c, nil))
		}
		if err := c.Stop(); err != nil {
			tb.Errorf("stopping the Kafka cluster: %v", err)
		}
	})
	return c
}

// ClusterBroker is the TestBroker of cluster c: bootstrap at its first
// node, topics made with the cluster's default replication factor by an
// admin client configured by sc (nil: plain, no SASL or TLS).
func ClusterBroker(c *realkafka.Cluster, sc *sarama.Config) *TestBroker {
	return &TestBroker{addr: c.Node(1).Addr, real: c, sc: sc}
}

// WaitReplicated waits until every partition of topics (every topic, Kafka's
// own included, when none is named) on cluster c has all its replicas in
// sync: what an operator waits for between two restarts of a rolling one.
func WaitReplicated(tb testing.TB, c *realkafka.Cluster, timeout time.Duration, topics ...string) {
	tb.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	var last string
	deadline := time.Now().Add(timeout)
	for {
		last = underReplicated(c, sc, topics)
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %s, not every replica is in sync: %s", timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// underReplicated names a partition with a replica out of sync ("" when none).
func underReplicated(c *realkafka.Cluster, sc *sarama.Config, topics []string) string {
	var live []string
	for _, n := range c.Nodes() {
		if n.Running() {
			live = append(live, n.Addr)
		}
	}
	admin, err := sarama.NewClusterAdmin(live, sc)
	if err != nil {
		return err.Error()
	}
	defer admin.Close()
	if len(topics) == 0 {
		all, err := admin.ListTopics()
		if err != nil {
			return err.Error()
		}
		for t := range all {
			topics = append(topics, t)
		}
	}
	md, err := admin.DescribeTopics(topics)
	if err != nil {
		return err.Error()
	}
	for _, t := range md {
		if t.Err != sarama.ErrNoError {
			return fmt.Sprintf("%s: %v", t.Name, t.Err)
		}
		for _, p := range t.Partitions {
			if len(p.Isr) < len(p.Replicas) || p.Leader < 0 {
				return fmt.Sprintf("%s/%d: replicas %v, in sync %v, leader %d", t.Name, p.ID, p.Replicas, p.Isr, p.Leader)
			}
		}
	}
	return ""
}

// logSize is the length of each node's log now.
func logSize(c *realkafka.Cluster) map[int]int64 {
	out := map[int]int64{}
	for _, n := range c.Nodes() {
		if fi, err := os.Stat(n.LogFile); err == nil {
			out[n.ID] = fi.Size()
		}
	}
	return out
}

// logSince is what each node logged after mark (all of it when mark is
// nil): every warning and error, then the last lines.
func logSince(c *realkafka.Cluster, mark map[int]int64) string {
	const tail = 60
	var b strings.Builder
	for _, n := range c.Nodes() {
		data, err := os.ReadFile(n.LogFile)
		if err != nil {
			fmt.Fprintf(&b, "--- node %d: no log: %v\n", n.ID, err)
			continue
		}
		if off := mark[n.ID]; off > 0 && off <= int64(len(data)) {
			data = data[off:]
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		var warn []string
		for _, l := range lines {
			if strings.Contains(l, "] WARN ") || strings.Contains(l, "] ERROR ") {
				warn = append(warn, l)
			}
		}
		if len(warn) > 200 {
			warn = append(warn[:100:100], append([]string{"..."}, warn[len(warn)-100:]...)...)
		}
		fmt.Fprintf(&b, "--- kafka node %d (%s): %d warnings and errors ---\n%s\n", n.ID, n.Addr, len(warn), strings.Join(warn, "\n"))
		fmt.Fprintf(&b, "--- kafka node %d: last %d lines (full log: %s, removed when the tests end) ---\n%s\n",
			n.ID, min(tail, len(lines)), n.LogFile, strings.Join(lines[max(0, len(lines)-tail):], "\n"))
	}
	return b.String()
}

// securityFor is the realkafka configuration that requires sec.
func securityFor(tb testing.TB, sec Secure) realkafka.Config {
	tb.Helper()
	if len(sec.Opts) > 0 {
		tb.Skipf("embedded broker only (%s=real): the test passes kfake options to the broker", SwitchVar)
	}
	var cfg realkafka.Config
	for _, u := range sec.Users {
		cfg.Users = append(cfg.Users, realkafka.User{Mechanism: u.Mechanism, Name: u.Name, Password: u.Password})
	}
	if sec.PKI != nil {
		cfg.TLS = &realkafka.TLS{CertFile: sec.PKI.ServerCertFile, KeyFile: sec.PKI.ServerKeyFile, CAFile: sec.PKI.CAFile,
			ClientAuth: sec.Mutual}
	}
	return cfg
}

// Leaders maps each partition of topic to the id of the node leading it.
// The admin client asks any node, and a node may learn of a topic just
// created (or of a new leader) a moment after the one that created it: it
// asks again, for up to 30 s, until a node answers with a leader for every
// partition.
func Leaders(tb testing.TB, c *realkafka.Cluster, topic string) map[int32]int32 {
	tb.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	admin, err := sarama.NewClusterAdmin(c.Addrs(), sc)
	if err != nil {
		tb.Fatalf("admin client: %v", err)
	}
	defer admin.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := admin.DescribeTopics([]string{topic})
		switch {
		case err != nil:
		case len(md) != 1:
			err = fmt.Errorf("%d topics in the answer", len(md))
		case md[0].Err != sarama.ErrNoError:
			err = md[0].Err
		case len(md[0].Partitions) == 0:
			err = errors.New("no partitions in the answer")
		}
		out := map[int32]int32{}
		if err == nil {
			for _, p := range md[0].Partitions {
				if p.Leader < 0 {
					err = fmt.Errorf("partition %d has no leader", p.ID)
					break
				}
				out[p.ID] = p.Leader
			}
		}
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			tb.Fatalf("describing %s for 30s: %v", topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
