package forward

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
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
// Any failed transaction is aborted and the consumer group session is
// restarted, so every partition resumes from its last committed offset: a
// record is then forwarded again in a new transaction, never twice visibly.

// errTxnAborted is the event error of a flight whose transaction was aborted.
var errTxnAborted = errors.New("transaction aborted")

type txnLoop struct {
	f        *Forwarder
	brokers  []string
	pc       *sarama.Config
	in       chan *flight
	producer sarama.AsyncProducer
	errs     sync.WaitGroup
	failed   atomic.Pointer[error] // first produce error of the current transaction

	mu        sync.Mutex
	restart   context.CancelFunc // ends the current consumer group session
	dropEpoch uint64             // flights of sessions up to this one are discarded

	Commits, Aborts atomic.Int64
}

// TransactionalID is the default transactional.id of a forwarder process:
// unique per process. A stable id per instance (LADDER_TRANSACTIONAL_ID, e.g. a
// StatefulSet pod name) lets a restarted instance abort its predecessor's
// open transaction at once instead of after the transaction timeout.
func TransactionalID(group string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%s-%d-%d", group, host, os.Getpid(), time.Now().UnixNano()%1e6)
}

func newTxnLoop(f *Forwarder, brokers []string, pc *sarama.Config) *txnLoop {
	return &txnLoop{f: f, brokers: brokers, pc: pc, in: make(chan *flight, 4096)}
}

// start creates the transactional producer (InitProducerId fences an older
// producer with the same transactional.id).
func (t *txnLoop) start() error {
	p, err := sarama.NewAsyncProducer(t.brokers, t.pc)
	if err != nil {
		return fmt.Errorf("starting transactional producer %s: %w", t.pc.Producer.Transaction.ID, err)
	}
	t.producer = p
	t.errs.Go(func() {
		for pe := range p.Errors() {
			err := fmt.Errorf("producing to %s: %w", pe.Msg.Topic, pe.Err)
			t.failed.CompareAndSwap(nil, &err)
			if fl, ok := pe.Msg.Metadata.(*flight); ok && permanent(pe.Err) && !fl.dlq {
				t.f.markPoison(poisonKey{fl.p.claim.Topic(), fl.p.claim.Partition(), fl.offset}, err)
			}
		}
	})
	return nil
}

func (t *txnLoop) close() {
	if t.producer != nil {
		t.producer.AsyncClose()
		t.errs.Wait()
		t.producer = nil
	}
}

// setSession registers how to end the current session after an abort.
func (t *txnLoop) setSession(cancel context.CancelFunc) {
	t.mu.Lock()
	t.restart = cancel
	t.mu.Unlock()
}

// run commits batches until ctx is done and no flight is waiting.
func (t *txnLoop) run(ctx context.Context) {
	defer t.close()
	var next *flight
	for {
		if next == nil {
			select {
			case next = <-t.in:
			case <-ctx.Done():
				return
			}
		}
		next = t.transaction(next)
	}
}

// transaction commits one batch starting with first and returns the flight
// that did not fit (another session), if any.
func (t *txnLoop) transaction(first *flight) (leftover *flight) {
	epoch := first.p.epoch
	if t.dropped(epoch) {
		first.p.events <- event{f: first, err: errTxnAborted}
		return nil
	}
	if t.producer == nil {
		if err := t.start(); err != nil {
			t.f.log.Error().Err(err).Msg("exactly-once: cannot start the transactional producer")
			t.abort([]*flight{first}, err)
			time.Sleep(time.Second)
			return nil
		}
	}
	if err := t.producer.BeginTxn(); err != nil {
		t.abort([]*flight{first}, fmt.Errorf("beginning transaction: %w", err))
		return nil
	}
	t.failed.Store(nil)
	batch := []*flight{first}
	t.producer.Input() <- first.msg
	timer := time.NewTimer(t.f.cfg.TxnInterval)
	defer timer.Stop()
collect:
	for len(batch) < t.f.cfg.TxnMaxRecords {
		select {
		case fl := <-t.in:
			if fl.p.epoch != epoch {
				leftover = fl
				break collect
			}
			batch = append(batch, fl)
			t.producer.Input() <- fl.msg
		case <-timer.C:
			break collect
		}
	}

	sess := first.p.sess
	meta := &sarama.ConsumerGroupMetadata{GroupID: t.f.cfg.Group, GenerationID: sess.GenerationID(), MemberID: sess.MemberID()}
	offsets := map[string][]*sarama.PartitionOffsetMetadata{}
	last := map[*partition]int64{}
	for _, fl := range batch {
		last[fl.p] = fl.offset
	}
	for p, off := range last {
		offsets[p.claim.Topic()] = append(offsets[p.claim.Topic()], &sarama.PartitionOffsetMetadata{Partition: p.claim.Partition(), Offset: off + 1})
	}
	err := t.producer.AddOffsetsToTxnWithGroupMetadata(offsets, meta)
	if err == nil {
		err = t.producer.CommitTxn()
	}
	if perr := t.failed.Load(); err == nil && perr != nil {
		err = *perr // sarama commits what it could; a failed record must not be skipped
	}
	if err != nil {
		t.abort(batch, err)
		return leftover
	}
	t.Commits.Add(1)
	for p, off := range last {
		p.nextOffset.Store(off + 1)
	}
	byPartition := map[*partition][]*flight{}
	for _, fl := range batch {
		byPartition[fl.p] = append(byPartition[fl.p], fl)
	}
	for p, fls := range byPartition {
		p.events <- event{acks: fls}
	}
	return leftover
}

func (t *txnLoop) dropped(epoch uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return epoch <= t.dropEpoch
}

// abort aborts the open transaction (or discards a producer that cannot),
// fails the batch and restarts the consumer group session, so every
// partition resumes from its last committed offset.
func (t *txnLoop) abort(batch []*flight, cause error) {
	t.Aborts.Add(1)
	t.f.health.produced(cause)
	t.f.log.Warn().Err(cause).Int("records", len(batch)).
		Msg("exactly-once: transaction failed; aborting it and resuming from the committed offsets")
	if t.producer != nil {
		status := t.producer.TxnStatus()
		if status&sarama.ProducerTxnFlagFatalError != 0 {
			t.close() // fenced or broken: a new producer bumps the epoch
		} else if status&(sarama.ProducerTxnFlagInTransaction|sarama.ProducerTxnFlagAbortableError) != 0 {
			if err := t.producer.AbortTxn(); err != nil {
				t.f.log.Warn().Err(err).Msg("exactly-once: abort failed; replacing the producer")
				t.close()
			}
		}
	}
	var epoch uint64
	for _, fl := range batch {
		epoch = max(epoch, fl.p.epoch)
		fl.p.events <- event{f: fl, err: errTxnAborted}
	}
	t.mu.Lock()
	t.dropEpoch = max(t.dropEpoch, epoch)
	restart := t.restart
	t.mu.Unlock()
	if restart != nil {
		restart()
	}
}

// transactionalConfig turns a producer configuration into a transactional one.
func transactionalConfig(pc *sarama.Config, id string, timeout time.Duration) *sarama.Config {
	pc.Producer.Transaction.ID = id
	pc.Producer.Transaction.Timeout = timeout
	pc.Producer.Idempotent = true
	pc.Producer.RequiredAcks = sarama.WaitForAll
	pc.Net.MaxOpenRequests = 1
	pc.Producer.Return.Successes = false
	pc.Producer.Return.Errors = true
	pc.Producer.Transaction.Retry.Max = 10
	return pc
}
