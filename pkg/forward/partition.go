package forward

import (
	"cmp"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/offsets"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/workahead"
)

// headState is what a claimed tier partition is doing with its head, the
// oldest record it has not handed on yet. Transitions happen in advance
// (and in the event handlers of machine.go), nowhere else.
type headState uint8

const (
	// reading: no head. The next record comes from the read-ahead queue, or
	// is fetched.
	reading headState = iota
	// holding: the head is not due. It waits for its release time (paused:
	// nothing is fetched while it is further away than ResumeLead, and the
	// partition keeps a copy of the head and nothing else), a work-ahead
	// release or a drain.
	holding
	// sending: the head may leave and waits for room: a valid group session
	// lease, the sink (exactly-once: an open transaction), the memory budget,
	// a free parking slot.
	sending
	// retrying: records of the partition failed and are sent again after a
	// back-off; later records wait until they are acknowledged, so that one
	// key's records keep their order (DESIGN invariant 5).
	retrying
	// ending: the session ends. Nothing more is sent; records in flight are
	// waited for, so that their offsets are committed.
	ending
)

func (s headState) String() string {
	return [...]string{"reading", "holding", "sending", "retrying", "ending"}[s]
}

// partition is one claimed tier partition. Everything in it is owned by the
// machine's goroutine, except the atomics read by the metrics collector and
// the offset refresher.
type partition struct {
	m     *machine
	topic string
	id    int32
	tier  tier.Tier
	log   zerolog.Logger
	tm    *tierMetrics
	dec   envelope.Decoder

	state headState
	head  *flight // the head once taken: holding, sending (kept while retrying)
	wa    *workahead.Head
	early bool // work-ahead released the head

	queue    []record // fetched records behind the head, in offset order
	qh       int      // queue[qh] is the next one
	queued   int64    // bytes of queue[qh:] (recordCost)
	fetchAt  int64    // next offset to fetch; -1 until the start offset is known
	fetching bool     // a fetch for it is on its way
	// fetchEpoch changes whenever the read-ahead is dropped: a fetch on its
	// way then lands stale and is ignored.
	fetchEpoch uint32
	fetchErr   int // consecutive failed fetches (back-off)
	fetchOK    time.Time

	resume  offsets.Resume // what the commit the claim started from says lies ahead
	list    unfinished
	parked  []*flight // parked records, in offset order
	failed  []*flight // records to send again (failed, or resting after an abort), in offset order
	retries int       // records being retried (failed, or sent again and not yet acknowledged)
	retryAt time.Time // when the failed records are sent again
	aborts  int       // exactly-once: consecutive aborts of its transactions (back-off)

	committed  int64 // the last commit made (or sent in a transaction); -1 none
	commitMeta string

	wake    time.Time // when advance must run again (zero: no timer)
	heapIdx int
	dirty   bool
	blocked bool // in machine.blocked
	gone    bool // the session that claimed it ended

	// Read by the metrics collector and the offset refresher.
	heldState    atomic.Bool  // the head is held (ladder_paused_partitions)
	releaseNanos atomic.Int64 // release time of the oldest unforwarded record; 0 when none
	parkedCount  atomic.Int64 // len(parked)
	pendingHi    atomic.Int64 // with records parked: the first record past them not forwarded yet; else 0
	oldestSent   atomic.Int64 // unix nanoseconds its oldest record in flight was handed to the sink; 0 none
	endOffset    atomic.Int64 // partition end offset, refreshed periodically
	nextOffset   atomic.Int64 // offset the group resumes from (last committed); -1 unknown
	readable     atomic.Pointer[readable]
}

func newPartition(m *machine, topic string, id int32, t tier.Tier) *partition {
	p := &partition{m: m, topic: topic, id: id, tier: t, fetchAt: -1, committed: -1, heapIdx: -1,
		log: m.log.With().Str("topic", topic).Int32("partition", id).Logger(), tm: m.metrics.forTier(topic)}
	p.nextOffset.Store(-1)
	return p
}

// start sets where the partition starts: its committed offset (with what
// the commit's metadata says was forwarded past it), or the earliest one.
func (p *partition) start(offset int64, meta string) {
	r, err := offsets.DecodeResume(meta, offset)
	if err != nil {
		p.log.Warn().Err(err).Msg("ignoring the commit metadata: records past the committed offset may be forwarded again")
	}
	p.resume = r
	p.fetchAt, p.committed, p.commitMeta = offset, offset, meta
	p.nextOffset.Store(offset)
	p.m.markDirty(p)
}

// pending is the number of records between the resume offset and the end.
// Records that passed a parked one are not pending: a parked record counts
// one, and the count goes on from the first record behind the parked ones
// that is not forwarded yet.
func (p *partition) pending() int64 {
	end, next := p.endOffset.Load(), p.nextOffset.Load()
	if hi := p.pendingHi.Load(); hi > next {
		next = hi
	}
	if next < 0 || end < next {
		return p.parkedCount.Load()
	}
	return p.pendingRecords(next, end) + p.parkedCount.Load()
}

// advance moves the partition as far as it can go now: it takes heads,
// holds them, sends what is due, and sends failed and parked records again
// when their time has come. It never blocks.
func (p *partition) advance(now time.Time) {
	p.dirty = false
	if p.gone {
		return
	}
	p.wake = time.Time{}
	p.resendParked(now)
	p.step(now)
	if p.fetchOK.After(now) {
		p.setWake(p.fetchOK) // a fetch backed off: the partition fetches again then
	}
	p.updateGauges()
}

// step runs the head's state machine until it must wait.
func (p *partition) step(now time.Time) {
	for {
		switch p.state {
		case ending:
			return
		case retrying:
			if !p.retry(now) {
				return
			}
		case reading:
			if !p.takeHead(now) {
				return
			}
		case holding:
			if !p.releasable(now) {
				p.hold(now)
				return
			}
			p.state = sending
		case sending:
			if !p.sendHead(now) {
				return
			}
			p.state = reading
		}
	}
}

// takeHead makes the next queued record the head (or hands a bad one to the
// dead-letter topic). It returns false when no record is queued.
func (p *partition) takeHead(now time.Time) bool {
	if p.qh == len(p.queue) {
		return false
	}
	r := p.queue[p.qh]
	p.queue[p.qh] = record{}
	p.qh++
	p.queued -= recordCost(r.r)
	if p.qh == len(p.queue) {
		p.queue, p.qh = p.queue[:0], 0
	}
	if p.resume.Skips(r.offset) {
		r.release() // forwarded before the commit this claim started from
		return true
	}
	fl := p.m.newFlight()
	fl.p, fl.rec, fl.taken = p, r, now
	if since, ok := p.resume.ParkedSince(r.offset); ok {
		fl.parked = since // it waited for its target under an earlier owner: its wait goes on
	}
	env, err := p.dec.Decode(r.r.Headers)
	if err == nil {
		err = p.check(env, now)
	}
	if err != nil {
		p.toDeadLetter(fl, err, now)
		fl.release = now
		p.head, p.state = fl, sending
		return true
	}
	fl.env = env
	entered := time.UnixMilli(r.ts)
	if entered.After(now) {
		// A producer with a skewed clock: a record from the future counts
		// as entered now, so it holds the partition at most one tier delay.
		entered = now
	}
	fl.release = tier.ReleaseAt(p.tier, entered, env.Due)
	p.head, p.state, p.early = fl, holding, false
	if wa := p.m.cfg.WorkAhead; wa != nil && now.Before(fl.release) {
		due := env.Due
		if due.IsZero() {
			due = fl.release
		}
		p.wa = wa.HoldFunc(env.Target, due, p.m.earlyNotifier(p, r.offset))
	}
	return true
}

// check refuses envelopes that decode but cannot be routed.
func (p *partition) check(env envelope.Envelope, now time.Time) error {
	cfg := p.m.cfg
	if !env.Due.IsZero() && env.Due.Sub(now) > cfg.MaxDelay {
		// In milliseconds: time.Time.Sub saturates at about 292 years.
		return &envelope.HeaderError{Header: envelope.Due, Reason: envelope.ReasonDueTooFar,
			Detail: fmt.Sprintf("due %s, %s ahead, beyond the maximum delay of %s (latest accepted due %s)",
				env.Due.UTC().Format(time.RFC3339), spanLabel(env.Due.UnixMilli()-now.UnixMilli()), tier.Label(cfg.MaxDelay),
				now.Add(cfg.MaxDelay).UTC().Format(time.RFC3339))}
	}
	if cfg.Ladder.Internal(env.Target) {
		return &envelope.HeaderError{Header: envelope.Target, Reason: envelope.ReasonInvalidTarget,
			Detail: fmt.Sprintf("%s is a topic of the ladder itself, which would loop", env.Target)}
	}
	if env.Hops >= cfg.MaxHops {
		return &envelope.HeaderError{Header: envelope.Hops, Reason: envelope.ReasonInvalidHops,
			Detail: fmt.Sprintf("%d hops reach the limit of %d: a routing loop?", env.Hops, cfg.MaxHops)}
	}
	return nil
}

// releasable reports whether the held head may leave now: it is due, or
// work-ahead or a drain command let it go early.
func (p *partition) releasable(now time.Time) bool {
	fl := p.head
	if !now.Before(fl.release) {
		return true // due (even if work-ahead fired at the same moment: not early)
	}
	if p.early || p.m.cfg.control.DrainUntil(p.topic, p.id, now) > fl.offset() {
		fl.early = fl.env.Due
		if fl.early.IsZero() {
			fl.early = fl.release
		}
		return true
	}
	return false
}

// hold keeps the head until its release time. Further away than
// ResumeLead, the partition keeps a copy of the head alone and fetches
// nothing; within it, it reads ahead so the records behind the head are at
// hand when it leaves.
func (p *partition) hold(now time.Time) {
	until := p.head.release.Sub(now)
	lead := p.m.cfg.ResumeLead
	if until > lead {
		p.dropReadAhead()
		p.setWake(p.head.release.Add(-lead))
		return
	}
	p.setWake(p.head.release)
}

// dropReadAhead copies the head and lets go of everything fetched behind
// it: the partition fetches again from the record after the head.
func (p *partition) dropReadAhead() {
	if p.head != nil {
		p.head.rec.own()
	}
	p.dropQueue()
}

// dropQueue lets go of the read-ahead queue (and of a fetch on its way):
// the partition fetches again from its first queued record.
func (p *partition) dropQueue() {
	p.fetchEpoch++
	if p.qh == len(p.queue) {
		return
	}
	p.fetchAt = p.queue[p.qh].offset
	for i := p.qh; i < len(p.queue); i++ {
		p.queue[i].release()
	}
	clear(p.queue)
	p.queue, p.qh, p.queued = p.queue[:0], 0, 0
}

// sendHead hands the due head on: to its next hop, to the dead-letter
// topic, or to the parking of its target. It returns false when it must
// wait (see sending).
func (p *partition) sendHead(now time.Time) bool {
	fl := p.head
	if !p.m.canSend(fl, now) {
		return false
	}
	if !fl.dlq {
		fl.msg = p.hop(fl, now)
		if !p.oversize(fl, now) && fl.msg.Topic == fl.env.Target {
			switch ok, err := p.m.targets.usable(fl.env.Target, p, now); {
			case err != nil:
				p.toDeadLetter(fl, err, now)
			case !ok:
				room, dl := p.parkable(fl, now)
				if dl != nil {
					p.toDeadLetter(fl, dl, now)
					break
				}
				if !room {
					return false // the target's lookup will tell: wait for it
				}
				p.dropHead()
				p.list.push(fl)
				p.park(fl, now)
				return true
			}
		}
		if !fl.dlq && fl.early.IsZero() {
			// Releasable when it was due and had become the head: time spent
			// behind an earlier head is the routing rule, not forwarder lag.
			p.observe(fl, later(fl.release, fl.taken))
		}
	}
	p.dropHead()
	p.list.push(fl)
	p.m.send(fl, now)
	return true
}

// oversize dead-letters fl when its record is larger than the producer may
// send: sarama would refuse it on every attempt, without asking the broker.
func (p *partition) oversize(fl *flight, now time.Time) bool {
	n := len(fl.rec.r.Key) + len(fl.rec.r.Value) + 256 // ladder's own headers and the record's framing
	for _, h := range fl.rec.r.Headers {
		n += len(h.Key) + len(h.Value) + 16
	}
	if n < p.m.cfg.maxMessageBytes/2 {
		return false // far below the limit: not worth sizing exactly
	}
	size := fl.msg.ByteSize(recordVersion)
	if size <= p.m.cfg.maxMessageBytes {
		return false
	}
	p.toDeadLetter(fl, &envelope.HeaderError{Header: "record", Reason: ReasonTooLarge,
		Detail: fmt.Sprintf("%d bytes to forward, over the producer's limit of %s (Producer.MaxMessageBytes): it would be refused on every attempt",
			size, byteLabel(p.m.cfg.maxMessageBytes))}, now)
	return true
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// observe records how late the release was, and for a delivery how late it
// is against its due time.
func (p *partition) observe(fl *flight, release time.Time) {
	at := fl.msg.Timestamp
	p.tm.releaseLateness.Observe(max(at.Sub(release), 0).Seconds())
	if fl.msg.Topic == fl.env.Target && !fl.env.Due.IsZero() {
		p.tm.dueLateness.Observe(max(at.Sub(fl.env.Due), 0).Seconds())
	}
}

// dropHead forgets the head (it was handed on, or the session ends).
func (p *partition) dropHead() {
	if p.wa != nil {
		p.m.cfg.WorkAhead.Drop(p.wa)
		p.wa = nil
	}
	p.head = nil
}

// toDeadLetter turns fl into the dead letter of its record, for reason.
func (p *partition) toDeadLetter(fl *flight, reason error, now time.Time) {
	p.log.Warn().Int64("offset", fl.offset()).Str("reason", string(envelope.ReasonOf(reason))).
		Str("error", reason.Error()).Msg("dead-lettering record")
	fl.dlq, fl.reason, fl.early = true, envelope.ReasonOf(reason), time.Time{}
	if fl.reason == "" {
		fl.reason = envelope.ReasonRejected
	}
	fl.msg = p.deadLetterMessage(fl.rec, reason, now)
	fl.msg.Metadata = fl
}

// park keeps fl, whose target is not usable yet, until the target is (it
// is sent then, in offset order) or LADDER_TARGET_TIMEOUT has passed (it is
// dead-lettered then). Later records keep flowing; the commit stops at the
// first parked record and says in its metadata which ones lie past it.
func (p *partition) park(fl *flight, now time.Time) {
	if fl.parked.IsZero() {
		fl.parked = now
	}
	if err := p.m.targets.problem(fl.env.Target); err != nil {
		p.log.Warn().Err(err).Int64("offset", fl.offset()).Str("target", fl.env.Target).Time("since", fl.parked).
			Dur("timeout", p.m.cfg.TargetTimeout).
			Msg("target not usable: parking the record until it is, or dead-lettering it after the timeout; later records go on")
	} else {
		p.log.Debug().Int64("offset", fl.offset()).Str("target", fl.env.Target).Msg("parking the record while its target is looked up")
	}
	fl.rec.own()
	fl.parkBytes = fl.rec.mem.bytes
	p.m.parkedBytes += fl.parkBytes
	fl.state = flightParked
	i, _ := slices.BinarySearchFunc(p.parked, fl.offset(), func(f *flight, o int64) int { return cmp.Compare(f.offset(), o) })
	p.parked = slices.Insert(p.parked, i, fl)
	p.setWake(fl.parked.Add(p.m.cfg.TargetTimeout))
}

// maxParked bounds the parked records of one partition: the commit metadata
// (offsets.EncodeResume) stays below the broker's offset.metadata.max.bytes
// (4096 by default; 128 entries take about 2.3 KB). Past it, a record whose
// target is known to be missing or forbidden is dead-lettered at once
// instead of parked.
const maxParked = 128

// parkable reports whether fl may park: the partition keeps at most
// maxParked records waiting (its commit metadata must stay small), and the
// process at most a quarter of its memory budget in them. When there is no
// room and the brokers said the target is missing or forbidden, fl is
// dead-lettered at once (dl); while its lookup is still out, the partition
// waits for the answer (neither).
func (p *partition) parkable(fl *flight, now time.Time) (room bool, dl error) {
	if len(p.parked) < maxParked && p.m.parkedBytes+recordCost(fl.rec.r) <= p.m.mem.limit/4 {
		return true, nil
	}
	if err := p.m.targets.confirmed(fl.env.Target, time.Time{}); err != nil {
		return false, p.m.targets.expired(fl.env.Target, now, now, true)
	}
	return false, nil
}

// unpark forgets fl's parking (it is sent, dead-lettered or dropped).
func (p *partition) unpark(fl *flight) {
	p.m.parkedBytes -= fl.parkBytes
	fl.parkBytes = 0
}

// resendParked sends the parked records whose target became usable, and
// dead-letters those that waited TargetTimeout, in offset order. A record
// is dead-lettered only on the brokers' answer, given after its wait ended,
// that its target is missing or forbidden: a lookup that got no answer (an
// outage) dead-letters nothing.
func (p *partition) resendParked(now time.Time) {
	if len(p.parked) == 0 || p.state == ending {
		return
	}
	kept := p.parked[:0]
	for i, fl := range p.parked {
		ok, err := p.m.targets.usable(fl.env.Target, p, now)
		if err == nil && !ok {
			expiry := fl.parked.Add(p.m.cfg.TargetTimeout)
			if now.Before(expiry) {
				p.setWake(expiry)
				kept = append(kept, fl)
				continue
			}
			if p.m.targets.confirmed(fl.env.Target, expiry) == nil {
				p.m.targets.lookupNow(fl.env.Target, p) // its answer marks the partition dirty
				p.setWake(now.Add(time.Second))
				kept = append(kept, fl)
				continue
			}
			err = p.m.targets.expired(fl.env.Target, fl.parked, now, false)
		}
		if !p.m.canSend(fl, now) {
			kept = append(kept, p.parked[i:]...)
			break
		}
		p.unpark(fl)
		if err != nil {
			p.toDeadLetter(fl, err, now)
		} else if fl.msg = p.hop(fl, now); !p.oversize(fl, now) && fl.early.IsZero() {
			p.observe(fl, later(fl.release, fl.taken))
		}
		p.m.send(fl, now)
	}
	clear(p.parked[len(kept):])
	p.parked = kept
}

// retry sends the failed records again once their back-off has passed. It
// returns true when none is left to wait for (the partition goes on).
func (p *partition) retry(now time.Time) bool {
	if len(p.failed) > 0 {
		if now.Before(p.retryAt) {
			p.setWake(p.retryAt)
			return false
		}
		n := 0
		for _, fl := range p.failed {
			if !p.m.canSend(fl, now) {
				break
			}
			if fl.dlq {
				fl.msg = cloneMessage(fl.msg, now)
			} else {
				fl.msg = p.hop(fl, now)
			}
			fl.state = flightSent
			p.m.send(fl, now)
			n++
		}
		clear(p.failed[:n])
		p.failed = p.failed[n:]
		if len(p.failed) > 0 {
			return false
		}
		p.failed = nil
	}
	if p.retries > 0 {
		return false
	}
	p.aborts = 0
	if p.head != nil {
		p.state = holding
	} else {
		p.state = reading
	}
	return true
}

// setWake asks advance to run again at t (the earliest of every request).
func (p *partition) setWake(t time.Time) {
	if p.wake.IsZero() || t.Before(p.wake) {
		p.wake = t
	}
}

// enqueue appends fetched records to the read-ahead queue.
func (p *partition) enqueue(recs []record) {
	for _, r := range recs {
		p.queued += recordCost(r.r)
	}
	p.queue = append(p.queue, recs...)
	p.m.markDirty(p)
}

// wantsFetch reports whether the partition needs records: it has no head or
// a head due within ResumeLead, and little read-ahead.
func (p *partition) wantsFetch(now time.Time) bool {
	if p.fetching || p.fetchAt < 0 || p.gone || now.Before(p.fetchOK) || p.queued >= p.m.cfg.partitionFetchBytes/2 {
		return false
	}
	switch p.state {
	case reading:
		return true
	case holding:
		return p.head.release.Sub(now) <= p.m.cfg.ResumeLead
	}
	return false
}

// commitPoint is what the partition may commit: the offset of its first
// record not yet forwarded, and the metadata saying which records past it
// were (see pkg/offsets/resume.go). Records of transaction done count as forwarded (the
// transaction that commits this point is committing them).
func (p *partition) commitPoint(done uint64) (int64, string) {
	var parked []offsets.Parked
	first, hi := int64(-1), int64(-1)
	for fl := p.list.head; fl != nil; fl = fl.next {
		if done != 0 && fl.txn == done && fl.state == flightSent {
			continue
		}
		if fl.state == flightParked && len(parked) < maxParked {
			if first < 0 {
				first = fl.offset()
			}
			parked = append(parked, offsets.Parked{Offset: fl.offset(), Since: fl.parked})
			continue
		}
		hi = fl.offset()
		break
	}
	if hi < 0 {
		hi = p.pendingFrom()
	}
	if first < 0 {
		return hi, ""
	}
	return first, offsets.EncodeResume(first, hi, parked)
}

// pendingFrom is the offset of the first record not handed on yet: the
// head, the first queued record, or the next one to fetch.
func (p *partition) pendingFrom() int64 {
	switch {
	case p.head != nil:
		return p.head.offset()
	case p.qh < len(p.queue):
		return p.queue[p.qh].offset
	}
	return p.fetchAt
}

// updateGauges publishes the partition's state for the metrics collector:
// whether its head is held, and the release time of its oldest record not
// yet forwarded (a parked or retried record counts: ladder inspect sees it
// at the committed offset too).
func (p *partition) updateGauges() {
	p.parkedCount.Store(int64(len(p.parked)))
	var hi int64
	if len(p.parked) > 0 {
		hi = p.pendingFrom()
		for fl := p.list.head; fl != nil; fl = fl.next {
			if fl.state != flightParked {
				hi = fl.offset()
				break
			}
		}
	}
	p.pendingHi.Store(hi)
	var oldest int64
	for fl := p.list.head; fl != nil; fl = fl.next {
		if fl.state == flightSent {
			oldest = fl.sent.UnixNano() // the list is in offset order: its first sent record was sent first, or resent since
			break
		}
	}
	p.oldestSent.Store(oldest)
	held := p.state == holding
	if p.heldState.Swap(held) != held {
		if held {
			p.m.stats.Held.Add(1)
		} else {
			p.m.stats.Held.Add(-1)
		}
	}
	var rel time.Time
	if len(p.parked) > 0 || p.retries > 0 {
		// A parked or retried record is the oldest unforwarded one (the
		// records before it were sent, or it would be among them).
		for fl := p.list.head; fl != nil; fl = fl.next {
			if fl.state != flightSent || fl.retrying {
				rel = fl.release
				break
			}
		}
	}
	if rel.IsZero() && p.head != nil {
		rel = p.head.release
	}
	if rel.IsZero() {
		p.releaseNanos.Store(0)
	} else {
		p.releaseNanos.Store(rel.UnixNano())
	}
}
