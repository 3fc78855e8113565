// Package tier parses a ladder of fixed-delay tiers, names their topics and
// routes a message to its next hop.
//
// A tier is a Kafka topic whose every record waits the same delay. Because the
// delay is the same for the whole topic, append order is due order, and a
// forwarder only ever needs to look at the head of each partition. Route is the
// rule of DESIGN.md: deliver when due, else take the largest tier that does not
// overshoot the remaining time, else the smallest tier.
package tier

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultTiers is the ladder used when none is configured.
const DefaultTiers = "1m,15m,1h,6h"

// DefaultPrefix is the topic name prefix used when none is configured.
const DefaultPrefix = "delay-"

// DLQSuffix is appended to the prefix to name the dead-letter topic.
const DLQSuffix = "dlq"

// ControlSuffix is appended to the prefix to name the control topic, which
// carries operator commands (ladder drain) to every forwarder.
const ControlSuffix = "control"

// MaxTiers bounds the number of tiers in a ladder: more than a handful only adds hops.
const MaxTiers = 16

// ErrInvalidSpec is returned (wrapped) for a tier list that cannot be parsed.
var ErrInvalidSpec = errors.New("invalid tier list")

// Tier is one fixed-delay topic of the ladder.
type Tier struct {
	// Delay is how long every record waits in this tier, measured from the
	// record timestamp.
	Delay time.Duration
	// Topic is the Kafka topic holding the tier: prefix + Label(Delay).
	Topic string
}

// Label is the tier's delay in its shortest exact unit ("1s", "90s", "15m", "1h", "2d").
func (t Tier) Label() string { return Label(t.Delay) }

// Ladder is an ordered set of tiers, smallest delay first. A Ladder is
// immutable after Parse or New and safe for concurrent use.
type Ladder struct {
	prefix       string
	tiers        []Tier
	byName       map[string]int
	dlq, control string // named once: Internal runs for every forwarded record
}

// Parse parses a comma-separated tier list such as "1m,15m,1h,6h" and names the
// tier topics with prefix. Order in the list does not matter; duplicates,
// non-positive and sub-millisecond delays are refused.
func Parse(list, prefix string) (*Ladder, error) {
	delays, err := ParseDelays(list)
	if err != nil {
		return nil, err
	}
	return New(delays, prefix)
}

// ParseDelays parses a comma-separated tier list into delays, smallest first.
func ParseDelays(list string) ([]time.Duration, error) {
	if strings.TrimSpace(list) == "" {
		return nil, fmt.Errorf("%w: empty (want comma-separated delays such as %q)", ErrInvalidSpec, DefaultTiers)
	}
	var delays []time.Duration
	for _, f := range strings.Split(list, ",") {
		d, err := ParseDuration(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
		}
		delays = append(delays, d)
	}
	slices.Sort(delays)
	return delays, nil
}

// New builds a ladder from delays (any order) and a topic prefix.
func New(delays []time.Duration, prefix string) (*Ladder, error) {
	if len(delays) == 0 {
		return nil, fmt.Errorf("%w: no tiers", ErrInvalidSpec)
	}
	if len(delays) > MaxTiers {
		return nil, fmt.Errorf("%w: %d tiers, at most %d allowed", ErrInvalidSpec, len(delays), MaxTiers)
	}
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	sorted := slices.Clone(delays)
	slices.Sort(sorted)
	l := &Ladder{prefix: prefix, byName: make(map[string]int, len(sorted)), dlq: prefix + DLQSuffix, control: prefix + ControlSuffix}
	for i, d := range sorted {
		if d <= 0 || d%time.Millisecond != 0 {
			return nil, fmt.Errorf("%w: delay %s must be a positive whole number of milliseconds", ErrInvalidSpec, d)
		}
		if i > 0 && sorted[i-1] == d {
			return nil, fmt.Errorf("%w: delay %s appears twice", ErrInvalidSpec, Label(d))
		}
		t := Tier{Delay: d, Topic: prefix + Label(d)}
		l.byName[t.Topic] = i
		l.tiers = append(l.tiers, t)
	}
	for _, special := range []string{l.DLQTopic(), l.ControlTopic()} {
		if _, clash := l.byName[special]; clash {
			return nil, fmt.Errorf("%w: a tier topic is named like the ladder's own topic %q", ErrInvalidSpec, special)
		}
	}
	return l, nil
}

// ValidatePrefix checks that prefix can start a Kafka topic name.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return errors.New("topic prefix must not be empty")
	}
	if err := ValidateTopic(prefix + DLQSuffix); err != nil {
		return fmt.Errorf("topic prefix %q: %w", prefix, err)
	}
	return nil
}

// Prefix is the topic name prefix of every tier and of the dead-letter topic.
func (l *Ladder) Prefix() string { return l.prefix }

// Tiers returns the tiers, smallest delay first. The slice must not be modified.
func (l *Ladder) Tiers() []Tier { return l.tiers }

// Smallest is the tier with the smallest delay: it bounds lateness.
func (l *Ladder) Smallest() Tier { return l.tiers[0] }

// Largest is the tier with the largest delay.
func (l *Ladder) Largest() Tier { return l.tiers[len(l.tiers)-1] }

// Topics returns the tier topic names, smallest delay first.
func (l *Ladder) Topics() []string {
	names := make([]string, len(l.tiers))
	for i, t := range l.tiers {
		names[i] = t.Topic
	}
	return names
}

// DLQTopic is the dead-letter topic: prefix + "dlq".
func (l *Ladder) DLQTopic() string { return l.dlq }

// ControlTopic is the control topic: prefix + "control".
func (l *Ladder) ControlTopic() string { return l.control }

// Internal reports whether topic is one of the ladder's own topics (a tier,
// the dead-letter or the control topic): never a valid target, it would loop.
func (l *Ladder) Internal(topic string) bool {
	_, isTier := l.byName[topic]
	return isTier || topic == l.dlq || topic == l.control
}

// Lookup returns the tier stored in topic, if topic is one of the ladder's tiers.
func (l *Ladder) Lookup(topic string) (Tier, bool) {
	i, ok := l.byName[topic]
	if !ok {
		return Tier{}, false
	}
	return l.tiers[i], true
}

// String renders the ladder as a tier list that Parse accepts.
func (l *Ladder) String() string {
	labels := make([]string, len(l.tiers))
	for i, t := range l.tiers {
		labels[i] = t.Label()
	}
	return strings.Join(labels, ",")
}

// Route picks the next hop of a message due at due, seen at now. It returns
// ok=false when the message is due (remaining ≤ 0) and must go to its target.
// Otherwise it returns the largest tier whose delay fits in the remaining time,
// or the smallest tier when even that one is larger: the tier's forwarder then
// releases the message at its due time, not at the end of the tier delay.
func (l *Ladder) Route(now, due time.Time) (next Tier, ok bool) {
	remaining := due.Sub(now)
	if remaining <= 0 {
		return Tier{}, false
	}
	i, found := slices.BinarySearchFunc(l.tiers, remaining, func(t Tier, d time.Duration) int {
		return cmp.Compare(t.Delay, d)
	})
	switch {
	case found:
		return l.tiers[i], true
	case i == 0:
		return l.tiers[0], true
	default:
		return l.tiers[i-1], true
	}
}

// Hops counts the tiers a message scheduled with delay passes through when
// every forwarder releases exactly on time.
func (l *Ladder) Hops(delay time.Duration) int {
	hops := 0
	for delay > 0 {
		t, _ := l.Route(time.Time{}, time.Time{}.Add(delay))
		hops++
		if t.Delay >= delay {
			break
		}
		delay -= t.Delay
	}
	return hops
}

// ReleaseAt is when a record that entered a tier at entered (its record
// timestamp) must leave it: the end of the tier delay, or its due time if
// that comes first. A zero due means none was given.
func ReleaseAt(t Tier, entered, due time.Time) time.Time {
	end := entered.Add(t.Delay)
	if !due.IsZero() && due.Before(end) {
		return due
	}
	return end
}

const day = 24 * time.Hour

// Label renders d in its shortest exact unit: days, hours, minutes, seconds or
// milliseconds ("2d", "6h", "15m", "90s", "500ms").
func Label(d time.Duration) string {
	for _, u := range units {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.s
		}
	}
	return d.String()
}

// Readable renders d for people, largest units first: "7d", "6h", "1h6m2s",
// "3d13h48m", "1.5s", "500ms". Unlike Label it need not be exact in one unit,
// so it suits retentions, not topic names.
func Readable(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + Readable(-d)
	case d == 0:
		return "0s"
	}
	var out string
	if days := d / day; days > 0 {
		out, d = strconv.FormatInt(int64(days), 10)+"d", d%day
	}
	if d == 0 {
		return out
	}
	rest := d.String() // 13h48m0s, 1h0m0s, 1h6m2s, 1.5s
	if strings.HasSuffix(rest, "m0s") {
		rest = strings.TrimSuffix(rest, "0s")
	}
	if strings.HasSuffix(rest, "h0m") {
		rest = strings.TrimSuffix(rest, "0m")
	}
	return out + rest
}

var units = []struct {
	d time.Duration
	s string
}{{day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}}

// ParseDuration parses a delay: Go's duration syntax ("1h30m", "90s", "500ms")
// plus whole days ("2d").
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty delay")
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || days <= 0 || days > 10000 {
			return 0, fmt.Errorf("delay %q: want a whole number of days such as 2d", s)
		}
		return time.Duration(days) * day, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("delay %q: want a duration such as 90s, 15m, 1h or 2d", s)
	}
	return d, nil
}

// ValidateTopic checks a Kafka topic name: 1 to 249 characters from
// [a-zA-Z0-9._-], and neither "." nor "..".
func ValidateTopic(name string) error {
	if name == "" {
		return errors.New("topic name is empty")
	}
	if len(name) > 249 {
		return fmt.Errorf("topic name is %d characters, at most 249 allowed", len(name))
	}
	if name == "." || name == ".." {
		return fmt.Errorf("topic name %q is not allowed", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name %q has character %q (allowed: a-z A-Z 0-9 . _ -)", name, c)
		}
	}
	return nil
}
