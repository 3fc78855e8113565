package forward

import (
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
)

// flightState is where a record handed on from its tier partition stands.
type flightState uint8

const (
	flightSent   flightState = iota // handed to the sink, not acknowledged yet
	flightParked                    // waits for its target to exist or accept writes
	flightFailed                    // its produce (or its transaction) failed; sent again after a back-off
)

func (s flightState) String() string {
	return [...]string{"sent", "parked", "failed"}[s]
}

// flight is one record handed on from a tier partition: a forward to its
// next hop or a dead letter. From the moment it is handed on until it is
// acknowledged it sits in its partition's list of unfinished records, which
// decides what the partition may commit. It is the producer message's
// Metadata.
type flight struct {
	p      *partition
	rec    record
	env    envelope.Envelope // unused for dead letters
	msg    *sarama.ProducerMessage
	state  flightState
	early  time.Time // due (or release) time when released ahead of it; else zero
	dlq    bool
	reason envelope.Reason // why, for a dead letter
	// release is when the record may leave its tier (ladder_head_overdue_seconds).
	release time.Time
	taken   time.Time // when it became its partition's head
	sent    time.Time // when it was last handed to the sink

	attempts  int       // failed attempts so far
	lastErr   error     // the last failure
	parked    time.Time // when it first waited for its target (zero: never), under this owner or an earlier one
	parkBytes int64     // what its parked copy counts in machine.parkedBytes
	// solo sends it alone: in a produce request of its own (at-least-once),
	// in a transaction of its own (exactly-once). Its target refused it for
	// good, perhaps only for the batch it travelled in (a target whose
	// max.message.bytes is below the producer's batches), or refused this
	// forwarder's writes.
	solo     bool
	retrying bool      // counted in its partition's retries
	txn      uint64    // exactly-once: the transaction it was sent in
	batch    *txnBatch // exactly-once: that transaction's results

	prev, next *flight // the partition's unfinished records, in offset order

	// Storage of the first record built for the flight (see hop), allocated
	// with it: one allocation per forwarded record instead of five.
	first      sarama.ProducerMessage
	key, value sarama.ByteEncoder
	headers    [6]sarama.RecordHeader
}

func (fl *flight) offset() int64 { return fl.rec.offset }

// unfinished is a partition's records handed on and not yet acknowledged,
// in offset order, as an intrusive list: acknowledgements come in any order
// (the targets' partitions answer separately) and each is removed in O(1).
type unfinished struct {
	head, tail *flight
	n          int
}

func (l *unfinished) push(fl *flight) {
	fl.prev, fl.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = fl
	} else {
		l.head = fl
	}
	l.tail = fl
	l.n++
}

func (l *unfinished) remove(fl *flight) {
	if fl.prev != nil {
		fl.prev.next = fl.next
	} else {
		l.head = fl.next
	}
	if fl.next != nil {
		fl.next.prev = fl.prev
	} else {
		l.tail = fl.prev
	}
	fl.prev, fl.next = nil, nil
	l.n--
}

// hop builds the record of the flight's next hop, routed at now and stamped
// with it: the next tier measures its delay from this timestamp. An early
// release goes straight to the target with ladder-early set to how early it
// is. The first record of a flight is built in the storage allocated with
// it; a rebuild (a resend) allocates anew: the producer may not be done with
// the earlier one yet.
func (p *partition) hop(fl *flight, now time.Time) *sarama.ProducerMessage {
	r, env := fl.rec.r, fl.env
	topic := env.Target
	var ahead time.Duration
	switch next, ok := p.m.cfg.Ladder.Route(now, env.Due); {
	case !fl.early.IsZero():
		ahead = max(fl.early.Sub(now), time.Millisecond)
	case ok && !env.Due.IsZero():
		topic = next.Topic
	}
	if fl.msg != nil {
		m := &sarama.ProducerMessage{Topic: topic, Key: envelope.Encoder(r.Key), Value: envelope.Encoder(r.Value),
			Headers: envelope.Next(r.Headers, env.Hops, ahead), Timestamp: now, Metadata: fl}
		return m
	}
	fl.first = sarama.ProducerMessage{Topic: topic, Headers: envelope.AppendNext(fl.headers[:0], r.Headers, env.Hops, ahead),
		Timestamp: now, Metadata: fl}
	if r.Key != nil { // a null key stays null: see envelope.Encoder
		fl.key = r.Key
		fl.first.Key = &fl.key
	}
	if r.Value != nil {
		fl.value = r.Value
		fl.first.Value = &fl.value
	}
	return &fl.first
}

// deadLetterMessage builds the dead letter of rec for reason. A dead letter
// the producer would refuse would hold the partition for ever: it drops the
// value, then the key, until it fits.
func (p *partition) deadLetterMessage(rec record, reason error, now time.Time) *sarama.ProducerMessage {
	r := rec.r
	text := reason.Error()
	limit := p.m.cfg.maxMessageBytes
	msg := &sarama.ProducerMessage{Topic: p.m.cfg.Ladder.DLQTopic(), Key: envelope.Encoder(r.Key), Value: envelope.Encoder(r.Value),
		Headers: envelope.DeadLetter(r.Headers, text), Timestamp: now}
	if msg.ByteSize(recordVersion) > limit && r.Value != nil {
		text += fmt.Sprintf("; value of %d bytes dropped: the dead letter would exceed the producer's limit of %s", len(r.Value), byteLabel(limit))
		msg.Value, msg.Headers = nil, envelope.DeadLetter(r.Headers, text)
	}
	if msg.ByteSize(recordVersion) > limit && r.Key != nil {
		text += fmt.Sprintf("; key of %d bytes dropped too", len(r.Key))
		msg.Key, msg.Headers = nil, envelope.DeadLetter(r.Headers, text)
	}
	return msg
}

// recordVersion is the record format sarama sizes messages with for
// Kafka 0.11 and later (ladder requires 2.x or later).
const recordVersion = 2

// ReasonTooLarge is the dead-letter reason of a record larger than the
// forwarder's producer may send (Producer.MaxMessageBytes, 1 MiB), which a
// tier topic with a larger max.message.bytes can hold.
const ReasonTooLarge envelope.Reason = "too_large"

// ReasonUnknownTarget is the dead-letter reason of a record whose target
// topic did not exist for LADDER_TARGET_TIMEOUT.
const ReasonUnknownTarget envelope.Reason = "unknown_target"

// ReasonNotAuthorized is the dead-letter reason of a record whose target
// refused this forwarder's writes for LADDER_TARGET_TIMEOUT.
const ReasonNotAuthorized envelope.Reason = "not_authorized"

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

// cloneMessage is m stamped anew at ts (a dead letter sent again).
func cloneMessage(m *sarama.ProducerMessage, ts time.Time) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{Topic: m.Topic, Key: m.Key, Value: m.Value, Headers: m.Headers, Timestamp: ts, Metadata: m.Metadata}
}
