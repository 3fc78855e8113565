package forward

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/backoff"
	"github.com/ladder/ladder/pkg/control"
	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/group"
)

// The machine is the forwarder's state: every claimed partition (a state
// machine each, partition.go), the target topics, the memory budget. It is
// driven by one goroutine (loop.go) that turns channel receives, fetch
// responses, producer results and timers into calls of handle and pump, and
// performs the I/O the machine asks for through the sink and the driver's
// hooks. It has no goroutine, channel, clock or network of its own, so unit
// tests drive it through any interleaving deterministically (machine_test.go).

// eventKind says what an event reports.
type eventKind uint8

const (
	evAcks      eventKind = iota // records acknowledged (at-least-once)
	evFailed                     // a record's produce failed (at-least-once)
	evFetched                    // a fetch response, or its error
	evLooked                     // a target's metadata lookup finished
	evEarly                      // work-ahead released a held head
	evTxnDone                    // a transaction committed or aborted (exactly-once)
	evCommitted                  // a commit of offsets finished (at-least-once)
	evStart                      // the earliest offset of a partition without a commit (the driver's)
)

// event is something that happened outside the machine's goroutine.
type event struct {
	kind     eventKind
	flights  []*flight // evAcks; evTxnDone: the transaction's records
	fl       *flight   // evFailed
	err      error     // evFailed, evFetched, evLooked, evTxnDone (nil: committed), evCommitted
	fetch    *fetchReq // evFetched
	resp     *sarama.FetchResponse
	topic    string     // evLooked
	p        *partition // evEarly
	offset   int64      // evEarly: the head's offset
	failed   map[*flight]error
	commits  map[*partition]committedPoint // evCommitted; evTxnDone: what the transaction committed
	fenced   bool                          // evTxnDone: the commit's group generation is over
	replace  bool                          // evTxnDone: the producer must be replaced
	started  bool                          // evTxnDone: the outcome of starting a producer
	producer sarama.AsyncProducer          // evTxnDone: the started producer
	opened   time.Time                     // evTxnDone: when the transaction began
}

// committedPoint is a commit made for a partition.
type committedPoint struct {
	offset int64
	meta   string
}

// lease tells whether the group session is surely alive (group.Session).
type lease interface {
	Valid(now time.Time) bool
}

// sink hands records to Kafka: at-least-once (an idempotent producer,
// sink.go) or exactly-once (transactions, eos.go). Results come back as
// events.
type sink interface {
	// ready reports whether fl may be handed over now.
	ready(fl *flight, now time.Time) bool
	// send hands fl over.
	send(fl *flight, now time.Time)
	// tick lets the sink act on time (exactly-once: close a transaction). It
	// returns when it wants the next tick (zero: none).
	tick(now time.Time) time.Time
	// ending tells the sink the session ends: exactly-once closes its
	// transaction at once, or aborts it when lost.
	ending(lost bool, now time.Time)
	// idle reports whether nothing the sink was handed awaits a result.
	idle() bool
	// result takes an evTxnDone before the machine does (exactly-once).
	result(ev *event, now time.Time)
}

// machineConfig is the forwarder's configuration as the machine uses it.
type machineConfig struct {
	*Config
	control             *control.State
	maxMessageBytes     int
	partitionFetchBytes int64
	maxFetchBytes       int64
}

type tpKey struct {
	topic string
	id    int32
}

type machine struct {
	cfg     *machineConfig
	log     zerolog.Logger
	metrics *metrics
	stats   *Stats
	health  *health
	mem     *budget
	sink    sink
	targets targets
	early   func(p *partition, offset int64) // posts an evEarly (work-ahead's notify)
	// resetOffset has the earliest offset of a partition looked up (evStart).
	resetOffset func(*partition)
	// refreshMetadata has a topic's metadata read again.
	refreshMetadata func(topic string)

	lease   lease
	parts   map[tpKey]*partition
	all     []*partition // parts, in claim order
	dirty   []*partition
	blocked []*partition // partitions that could not send: the sink or the lease refused
	wakes   wakeHeap

	retryingParts int   // partitions with records being retried (readiness)
	parkedBytes   int64 // the copies of parked records (at most a quarter of the budget)
	ended         bool

	// free holds flights whose records were acknowledged, for reuse: a
	// flight with its producer message and headers is the largest
	// allocation per forwarded record.
	free []*flight
}

// maxFreeFlights bounds the flights kept for reuse.
const maxFreeFlights = 4096

// newFlight returns a zeroed flight, reused when one is free.
func (m *machine) newFlight() *flight {
	if n := len(m.free); n > 0 {
		fl := m.free[n-1]
		m.free[n-1] = nil
		m.free = m.free[:n-1]
		return fl
	}
	return new(flight)
}

// recycle keeps fl, acknowledged and out of every list, for reuse. The
// producer returned its message with the acknowledgement and refers to it
// no more. A flight that ever failed is left to the garbage collector:
// sarama reads a message it returned as an error once more (its back-off
// reads msg.retries after returnError), so that message must never be
// written again.
func (m *machine) recycle(fl *flight) {
	if fl.attempts == 0 && fl.msg == &fl.first && len(m.free) < maxFreeFlights {
		*fl = flight{}
		m.free = append(m.free, fl)
	}
}

func newMachine(cfg *machineConfig, log zerolog.Logger, mt *metrics, stats *Stats, h *health, mem *budget) *machine {
	m := &machine{cfg: cfg, log: log, metrics: mt, stats: stats, health: h, mem: mem, parts: map[tpKey]*partition{}}
	m.targets = targets{byName: map[string]*target{}, dirty: m.markDirty}
	return m
}

// assign starts a session: its partitions, at the offsets given (a partition
// missing from starts waits for its start with start).
func (m *machine) assign(l lease, claims map[string][]int32) []*partition {
	m.lease, m.ended = l, false
	m.parts = map[tpKey]*partition{}
	m.all = nil // a new slice: the metrics collector may still read the old one
	for topic, ids := range claims {
		t, _ := m.cfg.Ladder.Lookup(topic)
		for _, id := range ids {
			p := newPartition(m, topic, id, t)
			m.parts[tpKey{topic, id}] = p
			m.all = append(m.all, p)
		}
	}
	slices.SortFunc(m.all, func(a, b *partition) int {
		return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.id, b.id))
	})
	return m.all
}

func (m *machine) markAllDirty() {
	for _, p := range m.all {
		m.markDirty(p)
	}
}

func (m *machine) markDirty(p *partition) {
	if !p.dirty && !p.gone {
		p.dirty = true
		m.dirty = append(m.dirty, p)
	}
}

// earlyNotifier is the work-ahead callback of p's head at offset.
func (m *machine) earlyNotifier(p *partition, offset int64) func() {
	if m.early == nil {
		return nil
	}
	return func() { m.early(p, offset) }
}

// canSend reports whether fl may be handed to the sink now: the session is
// surely alive (a forwarder that may have lost its partitions forwards
// nothing: the group may have given them to another member) and the sink
// takes it.
func (m *machine) canSend(fl *flight, now time.Time) bool {
	if m.ended {
		return false
	}
	if m.lease == nil || !m.lease.Valid(now) || !m.sink.ready(fl, now) {
		if p := fl.p; !p.blocked {
			p.blocked = true
			m.blocked = append(m.blocked, p)
		}
		return false
	}
	return true
}

// leasePoll is how often partitions waiting for a lapsed group session lease
// look again (a heartbeat renews it, or the session is lost).
const leasePoll = 100 * time.Millisecond

func (m *machine) send(fl *flight, now time.Time) {
	fl.state, fl.sent = flightSent, now
	m.sink.send(fl, now)
}

// pump advances every partition that may move: those marked dirty, those
// whose wake time has come, and those that waited for the sink or the
// session lease when these take records again. It returns when it must run
// again at the latest.
func (m *machine) pump(now time.Time) time.Time {
	for m.wakes.Len() > 0 && !m.wakes[0].wake.After(now) {
		p := heap.Pop(&m.wakes).(*partition)
		m.markDirty(p)
	}
	var next time.Time
	// Partitions that could not send are tried again once per pump when the
	// sink and the lease take records (a solo record may still wait for the
	// open transaction to close: its outcome marks every partition dirty).
	for retried := false; ; retried = true {
		for len(m.dirty) > 0 {
			batch := m.dirty
			m.dirty = nil
			for _, p := range batch {
				p.advance(now)
				m.schedule(p)
			}
			clear(batch)
		}
		next = m.sink.tick(now)
		if len(m.blocked) == 0 || m.ended || retried {
			break
		}
		if m.lease == nil || !m.lease.Valid(now) {
			next = earliest(next, now.Add(leasePoll))
			break
		}
		if !m.sink.ready(nil, now) {
			break // a transaction closes: its outcome marks every partition dirty
		}
		for _, p := range m.blocked {
			p.blocked = false
			m.markDirty(p)
		}
		clear(m.blocked)
		m.blocked = m.blocked[:0]
	}
	if m.wakes.Len() > 0 {
		next = earliest(next, m.wakes[0].wake)
	}
	return next
}

// earliest is the earlier of two times, a zero time meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// schedule puts p in the wake heap at p.wake (or out of it).
func (m *machine) schedule(p *partition) {
	switch {
	case p.wake.IsZero() || p.gone:
		if p.heapIdx >= 0 {
			heap.Remove(&m.wakes, p.heapIdx)
		}
	case p.heapIdx >= 0:
		heap.Fix(&m.wakes, p.heapIdx)
	default:
		heap.Push(&m.wakes, p)
	}
}

// handle applies an event.
func (m *machine) handle(ev event, now time.Time) {
	switch ev.kind {
	case evAcks:
		for _, fl := range ev.flights {
			m.acked(fl, now)
		}
		if m.retryingParts == 0 {
			m.health.produced(nil)
		}
	case evFailed:
		m.failed(ev.fl, ev.err, now)
	case evFetched:
		m.fetched(ev.fetch, ev.resp, ev.err, now)
	case evLooked:
		m.targets.looked(ev.topic, ev.err, now)
	case evEarly:
		if p := ev.p; !p.gone && p.state == holding && p.head != nil && p.head.offset() == ev.offset {
			p.early = true
			m.markDirty(p)
		}
	case evTxnDone:
		m.txnDone(ev, now)
	case evCommitted:
		for p, c := range ev.commits {
			if ev.err == nil {
				p.nextOffset.Store(c.offset)
			}
		}
		if ev.err != nil && !errors.Is(ev.err, group.ErrLost) {
			if !errors.Is(ev.err, context.Canceled) { // cancelled: the session's final commit follows
				m.log.Warn().Err(ev.err).Msg("committing offsets failed; the next commit carries them")
			}
			for p := range ev.commits {
				p.committed = -1 // commit again
			}
		}
	}
}

// acked accounts for a record the broker acknowledged.
func (m *machine) acked(fl *flight, now time.Time) {
	p := fl.p
	fl.rec.release()
	switch {
	case fl.dlq:
		m.stats.DeadLettered.Add(1)
		p.tm.deadLetter(string(fl.reason))
	case !fl.early.IsZero():
		m.stats.Early.Add(1)
		p.tm.early.Inc()
	case fl.msg.Topic == fl.env.Target:
		m.stats.Delivered.Add(1)
		p.tm.delivered.Inc()
	default:
		m.stats.Forwarded.Add(1)
		p.tm.forwarded.Inc()
	}
	if fl.attempts > 0 && !fl.dlq {
		m.targets.produced(fl.msg.Topic)
	}
	if p.gone || fl.state != flightSent {
		return
	}
	p.list.remove(fl)
	p.endRetry(fl)
	m.markDirty(p)
	m.recycle(fl)
}

// failed takes a produce failure (at-least-once).
func (m *machine) failed(fl *flight, err error, now time.Time) {
	p := fl.p
	m.stats.Retried.Add(1)
	p.tm.produceErrors.Inc()
	if p.gone {
		fl.rec.release()
		return
	}
	m.health.produced(err)
	p.sendFailed(fl, err, now)
	m.markDirty(p)
}

// sendFailed decides what becomes of a record whose produce failed: parked
// when its target is missing or refuses writes (later records go on),
// dead-lettered when its target refused it for good (too large, invalid)
// permanentAfter times, the last time alone; otherwise sent again after a
// back-off, the partition's later records waiting meanwhile.
func (p *partition) sendFailed(fl *flight, err error, now time.Time) {
	fl.attempts++
	fl.lastErr = err
	if p.state == ending {
		fl.state = flightFailed // the next owner sends it again
		return
	}
	if p.refusedBy(fl, err, now) {
		return
	}
	d := retryDelay(fl.attempts)
	p.log.Warn().Err(err).Int64("offset", fl.offset()).Str("to", fl.msg.Topic).Int("attempt", fl.attempts).
		Dur("retry_in", d).Msg("producing record failed; sending it again after a back-off, later records of the partition wait")
	p.toRetry(fl, now.Add(d))
}

// refusedBy takes a produce failure that concerns the record or its target
// rather than the brokers: a target missing or refusing writes parks the
// record (true), or dead-letters it when the partition has no room to park
// it; a target that refused the record itself (too large, invalid) has it
// sent alone next time, and dead-lettered once refused permanentAfter times.
// Otherwise (false) the record is sent again after a back-off.
func (p *partition) refusedBy(fl *flight, err error, now time.Time) bool {
	if !fl.dlq && p.m.targets.produceFailed(fl.msg.Topic, err, now) {
		p.log.Warn().Err(err).Int64("offset", fl.offset()).Str("to", fl.msg.Topic).Msg("target refused the record")
		p.endRetry(fl)
		fl.solo = true // exactly-once: its next attempt must not abort others' records
		room, dl := p.parkable(fl, now)
		if room {
			p.park(fl, now)
			return true
		}
		if dl != nil {
			p.toDeadLetter(fl, dl, now)
		}
		return false
	}
	if permanent(err) && !fl.dlq {
		if fl.solo && fl.attempts >= permanentAfter {
			p.toDeadLetter(fl, &envelope.HeaderError{Header: envelope.Target, Reason: envelope.ReasonRejected,
				Detail: fmt.Sprintf("%s refused the record %d times: %v", fl.msg.Topic, fl.attempts, err)}, now)
		}
		fl.solo = true
	}
	return false
}

// toRetry queues fl to be sent again at at, and makes the partition wait
// for it: later records are not sent until it is acknowledged.
func (p *partition) toRetry(fl *flight, at time.Time) {
	fl.state = flightFailed
	if !fl.retrying {
		fl.retrying = true
		if p.retries == 0 {
			p.m.retryingParts++
		}
		p.retries++
	}
	i, _ := slices.BinarySearchFunc(p.failed, fl.offset(), func(f *flight, o int64) int { return cmp.Compare(f.offset(), o) })
	p.failed = slices.Insert(p.failed, i, fl)
	if p.retryAt.IsZero() || p.state != retrying || at.After(p.retryAt) {
		p.retryAt = at
	}
	p.state = retrying
}

// endRetry notes that fl, which was being retried, is done with.
func (p *partition) endRetry(fl *flight) {
	if !fl.retrying {
		return
	}
	fl.retrying = false
	p.retries--
	if p.retries == 0 {
		p.m.retryingParts--
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

// permanentAfter is how many times a record must be refused as too large or
// invalid, the last time alone, before it is dead-lettered: a refusal of a
// whole batch (a target whose max.message.bytes is below the producer's
// batches) passes once the record travels alone, and the record is sent
// alone after its first refusal.
const permanentAfter = 3

// retryDelay is the back-off before sending a failed record again: 100ms
// doubling to 10s.
func retryDelay(attempt int) time.Duration {
	return backoff.Delay(attempt, 100*time.Millisecond, 10*time.Second)
}

// txnDone takes the outcome of a transaction (exactly-once): its records are
// acknowledged, or sent again in the next one.
func (m *machine) txnDone(ev event, now time.Time) {
	m.sink.result(&ev, now)
	if ev.started {
		m.markAllDirty()
		return
	}
	for p, c := range ev.commits {
		p.committed, p.commitMeta = c.offset, c.meta
		p.nextOffset.Store(c.offset)
	}
	m.markAllDirty() // the sink takes records again
	if ev.err == nil {
		for _, fl := range ev.flights {
			m.acked(fl, now)
		}
		if m.retryingParts == 0 {
			m.health.produced(nil)
		}
		return
	}
	m.health.produced(ev.err)
	touched := map[*partition]bool{}
	for _, fl := range ev.flights {
		p := fl.p
		if p.gone {
			fl.rec.release()
			continue
		}
		if !touched[p] {
			touched[p] = true
			p.aborts++
		}
		if p.state == ending {
			fl.state = flightFailed // the next owner sends it again
			continue
		}
		if err, ok := ev.failed[fl]; ok {
			m.stats.Retried.Add(1)
			p.tm.produceErrors.Inc()
			fl.attempts++
			fl.lastErr = err
			if p.refusedBy(fl, err, now) {
				continue
			}
		}
		p.toRetry(fl, now.Add(retryDelay(p.aborts)))
	}
	for p := range touched {
		m.markDirty(p)
	}
}

// commits returns the commit points that changed since the last commit
// (at-least-once), or every one (all: the final commit of a session, which
// must not rely on a background commit still on its way), and notes them as
// committed.
func (m *machine) commits(all bool) map[*partition]committedPoint {
	var out map[*partition]committedPoint
	for _, p := range m.all {
		if p.gone || p.fetchAt == -1 {
			continue
		}
		off, meta := p.commitPoint(0)
		if off < 0 || (!all && off == p.committed && meta == p.commitMeta) {
			continue
		}
		if out == nil {
			out = map[*partition]committedPoint{}
		}
		out[p] = committedPoint{off, meta}
		p.committed, p.commitMeta = off, meta
	}
	return out
}

// end ends the session: nothing more is sent. When lost, nothing is waited
// for either: another member may own the partitions already.
func (m *machine) end(lost bool, now time.Time) {
	m.ended = true
	for _, p := range m.all {
		from := p.pendingFrom()
		if p.head != nil {
			p.head.rec.release()
		}
		p.dropHead()
		p.dropQueue()
		p.fetchAt = from // the commit point stops at the dropped head
		p.state = ending
		if p.heapIdx >= 0 {
			heap.Remove(&m.wakes, p.heapIdx)
		}
		p.updateGauges()
	}
	m.sink.ending(lost, now)
}

// inFlight is the number of records handed to the sink and not answered.
func (m *machine) inFlight() int {
	n := 0
	for _, p := range m.all {
		for fl := p.list.head; fl != nil; fl = fl.next {
			if fl.state == flightSent {
				n++
			}
		}
	}
	return n
}

// release forgets the session's partitions. Records still in flight are
// accounted for when their results come (their partition is gone).
func (m *machine) release() {
	for _, p := range m.all {
		p.gone = true
		for fl := p.list.head; fl != nil; fl = fl.next {
			if fl.state != flightSent {
				fl.rec.release()
			}
		}
		if p.retries > 0 {
			m.retryingParts--
		}
		for _, fl := range p.parked {
			p.unpark(fl)
		}
		p.list = unfinished{}
		p.parked, p.failed = nil, nil
	}
	m.all, m.dirty, m.blocked = nil, nil, nil
	m.parts = map[tpKey]*partition{}
	m.wakes = m.wakes[:0]
	if m.retryingParts == 0 {
		m.health.produced(nil)
	}
}

// wakeHeap orders partitions by wake time.
type wakeHeap []*partition

func (h wakeHeap) Len() int           { return len(h) }
func (h wakeHeap) Less(i, j int) bool { return h[i].wake.Before(h[j].wake) }
func (h wakeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *wakeHeap) Push(x any) {
	p := x.(*partition)
	p.heapIdx = len(*h)
	*h = append(*h, p)
}
func (h *wakeHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	p.heapIdx = -1
	return p
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

// logState logs every partition's state at debug level (for diagnosis).
func (m *machine) logState(now time.Time) {
	if m.log.GetLevel() > zerolog.DebugLevel {
		return
	}
	for _, p := range m.all {
		ev := m.log.Debug().Str("topic", p.topic).Int32("partition", p.id).Stringer("state", p.state).
			Int64("fetch_at", p.fetchAt).Bool("fetching", p.fetching).Int("queued", len(p.queue)-p.qh).
			Int("unfinished", p.list.n).Int("parked", len(p.parked)).Int("failed", len(p.failed)).Int("retries", p.retries).
			Bool("blocked", p.blocked).Time("wake", p.wake)
		if p.head != nil {
			ev = ev.Int64("head", p.head.offset()).Time("release", p.head.release)
		}
		ev.Msg("partition state")
	}
	m.log.Debug().Int64("buffer_used", m.mem.used).Int64("buffer_reserved", m.mem.reserved).Int("blocked", len(m.blocked)).
		Bool("lease_valid", m.lease != nil && m.lease.Valid(now)).Msg("machine state")
}
