// Package forward is the tier forwarder: it claims tier partitions in a
// consumer group, holds the head record of each partition until it is due,
// and produces it to its next hop, a smaller tier or the target topic.
//
// Invariants kept here (DESIGN.md), and where:
//   - never early (partition.releasable): a record goes to its target only
//     when now ≥ ladder-due, unless work-ahead or a drain marks it early;
//   - nothing lost (partition.commitPoint): a tier offset is committed only
//     after the forwarded record and every record before it were
//     acknowledged (acks=all), or in the same transaction (eos.go);
//   - bounded memory (memory.go): what the forwarder holds of records is
//     bounded in bytes for the whole process (BufferMemory); a held head is
//     a copy of one record, and its partition fetches nothing meanwhile;
//   - bad input never blocks a partition (targets.go, partition.park): a
//     record that cannot be routed goes to the dead-letter topic with
//     ladder-error; one whose target is missing or refuses writes parks
//     while the records behind it flow, and is dead-lettered after
//     TargetTimeout;
//   - order (partition.toRetry): FIFO per tier partition; a failed record
//     holds the later ones until it is acknowledged;
//   - rebalance-safe (machine.end): a held head is dropped on revoke and
//     fetched again by the new owner from the committed offset; a forwarder
//     whose group session may be lost (its lease lapsed) sends nothing.
//
// The pieces: machine.go owns every claimed partition's state machine
// (partition.go) and is driven by one goroutine (loop.go); the group
// membership is package group; records are fetched by fetch.go and handed to
// a sink: at-least-once (sink.go) or exactly-once (eos.go).
package forward

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/backoff"
	"github.com/ladder/ladder/pkg/control"
	"github.com/ladder/ladder/pkg/group"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/workahead"
)

// Config configures a Forwarder. Zero values take the documented defaults.
type Config struct {
	// Ladder is the tier set to forward (required).
	Ladder *tier.Ladder
	// Group is the consumer group shared by every forwarder of the ladder
	// (default "ladder").
	Group string
	// Kafka is the connection configuration (required).
	Kafka kafkaconf.Config
	// BufferMemory bounds, in bytes, what the forwarder holds of records
	// for the whole process: fetched records not yet forwarded, records in
	// flight to the producer, and fetches on their way (default 32 MiB,
	// least 1 MiB). It is not per partition.
	BufferMemory int64
	// ResumeLead is how long before a held head is due its partition fetches
	// again, so the records behind it are at hand when it is released
	// (default 500ms).
	ResumeLead time.Duration
	// MaxDelay dead-letters a record due further ahead than this: a due in
	// the year 3000 is a bug upstream, not a delay (default 365 days).
	MaxDelay time.Duration
	// HealthInterval is how often end offsets are read for the pending gauge
	// and the broker health check (default 10s).
	HealthInterval time.Duration
	// MaxHops dead-letters a record that has passed through more tiers than
	// this, which only a routing loop produces (default: twice the hops a
	// record due MaxDelay ahead takes on the ladder, at least 100). A value
	// below those hops is refused.
	MaxHops int
	// TargetTimeout is how long a record waits for its target topic to
	// exist and accept this forwarder's writes before it is dead-lettered
	// (unknown_target, not_authorized), as a Kafka producer's max.block.ms
	// (default 60s). The records behind it go on meanwhile.
	TargetTimeout time.Duration
	// CommitInterval is how often acknowledged offsets are committed in
	// at-least-once mode (default 500ms): what a crash forwards twice.
	CommitInterval time.Duration
	// ShutdownTimeout bounds how long a stopping or revoked forwarder waits
	// for its in-flight records to be acknowledged (default 15s, below the
	// 20s rebalance timeout). Records still unacknowledged then are not
	// committed and are forwarded again by the next owner: a duplicate,
	// never a loss.
	ShutdownTimeout time.Duration
	// StatsInterval is how often the running totals are logged (0: never).
	StatsInterval time.Duration
	// ExactlyOnce forwards each record, and commits its tier offset, in a
	// Kafka transaction (see eos.go). Readers of the targets must use
	// read_committed.
	ExactlyOnce bool
	// TransactionalID is the transactional.id in exactly-once mode (default:
	// unique per process, see TransactionalID).
	TransactionalID string
	// TxnInterval is the longest a transaction collects records (default 100ms).
	TxnInterval time.Duration
	// TxnMaxRecords ends a transaction early when it has this many records (default 10000).
	TxnMaxRecords int
	// TxnTimeout is the transaction timeout: the broker aborts a transaction
	// left open this long by a crashed forwarder (default 10s).
	TxnTimeout time.Duration
	// WorkAhead, when set, releases held heads early for lanes whose workers
	// are idle (see package workahead). The forwarder runs it.
	WorkAhead *workahead.Controller
	// Registerer receives the forwarder's Prometheus metrics (nil: none are
	// exported). The Forwarder is itself a Collector of its partition gauges.
	Registerer prometheus.Registerer
	// Log receives the forwarder's events (default: discard).
	Log zerolog.Logger
}

// DefaultBufferMemory is the default of Config.BufferMemory.
const DefaultBufferMemory = 32 << 20

func (c *Config) setDefaults() {
	if c.Group == "" {
		c.Group = "ladder"
	}
	if c.BufferMemory <= 0 {
		c.BufferMemory = DefaultBufferMemory
	}
	if c.ResumeLead <= 0 {
		c.ResumeLead = 500 * time.Millisecond
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = 365 * 24 * time.Hour
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = 10 * time.Second
	}
	if c.MaxHops <= 0 && c.Ladder != nil {
		c.MaxHops = max(100, 2*HopsWithin(c.Ladder, c.MaxDelay))
	}
	if c.TargetTimeout <= 0 {
		c.TargetTimeout = time.Minute
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = 500 * time.Millisecond
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
	if c.TxnInterval <= 0 {
		c.TxnInterval = 100 * time.Millisecond
	}
	if c.TxnMaxRecords <= 0 {
		c.TxnMaxRecords = 10_000
	}
	if c.TxnTimeout <= 0 {
		c.TxnTimeout = 10 * time.Second
	}
	if c.ExactlyOnce && c.TransactionalID == "" {
		c.TransactionalID = TransactionalID(c.Group)
	}
}

// ErrHopsBelowMaxDelay is returned (wrapped) by New when MaxHops is below
// the hops a record due MaxDelay ahead takes: such records would be
// accepted, then dead-lettered as a routing loop on their way.
var ErrHopsBelowMaxDelay = errors.New("maximum hops below the hops of the maximum delay")

func (c *Config) validate() error {
	if c.Ladder == nil {
		return errors.New("no ladder configured")
	}
	if c.BufferMemory < 1<<20 {
		return fmt.Errorf("buffer memory of %d bytes: at least 1 MiB", c.BufferMemory)
	}
	if need := HopsWithin(c.Ladder, c.MaxDelay); c.MaxHops <= need {
		return fmt.Errorf("%w: a record due %s ahead takes up to %d hops on tiers %s, and the limit is %d: raise the maximum hops above %d or lower the maximum delay",
			ErrHopsBelowMaxDelay, tier.Label(c.MaxDelay), need, c.Ladder, c.MaxHops, need)
	}
	return c.Kafka.Validate()
}

// HopsWithin is an upper bound of the hops a record due at most d ahead
// takes on l: one per largest tier it waits in, and at most the smaller
// tiers' ratios for the remainder.
func HopsWithin(l *tier.Ladder, d time.Duration) int {
	ts := l.Tiers()
	n := int(d/ts[len(ts)-1].Delay) + 1
	for i := 0; i+1 < len(ts); i++ {
		n += int((ts[i+1].Delay + ts[i].Delay - 1) / ts[i].Delay)
	}
	return n
}

// Forwarder forwards the records of every tier of one ladder. Several
// forwarder processes with the same Group share the tier partitions.
type Forwarder struct {
	cfg     Config
	log     zerolog.Logger
	topics  []string
	metrics *metrics
	control *control.State
	health  health
	stats   Stats
	mem     budget

	partsMu sync.Mutex
	parts   []*partition // the current session's, for gauges and the offset refresher
	client  sarama.Client
	sess    atomic.Pointer[group.Session] // the current group session (readiness reads its lease)
}

// Snapshot is a copy of Stats.
type Snapshot struct {
	Forwarded, Delivered, Early, DeadLettered, Retried, Held, Claimed int64
}

// Snapshot returns the current totals.
func (f *Forwarder) Snapshot() Snapshot {
	s := &f.stats
	return Snapshot{s.Forwarded.Load(), s.Delivered.Load(), s.Early.Load(), s.DeadLettered.Load(), s.Retried.Load(), s.Held.Load(), s.Claimed.Load()}
}

// New validates cfg and returns a Forwarder. It does not connect yet.
func New(cfg Config) (*Forwarder, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("invalid forwarder config: %w", err)
	}
	f := &Forwarder{cfg: cfg, log: cfg.Log.With().Str("group", cfg.Group).Logger(), topics: cfg.Ladder.Topics(),
		metrics: newMetrics(cfg.ExactlyOnce), control: control.NewState()}
	f.mem.limit = cfg.BufferMemory
	if cfg.Registerer != nil {
		for _, c := range append(f.metrics.collectors(), f) {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("registering forwarder metrics: %w", err)
			}
		}
	}
	return f, nil
}

// Run joins the group and forwards until ctx is done, then stops cleanly:
// the partitions finish their in-flight records and commit, the member
// leaves the group, and the producer flushes. It returns nil after a clean
// stop.
func (f *Forwarder) Run(ctx context.Context) error {
	brokers := f.cfg.Kafka.BrokerList()
	pc, err := f.cfg.Kafka.Producer()
	if err != nil {
		return err
	}
	cc, err := f.cfg.Kafka.Consumer()
	if err != nil {
		return err
	}
	// Tiers written by exactly-once forwarders may hold aborted records:
	// never forward them. Without transactions this costs nothing.
	cc.Consumer.IsolationLevel = sarama.ReadCommitted
	box := newMailbox()
	alo := *pc // at-least-once: sarama retries in order (see sink.go), long before ladder does
	aloRetries(&alo)
	var s sink
	var closeSink func()
	var eos *eosSink
	if f.cfg.ExactlyOnce {
		eos = newEOSSink(&f.cfg, f.log, f.metrics, &f.health, brokers, transactionalConfig(pc, f.cfg.TransactionalID, f.cfg.TxnTimeout), box)
		s, closeSink = eos, eos.stop
	}
	// Kafka may not be reachable yet (a pod starting beside its cluster):
	// retry with back-off instead of exiting into a crash loop.
	connected := backoff.Retry(ctx, backoff.New(time.Second, 30*time.Second), func() error {
		client, err := sarama.NewClient(brokers, cc)
		if err != nil {
			return fmt.Errorf("starting the consumer client: %w", err)
		}
		if eos == nil {
			as, err := newALOSink(brokers, &alo, box)
			if err != nil {
				client.Close()
				return err
			}
			s, closeSink = as, func() { as.close(f.cfg.ShutdownTimeout, f.log) }
		}
		f.client = client
		f.health.setBrokers(nil)
		return nil
	}, func(err error, d time.Duration) {
		err = kafkaconf.Explain(err, brokers)
		f.health.setBrokers(err)
		f.log.Error().Err(err).Dur("retry_in", d).Msg("cannot connect to Kafka")
	})
	if !connected {
		if eos != nil {
			eos.stop()
		}
		return nil // stopped before Kafka was reachable
	}
	mc := &machineConfig{Config: &f.cfg, control: f.control, maxMessageBytes: pc.Producer.MaxMessageBytes,
		partitionFetchBytes: maxPartitionFetchBytes, maxFetchBytes: max(minFetchBytes, f.cfg.BufferMemory/8)}
	m := newMachine(mc, f.log, f.metrics, &f.stats, &f.health, &f.mem)
	m.sink = s
	d := newDriver(f, m, box, cc)
	if eos != nil {
		eos.session = d.currentSession
	}

	var refreshing sync.WaitGroup
	refresh, stopRefresh := context.WithCancel(ctx)
	refreshing.Go(func() { f.refreshOffsets(refresh) })
	refreshing.Go(func() { f.control.Follow(refresh, f.cfg.Ladder.ControlTopic(), brokers, cc, f.log) })
	if wa := f.cfg.WorkAhead; wa != nil {
		refreshing.Go(func() {
			if err := wa.Run(refresh, brokers, cc); err != nil {
				f.log.Error().Err(err).Msg("work-ahead stopped")
			}
		})
	}
	if f.cfg.StatsInterval > 0 {
		refreshing.Go(func() { f.logStats(refresh) })
	}
	mode := "at-least-once"
	if eos != nil {
		mode = "exactly-once, transactional.id " + f.cfg.TransactionalID
	}
	f.log.Info().Strs("tiers", f.topics).Strs("brokers", brokers).Str("mode", mode).
		Str("buffer_memory", byteLabel(int(f.cfg.BufferMemory))).Msg("forwarder started")

	d.run(ctx)

	f.log.Info().Msg("forwarder stopping")
	// Stop in order: the group (done by d.run: the partitions finished
	// their records, committed and left), then the producer, then the rest.
	closeSink()
	d.stop()
	stopRefresh()
	refreshing.Wait()
	f.client.Close()
	return nil
}

// logStats logs the totals every StatsInterval, and once more at the end.
func (f *Forwarder) logStats(ctx context.Context) {
	t := time.NewTicker(f.cfg.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			f.logSnapshot("forwarder totals at stop")
			return
		}
		f.logSnapshot("forwarder totals")
	}
}

func (f *Forwarder) logSnapshot(msg string) {
	s := f.Snapshot()
	f.log.Info().Int64("forwarded", s.Forwarded).Int64("delivered", s.Delivered).Int64("early", s.Early).Int64("dead_lettered", s.DeadLettered).
		Int64("retried", s.Retried).Int64("claimed", s.Claimed).Int64("held", s.Held).
		Int64("buffer_bytes", f.mem.gauge.Load()).Msg(msg)
}

// setParts publishes the current session's partitions to the metrics
// collector and the offset refresher.
func (f *Forwarder) setParts(parts []*partition) {
	f.partsMu.Lock()
	defer f.partsMu.Unlock()
	f.parts = parts
	f.stats.Claimed.Store(int64(len(parts)))
}
