// Package devbroker runs the embedded Kafka broker (franz-go's kfake) that
// backs `ladder dev`, `make demo` and the integration tests. It is a real
// Kafka wire-protocol server on TCP; it is never used by `ladder run`.
//
// Where kfake behaves differently from Apache Kafka, ladder does not rely on
// the difference: README.md in this directory lists each difference and
// how ladder avoids depending on it.
package devbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ladder/ladder/pkg/tier"
)

// Config configures the embedded broker.
type Config struct {
	// Addr is the host:port to listen on; port 0 picks a free port.
	Addr string
	// DataDir keeps records and offsets on disk across restarts. Empty keeps
	// everything on the Go heap, which only suits small tests.
	DataDir string
	// Partitions is the partition count of the topics created by EnsureTopics
	// when none is given (default 6).
	Partitions int32
	// Log receives the broker's warnings and errors.
	Log zerolog.Logger
	// Users, when any, turn SASL on: clients must log in as one of them.
	// Each is a superuser (kfake enforces no ACLs on superusers).
	Users []User
	// Advertise, when set, is the host:port the broker tells clients to
	// connect to instead of its own address (tests put a TCP proxy there to
	// cut or slow the connection).
	Advertise string
	// TLS, when set, makes the broker speak TLS only, with this server
	// configuration (certificate; ClientAuth and ClientCAs for mutual TLS).
	TLS *tls.Config
	// Opts are extra kfake options (fault injection in tests).
	Opts []kfake.Opt
}

// User is a SASL login of the embedded broker.
type User struct {
	Mechanism string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	Name      string
	Password  string
}

// saslMechanisms are the mechanisms kfake serves.
var saslMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

// Broker is a running embedded broker.
type Broker struct {
	cluster    *kfake.Cluster
	addr       string
	listenAddr string
	cfg        Config
}

// DefaultDataDir is the per-user directory `ladder dev` keeps its data in:
// $XDG_STATE_HOME/ladder/dev, else ~/.local/state/ladder/dev.
func DefaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "ladder", "dev")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "ladder", "dev")
	}
	return filepath.Join(os.TempDir(), "ladder-dev")
}

// Start starts one broker listening on cfg.Addr.
func Start(cfg Config) (*Broker, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 6
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker address %q: %w", cfg.Addr, err)
	}
	// kfake listens on 127.0.0.1:<port>; listen where we were asked instead.
	var listenAddr string
	listen := func(network, _ string) (net.Listener, error) {
		ln, err := net.Listen(network, net.JoinHostPort(host, port))
		if err == nil {
			listenAddr = ln.Addr().String()
		}
		if err != nil || cfg.Advertise == "" {
			return ln, err
		}
		adv, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("advertised address %q: %w", cfg.Advertise, err)
		}
		return advertised{ln, adv}, nil
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ListenFn(listen),
		kfake.DefaultNumPartitions(int(cfg.Partitions)),
		kfake.WithLogger(logger{cfg.Log}),
		// Run retention every 10 s instead of hourly so dev tiers age like Kafka's.
		kfake.BrokerConfigs(map[string]string{"log.cleaner.backoff.ms": "10000"}),
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("creating data directory: %w", err)
		}
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if len(cfg.Users) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range cfg.Users {
			if !slices.Contains(saslMechanisms, u.Mechanism) || u.Name == "" || u.Password == "" {
				return nil, fmt.Errorf("embedded broker SASL user %q: want a mechanism of %v, a name and a password", u.Name, saslMechanisms)
			}
			opts = append(opts, kfake.Superuser(u.Mechanism, u.Name, u.Password))
		}
	}
	if cfg.TLS != nil {
		if len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil {
			return nil, errors.New("embedded broker TLS: the configuration has no server certificate")
		}
		opts = append(opts, kfake.TLS(cfg.TLS))
	}
	opts = append(opts, cfg.Opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting embedded broker on %s: %w", cfg.Addr, err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) != 1 {
		c.Close()
		return nil, fmt.Errorf("embedded broker listens on %d addresses, want 1", len(addrs))
	}
	return &Broker{cluster: c, addr: addrs[0], listenAddr: listenAddr, cfg: cfg}, nil
}

// ListenAddr is where the broker really listens (differs from Addr when
// Config.Advertise is set).
func (b *Broker) ListenAddr() string { return b.listenAddr }

// Addr is the bootstrap address, host:port.
func (b *Broker) Addr() string { return b.addr }

// Cluster exposes kfake for tests (fault injection, ApplyRetention).
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// Close stops the broker; with a data directory, its state is saved first.
func (b *Broker) Close() { b.cluster.Close() }

// EnsureTopics creates the topics that do not exist yet with partitions
// partitions (cfg.Partitions when partitions ≤ 0). sc configures the admin
// client (nil: defaults). Existing topics are left as they are.
func (b *Broker) EnsureTopics(ctx context.Context, sc *sarama.Config, partitions int32, topics ...string) error {
	if partitions <= 0 {
		partitions = b.cfg.Partitions
	}
	return EnsureTopics(ctx, []string{b.addr}, sc, partitions, topics...)
}

// EnsureLadder creates the topics of ladder l that are missing: its tiers
// and dead-letter topic with partitions partitions (cfg.Partitions when ≤ 0),
// its one-partition control topic, and the given work topics.
func (b *Broker) EnsureLadder(ctx context.Context, sc *sarama.Config, l *tier.Ladder, partitions int32, work ...string) error {
	if err := b.EnsureTopics(ctx, sc, partitions, append(append(l.Topics(), l.DLQTopic()), work...)...); err != nil {
		return err
	}
	return b.EnsureTopics(ctx, sc, 1, l.ControlTopic())
}

// EnsureTopics creates the topics missing from the cluster at brokers, each
// with the given partition count and replication factor 1. It is meant for
// development brokers; production topics are provisioned from topics/topics.yaml.
func EnsureTopics(ctx context.Context, brokers []string, sc *sarama.Config, partitions int32, topics ...string) error {
	return CreateTopics(ctx, brokers, sc, partitions, 1, topics...)
}

// CreateTopics is EnsureTopics with a replication factor (-1: the
// cluster's default.replication.factor); it waits until every partition of
// the topics has a leader (Apache Kafka elects them a moment after).
func CreateTopics(ctx context.Context, brokers []string, sc *sarama.Config, partitions int32, replicationFactor int16, topics ...string) error {
	if sc == nil {
		sc = sarama.NewConfig()
		sc.Version = sarama.V3_0_0_0
	}
	admin, err := sarama.NewClusterAdmin(brokers, sc)
	if err != nil {
		return fmt.Errorf("connecting admin client to %v: %w", brokers, err)
	}
	defer admin.Close()
	for _, t := range topics {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := admin.CreateTopic(t, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: replicationFactor}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", t, err)
		}
	}
	return waitForTopics(ctx, admin, topics)
}

// waitForTopics waits until the metadata of every topic lists its
// partitions, each with a leader.
func waitForTopics(ctx context.Context, admin sarama.ClusterAdmin, topics []string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		md, err := admin.DescribeTopics(topics)
		ready := err == nil
		for _, t := range md {
			if t.Err != sarama.ErrNoError || len(t.Partitions) == 0 {
				ready = false
			}
			for _, p := range t.Partitions {
				ready = ready && p.Err == sarama.ErrNoError && p.Leader >= 0
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("topics %v not ready after 10s: %w", topics, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// advertised is a listener that reports another address: kfake tells its
// clients to connect to the address its listener reports.
type advertised struct {
	net.Listener
	addr net.Addr
}

func (a advertised) Addr() net.Addr { return a.addr }

type logger struct{ log zerolog.Logger }

func (l logger) Logf(level kfake.LogLevel, msg string, args ...any) {
	var ev *zerolog.Event
	switch level {
	case kfake.LogLevelError:
		ev = l.log.Error()
	case kfake.LogLevelWarn:
		ev = l.log.Warn()
	default:
		return
	}
	ev.Str("component", "kfake").Msgf(msg, args...)
}
