// Package kafkaconf builds sarama configurations from ladder's environment:
// brokers, protocol version and client identity, with producer and consumer
// settings that keep the ladder's invariants (acks=all, idempotence, start
// from the oldest offset, commit only what was marked).
package kafkaconf

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// Config is the connection part of every command's configuration, read from
// LADDER_* variables by envconfig.
type Config struct {
	// Brokers is the bootstrap list, host:port, comma-separated.
	Brokers []string `split_words:"true" default:"127.0.0.1:9092" desc:"Kafka bootstrap brokers, comma-separated host:port"`
	// KafkaVersion is the lowest broker version sarama may assume.
	KafkaVersion string `split_words:"true" default:"3.0.0" desc:"lowest Kafka version of the cluster (sarama protocol version), e.g. 3.6.0"`
	// ClientID is sent to the brokers and shows in their logs and quotas.
	ClientID string `split_words:"true" default:"ladder" desc:"Kafka client.id"`
}

// FieldError names a configuration variable and says what it accepts.
type FieldError struct {
	Var    string // environment variable, e.g. LADDER_BROKERS
	Value  string
	Accept string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s=%q: accepted: %s", e.Var, e.Value, e.Accept)
}

// Validate checks the values and returns a *FieldError naming the first bad one.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return &FieldError{Var: "LADDER_BROKERS", Accept: "one or more host:port, comma-separated"}
	}
	for _, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(strings.TrimSpace(b)); err != nil || port == "" {
			return &FieldError{Var: "LADDER_BROKERS", Value: strings.Join(c.Brokers, ","), Accept: "one or more host:port, comma-separated"}
		}
	}
	if _, err := sarama.ParseKafkaVersion(c.KafkaVersion); err != nil {
		return &FieldError{Var: "LADDER_KAFKA_VERSION", Value: c.KafkaVersion, Accept: "a Kafka version such as 3.0.0 or 3.6.0"}
	}
	if c.ClientID == "" {
		return &FieldError{Var: "LADDER_CLIENT_ID", Accept: "a non-empty client id"}
	}
	return nil
}

// BrokerList returns the brokers with surrounding spaces trimmed.
func (c Config) BrokerList() []string {
	out := make([]string, 0, len(c.Brokers))
	for _, b := range c.Brokers {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// Base returns a sarama configuration with the connection settings only.
func (c Config) Base() (*sarama.Config, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	v, _ := sarama.ParseKafkaVersion(c.KafkaVersion)
	sc := sarama.NewConfig()
	sc.Version = v
	sc.ClientID = c.ClientID
	sc.Net.DialTimeout = 10 * time.Second
	sc.Metadata.RefreshFrequency = time.Minute
	// Leave the broker to create topics: the ladder never creates one by writing to it.
	sc.Metadata.AllowAutoTopicCreation = false
	return sc, nil
}

// Producer returns a configuration for a producer that never loses or
// reorders a record: acks=all, idempotent, one request in flight per broker,
// successes reported so offsets can be marked after the acknowledgement.
func (c Config) Producer() (*sarama.Config, error) {
	sc, err := c.Base()
	if err != nil {
		return nil, err
	}
	ProducerDefaults(sc)
	return sc, nil
}

// ProducerDefaults applies ladder's producer settings to sc.
func ProducerDefaults(sc *sarama.Config) {
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 250 * time.Millisecond
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Partitioner = NewMurmur2Partitioner
	// Flush thresholds stay zero: a batch leaves as soon as the previous
	// request to its broker is answered, so records batch under load without
	// waiting when idle. (Any non-zero Flush.Bytes or Flush.Messages makes
	// sarama hold records until the threshold is reached.)
}

// Consumer returns a configuration for a consumer group member that starts
// from the oldest offset of a partition the group never committed (a new
// ladder forwards what is already in its tiers) and commits marked offsets
// every second.
func (c Config) Consumer() (*sarama.Config, error) {
	sc, err := c.Base()
	if err != nil {
		return nil, err
	}
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = time.Second
	sc.Consumer.Return.Errors = true
	sc.Consumer.MaxWaitTime = 250 * time.Millisecond
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	// A JoinGroup answer can take up to the rebalance timeout, but sarama
	// waits only Net.ReadTimeout for it (the Java client extends its request
	// timeout). With a rebalance timeout above the read timeout, members
	// time out, rejoin, restart the broker's rebalance timer and the group
	// never settles while a dead member is still listed: keep it below.
	sc.Consumer.Group.Rebalance.Timeout = 20 * time.Second
	if sc.Net.ReadTimeout <= sc.Consumer.Group.Rebalance.Timeout {
		sc.Net.ReadTimeout = sc.Consumer.Group.Rebalance.Timeout + 10*time.Second
	}
	return sc, nil
}

// ErrNoBrokers is returned when none of the brokers could be reached.
var ErrNoBrokers = errors.New("no Kafka broker reachable")

// Explain turns sarama's terse connection errors into a message that says
// what was tried. The original error stays in the chain for errors.Is.
func Explain(err error, brokers []string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sarama.ErrOutOfBrokers) {
		return fmt.Errorf("%w (tried %s: is the address right, is the broker up, do SASL/TLS settings match?): %w",
			ErrNoBrokers, strings.Join(brokers, ","), err)
	}
	return err
}
