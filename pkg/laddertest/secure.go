package laddertest

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ladder/ladder/pkg/devbroker"
	"github.com/ladder/ladder/pkg/kafkaconf"
)

// Secure is what a secured test broker requires of its clients.
type Secure struct {
	// Users turn SASL on; the client configuration logs in as the first.
	Users []devbroker.User
	// PKI turns TLS on with its server certificate; the client
	// configuration trusts its CA.
	PKI *PKI
	// Mutual makes the broker require a client certificate signed by the
	// PKI's CA; the client configuration presents one.
	Mutual bool
	// LogTo also receives the broker's log (besides the test log), for
	// tests that search what was logged.
	LogTo io.Writer
	// Opts are extra kfake options (a counting listener, fault injection).
	Opts []kfake.Opt
}

// SecureBroker starts a broker that requires sec, with topics created
// (partitions each), and returns it with a client configuration that
// satisfies it; the broker stops when the test ends. It is the in-memory
// embedded broker, or with LADDER_TEST_KAFKA=real an Apache Kafka broker of
// the test's own (its log then goes to sec.LogTo too, for secret scans).
func SecureBroker(tb testing.TB, sec Secure, partitions int32, topics ...string) (*TestBroker, kafkaconf.Config) {
	tb.Helper()
	checkSwitch(tb)
	var b *TestBroker
	if Real() {
		c := Cluster(tb, 1, securityFor(tb, sec))
		if sec.LogTo != nil {
			tb.Cleanup(func() { c.WriteLogs(sec.LogTo) }) // runs before the cluster stops
		}
		b = &TestBroker{addr: c.Node(1).Addr, real: c}
	} else {
		cfg := devbroker.Config{Addr: "127.0.0.1:0", Partitions: partitions, Log: Logger(tb), Users: sec.Users, Opts: sec.Opts}
		if sec.LogTo != nil {
			cfg.Log = LoggerTo(tb, sec.LogTo)
		}
		if sec.PKI != nil {
			cfg.TLS = sec.PKI.ServerTLS(sec.Mutual)
		}
		fake, err := devbroker.Start(cfg)
		if err != nil {
			tb.Fatalf("starting secured embedded broker: %v", err)
		}
		tb.Cleanup(fake.Close)
		b = &TestBroker{addr: fake.Addr(), fake: fake}
	}
	k := Kafka(b.Addr())
	if len(sec.Users) > 0 {
		u := sec.Users[0]
		k.SASL = kafkaconf.SASL{Mechanism: u.Mechanism, Username: u.Name, Password: kafkaconf.Secret(u.Password)}
	}
	if sec.PKI != nil {
		k.TLS = kafkaconf.TLS{Enabled: true, CAFile: sec.PKI.CAFile}
		if sec.Mutual {
			k.TLS.CertFile, k.TLS.KeyFile = sec.PKI.ClientCertFile, sec.PKI.ClientKeyFile
		}
	}
	sc, err := k.Base()
	if err != nil {
		tb.Fatalf("client configuration of the secured broker: %v", err)
	}
	b.sc = sc
	if len(topics) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.EnsureTopics(ctx, sc, partitions, topics...); err != nil {
			tb.Fatalf("creating topics: %v", err)
		}
	}
	return b, k
}

// LoggerTo is Logger that also writes every event, debug level included,
// to w: tests that search the log see all of it.
func LoggerTo(tb testing.TB, w io.Writer) zerolog.Logger {
	level := zerolog.WarnLevel
	if testDebug() {
		level = zerolog.DebugLevel
	}
	testLog := &zerolog.FilteredLevelWriter{Writer: zerolog.LevelWriterAdapter{Writer: zerolog.NewTestWriter(tb)}, Level: level}
	return zerolog.New(zerolog.MultiLevelWriter(testLog, w)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}
