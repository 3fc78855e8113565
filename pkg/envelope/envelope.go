// Package envelope reads and writes the ladder-* headers that carry a
// message through the ladder; keys, values and every other header pass
// through byte for byte.
//
// The contract is language-neutral: times are unix milliseconds and counts are
// decimal ASCII, so any Kafka client (kcat included) can schedule a message.
package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/tier"
)

// Header names of the wire contract.
const (
	// Target is the topic the message goes to when it is due (required).
	Target = "ladder-target"
	// Due is when the message is due, unix milliseconds (optional: absent means
	// due when the tier releases it).
	Due = "ladder-due"
	// Scheduled is when the message was first scheduled, unix milliseconds.
	Scheduled = "ladder-scheduled"
	// Hops counts the tiers the message has passed through.
	Hops = "ladder-hops"
	// Early is set, in milliseconds, when idle work-ahead or `ladder drain`
	// released the message before its due time: how early.
	Early = "ladder-early"
	// Error is set on the dead-letter topic only: why the message could not be forwarded.
	Error = "ladder-error"
)

// minDueMillis is 1973-03-03: a smaller ladder-due is almost certainly unix
// seconds sent by mistake, and would be delivered at once. It is refused.
const minDueMillis = 100_000_000_000

// Envelope is the decoded ladder-* headers of a record.
type Envelope struct {
	Target    string
	Due       time.Time     // zero when the record carries no ladder-due
	Scheduled time.Time     // zero when the record carries no ladder-scheduled
	Hops      int           // zero when absent
	Early     time.Duration // zero unless released early by work-ahead
	Error     string        // empty unless the record is dead-lettered
}

// Reason classifies why a record cannot be routed. Reasons form a small fixed
// set, fit for metric labels.
type Reason string

// Reasons a record is refused.
const (
	ReasonMissingTarget   Reason = "missing_target"
	ReasonInvalidTarget   Reason = "invalid_target"
	ReasonInvalidDue      Reason = "invalid_due"
	ReasonInvalidHops     Reason = "invalid_hops"
	ReasonInvalidHeader   Reason = "invalid_header"
	ReasonDuplicateHeader Reason = "duplicate_header"
	// ReasonDueTooFar: ladder-due is further ahead than the forwarder's
	// maximum delay (LADDER_MAX_DELAY).
	ReasonDueTooFar Reason = "due_too_far"
	// ReasonRejected: the target refused the record for good (too large,
	// invalid): retrying cannot help.
	ReasonRejected Reason = "rejected_by_target"
)

// HeaderError is returned by Decode for a record whose ladder headers cannot
// be used. Its message is what lands in the ladder-error header.
type HeaderError struct {
	Header string
	Reason Reason
	Detail string
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("%s: %s", e.Header, e.Detail)
}

// ReasonOf returns the reason of a *HeaderError in err's chain, or "" if there is none.
func ReasonOf(err error) Reason {
	var he *HeaderError
	if errors.As(err, &he) {
		return he.Reason
	}
	return ""
}

// Decode reads the ladder headers of a consumed record. A record without a
// valid ladder-target, with a malformed time or count, or with a ladder header
// given twice yields a *HeaderError; Decode never panics on any input.
func Decode(headers []*sarama.RecordHeader) (Envelope, error) {
	return (*Decoder)(nil).Decode(headers)
}

// Decoder is Decode with a memory of the targets it validated, for a reader
// of many records (a forwarder's partition): a target seen before is
// neither validated nor copied again. The zero value is ready; a Decoder is
// not safe for concurrent use. A nil *Decoder decodes without a memory.
type Decoder struct {
	targets map[string]string
}

// maxTargets bounds a Decoder's memory; past it, the memory starts afresh.
// Lanes are few, so this is only reached by a stream of distinct targets.
const maxTargets = 256

// target returns v as a valid target name, or the reason it is not one.
func (d *Decoder) target(v []byte) (string, error) {
	if d != nil {
		if t, ok := d.targets[string(v)]; ok { // no allocation for the lookup
			return t, nil
		}
	}
	t := string(v)
	if t == "" {
		return "", &HeaderError{Header: Target, Reason: ReasonMissingTarget, Detail: "is empty"}
	}
	if err := tier.ValidateTopic(t); err != nil {
		return "", &HeaderError{Header: Target, Reason: ReasonInvalidTarget, Detail: err.Error()}
	}
	if strings.HasPrefix(t, "__") {
		return "", &HeaderError{Header: Target, Reason: ReasonInvalidTarget,
			Detail: fmt.Sprintf("%s is a Kafka internal topic (named __...): never a target", t)}
	}
	if d != nil {
		if d.targets == nil || len(d.targets) >= maxTargets {
			d.targets = make(map[string]string, 8)
		}
		d.targets[t] = t
	}
	return t, nil
}

// Decode is the package's Decode.
func (d *Decoder) Decode(headers []*sarama.RecordHeader) (Envelope, error) {
	var env Envelope
	var seen [6]bool
	for _, h := range headers {
		if h == nil {
			continue
		}
		i := headerIndex(h.Key)
		if i < 0 {
			continue
		}
		name := names[i]
		if seen[i] {
			return Envelope{}, &HeaderError{Header: name, Reason: ReasonDuplicateHeader, Detail: "appears more than once"}
		}
		seen[i] = true
		var err error
		switch name {
		case Target:
			env.Target, err = d.target(h.Value)
		case Due:
			var ms int64
			if ms, err = parseUint(Due, h.Value, ReasonInvalidDue); err == nil {
				if ms < minDueMillis {
					return Envelope{}, &HeaderError{Header: Due, Reason: ReasonInvalidDue,
						Detail: fmt.Sprintf("%d is before 1973: ladder-due is unix milliseconds, not seconds", ms)}
				}
				env.Due = time.UnixMilli(ms)
			}
		case Scheduled:
			var ms int64
			if ms, err = parseUint(Scheduled, h.Value, ReasonInvalidHeader); err == nil {
				env.Scheduled = time.UnixMilli(ms)
			}
		case Hops:
			var n int64
			if n, err = parseUint(Hops, h.Value, ReasonInvalidHops); err == nil {
				if n > maxHopsValue {
					return Envelope{}, &HeaderError{Header: Hops, Reason: ReasonInvalidHops, Detail: fmt.Sprintf("%d is out of range", n)}
				}
				env.Hops = int(n)
			}
		case Early:
			var ms int64
			if ms, err = parseUint(Early, h.Value, ReasonInvalidHeader); err == nil {
				if ms > maxEarlyMillis {
					err = &HeaderError{Header: Early, Reason: ReasonInvalidHeader,
						Detail: fmt.Sprintf("%d ms is more than a duration holds (%d ms, about 292 years)", ms, int64(maxEarlyMillis))}
				} else {
					env.Early = time.Duration(ms) * time.Millisecond
				}
			}
		case Error:
			env.Error = string(h.Value)
		}
		if err != nil {
			return Envelope{}, err
		}
	}
	if env.Target == "" {
		return Envelope{}, &HeaderError{Header: Target, Reason: ReasonMissingTarget, Detail: "header is missing"}
	}
	return env, nil
}

// maxEarlyMillis is the largest ladder-early a time.Duration holds: a larger
// one would overflow into a negative duration.
const maxEarlyMillis = math.MaxInt64 / int64(time.Millisecond)

// maxHopsValue keeps hop counts far from integer overflow; routing loops are
// caught much earlier by the forwarder's own hop limit.
const maxHopsValue = 1 << 30

var names = [6]string{Target, Due, Scheduled, Hops, Early, Error}

func headerIndex(key []byte) int {
	// Every ladder header starts with "ladder-": one comparison rejects the rest.
	if len(key) < 8 || !bytes.HasPrefix(key, prefix) {
		return -1
	}
	for i, n := range names {
		if string(key) == n {
			return i
		}
	}
	return -1
}

var prefix = []byte("ladder-")

// Header keys as byte slices, shared by every record written (sarama never
// modifies them): no allocation per record.
var (
	targetKey    = []byte(Target)
	dueKey       = []byte(Due)
	scheduledKey = []byte(Scheduled)
	hopsKey      = []byte(Hops)
	earlyKey     = []byte(Early)
	errorKey     = []byte(Error)
)

// parseUint parses a non-negative decimal: ASCII digits only, no sign, no space.
func parseUint(header string, v []byte, reason Reason) (int64, error) {
	if len(v) == 0 || len(v) > 18 {
		return 0, &HeaderError{Header: header, Reason: reason, Detail: fmt.Sprintf("%q is not a decimal number of at most 18 digits", truncate(v))}
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, &HeaderError{Header: header, Reason: reason, Detail: fmt.Sprintf("%q is not a non-negative decimal number", truncate(v))}
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

func truncate(v []byte) []byte {
	if len(v) > 32 {
		return v[:32]
	}
	return v
}

// counts holds the decimal renderings of small counts, shared by every
// record written (sarama never modifies a header value).
var counts = func() (c [256][]byte) {
	for i := range c {
		c[i] = strconv.AppendInt(nil, int64(i), 10)
	}
	return c
}()

// count renders n in decimal, without allocating for small n.
func count(n int) []byte {
	if n >= 0 && n < len(counts) {
		return counts[n]
	}
	return strconv.AppendInt(nil, int64(n), 10)
}

// Millis renders t as decimal unix milliseconds.
func Millis(t time.Time) []byte {
	return strconv.AppendInt(nil, t.UnixMilli(), 10)
}

// New returns the headers that schedule a message: ladder-target, ladder-due
// (omitted when due is zero), ladder-scheduled and ladder-hops=0, after the
// caller's own headers. Caller headers named like a ladder header are dropped:
// the contract's values win.
func New(target string, due, scheduled time.Time, own []sarama.RecordHeader) []sarama.RecordHeader {
	out := make([]sarama.RecordHeader, 0, len(own)+4)
	for _, h := range own {
		if headerIndex(h.Key) < 0 {
			out = append(out, h)
		}
	}
	out = append(out, sarama.RecordHeader{Key: targetKey, Value: []byte(target)})
	if !due.IsZero() {
		out = append(out, sarama.RecordHeader{Key: dueKey, Value: Millis(due)})
	}
	out = append(out, sarama.RecordHeader{Key: scheduledKey, Value: Millis(scheduled)},
		sarama.RecordHeader{Key: hopsKey, Value: count(0)})
	return out
}

// Next returns the headers of a record's next hop: every header in its order
// and byte for byte, except ladder-hops, which becomes hops+1, and
// ladder-early, which is replaced when early > 0.
func Next(in []*sarama.RecordHeader, hops int, early time.Duration) []sarama.RecordHeader {
	return AppendNext(make([]sarama.RecordHeader, 0, len(in)+2), in, hops, early)
}

// AppendNext is Next appending to out, so that a caller can supply the
// storage (the forwarder allocates it with the record it builds).
func AppendNext(out []sarama.RecordHeader, in []*sarama.RecordHeader, hops int, early time.Duration) []sarama.RecordHeader {
	for _, h := range in {
		if h == nil {
			continue
		}
		switch string(h.Key) {
		case Hops:
			continue
		case Early:
			if early > 0 {
				continue
			}
		}
		out = append(out, sarama.RecordHeader{Key: h.Key, Value: h.Value})
	}
	out = append(out, sarama.RecordHeader{Key: hopsKey, Value: count(hops + 1)})
	if early > 0 {
		out = append(out, sarama.RecordHeader{Key: earlyKey, Value: strconv.AppendInt(nil, early.Milliseconds(), 10)})
	}
	return out
}

// DeadLetter returns the headers of a record bound for the dead-letter topic:
// every header as it came, byte for byte (so the offending one can be seen),
// with ladder-error set to reason in place of any earlier one.
func DeadLetter(in []*sarama.RecordHeader, reason string) []sarama.RecordHeader {
	out := make([]sarama.RecordHeader, 0, len(in)+1)
	for _, h := range in {
		if h == nil || string(h.Key) == Error {
			continue
		}
		out = append(out, sarama.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return append(out, sarama.RecordHeader{Key: errorKey, Value: []byte(reason)})
}
