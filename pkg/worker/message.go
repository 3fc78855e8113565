package worker

import (
	"bytes"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
)

// AttemptHeader counts delivery attempts of a message that a handler asked to
// retry: absent on the first delivery, "2" on the first retry, and so on. It
// travels through the ladder like any other header, and a dead-lettered
// message carries the number of attempts made. Decimal ASCII, like every
// ladder header.
const AttemptHeader = "ladder-attempt"

// ladderPrefix starts every header of the ladder's contract.
var ladderPrefix = []byte("ladder-")

// Message is a record consumed from a lane, as a handler sees it.
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte // nil for a record without a key
	Value     []byte // nil for a null value
	Timestamp time.Time
	// Headers are the record's own headers, in order and byte for byte: every
	// header except the ladder-* ones, which are decoded into Envelope and
	// Attempt. They are passed on by Reschedule and Retry unless replaced.
	Headers []sarama.RecordHeader
	// Envelope is the decoded ladder-* headers: Due (when the message was due
	// back), Scheduled, Hops, Early (set when work-ahead released it before
	// Due). A record produced straight to the lane has a zero envelope with
	// Target set to the lane. Malformed ladder headers are ignored here (the
	// forwarder dead-letters such records before they reach a lane).
	Envelope envelope.Envelope
	// Attempt is 1 on the first delivery and n+1 after n retries (the
	// ladder-attempt header).
	Attempt int
}

// Header returns the value of the first of the message's own headers named
// key, and whether there is one. Ladder headers are in Envelope, not here.
func (m Message) Header(key string) ([]byte, bool) {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return h.Value, true
		}
	}
	return nil, false
}

// Late is how long after its due time the message was handed to the handler
// at now (negative when work-ahead released it early, zero without a due time).
func (m Message) Late(now time.Time) time.Duration {
	if m.Envelope.Due.IsZero() {
		return 0
	}
	return now.Sub(m.Envelope.Due)
}

// newMessage decodes a consumed record for the handler.
func newMessage(cm *sarama.ConsumerMessage) Message {
	m := Message{
		Topic: cm.Topic, Partition: cm.Partition, Offset: cm.Offset,
		Key: cm.Key, Value: cm.Value, Timestamp: cm.Timestamp, Attempt: 1,
	}
	hasTarget := false
	for _, h := range cm.Headers {
		if h == nil {
			continue
		}
		if !bytes.HasPrefix(h.Key, ladderPrefix) {
			m.Headers = append(m.Headers, sarama.RecordHeader{Key: h.Key, Value: h.Value})
			continue
		}
		switch string(h.Key) {
		case envelope.Target:
			hasTarget = true
		case AttemptHeader:
			if n, err := strconv.Atoi(string(h.Value)); err == nil && n > 0 {
				m.Attempt = n
			}
		}
	}
	hs := cm.Headers
	if !hasTarget {
		// Produced straight to the lane: its target is the lane itself.
		hs = append(hs[:len(hs):len(hs)], &sarama.RecordHeader{Key: []byte(envelope.Target), Value: []byte(cm.Topic)})
	}
	env, err := envelope.Decode(hs)
	if err != nil {
		env = envelope.Envelope{Target: cm.Topic}
	}
	m.Envelope = env
	return m
}

// deadLetterHeaders are the headers of a dead-lettered record: every header
// as consumed, byte for byte, with ladder-attempt set to the attempts made,
// ladder-target naming the lane (so the record can be replayed into it) and
// ladder-error saying why.
func deadLetterHeaders(cm *sarama.ConsumerMessage, attempt int, reason string) []sarama.RecordHeader {
	in := make([]*sarama.RecordHeader, 0, len(cm.Headers)+2)
	hasTarget := false
	for _, h := range cm.Headers {
		if h == nil || string(h.Key) == AttemptHeader {
			continue
		}
		if string(h.Key) == envelope.Target {
			if hasTarget {
				continue
			}
			hasTarget = true
			h = &sarama.RecordHeader{Key: h.Key, Value: []byte(cm.Topic)}
		}
		in = append(in, h)
	}
	if !hasTarget {
		in = append(in, &sarama.RecordHeader{Key: []byte(envelope.Target), Value: []byte(cm.Topic)})
	}
	in = append(in, &sarama.RecordHeader{Key: []byte(AttemptHeader), Value: strconv.AppendInt(nil, int64(attempt), 10)})
	return envelope.DeadLetter(in, reason)
}
