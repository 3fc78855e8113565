package forward

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/backoff"
	"github.com/ladder/ladder/pkg/group"
)

// Exactly-once mode: the forwarder consumes a tier record, produces its next
// hop and commits the tier offset in one Kafka transaction. The machine
// sends records into the open transaction; every TxnInterval (or at
// TxnMaxRecords) it closes it: the sink waits for every record's result,
// adds the offsets the machine computed for the partitions in it (their
// commit points as if the transaction's records were forwarded, with what
// parked records lie past them) with the consumer group generation and
// member id (KIP-447), so a forwarder that lost its partitions is fenced,
// and commits. Nothing is sent while a transaction closes: there is one
// transaction at a time, so an abort is simple: its records are sent again,
// in order, in the next one. Consumers of the targets and of the tiers read
// with read_committed.
//
// Failures stay with what they concern:
//   - a record joins a transaction only once its target's metadata is known
//     (targets.go): a missing or forbidden target parks its record and
//     aborts nothing;
//   - a record the target refused for good (too large, invalid), or whose
//     target refused this forwarder's writes, is sent again in a
//     transaction of its own;
//   - aborts back off (100ms doubling to 10s);
//   - a commit refused for a stale group generation ends the session: its
//     partitions belong to another member;
//   - a producer fenced (the broker aborted a transaction open longer than
//     the transaction timeout, or another producer took the transactional.id)
//     is replaced by a new one with the same transactional.id.

// Transaction outcomes, the outcome label of ladder_transactions_total.
const (
	TxnCommitted = "committed" // committed with the tier offsets
	TxnAborted   = "aborted"   // aborted; its records are sent again
	TxnFenced    = "fenced"    // aborted because this forwarder was fenced (stale group generation, or its producer epoch)
)

// TransactionalID is the default transactional.id of a forwarder: unique
// per forwarder (group, host, pid and a random part). A stable id per
// instance (LADDER_TRANSACTIONAL_ID, e.g. a StatefulSet pod name) lets a
// restarted instance abort its predecessor's open transaction at once
// instead of after the transaction timeout.
func TransactionalID(group string) string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b) // never fails (crypto/rand.Read panics rather than return an error)
	return fmt.Sprintf("%s-%s-%d-%s", group, host, os.Getpid(), hex.EncodeToString(b))
}

// eosState is where the transactional sink stands.
type eosState uint8

const (
	eosStopped  eosState = iota // no producer: one is started when a record comes
	eosStarting                 // the producer is being started
	eosIdle                     // a producer, no open transaction
	eosOpen                     // a transaction takes records
	eosClosing                  // the transaction commits (or aborts): nothing is sent
)

// txnBatch collects the producer's results for the records of one transaction.
type txnBatch struct {
	pending sync.WaitGroup
	mu      sync.Mutex
	failed  map[*flight]error
	first   error
}

func (b *txnBatch) fail(fl *flight, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failed == nil {
		b.failed = map[*flight]error{}
	}
	b.failed[fl] = err
	if b.first == nil {
		b.first = fmt.Errorf("producing to %s: %w", fl.msg.Topic, err)
	}
}

// eosSink is the exactly-once sink. Its state is the machine's (one
// goroutine); the blocking work (starting a producer, committing, aborting)
// runs in its worker goroutine, which posts the outcome as an event.
type eosSink struct {
	cfg     *Config
	log     zerolog.Logger
	metrics *metrics
	health  *health
	brokers []string
	pc      *sarama.Config
	box     *mailbox
	session func() *group.Session // the current group session, for the commit's group metadata

	state     eosState
	producer  sarama.AsyncProducer // owned by the worker while starting and closing
	txn       uint64
	flights   []*flight
	batch     *txnBatch
	opened    time.Time
	solo      bool
	wait      time.Time // no transaction before this (back-off after an abort)
	backoff   *backoff.Backoff
	conflicts int // transactional.id conflicts with another producer so far

	work    chan func()
	results sync.WaitGroup // the goroutines reading the producers' results
	done    sync.WaitGroup
	ctx     context.Context // ends a commit being retried when the forwarder stops
	cancel  context.CancelFunc
}

func newEOSSink(cfg *Config, log zerolog.Logger, mt *metrics, h *health, brokers []string, pc *sarama.Config, box *mailbox) *eosSink {
	s := &eosSink{cfg: cfg, log: log, metrics: mt, health: h, brokers: brokers, pc: pc, box: box,
		backoff: backoff.New(100*time.Millisecond, 10*time.Second), work: make(chan func(), 1)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.done.Go(func() {
		for w := range s.work {
			w()
		}
	})
	return s
}

func (s *eosSink) ready(fl *flight, now time.Time) bool {
	switch s.state {
	case eosStopped:
		s.start()
		return false
	case eosIdle:
		return !now.Before(s.wait)
	case eosOpen:
		return (fl == nil || !fl.solo) && !s.solo && len(s.flights) < s.cfg.TxnMaxRecords
	}
	return false
}

// start has the worker start a transactional producer (InitProducerId
// fences an older producer with the same transactional.id and aborts its
// open transaction).
func (s *eosSink) start() {
	s.state = eosStarting
	s.work <- func() {
		p, err := sarama.NewAsyncProducer(s.brokers, s.pc)
		if err != nil {
			err = fmt.Errorf("starting transactional producer %s: %w", s.pc.Producer.Transaction.ID, err)
		} else {
			s.results.Go(func() { collectResults(p) })
		}
		s.box.post(event{kind: evTxnDone, started: true, producer: p, err: err})
	}
}

// collectResults hands each record's result to its transaction's batch.
func collectResults(p sarama.AsyncProducer) {
	successes, errs := p.Successes(), p.Errors()
	for successes != nil || errs != nil {
		select {
		case m, ok := <-successes:
			if !ok {
				successes = nil
				continue
			}
			m.Metadata.(*flight).batch.pending.Done()
		case pe, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			fl := pe.Msg.Metadata.(*flight)
			fl.batch.fail(fl, pe.Err)
			fl.batch.pending.Done()
		}
	}
}

func (s *eosSink) send(fl *flight, now time.Time) {
	if s.state == eosIdle {
		if err := s.producer.BeginTxn(); err != nil {
			// The producer is in a state no transaction can begin from:
			// replace it, and send the record again in the next one.
			err = fmt.Errorf("beginning a transaction: %w", err)
			s.replace()
			fl.txn = 0
			s.box.post(event{kind: evTxnDone, flights: []*flight{fl}, err: err})
			return
		}
		s.txn++
		s.state, s.opened, s.batch, s.solo = eosOpen, now, &txnBatch{}, false
	}
	fl.txn, fl.batch = s.txn, s.batch
	fl.msg.Metadata = fl
	s.solo = s.solo || fl.solo
	s.flights = append(s.flights, fl)
	s.batch.pending.Add(1)
	s.producer.Input() <- fl.msg
}

// tick closes the open transaction when it is due: TxnInterval after it
// opened, at TxnMaxRecords, or at once for a record sent alone.
func (s *eosSink) tick(now time.Time) time.Time {
	switch s.state {
	case eosOpen:
		due := s.opened.Add(s.cfg.TxnInterval)
		if s.solo || len(s.flights) >= s.cfg.TxnMaxRecords || !now.Before(due) {
			s.close(false)
			return time.Time{}
		}
		return due
	case eosIdle:
		if now.Before(s.wait) {
			return s.wait
		}
	}
	return time.Time{}
}

func (s *eosSink) ending(lost bool, _ time.Time) {
	if s.state == eosOpen {
		s.close(lost)
	}
}

func (s *eosSink) idle() bool {
	return s.state != eosOpen && s.state != eosClosing && s.state != eosStarting
}

// close has the worker commit the open transaction with the offsets of its
// partitions (their commit points as if its records were forwarded), or
// abort it.
func (s *eosSink) close(abort bool) {
	s.state = eosClosing
	flights, batch, p, txn, opened := s.flights, s.batch, s.producer, s.txn, s.opened
	s.flights, s.batch = nil, nil
	points := map[*partition]committedPoint{}
	offsets := map[string][]*sarama.PartitionOffsetMetadata{}
	for _, fl := range flights {
		if _, ok := points[fl.p]; ok || fl.p.gone {
			continue
		}
		off, meta := fl.p.commitPoint(txn)
		points[fl.p] = committedPoint{off, meta}
		pm := &sarama.PartitionOffsetMetadata{Partition: fl.p.id, Offset: off}
		if meta != "" {
			pm.Metadata = &meta
		}
		offsets[fl.p.topic] = append(offsets[fl.p.topic], pm)
	}
	sess := s.session()
	s.work <- func() {
		err := s.finish(p, batch, offsets, sess, abort)
		ev := event{kind: evTxnDone, flights: flights, err: err, failed: batch.failed, opened: opened}
		if err == nil {
			ev.commits = points
		} else {
			ev.fenced = groupFenced(err)
			ev.replace = producerFenced(err) || errors.Is(err, errFatalProducer) || p.TxnStatus()&sarama.ProducerTxnFlagFatalError != 0
		}
		s.box.post(ev)
	}
}

// finish commits (or aborts) the transaction whose records were sent with
// batch. It runs in the worker.
func (s *eosSink) finish(p sarama.AsyncProducer, batch *txnBatch, offsets map[string][]*sarama.PartitionOffsetMetadata,
	sess *group.Session, abort bool) error {
	// Every record's result, before committing: a transaction with a failed
	// record must not commit the offsets past it.
	batch.pending.Wait()
	err := batch.first
	for fl, ferr := range batch.failed {
		if producerFenced(ferr) {
			err = fmt.Errorf("producing to %s: %w", fl.msg.Topic, ferr)
		}
	}
	if abort && err == nil {
		err = group.ErrLost
	}
	if err == nil {
		meta := &sarama.ConsumerGroupMetadata{GroupID: s.cfg.Group, GenerationID: sess.Generation(), MemberID: sess.MemberID()}
		if err = p.AddOffsetsToTxnWithGroupMetadata(offsets, meta); err != nil {
			err = fmt.Errorf("adding the tier offsets to the transaction: %w", err)
		} else if err = commit(s.ctx, p, s.log, s.health); err == nil {
			return nil
		}
	}
	return s.abort(p, err)
}

// abort aborts the open transaction after err, retrying with back-off while
// the coordinator cannot be reached, until it is aborted, or the producer is
// fenced (the abort itself may be the first to learn that the broker timed
// the transaction out, or that another producer took the transactional.id)
// or unusable. It returns err, or why the producer must be replaced.
func (s *eosSink) abort(p sarama.AsyncProducer, err error) error {
	b := backoff.New(100*time.Millisecond, 2*time.Second)
	for {
		status := p.TxnStatus()
		switch {
		case producerFenced(err):
			return err
		case status&sarama.ProducerTxnFlagFatalError != 0:
			return fmt.Errorf("%w: %w", errFatalProducer, err)
		case status&(sarama.ProducerTxnFlagInTransaction|sarama.ProducerTxnFlagAbortableError) == 0:
			return err
		}
		aerr := p.AbortTxn()
		switch {
		case aerr == nil:
			return err
		case producerFenced(aerr):
			return fmt.Errorf("aborting the transaction: %w", aerr)
		}
		d := b.Next()
		s.log.Warn().Err(aerr).Dur("retry_in", d).Msg("exactly-once: the abort did not complete; retrying it")
		if !backoff.Sleep(s.ctx, d) {
			return fmt.Errorf("%w: %w", errFatalProducer, aerr)
		}
	}
}

// errFatalProducer marks a failure that leaves the producer unusable.
var errFatalProducer = errors.New("the transactional producer is unusable")

// commit commits the open transaction. When sarama gives up after its own
// retries (CONCURRENT_TRANSACTIONS or a coordinator away for a while), it
// leaves the producer committing, neither abortable nor fatal: every later
// BeginTxn would fail. The commit is then retried with back-off, until it
// completes or sarama reports an error to abort on. Replacing the producer
// instead could complete a commit that did reach the broker, and the
// records would be sent again: duplicates.
func commit(ctx context.Context, p sarama.AsyncProducer, log zerolog.Logger, h *health) error {
	b := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		err := p.CommitTxn()
		if err == nil {
			return nil
		}
		err = fmt.Errorf("committing the transaction: %w", err)
		st := p.TxnStatus()
		if st&sarama.ProducerTxnFlagCommittingTransaction == 0 ||
			st&(sarama.ProducerTxnFlagAbortableError|sarama.ProducerTxnFlagFatalError) != 0 {
			return err
		}
		h.produced(err)
		d := b.Next()
		log.Warn().Err(err).Dur("retry_in", d).Msg("exactly-once: the commit did not complete; retrying it")
		if !backoff.Sleep(ctx, d) {
			return err
		}
	}
}

// result takes the outcome of the worker's job (a started producer, a
// finished transaction) before the machine takes the records'.
func (s *eosSink) result(ev *event, now time.Time) {
	if ev.started {
		if ev.err != nil {
			s.log.Error().Err(ev.err).Msg("exactly-once: cannot start the transactional producer")
			s.health.produced(ev.err)
			s.state, s.wait = eosStopped, now.Add(s.backoff.Next())
			return
		}
		s.producer, s.state = ev.producer, eosIdle
		return
	}
	if s.state == eosClosing {
		s.state = eosIdle
	}
	if ev.err == nil {
		s.backoff.Reset()
		s.metrics.transactions.WithLabelValues(TxnCommitted).Inc()
		return
	}
	outcome := TxnAborted
	if ev.fenced || producerFenced(ev.err) {
		outcome = TxnFenced
	}
	s.metrics.transactions.WithLabelValues(outcome).Inc()
	d := s.backoff.Next()
	s.wait = now.Add(d)
	l := s.log.Warn().Err(ev.err).Int("records", len(ev.flights)).Dur("retry_in", d)
	switch {
	case errors.Is(ev.err, group.ErrLost):
		l.Msg("exactly-once: the group session was lost; transaction aborted")
	case ev.fenced:
		l.Msg("exactly-once: commit fenced, the group has moved to a new generation; ending this session (its partitions resume from their committed offsets)")
	case producerFenced(ev.err) && now.Sub(ev.opened) >= s.cfg.TxnTimeout:
		l.Str("transactional_id", s.pc.Producer.Transaction.ID).
			Msg("exactly-once: producer fenced: the broker aborted the transaction, open longer than the transaction timeout; starting a new producer with the same transactional.id and sending the records again")
	case producerFenced(ev.err):
		// Fenced within the timeout: another producer initialized this
		// transactional.id (a newer instance with the same
		// LADDER_TRANSACTIONAL_ID). Taking it back would fence that one in
		// turn, and the two would fence each other for ever: move to the
		// next id of this process (base-1, base-2, ...: one per such
		// conflict, not one per fencing). Zombies are fenced by the group
		// generation of their commits whatever the id.
		s.conflicts++
		old := s.pc.Producer.Transaction.ID
		s.pc.Producer.Transaction.ID = fmt.Sprintf("%s-%d", s.cfg.TransactionalID, s.conflicts)
		l.Str("transactional_id", old).Str("next_transactional_id", s.pc.Producer.Transaction.ID).
			Msg("exactly-once: producer fenced by another producer with this transactional.id (is another forwarder running with the same LADDER_TRANSACTIONAL_ID?); continuing under the next id and sending the records again")
	default:
		l.Msg("exactly-once: transaction failed; aborting it and sending its records again")
	}
	if ev.replace {
		s.replace()
	}
}

// replace closes the producer: the next record starts a new one with the
// same transactional.id (InitProducerId bumps its epoch).
func (s *eosSink) replace() {
	if s.producer != nil {
		p := s.producer
		s.producer = nil
		go p.AsyncClose()
	}
	s.state = eosStopped
}

// stop stops the worker and the producer.
func (s *eosSink) stop() {
	s.cancel()
	close(s.work)
	s.done.Wait()
	if s.producer != nil {
		s.producer.AsyncClose()
	}
	s.results.Wait()
}

// groupFenced reports whether err says the commit's group generation is
// stale: the partitions of that session belong to another member now.
func groupFenced(err error) bool {
	return errors.Is(err, sarama.ErrIllegalGeneration) || errors.Is(err, sarama.ErrUnknownMemberId) ||
		errors.Is(err, sarama.ErrFencedInstancedId)
}

// producerFenced reports whether err says another producer took over this
// producer's transactional.id, or the broker bumped its epoch.
func producerFenced(err error) bool {
	return errors.Is(err, sarama.ErrProducerFenced) || errors.Is(err, sarama.ErrInvalidProducerEpoch)
}

// transactionalConfig turns a producer configuration into a transactional one.
func transactionalConfig(pc *sarama.Config, id string, timeout time.Duration) *sarama.Config {
	pc.Producer.Transaction.ID = id
	pc.Producer.Transaction.Timeout = timeout
	pc.Producer.Idempotent = true
	pc.Producer.RequiredAcks = sarama.WaitForAll
	pc.Net.MaxOpenRequests = 1
	pc.Producer.Return.Successes = true // each record's result is collected for its transaction
	pc.Producer.Return.Errors = true
	pc.Producer.Transaction.Retry.Max = 10
	return pc
}
