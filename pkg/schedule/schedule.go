// Package schedule is the producer-side API of the ladder: it schedules a
// message for a target topic after a delay or at a time, by writing it to
// the tier the routing rule picks with the ladder-* headers set.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/tier"
)

// Message is a message to bring back to Topic later.
type Message struct {
	// Topic is the target: where the message goes when it is due (required).
	Topic string
	// Key and Value pass through the ladder byte for byte; nil stays null.
	Key, Value []byte
	// Headers pass through byte for byte; ladder-* headers of the contract
	// are replaced by the scheduler's.
	Headers []sarama.RecordHeader
	// At is when the message is due. When zero, it is due Delay from now.
	At time.Time
	// Delay is used when At is zero. A due time that is not in the future
	// sends the message straight to Topic.
	Delay time.Duration
}

// ErrInvalidMessage is wrapped by the errors of messages that cannot be scheduled.
var ErrInvalidMessage = errors.New("invalid message")

// Record builds the Kafka record that schedules m at now: its topic is the
// tier Route picks (or the target when m is already due), its timestamp is
// now, and its headers carry ladder-target, ladder-due and ladder-scheduled.
// Callers with their own producer can send it as is.
func Record(l *tier.Ladder, m Message, now time.Time) (*sarama.ProducerMessage, error) {
	pm, _, err := record(l, m, now)
	return pm, err
}

// record is Record that also returns the due time written to ladder-due.
func record(l *tier.Ladder, m Message, now time.Time) (*sarama.ProducerMessage, time.Time, error) {
	if err := tier.ValidateTopic(m.Topic); err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: target: %w", ErrInvalidMessage, err)
	}
	if l.Internal(m.Topic) {
		return nil, time.Time{}, fmt.Errorf("%w: target %s is a topic of the ladder itself", ErrInvalidMessage, m.Topic)
	}
	due := m.At
	if due.IsZero() {
		due = now.Add(m.Delay)
	}
	due = due.Truncate(time.Millisecond) // the wire carries milliseconds
	topic := m.Topic
	if next, ok := l.Route(now, due); ok {
		topic = next.Topic
	}
	pm := &sarama.ProducerMessage{
		Topic:     topic,
		Headers:   envelope.New(m.Topic, due, now, m.Headers),
		Timestamp: now,
	}
	if m.Key != nil {
		pm.Key = sarama.ByteEncoder(m.Key)
	}
	if m.Value != nil {
		pm.Value = sarama.ByteEncoder(m.Value)
	}
	return pm, due, nil
}

// Config configures a Scheduler.
type Config struct {
	// Ladder is the tier set to schedule into (required).
	Ladder *tier.Ladder
	// Kafka is the connection configuration (required unless a producer is
	// given to NewWithProducer).
	Kafka kafkaconf.Config
	// Log receives warnings (default: discard).
	Log zerolog.Logger
}

// Scheduler schedules messages through an idempotent, acks=all async
// producer. It is safe for concurrent use: many Schedule calls in flight at
// once are batched together by the producer.
type Scheduler struct {
	ladder   *tier.Ladder
	producer sarama.AsyncProducer
	log      zerolog.Logger
	now      func() time.Time

	mu      sync.RWMutex // guards closed against Send racing Close
	closed  bool
	pending sync.WaitGroup
	results sync.WaitGroup
}

// New connects a producer to cfg.Kafka and returns a Scheduler.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Ladder == nil {
		return nil, errors.New("invalid scheduler config: no ladder")
	}
	pc, err := cfg.Kafka.Producer()
	if err != nil {
		return nil, fmt.Errorf("invalid scheduler config: %w", err)
	}
	p, err := sarama.NewAsyncProducer(cfg.Kafka.BrokerList(), pc)
	if err != nil {
		return nil, fmt.Errorf("starting producer: %w", kafkaconf.Explain(err, cfg.Kafka.BrokerList()))
	}
	return NewWithProducer(cfg.Ladder, p, cfg.Log), nil
}

// NewWithProducer returns a Scheduler on an existing async producer, which
// must report successes and errors (Producer.Return.Successes and .Errors).
// The Scheduler owns it from then on and closes it in Close.
func NewWithProducer(l *tier.Ladder, p sarama.AsyncProducer, log zerolog.Logger) *Scheduler {
	s := &Scheduler{ladder: l, producer: p, log: log, now: time.Now}
	s.results.Go(s.collect)
	return s
}

// callback receives the outcome of one record; on success, pm carries the
// partition and offset the broker gave it.
type callback func(pm *sarama.ProducerMessage, err error)

// Send schedules m without waiting for the broker. done, if not nil, is
// called exactly once with the outcome (nil once the broker acknowledged the
// record), from the scheduler's result goroutine: it must not block.
func (s *Scheduler) Send(ctx context.Context, m Message, done func(error)) error {
	var meta any
	if done != nil {
		meta = done // no wrapping closure: this is the high-rate path
	}
	_, err := s.send(ctx, m, meta)
	return err
}

// send builds the record of m, hands it to the producer and returns the due
// time it carries. done, a func(error), a callback or nil, gets the outcome.
func (s *Scheduler) send(ctx context.Context, m Message, done any) (time.Time, error) {
	pm, due, err := record(s.ladder, m, s.now())
	if err != nil {
		return time.Time{}, err
	}
	pm.Metadata = done
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return time.Time{}, errors.New("scheduler is closed")
	}
	s.pending.Add(1)
	select {
	case s.producer.Input() <- pm:
		return due, nil
	case <-ctx.Done():
		s.pending.Done()
		return time.Time{}, ctx.Err()
	}
}

// Schedule schedules m and waits until the broker acknowledged it.
func (s *Scheduler) Schedule(ctx context.Context, m Message) error {
	_, err := s.ScheduleReceipt(ctx, m)
	return err
}

// Receipt says what Schedule wrote: the due time carried in ladder-due
// (milliseconds, as on the wire), the topic the record went to (the tier
// routing picked, or the target when it was already due), and where the
// broker stored it.
type Receipt struct {
	Due       time.Time
	Topic     string
	Partition int32
	Offset    int64
}

// ScheduleReceipt is Schedule that also returns the Receipt, so a caller
// can report the due time actually sent (a Delay is resolved against the
// scheduler's clock at send time).
func (s *Scheduler) ScheduleReceipt(ctx context.Context, m Message) (Receipt, error) {
	type result struct {
		pm  *sarama.ProducerMessage
		err error
	}
	res := make(chan result, 1)
	due, err := s.send(ctx, m, callback(func(pm *sarama.ProducerMessage, err error) { res <- result{pm, err} }))
	if err != nil {
		return Receipt{}, err
	}
	select {
	case r := <-res:
		if r.err != nil {
			return Receipt{}, r.err
		}
		return Receipt{Due: due, Topic: r.pm.Topic, Partition: r.pm.Partition, Offset: r.pm.Offset}, nil
	case <-ctx.Done():
		return Receipt{}, ctx.Err()
	}
}

// ScheduleBatch schedules every message, pipelined, and waits for all of
// them. It returns the errors of the messages that failed, joined.
func (s *Scheduler) ScheduleBatch(ctx context.Context, ms []Message) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for i, m := range ms {
		wg.Add(1)
		err := s.Send(ctx, m, func(err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("message %d: %w", i, err))
				mu.Unlock()
			}
			wg.Done()
		})
		if err != nil {
			wg.Done()
			mu.Lock()
			errs = append(errs, fmt.Errorf("message %d: %w", i, err))
			mu.Unlock()
			if ctx.Err() != nil {
				break
			}
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Flush waits until every message sent so far has its outcome.
func (s *Scheduler) Flush() { s.pending.Wait() }

// Close flushes and closes the producer.
func (s *Scheduler) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.pending.Wait()
	s.producer.AsyncClose()
	s.results.Wait()
	return nil
}

func (s *Scheduler) collect() {
	successes, errs := s.producer.Successes(), s.producer.Errors()
	for successes != nil || errs != nil {
		select {
		case m, ok := <-successes:
			if !ok {
				successes = nil
				continue
			}
			s.finish(m, nil)
		case pe, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			s.finish(pe.Msg, fmt.Errorf("scheduling to %s: %w", pe.Msg.Topic, pe.Err))
		}
	}
}

func (s *Scheduler) finish(m *sarama.ProducerMessage, err error) {
	switch done := m.Metadata.(type) {
	case func(error):
		done(err)
	case callback:
		done(m, err)
	default:
		if err != nil {
			s.log.Warn().Err(err).Msg("scheduling failed")
		}
	}
	s.pending.Done()
}
