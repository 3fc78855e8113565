// Package forward is the tier forwarder: it claims tier partitions in a
// consumer group, holds the head record of each partition until it is due
// (with the partition paused, so nothing more is fetched meanwhile), and
// produces it to its next hop, a smaller tier or the target topic.
//
// Invariants kept here (DESIGN.md):
//   - never early: a record goes to its target only when now ≥ ladder-due;
//   - nothing lost: a source offset is marked only after the broker
//     acknowledged (acks=all) the forwarded record and every record before it;
//   - bounded memory: per partition, one held head plus at most MaxInFlight
//     records awaiting acknowledgement;
//   - bad input never blocks a partition: an unroutable record goes to the
//     dead-letter topic with ladder-error and the partition moves on;
//   - rebalance-safe: a held head is dropped on revoke and refetched by the
//     new owner from the committed offset.
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

	"github.com/ladder/ladder/pkg/control"
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
	// MaxInFlight bounds the records of one partition handed to the producer
	// and not yet acknowledged (default 8192).
	MaxInFlight int
	// ResumeLead is how long before a held head is due the partition resumes
	// fetching, so the records behind it are at hand when it is released
	// (default 500ms).
	ResumeLead time.Duration
	// MaxDelay dead-letters a record due further ahead than this: a due in
	// the year 3000 is a bug upstream, not a delay (default 365 days).
	MaxDelay time.Duration
	// HealthInterval is how often end offsets are read for the pending gauge
	// and the broker health check (default 10s).
	HealthInterval time.Duration
	// MaxHops dead-letters a record that has passed through more tiers than
	// this, which only a routing loop produces (default 10000).
	MaxHops int
	// ShutdownTimeout bounds how long a stopping or revoked partition waits
	// for its in-flight records to be acknowledged (default 15s, below the 20s rebalance timeout). Records
	// still unacknowledged then are not marked and are forwarded again by the
	// next owner: a duplicate, never a loss.
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

func (c *Config) setDefaults() {
	if c.Group == "" {
		c.Group = "ladder"
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 8192
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
	if c.MaxHops <= 0 {
		c.MaxHops = 10_000
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

func (c *Config) validate() error {
	if c.Ladder == nil {
		return errors.New("no ladder configured")
	}
	return c.Kafka.Validate()
}

// Forwarder forwards the records of every tier of one ladder. Several
// forwarder processes with the same Group share the tier partitions.
type Forwarder struct {
	cfg    Config
	log    zerolog.Logger
	topics []string

	producer sarama.AsyncProducer         // at-least-once mode
	solo     chan *sarama.ProducerMessage // at-least-once mode: records sent alone (sendAlone)
	txn      *txnLoop                     // exactly-once mode
	maxBytes int                          // the producer's Producer.MaxMessageBytes
	client   sarama.Client                // the consumer group's
	group    sarama.ConsumerGroup
	metrics  *metrics

	sessMu     sync.Mutex
	endSession context.CancelFunc // ends the session being joined or run
	known      sync.Map           // target topics whose metadata is known (exactly-once mode)
	// failingParts counts the partitions with a failing record: a success
	// clears the produce failure of readiness only when none is left.
	failingParts atomic.Int64

	partsMu sync.Mutex
	parts   map[*partition]struct{} // claimed partitions, for gauges and offset refresh

	control *control.State
	health  health
	stats   Stats
}

// Stats are running totals since the forwarder started. Read them with Snapshot.
type Stats struct {
	Forwarded    atomic.Int64 // acknowledged records sent to a smaller tier
	Delivered    atomic.Int64 // acknowledged records sent to their target when due
	Early        atomic.Int64 // acknowledged records sent to their target early (work-ahead)
	DeadLettered atomic.Int64 // acknowledged records sent to the dead-letter topic
	Retried      atomic.Int64 // produce attempts that failed and were sent again
	Held         atomic.Int64 // partitions currently holding a head that is not due
	Claimed      atomic.Int64 // partitions currently claimed
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
		metrics: newMetrics(cfg.ExactlyOnce), parts: map[*partition]struct{}{}, control: control.NewState()}
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
// the claims finish their in-flight records and commit, the member leaves
// the group, and the producer flushes. It returns nil after a clean stop.
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
	// Small fetches keep memory proportional to partitions, not backlog.
	cc.Consumer.Fetch.Default = 256 << 10
	cc.ChannelBufferSize = 256
	// Tiers written by exactly-once forwarders may hold aborted records: never
	// forward them. Without transactions this costs nothing.
	cc.Consumer.IsolationLevel = sarama.ReadCommitted
	f.maxBytes = pc.Producer.MaxMessageBytes
	if f.cfg.ExactlyOnce {
		cc.Consumer.Offsets.AutoCommit.Enable = false // offsets are committed in the transactions
		f.txn = newTxnLoop(f, brokers, transactionalConfig(pc, f.cfg.TransactionalID, f.cfg.TxnTimeout))
	}

	// Kafka may not be reachable yet (a pod starting beside its cluster):
	// retry with back-off instead of exiting into a crash loop.
	if !f.connect(ctx, brokers, pc, cc) {
		return nil // stopped before Kafka was reachable
	}
	// Stop in order: the group (claims finish their records and commit),
	// then the producer or transaction loop, then the client.
	var sinks sync.WaitGroup
	stopSinks := func() {}
	if f.txn != nil {
		txnCtx, cancel := context.WithCancel(context.Background())
		sinks.Go(func() { f.txn.run(txnCtx) })
		stopSinks = cancel
	} else {
		f.solo = make(chan *sarama.ProducerMessage, 1024)
		sinks.Go(f.dispatchAcks)
		sinks.Go(func() { f.sendAlone(brokers, pc) })
		stopSinks = func() {
			close(f.solo)
			f.producer.AsyncClose()
		}
	}
	var groupErrs sync.WaitGroup
	groupErrs.Go(func() {
		for err := range f.group.Errors() {
			f.log.Warn().Err(err).Msg("consumer group")
		}
	})
	defer func() {
		if err := f.group.Close(); err != nil {
			f.log.Warn().Err(err).Msg("leaving consumer group")
		}
		groupErrs.Wait()
		stopSinks()
		sinks.Wait()
		f.client.Close()
	}()
	refresh, stopRefresh := context.WithCancel(ctx)
	var refreshing sync.WaitGroup
	refreshing.Go(func() { f.refreshOffsets(refresh) })
	refreshing.Go(func() { f.control.Follow(refresh, f.cfg.Ladder.ControlTopic(), brokers, cc, f.log) })
	if wa := f.cfg.WorkAhead; wa != nil {
		refreshing.Go(func() {
			if err := wa.Run(refresh, brokers, cc); err != nil {
				f.log.Error().Err(err).Msg("work-ahead stopped")
			}
		})
	}
	defer func() { stopRefresh(); refreshing.Wait() }()

	mode := "at-least-once"
	if f.txn != nil {
		mode = "exactly-once, transactional.id " + f.cfg.TransactionalID
	}
	f.log.Info().Strs("tiers", f.topics).Strs("brokers", brokers).Str("mode", mode).Msg("forwarder started")
	if f.cfg.StatsInterval > 0 {
		stats, stopStats := context.WithCancel(ctx)
		var logging sync.WaitGroup
		logging.Go(func() { f.logStats(stats) })
		defer func() { stopStats(); logging.Wait() }()
	}
	h := &handler{f: f}
	backoff := newBackoff(100*time.Millisecond, 10*time.Second)
	for ctx.Err() == nil {
		// Each session has its own context so that a fenced commit can end
		// it (and only it): its partitions resume from their committed
		// offsets, wherever the group assigns them.
		sess, endSession := context.WithCancel(ctx)
		f.sessMu.Lock()
		f.endSession = endSession
		f.sessMu.Unlock()
		err := f.group.Consume(sess, f.topics, h)
		endSession()
		switch {
		case err == nil:
			backoff.reset()
		case errors.Is(err, sarama.ErrClosedConsumerGroup):
			return nil
		default:
			d := backoff.next()
			f.log.Warn().Err(err).Dur("retry_in", d).Msg("consumer group session failed")
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
	}
	f.log.Info().Msg("forwarder stopping")
	return nil
}

// connect creates the producer, the consumer client and the consumer group,
// retrying with back-off until it succeeds or ctx is done (false).
func (f *Forwarder) connect(ctx context.Context, brokers []string, pc, cc *sarama.Config) bool {
	b := newBackoff(time.Second, 30*time.Second)
	for {
		err := f.dial(brokers, pc, cc)
		if err == nil {
			return true
		}
		f.health.setBrokers(kafkaconf.Explain(err, brokers))
		d := b.next()
		f.log.Error().Err(kafkaconf.Explain(err, brokers)).Dur("retry_in", d).Msg("cannot connect to Kafka")
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
		}
	}
}

func (f *Forwarder) dial(brokers []string, pc, cc *sarama.Config) error {
	var p sarama.AsyncProducer
	var err error
	var closeProducer func()
	if f.txn != nil {
		if err := f.txn.start(); err != nil {
			return err
		}
		closeProducer = f.txn.close
	} else {
		if p, err = sarama.NewAsyncProducer(brokers, pc); err != nil {
			return fmt.Errorf("starting producer: %w", err)
		}
		closeProducer = func() { p.Close() }
	}
	c, err := sarama.NewClient(brokers, cc)
	if err != nil {
		closeProducer()
		return fmt.Errorf("starting consumer: %w", err)
	}
	g, err := sarama.NewConsumerGroupFromClient(f.cfg.Group, c)
	if err != nil {
		c.Close()
		closeProducer()
		return fmt.Errorf("joining consumer group %s: %w", f.cfg.Group, err)
	}
	f.producer, f.client, f.group = p, c, g
	f.health.setBrokers(nil)
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
		Int64("retried", s.Retried).Int64("claimed", s.Claimed).Int64("held", s.Held).Msg(msg)
}

// dispatchAcks routes every producer result to the partition that sent the
// record, until the producer closes. It never blocks: each partition's event
// channel has room for every record it can have in flight. Successes and
// errors have a goroutine each: a plain receive costs less than a select.
func (f *Forwarder) dispatchAcks() {
	var errs sync.WaitGroup
	errs.Go(func() {
		for pe := range f.producer.Errors() {
			fl := pe.Msg.Metadata.(*flight)
			fl.p.events <- event{f: fl, err: pe.Err}
		}
	})
	defer errs.Wait()
	successes := f.producer.Successes()
	batch := map[*partition][]*flight{}
	for m := range successes {
		// Hand over the acknowledgements that are already waiting as one
		// event per partition: one wake-up for many records.
		for ok, n := true, 0; ok && n < 1024; n++ {
			fl := m.Metadata.(*flight)
			batch[fl.p] = append(batch[fl.p], fl)
			select {
			case m, ok = <-successes:
			default:
				ok = false
			}
		}
		for p, fls := range batch {
			p.events <- event{acks: fls}
		}
		clear(batch) // keeps its buckets: no allocation per wake-up
	}
}

// sendAlone sends the records of f.solo one at a time, each alone in its
// produce request, and hands each result to its partition (at-least-once
// mode). It is for records refused for good, to tell a record the target
// refuses from a batch it refuses.
func (f *Forwarder) sendAlone(brokers []string, pc *sarama.Config) {
	var p sarama.SyncProducer
	defer func() {
		if p != nil {
			p.Close()
		}
	}()
	for msg := range f.solo {
		fl := msg.Metadata.(*flight)
		var err error
		if p == nil {
			if p, err = sarama.NewSyncProducer(brokers, pc); err != nil {
				p, err = nil, fmt.Errorf("starting the producer of records sent alone: %w", err)
			}
		}
		if err == nil {
			_, _, err = p.SendMessage(msg)
		}
		fl.p.notify(event{f: fl, err: err})
	}
}

type handler struct {
	f   *Forwarder
	cur atomic.Pointer[session] // set in Setup, before the session's claims start
}

// session is one consumer group session (one generation) of this forwarder.
type session struct {
	sarama.ConsumerGroupSession
	end    context.CancelFunc
	once   sync.Once
	fenced chan struct{} // closed when a commit of the session was fenced
}

// fence ends the session after a commit of it was refused for a stale
// generation.
func (s *session) fence() {
	s.once.Do(func() {
		close(s.fenced)
		s.end()
	})
}

func (s *session) isFenced() bool {
	select {
	case <-s.fenced:
		return true
	default:
		return false
	}
}

func (h *handler) Setup(s sarama.ConsumerGroupSession) error {
	h.f.sessMu.Lock()
	end := h.f.endSession
	h.f.sessMu.Unlock()
	h.cur.Store(&session{ConsumerGroupSession: s, end: end, fenced: make(chan struct{})})
	h.f.metrics.sessions.Inc()
	h.f.health.setSession(true)
	h.f.log.Info().Str("member", s.MemberID()).Int32("generation", s.GenerationID()).
		Interface("claims", s.Claims()).Msg("partitions assigned")
	return nil
}

func (h *handler) Cleanup(s sarama.ConsumerGroupSession) error {
	h.f.health.setSession(false)
	h.f.log.Info().Str("member", s.MemberID()).Int32("generation", s.GenerationID()).Msg("partitions released")
	return nil
}

func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	t, ok := h.f.cfg.Ladder.Lookup(c.Topic())
	if !ok {
		return fmt.Errorf("claimed topic %s is not a tier of ladder %s", c.Topic(), h.f.cfg.Ladder)
	}
	p := newPartition(h.f, h.cur.Load(), c, t)
	h.f.track(p, true)
	defer h.f.track(p, false)
	p.run()
	close(p.done)
	return nil
}

func (f *Forwarder) track(p *partition, claimed bool) {
	f.partsMu.Lock()
	defer f.partsMu.Unlock()
	if claimed {
		f.parts[p] = struct{}{}
		f.stats.Claimed.Add(1)
	} else {
		delete(f.parts, p)
		f.stats.Claimed.Add(-1)
	}
}

// permanent reports whether a produce error will recur however often the
// record is sent: the target refuses this record itself.
func permanent(err error) bool {
	for _, k := range []sarama.KError{sarama.ErrMessageSizeTooLarge, sarama.ErrMessageSetSizeTooLarge,
		sarama.ErrInvalidMessage, sarama.ErrInvalidRecord} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// topicKnown reports whether the metadata of topic was read (exactly-once
// mode: a record joins a transaction only then).
func (f *Forwarder) topicKnown(topic string) bool {
	_, ok := f.known.Load(topic)
	return ok
}

// lookupTopic reads the metadata of topic from the brokers and remembers
// the topic as known when it exists with partitions.
func (f *Forwarder) lookupTopic(topic string) error {
	if err := f.client.RefreshMetadata(topic); err != nil {
		return fmt.Errorf("reading the metadata of topic %s: %w", topic, err)
	}
	parts, err := f.client.Partitions(topic)
	if err == nil && len(parts) == 0 {
		err = sarama.ErrUnknownTopicOrPartition
	}
	if err != nil {
		return fmt.Errorf("reading the partitions of topic %s: %w", topic, err)
	}
	f.known.Store(topic, struct{}{})
	return nil
}

// forgetTopic makes the metadata of topic be read again before its next record.
func (f *Forwarder) forgetTopic(topic string) { f.known.Delete(topic) }

// backoff is a capped exponential back-off.
type backoff struct{ cur, min, max time.Duration }

func newBackoff(lo, hi time.Duration) *backoff { return &backoff{min: lo, max: hi} }

func (b *backoff) next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.min
	case b.cur < b.max:
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
