package forward

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/tier"
)

// flight is one record handed to the producer: a forward to the next hop or
// a dead-letter. It is the producer message's Metadata.
type flight struct {
	p        *partition
	offset   int64 // source offset in the tier partition
	seq      uint64
	acked    bool
	src      *sarama.ConsumerMessage // kept to re-route a resend
	msg      *sarama.ProducerMessage
	env      envelope.Envelope // unused for dead letters
	early    time.Time         // due (or release) time when work-ahead released it before; else zero
	dlq      bool
	reason   envelope.Reason // why, for a dead letter
	attempts int             // failed attempts: produce errors (at-least-once), permanent refusals (exactly-once)
	lastErr  error           // the last refusal (exactly-once)
	batch    *txnBatch       // the transaction it was sent in (exactly-once)
	// solo sends it alone: in a produce request of its own (at-least-once),
	// in a transaction of its own (exactly-once). It was refused for good,
	// perhaps only for the batch it travelled in (a target whose
	// max.message.bytes is below the producer's batches).
	solo bool

	// Storage of the first record built for the flight (see hop), allocated
	// with it: one allocation per forwarded record instead of five.
	rec        sarama.ProducerMessage
	key, value sarama.ByteEncoder
	headers    [6]sarama.RecordHeader
}

// event is a producer result for a flight, or the end of its back-off; in
// exactly-once mode, a committed or an aborted transaction.
type event struct {
	f      *flight
	acks   []*flight // acknowledged records of this partition, in order
	err    error
	resend bool
	abort  uint64    // exactly-once: a transaction with records of this partition aborted; its new send generation
	failed []failure // exactly-once: the records of the aborted transaction that failed, with why
}

// failure is a record of an aborted transaction and its produce error.
type failure struct {
	fl  *flight
	err error
}

// partition is the state of one claimed tier partition. Everything in it
// is owned by the claim's goroutine.
type partition struct {
	f      *Forwarder
	claim  sarama.ConsumerGroupClaim
	tier   tier.Tier
	tp     map[string][]int32
	events chan event
	win    window
	paused bool
	timer  *time.Timer

	// queue holds records read from the claim behind the head. sarama
	// fetches every partition of a broker in lockstep and waits until each
	// partition's share of a fetch was taken. While the head waits, the
	// claim is read at all times into this queue, so a partition released
	// slowly never holds up the others, and the partition is paused once the
	// queue is long (what one fetch still delivers after the pause bounds
	// it). While records flow, the claim is read only while the queue has
	// room: the forwarder takes them as fast as sarama delivers, and no
	// pause (whose resume costs a fetch round) slows a backlog down.
	queue      []*sarama.ConsumerMessage
	queueHead  int
	msgs       <-chan *sarama.ConsumerMessage
	msgsClosed bool
	waiting    bool // the head is held until its release time
	headFar    bool // the head is further from due than ResumeLead
	log        zerolog.Logger
	m          *tierMetrics
	dec        envelope.Decoder // remembers the targets it validated
	sess       *session         // the consumer group session this claim belongs to
	done       chan struct{}    // closed when the claim has ended

	// Exactly-once mode. The transaction loop drops records sent under a
	// send generation older than txnGen, which it advances when it aborts a
	// transaction with records of this partition; the partition then sends
	// its unacknowledged records again under the new generation (resend).
	txnGen     atomic.Uint64
	sendGen    uint64 // the generation records are sent under
	abortedGen uint64 // the newest generation an abort asked for
	resending  bool
	holding    bool // the next record waits for its target's metadata
	txnFailing bool // a transaction aborted since the last commit
	ending     bool // the claim ended: finish does not send again
	// abandoned is set when a transaction with this partition's records
	// aborted after the claim ended: its window cannot complete.
	abandoned bool

	failingFlights int  // at-least-once: records in the window that failed at least once
	failing        bool // counted in Forwarder.failingParts

	// Read by the metrics collector and the offset refresher.
	pausedState  atomic.Bool
	releaseNanos atomic.Int64 // release time of the current head; 0 when none
	endOffset    atomic.Int64 // partition end offset, refreshed periodically
	nextOffset   atomic.Int64 // offset the group resumes from (last marked); -1 unknown

	readable atomic.Pointer[readable] // records among the pending offsets (health.go)
}

// pending is the number of records between the resume offset and the end.
func (p *partition) pending() int64 {
	end := p.endOffset.Load()
	if end == 0 {
		end = p.claim.HighWaterMarkOffset()
	}
	next := p.nextOffset.Load()
	if next < 0 || end < next {
		return 0
	}
	return p.pendingRecords(next, end)
}

func newPartition(f *Forwarder, s *session, c sarama.ConsumerGroupClaim, t tier.Tier) *partition {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	p := &partition{
		f:      f,
		claim:  c,
		tier:   t,
		tp:     map[string][]int32{c.Topic(): {c.Partition()}},
		events: make(chan event, f.cfg.MaxInFlight+1),
		timer:  timer,
		log:    f.log.With().Str("topic", c.Topic()).Int32("partition", c.Partition()).Logger(),
		m:      f.metrics.forTier(t.Topic),
		sess:   s,
		done:   make(chan struct{}),
	}
	p.nextOffset.Store(c.InitialOffset()) // negative (oldest/newest) until the first record
	return p
}

// run forwards the partition until the claim ends, then finishes the
// records in flight.
func (p *partition) run() {
	// sarama keeps a partition's pause across a reassignment: one revoked
	// while paused would come back paused and never fetch. Start known.
	p.f.group.Resume(p.tp)
	defer p.finish()
	ctx := p.sess.Context()
	p.msgs = p.claim.Messages()
	for {
		if m := p.dequeue(); m != nil {
			if !p.process(ctx, m) {
				return
			}
			continue
		}
		if p.msgsClosed {
			return
		}
		select {
		case ev := <-p.events:
			p.handle(ctx, ev)
		case <-ctx.Done():
			return
		case m, ok := <-p.claimed():
			p.enqueue(m, ok)
			p.drainClaim()
		}
	}
}

// drainClaim moves the records the claim already has at hand into the
// queue, up to its limit, without blocking: one select over every channel
// of run per batch of records rather than per record.
func (p *partition) drainClaim() {
	for c := p.claimed(); c != nil; c = p.claimed() {
		select {
		case m, ok := <-c:
			p.enqueue(m, ok)
		default:
			return
		}
	}
}

// notify hands ev to the partition unless its claim has ended.
func (p *partition) notify(ev event) {
	select {
	case p.events <- ev:
	case <-p.done:
	}
}

// queueLimit is how many records may wait behind a held head before the
// partition is paused, and behind a flowing one before the claim is left
// unread.
const queueLimit = 256

// enqueue takes a record read from the claim (ok=false: the claim closed).
func (p *partition) enqueue(m *sarama.ConsumerMessage, ok bool) {
	if !ok {
		p.msgsClosed, p.msgs = true, nil
		return
	}
	p.queue = append(p.queue, m)
	p.updatePause()
}

// dequeue returns the next head, or nil when none is queued.
func (p *partition) dequeue() *sarama.ConsumerMessage {
	if p.queueHead == len(p.queue) {
		return nil
	}
	m := p.queue[p.queueHead]
	p.queue[p.queueHead] = nil
	p.queueHead++
	if p.queueHead == len(p.queue) {
		p.queue, p.queueHead = p.queue[:0], 0
	} else if p.queueHead > 1024 && p.queueHead*2 > len(p.queue) {
		n := copy(p.queue, p.queue[p.queueHead:])
		clear(p.queue[n:])
		p.queue, p.queueHead = p.queue[:n], 0
	}
	p.updatePause()
	return m
}

// updatePause pauses the partition while its head is far from due, or
// held with a long queue behind it.
func (p *partition) updatePause() {
	p.setPaused(p.headFar || p.waiting && len(p.queue)-p.queueHead >= queueLimit)
}

// claimed is the claim's channel when a record may be read now, else nil
// (a nil channel is never ready in a select).
func (p *partition) claimed() <-chan *sarama.ConsumerMessage {
	if p.waiting || len(p.queue)-p.queueHead < queueLimit {
		return p.msgs
	}
	return nil
}

// process holds m, the partition head, until it is due and sends it on.
// It returns false when the claim ended first; m is then dropped, unmarked,
// for the next owner.
func (p *partition) process(ctx context.Context, m *sarama.ConsumerMessage) bool {
	if p.nextOffset.Load() < 0 {
		p.nextOffset.Store(m.Offset)
	}
	now := time.Now() // the record is the head from now on
	env, err := p.dec.Decode(m.Headers)
	if err == nil {
		err = p.check(env, now)
	}
	if err != nil {
		return p.send(ctx, p.deadLetter(m, err))
	}
	release := p.releaseAt(m, env, now)
	p.releaseNanos.Store(release.UnixNano())
	defer p.releaseNanos.Store(0)
	due := env.Due
	if due.IsZero() {
		due = release
	}
	var early <-chan struct{}
	if wa := p.f.cfg.WorkAhead; wa != nil && now.Before(release) {
		if h := wa.Hold(env.Target, due); h != nil {
			defer wa.Drop(h)
			early = h.Released()
		}
	}
	at, released, isEarly := p.waitUntil(ctx, m.Offset, release, early, now)
	if !released {
		return false
	}
	fl := &flight{p: p, offset: m.Offset, src: m, env: env}
	if isEarly {
		fl.early = due
	}
	fl.msg = p.hop(fl, at)
	if size := fl.msg.ByteSize(recordVersion); size > p.f.maxBytes {
		// sarama refuses it on every attempt, without asking the broker.
		return p.send(ctx, p.deadLetter(m, &envelope.HeaderError{Header: "record", Reason: ReasonTooLarge,
			Detail: fmt.Sprintf("%d bytes to forward, over the producer's limit of %s (Producer.MaxMessageBytes): it would be refused on every attempt",
				size, byteLabel(p.f.maxBytes))}))
	}
	if !isEarly {
		// Releasable when it was due and had become the head: time spent
		// behind an earlier head is the routing rule, not forwarder lag.
		p.observe(fl, later(release, now))
	}
	return p.send(ctx, fl)
}

// ReasonTooLarge is the dead-letter reason of a record larger than the
// forwarder's producer may send (Producer.MaxMessageBytes, 1 MiB), which a
// tier topic with a larger max.message.bytes can hold.
const ReasonTooLarge envelope.Reason = "too_large"

// recordVersion is the record format sarama sizes messages with for
// Kafka 0.11 and later (ladder requires 2.x or later).
const recordVersion = 2

// spanLabel renders a span of milliseconds for people: "about 973 years",
// "400 days", "5 hours", "90s".
func spanLabel(ms int64) string {
	const day = 24 * 60 * 60 * 1000
	switch {
	case ms >= 2*365*day:
		return fmt.Sprintf("about %d years", ms/(day*36525/100))
	case ms >= 2*day:
		return fmt.Sprintf("%d days", ms/day)
	case ms >= 2*60*60*1000:
		return fmt.Sprintf("%d hours", ms/(60*60*1000))
	}
	return (time.Duration(ms) * time.Millisecond).Round(time.Second).String()
}

func byteLabel(n int) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
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
	p.m.releaseLateness.Observe(max(at.Sub(release), 0).Seconds())
	if fl.msg.Topic == fl.env.Target && !fl.env.Due.IsZero() {
		p.m.dueLateness.Observe(max(at.Sub(fl.env.Due), 0).Seconds())
	}
}

// releaseAt is when the head may leave the tier. A record timestamp in the
// future (a producer with a skewed clock) counts as now, so it cannot hold
// the partition longer than one tier delay from when it was first seen.
func (p *partition) releaseAt(m *sarama.ConsumerMessage, env envelope.Envelope, now time.Time) time.Time {
	entered := m.Timestamp
	if entered.After(now) {
		entered = now
	}
	return tier.ReleaseAt(p.tier, entered, env.Due)
}

// check refuses envelopes that decode but cannot be routed.
func (p *partition) check(env envelope.Envelope, now time.Time) error {
	l := p.f.cfg.Ladder
	if !env.Due.IsZero() && env.Due.Sub(now) > p.f.cfg.MaxDelay {
		// In milliseconds: time.Time.Sub saturates at about 292 years.
		return &envelope.HeaderError{Header: envelope.Due, Reason: envelope.ReasonDueTooFar,
			Detail: fmt.Sprintf("due %s, %s ahead, beyond the maximum delay of %s (latest accepted due %s)",
				env.Due.UTC().Format(time.RFC3339), spanLabel(env.Due.UnixMilli()-now.UnixMilli()), tier.Label(p.f.cfg.MaxDelay),
				now.Add(p.f.cfg.MaxDelay).UTC().Format(time.RFC3339))}
	}
	if l.Internal(env.Target) {
		return &envelope.HeaderError{Header: envelope.Target, Reason: envelope.ReasonInvalidTarget,
			Detail: fmt.Sprintf("%s is a topic of the ladder itself, which would loop", env.Target)}
	}
	if env.Hops >= p.f.cfg.MaxHops {
		return &envelope.HeaderError{Header: envelope.Hops, Reason: envelope.ReasonInvalidHops,
			Detail: fmt.Sprintf("%d hops reach the limit of %d: a routing loop?", env.Hops, p.f.cfg.MaxHops)}
	}
	return nil
}

// hop builds the record for the next hop, routed at the current time and
// stamped with it: the next tier measures its delay from this timestamp. An
// early release (earlyUntil set) goes straight to the target with
// ladder-early set to how early it is.
//
// The first record of a flight is built in the storage allocated with it.
// A rebuild (a resend) allocates anew: the producer may not be done with
// the earlier record yet.
func (p *partition) hop(fl *flight, now time.Time) *sarama.ProducerMessage {
	m, env := fl.src, fl.env
	topic := env.Target
	var ahead time.Duration
	switch next, ok := p.f.cfg.Ladder.Route(now, env.Due); {
	case !fl.early.IsZero():
		ahead = max(fl.early.Sub(now), time.Millisecond)
	case ok && !env.Due.IsZero():
		topic = next.Topic
	}
	if fl.msg != nil {
		return &sarama.ProducerMessage{Topic: topic, Key: encoder(m.Key), Value: encoder(m.Value),
			Headers: envelope.Next(m.Headers, env.Hops, ahead), Timestamp: now}
	}
	fl.rec = sarama.ProducerMessage{Topic: topic, Headers: envelope.AppendNext(fl.headers[:0], m.Headers, env.Hops, ahead),
		Timestamp: now}
	if m.Key != nil { // a null key stays null: see encoder
		fl.key = m.Key
		fl.rec.Key = &fl.key
	}
	if m.Value != nil {
		fl.value = m.Value
		fl.rec.Value = &fl.value
	}
	return &fl.rec
}

func (p *partition) deadLetter(m *sarama.ConsumerMessage, reason error) *flight {
	p.log.Warn().Int64("offset", m.Offset).Str("reason", string(envelope.ReasonOf(reason))).
		Str("error", reason.Error()).Msg("dead-lettering record")
	text := reason.Error()
	msg := &sarama.ProducerMessage{
		Topic:     p.f.cfg.Ladder.DLQTopic(),
		Key:       encoder(m.Key),
		Value:     encoder(m.Value),
		Headers:   envelope.DeadLetter(m.Headers, text),
		Timestamp: time.Now(),
	}
	// A dead letter the producer would refuse would hold the partition for
	// ever: drop the value, then the key, until it fits.
	if msg.ByteSize(recordVersion) > p.f.maxBytes && m.Value != nil {
		text += fmt.Sprintf("; value of %d bytes dropped: the dead letter would exceed the producer's limit of %s", len(m.Value), byteLabel(p.f.maxBytes))
		msg.Value, msg.Headers = nil, envelope.DeadLetter(m.Headers, text)
	}
	if msg.ByteSize(recordVersion) > p.f.maxBytes && m.Key != nil {
		text += fmt.Sprintf("; key of %d bytes dropped too", len(m.Key))
		msg.Key, msg.Headers = nil, envelope.DeadLetter(m.Headers, text)
	}
	return &flight{p: p, offset: m.Offset, src: m, dlq: true, reason: envelope.ReasonOf(reason), msg: msg}
}

// encoder keeps a null key or value null: an empty encoder would turn it
// into an empty one and change the partitioning.
func encoder(b []byte) sarama.Encoder {
	if b == nil {
		return nil
	}
	return sarama.ByteEncoder(b)
}

// send waits for room in the window, then hands fl to the producer (or,
// in exactly-once mode, to the transaction loop).
func (p *partition) send(ctx context.Context, fl *flight) bool {
	// A full window waits until it is down to three quarters, so records and
	// acknowledgements move in bursts rather than one per wake-up.
	if p.win.len() >= p.f.cfg.MaxInFlight {
		for p.win.len() > p.f.cfg.MaxInFlight*3/4 {
			select {
			case ev := <-p.events:
				p.handle(ctx, ev)
			case m, ok := <-p.claimed():
				p.enqueue(m, ok)
			case <-ctx.Done():
				return false
			}
		}
	}
	if p.f.txn != nil {
		return p.sendTxn(ctx, fl)
	}
	fl.msg.Metadata = fl
	select { // the common case, without the cost of a select over every channel below
	case p.f.producer.Input() <- fl.msg:
		p.win.add(fl)
		return true
	default:
	}
	for sent := false; !sent; {
		select {
		case p.f.producer.Input() <- fl.msg:
			sent = true
		case m, ok := <-p.claimed():
			p.enqueue(m, ok)
			p.drainClaim()
		case <-ctx.Done():
			return false
		}
	}
	p.win.add(fl)
	return true
}

// sendTxn hands fl to the transaction loop once its topic's metadata is
// known, under the current send generation.
func (p *partition) sendTxn(ctx context.Context, fl *flight) bool {
	for !p.f.topicKnown(fl.msg.Topic) {
		if !p.awaitTopic(ctx, fl.msg.Topic) {
			return false
		}
		p.restamp(fl, time.Now()) // it waited: route and stamp it anew
	}
	fl.msg.Metadata = fl
	it := txnItem{fl: fl, gen: p.sendGen}
	for {
		select {
		case p.f.txn.in <- it:
			p.win.add(fl)
			return true
		case m, ok := <-p.claimed():
			p.enqueue(m, ok)
		case <-ctx.Done():
			return false
		}
	}
}

// restamp builds fl's message anew at now: routed again and stamped with
// the forwarding time (a dead letter is only stamped).
func (p *partition) restamp(fl *flight, now time.Time) {
	if fl.dlq {
		fl.msg = cloneMessage(fl.msg, now)
	} else {
		fl.msg = p.hop(fl, now)
	}
	fl.msg.Metadata = fl
}

// awaitTopic waits, retrying with back-off, until the metadata of topic is
// known (true), or the claim ends (false). Meanwhile the partition handles
// its events and reads its claim (paused once the queue is long), its
// offset held; the wait is logged, counted as a failed attempt, and makes
// the forwarder not ready.
func (p *partition) awaitTopic(ctx context.Context, topic string) bool {
	wasWaiting := p.waiting
	p.holding, p.waiting = true, true
	defer func() {
		p.holding, p.waiting = false, wasWaiting
		p.updatePause()
		p.updateFailing()
	}()
	for attempt := 1; ; attempt++ {
		looked := make(chan struct{})
		var err error
		go func() {
			defer close(looked)
			err = p.f.lookupTopic(topic)
		}()
		if !p.serve(ctx, looked) {
			return false
		}
		if err == nil {
			return true
		}
		p.updateFailing()
		p.m.produceErrors.Inc()
		p.f.stats.Retried.Add(1)
		p.f.health.produced(err)
		d := retryDelay(attempt)
		p.log.Warn().Err(err).Str("to", topic).Int("attempt", attempt).Dur("retry_in", d).
			Msg("exactly-once: the target's metadata is unknown; holding the partition at this record and retrying")
		wait := make(chan struct{})
		t := time.AfterFunc(d, func() { close(wait) })
		ok := p.serve(ctx, wait)
		t.Stop()
		if !ok {
			return false
		}
	}
}

// serve handles events and reads the claim until done is closed (true) or
// the claim ends (false).
func (p *partition) serve(ctx context.Context, done <-chan struct{}) bool {
	for {
		select {
		case <-done:
			return true
		case ev := <-p.events:
			p.handle(ctx, ev)
		case m, ok := <-p.msgs:
			p.enqueue(m, ok)
		case <-ctx.Done():
			return false
		}
	}
}

// handle applies a producer result: marks the offset after an
// acknowledgement, or schedules the record to be sent again after a failure.
// A failed record is never dead-lettered: the cause (broker away, topic
// missing) is not the record's fault, and it holds the offset until it is sent.
func (p *partition) handle(ctx context.Context, ev event) {
	if len(ev.acks) > 0 && p.f.txn != nil && p.txnFailing {
		p.txnFailing = false // a transaction with its records committed
		p.updateFailing()
	}
	p.acked(ev.acks...)
	if ev.abort > 0 {
		p.aborted(ctx, ev)
		return
	}
	fl := ev.f
	switch {
	case fl == nil:
	case ev.resend:
		if fl.dlq {
			fl.msg = cloneMessage(fl.msg, time.Now())
		} else {
			fl.msg = p.hop(fl, time.Now())
		}
		fl.msg.Metadata = fl
		input := p.f.producer.Input()
		if fl.solo {
			input = p.f.solo
		}
		select {
		case input <- fl.msg:
		case <-ctx.Done():
		}
	case ev.err != nil:
		fl.attempts++
		if fl.attempts == 1 {
			p.failingFlights++
			p.updateFailing()
		}
		p.m.produceErrors.Inc()
		p.f.health.produced(ev.err)
		if permanent(ev.err) && !fl.dlq {
			if fl.solo && fl.attempts >= permanentAfter {
				p.rejected(ctx, fl, ev.err) // refused alone: for itself
				return
			}
			fl.solo = true
		}
		p.f.stats.Retried.Add(1)
		d := retryDelay(fl.attempts)
		p.log.Warn().Err(ev.err).Int64("offset", fl.offset).Str("to", fl.msg.Topic).Int("attempt", fl.attempts).
			Dur("retry_in", d).Msg("producing record failed; holding its offset and retrying")
		time.AfterFunc(d, func() { p.events <- event{f: fl, resend: true} })
	default:
		p.acked(fl)
	}
}

// aborted takes note that a transaction with records of this partition
// aborted, and sends the unacknowledged records again.
func (p *partition) aborted(ctx context.Context, ev event) {
	p.abortedGen = max(p.abortedGen, ev.abort)
	p.txnFailing = true
	p.updateFailing()
	for _, fe := range ev.failed {
		p.m.produceErrors.Inc()
		p.f.stats.Retried.Add(1)
		if errors.Is(fe.err, sarama.ErrUnknownTopicOrPartition) {
			p.f.forgetTopic(fe.fl.msg.Topic) // deleted? its metadata is read again before the next attempt
		}
		if permanent(fe.err) && !fe.fl.dlq {
			fe.fl.attempts++
			fe.fl.lastErr = fe.err
		}
	}
	if p.ending {
		p.abandoned = true
		return
	}
	if !p.resending {
		p.resend(ctx)
	}
}

// resend sends every unacknowledged record again, in order, under the send
// generation of the newest abort (again, if another abort comes meanwhile).
// A record its target refused permanentAfter times is dead-lettered instead.
func (p *partition) resend(ctx context.Context) bool {
	p.resending = true
	defer func() { p.resending = false }()
	for p.abortedGen > p.sendGen {
		p.sendGen = p.abortedGen
		old := p.win.q
		p.win = window{}
		now := time.Now()
		for _, fl := range old {
			if fl.acked {
				continue
			}
			nf := &flight{p: p, offset: fl.offset, src: fl.src, env: fl.env, early: fl.early, dlq: fl.dlq, reason: fl.reason,
				attempts: fl.attempts, lastErr: fl.lastErr, msg: fl.msg}
			if !nf.dlq && nf.attempts >= permanentAfter {
				nf = p.rejection(nf, nf.lastErr)
			} else {
				nf.solo = nf.attempts > 0
				p.restamp(nf, now)
			}
			if !p.sendTxn(ctx, nf) {
				return false
			}
		}
	}
	return true
}

// updateFailing counts the partition in Forwarder.failingParts while one
// of its records is failing: readiness is cleared only when none is.
func (p *partition) updateFailing() {
	failing := p.failingFlights > 0 || p.holding || p.txnFailing
	if failing == p.failing {
		return
	}
	p.failing = failing
	if failing {
		p.f.failingParts.Add(1)
	} else if p.f.failingParts.Add(-1) == 0 {
		p.f.health.produced(nil)
	}
}

// acked accounts for records the broker acknowledged (or whose transaction
// committed), in the order they were sent, and marks the offset they
// complete: once per batch, however many records it has.
func (p *partition) acked(fls ...*flight) {
	var forwarded, delivered, early, deadLettered int64
	commit := int64(-1)
	for _, fl := range fls {
		if fl.attempts > 0 && p.f.txn == nil {
			p.failingFlights--
			p.updateFailing()
		}
		switch {
		case fl.dlq:
			deadLettered++
			p.m.deadLetter(string(fl.reason))
		case !fl.early.IsZero():
			early++
		case fl.msg.Topic == fl.env.Target:
			delivered++
		default:
			forwarded++
		}
		if c := p.win.done(fl); c >= 0 {
			commit = c
		}
	}
	if p.f.failingParts.Load() == 0 {
		p.f.health.produced(nil)
	}
	for _, c := range []struct {
		n     int64
		total *atomic.Int64
		m     prometheus.Counter
	}{{forwarded, &p.f.stats.Forwarded, p.m.forwarded}, {delivered, &p.f.stats.Delivered, p.m.delivered},
		{early, &p.f.stats.Early, p.m.early}, {deadLettered, &p.f.stats.DeadLettered, nil}} {
		if c.n > 0 {
			c.total.Add(c.n)
			if c.m != nil {
				c.m.Add(float64(c.n))
			}
		}
	}
	if commit >= 0 && p.f.txn == nil {
		// Exactly-once mode committed the offset in the transaction.
		p.sess.MarkOffset(p.claim.Topic(), p.claim.Partition(), commit, "")
		p.nextOffset.Store(commit)
	}
}

// permanentAfter is how many times a record must be refused as too large or
// invalid, the last time alone, before it is dead-lettered: a refusal of a
// whole batch (a target whose max.message.bytes is below the producer's
// batches) passes once the record travels alone, and the record is sent
// alone after its first refusal.
const permanentAfter = 3

// rejection turns fl, which its target refuses for good, into its dead letter.
func (p *partition) rejection(fl *flight, cause error) *flight {
	reason := &envelope.HeaderError{Header: envelope.Target, Reason: envelope.ReasonRejected,
		Detail: fmt.Sprintf("%s refused the record %d times: %v", fl.msg.Topic, fl.attempts, cause)}
	dl := p.deadLetter(fl.src, reason)
	fl.dlq, fl.reason, fl.msg = true, dl.reason, dl.msg
	fl.msg.Metadata = fl
	return fl
}

// rejected dead-letters fl, which its target refuses for good (at-least-once).
func (p *partition) rejected(ctx context.Context, fl *flight, cause error) {
	p.rejection(fl, cause)
	select {
	case p.f.producer.Input() <- fl.msg:
	case <-ctx.Done():
	}
}

// waitUntil holds the head (at offset) until release, paused while release
// is further away than ResumeLead, or until early is closed (work-ahead) or
// a drain command covers it. It returns when it let the head go, and
// released=false if the claim ended first. now is the caller's clock read.
func (p *partition) waitUntil(ctx context.Context, offset int64, release time.Time, early <-chan struct{}, now time.Time) (at time.Time, released, isEarly bool) {
	if !release.After(now) {
		return now, true, false // the common case of a backlog: already due
	}
	held := false
	p.waiting = true
	defer func() {
		if held {
			p.f.stats.Held.Add(-1)
		}
		p.waiting, p.headFar = false, false
		p.updatePause()
	}()
	lead := p.f.cfg.ResumeLead
	for {
		until := release.Sub(now)
		if until <= 0 {
			return now, true, false
		}
		changed := p.f.control.Changed()
		if p.f.control.DrainUntil(p.claim.Topic(), p.claim.Partition(), now) > offset {
			return now, true, true
		}
		if !held {
			held = true
			p.f.stats.Held.Add(1)
		}
		wake := until
		p.headFar = until > lead
		if p.headFar {
			wake = until - lead
		}
		p.updatePause()
		p.timer.Reset(wake)
		select {
		case <-p.timer.C:
		case ev := <-p.events:
			p.handle(ctx, ev)
		case m, ok := <-p.msgs:
			p.enqueue(m, ok)
		case <-early:
			p.timer.Stop()
			return time.Now(), true, true
		case <-changed:
		case <-ctx.Done():
			p.timer.Stop()
			return time.Time{}, false, false
		}
		p.timer.Stop()
		now = time.Now()
	}
}

func (p *partition) setPaused(paused bool) {
	if p.paused == paused {
		return
	}
	p.paused = paused
	p.pausedState.Store(paused)
	if paused {
		p.f.group.Pause(p.tp)
	} else {
		p.f.group.Resume(p.tp)
	}
}

// finish waits, up to ShutdownTimeout, for the records in flight to be
// acknowledged so their offsets are marked (or committed) before the claim
// is released. In exactly-once mode it gives up at once when a transaction
// of the partition aborted or its session was fenced: the next owner
// forwards those records from the committed offset.
func (p *partition) finish() {
	p.ending = true
	defer func() {
		p.setPaused(false)
		p.failingFlights, p.holding, p.txnFailing = 0, false, false
		p.updateFailing()
	}()
	if p.win.len() == 0 || p.abandoned || p.abortedGen > p.sendGen {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.f.cfg.ShutdownTimeout)
	defer cancel()
	for p.win.len() > 0 {
		select {
		case ev := <-p.events:
			p.handle(ctx, ev)
			if p.abandoned {
				return
			}
		case <-p.sess.fenced:
			return
		case <-ctx.Done():
			p.log.Warn().Int("in_flight", p.win.len()).Dur("waited", p.f.cfg.ShutdownTimeout).
				Msg("releasing partition with unacknowledged records; the next owner forwards them again")
			return
		}
	}
}

// retryDelay is the back-off before sending a failed record again: 100ms
// doubling to 10s.
func retryDelay(attempt int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < attempt && d < 10*time.Second; i++ {
		d *= 2
	}
	return min(d, 10*time.Second)
}

func cloneMessage(m *sarama.ProducerMessage, ts time.Time) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{Topic: m.Topic, Key: m.Key, Value: m.Value, Headers: m.Headers, Timestamp: ts}
}
