package bench

import (
	"fmt"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ladder/ladder/pkg/kafkaconf"
)

// kgoOpts returns the options of a franz-go client for env's cluster (seed
// brokers, client id, and the TLS and SASL settings of env.Kafka), followed
// by extra. franz-go is the bench's second, independent Go client: the
// large-batch loader and the kgo raw copy use it; nothing on the
// `ladder run` path does.
func kgoOpts(env *Env, extra ...kgo.Opt) ([]kgo.Opt, error) {
	sc, err := env.Kafka.Base()
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{kgo.SeedBrokers(env.Kafka.BrokerList()...), kgo.ClientID(sc.ClientID)}
	if sc.Net.TLS.Enable && sc.Net.TLS.Config != nil {
		opts = append(opts, kgo.DialTLSConfig(sc.Net.TLS.Config.Clone()))
	}
	if sc.Net.SASL.Enable {
		user, pass := sc.Net.SASL.User, sc.Net.SASL.Password
		switch sc.Net.SASL.Mechanism {
		case sarama.SASLTypePlaintext:
			opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
		case sarama.SASLTypeSCRAMSHA256:
			opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
		case sarama.SASLTypeSCRAMSHA512:
			opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
		default:
			return nil, fmt.Errorf("franz-go client: SASL mechanism %q not supported by the bench", sc.Net.SASL.Mechanism)
		}
	}
	return append(opts, extra...), nil
}

// newKgo starts a franz-go client for env's cluster.
func newKgo(env *Env, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := kgoOpts(env, extra...)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting a franz-go client for %v: %w", env.Kafka.BrokerList(), kafkaconf.Explain(err, env.Kafka.BrokerList()))
	}
	return cl, nil
}

// kgoRecord converts a sarama message (as schedule.Record and the
// scenarios' generators build them) to a franz-go record with the same
// topic, key, value, headers and timestamp.
func kgoRecord(m *sarama.ProducerMessage) (*kgo.Record, error) {
	r := &kgo.Record{Topic: m.Topic, Timestamp: m.Timestamp}
	var err error
	if m.Key != nil {
		if r.Key, err = m.Key.Encode(); err != nil {
			return nil, fmt.Errorf("encoding a key: %w", err)
		}
	}
	if m.Value != nil {
		if r.Value, err = m.Value.Encode(); err != nil {
			return nil, fmt.Errorf("encoding a value: %w", err)
		}
	}
	if len(m.Headers) > 0 {
		r.Headers = make([]kgo.RecordHeader, len(m.Headers))
		for i, h := range m.Headers {
			r.Headers[i] = kgo.RecordHeader{Key: string(h.Key), Value: h.Value}
		}
	}
	return r, nil
}
