package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ladder/ladder/pkg/kafkaconf"
)

// Loaders: how a scenario writes the records it needs before it measures.
const (
	// LoaderKgo writes with franz-go (kgo) the way librdkafka and the Java
	// client batch under a bulk load: every record batch holds records of
	// one topic-partition and is filled up to Env.BatchBytes (1 MiB). The
	// loader cuts the records of each topic into runs of one batch's worth
	// (by their encoded size), gives each run the topic's next partition in
	// turn, and one of its producers writes the run and flushes it: one full
	// batch per produce request (each topic's last may be partial).
	// Batches leave only when flushed (kgo.ManualFlushing: a linger as long
	// as the run takes to write, however slow the machine); acks from the
	// leader, no compression, no idempotence (setting up, not measuring).
	LoaderKgo = "kgo"
	// LoaderSarama writes with sarama async producers keyed by murmur2:
	// its small batches (a batch leaves when the previous request to the
	// broker is answered, 512 KiB or 5 ms at most), spread over every
	// partition at once. The loader of earlier releases, for comparison.
	LoaderSarama = "sarama"
	// DefaultBatchBytes is the kgo loader's batch size: librdkafka's
	// batch.size default and Kafka's default max.message.bytes (about 1 MB).
	DefaultBatchBytes = 1 << 20
	// MinBatchBytes and MaxBatchBytes bound the kgo loader's batch size
	// (a broker refuses batches above its message.max.bytes, about 1 MB by
	// default: raise it on the topics before going above).
	MinBatchBytes, MaxBatchBytes = 4 << 10, 16 << 20
	// batchOverhead is the encoded size of a record batch without records,
	// as franz-go counts it against ProducerBatchMaxBytes.
	batchOverhead = 65
)

// loadStats is how a bulk load went.
type loadStats struct {
	Loader  string        `json:"loader"`
	Records int64         `json:"records"`
	Elapsed time.Duration `json:"elapsed_ns"`
	Rate    float64       `json:"records_per_s"`
	// Batches is the record batches written; BatchRecords and BatchBytes
	// their mean records and bytes of records (without the batch header),
	// as the client reports them (franz-go's batch hook; sarama's
	// batch-size histogram, a sample).
	Batches      int64   `json:"batches"`
	BatchRecords float64 `json:"records_per_batch"`
	BatchBytes   float64 `json:"bytes_per_batch"`
}

// add sums the load b into s.
func (s *loadStats) add(b loadStats) {
	if s.Loader == "" {
		s.Loader = b.Loader
	}
	bytes := s.BatchBytes*float64(s.Batches) + b.BatchBytes*float64(b.Batches)
	s.Records += b.Records
	s.Elapsed += b.Elapsed
	s.Batches += b.Batches
	if s.Elapsed > 0 {
		s.Rate = float64(s.Records) / s.Elapsed.Seconds()
	}
	if s.Batches > 0 {
		s.BatchRecords = float64(s.Records) / float64(s.Batches)
		s.BatchBytes = bytes / float64(s.Batches)
	}
}

// String describes the load for a person.
func (s loadStats) String() string {
	out := fmt.Sprintf("%s records in %.1f s, %s records/s (%s loader", thousands(s.Records), s.Elapsed.Seconds(),
		thousands(int64(s.Rate)), s.Loader)
	if s.Batches > 0 {
		out += fmt.Sprintf(": %s batches, %.0f records and %.0f KiB each on average", thousands(s.Batches), s.BatchRecords, s.BatchBytes/1024)
	}
	return out + ")"
}

// load writes n records, gen(i) for i in [from, from+n), with env's loader
// and producers parallel producers: setting up a scenario, not measuring.
// gen chooses each record's topic; the loader its partition.
func load(ctx context.Context, env *Env, label string, from, n int64, producers int, gen func(i int64) *sarama.ProducerMessage) (loadStats, error) {
	if n <= 0 {
		return loadStats{Loader: env.Loader}, nil
	}
	if env.Loader == LoaderSarama {
		return loadSarama(ctx, env, label, from, n, producers, gen)
	}
	return loadKgo(ctx, env, label, from, n, producers, gen)
}

// loadRun is one batch's worth of records for one topic-partition.
type loadRun struct {
	partition int32
	recs      []*kgo.Record
}

// batchCounter counts the batches a franz-go producer wrote. franz-go
// finishes a batch's promises on one goroutine and calls the hook on
// another, started when it has handled the produce response
// (produceMetrics.hook in kgo/sink.go), the two unordered: a flush can
// return before the hook has counted the last batch. counted is closed
// once want records are.
type batchCounter struct {
	batches, records, bytes atomic.Int64
	want                    int64
	counted                 chan struct{}
	once                    sync.Once
}

func newBatchCounter(want int64) *batchCounter {
	return &batchCounter{want: want, counted: make(chan struct{})}
}

// batchHookWait bounds how long the loader waits, after its last flush,
// for the batch hook to have counted every record.
const batchHookWait = 10 * time.Second

// testHookBatchWritten, when set, runs before the counter counts a batch:
// a test delays franz-go's hook with it.
var testHookBatchWritten func()

func (c *batchCounter) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	if h := testHookBatchWritten; h != nil {
		h()
	}
	// Batches and bytes before records: when the records reach want,
	// every batch and byte is counted.
	c.batches.Add(1)
	c.bytes.Add(int64(m.UncompressedBytes))
	if c.records.Add(int64(m.NumRecords)) >= c.want {
		c.once.Do(func() { close(c.counted) })
	}
}

// wait waits up to timeout for the hook to have counted every record.
func (c *batchCounter) wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.counted:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("franz-go's batch hook counted %d of %d records within %s of the last flush", c.records.Load(), c.want, timeout)
	}
}

// loadKgo is the LoaderKgo loader.
func loadKgo(ctx context.Context, env *Env, label string, from, n int64, producers int, gen func(i int64) *sarama.ProducerMessage) (loadStats, error) {
	client, err := connect(env)
	if err != nil {
		return loadStats{}, err
	}
	defer client.Close()
	producers = max(producers, 1)
	var (
		counter = newBatchCounter(n)
		failed  atomic.Int64
		first   atomic.Pointer[error]
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		if failed.Add(1) == 1 {
			first.Store(&err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	runs := make(chan loadRun, producers)
	prog := env.startProgress(label, n)
	defer prog.finish()
	start := time.Now()
	for range producers {
		cl, err := newKgo(env, kgo.ProducerBatchMaxBytes(env.BatchBytes), kgo.ManualFlushing(),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(),
			kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(1<<20), kgo.WithHooks(counter))
		if err != nil {
			cancel()
			close(runs)
			wg.Wait()
			return loadStats{}, err
		}
		wg.Go(func() {
			defer cl.Close()
			promise := func(r *kgo.Record, err error) {
				if err != nil {
					fail(fmt.Errorf("loading to %s/%d: %w", r.Topic, r.Partition, err))
				}
			}
			known := map[string]bool{}
			for r := range runs {
				recs := r.recs
				if topic := recs[0].Topic; !known[topic] {
					// A client's first records for a topic wait for its
					// metadata; those produced before it arrives and those
					// after would leave in separate batches. The first
					// record alone asks for it, the rest follow once the
					// leader is known.
					recs[0].Partition = r.partition
					cl.Produce(runCtx, recs[0], promise)
					recs = recs[1:]
					if err := waitLeader(runCtx, cl, topic, r.partition); err != nil {
						fail(err)
					}
					known[topic] = true
				}
				for _, rec := range recs {
					rec.Partition = r.partition
					cl.Produce(runCtx, rec, promise)
				}
				if err := cl.Flush(runCtx); err != nil {
					fail(fmt.Errorf("loading: %w", err))
				}
				prog.add(int64(len(r.recs)))
			}
		})
	}

	// Each topic's records are cut into runs of one batch's worth, each
	// run to the topic's next partition.
	type topicRuns struct {
		partitions, next int32
		recs             []*kgo.Record
		bytes            int
	}
	budget := int(env.BatchBytes) - batchOverhead
	topics := map[string]*topicRuns{}
	var order []string
	send := func(t *topicRuns) bool {
		select {
		case runs <- loadRun{partition: t.next, recs: t.recs}:
		case <-runCtx.Done():
			return false
		}
		t.next = (t.next + 1) % t.partitions
		t.recs, t.bytes = nil, 0
		return true
	}
	genErr := func() error {
		for i := from; i < from+n; i++ {
			if failed.Load() > 0 {
				return nil
			}
			rec, err := kgoRecord(gen(i))
			if err != nil {
				return err
			}
			t := topics[rec.Topic]
			if t == nil {
				parts, err := client.Partitions(rec.Topic)
				if err != nil || len(parts) == 0 {
					return fmt.Errorf("partitions of %s: %w", rec.Topic, err)
				}
				t = &topicRuns{partitions: int32(len(parts)), next: int32(from % int64(len(parts)))}
				topics[rec.Topic] = t
				order = append(order, rec.Topic)
			}
			size := recordBytes(rec)
			if len(t.recs) > 0 && t.bytes+size > budget && !send(t) {
				return runCtx.Err()
			}
			t.recs = append(t.recs, rec)
			t.bytes += size
		}
		for _, name := range order {
			if t := topics[name]; len(t.recs) > 0 && !send(t) {
				return runCtx.Err()
			}
		}
		return nil
	}()
	close(runs)
	wg.Wait()
	if genErr != nil {
		return loadStats{}, genErr
	}
	if e := first.Load(); e != nil {
		return loadStats{}, fmt.Errorf("%d records failed: %w", failed.Load(), *e)
	}
	if err := ctx.Err(); err != nil {
		return loadStats{}, err
	}
	el := time.Since(start)
	if err := counter.wait(ctx, batchHookWait); err != nil {
		return loadStats{}, fmt.Errorf("counting the loaded batches: %w", err)
	}
	st := loadStats{Loader: LoaderKgo, Records: n, Elapsed: el, Rate: float64(n) / el.Seconds(), Batches: counter.batches.Load()}
	if st.Batches > 0 {
		st.BatchRecords = float64(counter.records.Load()) / float64(st.Batches)
		st.BatchBytes = float64(counter.bytes.Load()) / float64(st.Batches)
	}
	return st, nil
}

// waitLeader waits until cl knows the leader of topic/partition.
func waitLeader(ctx context.Context, cl *kgo.Client, topic string, partition int32) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader, _, err := cl.PartitionLeader(topic, partition)
		if err == nil && leader >= 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("loading: no leader of %s/%d known after 30s: %w", topic, partition, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// recordBytes is an upper bound of r's encoded size in a record batch (v2):
// its length, attributes, timestamp and offset deltas (3 bytes each: enough
// for 8 minutes and 500,000 records), key, value and headers.
func recordBytes(r *kgo.Record) int {
	n := 1 + 3 + 3 + bytesField(r.Key, r.Key == nil) + bytesField(r.Value, r.Value == nil) + varintLen(int64(len(r.Headers)))
	for _, h := range r.Headers {
		n += varintLen(int64(len(h.Key))) + len(h.Key) + bytesField(h.Value, h.Value == nil)
	}
	return n + varintLen(int64(n))
}

func bytesField(b []byte, null bool) int {
	if null {
		return varintLen(-1)
	}
	return varintLen(int64(len(b))) + len(b)
}

func varintLen(v int64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutVarint(buf[:], v)
}

// loadSarama is the LoaderSarama loader: parallel async producers tuned
// for bulk (acks from the leader, up to 512 KiB or 5 ms per batch, five
// requests in flight), records partitioned by key (murmur2).
func loadSarama(ctx context.Context, env *Env, label string, from, n int64, producers int, gen func(i int64) *sarama.ProducerMessage) (loadStats, error) {
	sc, err := env.Kafka.Base()
	if err != nil {
		return loadStats{}, err
	}
	sc.Producer.RequiredAcks = sarama.WaitForLocal
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Partitioner = kafkaconf.NewMurmur2Partitioner
	sc.Producer.Flush.Bytes = 512 << 10
	sc.Producer.Flush.Frequency = 5 * time.Millisecond
	sc.Producer.Flush.MaxMessages = 0
	sc.Net.MaxOpenRequests = 5
	sc.ChannelBufferSize = 4096
	reg := keepBatchSize{sc.MetricRegistry}
	sc.MetricRegistry = reg
	producers = max(producers, 1)

	prog := env.startProgress(label, n)
	defer prog.finish()
	start := time.Now()
	var (
		next   atomic.Int64
		failed atomic.Int64
		first  atomic.Pointer[error]
		wg     sync.WaitGroup
	)
	next.Store(from)
	end := from + n
	ps := make([]sarama.AsyncProducer, 0, producers)
	for range producers {
		p, err := sarama.NewAsyncProducer(env.Kafka.BrokerList(), sc)
		if err != nil {
			for _, p := range ps {
				p.Close()
			}
			return loadStats{}, fmt.Errorf("starting loader: %w", kafkaconf.Explain(err, env.Kafka.BrokerList()))
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		var acks sync.WaitGroup
		acks.Go(func() {
			for range p.Successes() {
				prog.add(1)
			}
		})
		acks.Go(func() {
			for pe := range p.Errors() {
				if failed.Add(1) == 1 {
					err := fmt.Errorf("loading to %s: %w", pe.Msg.Topic, pe.Err)
					first.Store(&err)
				}
			}
		})
		wg.Go(func() {
			defer func() { p.AsyncClose(); acks.Wait() }()
			for ctx.Err() == nil && failed.Load() == 0 {
				// Claim a run of 256 indexes at a time to keep the counter cool.
				lo := next.Add(256) - 256
				if lo >= end {
					return
				}
				for i := lo; i < min(lo+256, end); i++ {
					select {
					case p.Input() <- gen(i):
					case <-ctx.Done():
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return loadStats{}, fmt.Errorf("%d records failed: %w", failed.Load(), *e)
	}
	if err := ctx.Err(); err != nil {
		return loadStats{}, err
	}
	el := time.Since(start)
	st := loadStats{Loader: LoaderSarama, Records: n, Elapsed: el, Rate: float64(n) / el.Seconds()}
	// sarama's histogram of the bytes sent per partition per request.
	if h, ok := reg.Get("batch-size").(interface {
		Count() int64
		Mean() float64
	}); ok && h.Count() > 0 {
		st.Batches, st.BatchBytes = h.Count(), h.Mean()
		st.BatchRecords = float64(n) / float64(st.Batches)
	}
	return st, nil
}

// metricRegistry is the method set of sarama's metric registry
// (go-metrics' Registry).
type metricRegistry interface {
	Each(func(string, any))
	Get(string) any
	GetAll() map[string]map[string]any
	GetOrRegister(string, any) any
	Register(string, any) error
	RunHealthchecks()
	Unregister(string)
	UnregisterAll()
}

// keepBatchSize is a sarama metric registry that keeps the "batch-size"
// histogram when a closing producer's brokers unregister their metrics, so
// the loader can read it after the last batch.
type keepBatchSize struct{ metricRegistry }

func (r keepBatchSize) Unregister(name string) {
	if name != "batch-size" {
		r.metricRegistry.Unregister(name)
	}
}

// waitCount polls count until it reaches want, and returns when it last
// saw the count at base (nothing moved yet: the moving time starts there, so
// a phase that moves everything between two polls still has a length) and
// when it reached want.
func waitCount(ctx context.Context, prog *progress, base, want int64, timeout time.Duration, count func() (int64, error)) (idle, done time.Time, err error) {
	deadline := time.Now().Add(timeout)
	idle = time.Now()
	for {
		n, err := count()
		now := time.Now()
		if err == nil {
			prog.set(n - base)
			if n <= base {
				idle = now
			}
			if n >= want {
				return idle, now, nil
			}
		}
		if now.After(deadline) {
			return idle, now, errors.Join(fmt.Errorf("%d of %d records after %s", n-base, want-base, timeout), err)
		}
		select {
		case <-ctx.Done():
			return idle, now, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
