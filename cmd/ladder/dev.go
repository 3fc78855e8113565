//go:build !nodev

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ladder/ladder/pkg/devbroker"
	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/ops"
	"github.com/ladder/ladder/pkg/tier"
)

func init() {
	register(command{name: "dev", summary: "run an embedded broker with the tier topics and the forwarders", order: 20, run: devCmd})
}

// devCmd is `ladder dev`: the embedded broker (kfake) with the tier topics,
// the dead-letter topic and the work topics, and the forwarders. With
// --forwarders=false it runs the broker alone, for a separate `ladder run`.
func devCmd(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	var forwarders, demo bool
	cfg, f, err := parseForwarderFlags("dev", "dev [flags]", args, stderr, func(f *flags, c *Config) {
		f.str(&c.DevAddr, "addr", "LADDER_DEV_ADDR", "address of the embedded broker")
		f.str(&c.DevDataDir, "data-dir", "LADDER_DEV_DATA_DIR", "data directory of the embedded broker")
		f.int(&c.DevPartitions, "partitions", "LADDER_DEV_PARTITIONS", "partitions of the created topics")
		f.list(&c.DevTopics, "topics", "LADDER_DEV_TOPICS", "work topics to create, comma-separated")
		f.str(&c.DevTLSCertFile, "broker-tls-cert", "LADDER_DEV_TLS_CERT_FILE", "server certificate of the embedded broker: it speaks TLS only")
		f.str(&c.DevTLSKeyFile, "broker-tls-key", "LADDER_DEV_TLS_KEY_FILE", "private key of that certificate")
		f.BoolVar(&forwarders, "forwarders", true, "run the forwarders (false: the broker alone, for a separate `ladder run`)")
		f.BoolVar(&demo, "demo", false, "run demo workers on two lanes (work-fast, work-slow) with seeded messages and print a live status")
	})
	if err != nil {
		return err
	}
	if demo && !flagSet(f, "topics") {
		if _, set := os.LookupEnv("LADDER_DEV_TOPICS"); !set {
			cfg.DevTopics = demoLanes
		}
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
	dataDir := cfg.DevDataDir
	if dataDir == "" {
		dataDir = devbroker.DefaultDataDir()
	}
	bc := devbroker.Config{Addr: cfg.DevAddr, DataDir: dataDir, Partitions: int32(cfg.DevPartitions), Log: log}
	security, err := devSecurity(cfg, &bc)
	if err != nil {
		return usageError{f.explain(err)}
	}

	b, err := devbroker.Start(bc)
	if err != nil {
		return err
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

	work := cfg.DevTopics[0]
	fmt.Fprintf(stdout, `ladder dev: embedded Kafka broker on %[1]s (data in %[2]s)
  tiers         %[3]s
  dead letters  %[4]s
  work topics   %[5]s
  forwarders    %[6]s
  work-ahead    %[10]s
  security      %[11]s

  watch %[7]s:     kcat -C -b %[1]s -t %[7]s -f '%%T %%k %%h %%s\n'
  schedule (90s): ladder schedule --brokers %[1]s --tiers %[8]s --topic %[7]s --delay 90s hello
  with kcat:      echo hello | kcat -P -b %[1]s -t %[9]s -H ladder-target=%[7]s -H ladder-due=$(( $(date +%%s%%3N) + 90000 ))

`, b.Addr(), dataDir, strings.Join(l.Topics(), " "), l.DLQTopic(), strings.Join(cfg.DevTopics, " "),
		map[bool]string{true: "running (group " + cfg.Group + ")", false: "off: start `ladder run --brokers " + b.Addr() + "`"}[forwarders],
		work, l.String(), l.Smallest().Topic,
		map[bool]string{true: "on, lanes " + cfg.WorkaheadLanes, false: "off"}[cfg.WorkaheadEnabled], security)

	var wg sync.WaitGroup
	reg := ops.NewRegistry(version)
	if forwarders {
		wg.Go(func() {
			// Refresh pending counts often: a developer watches them.
			fast := func(c *forward.Config) { c.HealthInterval = 2 * time.Second }
			if err := runForwarder(ctx, cfg, l, log, reg, fast); err != nil {
				log.Error().Err(err).Msg("forwarder stopped")
			}
		})
	}
	if demo {
		wg.Go(func() {
			if err := runDemo(ctx, cfg, l, reg, stdout, log); err != nil && ctx.Err() == nil {
				log.Error().Err(err).Msg("demo stopped")
			}
		})
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "ladder dev: stopping")
	wg.Wait()
	return nil
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
