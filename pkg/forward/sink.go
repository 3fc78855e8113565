package forward

import (
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/backoff"
)

// aloSink is the at-least-once sink: an idempotent acks=all producer. A
// record's offset is committed once it and every record before it in its
// partition were acknowledged; a crash in between forwards them again.
type aloSink struct {
	producer sarama.AsyncProducer
	solo     chan *sarama.ProducerMessage // records sent alone (see flight.solo)
	box      *mailbox
	wg       sync.WaitGroup
}

// newALOSink starts the producer and the goroutines that hand its results
// to the machine.
func newALOSink(brokers []string, pc *sarama.Config, box *mailbox) (*aloSink, error) {
	p, err := sarama.NewAsyncProducer(brokers, pc)
	if err != nil {
		return nil, fmt.Errorf("starting producer: %w", err)
	}
	s := &aloSink{producer: p, solo: make(chan *sarama.ProducerMessage, 64), box: box}
	s.wg.Go(s.dispatchAcks)
	s.wg.Go(func() {
		for pe := range p.Errors() {
			box.post(event{kind: evFailed, fl: pe.Msg.Metadata.(*flight), err: pe.Err})
		}
	})
	s.wg.Go(func() { s.sendAlone(brokers, pc) })
	return s, nil
}

func (s *aloSink) ready(*flight, time.Time) bool { return true }

// send hands fl to the producer. It may block while the producer's input
// is full; results go to the mailbox meanwhile, so the producer drains.
func (s *aloSink) send(fl *flight, _ time.Time) {
	fl.msg.Metadata = fl
	if fl.solo {
		s.solo <- fl.msg
		return
	}
	s.producer.Input() <- fl.msg
}

func (s *aloSink) tick(time.Time) time.Time { return time.Time{} }
func (s *aloSink) ending(bool, time.Time)   {}
func (s *aloSink) idle() bool               { return true }
func (s *aloSink) result(*event, time.Time) {}

// close flushes the producer and waits, up to timeout, for every result to
// be handed over. Records sarama still retries then (a broker away) are
// given up: their offsets were not committed, the next owner forwards them.
func (s *aloSink) close(timeout time.Duration, log zerolog.Logger) {
	close(s.solo)
	s.producer.AsyncClose()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		log.Warn().Dur("waited", timeout).Msg("the producer did not finish its retries: stopping without them (their offsets were not committed)")
	}
}

// aloRetries has sarama retry a failed batch itself, in order, for about
// four minutes (100 ms doubling to 2 s, 120 times) before it returns the
// error. Its idempotent producer keeps a target partition's records in
// order only while it retries them itself: once it returns a batch as
// failed it goes on with the later ones, which would then reach the target
// before ladder sends the failed one again. Readiness and
// ladder_oldest_in_flight_seconds tell of records stuck meanwhile.
func aloRetries(pc *sarama.Config) {
	pc.Producer.Retry.Max = 120
	pc.Producer.Retry.BackoffFunc = func(retries, _ int) time.Duration {
		return backoff.Delay(retries+1, 100*time.Millisecond, 2*time.Second)
	}
}

// dispatchAcks hands the producer's acknowledgements to the machine, those
// already waiting as one event: one wake-up for many records.
func (s *aloSink) dispatchAcks() {
	successes := s.producer.Successes()
	for m := range successes {
		fls := []*flight{m.Metadata.(*flight)}
		for more := true; more && len(fls) < 4096; {
			select {
			case m, ok := <-successes:
				if !ok {
					more = false
					break
				}
				fls = append(fls, m.Metadata.(*flight))
			default:
				more = false
			}
		}
		s.box.post(event{kind: evAcks, flights: fls})
	}
}

// sendAlone sends the records of s.solo one at a time, each alone in its
// produce request, and hands each result to the machine. It is for records
// refused for good, to tell a record the target refuses from a batch it
// refuses, and for records whose target refused this forwarder's writes.
func (s *aloSink) sendAlone(brokers []string, pc *sarama.Config) {
	var p sarama.SyncProducer
	defer func() {
		if p != nil {
			p.Close()
		}
	}()
	for msg := range s.solo {
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
		if err != nil {
			s.box.post(event{kind: evFailed, fl: fl, err: err})
		} else {
			s.box.post(event{kind: evAcks, flights: []*flight{fl}})
		}
	}
}

// mailbox carries events from other goroutines to the machine's. post never
// blocks, so a producer's results can always be handed over whatever the
// machine is doing (it may itself be waiting for the producer's input).
// Its length is bounded by what the budget lets be in flight.
type mailbox struct {
	mu     sync.Mutex
	events []event
	ping   chan struct{}
}

func newMailbox() *mailbox { return &mailbox{ping: make(chan struct{}, 1)} }

func (b *mailbox) post(ev event) {
	b.mu.Lock()
	b.events = append(b.events, ev)
	b.mu.Unlock()
	select {
	case b.ping <- struct{}{}:
	default:
	}
}

// take returns the waiting events, reusing buf's storage.
func (b *mailbox) take(buf []event) []event {
	b.mu.Lock()
	defer b.mu.Unlock()
	buf, b.events = b.events, buf[:0]
	return buf
}
