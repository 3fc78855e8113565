// Package control carries operator commands to every forwarder through a
// one-partition Kafka topic, <prefix>control: today, "drain this tier now".
// Commands are small JSON records readable with kcat; each expires, so a
// forwarder that restarts re-applies only the ones still in force.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/backoff"
)

// Drain asks the forwarders to release every record of Tier below the
// offsets in Until now, without waiting for their due time (early records go
// to their target marked ladder-early).
type Drain struct {
	Tier      string           `json:"tier"`
	Until     map[string]int64 `json:"until"` // partition (decimal) → offset
	Requested time.Time        `json:"requested"`
	Expires   time.Time        `json:"expires"`
}

// Record is the control record of d.
func (d Drain) Record(topic string) (*sarama.ProducerMessage, error) {
	v, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encoding drain command: %w", err)
	}
	return &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("drain/" + d.Tier), Value: sarama.ByteEncoder(v),
		Timestamp: d.Requested}, nil
}

// State is the commands in force, read from the control topic.
type State struct {
	mu      sync.Mutex
	drains  map[string]Drain // by tier
	changed chan struct{}
}

// NewState returns an empty state.
func NewState() *State { return &State{drains: map[string]Drain{}, changed: make(chan struct{})} }

// Changed returns a channel closed at the next change of the state.
func (s *State) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// DrainUntil is the offset below which records of tier/partition are to be
// released now, or -1.
func (s *State) DrainUntil(tier string, partition int32, now time.Time) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.drains[tier]
	if !ok || now.After(d.Expires) {
		return -1
	}
	if off, ok := d.Until[strconv.Itoa(int(partition))]; ok {
		return off
	}
	return -1
}

// Apply adds a command to the state (the newer drain of a tier replaces the older).
func (s *State) Apply(d Drain) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.drains[d.Tier]; ok && old.Requested.After(d.Requested) {
		return
	}
	s.drains[d.Tier] = d
	close(s.changed)
	s.changed = make(chan struct{})
}

// RequestDrain writes a drain command for tier that covers every record in
// it now (up to the current end offsets), in force for ttl.
func RequestDrain(client sarama.Client, producer sarama.SyncProducer, controlTopic, tier string, ttl time.Duration) (Drain, error) {
	parts, err := client.Partitions(tier)
	if err != nil {
		return Drain{}, fmt.Errorf("listing partitions of %s: %w", tier, err)
	}
	now := time.Now()
	d := Drain{Tier: tier, Until: map[string]int64{}, Requested: now, Expires: now.Add(ttl)}
	for _, p := range parts {
		end, err := client.GetOffset(tier, p, sarama.OffsetNewest)
		if err != nil {
			return Drain{}, fmt.Errorf("reading the end of %s/%d: %w", tier, p, err)
		}
		d.Until[strconv.Itoa(int(p))] = end
	}
	msg, err := d.Record(controlTopic)
	if err != nil {
		return Drain{}, err
	}
	if _, _, err := producer.SendMessage(msg); err != nil {
		return Drain{}, fmt.Errorf("writing the drain command to %s: %w", controlTopic, err)
	}
	return d, nil
}

// Follow reads the control topic from its oldest record and applies every
// command still in force, until ctx is done. A missing control topic is
// logged and retried: a ladder without one still forwards.
func (s *State) Follow(ctx context.Context, topic string, brokers []string, sc *sarama.Config, log zerolog.Logger) {
	log = log.With().Str("control_topic", topic).Logger()
	warned := false
	b := backoff.New(time.Second, 30*time.Second)
	for ctx.Err() == nil {
		err := s.follow(ctx, topic, brokers, sc, log)
		if err != nil && ctx.Err() == nil {
			if !warned {
				log.Warn().Err(err).Msg("cannot read the control topic; `ladder drain` will not reach this forwarder until it can")
				warned = true
			}
			backoff.Sleep(ctx, b.Next())
		}
	}
}

func (s *State) follow(ctx context.Context, topic string, brokers []string, sc *sarama.Config, log zerolog.Logger) error {
	c, err := sarama.NewConsumer(brokers, sc)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("consuming %s: %w", topic, err)
	}
	defer pc.AsyncClose()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-pc.Errors():
			if !ok {
				return errors.New("control consumer closed")
			}
			return err
		case m, ok := <-pc.Messages():
			if !ok {
				return errors.New("control consumer closed")
			}
			var d Drain
			if err := json.Unmarshal(m.Value, &d); err != nil || d.Tier == "" {
				log.Warn().Int64("offset", m.Offset).Msg("ignoring a control record that is not a drain command")
				continue
			}
			if time.Now().After(d.Expires) {
				continue
			}
			log.Info().Str("tier", d.Tier).Interface("until", d.Until).Time("expires", d.Expires).Msg("drain requested")
			s.Apply(d)
		}
	}
}
