package worker

import (
	"context"
	"fmt"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/schedule"
)

// entry is one record taken from a claim, until it is finished: handled
// with Done, or its result's record acknowledged.
type entry struct {
	c        *claim
	cm       *sarama.ConsumerMessage
	seq      uint64
	finished bool
	token    bool // holds a place in the lane's budget: from start until finished

	// Set by the handler goroutine before it reports evHandled.
	msg Message
	res Result

	out      *sarama.ProducerMessage // the record the result produces
	sched    *schedule.Message       // to route a resend again; nil for dead letters
	outcome  kind
	attempts int // failed produce attempts
}

type evKind uint8

const (
	evHandled evKind = iota // the handler returned
	evAcked                 // the broker acknowledged entry.out
	evFailed                // producing entry.out failed
	evResend                // the back-off after a failed produce is over
)

type event struct {
	e    *entry
	kind evKind
	err  error
}

// windowPerConcurrency × Lane.Concurrency is the most records a claimed
// partition holds taken and not committed: behind one stuck handler, the
// partition stops reading there instead of letting the window grow with the
// backlog.
const windowPerConcurrency = 16

// claim is the state of one claimed lane partition. Everything in it is
// owned by the claim's goroutine; handlers and the producer report back
// through events.
//
// A record taken from the claim is added to the window, then either waits
// behind an earlier record of its key (KeyOrdered; no place in the lane's
// budget) or is ready: it starts once it gets a place in the budget, and
// holds it until it is finished.
type claim struct {
	l      *lane
	sess   sarama.ConsumerGroupSession
	claim  sarama.ConsumerGroupClaim
	events chan event
	win    window
	keys   map[string][]*entry // KeyOrdered: the records of each key; the first one is running or ready
	ready  []*entry            // records to start, in order, as places in the budget free up
	timers map[*entry]*time.Timer

	running, producing int
	waiting            int // records behind an earlier one of their key
	stopping           bool

	hctx    context.Context // the handlers' context
	hcancel context.CancelFunc
	log     zerolog.Logger
}

func newClaim(l *lane, s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) *claim {
	// The handlers' ctx outlives the session's: on revoke or stop they get
	// ShutdownTimeout to finish before it is cancelled.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(s.Context()))
	return &claim{
		l: l, sess: s, claim: c,
		// One event at a time per record holding a place in the budget,
		// and at most Concurrency of them.
		events:  make(chan event, l.Concurrency+1),
		keys:    map[string][]*entry{},
		timers:  map[*entry]*time.Timer{},
		hctx:    hctx,
		hcancel: hcancel,
		log:     l.log.With().Str("topic", c.Topic()).Int32("partition", c.Partition()).Logger(),
	}
}

// run starts ready records as places in the lane's budget free up, and
// takes the next record when none is ready and the partition has room,
// until the claim ends; then it lets the records in flight finish and
// returns.
func (c *claim) run() {
	defer c.close()
	ctx := c.sess.Context()
	msgs := c.claim.Messages()
	for {
		var (
			in   <-chan *sarama.ConsumerMessage
			slot chan<- struct{}
		)
		switch {
		case len(c.ready) > 0:
			slot = c.l.sem
		case c.hasRoom():
			in = msgs
		}
		select {
		case cm, ok := <-in:
			if !ok {
				c.drain()
				return
			}
			c.take(cm)
		case slot <- struct{}{}:
			e := c.ready[0]
			c.ready[0] = nil
			c.ready = c.ready[1:]
			c.start(e)
		case ev := <-c.events:
			c.handle(ev)
		case <-ctx.Done():
			c.drain()
			return
		}
	}
}

// hasRoom says whether the partition may take another record: fewer than
// Concurrency records wait behind their key, and fewer than
// windowPerConcurrency × Concurrency are uncommitted. Otherwise it stops
// reading (its fetches stop once sarama's buffers fill) until they drain.
func (c *claim) hasRoom() bool {
	return c.waiting < c.l.Concurrency && c.win.len() < windowPerConcurrency*c.l.Concurrency
}

// take adds cm to the window; it is ready to start unless an earlier record
// of its key is running or ready, in which case it waits behind it, holding
// no place in the lane's budget.
func (c *claim) take(cm *sarama.ConsumerMessage) {
	e := &entry{c: c, cm: cm}
	c.win.add(e)
	if c.l.KeyOrdered && cm.Key != nil {
		k := string(cm.Key)
		if q, busy := c.keys[k]; busy {
			c.keys[k] = append(q, e)
			c.waiting++
			c.l.stats.waiting.Add(1)
			return
		}
		c.keys[k] = []*entry{e}
	}
	c.ready = append(c.ready, e)
}

// start runs e's handler in its own goroutine; the caller took a place in
// the lane's budget for it.
func (c *claim) start(e *entry) {
	e.token = true
	c.l.stats.inFlight.Add(1)
	c.running++
	c.l.stats.running.Add(1)
	c.l.w.handlers.Go(func() {
		e.msg = newMessage(e.cm)
		e.res = c.call(e.msg)
		if e.res.kind == kindReschedule && e.res.at.IsZero() {
			e.res.at = time.Now().Add(e.res.delay)
		}
		// Never blocks: the channel has room for one event per record.
		c.events <- event{e: e, kind: evHandled}
	})
}

// call runs the handler, turning a panic into a Retry.
func (c *claim) call(m Message) (res Result) {
	defer func() {
		if r := recover(); r != nil {
			c.l.stats.panics.Add(1)
			c.log.Error().Int64("offset", m.Offset).Str("panic", fmt.Sprint(r)).Str("stack", string(debug.Stack())).
				Msg("handler panicked; retrying the message")
			res = Retry(fmt.Errorf("handler panicked: %v", r))
		}
	}()
	return c.l.Handler(c.hctx, m)
}

func (c *claim) handle(ev event) {
	e := ev.e
	switch ev.kind {
	case evHandled:
		c.running--
		c.l.stats.running.Add(-1)
		c.l.stats.handled.Add(1)
		c.startNextOfKey(e)
		c.act(e)
	case evAcked:
		c.producing--
		c.finish(e)
	case evFailed:
		e.attempts++
		d := produceRetryDelay(e.attempts)
		c.log.Warn().Err(ev.err).Int64("offset", e.cm.Offset).Str("to", e.out.Topic).Int("attempt", e.attempts).
			Dur("retry_in", d).Msg("producing the result failed; holding the offset and retrying")
		c.timers[e] = time.AfterFunc(d, func() { c.events <- event{e: e, kind: evResend} })
	case evResend:
		delete(c.timers, e)
		now := time.Now()
		if e.sched != nil {
			pm, err := schedule.Record(c.l.w.cfg.Ladder, *e.sched, now)
			if err == nil {
				e.out = pm
			}
		} else {
			e.out = &sarama.ProducerMessage{Topic: e.out.Topic, Key: e.out.Key, Value: e.out.Value,
				Headers: e.out.Headers, Timestamp: now}
		}
		c.producing--
		c.send(e)
	}
}

// startNextOfKey makes the next record of e's key ready, in key-ordered
// lanes. A stopping claim starts nothing new: the record is left for the
// next owner.
func (c *claim) startNextOfKey(e *entry) {
	if !c.l.KeyOrdered || e.cm.Key == nil {
		return
	}
	k := string(e.cm.Key)
	q := c.keys[k]
	if len(q) > 0 && q[0] == e {
		q[0] = nil
		q = q[1:]
	}
	if len(q) == 0 {
		delete(c.keys, k)
		return
	}
	c.keys[k] = q
	c.waiting--
	c.l.stats.waiting.Add(-1)
	if !c.stopping {
		c.ready = append(c.ready, q[0])
	}
}

// act carries out the handler's result.
func (c *claim) act(e *entry) {
	m, res := e.msg, e.res
	now := time.Now()
	switch res.kind {
	case kindDone:
		e.outcome = kindDone
		c.finish(e)
	case kindReschedule:
		sm := schedule.Message{Topic: m.Topic, Key: m.Key, Value: m.Value, Headers: m.Headers, At: res.at}
		if res.lane != "" {
			sm.Topic = res.lane
		}
		if res.setValue {
			sm.Value = res.value
		}
		if res.setHeaders {
			sm.Headers = res.headers
		}
		c.schedule(e, kindReschedule, sm, now)
	case kindRetry:
		if m.Attempt >= c.l.MaxAttempts {
			c.deadLetter(e, fmt.Sprintf("%d attempts failed; last: %v", m.Attempt, res.err), now)
			return
		}
		d := res.delay
		if !res.hasWait {
			d = c.l.Backoff(m.Attempt)
		}
		hs := make([]sarama.RecordHeader, 0, len(m.Headers)+1)
		hs = append(hs, m.Headers...)
		hs = append(hs, sarama.RecordHeader{Key: []byte(AttemptHeader), Value: strconv.AppendInt(nil, int64(m.Attempt+1), 10)})
		c.log.Debug().Err(res.err).Int64("offset", m.Offset).Int("attempt", m.Attempt).Dur("retry_in", d).Msg("retrying message")
		c.schedule(e, kindRetry, schedule.Message{Topic: m.Topic, Key: m.Key, Value: m.Value, Headers: hs, At: now.Add(d)}, now)
	case kindDeadLetter:
		c.deadLetter(e, res.err.Error(), now)
	}
}

// schedule sends the message of a reschedule or a retry into the ladder.
func (c *claim) schedule(e *entry, k kind, sm schedule.Message, now time.Time) {
	pm, err := schedule.Record(c.l.w.cfg.Ladder, sm, now)
	if err != nil {
		c.deadLetter(e, fmt.Sprintf("cannot %s: %v", k, err), now)
		return
	}
	e.outcome, e.sched, e.out = k, &sm, pm
	c.send(e)
}

// deadLetter sends the consumed record to the dead-letter topic as it came,
// with ladder-error and ladder-attempt.
func (c *claim) deadLetter(e *entry, reason string, now time.Time) {
	c.log.Warn().Int64("offset", e.cm.Offset).Int("attempt", e.msg.Attempt).Str("reason", reason).Msg("dead-lettering message")
	e.outcome, e.sched = kindDeadLetter, nil
	e.out = &sarama.ProducerMessage{
		Topic:     c.l.w.cfg.Ladder.DLQTopic(),
		Key:       envelope.Encoder(e.cm.Key),
		Value:     envelope.Encoder(e.cm.Value),
		Headers:   deadLetterHeaders(e.cm, e.msg.Attempt, reason),
		Timestamp: now,
	}
	c.send(e)
}

// send hands e.out to the producer; the acknowledgement comes back as an event.
func (c *claim) send(e *entry) {
	c.producing++
	e.out.Metadata = e
	c.l.w.producer.Input() <- e.out
}

// finish gives back e's place in the budget and marks the finished prefix
// of the window.
func (c *claim) finish(e *entry) {
	if e.token {
		<-c.l.sem
		e.token = false
		c.l.stats.inFlight.Add(-1)
	}
	switch e.outcome {
	case kindDone:
		c.l.stats.done.Add(1)
	case kindReschedule:
		c.l.stats.rescheduled.Add(1)
	case kindRetry:
		c.l.stats.retried.Add(1)
	case kindDeadLetter:
		c.l.stats.deadLettered.Add(1)
	}
	if commit := c.win.finish(e); commit >= 0 {
		c.sess.MarkOffset(c.claim.Topic(), c.claim.Partition(), commit, "")
	}
}

// drain stops taking records and waits, up to ShutdownTimeout, for the
// running handlers to return and their results to be acknowledged, so their
// offsets are marked before the claim is released.
func (c *claim) drain() {
	c.stopping = true
	if c.running == 0 && c.producing == 0 {
		return
	}
	deadline := time.NewTimer(c.l.w.cfg.ShutdownTimeout)
	defer deadline.Stop()
	for c.running > 0 || c.producing > 0 {
		select {
		case ev := <-c.events:
			c.handle(ev)
		case <-deadline.C:
			c.log.Warn().Int("running", c.running).Int("producing", c.producing).Dur("waited", c.l.w.cfg.ShutdownTimeout).
				Msg("releasing partition with unfinished records; the next owner processes them again")
			return
		}
	}
}

// close cancels the handlers still running and gives back the places in
// the budget of every record not finished: they are not committed, and the
// next owner of the partition processes them again.
func (c *claim) close() {
	c.hcancel()
	for _, t := range c.timers {
		t.Stop()
	}
	c.win.unfinished(func(e *entry) {
		if e.token {
			<-c.l.sem
			c.l.stats.inFlight.Add(-1)
		}
	})
	c.l.stats.waiting.Add(-int64(c.waiting))
	if c.running > 0 {
		c.l.stats.running.Add(-int64(c.running))
	}
}

// produceRetryDelay is the back-off before producing a result again after
// the producer gave up on it: 100ms doubling to 10s. The cause (broker away,
// topic missing) is not the message's fault, so it is never dead-lettered
// for it; its offset is held meanwhile.
func produceRetryDelay(attempt int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < attempt && d < 10*time.Second; i++ {
		d *= 2
	}
	return min(d, 10*time.Second)
}
