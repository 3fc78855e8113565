// Package replay moves dead-lettered records back into the ladder: it reads
// the dead-letter topic up to its end at the start of the run, drops
// ladder-error, optionally sets a new ladder-target, and schedules each
// record again by its ladder-due (straight to the target when it is due).
// Progress is kept by a consumer group, so a second run replays nothing twice.
package replay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/offsets"
	"github.com/ladder/ladder/pkg/tier"
)

// Config configures a replay.
type Config struct {
	Ladder *tier.Ladder     // required
	Kafka  kafkaconf.Config // required
	Group  string           // consumer group keeping the replay's progress (default "ladder-replay")
	Match  string           // replay only records whose ladder-error contains Match (default: all)
	Target string           // set ladder-target to this (default: keep the record's own)
	DryRun bool             // report what would be replayed; produce and commit nothing
	Log    zerolog.Logger   // progress and skipped records
	Report func(r Result)   // called for each record read (optional)
	Now    func() time.Time // clock (default time.Now)
	_      struct{}         // keep literal construction keyed
}

// Result is what happened to one dead-lettered record.
type Result struct {
	Partition int32
	Offset    int64
	Error     string // its ladder-error
	To        string // where it was (or would be) replayed; empty when skipped
	Skipped   string // why it was not replayed
}

// Stats sums a run.
type Stats struct {
	Read, Replayed, Skipped, Filtered int
}

// Run replays the dead-letter topic up to its current end and returns what it did.
func Run(ctx context.Context, cfg Config) (Stats, error) {
	if cfg.Ladder == nil {
		return Stats{}, errors.New("invalid replay config: no ladder")
	}
	if cfg.Group == "" {
		cfg.Group = "ladder-replay"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Target != "" {
		if err := tier.ValidateTopic(cfg.Target); err != nil || cfg.Ladder.Internal(cfg.Target) {
			return Stats{}, fmt.Errorf("invalid replay target %q: not a valid topic outside the ladder", cfg.Target)
		}
	}
	cc, err := cfg.Kafka.Consumer()
	if err != nil {
		return Stats{}, err
	}
	brokers := cfg.Kafka.BrokerList()
	client, err := sarama.NewClient(brokers, cc)
	if err != nil {
		return Stats{}, fmt.Errorf("connecting: %w", kafkaconf.Explain(err, brokers))
	}
	defer client.Close()
	dlq := cfg.Ladder.DLQTopic()
	parts, err := offsets.Partitions(client, dlq)
	if err != nil {
		return Stats{}, err
	}
	end, err := offsets.End(client, parts)
	if err != nil {
		return Stats{}, err
	}
	start, err := offsets.Start(client, parts)
	if err != nil {
		return Stats{}, err
	}

	var producer sarama.SyncProducer
	if !cfg.DryRun {
		pc, err := cfg.Kafka.Producer()
		if err != nil {
			return Stats{}, err
		}
		if producer, err = sarama.NewSyncProducer(brokers, pc); err != nil {
			return Stats{}, fmt.Errorf("starting producer: %w", err)
		}
		defer producer.Close()
	}
	group, err := sarama.NewConsumerGroupFromClient(cfg.Group, client)
	if err != nil {
		return Stats{}, fmt.Errorf("joining group %s: %w", cfg.Group, err)
	}
	defer group.Close()

	runCtx, done := context.WithCancel(ctx)
	defer done()
	h := &handler{cfg: cfg, producer: producer, start: start, end: end, done: done, remaining: len(parts[dlq])}
	for runCtx.Err() == nil {
		if err := group.Consume(runCtx, []string{dlq}, h); err != nil && runCtx.Err() == nil {
			return h.stats(), fmt.Errorf("reading %s: %w", dlq, err)
		}
	}
	if err := h.firstErr(); err != nil {
		return h.stats(), err
	}
	return h.stats(), ctx.Err()
}

type handler struct {
	cfg      Config
	producer sarama.SyncProducer
	start    map[offsets.TP]int64
	end      map[offsets.TP]int64
	done     context.CancelFunc

	mu        sync.Mutex
	st        Stats
	err       error
	remaining int // partitions not yet read to their end
}

func (h *handler) stats() Stats                              { h.mu.Lock(); defer h.mu.Unlock(); return h.st }
func (h *handler) firstErr() error                           { h.mu.Lock(); defer h.mu.Unlock(); return h.err }
func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *handler) finished() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.remaining--
	if h.remaining <= 0 {
		h.done()
	}
}

// ConsumeClaim replays one partition up to the end it had when the run
// started, then waits for the others.
func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	tp := offsets.TP{Topic: c.Topic(), Partition: c.Partition()}
	end := h.end[tp]
	from := c.InitialOffset()
	if from < 0 {
		from = h.start[tp] // never committed: from the oldest retained record
	}
	for from < end {
		select {
		case <-s.Context().Done():
			return nil
		case m, ok := <-c.Messages():
			if !ok {
				return nil
			}
			if err := h.replay(s, m); err != nil {
				h.mu.Lock()
				h.err = err
				h.mu.Unlock()
				h.done()
				return nil
			}
			from = m.Offset + 1
		}
	}
	h.finished()
	<-s.Context().Done()
	return nil
}

// replay schedules one dead-lettered record again and marks it.
func (h *handler) replay(s sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) error {
	res := Result{Partition: m.Partition, Offset: m.Offset}
	var headers []*sarama.RecordHeader
	for _, hd := range m.Headers {
		switch string(hd.Key) {
		case envelope.Error:
			res.Error = string(hd.Value)
			continue
		case envelope.Hops, envelope.Early:
			continue // a replayed record starts its hops again
		case envelope.Target:
			if h.cfg.Target != "" {
				continue
			}
		}
		headers = append(headers, hd)
	}
	if h.cfg.Target != "" {
		headers = append(headers, &sarama.RecordHeader{Key: []byte(envelope.Target), Value: []byte(h.cfg.Target)})
	}
	h.mu.Lock()
	h.st.Read++
	h.mu.Unlock()
	if h.cfg.Match != "" && !strings.Contains(res.Error, h.cfg.Match) {
		h.count(func(st *Stats) { st.Filtered++ })
		return h.mark(s, m)
	}
	env, err := envelope.Decode(headers)
	if err == nil && h.cfg.Ladder.Internal(env.Target) {
		err = fmt.Errorf("ladder-target: %s is a topic of the ladder itself", env.Target)
	}
	if err != nil {
		res.Skipped = err.Error()
		h.count(func(st *Stats) { st.Skipped++ })
		h.cfg.Log.Warn().Int32("partition", m.Partition).Int64("offset", m.Offset).Str("reason", res.Skipped).
			Msg("not replayed: still not routable (give --target?)")
		h.report(res)
		return h.mark(s, m)
	}
	now := h.cfg.Now()
	res.To = env.Target
	if next, ok := h.cfg.Ladder.Route(now, env.Due); ok && !env.Due.IsZero() {
		res.To = next.Topic
	}
	if !h.cfg.DryRun {
		pm := &sarama.ProducerMessage{Topic: res.To, Headers: envelope.Next(headers, -1, 0), Timestamp: now}
		if m.Key != nil {
			pm.Key = sarama.ByteEncoder(m.Key)
		}
		if m.Value != nil {
			pm.Value = sarama.ByteEncoder(m.Value)
		}
		if _, _, err := h.producer.SendMessage(pm); err != nil {
			return fmt.Errorf("replaying %s/%d@%d to %s: %w", m.Topic, m.Partition, m.Offset, res.To, err)
		}
	}
	h.count(func(st *Stats) { st.Replayed++ })
	h.report(res)
	return h.mark(s, m)
}

func (h *handler) count(f func(*Stats)) {
	h.mu.Lock()
	f(&h.st)
	h.mu.Unlock()
}

func (h *handler) report(r Result) {
	if h.cfg.Report != nil {
		h.cfg.Report(r)
	}
}

func (h *handler) mark(s sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) error {
	if !h.cfg.DryRun {
		s.MarkMessage(m, "")
	}
	return nil
}
