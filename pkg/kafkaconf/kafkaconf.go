// Package kafkaconf builds sarama configurations from ladder's environment:
// brokers, protocol version, client identity, SASL and TLS, with producer and
// consumer settings that keep the ladder's invariants (acks=all, idempotence,
// start from the oldest offset, commit only what was marked).
package kafkaconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"
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
	// SASL authenticates to the brokers (LADDER_SASL_*); off by default.
	SASL SASL `split_words:"true"`
	// TLS encrypts and verifies the connections (LADDER_TLS_*); off by default.
	TLS TLS `split_words:"true"`
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
	if _, err := c.SASL.validate(); err != nil {
		return err
	}
	if _, err := c.TLS.config(); err != nil {
		return err
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

// Base returns a sarama configuration with the connection settings only:
// brokers' protocol version, client id, and SASL and TLS when configured.
// Every client ladder makes starts from it.
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
	if err := c.applySecurity(sc); err != nil {
		return nil, err
	}
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

// String describes the configuration for logs and errors; the password is
// never part of it.
func (c Config) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "brokers=%s version=%s client.id=%s", strings.Join(c.BrokerList(), ","), c.KafkaVersion, c.ClientID)
	if m := c.SASL.mechanism(); m != "" {
		fmt.Fprintf(&b, " sasl=%s user=%s password=%s", m, c.SASL.Username, c.SASL.Password)
		if c.SASL.PasswordFile != "" {
			fmt.Fprintf(&b, " password-file=%s", c.SASL.PasswordFile)
		}
	}
	if c.TLS.Enabled {
		b.WriteString(" tls=on")
		for _, kv := range [][2]string{{"ca", c.TLS.CAFile}, {"cert", c.TLS.CertFile}, {"key", c.TLS.KeyFile}, {"server-name", c.TLS.ServerName}} {
			if kv[1] != "" {
				fmt.Fprintf(&b, " %s=%s", kv[0], kv[1])
			}
		}
		if c.TLS.InsecureSkipVerify {
			b.WriteString(" insecure-skip-verify=true")
		}
	}
	return b.String()
}

// MarshalZerologObject logs the configuration with the password redacted:
// log.Info().Object("kafka", cfg).
func (c Config) MarshalZerologObject(e *zerolog.Event) {
	e.Strs("brokers", c.BrokerList()).Str("kafka_version", c.KafkaVersion).Str("client_id", c.ClientID)
	if m := c.SASL.mechanism(); m != "" {
		e.Str("sasl_mechanism", m).Str("sasl_username", c.SASL.Username).Stringer("sasl_password", c.SASL.Password)
	}
	if c.TLS.Enabled {
		e.Bool("tls", true).Str("tls_ca_file", c.TLS.CAFile).Str("tls_cert_file", c.TLS.CertFile).
			Str("tls_server_name", c.TLS.ServerName).Bool("tls_insecure_skip_verify", c.TLS.InsecureSkipVerify)
	}
}

// ErrNoBrokers is returned when none of the brokers could be reached.
var ErrNoBrokers = errors.New("no Kafka broker reachable")

// ErrAuth is returned (wrapped, with sarama's error) when no broker could be
// reached while SASL is configured: a failed login shows in sarama only as
// "client has run out of available brokers to talk to: EOF", because the
// broker closes the connection.
var ErrAuth = errors.New("cannot connect to Kafka with SASL")

// Explain turns sarama's terse connection errors into a message that says
// what was tried: a failed TLS handshake names the TLS settings; with SASL, a
// connection the broker closed names the user and mechanism that failed to
// log in. The original error stays in the chain for errors.Is. It never
// includes the password.
func (c Config) Explain(err error) error {
	if err == nil || !errors.Is(err, sarama.ErrOutOfBrokers) {
		return err
	}
	if errors.Is(err, ErrNoBrokers) || errors.Is(err, ErrAuth) || errors.Is(err, ErrTLS) {
		return err // explained already
	}
	brokers := strings.Join(c.BrokerList(), ",")
	mech := c.SASL.mechanism()
	switch {
	case isTLSFailure(err):
		ca := "the system's CAs"
		if c.TLS.CAFile != "" {
			ca = "LADDER_TLS_CA_FILE=" + c.TLS.CAFile
		}
		cert := "no client certificate"
		if c.TLS.CertFile != "" {
			cert = "client certificate LADDER_TLS_CERT_FILE=" + c.TLS.CertFile
		}
		return fmt.Errorf("%w with %s (trusting %s, %s): does that CA sign the brokers' certificates, for this host name (LADDER_TLS_SERVER_NAME), and does the broker accept this client?: %w",
			ErrTLS, brokers, ca, cert, err)
	case mech != "" && isAuthFailure(err):
		return fmt.Errorf("%w: SASL authentication failed for user %q with mechanism %s, or TLS/SASL settings do not match the broker (tried %s, TLS %s): %w",
			ErrAuth, c.SASL.Username, mech, brokers, onOff(c.TLS.Enabled), err)
	case c.TLS.Enabled:
		return fmt.Errorf("%w (tried %s with TLS: is the address right, is the broker up, does it speak TLS on this port, does it want SASL?): %w",
			ErrNoBrokers, brokers, err)
	}
	return fmt.Errorf("%w (tried %s: is the address right, is the broker up, do SASL/TLS settings match?): %w",
		ErrNoBrokers, brokers, err)
}

// ErrTLS is returned (wrapped, with sarama's error) when the TLS handshake
// with the brokers failed.
var ErrTLS = errors.New("TLS handshake failed")

// isAuthFailure reports whether err, with SASL configured, is a failed
// login: the broker said so (Kafka), or closed the connection during the
// handshake (kfake, and Kafka before KIP-152), which sarama reports as EOF.
// A broker that refused the connection or did not answer is not one.
func isAuthFailure(err error) bool {
	return errors.Is(err, sarama.ErrSASLAuthenticationFailed) || errors.Is(err, sarama.ErrUnsupportedSASLMechanism) ||
		errors.Is(err, sarama.ErrIllegalSASLState) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET)
}

// isTLSFailure reports whether err comes from a failed TLS handshake: a
// certificate the client does not trust, or an alert from the broker (a
// client certificate it wants or does not accept).
func isTLSFailure(err error) bool {
	var (
		verify *tls.CertificateVerificationError
		header tls.RecordHeaderError
		ua     x509.UnknownAuthorityError
		host   x509.HostnameError
		inv    x509.CertificateInvalidError
		op     *net.OpError
	)
	if errors.As(err, &verify) || errors.As(err, &header) || errors.As(err, &ua) || errors.As(err, &host) || errors.As(err, &inv) {
		return true
	}
	// crypto/tls reports an alert from the peer as a net.OpError "remote error".
	return errors.As(err, &op) && op.Op == "remote error"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// remembered holds, per bootstrap list, the last configuration Base built
// with SASL or TLS, so that Explain(err, brokers) (which has no Config) can
// name the SASL user and mechanism. It holds no password.
var remembered sync.Map // strings.Join(brokers, ",") → Config

func remember(c Config) {
	c.SASL.Password, c.SASL.PasswordFile = "", ""
	remembered.Store(strings.Join(c.BrokerList(), ","), c)
}

// Explain is Config.Explain for callers that have only the broker list: it
// uses the security settings of the last configuration built by Base for
// these brokers.
func Explain(err error, brokers []string) error {
	if err == nil {
		return nil
	}
	c := Config{Brokers: brokers}
	if r, ok := remembered.Load(strings.Join(c.BrokerList(), ",")); ok {
		c = r.(Config)
	}
	return c.Explain(err)
}
