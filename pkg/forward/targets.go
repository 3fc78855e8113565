package forward

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/backoff"
	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/tier"
)

// A record is produced to its target only once the target's metadata was
// read: a target that does not exist, or that refuses this forwarder's
// writes, parks its records (see partition.park) instead of failing produce
// requests, so in exactly-once mode it never aborts a transaction of other
// partitions, and in at-least-once mode it never holds the records behind
// it. A parked record is dead-lettered once it has waited TargetTimeout
// (like a Kafka producer's max.block.ms) with reason unknown_target or
// not_authorized.

// targetState is what the forwarder knows of a target topic.
type targetState uint8

const (
	targetUnchecked targetState = iota // never looked up
	targetKnown                        // exists; writes went through (or were not refused yet)
	targetMissing                      // does not exist (metadata or a produce said so)
	targetForbidden                    // this forwarder may not describe or write it
)

type target struct {
	state    targetState
	checked  time.Time // when the brokers last said it is missing or forbidden
	err      error     // why it is missing or forbidden (or the last lookup failed)
	looking  bool      // a lookup is on its way
	failures int       // lookups or produce attempts failed since the last success (back-off)
	next     time.Time // no lookup before this
	waiters  map[*partition]struct{}
}

// targets is the machine's view of its target topics. Lookups run in the
// driver (lookup posts its result back as an event).
type targets struct {
	byName map[string]*target
	lookup func(topic string)
	dirty  func(*partition)
}

// maxTargets bounds the view; past it, targets nobody waits for are forgotten.
const maxTargets = 1024

func (t *targets) get(topic string) *target {
	tg := t.byName[topic]
	if tg == nil {
		if len(t.byName) >= maxTargets {
			for name, old := range t.byName {
				if len(old.waiters) == 0 && !old.looking {
					delete(t.byName, name)
				}
			}
		}
		tg = &target{waiters: map[*partition]struct{}{}}
		t.byName[topic] = tg
	}
	return tg
}

// usable reports whether a record may be produced to topic now. When it
// may not yet, p is told (marked dirty) when that changes, and a lookup is
// started when its back-off allows; p wakes for the next one otherwise.
func (t *targets) usable(topic string, p *partition, now time.Time) (bool, error) {
	tg := t.get(topic)
	if tg.state == targetKnown {
		return true, nil
	}
	tg.waiters[p] = struct{}{}
	switch {
	case tg.looking:
	case now.Before(tg.next):
		p.setWake(tg.next)
	default:
		tg.looking = true
		t.lookup(topic)
	}
	return false, nil
}

// problem is why topic is known not to be usable, or nil (usable, or not
// looked up yet).
func (t *targets) problem(topic string) error {
	if tg := t.byName[topic]; tg != nil && tg.state != targetKnown {
		return tg.err
	}
	return nil
}

// expired is the dead-letter reason of a record that waited for topic
// since since, or (full) could not wait: its partition had as many records
// waiting as it keeps.
func (t *targets) expired(topic string, since, now time.Time, full bool) error {
	tg := t.get(topic)
	reason, what := ReasonUnknownTarget, "does not exist"
	if tg.state == targetForbidden {
		reason, what = ReasonNotAuthorized, "refuses this forwarder's writes"
	}
	detail := fmt.Sprintf("%s %s: waited %s (LADDER_TARGET_TIMEOUT)", topic, what, now.Sub(since).Round(time.Second))
	if full {
		detail = fmt.Sprintf("%s %s, and its partition already has %d records (or a quarter of LADDER_BUFFER_MEMORY) waiting for their targets: dead-lettered without waiting",
			topic, what, maxParked)
	}
	if tg.err != nil {
		detail += ": " + tg.err.Error()
	}
	return &envelope.HeaderError{Header: envelope.Target, Reason: reason, Detail: detail}
}

// looked takes the result of a lookup of topic.
func (t *targets) looked(topic string, err error, now time.Time) {
	tg := t.get(topic)
	tg.looking = false
	if err == nil {
		// Known; a target that refused the writes before is tried again
		// (lookups run no more often than the back-off of its failures).
		tg.state, tg.err = targetKnown, nil
	} else {
		t.refused(tg, err, now)
	}
	for p := range tg.waiters {
		t.dirty(p)
	}
	clear(tg.waiters)
}

// produceFailed notes that a produce to topic failed with err. It reports
// whether err is about the target itself (missing or forbidden): the record
// then parks instead of holding its partition.
func (t *targets) produceFailed(topic string, err error, now time.Time) bool {
	if !targetError(err) {
		return false
	}
	t.refused(t.get(topic), err, now)
	return true
}

// produced notes that a record reached topic.
func (t *targets) produced(topic string) {
	if tg := t.byName[topic]; tg != nil && tg.failures > 0 {
		tg.failures = 0
	}
}

// refused takes an error about topic: the brokers' answer that it is
// missing or forbidden, or a lookup that got no answer (a timeout, a broker
// away, a leader not elected yet), which says nothing about the topic.
func (t *targets) refused(tg *target, err error, now time.Time) {
	tg.failures++
	tg.err = err
	tg.next = now.Add(targetBackoff(tg.failures))
	switch {
	case errors.Is(err, sarama.ErrTopicAuthorizationFailed) || errors.Is(err, sarama.ErrClusterAuthorizationFailed):
		tg.state, tg.checked = targetForbidden, now
	case errors.Is(err, sarama.ErrUnknownTopicOrPartition) || errors.Is(err, sarama.ErrInvalidTopic):
		tg.state, tg.checked = targetMissing, now
	}
}

// confirmed is why topic cannot take records, if the brokers said so at or
// after since (a record is dead-lettered for its target only on an answer
// given after its wait ended); nil otherwise.
func (t *targets) confirmed(topic string, since time.Time) error {
	tg := t.byName[topic]
	if tg == nil || (tg.state != targetMissing && tg.state != targetForbidden) || tg.checked.Before(since) {
		return nil
	}
	return tg.err
}

// lookupNow has topic looked up at once, back-off or not (a parked record's
// wait ended: it needs a fresh answer), telling p.
func (t *targets) lookupNow(topic string, p *partition) {
	tg := t.get(topic)
	tg.waiters[p] = struct{}{}
	if !tg.looking {
		tg.looking = true
		t.lookup(topic)
	}
}

// targetError reports whether a produce or lookup error is about the target
// topic rather than the record or the brokers.
func targetError(err error) bool {
	return errors.Is(err, sarama.ErrUnknownTopicOrPartition) || errors.Is(err, sarama.ErrTopicAuthorizationFailed) ||
		errors.Is(err, sarama.ErrInvalidTopic)
}

// targetBackoff is the wait before looking a missing target up again: 100ms
// doubling to 5s.
func targetBackoff(failures int) time.Duration {
	return backoff.Delay(failures, 100*time.Millisecond, 5*time.Second)
}

// lookupTarget reads the metadata of topic from a broker (asking it not to
// create the topic); nil when it exists with partitions, else the topic's
// error as the broker gave it (UNKNOWN_TOPIC_OR_PARTITION,
// TOPIC_AUTHORIZATION_FAILED, ...).
//
// It also asks which operations this forwarder may do on the topic
// (Metadata v8+, KIP-430): a topic it may describe but not write is
// TOPIC_AUTHORIZATION_FAILED here, before any record is produced to it. A
// produce refused for want of WRITE would be worse: in exactly-once mode
// sarama (v1.61.1) treats the refused AddPartitionsToTxn as a broken
// connection, closes it and retries the batch Producer.Retry.Max times
// before failing the transaction (about 8 s with TLS and SASL, every
// record of the transaction held meanwhile); in at-least-once mode the
// idempotent producer bumps its epoch. The produce refusal stays handled
// (produceFailed) for a grant revoked after the lookup.
func lookupTarget(client sarama.Client, topic string) error {
	if err := tier.ValidateTopic(topic); err != nil {
		return fmt.Errorf("%w: %w", sarama.ErrInvalidTopic, err)
	}
	b := client.LeastLoadedBroker()
	if b == nil {
		return fmt.Errorf("reading the metadata of topic %s: %w", topic, sarama.ErrOutOfBrokers)
	}
	req := sarama.NewMetadataRequest(client.Config().Version, []string{topic})
	req.AllowAutoTopicCreation = false
	req.IncludeTopicAuthorizedOperations = req.Version >= 8
	resp, err := b.GetMetadata(req)
	if err != nil {
		_ = b.Close() // the client opens it again
		return fmt.Errorf("reading the metadata of topic %s: %w", topic, err)
	}
	for _, tm := range resp.Topics {
		if tm.Name != topic {
			continue
		}
		if tm.Err != sarama.ErrNoError {
			return fmt.Errorf("reading the metadata of topic %s: %w", topic, tm.Err)
		}
		if len(tm.Partitions) == 0 {
			return fmt.Errorf("reading the metadata of topic %s: %w", topic, sarama.ErrUnknownTopicOrPartition)
		}
		if req.IncludeTopicAuthorizedOperations && tm.TopicAuthorizedOperations != math.MinInt32 &&
			tm.TopicAuthorizedOperations&(1<<sarama.AclOperationWrite) == 0 {
			return fmt.Errorf("topic %s may be described but not written (no WRITE among the operations the broker authorizes): %w",
				topic, sarama.ErrTopicAuthorizationFailed)
		}
		return nil
	}
	return fmt.Errorf("reading the metadata of topic %s: %w", topic, sarama.ErrUnknownTopicOrPartition)
}
