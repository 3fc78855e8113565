package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fetchedBatches reads every record of topics back with franz-go and returns
// the size in bytes of records of every record batch fetched, by topic and
// partition, in offset order, and the records read.
func fetchedBatches(t *testing.T, env *Env, topics []string, want int) (map[string]map[int32][]int, int) {
	t.Helper()
	var (
		mu      sync.Mutex
		batches = map[string]map[int32][]int{}
	)
	hook := fetchHook(func(topic string, partition int32, m kgo.FetchBatchMetrics) {
		mu.Lock()
		defer mu.Unlock()
		if batches[topic] == nil {
			batches[topic] = map[int32][]int{}
		}
		batches[topic][partition] = append(batches[topic][partition], m.UncompressedBytes)
	})
	cl, err := newKgo(env, kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.WithHooks(hook))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := 0
	for got < want && ctx.Err() == nil {
		f := cl.PollFetches(ctx)
		got += f.NumRecords()
	}
	return batches, got
}

type fetchHook func(topic string, partition int32, m kgo.FetchBatchMetrics)

func (h fetchHook) OnFetchBatchRead(_ kgo.BrokerMetadata, topic string, partition int32, m kgo.FetchBatchMetrics) {
	h(topic, partition, m)
}

// TestKgoLoaderBatches checks how the kgo loader batches: records of one
// topic-partition per batch, every batch filled to the batch size but the
// last of each topic, the partitions of each topic taken in turn.
// The batches are read back from the broker, not taken from the loader.
func TestKgoLoaderBatches(t *testing.T) {
	env := testEnv(t)
	env.setDefaults()
	ctx := context.Background()
	topics := map[string]int32{"load-a": 3, "load-b": 2}
	if err := createTopics(ctx, env, topics); err != nil {
		t.Fatal(err)
	}
	const n = 60_000
	val := value(100)
	gen := func(i int64) *sarama.ProducerMessage {
		topic := "load-a"
		if i%3 == 0 {
			topic = "load-b"
		}
		return &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(key("k", i)), Value: sarama.ByteEncoder(val),
			Headers:   []sarama.RecordHeader{{Key: []byte("ladder-target"), Value: []byte("work")}, {Key: []byte("ladder-due"), Value: []byte("1767225600000")}},
			Timestamp: time.Now()}
	}
	const producers = 2
	st, err := load(ctx, env, "kgo", 0, n, producers, gen)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kgo loader: %s", st)
	batches, got := fetchedBatches(t, env, []string{"load-a", "load-b"}, n)
	if got != n {
		t.Fatalf("read %d records back, loaded %d", got, n)
	}
	full := float64(DefaultBatchBytes-batchOverhead) * 0.95
	var total int64
	small := 0
	for topic, parts := range batches {
		if len(parts) != int(topics[topic]) {
			t.Errorf("%s: batches in %d partitions, want all %d", topic, len(parts), topics[topic])
		}
		for p, sizes := range parts {
			for _, b := range sizes {
				total++
				if b > DefaultBatchBytes {
					t.Errorf("%s/%d: a batch of %d bytes", topic, p, b)
				}
				if float64(b) < full {
					small++
				}
			}
			t.Logf("%s/%d: batches of %v bytes", topic, p, sizes)
		}
	}
	// Only each topic's last batch is partial by design; a loaded machine
	// may split a run in two (the client sends part of it before the
	// flush), so the check is on the mean: sarama's small batches fail it
	// by a factor of thirty.
	var sum int64
	for _, parts := range batches {
		for _, sizes := range parts {
			for _, b := range sizes {
				sum += int64(b)
			}
		}
	}
	if mean := float64(sum) / float64(total); mean < full*0.6 {
		t.Errorf("batches of %.0f bytes on average (%d of %d below 95%% of %d), want at least %.0f", mean, small, total, DefaultBatchBytes, full*0.6)
	}
	if st.Loader != LoaderKgo || st.Records != n || st.Batches != total || st.BatchBytes < full*0.6 || math.Abs(st.BatchRecords*float64(st.Batches)-n) > 0.5 {
		t.Errorf("loader stats %+v, read back %d batches", st, total)
	}

	// sarama's loader, for comparison: many small batches, bounded by its
	// Flush.Bytes (512 KiB), and every record.
	env.Loader = LoaderSarama
	if err := createTopics(ctx, env, map[string]int32{"load-a-sarama": 3, "load-b-sarama": 2}); err != nil {
		t.Fatal(err)
	}
	ss, err := load(ctx, env, "sarama", 0, n, 2, func(i int64) *sarama.ProducerMessage {
		m := gen(i)
		m.Topic += "-sarama"
		return m
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sarama loader: %s", ss)
	_, got = fetchedBatches(t, env, []string{"load-a-sarama", "load-b-sarama"}, n)
	if got != n || ss.Loader != LoaderSarama || ss.Batches == 0 || ss.BatchBytes > 512<<10 || ss.BatchBytes >= st.BatchBytes {
		t.Errorf("sarama loader: read %d of %d, stats %+v", got, n, ss)
	}
}

// TestRecordBytes checks the size bound against franz-go's own batches:
// a batch the loader fills with records of recordBytes summing to at most
// B holds them all in one batch of at most B bytes.
func TestRecordBytes(t *testing.T) {
	r := &kgo.Record{Key: []byte("key"), Value: make([]byte, 100), Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("b")}}}
	// attributes(1) ts(3) offset(3) key(1+3) value(2+100) headers(1) header(1+1+1+1): 118, then its length (2)
	if got, want := recordBytes(r), 1+3+3+(1+3)+(2+100)+1+(1+1+1+1)+2; got != want {
		t.Errorf("recordBytes = %d, want %d", got, want)
	}
	if got := recordBytes(&kgo.Record{}); got != 1+3+3+1+1+1+1 {
		t.Errorf("null key and value: %d", got)
	}
	for _, c := range []struct {
		v    int64
		want int
	}{{0, 1}, {-1, 1}, {63, 1}, {64, 2}, {8191, 2}, {8192, 3}, {1 << 20, 4}} {
		if got := varintLen(c.v); got != c.want {
			t.Errorf("varintLen(%d) = %d, want %d", c.v, got, c.want)
		}
	}
}

func TestParseBaselines(t *testing.T) {
	for in, want := range map[string]string{"": "[]", "none": "[]", "kgo": "[kgo]", "sarama, kgo,sarama": "[sarama kgo]"} {
		got, err := ParseBaselines(in)
		if err != nil || fmt.Sprint(got) != want {
			t.Errorf("ParseBaselines(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"group", "kgo,", "librdkafka"} {
		if _, err := ParseBaselines(bad); err == nil {
			t.Errorf("ParseBaselines(%q) accepted", bad)
		}
	}
}

func TestEnvValidate(t *testing.T) {
	for _, e := range []Env{{Loader: "kcat"}, {BatchBytes: 100}, {BatchBytes: 64 << 20}} {
		e.Kafka.Brokers, e.Kafka.KafkaVersion, e.Kafka.ClientID = []string{"127.0.0.1:9"}, "3.0.0", "x"
		e.setDefaults()
		if err := e.validate(); err == nil {
			t.Errorf("%+v accepted", e)
		}
	}
}

func TestWatchProc(t *testing.T) {
	p, err := WatchProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Memory()
	if err != nil || m.RSS <= 0 || m.HWM < m.RSS || p.CPU() <= 0 || p.Stop(time.Second) != nil {
		t.Errorf("memory %+v (%v), CPU %s", m, err, p.CPU())
	}
	if _, err := WatchProc(-5); err == nil {
		t.Error("a process that does not exist is watched")
	}
}

// TestBatchCounterWaits checks that the loader waits for franz-go's batch
// hook, which runs on a goroutine of its own after the records are
// acknowledged: a CI run counted 10 of the 11 batches it had written.
func TestBatchCounterWaits(t *testing.T) {
	c := newBatchCounter(5)
	release := make(chan struct{})
	go func() {
		<-release
		c.OnProduceBatchWritten(kgo.BrokerMetadata{}, "t", 0, kgo.ProduceBatchMetrics{NumRecords: 3, UncompressedBytes: 30})
		c.OnProduceBatchWritten(kgo.BrokerMetadata{}, "t", 1, kgo.ProduceBatchMetrics{NumRecords: 2, UncompressedBytes: 20})
	}()
	if err := c.wait(context.Background(), time.Millisecond); err == nil || !strings.Contains(err.Error(), "0 of 5 records") {
		t.Fatalf("wait before any batch was counted: %v", err)
	}
	close(release)
	if err := c.wait(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if b, r, by := c.batches.Load(), c.records.Load(), c.bytes.Load(); b != 2 || r != 5 || by != 50 {
		t.Errorf("counted %d batches, %d records, %d bytes; want 2, 5, 50", b, r, by)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := newBatchCounter(1).wait(ctx, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("wait with a cancelled context: %v", err)
	}
}

// TestKgoLoaderWaitsForBatchHook loads records while franz-go's batch hook
// is held back for a second after each batch: the loader's stats still
// count every record it loaded.
func TestKgoLoaderWaitsForBatchHook(t *testing.T) {
	env := testEnv(t)
	env.setDefaults()
	ctx := context.Background()
	if err := createTopics(ctx, env, map[string]int32{"load-hook": 1}); err != nil {
		t.Fatal(err)
	}
	testHookBatchWritten = func() { time.Sleep(time.Second) }
	defer func() { testHookBatchWritten = nil }()
	const n = 1_000
	val := value(100)
	gen := func(i int64) *sarama.ProducerMessage {
		return &sarama.ProducerMessage{Topic: "load-hook", Key: sarama.ByteEncoder(key("k", i)), Value: sarama.ByteEncoder(val)}
	}
	st, err := load(ctx, env, "kgo", 0, n, 1, gen)
	if err != nil {
		t.Fatal(err)
	}
	if st.Batches == 0 || math.Round(st.BatchRecords*float64(st.Batches)) != n {
		t.Errorf("stats count %d batches of %.1f records for %d records loaded: %s", st.Batches, st.BatchRecords, n, st)
	}
}
