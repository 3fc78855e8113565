package kafkaconf_test

// Tests against the embedded broker with SASL and TLS enabled: the right
// credentials carry a message through the ladder end to end (schedule,
// forward, arrive), wrong ones fail with a clear error and no retry storm,
// and no password appears in anything the tests print or log.

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ladder/ladder/pkg/devbroker"
	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/inspect"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/topics"
	"github.com/ladder/ladder/pkg/worker"
)

// skipShort skips a test that needs a broker under -short (make test-short).
func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the embedded broker; -short runs unit tests only")
	}
}

var mechanisms = []string{kafkaconf.MechanismPlain, kafkaconf.MechanismSCRAMSHA256, kafkaconf.MechanismSCRAMSHA512}

func secureLadder(t *testing.T) *tier.Ladder {
	t.Helper()
	l, err := tier.Parse("1s,3s", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func ladderTopics(l *tier.Ladder) []string {
	return append(append(l.Topics(), l.DLQTopic(), l.ControlTopic()), "work")
}

// startForwarder runs a forwarder configured by k until the test ends.
func startForwarder(t *testing.T, k kafkaconf.Config, l *tier.Ladder, scan *laddertest.SecretScan) *forward.Forwarder {
	t.Helper()
	f, err := forward.New(forward.Config{Ladder: l, Group: "secure", Kafka: k, ResumeLead: 100 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second, Log: scan.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("forwarder: %v", err)
		}
	})
	return f
}

// roundTrip schedules one message with k, due in a second, and waits for
// it on the work topic (read with k too).
func roundTrip(t *testing.T, k kafkaconf.Config, l *tier.Ladder, scan *laddertest.SecretScan, key string) {
	t.Helper()
	startForwarder(t, k, l, scan)
	work := laddertest.CollectWith(t, k, "work")
	s, err := schedule.New(schedule.Config{Ladder: l, Kafka: k, Log: scan.Logger(t)})
	if err != nil {
		t.Fatalf("scheduler with the right credentials: %v", err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	due := time.Now().Add(time.Second)
	if err := s.Schedule(ctx, schedule.Message{Topic: "work", Key: []byte(key), Value: []byte("secret-free payload"), At: due}); err != nil {
		t.Fatalf("scheduling: %v", err)
	}
	recs := work.WaitDistinct(t, 1, 30*time.Second)
	r := recs[0]
	env, err := envelope.Decode(r.HeaderList)
	if string(r.Key) != key || err != nil || env.Hops < 1 || r.Timestamp.Before(due.Truncate(time.Millisecond)) {
		t.Errorf("arrived: key %q headers %v (%v), at %s for due %s", r.Key, r.Headers, err, r.Timestamp, due)
	}
	scan.Printf("%s arrived after %d hops, %s after due", r.Key, env.Hops, r.At.Sub(due).Round(time.Millisecond))
}

// connect opens a client with k and returns its explained error.
func connect(k kafkaconf.Config) error {
	sc, err := k.Base()
	if err != nil {
		return err
	}
	c, err := sarama.NewClient(k.BrokerList(), sc)
	if err != nil {
		return k.Explain(err)
	}
	return c.Close()
}

// wantErr checks err is target, says each of says, and records it in the scan.
func wantErr(t *testing.T, scan *laddertest.SecretScan, what string, err, target error, says ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: connected, want %v", what, target)
		return
	}
	scan.Printf("%s: %v", what, err)
	if !errors.Is(err, target) {
		t.Errorf("%s: %v, want %v", what, err, target)
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: %q lacks %q", what, err, s)
		}
	}
}

// TestSASL: for each mechanism, a broker that requires it; the right user
// and password carry a message through the ladder; a wrong password, an
// unknown user and another mechanism fail at once with the clear error in
// every one-shot client (schedule, inspect, topics).
func TestSASL(t *testing.T) {
	skipShort(t)
	for _, mech := range mechanisms {
		t.Run(mech, func(t *testing.T) {
			right, wrong := "pw-"+mech+"-Right-Q8z2", "pw-"+mech+"-Wrong-K4v7"
			scan := laddertest.ScanForSecrets(t, right, wrong)
			l := secureLadder(t)
			_, k := laddertest.SecureBroker(t, laddertest.Secure{Users: []devbroker.User{{Mechanism: mech, Name: "alice", Password: right}}, LogTo: scan},
				2, ladderTopics(l)...)
			roundTrip(t, k, l, scan, "via-"+mech)

			bad := k
			bad.SASL.Password = kafkaconf.Secret(wrong)
			says := []string{`SASL authentication failed for user "alice" with mechanism ` + mech, "TLS/SASL settings do not match", k.Brokers[0]}
			start := time.Now()
			_, err := schedule.New(schedule.Config{Ladder: l, Kafka: bad, Log: scan.Logger(t)})
			wantErr(t, scan, "schedule with a wrong password", err, kafkaconf.ErrAuth, says...)
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("schedule took %s to fail: want at once", d)
			}
			_, err = inspect.New(inspect.Config{Ladder: l, Kafka: bad, Log: scan.Logger(t)})
			wantErr(t, scan, "inspect with a wrong password", err, kafkaconf.ErrAuth, says...)
			_, err = topics.NewAdmin(bad, scan.Logger(t))
			wantErr(t, scan, "topics with a wrong password", err, kafkaconf.ErrAuth, says...)

			unknown := k
			unknown.SASL.Username = "mallory"
			wantErr(t, scan, "unknown user", connect(unknown), kafkaconf.ErrAuth, `user "mallory"`)
			other := k
			other.SASL.Mechanism = mechanisms[(indexOf(mech)+1)%len(mechanisms)]
			wantErr(t, scan, "other mechanism", connect(other), kafkaconf.ErrAuth, "mechanism "+other.SASL.Mechanism)
			none := k
			none.SASL = kafkaconf.SASL{}
			wantErr(t, scan, "no SASL", connect(none), kafkaconf.ErrNoBrokers, "do SASL/TLS settings match")
		})
	}
}

func indexOf(mech string) int {
	for i, m := range mechanisms {
		if m == mech {
			return i
		}
	}
	return -1
}

// TestTLS: a broker that speaks TLS only, with server verification against
// the CA file, with mutual TLS, and with SCRAM over mutual TLS (what a
// production cluster runs): the right settings carry a message through the
// ladder (and through a worker of the SDK); an unknown CA, a wrong server name, a missing or foreign client
// certificate and a plaintext client fail with a clear error.
func TestTLS(t *testing.T) {
	skipShort(t)
	pki := laddertest.NewPKI(t)
	foreign := laddertest.NewPKI(t)

	t.Run("server verification", func(t *testing.T) {
		scan := laddertest.ScanForSecrets(t, pki.Secrets()...)
		l := secureLadder(t)
		b, k := laddertest.SecureBroker(t, laddertest.Secure{PKI: pki, LogTo: scan}, 2, ladderTopics(l)...)
		roundTrip(t, k, l, scan, "via-tls")

		named := k
		named.TLS.ServerName = pki.ServerName
		if err := connect(named); err != nil {
			t.Errorf("LADDER_TLS_SERVER_NAME=%s (in the certificate): %v", pki.ServerName, err)
		}
		wrongName := k
		wrongName.TLS.ServerName = "kafka.elsewhere.test"
		wantErr(t, scan, "wrong server name", connect(wrongName), kafkaconf.ErrTLS, "LADDER_TLS_SERVER_NAME", "kafka.elsewhere.test")
		unknownCA := k
		unknownCA.TLS.CAFile = foreign.CAFile
		wantErr(t, scan, "unknown CA", connect(unknownCA), kafkaconf.ErrTLS, "LADDER_TLS_CA_FILE="+foreign.CAFile, "certificate signed by unknown authority")
		_, err := schedule.New(schedule.Config{Ladder: l, Kafka: unknownCA, Log: scan.Logger(t)})
		wantErr(t, scan, "schedule trusting an unknown CA", err, kafkaconf.ErrTLS, "LADDER_TLS_CA_FILE")
		systemCAs := k
		systemCAs.TLS.CAFile = ""
		wantErr(t, scan, "system CAs", connect(systemCAs), kafkaconf.ErrTLS, "the system's CAs")
		wantErr(t, scan, "plaintext client", connect(laddertest.Kafka(b.Addr())), kafkaconf.ErrNoBrokers, "do SASL/TLS settings match")

		insecure := k
		insecure.TLS = kafkaconf.TLS{Enabled: true, InsecureSkipVerify: true}
		if err := connect(insecure); err != nil {
			t.Errorf("insecure-skip-verify: %v", err)
		}
		if len(insecure.Warnings()) != 1 {
			t.Errorf("insecure-skip-verify gives no warning")
		}
	})

	t.Run("mutual", func(t *testing.T) {
		scan := laddertest.ScanForSecrets(t, append(pki.Secrets(), foreign.Secrets()...)...)
		l := secureLadder(t)
		_, k := laddertest.SecureBroker(t, laddertest.Secure{PKI: pki, Mutual: true, LogTo: scan}, 2, ladderTopics(l)...)
		roundTrip(t, k, l, scan, "via-mtls")

		noCert := k
		noCert.TLS.CertFile, noCert.TLS.KeyFile = "", ""
		err := connect(noCert)
		wantErr(t, scan, "no client certificate", err, kafkaconf.ErrTLS, "no client certificate")
		// The broker's alert: TLS 1.3's certificate_required from Go and from
		// Java 17.0.21 on, bad_certificate from older Java updates.
		if err != nil && !strings.Contains(err.Error(), "certificate required") && !strings.Contains(err.Error(), "bad certificate") {
			t.Errorf("no client certificate: %q carries neither alert, certificate required nor bad certificate", err)
		}
		foreignCert := k
		foreignCert.TLS.CertFile, foreignCert.TLS.KeyFile = foreign.ClientCertFile, foreign.ClientKeyFile
		wantErr(t, scan, "client certificate of another CA", connect(foreignCert), kafkaconf.ErrTLS, foreign.ClientCertFile)
	})

	t.Run("SCRAM over mutual TLS", func(t *testing.T) {
		right, wrong := "pw-SASL_SSL-Right-Mn3c", "pw-SASL_SSL-Wrong-Tb6w"
		scan := laddertest.ScanForSecrets(t, append(pki.Secrets(), right, wrong)...)
		l := secureLadder(t)
		_, k := laddertest.SecureBroker(t, laddertest.Secure{PKI: pki, Mutual: true, LogTo: scan,
			Users: []devbroker.User{{Mechanism: kafkaconf.MechanismSCRAMSHA512, Name: "svc-ladder", Password: right}}}, 2, ladderTopics(l)...)
		roundTrip(t, k, l, scan, "via-sasl-ssl")
		workerRoundTrip(t, k, l, scan)

		bad := k
		bad.SASL.Password = kafkaconf.Secret(wrong)
		wantErr(t, scan, "wrong password over TLS", connect(bad), kafkaconf.ErrAuth, `user "svc-ladder"`, "TLS on")
		noTLS := k
		noTLS.TLS = kafkaconf.TLS{}
		wantErr(t, scan, "SASL without TLS", connect(noTLS), kafkaconf.ErrAuth, "TLS off")
	})
}

// workerRoundTrip runs a worker (the SDK) configured by k on the work
// topic: it reschedules the message it finds there once, through the
// ladder, and sees it again.
func workerRoundTrip(t *testing.T, k kafkaconf.Config, l *tier.Ladder, scan *laddertest.SecretScan) {
	t.Helper()
	var deliveries atomic.Int64
	again := make(chan struct{})
	w, err := worker.New(worker.Config{Kafka: k, Ladder: l, ShutdownTimeout: 5 * time.Second, Log: scan.Logger(t)},
		worker.Lane{Topics: []string{"work"}, Group: "secure-workers", Handler: func(context.Context, worker.Message) worker.Result {
			switch deliveries.Add(1) {
			case 1:
				return worker.Reschedule(time.Second)
			case 2:
				close(again)
			}
			return worker.Done()
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	select {
	case <-again:
		scan.Printf("worker: rescheduled through the secured ladder and handled again")
	case <-time.After(30 * time.Second):
		t.Fatalf("worker handled %d deliveries in 30s, want the message back after its reschedule", deliveries.Load())
	}
}

// countingListener counts the connections the broker accepted.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// TestWrongCredentialsNoRetryStorm runs a forwarder with a wrong password
// for ten seconds: it logs the clear error a bounded number of times (its
// connection back-off doubles from 1s), opens a bounded number of
// connections, reports not ready with the reason, and stops cleanly.
func TestWrongCredentialsNoRetryStorm(t *testing.T) {
	skipShort(t)
	laddertest.NeedsEmbedded(t, "counts the connections the broker accepts with a kfake listener")
	right, wrong := "pw-storm-Right-Hx5n", "pw-storm-Wrong-Jr8d"
	scan := laddertest.ScanForSecrets(t, right, wrong)
	var conns atomic.Int64
	listen := func(network, _ string) (net.Listener, error) {
		ln, err := net.Listen(network, "127.0.0.1:0")
		return countingListener{ln, &conns}, err
	}
	l := secureLadder(t)
	_, k := laddertest.SecureBroker(t, laddertest.Secure{LogTo: scan, Opts: []kfake.Opt{kfake.ListenFn(listen)},
		Users: []devbroker.User{{Mechanism: kafkaconf.MechanismSCRAMSHA512, Name: "alice", Password: right}}}, 2, ladderTopics(l)...)
	k.SASL.Password = kafkaconf.Secret(wrong)
	before := conns.Load()

	f, err := forward.New(forward.Config{Ladder: l, Group: "storm", Kafka: k, Log: scan.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f.Run(ctx) }()
	const window = 10 * time.Second
	failures := func() int { return strings.Count(scan.String(), `"message":"cannot connect to Kafka"`) }
	laddertest.Eventually(t, 5*time.Second, func() bool { return failures() >= 1 }, "no connection failure logged")
	readyErr := f.Ready()
	// The rate is what is measured: watch the whole window.
	time.Sleep(window - time.Since(start))
	n, opened := failures(), conns.Load()-before
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("forwarder stopped with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("forwarder did not stop within 5s of its context ending")
	}
	t.Logf("in %s: %d failed connection attempts logged, %d connections opened; readiness: %v", window, n, opened, readyErr)
	if n < 2 || n > 5 {
		t.Errorf("%d failed connection attempts logged in %s, want 2 to 5 (back-off 1s, 2s, 4s, ...)", n, window)
	}
	// Each attempt is one sarama client: a first try and Metadata.Retry.Max
	// (3) retries; one more attempt may be under way.
	if opened > int64(4*(n+1)) {
		t.Errorf("%d connections in %s for %d attempts: a retry storm", opened, window, n)
	}
	for _, line := range strings.Split(scan.String(), "\n") {
		if strings.Contains(line, `"message":"cannot connect to Kafka"`) &&
			!strings.Contains(line, `SASL authentication failed for user \"alice\" with mechanism SCRAM-SHA-512`) {
			t.Errorf("logged without the clear reason: %s", line)
		}
	}
	if !errors.Is(readyErr, forward.ErrNotReady) || !strings.Contains(readyErr.Error(), "brokers not answering") {
		t.Errorf("readiness with wrong credentials: %v", readyErr)
	}
	scan.Printf("readiness: %v", readyErr)
}
