//go:build !nodev

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/devbroker"
	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/ops"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/workahead"
)

func init() {
	register(command{name: "dev", summary: "run an embedded broker with the tier topics and the forwarders", order: 20, run: devCmd})
}

// devCmd is `ladder dev`: the embedded broker (kfake) with the tier topics,
// the dead-letter topic and the work topics, and the forwarders. With
// --forwarders=false it runs the broker alone, for a separate `ladder run`.
// Its metrics listen on the broker's host (loopback by default) unless
// LADDER_HTTP_ADDR or --http-addr say otherwise. When the forwarders or the
// demo stop on an error, ladder dev stops too and exits 1 with that error.
func devCmd(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	var forwarders, demo bool
	cfg, f, err := parseForwarderFlags("dev", "dev [flags]", args, stderr, func(f *flags, c *Config) {
		f.str(&c.DevAddr, "addr", "LADDER_DEV_ADDR", "address of the embedded broker")
		f.str(&c.DevDataDir, "data-dir", "LADDER_DEV_DATA_DIR", "data directory of the embedded broker")
		f.int(&c.DevPartitions, "partitions", "LADDER_DEV_PARTITIONS", "partitions of the created topics")
		f.list(&c.DevTopics, "topics", "LADDER_DEV_TOPICS", "work topics to create, comma-separated")
		f.str(&c.DevTLSCertFile, "broker-tls-cert", "LADDER_DEV_TLS_CERT_FILE", "server certificate of the embedded broker: it speaks TLS only")
		f.str(&c.DevTLSKeyFile, "broker-tls-key", "LADDER_DEV_TLS_KEY_FILE", "private key of that certificate")
		// No backquotes in usage: the flag package would print the quoted words as the value's name.
		f.BoolVar(&forwarders, "forwarders", true, "run the forwarders (false: the broker alone, for a separate \"ladder run\")")
		if _, set := os.LookupEnv("LADDER_HTTP_ADDR"); !set {
			h := f.Lookup("http-addr")
			h.DefValue, h.Usage = devHTTPAddr(c.DevAddr), h.Usage+"; ladder dev: port 8080 on the host of --addr unless set"
		}
		// The shared connection flags name an external cluster: dev's is its own.
		if b := f.Lookup("brokers"); b != nil {
			b.DefValue, b.Usage = "", "not used: ladder dev runs its own broker, on --addr"
		}
		if d := f.Lookup("data-dir"); d != nil {
			d.DefValue = devbroker.DefaultDataDir()
		}
		if w := f.Lookup("workahead"); w != nil {
			w.Usage += "; ladder dev: on unless set"
		}
		f.BoolVar(&demo, "demo", false, "run demo workers on two lanes (work-fast, work-slow) with seeded messages and print a live status; "+
			"tiers "+demoTiers+" and a temporary data directory unless given")
	})
	if err != nil {
		return err
	}
	if flagSet(f, "brokers") {
		return usageError{errors.New("--brokers names an external cluster, but ladder dev runs its own broker: give its address with --addr " +
			"(or run ladder run --brokers against your cluster)")}
	}
	if demo && !given(f, "topics", "LADDER_DEV_TOPICS") {
		cfg.DevTopics = demoLanes
	}
	if demo && !given(f, "tiers", "LADDER_TIERS") {
		cfg.Tiers = demoTiers
	}
	// Metrics beside the broker: on loopback unless the broker is elsewhere.
	if !given(f, "http-addr", "LADDER_HTTP_ADDR") {
		cfg.HTTPAddr = devHTTPAddr(cfg.DevAddr)
	}
	// Work-ahead is on in dev unless set, watching each work topic T with group T-workers.
	if _, set := os.LookupEnv("LADDER_WORKAHEAD_ENABLED"); !set && !flagSet(f, "workahead") {
		cfg.WorkaheadEnabled = true
	}
	if cfg.WorkaheadLanes == "" {
		var lanes []string
		for _, t := range cfg.DevTopics {
			lanes = append(lanes, t+"="+t+"-workers")
		}
		cfg.WorkaheadLanes = strings.Join(lanes, ",")
	}
	l, log, err := checkForwarder(cfg, f, stderr)
	if err != nil {
		return err
	}
	if cfg.DevPartitions < 1 || cfg.DevPartitions > 1000 {
		return usageError{f.explain(&kafkaconf.FieldError{Var: "LADDER_DEV_PARTITIONS", Value: fmt.Sprint(cfg.DevPartitions), Accept: "a whole number from 1 to 1000"})}
	}
	if len(cfg.DevTopics) == 0 {
		return usageError{f.explain(&kafkaconf.FieldError{Var: "LADDER_DEV_TOPICS", Accept: "one or more topic names, comma-separated"})}
	}
	for _, t := range cfg.DevTopics {
		if err := tier.ValidateTopic(t); err != nil {
			return usageError{f.explain(&kafkaconf.FieldError{Var: "LADDER_DEV_TOPICS", Value: strings.Join(cfg.DevTopics, ","), Accept: "topic names, comma-separated: " + err.Error()})}
		}
	}
	dataDir, dataNote := cfg.DevDataDir, ""
	switch {
	case dataDir != "":
	case demo:
		// The demo's data are of no use after it: a temporary directory, removed at exit.
		if dataDir, err = os.MkdirTemp("", "ladder-demo-"); err != nil {
			return fmt.Errorf("creating the demo's data directory: %w", err)
		}
		defer os.RemoveAll(dataDir)
		dataNote = ", removed at exit"
	default:
		dataDir = devbroker.DefaultDataDir()
	}
	bc := devbroker.Config{Addr: cfg.DevAddr, DataDir: dataDir, Partitions: int32(cfg.DevPartitions), Log: log}
	security, err := devSecurity(cfg, &bc)
	if err != nil {
		return usageError{f.explain(err)}
	}

	b, err := devbroker.Start(bc)
	if err != nil {
		return withHint(err, "choose another address with --addr or LADDER_DEV_ADDR (make demo: DEMO_BROKER_ADDR=127.0.0.1:9093)")
	}
	defer b.Close()
	cfg.Brokers = []string{b.Addr()}
	sc, err := cfg.Config.Base()
	if err != nil {
		return usageError{f.explain(err)}
	}
	if err := b.EnsureLadder(ctx, sc, l, 0, cfg.DevTopics...); err != nil {
		return kafkaconf.Explain(err, cfg.BrokerList())
	}

	const httpHint = "choose another metrics address with --http-addr or LADDER_HTTP_ADDR (make demo: DEMO_METRICS_ADDR=127.0.0.1:8081), or turn metrics off with --http-addr=''"
	// The metrics address is bound before the banner, which names it.
	var httpLn net.Listener
	if forwarders && cfg.HTTPAddr != "" {
		if httpLn, err = ops.Bind(cfg.HTTPAddr); err != nil {
			return withHint(err, httpHint)
		}
	}
	work := cfg.DevTopics[0]
	now := time.Now()
	enter, _ := l.Route(now, now.Add(90*time.Second))
	self := selfCommand()
	metrics := "off (LADDER_HTTP_ADDR is empty)"
	switch {
	case !forwarders:
		metrics = "none here (served by the separate ladder run)"
	case httpLn != nil:
		metrics = "http://" + httpLn.Addr().String() + "/metrics (and /healthz, /readyz)"
	}
	fmt.Fprintf(stdout, `ladder dev: embedded Kafka broker on %[1]s (data in %[2]s%[12]s)
  tiers         %[3]s
  dead letters  %[4]s
  work topics   %[5]s
  forwarders    %[6]s
  metrics       %[13]s
  work-ahead    %[10]s
  security      %[11]s

  watch %[7]s:     kcat -C -b %[1]s -t %[7]s -f '%%T %%k %%h %%s\n'
  schedule (90s): %[15]s schedule --brokers %[1]s --tiers %[8]s --topic %[7]s --delay 90s hello
  with kcat:      echo hello | kcat -P -b %[1]s -t %[9]s -H ladder-target=%[7]s -H ladder-due=$(( $(date +%%s%%3N) + 90000 ))
  inspect:        %[15]s inspect --brokers %[1]s --tiers %[8]s --workahead-lanes %[14]s

`, b.Addr(), dataDir, strings.Join(l.Topics(), " "), l.DLQTopic(), strings.Join(cfg.DevTopics, " "),
		map[bool]string{true: "running (group " + cfg.Group + ")", false: "off: start " + self + " run --brokers " + b.Addr()}[forwarders],
		work, l.String(), enter.Topic, devWorkAhead(cfg, sc, forwarders), security, dataNote, metrics, cfg.WorkaheadLanes, self)

	// The first of the forwarders and the demo to stop on an error stops ladder dev.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var failed error
	var once sync.Once
	fail := func(err error) { once.Do(func() { failed = err; stop() }) }
	reg := ops.NewRegistry(version)
	if forwarders {
		wg.Go(func() {
			// Refresh pending counts often: a developer watches them.
			fast := func(c *forward.Config) { c.HealthInterval = 2 * time.Second }
			err := devForwarder(ctx, cfg, l, log, reg, httpLn, fast)
			if err == nil && ctx.Err() == nil {
				err = errors.New("returned without an error before ladder dev stopped")
			}
			if err != nil {
				fail(fmt.Errorf("forwarder stopped: %w", err))
			}
		})
	}
	if demo {
		wg.Go(func() {
			if err := runDemo(ctx, cfg, l, reg, stdout, isTerminal(stdout), log); err != nil && ctx.Err() == nil {
				fail(fmt.Errorf("demo stopped: %w", err))
			}
		})
	}
	<-ctx.Done()
	wg.Wait()
	if failed != nil {
		fmt.Fprintln(stdout, "ladder dev: stopped, see the error below")
		return failed
	}
	fmt.Fprintln(stdout, "ladder dev: stopping")
	return nil
}

// devForwarder runs ladder dev's forwarders: runForwarder, as in ladder
// run (a test makes it fail).
var devForwarder = runForwarder

// selfCommand is how the banner's hints name this binary: "ladder" when
// that is what PATH finds, else the path it runs from, relative to the
// working directory when under it (make demo runs bin/ladder, which is on
// no PATH before make install).
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "ladder"
	}
	if p, err := exec.LookPath("ladder"); err == nil {
		if a, err := os.Stat(p); err == nil {
			if b, err := os.Stat(exe); err == nil && os.SameFile(a, b) {
				return "ladder"
			}
		}
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && filepath.IsLocal(rel) {
			return "./" + filepath.ToSlash(rel)
		}
	}
	return exe
}

// given reports whether the flag name was on the command line or the
// environment variable env is set (even empty).
func given(f *flags, name, env string) bool {
	_, set := os.LookupEnv(env)
	return set || flagSet(f, name)
}

// devHTTPAddr is the default metrics address of ladder dev: port 8080 on the
// broker's host (127.0.0.1 unless --addr says otherwise), never every interface
// by accident.
func devHTTPAddr(brokerAddr string) string {
	host, _, err := net.SplitHostPort(brokerAddr)
	if err != nil || host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, "8080")
}

// withHint adds hint to an "address already in use" error.
func withHint(err error, hint string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w; %s", err, hint)
	}
	return err
}

// devWorkAhead describes work-ahead for the banner: its rule and each lane's
// state now, read as the forwarders read it.
func devWorkAhead(cfg Config, sc *sarama.Config, forwarders bool) string {
	switch {
	case !forwarders:
		return "decided by the ladder run you start (LADDER_WORKAHEAD_ENABLED, LADDER_WORKAHEAD_LANES)"
	case !cfg.WorkaheadEnabled:
		return "off: nothing comes back early"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "on: a lane's earliest held messages leave early (ladder-early) only while its worker group\n"+
		"                has members and its lag is under %d. Now:", cfg.WorkaheadLagThreshold)
	lanes, err := workahead.ParseLanes(cfg.WorkaheadLanes)
	if err != nil {
		return b.String() + " " + err.Error()
	}
	r, err := workahead.NewReader(cfg.BrokerList(), sc, lanes)
	if err != nil {
		return b.String() + " " + err.Error()
	}
	defer r.Close()
	obs := r.Observe()
	for _, topic := range slices.Sorted(maps.Keys(lanes)) {
		state, reason := workahead.Classify(obs[topic], topic, lanes[topic], cfg.WorkaheadLagThreshold)
		fmt.Fprintf(&b, "\n                %s %s: %s", topic, state, reason)
	}
	return b.String()
}

// devSecurity makes the embedded broker require what the clients are
// configured with: the LADDER_SASL_* user, and TLS with the
// LADDER_DEV_TLS_* certificate when LADDER_TLS_ENABLED is true. It returns
// a description for the banner.
func devSecurity(cfg Config, bc *devbroker.Config) (string, error) {
	if err := cfg.Config.Validate(); err != nil {
		return "", err
	}
	var parts []string
	switch {
	case (cfg.DevTLSCertFile == "") != (cfg.DevTLSKeyFile == ""):
		return "", &kafkaconf.FieldError{Var: "LADDER_DEV_TLS_KEY_FILE", Value: cfg.DevTLSKeyFile, Accept: "a PEM key together with LADDER_DEV_TLS_CERT_FILE (both or neither)"}
	case cfg.DevTLSCertFile != "" && !cfg.TLS.Enabled:
		return "", &kafkaconf.FieldError{Var: "LADDER_TLS_ENABLED", Value: "false", Accept: "true with LADDER_DEV_TLS_CERT_FILE, and LADDER_TLS_CA_FILE naming the CA of that certificate, so the forwarders connect"}
	case cfg.DevTLSCertFile == "" && cfg.TLS.Enabled:
		return "", &kafkaconf.FieldError{Var: "LADDER_DEV_TLS_CERT_FILE", Accept: "a PEM server certificate for the embedded broker when LADDER_TLS_ENABLED=true"}
	case cfg.DevTLSCertFile != "":
		cert, err := tls.LoadX509KeyPair(cfg.DevTLSCertFile, cfg.DevTLSKeyFile)
		if err != nil {
			return "", &kafkaconf.FieldError{Var: "LADDER_DEV_TLS_CERT_FILE", Value: cfg.DevTLSCertFile,
				Accept: "a readable PEM certificate matching the key in " + cfg.DevTLSKeyFile + " (" + err.Error() + ")"}
		}
		bc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		parts = append(parts, "TLS only")
	}
	if cfg.SASL.Mechanism != "" {
		sc, err := cfg.Config.Base()
		if err != nil {
			return "", err
		}
		s := sc.Net.SASL
		bc.Users = []devbroker.User{{Mechanism: string(s.Mechanism), Name: s.User, Password: s.Password}}
		parts = append(parts, fmt.Sprintf("SASL %s, user %s (from LADDER_SASL_*)", s.Mechanism, s.User))
	}
	if len(parts) == 0 {
		return "none (plaintext, no SASL)", nil
	}
	return strings.Join(parts, ", "), nil
}
