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
)

// Exactly-once mode: the forwarder consumes a tier record, produces its next
// hop and commits the tier offset in one Kafka transaction. One transaction
// loop per process owns a transactional producer; partitions hand it their
// records in order, and it commits them in batches (every TxnInterval or
// TxnMaxRecords) together with the next offset of every partition in the
// batch, carrying the consumer group generation and member id (KIP-447) so a
// forwarder that lost its partitions in a rebalance (a zombie) is fenced:
// its commit fails and its records are discarded. Consumers of the targets
// and of the tiers read with read_committed.
//
// Failures stay with what they concern:
//   - a record joins a transaction only once its target's metadata is known
//     (partition.awaitTopic): a missing target holds its own partition, with
//     back-off, and aborts nothing;
//   - a transaction commits only when every record of it was acknowledged;
//     the producer's results are collected per transaction (txnBatch), so
//     an error is never taken for one of the next transaction;
//   - an aborted transaction's partitions send their unacknowledged records
//     again, in order, in a new transaction (partition.resend); every
//     partition of it moves to a new send generation, and the records it
//     sent under the old one are dropped here, so a partition's records in
//     a transaction always continue from its last committed offset;
//   - a record the target refused for good (too large, invalid) is sent
//     again in a transaction of its own, so that a refusal of the batch it
//     travelled in is not taken for its own; refused permanentAfter times,
//     it is dead-lettered;
//   - aborts back off (100ms doubling to 10s);
//   - only a commit refused for a stale group generation ends a session (the
//     session of that batch), since its partitions belong to another member.

// Transaction outcomes, the outcome label of ladder_transactions_total.
const (
	TxnCommitted = "committed" // committed with the tier offsets
	TxnAborted   = "aborted"   // aborted; its records are sent again
	TxnFenced    = "fenced"    // aborted because this forwarder was fenced (stale group generation, or another producer with its transactional.id)
)

// txnItem is a flight handed to the transaction loop, with the partition's
// send generation when it was sent.
type txnItem struct {
	fl  *flight
	gen uint64
}

type txnLoop struct {
	f        *Forwarder
	brokers  []string
	pc       *sarama.Config
	baseID   string
	in       chan txnItem
	producer sarama.AsyncProducer
	results  sync.WaitGroup // the goroutine reading the producer's results
	backoff  *backoff
}

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

// TransactionalID is the default transactional.id of a forwarder: unique
// per forwarder (group, host, pid and a random part). A stable id per
// instance (LADDER_TRANSACTIONAL_ID, e.g. a StatefulSet pod name) lets a
// restarted instance abort its predecessor's open transaction at once
// instead of after the transaction timeout.
func TransactionalID(group string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%s-%d-%s", group, host, os.Getpid(), randomSuffix())
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // never fails (crypto/rand.Read panics rather than return an error)
	return hex.EncodeToString(b)
}

func newTxnLoop(f *Forwarder, brokers []string, pc *sarama.Config) *txnLoop {
	return &txnLoop{f: f, brokers: brokers, pc: pc, baseID: pc.Producer.Transaction.ID,
		in: make(chan txnItem, 4096), backoff: newBackoff(100*time.Millisecond, 10*time.Second)}
}

// start creates the transactional producer (InitProducerId fences an older
// producer with the same transactional.id and aborts its open transaction).
func (t *txnLoop) start() error {
	p, err := sarama.NewAsyncProducer(t.brokers, t.pc)
	if err != nil {
		return fmt.Errorf("starting transactional producer %s: %w", t.pc.Producer.Transaction.ID, err)
	}
	t.producer = p
	t.results.Go(func() {
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
	})
	return nil
}

func (t *txnLoop) close() {
	if t.producer != nil {
		t.producer.AsyncClose()
		t.results.Wait()
		t.producer = nil
	}
}

// run commits batches until ctx is done.
func (t *txnLoop) run(ctx context.Context) {
	defer t.close()
	var next *txnItem
	for {
		if next == nil {
			select {
			case it := <-t.in:
				next = &it
			case <-ctx.Done():
				return
			}
		}
		next = t.transaction(ctx, *next)
	}
}

// stale reports whether it must not join a transaction: its partition
// moved to a new send generation since (it will send the record again), or
// its session was fenced, or its claim has ended.
func (t *txnLoop) stale(it txnItem) bool {
	p := it.fl.p
	if it.gen != p.txnGen.Load() || p.sess.isFenced() {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// transaction commits one batch starting with first and returns the item
// that did not fit (another session), if any.
func (t *txnLoop) transaction(ctx context.Context, first txnItem) (leftover *txnItem) {
	if t.stale(first) {
		return nil
	}
	if t.producer == nil {
		if err := t.start(); err != nil {
			t.f.log.Error().Err(err).Msg("exactly-once: cannot start the transactional producer")
			t.abort(ctx, first.fl.p.sess, []*flight{first.fl}, nil, err)
			return nil
		}
	}
	if err := t.producer.BeginTxn(); err != nil {
		t.abort(ctx, first.fl.p.sess, []*flight{first.fl}, nil, fmt.Errorf("beginning transaction: %w", err))
		return nil
	}
	sess := first.fl.p.sess
	b := &txnBatch{}
	var batch []*flight
	add := func(fl *flight) {
		fl.batch = b
		fl.msg.Metadata = fl
		b.pending.Add(1)
		batch = append(batch, fl)
		t.producer.Input() <- fl.msg
	}
	add(first.fl)
	timer := time.NewTimer(t.f.cfg.TxnInterval)
	defer timer.Stop()
collect:
	for len(batch) < t.f.cfg.TxnMaxRecords && !first.fl.solo {
		select {
		case it := <-t.in:
			switch {
			case t.stale(it):
			case it.fl.p.sess != sess || it.fl.solo:
				leftover = &it
				break collect
			default:
				add(it.fl)
			}
		case <-timer.C:
			break collect
		}
	}
	// Every record's result, before committing: a transaction with a
	// failed record must not commit the offsets past it.
	b.pending.Wait()
	err := b.first
	last := map[*partition]int64{}
	for _, fl := range batch {
		last[fl.p] = fl.offset
	}
	if err == nil {
		offsets := map[string][]*sarama.PartitionOffsetMetadata{}
		for p, off := range last {
			offsets[p.claim.Topic()] = append(offsets[p.claim.Topic()], &sarama.PartitionOffsetMetadata{Partition: p.claim.Partition(), Offset: off + 1})
		}
		meta := &sarama.ConsumerGroupMetadata{GroupID: t.f.cfg.Group, GenerationID: sess.GenerationID(), MemberID: sess.MemberID()}
		if err = t.producer.AddOffsetsToTxnWithGroupMetadata(offsets, meta); err != nil {
			err = fmt.Errorf("adding the tier offsets to the transaction: %w", err)
		} else {
			err = t.commit(ctx)
		}
	}
	if err != nil {
		t.abort(ctx, sess, batch, b.failed, err)
		return leftover
	}
	t.backoff.reset()
	t.f.metrics.transactions.WithLabelValues(TxnCommitted).Inc()
	for p, off := range last {
		p.nextOffset.Store(off + 1)
	}
	byPartition := map[*partition][]*flight{}
	for _, fl := range batch {
		byPartition[fl.p] = append(byPartition[fl.p], fl)
	}
	for p, fls := range byPartition {
		p.notify(event{acks: fls})
	}
	return leftover
}

// commit commits the open transaction. When sarama gives up after its own
// retries (CONCURRENT_TRANSACTIONS or a coordinator away for a while), it
// leaves the producer committing, neither abortable nor fatal: every later
// BeginTxn would fail. The commit is then retried with back-off, until it
// completes or sarama reports an error to abort on. Replacing the producer
// instead could complete a commit that did reach the broker, and the
// records would be sent again: duplicates.
func (t *txnLoop) commit(ctx context.Context) error {
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		err := t.producer.CommitTxn()
		if err == nil {
			return nil
		}
		err = fmt.Errorf("committing the transaction: %w", err)
		st := t.producer.TxnStatus()
		if st&sarama.ProducerTxnFlagCommittingTransaction == 0 ||
			st&(sarama.ProducerTxnFlagAbortableError|sarama.ProducerTxnFlagFatalError) != 0 {
			return err
		}
		t.f.health.produced(err)
		d := b.next()
		t.f.log.Warn().Err(err).Dur("retry_in", d).Msg("exactly-once: the commit did not complete; retrying it")
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
	}
}

// groupFenced reports whether err says the commit's group generation is
// stale: the partitions of that session belong to another member now.
func groupFenced(err error) bool {
	return errors.Is(err, sarama.ErrIllegalGeneration) || errors.Is(err, sarama.ErrUnknownMemberId) ||
		errors.Is(err, sarama.ErrFencedInstancedId)
}

// producerFenced reports whether err says another producer took over this
// producer's transactional.id.
func producerFenced(err error) bool {
	return errors.Is(err, sarama.ErrProducerFenced) || errors.Is(err, sarama.ErrInvalidProducerEpoch)
}

// abort aborts the open transaction (or discards a producer that cannot),
// moves every partition of the batch to a new send generation and tells it
// to send its unacknowledged records again (with the errors of its records
// that failed), then backs off. A commit refused for a stale generation ends
// sess instead: its partitions have another owner.
func (t *txnLoop) abort(ctx context.Context, sess *session, batch []*flight, failed map[*flight]error, cause error) {
	fenced := groupFenced(cause)
	byProducer := producerFenced(cause)
	for fl, err := range failed {
		if !byProducer && producerFenced(err) {
			byProducer, cause = true, fmt.Errorf("producing to %s: %w", fl.msg.Topic, err)
		}
	}
	// Abort first: the abort itself may be the first to learn that another
	// producer took the transactional.id (its record failed with an invalid
	// state before the broker said why).
	if t.producer != nil {
		status := t.producer.TxnStatus()
		switch {
		case status&sarama.ProducerTxnFlagFatalError != 0 || byProducer:
			t.close() // fenced or broken: a new producer starts afresh
		case status&(sarama.ProducerTxnFlagInTransaction|sarama.ProducerTxnFlagAbortableError) != 0:
			if err := t.producer.AbortTxn(); err != nil {
				if !byProducer && producerFenced(err) {
					byProducer, cause = true, fmt.Errorf("aborting the transaction: %w", err)
				}
				t.f.log.Warn().Err(err).Msg("exactly-once: abort failed; replacing the producer")
				t.close()
			}
		}
	}
	outcome := TxnAborted
	if fenced || byProducer {
		outcome = TxnFenced
	}
	t.f.metrics.transactions.WithLabelValues(outcome).Inc()
	t.f.health.produced(cause)
	d := t.backoff.next()
	ev := t.f.log.Warn().Err(cause).Int("records", len(batch)).Dur("retry_in", d)
	switch {
	case fenced:
		ev.Int32("generation", sess.GenerationID()).Msg("exactly-once: commit fenced, the group has moved to a new generation; " +
			"ending this session (its partitions resume from their committed offsets)")
	case byProducer:
		ev.Str("transactional_id", t.pc.Producer.Transaction.ID).Msg("exactly-once: producer fenced: another producer took this " +
			"transactional.id, or the broker aborted a transaction open longer than the transaction timeout; continuing under a new " +
			"transactional.id and sending the records again")
	default:
		ev.Msg("exactly-once: transaction failed; aborting it and sending its records again")
	}
	if byProducer {
		// Taking the id back would fence the other producer in turn, and
		// the two would fence each other for ever. Zombies are fenced by
		// the group generation of their commits whatever the id.
		t.pc.Producer.Transaction.ID = t.baseID + "-" + randomSuffix()
	}
	if fenced {
		sess.fence()
	}
	byPartition := map[*partition][]*flight{}
	for _, fl := range batch {
		byPartition[fl.p] = append(byPartition[fl.p], fl)
	}
	for p, fls := range byPartition {
		ev := event{abort: p.txnGen.Add(1)}
		for _, fl := range fls {
			if err, ok := failed[fl]; ok {
				ev.failed = append(ev.failed, failure{fl, err})
			}
		}
		p.notify(ev)
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
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
