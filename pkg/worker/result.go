package worker

import (
	"bytes"
	"errors"
	"time"

	"github.com/IBM/sarama"
)

// kind is what happens to a message after its handler returned.
type kind uint8

const (
	kindDone kind = iota
	kindReschedule
	kindRetry
	kindDeadLetter
)

func (k kind) String() string {
	switch k {
	case kindReschedule:
		return "reschedule"
	case kindRetry:
		return "retry"
	case kindDeadLetter:
		return "dead_letter"
	default:
		return "done"
	}
}

// Result says what happens to a message once its handler returned. Build one
// with Done, Reschedule, RescheduleAt, Retry, RetryAfter or DeadLetter; the
// zero Result is Done.
type Result struct {
	kind    kind
	delay   time.Duration
	at      time.Time
	err     error
	hasWait bool // RetryAfter: delay replaces the lane's back-off

	lane       string
	value      []byte
	setValue   bool
	headers    []sarama.RecordHeader
	setHeaders bool
}

// Done finishes the message: nothing more happens to it.
func Done() Result { return Result{} }

// Reschedule brings the message back to its lane after d (at once when d ≤ 0),
// through the ladder. Its key, value and own headers are kept unless changed
// with WithValue or WithHeaders; To sends it to another lane.
func Reschedule(d time.Duration) Result { return Result{kind: kindReschedule, delay: d} }

// RescheduleAt brings the message back to its lane at t, like Reschedule.
func RescheduleAt(t time.Time) Result { return Result{kind: kindReschedule, at: t} }

// Retry brings the same message back to its own lane after the lane's
// back-off for its attempt (Lane.Backoff), through the ladder, with
// ladder-attempt incremented. When the message already had Lane.MaxAttempts
// attempts, it goes to the dead-letter topic with err as ladder-error.
func Retry(err error) Result {
	if err == nil {
		err = errors.New("retry requested")
	}
	return Result{kind: kindRetry, err: err}
}

// RetryAfter is Retry with its own back-off d in place of the lane's.
func RetryAfter(d time.Duration, err error) Result {
	r := Retry(err)
	r.delay, r.hasWait = d, true
	return r
}

// DeadLetter sends the message to the dead-letter topic now, with reason as
// ladder-error.
func DeadLetter(reason string) Result {
	return Result{kind: kindDeadLetter, err: errors.New(reason)}
}

// To makes a Reschedule come back to lane (a topic) instead of the lane it
// was consumed from. Other results ignore it.
func (r Result) To(lane string) Result { r.lane = lane; return r }

// WithValue makes a Reschedule come back with value v (nil: a null value).
// Other results ignore it: a retry or a dead letter keeps the message as it was.
func (r Result) WithValue(v []byte) Result { r.value, r.setValue = v, true; return r }

// WithHeaders makes a Reschedule come back with these headers in place of
// the message's own ones. Headers named ladder-* belong to the ladder and
// the SDK (ladder-attempt among them): they are dropped here, and the
// rescheduled record carries the SDK's own. Other results ignore it.
func (r Result) WithHeaders(h ...sarama.RecordHeader) Result {
	own := make([]sarama.RecordHeader, 0, len(h))
	for _, x := range h {
		if !bytes.HasPrefix(x.Key, ladderPrefix) {
			own = append(own, x)
		}
	}
	r.headers, r.setHeaders = own, true
	return r
}

// Err is the error of a Retry or the reason of a DeadLetter (nil otherwise).
func (r Result) Err() error { return r.err }

// String names the outcome: done, reschedule, retry or dead_letter.
func (r Result) String() string { return r.kind.String() }
