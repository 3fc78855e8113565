// Package worker is the SDK of the processes that handle the messages the
// ladder brings back: it consumes lane topics in consumer groups, runs a
// handler on many records of a partition at once, and carries out the
// handler's Result (reschedule through the ladder, retry with back-off,
// dead-letter, done).
//
// Guarantees:
//   - nothing lost: a source offset is committed only after the record its
//     result produced was acknowledged by the broker (acks=all, idempotent
//     producer), and only up to the lowest record not finished yet, so a crash
//     replays records, never skips one;
//   - bounded memory, whatever the backlog: a lane has at most Concurrency
//     records running or waiting for their result's acknowledgement; each
//     claimed partition holds besides at most Concurrency records waiting
//     behind an earlier one of their key, and at most 16 × Concurrency
//     records taken and not committed (a finished record behind an
//     unfinished one keeps only its offset). A partition at a limit stops
//     reading until it drains, without holding up the lane's other partitions;
//   - lanes are independent: each has its own consumer group, connections and
//     in-flight budget, so a saturated slow lane never holds up a fast one;
//   - with Lane.KeyOrdered, records with the same key run one at a time, in
//     offset order.
package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/backoff"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/tier"
)

// Handler processes one message and says what happens to it next. It runs
// concurrently with the handlers of other records (of the same partition
// too, unless Lane.KeyOrdered holds them apart by key). ctx is cancelled
// when the worker stops or the partition is revoked and the handler did not
// finish within Config.ShutdownTimeout: the message is then processed again
// by the partition's next owner, whatever the handler returns. A panic is
// recovered and treated as Retry.
type Handler func(ctx context.Context, m Message) Result

// Lane is a set of topics (usually one, e.g. "work-fast") consumed by one
// consumer group with one handler and one in-flight budget.
type Lane struct {
	// Topics are the lane topics to consume (required).
	Topics []string
	// Name names the lane in logs and Stats (default: the topics, comma-separated).
	Name string
	// Group is the lane's consumer group (default "workers-" + Name). Every
	// process running this lane uses the same group and shares its partitions.
	Group string
	// Handler processes the lane's messages (required).
	Handler Handler
	// Concurrency is the lane's budget in this process (default 256): the
	// most records running their handler or waiting for the broker's
	// acknowledgement of their result, shared by the lane's partitions. It
	// also bounds each claimed partition: at most Concurrency records
	// waiting behind their key (KeyOrdered), and at most 16 × Concurrency
	// records taken and not committed, as when one handler is stuck and later
	// records finish behind it. A partition at either limit stops reading
	// until it drains; the lane's other partitions go on.
	Concurrency int
	// KeyOrdered runs records with the same non-null key one at a time, in
	// offset order: a record waits while an earlier one of its key runs,
	// holding no place in the budget, so a hot key holds up its own
	// partition only. Records without a key are not ordered. A record that is
	// rescheduled or retried leaves the order: it comes back through the
	// ladder, after later records of its key.
	KeyOrdered bool
	// MaxAttempts is how many times a message is handled before a Retry
	// sends it to the dead-letter topic instead (default 5).
	MaxAttempts int
	// Backoff is the delay before attempt+1 after attempt failed (default
	// DefaultBackoff).
	Backoff func(attempt int) time.Duration
}

// DefaultConcurrency is Lane.Concurrency when none is set.
const DefaultConcurrency = 256

// DefaultMaxAttempts is Lane.MaxAttempts when none is set.
const DefaultMaxAttempts = 5

// DefaultBackoff waits 10s after the first attempt, doubling after each
// further one, at most 1h.
func DefaultBackoff(attempt int) time.Duration {
	return backoff.Delay(attempt, 10*time.Second, time.Hour)
}

// Config configures a Worker. Zero values take the documented defaults.
type Config struct {
	// Kafka is the connection configuration (required).
	Kafka kafkaconf.Config
	// Ladder is the tier set reschedules and retries go through; its prefix
	// names the dead-letter topic (required).
	Ladder *tier.Ladder
	// ShutdownTimeout bounds how long a stopping worker or a revoked
	// partition waits for its running handlers to finish and their results
	// to be acknowledged (default 15s, below the 20s rebalance timeout). Then the handlers' ctx is cancelled
	// and their records are left uncommitted, for the next owner; their
	// places in the budget are given back at once, so a handler that ignores
	// its ctx briefly runs beside the new ones. Keep it below the consumer
	// group's rebalance timeout (sarama's default: 60s).
	ShutdownTimeout time.Duration
	// Log receives the worker's events (default: discard).
	Log zerolog.Logger
}

func (l *Lane) setDefaults() {
	if l.Name == "" {
		l.Name = strings.Join(l.Topics, ",")
	}
	if l.Group == "" {
		l.Group = "workers-" + l.Name
	}
	if l.Concurrency <= 0 {
		l.Concurrency = DefaultConcurrency
	}
	if l.MaxAttempts <= 0 {
		l.MaxAttempts = DefaultMaxAttempts
	}
	if l.Backoff == nil {
		l.Backoff = DefaultBackoff
	}
}

func (l *Lane) validate(ladder *tier.Ladder) error {
	if len(l.Topics) == 0 {
		return errors.New("no topics")
	}
	for _, t := range l.Topics {
		if err := tier.ValidateTopic(t); err != nil {
			return fmt.Errorf("topic %q: %w", t, err)
		}
		if _, isTier := ladder.Lookup(t); isTier || t == ladder.DLQTopic() {
			return fmt.Errorf("topic %s is a topic of the ladder itself, not a lane", t)
		}
	}
	if l.Handler == nil {
		return errors.New("no handler")
	}
	return nil
}

// Worker runs the handlers of one or more lanes in this process.
type Worker struct {
	cfg   Config
	log   zerolog.Logger
	lanes []*lane

	started  atomic.Bool
	producer sarama.AsyncProducer
	handlers sync.WaitGroup // every handler goroutine
}

// lane is a Lane at run time.
type lane struct {
	Lane
	w     *Worker
	log   zerolog.Logger
	sem   chan struct{} // one token per record running or waiting for its result's acknowledgement
	group sarama.ConsumerGroup
	stats laneStats
}

type laneStats struct {
	handled, done, rescheduled, retried, deadLettered, panics atomic.Int64
	running, inFlight, waiting, claimed                       atomic.Int64
}

// Stats are one lane's running totals since the worker started.
type Stats struct {
	Lane string
	// Handled counts handler calls that returned (or panicked).
	Handled int64
	// Done, Rescheduled, Retried and DeadLettered count finished messages by
	// outcome; all but Done finish when the broker acknowledged the record
	// the outcome produced.
	Done, Rescheduled, Retried, DeadLettered int64
	// Panics counts handler panics (each also counts as a retry or dead letter).
	Panics int64
	// Running is the handlers running now; InFlight the records holding a
	// place in the lane's budget (running, or waiting for the broker's
	// acknowledgement of their result); Waiting the records waiting behind an
	// earlier one of their key (KeyOrdered), which hold none; Claimed the
	// partitions claimed now.
	Running, InFlight, Waiting, Claimed int64
}

// Stats returns each lane's totals, in the order the lanes were given.
func (w *Worker) Stats() []Stats {
	out := make([]Stats, len(w.lanes))
	for i, l := range w.lanes {
		s := &l.stats
		out[i] = Stats{Lane: l.Name, Handled: s.handled.Load(), Done: s.done.Load(), Rescheduled: s.rescheduled.Load(),
			Retried: s.retried.Load(), DeadLettered: s.deadLettered.Load(), Panics: s.panics.Load(),
			Running: s.running.Load(), InFlight: s.inFlight.Load(), Waiting: s.waiting.Load(), Claimed: s.claimed.Load()}
	}
	return out
}

// New validates cfg and the lanes and returns a Worker. It does not connect yet.
func New(cfg Config, lanes ...Lane) (*Worker, error) {
	if cfg.Ladder == nil {
		return nil, errors.New("invalid worker config: no ladder")
	}
	if err := cfg.Kafka.Validate(); err != nil {
		return nil, fmt.Errorf("invalid worker config: %w", err)
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 15 * time.Second
	}
	if len(lanes) == 0 {
		return nil, errors.New("invalid worker config: no lanes")
	}
	w := &Worker{cfg: cfg, log: cfg.Log}
	groups := map[string]bool{}
	for i, l := range lanes {
		l.Topics = append([]string(nil), l.Topics...)
		l.setDefaults()
		if err := l.validate(cfg.Ladder); err != nil {
			return nil, fmt.Errorf("invalid lane %d (%s): %w", i, l.Name, err)
		}
		if groups[l.Group] {
			return nil, fmt.Errorf("invalid lane %d (%s): consumer group %s is used by another lane", i, l.Name, l.Group)
		}
		groups[l.Group] = true
		w.lanes = append(w.lanes, &lane{
			Lane: l, w: w, sem: make(chan struct{}, l.Concurrency),
			log: cfg.Log.With().Str("lane", l.Name).Str("group", l.Group).Logger(),
		})
	}
	return w, nil
}

// Run is New followed by Worker.Run.
func Run(ctx context.Context, cfg Config, lanes ...Lane) error {
	w, err := New(cfg, lanes...)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// Run consumes every lane until ctx is done, then stops cleanly: each lane
// stops taking records, lets its running handlers finish (up to
// ShutdownTimeout), waits for their results to be acknowledged, commits and
// leaves its group; then the producer flushes. It returns nil after a clean
// stop, and waits for every handler goroutine to return (a handler that
// ignores its cancelled ctx holds Run up). A Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("worker: Run called twice")
	}
	pc, err := w.cfg.Kafka.Producer()
	if err != nil {
		return fmt.Errorf("invalid worker config: %w", err)
	}
	brokers := w.cfg.Kafka.BrokerList()
	if w.producer = connect(ctx, w.log, "starting producer", func() (sarama.AsyncProducer, error) {
		return sarama.NewAsyncProducer(brokers, pc)
	}); w.producer == nil {
		return nil // stopped before Kafka was reachable
	}
	var acks sync.WaitGroup
	acks.Go(w.dispatchAcks)

	names := make([]string, len(w.lanes))
	var lanes sync.WaitGroup
	for i, l := range w.lanes {
		names[i] = l.Name
		lanes.Go(func() { l.run(ctx) })
	}
	w.log.Info().Strs("lanes", names).Strs("brokers", brokers).Msg("worker started")
	lanes.Wait()

	w.producer.AsyncClose()
	acks.Wait()
	w.handlers.Wait()
	w.log.Info().Msg("worker stopped")
	return nil
}

// dispatchAcks routes every producer result to the claim that sent the
// record. It never blocks: each claim's event channel has room for one
// event per record it can have in flight.
func (w *Worker) dispatchAcks() {
	successes, errs := w.producer.Successes(), w.producer.Errors()
	for successes != nil || errs != nil {
		select {
		case m, ok := <-successes:
			if !ok {
				successes = nil
				continue
			}
			e := m.Metadata.(*entry)
			e.c.events <- event{e: e, kind: evAcked}
		case pe, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			e := pe.Msg.Metadata.(*entry)
			e.c.events <- event{e: e, kind: evFailed, err: pe.Err}
		}
	}
}

// run consumes the lane until ctx is done.
func (l *lane) run(ctx context.Context) {
	cc, err := l.w.cfg.Kafka.Consumer()
	if err != nil {
		l.log.Error().Err(err).Msg("invalid consumer configuration")
		return
	}
	// Small fetches and a short channel: memory follows the in-flight
	// budget, not the backlog. A partition whose channel stays full (the
	// lane is at its limit) stops fetching until it drains.
	cc.Consumer.Fetch.Default = 256 << 10
	cc.ChannelBufferSize = 64
	brokers := l.w.cfg.Kafka.BrokerList()
	l.group = connect(ctx, l.log, "joining consumer group "+l.Group, func() (sarama.ConsumerGroup, error) {
		return sarama.NewConsumerGroup(brokers, l.Group, cc)
	})
	if l.group == nil {
		return
	}
	var groupErrs sync.WaitGroup
	groupErrs.Go(func() {
		for err := range l.group.Errors() {
			l.log.Warn().Err(err).Msg("consumer group")
		}
	})
	defer func() {
		if err := l.group.Close(); err != nil {
			l.log.Warn().Err(err).Msg("leaving consumer group")
		}
		groupErrs.Wait()
	}()
	l.log.Info().Strs("topics", l.Topics).Int("concurrency", l.Concurrency).Bool("key_ordered", l.KeyOrdered).
		Msg("lane started")
	h := &groupHandler{l: l}
	b := backoff.New(100*time.Millisecond, 10*time.Second)
	for ctx.Err() == nil {
		err := l.group.Consume(ctx, l.Topics, h)
		switch {
		case err == nil:
			b.Reset()
		case errors.Is(err, sarama.ErrClosedConsumerGroup):
			return
		default:
			d := b.Next()
			l.log.Warn().Err(err).Dur("retry_in", d).Msg("consumer group session failed")
			backoff.Sleep(ctx, d)
		}
	}
	l.log.Info().Msg("lane stopping")
}

type groupHandler struct{ l *lane }

func (h *groupHandler) Setup(s sarama.ConsumerGroupSession) error {
	h.l.log.Info().Str("member", s.MemberID()).Int32("generation", s.GenerationID()).
		Interface("claims", s.Claims()).Msg("partitions assigned")
	return nil
}

func (h *groupHandler) Cleanup(s sarama.ConsumerGroupSession) error {
	h.l.log.Info().Str("member", s.MemberID()).Int32("generation", s.GenerationID()).Msg("partitions released")
	return nil
}

func (h *groupHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	h.l.stats.claimed.Add(1)
	defer h.l.stats.claimed.Add(-1)
	newClaim(h.l, s, c).run()
	return nil
}

// connect calls open until it succeeds, with back-off, or ctx is done (nil).
// Kafka may not be reachable yet (a pod starting beside its cluster).
func connect[T any](ctx context.Context, log zerolog.Logger, what string, open func() (T, error)) T {
	var v T
	backoff.Retry(ctx, backoff.New(time.Second, 30*time.Second), func() (err error) {
		v, err = open()
		return err
	}, func(err error, d time.Duration) {
		log.Error().Err(fmt.Errorf("%s: %w", what, err)).Dur("retry_in", d).Msg("cannot connect to Kafka")
	})
	return v
}
