package laddertest_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/ladder/ladder/pkg/devbroker"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/laddertest/realkafka"
)

// The tests of this file pin down where the embedded broker (kfake) and
// Apache Kafka differ, each on the broker the suite runs on (both in make
// test): KAFKA.md lists what they found.

func saramaConfig() *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	return sc
}

func admin(t *testing.T, addr string) sarama.ClusterAdmin {
	t.Helper()
	a, err := sarama.NewClusterAdmin([]string{addr}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func createTopic(t *testing.T, a sarama.ClusterAdmin, topic string, configs map[string]string) error {
	t.Helper()
	entries := map[string]*string{}
	for k, v := range configs {
		entries[k] = &v
	}
	return a.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1, ConfigEntries: entries}, false)
}

// firstRecord reads the first record of topic/0 (the collector waits for
// a new topic's leader).
func firstRecord(t *testing.T, addr, topic string) laddertest.Received {
	t.Helper()
	recs, ok := laddertest.Collect(t, addr, topic).WaitFor(30*time.Second, func(rs []laddertest.Received) bool { return len(rs) > 0 })
	if !ok {
		t.Fatalf("nothing read from %s in 30s", topic)
	}
	return recs[0]
}

// TestDifferenceLogAppendTime: a topic with
// message.timestamp.type=LogAppendTime, a record produced with a
// timestamp an hour old. Kafka stamps it with the broker's clock; kfake
// keeps the producer's. (ladder stamps every record it forwards, so a tier
// measures from the forwarding time on both.)
func TestDifferenceLogAppendTime(t *testing.T) {
	b := laddertest.Broker(t, 1)
	if err := createTopic(t, admin(t, b.Addr()), "lat", map[string]string{"message.timestamp.type": "LogAppendTime"}); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	p := laddertest.Producer(t, b.Addr())
	before := time.Now().Add(-time.Second)
	laddertest.Eventually(t, 10*time.Second, func() bool {
		_, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "lat", Value: sarama.StringEncoder("v"), Timestamp: old})
		return err == nil
	}, "producing to a new topic")
	r := firstRecord(t, b.Addr(), "lat")
	applied := r.Timestamp.After(before)
	t.Logf("LogAppendTime topic, producer timestamp %s: read back %s (broker time applied: %v)",
		old.Format(time.TimeOnly), r.Timestamp.Format(time.TimeOnly), applied)
	if laddertest.Real() && !applied {
		t.Errorf("Apache Kafka kept the producer's timestamp %s on a LogAppendTime topic", r.Timestamp)
	}
	if !laddertest.Real() && !r.Timestamp.Equal(old) {
		t.Errorf("kfake now applies LogAppendTime (%s, produced with %s): update KAFKA.md", r.Timestamp, old)
	}
}

// TestDifferenceRetention: a record stamped an hour ago, on a topic with
// retention.ms one minute. Kafka deletes it at its next retention check
// (log.retention.check.interval.ms, 5 minutes by default, 1 s on the test
// brokers), active segment included: retention judges record timestamps,
// which is why ladder stamps forwarded records anew. kfake deletes it only
// on a ticker (log.cleaner.backoff.ms; the dev broker sets 10 s), or at
// once with ApplyRetention.
func TestDifferenceRetention(t *testing.T) {
	b := laddertest.Broker(t, 1)
	a := admin(t, b.Addr())
	if err := createTopic(t, a, "aged", map[string]string{"retention.ms": "60000"}); err != nil {
		t.Fatal(err)
	}
	p := laddertest.Producer(t, b.Addr())
	laddertest.Eventually(t, 10*time.Second, func() bool {
		_, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "aged", Value: sarama.StringEncoder("old"), Timestamp: time.Now().Add(-time.Hour)})
		return err == nil
	}, "producing to a new topic")
	client, err := sarama.NewClient([]string{b.Addr()}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	start := func() int64 {
		o, err := client.GetOffset("aged", 0, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	produced := time.Now()
	if !laddertest.Real() {
		b.Fake(t, "ApplyRetention").ApplyRetention()
	}
	laddertest.Eventually(t, 30*time.Second, func() bool { return start() == 1 }, "the hour-old record was not deleted")
	t.Logf("a record an hour old on a topic kept one minute: deleted after %s", time.Since(produced).Round(10*time.Millisecond))
}

// TestDifferenceGroupWithoutCommits: the committed offsets of a group that
// never committed. Kafka answers offset -1 and no error; kfake answers
// GROUP_ID_NOT_FOUND (readers treat both as "no commits yet").
func TestDifferenceGroupWithoutCommits(t *testing.T) {
	b := laddertest.Broker(t, 1, "t")
	a := admin(t, b.Addr())
	resp, err := a.ListConsumerGroupOffsets("never-committed", map[string][]int32{"t": {0}})
	// A fresh Kafka broker answers COORDINATOR_LOAD_IN_PROGRESS while it
	// loads __consumer_offsets (routine, and what ladder waits out): ask
	// again, for up to 10 s.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) &&
		(errors.Is(err, sarama.ErrOffsetsLoadInProgress) || errOf(resp) == sarama.ErrOffsetsLoadInProgress); {
		time.Sleep(100 * time.Millisecond)
		resp, err = a.ListConsumerGroupOffsets("never-committed", map[string][]int32{"t": {0}})
	}
	var block *sarama.OffsetFetchResponseBlock
	if err == nil {
		block = resp.GetBlock("t", 0)
	}
	t.Logf("OffsetFetch for a group without commits: error %v, response error %v, block %+v", err, errOf(resp), block)
	if laddertest.Real() {
		if err != nil || errOf(resp) != sarama.ErrNoError || block == nil || block.Offset != -1 || block.Err != sarama.ErrNoError {
			t.Errorf("Apache Kafka: want offset -1 and no error")
		}
	} else if !errors.Is(err, sarama.ErrGroupIDNotFound) && errOf(resp) != sarama.ErrGroupIDNotFound {
		t.Errorf("kfake now answers %v / %v, not GROUP_ID_NOT_FOUND: update KAFKA.md", err, errOf(resp))
	}
}

func errOf(r *sarama.OffsetFetchResponse) sarama.KError {
	if r == nil {
		return sarama.ErrNoError
	}
	return r.Err
}

// TestDifferenceUnknownTopicConfig: creating a topic with a config Kafka
// does not know. Kafka refuses it (INVALID_CONFIG); kfake accepts it
// silently (ladder topics validates config names itself).
func TestDifferenceUnknownTopicConfig(t *testing.T) {
	b := laddertest.Broker(t, 1)
	err := createTopic(t, admin(t, b.Addr()), "odd", map[string]string{"retention.msec": "1000"})
	t.Logf("creating a topic with retention.msec: %v", err)
	if laddertest.Real() && !errors.Is(err, sarama.ErrInvalidConfig) {
		t.Errorf("Apache Kafka accepted an unknown topic config (or failed otherwise): %v", err)
	}
	if !laddertest.Real() && err != nil {
		t.Errorf("kfake now refuses an unknown topic config: %v: update KAFKA.md", err)
	}
}

// TestDifferenceAutoTopicCreation: Kafka creates a topic a client asks
// metadata for when auto.create.topics.enable is true, its default (the
// test brokers set it false, as production clusters often do); kfake only
// with its AllowAutoTopicCreation option. Either way, ladder's clients ask
// it not to (kafkaconf: Metadata.AllowAutoTopicCreation=false): a record for
// a missing target never creates it.
func TestDifferenceAutoTopicCreation(t *testing.T) {
	var addr string
	if laddertest.Real() {
		addr = laddertest.Cluster(t, 1, realkafka.Config{BrokerConfig: map[string]string{"auto.create.topics.enable": "true"}}).Node(1).Addr
	} else {
		addr = laddertest.Broker(t, 1).Addr()
	}
	exists := func(topic string) bool {
		topics, err := admin(t, addr).ListTopics()
		if err != nil {
			t.Fatal(err)
		}
		_, ok := topics[topic]
		return ok
	}
	// ladder's producer configuration: it asks the broker not to create.
	k := laddertest.Kafka(addr)
	sc, err := k.Producer()
	if err != nil {
		t.Fatal(err)
	}
	sc.Producer.Retry.Max = 1
	sc.Metadata.Retry.Max = 1
	p, err := sarama.NewSyncProducer([]string{addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, _, ladderErr := p.SendMessage(&sarama.ProducerMessage{Topic: "by-ladder", Value: sarama.StringEncoder("v")})
	if exists("by-ladder") || ladderErr == nil {
		t.Errorf("ladder's producer configuration created topic by-ladder (send: %v)", ladderErr)
	}
	// sarama's default asks the broker to create.
	plain := saramaConfig()
	q, err := sarama.NewSyncProducer([]string{addr}, plain)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	_, _, plainErr := q.SendMessage(&sarama.ProducerMessage{Topic: "by-default", Value: sarama.StringEncoder("v")})
	created := exists("by-default")
	t.Logf("ladder's producer: %v; sarama's defaults: created %v (%v)", ladderErr, created, plainErr)
	if laddertest.Real() != created {
		t.Errorf("auto topic creation: created %v on %s", created, map[bool]string{true: "Apache Kafka with auto.create.topics.enable=true", false: "kfake"}[laddertest.Real()])
	}
}

// TestDifferenceTransactionMarkers: Kafka writes a transaction's commit
// marker after EndTxn has returned, so a record produced right after
// CommitTxn may land before the marker; kfake writes it before answering.
// (The count on Kafka is recorded, not asserted: it depends on timing.)
func TestDifferenceTransactionMarkers(t *testing.T) {
	b := laddertest.Broker(t, 1, "tx")
	txn := laddertest.TxnProducer(t, b.Addr(), "difference-markers")
	plain := laddertest.ManualProducer(t, b.Addr())
	client, err := sarama.NewClient([]string{b.Addr()}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const rounds = 20
	before := 0
	for i := range rounds {
		if err := txn.BeginTxn(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := txn.SendMessage(&sarama.ProducerMessage{Topic: "tx", Value: sarama.StringEncoder("in")}); err != nil {
			t.Fatal(err)
		}
		if err := txn.CommitTxn(); err != nil {
			t.Fatal(err)
		}
		// The transaction's record is at offset 3i; the marker takes
		// 3i+1 unless the plain record got there first.
		_, off, err := plain.SendMessage(&sarama.ProducerMessage{Topic: "tx", Value: sarama.StringEncoder("after")})
		if err != nil {
			t.Fatal(err)
		}
		if off == int64(3*i+1) {
			before++
		}
		laddertest.WaitStable(t, b.Addr(), "tx", 0)
	}
	t.Logf("%d of %d records produced right after CommitTxn landed before its commit marker", before, rounds)
	if !laddertest.Real() && before != 0 {
		t.Errorf("kfake wrote %d markers after the next record: update KAFKA.md", before)
	}
}

// TestDifferenceKcatSASL: kcat (librdkafka) logging in with SASL/PLAIN.
// Apache Kafka accepts it; kfake does not (librdkafka wants SaslHandshake
// v0, which kfake does not serve). SCRAM from
// librdkafka before 2.6.1 fails against Kafka 4 with the right password
// (cmd/ladder TestClusterSecured checks it).
func TestDifferenceKcatSASL(t *testing.T) {
	kc, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (apt-get install kcat)")
	}
	const pw = "pw-kcat-plain-Jt5e"
	b, _ := laddertest.SecureBroker(t, laddertest.Secure{Users: []devbroker.User{{Mechanism: "PLAIN", Name: "alice", Password: pw}}}, 1, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kc, "-L", "-b", b.Addr(), "-m", "5", "-X", "security.protocol=SASL_PLAINTEXT",
		"-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=alice", "-X", "sasl.password="+pw).CombinedOutput()
	t.Logf("kcat -L with SASL/PLAIN: %v: %s", err, firstLines(string(out), 3))
	if laddertest.Real() && (err != nil || !strings.Contains(string(out), "1 brokers")) {
		t.Errorf("kcat could not log in with SASL/PLAIN to Apache Kafka")
	}
	if !laddertest.Real() && err == nil {
		t.Errorf("kcat logged in with SASL/PLAIN to kfake: update KAFKA.md")
	}
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[:min(n, len(lines))], " | ")
}

// TestDifferenceProtocolVersions: a round trip (produce, consume in a
// group, commit) with each LADDER_KAFKA_VERSION. kfake serves every
// version sarama speaks; Kafka 4 dropped the oldest request versions
// (KIP-896), so a low LADDER_KAFKA_VERSION may fail there. The default,
// 3.0.0, must work on both.
func TestDifferenceProtocolVersions(t *testing.T) {
	b := laddertest.Broker(t, 1)
	a := admin(t, b.Addr())
	var works, fails []string
	for i, v := range []string{"1.0.0", "2.1.0", "2.8.0", "3.0.0", "3.9.0", "4.0.0"} {
		topic := fmt.Sprintf("v%d", i)
		if err := createTopic(t, a, topic, nil); err != nil {
			t.Fatal(err)
		}
		err := roundTrip(t, b.Addr(), v, topic)
		if err == nil {
			works = append(works, v)
		} else {
			fails = append(fails, fmt.Sprintf("%s (%v)", v, err))
		}
		if v == "3.0.0" && err != nil { // kafkaconf's default
			t.Errorf("the default LADDER_KAFKA_VERSION %s: %v", v, err)
		}
	}
	t.Logf("LADDER_KAFKA_VERSION that works: %v; fails: %v", works, fails)
}

// roundTrip produces a record with protocol version v and reads it back in
// a consumer group that commits.
func roundTrip(t *testing.T, addr, v, topic string) error {
	t.Helper()
	k := laddertest.Kafka(addr)
	k.KafkaVersion = v
	sc, err := k.Producer()
	if err != nil {
		return err
	}
	sc.Producer.Retry.Max = 3
	// Wait for the new topic's leader, then produce.
	var p sarama.SyncProducer
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p, err = sarama.NewSyncProducer([]string{addr}, sc); err == nil {
			if _, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("v")}); err == nil {
				break
			}
			p.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("producing: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.Close()
	cc, err := k.Consumer()
	if err != nil {
		return err
	}
	g, err := sarama.NewConsumerGroup([]string{addr}, "versions-"+topic, cc)
	if err != nil {
		return fmt.Errorf("consumer group: %w", err)
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := &oneRecord{got: make(chan struct{})}
	failed := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, h); err != nil {
				failed <- err
				return
			}
		}
	}()
	select {
	case <-h.got:
		return nil
	case err := <-failed:
		return fmt.Errorf("consuming: %w", err)
	case <-ctx.Done():
		return errors.New("no record consumed in 30s")
	}
}

type oneRecord struct{ got chan struct{} }

func (*oneRecord) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (*oneRecord) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *oneRecord) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		s.MarkMessage(m, "")
		s.Commit()
		select {
		case <-h.got:
		default:
			close(h.got)
		}
	}
	return nil
}

// offsetFetch reads group's committed offsets of partitions 0 and 1 of
// topic from its coordinator (OffsetFetch v7+, RequireStable as given).
func offsetFetch(t *testing.T, client sarama.Client, group, topic string, stable bool) (*sarama.OffsetFetchResponse, error) {
	t.Helper()
	coord, err := client.Coordinator(group)
	if err != nil {
		return nil, err
	}
	req := sarama.NewOffsetFetchRequest(sarama.V3_0_0_0, group, map[string][]int32{topic: {0, 1}})
	req.RequireStable = stable
	return coord.FetchOffset(req)
}

// commitOffset commits offset with metadata for topic/partition in group
// outside any group generation (a "simple" commit, as an admin tool makes).
func commitOffset(t *testing.T, client sarama.Client, group, topic string, partition int32, offset int64, metadata string) (sarama.KError, error) {
	t.Helper()
	coord, err := client.Coordinator(group)
	if err != nil {
		return 0, err
	}
	req := sarama.NewOffsetCommitRequest(client.Config(), group)
	req.ConsumerGroupGeneration = -1
	req.AddBlock(topic, partition, offset, 0, metadata)
	resp, err := coord.CommitOffset(req)
	if err != nil {
		return 0, err
	}
	return resp.Errors[topic][partition], nil
}

// kerrName is how a Kafka error code is logged: sarama's text, or "no error".
func kerrName(k sarama.KError) string {
	if k == sarama.ErrNoError {
		return "no error"
	}
	return k.Error()
}

// TestDifferenceCommitMetadata: both brokers store a commit's metadata
// string and return it (the forwarder keeps there what passed a parked
// record, pkg/offsets/resume.go). Apache Kafka refuses metadata longer
// than offset.metadata.max.bytes (default 4096) with
// OFFSET_METADATA_TOO_LARGE; kfake takes any length.
func TestDifferenceCommitMetadata(t *testing.T) {
	b := laddertest.Broker(t, 2, "meta")
	client, err := sarama.NewClient([]string{b.Addr()}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, n := range []int{4096, 4097} {
		meta := "ladder/1 " + strings.Repeat("x", n-len("ladder/1 "))
		kerr, err := commitOffset(t, client, "metadata", "meta", 0, int64(n), meta)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := offsetFetch(t, client, "metadata", "meta", false)
		if err != nil {
			t.Fatal(err)
		}
		block := resp.GetBlock("meta", 0)
		stored := block != nil && block.Offset == int64(n) && block.Metadata == meta
		t.Logf("a commit with %d bytes of metadata: %s; stored with its metadata: %v", n, kerrName(kerr), stored)
		switch {
		case n <= 4096 && (kerr != sarama.ErrNoError || !stored):
			t.Errorf("%d bytes of metadata: %v, stored %v; want it stored on both brokers", n, kerr, stored)
		case n > 4096 && laddertest.Real() && (kerr != sarama.ErrOffsetMetadataTooLarge || stored):
			t.Errorf("Apache Kafka took %d bytes of metadata (%v): want OFFSET_METADATA_TOO_LARGE over offset.metadata.max.bytes", n, kerr)
		case n > 4096 && !laddertest.Real() && (kerr != sarama.ErrNoError || !stored):
			t.Errorf("kfake now refuses %d bytes of metadata (%v): update KAFKA.md", n, kerr)
		}
	}
}

// TestDifferenceRequireStable: OffsetFetch with RequireStable (KIP-447,
// what the forwarder asks before it resumes a partition in exactly-once
// mode) while a transaction has committed an offset of partition 0 of the
// group (TxnOffsetCommit sent, EndTxn not yet). Apache Kafka answers
// UNSTABLE_OFFSET_COMMIT for partition 0 only; kfake for every partition
// of the group. Both give the new offset once the transaction commits.
// (pkg/group retries such a fetch every 100 ms until it is stable.) The
// requests go raw through franz-go's kgo: sarama sends TxnOffsetCommit and
// EndTxn together in CommitTxn, so the window cannot be held open with it.
func TestDifferenceRequireStable(t *testing.T) {
	b := laddertest.Broker(t, 2, "stable")
	client, err := sarama.NewClient([]string{b.Addr()}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const group, txnID = "stable-group", "difference-stable"
	if kerr, err := commitOffset(t, client, group, "stable", 1, 3, ""); err != nil || kerr != sarama.ErrNoError {
		t.Fatalf("committing stable/1: %v %v", kerr, err)
	}
	// Requests as Kafka 3.0 knew them (no topic IDs), as ladder's clients send them.
	kc, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.MaxVersions(kversion.V3_0_0()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	check := func(what string, code int16, err error) {
		t.Helper()
		if err == nil {
			err = kerr.ErrorForCode(code)
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// The transaction coordinator may not be ready at once (Kafka creates
	// __transaction_state on first use): InitProducerID is retried.
	var pid int64
	var epoch int16
	laddertest.Eventually(t, 30*time.Second, func() bool {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID, req.TransactionTimeoutMillis = kmsg.StringPtr(txnID), 60_000
		resp, err := req.RequestWith(ctx, kc)
		if err != nil || resp.ErrorCode != 0 {
			return false
		}
		pid, epoch = resp.ProducerID, resp.ProducerEpoch
		return true
	}, "InitProducerID for %s", txnID)
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txnID, pid, epoch, group
	addResp, err := add.RequestWith(ctx, kc)
	if err == nil {
		check("AddOffsetsToTxn", addResp.ErrorCode, nil)
	}
	check("AddOffsetsToTxn", 0, err)
	commit := kmsg.NewPtrTxnOffsetCommitRequest()
	commit.TransactionalID, commit.Group, commit.ProducerID, commit.ProducerEpoch = txnID, group, pid, epoch
	commit.Generation = -1
	ct := kmsg.NewTxnOffsetCommitRequestTopic()
	ct.Topic = "stable"
	cp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	cp.Partition, cp.Offset = 0, 5
	ct.Partitions = append(ct.Partitions, cp)
	commit.Topics = append(commit.Topics, ct)
	commitResp, err := commit.RequestWith(ctx, kc)
	check("TxnOffsetCommit", 0, err)
	for _, rt := range commitResp.Topics {
		for _, rp := range rt.Partitions {
			check("TxnOffsetCommit of stable/0", rp.ErrorCode, nil)
		}
	}

	fetch := func(stable bool) (p0, p1 sarama.KError, off0, off1 int64) {
		t.Helper()
		resp, err := offsetFetch(t, client, group, "stable", stable)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Err != sarama.ErrNoError {
			t.Fatalf("OffsetFetch: %v", resp.Err)
		}
		b0, b1 := resp.GetBlock("stable", 0), resp.GetBlock("stable", 1)
		if b0 == nil || b1 == nil {
			t.Fatalf("OffsetFetch answered no block for stable/0 or stable/1")
		}
		return b0.Err, b1.Err, b0.Offset, b1.Offset
	}
	p0, p1, off0, off1 := fetch(true)
	t.Logf("RequireStable while a transaction commits stable/0: stable/0 %s (offset %d), stable/1 %s (offset %d)", kerrName(p0), off0, kerrName(p1), off1)
	if p0 != sarama.ErrUnstableOffsetCommit {
		t.Errorf("stable/0, whose offset the open transaction commits: %v, want UNSTABLE_OFFSET_COMMIT", p0)
	}
	if laddertest.Real() && (p1 != sarama.ErrNoError || off1 != 3) {
		t.Errorf("Apache Kafka: stable/1, not in the transaction: %v offset %d, want no error and offset 3", p1, off1)
	}
	if !laddertest.Real() && p1 != sarama.ErrUnstableOffsetCommit {
		t.Errorf("kfake now answers %v for a partition the transaction does not commit (it answered UNSTABLE_OFFSET_COMMIT for the whole group): update KAFKA.md", p1)
	}
	if q0, _, o0, _ := fetch(false); q0 != sarama.ErrNoError || o0 != -1 {
		t.Errorf("without RequireStable during the transaction: stable/0 %v offset %d, want no error and the last committed (none: -1)", q0, o0)
	}

	end := kmsg.NewPtrEndTxnRequest()
	end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = txnID, pid, epoch, true
	endResp, err := end.RequestWith(ctx, kc)
	if err == nil {
		check("EndTxn", endResp.ErrorCode, nil)
	}
	check("EndTxn", 0, err)
	// Kafka writes the commit marker after EndTxn returns: wait for it.
	laddertest.Eventually(t, 10*time.Second, func() bool {
		p0, p1, off0, off1 = fetch(true)
		return p0 == sarama.ErrNoError && p1 == sarama.ErrNoError && off0 == 5 && off1 == 3
	}, "after the commit: stable/0 %v offset %d, stable/1 %v offset %d; want 5 and 3", p0, off0, p1, off1)
}
