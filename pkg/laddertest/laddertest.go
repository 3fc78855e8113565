// Package laddertest holds helpers for tests that run against the embedded
// broker over TCP: start a broker with topics, collect what reaches a topic,
// wait for a condition with a deadline. It is imported by tests only.
package laddertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/devbroker"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/tier"
)

// Broker starts a broker with topics created (partitions each) and stops
// it when the test ends: the in-memory embedded broker on a free port, or
// with LADDER_TEST_KAFKA=real the Apache Kafka broker this package's tests
// share, emptied of every topic and group first.
func Broker(tb testing.TB, partitions int32, topics ...string) *TestBroker {
	tb.Helper()
	checkSwitch(tb)
	var b *TestBroker
	if Real() {
		b, _ = claimShared(tb)
	} else {
		fake, err := devbroker.Start(devbroker.Config{Addr: "127.0.0.1:0", Partitions: partitions, Log: Logger(tb)})
		if err != nil {
			tb.Fatalf("starting embedded broker: %v", err)
		}
		tb.Cleanup(fake.Close)
		b = &TestBroker{addr: fake.Addr(), fake: fake}
	}
	if len(topics) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.EnsureTopics(ctx, nil, partitions, topics...); err != nil {
			tb.Fatalf("creating topics: %v", err)
		}
	}
	return b
}

// Ladder is Broker with the topics of ladder l (tiers, dead-letter and
// control topics) and the work topics.
func Ladder(tb testing.TB, l *tier.Ladder, partitions int32, work ...string) *TestBroker {
	tb.Helper()
	b := Broker(tb, partitions)
	b.EnsureLadder(tb, l, partitions, work...)
	return b
}

// EnsureLadder creates the topics of ladder l that are missing: its tiers
// and dead-letter topic with partitions partitions, its one-partition
// control topic, and the work topics.
func (b *TestBroker) EnsureLadder(tb testing.TB, l *tier.Ladder, partitions int32, work ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := b.EnsureTopics(ctx, nil, partitions, append(append(l.Topics(), l.DLQTopic()), work...)...)
	if err == nil {
		err = b.EnsureTopics(ctx, nil, 1, l.ControlTopic())
	}
	if err != nil {
		tb.Fatalf("creating the ladder's topics: %v", err)
	}
}

// ProxiedLadder is Ladder with the broker behind a Proxy: clients bootstrap
// from and are told to connect to the proxy's address, so cutting the proxy
// makes the broker unreachable for every client. (On Apache Kafka the
// proxy is in front of a listener of the shared broker that advertises it.)
func ProxiedLadder(tb testing.TB, l *tier.Ladder, partitions int32, work ...string) (*TestBroker, *Proxy) {
	tb.Helper()
	checkSwitch(tb)
	var (
		b *TestBroker
		p *Proxy
	)
	if Real() {
		var isShared bool
		if b, isShared = claimShared(tb); !isShared {
			tb.Fatalf("%s=real: %s asks for a second proxied broker; on Apache Kafka only the shared one has a proxy", SwitchVar, tb.Name())
		}
		_, p = startShared(tb)
		b.addr = p.Addr()
	} else {
		p = NewProxy(tb)
		fake, err := devbroker.Start(devbroker.Config{Addr: "127.0.0.1:0", Advertise: p.Addr(), Partitions: partitions, Log: Logger(tb)})
		if err != nil {
			tb.Fatalf("starting embedded broker: %v", err)
		}
		tb.Cleanup(fake.Close)
		p.SetTarget(fake.ListenAddr())
		b = &TestBroker{addr: fake.Addr(), fake: fake}
	}
	b.EnsureLadder(tb, l, partitions, work...)
	return b, p
}

// Kafka is the connection configuration for a broker at addr.
func Kafka(addr string) kafkaconf.Config {
	return kafkaconf.Config{Brokers: []string{addr}, KafkaVersion: "3.0.0", ClientID: "ladder-test"}
}

// Logger writes warnings and errors to the test log (all levels with LADDER_TEST_DEBUG=1).
func Logger(tb testing.TB) zerolog.Logger {
	level := zerolog.WarnLevel
	if testDebug() {
		level = zerolog.DebugLevel
	}
	return zerolog.New(zerolog.NewTestWriter(tb)).Level(level).With().Timestamp().Logger()
}

func testDebug() bool { return os.Getenv("LADDER_TEST_DEBUG") != "" }

// Received is a record read from a topic and when it was read.
type Received struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   map[string]string
	// HeaderList keeps every header in order, duplicates included.
	HeaderList []*sarama.RecordHeader
	Timestamp  time.Time
	At         time.Time
}

// Collector reads every partition of some topics from the oldest offset.
type Collector struct {
	mu   sync.Mutex
	recs []Received
	cond chan struct{} // closed and replaced on every new record
}

// Collect starts reading topics at addr until the test ends.
func Collect(tb testing.TB, addr string, topics ...string) *Collector {
	tb.Helper()
	return collect(tb, []string{addr}, plainConfig(sarama.ReadUncommitted), topics)
}

// CollectCommitted is Collect with read_committed isolation: records of
// aborted transactions are never seen.
func CollectCommitted(tb testing.TB, addr string, topics ...string) *Collector {
	tb.Helper()
	return collect(tb, []string{addr}, plainConfig(sarama.ReadCommitted), topics)
}

func plainConfig(isolation sarama.IsolationLevel) *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	sc.Consumer.IsolationLevel = isolation
	return sc
}

// CollectWith starts reading topics with the connection settings of k
// (SASL, TLS) until the test ends.
func CollectWith(tb testing.TB, k kafkaconf.Config, topics ...string) *Collector {
	tb.Helper()
	return collect(tb, k.BrokerList(), baseConfig(tb, k, sarama.ReadUncommitted), topics)
}

// CollectCommittedWith is CollectWith with read_committed isolation.
func CollectCommittedWith(tb testing.TB, k kafkaconf.Config, topics ...string) *Collector {
	tb.Helper()
	return collect(tb, k.BrokerList(), baseConfig(tb, k, sarama.ReadCommitted), topics)
}

func baseConfig(tb testing.TB, k kafkaconf.Config, isolation sarama.IsolationLevel) *sarama.Config {
	tb.Helper()
	sc, err := k.Base()
	if err != nil {
		tb.Fatalf("client configuration: %v", err)
	}
	sc.Consumer.IsolationLevel = isolation
	return sc
}

func collect(tb testing.TB, brokers []string, sc *sarama.Config, topics []string) *Collector {
	tb.Helper()
	sc.Consumer.MaxWaitTime = 50 * time.Millisecond
	consumer, err := sarama.NewConsumer(brokers, sc)
	if err != nil {
		tb.Fatalf("starting collector: %v", err)
	}
	c := &Collector{cond: make(chan struct{})}
	var (
		wg  sync.WaitGroup
		pcs []sarama.PartitionConsumer
	)
	for _, topic := range topics {
		var parts []int32
		retryNew(tb, func() (err error) { parts, err = consumer.Partitions(topic); return err }, "partitions of %s", topic)
		for _, p := range parts {
			var pc sarama.PartitionConsumer
			retryNew(tb, func() (err error) { pc, err = consumer.ConsumePartition(topic, p, sarama.OffsetOldest); return err },
				"consuming %s/%d", topic, p)
			pcs = append(pcs, pc)
			wg.Go(func() {
				for m := range pc.Messages() {
					c.add(m)
				}
			})
		}
	}
	tb.Cleanup(func() {
		for _, pc := range pcs {
			pc.AsyncClose()
		}
		wg.Wait()
		consumer.Close()
	})
	return c
}

// retryNew calls f until it succeeds, for up to 10 s while it fails
// because a topic was just created: Apache Kafka takes a moment to elect
// its partitions' leaders (the embedded broker none).
func retryNew(tb testing.TB, f func() error, format string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || !(errors.Is(err, sarama.ErrNotLeaderForPartition) ||
			errors.Is(err, sarama.ErrLeaderNotAvailable) || errors.Is(err, sarama.ErrUnknownTopicOrPartition)) {
			tb.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Collector) add(m *sarama.ConsumerMessage) {
	r := Received{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value,
		Headers: make(map[string]string, len(m.Headers)), HeaderList: m.Headers, Timestamp: m.Timestamp, At: time.Now()}
	for _, h := range m.Headers {
		r.Headers[string(h.Key)] = string(h.Value)
	}
	c.mu.Lock()
	c.recs = append(c.recs, r)
	close(c.cond)
	c.cond = make(chan struct{})
	c.mu.Unlock()
}

// Records returns a copy of what was read so far.
func (c *Collector) Records() []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Received(nil), c.recs...)
}

// Len is how many records were read so far.
func (c *Collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recs)
}

// WaitFor waits until done(records) is true or timeout passes, and returns
// the records read so far and whether done was reached.
func (c *Collector) WaitFor(timeout time.Duration, done func([]Received) bool) ([]Received, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		recs, changed := c.recs, c.cond
		ok := done(recs)
		recs = append([]Received(nil), recs...)
		c.mu.Unlock()
		if ok {
			return recs, true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return recs, false
		}
	}
}

// WaitDistinct waits until n records with distinct keys were read.
func (c *Collector) WaitDistinct(tb testing.TB, n int, timeout time.Duration) []Received {
	tb.Helper()
	recs, ok := c.WaitFor(timeout, func(rs []Received) bool { return len(Distinct(rs)) >= n })
	if !ok {
		tb.Fatalf("read %d distinct keys (%d records) in %s, want %d", len(Distinct(recs)), len(recs), timeout, n)
	}
	return recs
}

// Distinct maps each key to its first record.
func Distinct(recs []Received) map[string]Received {
	out := make(map[string]Received, len(recs))
	for _, r := range recs {
		if _, dup := out[string(r.Key)]; !dup {
			out[string(r.Key)] = r
		}
	}
	return out
}

// Eventually waits until cond is true, checking every 20ms, or fails the test after timeout.
func Eventually(tb testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Producer returns a synchronous producer (acks=all) for seeding topics.
func Producer(tb testing.TB, addr string) sarama.SyncProducer {
	tb.Helper()
	return producer(tb, addr, sarama.NewHashPartitioner)
}

// ManualProducer is Producer writing to the partition each message names.
func ManualProducer(tb testing.TB, addr string) sarama.SyncProducer {
	tb.Helper()
	return producer(tb, addr, sarama.NewManualPartitioner)
}

// TxnProducer is ManualProducer with transactional.id id: BeginTxn,
// SendMessage..., CommitTxn or AbortTxn.
func TxnProducer(tb testing.TB, addr, id string) sarama.SyncProducer {
	tb.Helper()
	return producer(tb, addr, sarama.NewManualPartitioner, func(sc *sarama.Config) {
		sc.Producer.Idempotent = true
		sc.Producer.Transaction.ID = id
		sc.Net.MaxOpenRequests = 1
	})
}

func producer(tb testing.TB, addr string, partitioner sarama.PartitionerConstructor, tune ...func(*sarama.Config)) sarama.SyncProducer {
	tb.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Partitioner = partitioner
	for _, t := range tune {
		t(sc)
	}
	p, err := sarama.NewSyncProducer([]string{addr}, sc)
	if err != nil {
		tb.Fatalf("starting producer: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// endKey prefixes the keys of the end markers ReadToEnd writes.
const endKey = "end-of-topic-"

// ReadToEnd writes an end marker (a plain record) to every partition of
// topic on the broker at addr and waits until c has read all of them. A
// consumer reads a partition in order, so c has then read everything written
// before the markers: a duplicate that arrived after the last new key is
// counted too. Stop the writers first. It returns what c read, without the
// markers.
func (c *Collector) ReadToEnd(tb testing.TB, addr, topic string) []Received {
	tb.Helper()
	return c.readToEnd(tb, []string{addr}, plainConfig(sarama.ReadUncommitted), topic)
}

// ReadToEndWith is ReadToEnd writing the markers with the connection
// settings of k (SASL, TLS).
func (c *Collector) ReadToEndWith(tb testing.TB, k kafkaconf.Config, topic string) []Received {
	tb.Helper()
	return c.readToEnd(tb, k.BrokerList(), baseConfig(tb, k, sarama.ReadUncommitted), topic)
}

func (c *Collector) readToEnd(tb testing.TB, brokers []string, sc *sarama.Config, topic string) []Received {
	tb.Helper()
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		tb.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		tb.Fatal(err)
	}
	defer p.Close()
	for _, part := range parts {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: part,
			Key: sarama.StringEncoder(fmt.Sprint(endKey, part))}); err != nil {
			tb.Fatalf("writing the end marker of %s/%d: %v", topic, part, err)
		}
	}
	isMarker := func(r Received) bool { return strings.HasPrefix(string(r.Key), endKey) }
	recs, ok := c.WaitFor(60*time.Second, func(rs []Received) bool {
		n := 0
		for _, r := range rs {
			if isMarker(r) {
				n++
			}
		}
		return n == len(parts)
	})
	if !ok {
		tb.Fatalf("the end markers of %s were not all read within 60s", topic)
	}
	out := recs[:0]
	for _, r := range recs {
		if !isMarker(r) {
			out = append(out, r)
		}
	}
	return out
}

// MetricValue is the sum of the samples named name in a Prometheus text
// exposition (a /metrics body) that carry every label of labels (each like
// `tier="delay-15s"`), and whether there was any.
func MetricValue(body, name string, labels ...string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}

// WaitStable waits until no transaction is open on topic/partition at addr:
// its last stable offset has reached its high watermark. Apache Kafka writes
// a transaction's commit or abort marker after EndTxn has returned, so a
// record produced right after CommitTxn or AbortTxn may land before the
// marker; a test that needs the marker first waits here.
func WaitStable(tb testing.TB, addr, topic string, partition int32) {
	tb.Helper()
	offset := func(iso sarama.IsolationLevel) int64 {
		sc := plainConfig(iso)
		client, err := sarama.NewClient([]string{addr}, sc)
		if err != nil {
			tb.Fatalf("client for the offsets of %s/%d: %v", topic, partition, err)
		}
		defer client.Close()
		o, err := client.GetOffset(topic, partition, sarama.OffsetNewest)
		if err != nil {
			tb.Fatalf("end offset of %s/%d: %v", topic, partition, err)
		}
		return o
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		stable, high := offset(sarama.ReadCommitted), offset(sarama.ReadUncommitted)
		if stable == high {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s/%d: last stable offset %d, high watermark %d after 30s: a transaction stays open", topic, partition, stable, high)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
