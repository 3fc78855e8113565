package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strings"

	"github.com/kelseyhightower/envconfig"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/ops"
	"github.com/ladder/ladder/pkg/tier"
)

func init() {
	register(command{name: "run", summary: "forward the tiers of a ladder on a Kafka cluster (production)", order: 10, run: runCmd})
}

// errUsageShown ends a command whose flag error the flag package already printed.
var errUsageShown = usageError{errors.New("bad usage")}

// runCmd is `ladder run`: the production forwarder. It talks to the brokers
// of LADDER_BROKERS and never starts an embedded broker.
func runCmd(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) error {
	cfg, f, err := parseForwarderFlags("run", "run [flags]", args, stderr)
	if err != nil {
		return err
	}
	l, log, err := checkForwarder(cfg, f, stderr)
	if err != nil {
		return err
	}
	return runForwarder(ctx, cfg, l, log, ops.NewRegistry(version), nil)
}

// runForwarder runs a forwarder and, when LADDER_HTTP_ADDR is set, its
// metrics and health endpoints (on httpLn when bound already; runForwarder
// closes it), until ctx is done. The forwarder stops first (commit, leave
// the group, flush), then the HTTP server.
func runForwarder(ctx context.Context, cfg Config, l *tier.Ladder, log zerolog.Logger, reg *prometheus.Registry, httpLn net.Listener, tune ...func(*forward.Config)) (err error) {
	if httpLn != nil {
		defer func() {
			if err != nil {
				httpLn.Close() // a second close, after the server ran, only returns an error
			}
		}()
	}
	fc := forwarderConfig(cfg, l, log)
	fc.Registerer = reg
	for _, t := range tune {
		t(&fc)
	}
	wa, err := cfg.workahead(reg, log)
	if err != nil {
		return usageError{err}
	}
	fc.WorkAhead = wa
	fwd, err := forward.New(fc)
	if err != nil {
		return err
	}
	setMemoryLimit(fc.BufferMemory, log)
	if httpLn == nil && cfg.HTTPAddr == "" {
		return fwd.Run(ctx)
	}
	if httpLn == nil {
		if httpLn, err = ops.Bind(cfg.HTTPAddr); err != nil {
			return err
		}
	}
	srv := ops.NewServer(httpLn, reg, fwd.Ready, log)
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Run(httpCtx) }()
	runErr := fwd.Run(ctx)
	stopHTTP()
	return errors.Join(runErr, <-httpDone)
}

// parseForwarderFlags reads the environment and the flags every forwarding
// command shares.
func parseForwarderFlags(name, usage string, args []string, stderr io.Writer, extra ...func(*flags, *Config)) (Config, *flags, error) {
	cfg, err := loadConfig()
	if err != nil {
		return cfg, nil, usageError{err}
	}
	f := newFlags(name, usage, stderr)
	f.kafka(&cfg.Config)
	f.ladder(&cfg)
	f.forwarder(&cfg)
	f.log(&cfg)
	for _, x := range extra {
		x(f, &cfg)
	}
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, f, err
		}
		return cfg, f, errUsageShown
	}
	if f.NArg() > 0 {
		return cfg, f, usageError{errors.New("unexpected arguments: " + strings.Join(f.Args(), " "))}
	}
	return cfg, f, nil
}

// checkForwarder validates what a forwarder needs and builds its ladder and logger.
func checkForwarder(cfg Config, f *flags, stderr io.Writer) (*tier.Ladder, zerolog.Logger, error) {
	for _, check := range []func() error{cfg.validateLog, cfg.Config.Validate, cfg.validateForwarder} {
		if err := check(); err != nil {
			return nil, zerolog.Logger{}, usageError{f.explain(err)}
		}
	}
	l, err := cfg.ladder()
	if err != nil {
		return nil, zerolog.Logger{}, usageError{f.explain(err)}
	}
	if _, err := cfg.workahead(nil, zerolog.Nop()); err != nil {
		return nil, zerolog.Logger{}, usageError{f.explain(err)}
	}
	log := cfg.logger(stderr)
	if err := envconfig.CheckDisallowed("ladder", &cfg); err != nil {
		log.Warn().Err(err).Msg("unknown LADDER_* variable: misspelled?")
	}
	return l, log, nil
}

func forwarderConfig(cfg Config, l *tier.Ladder, log zerolog.Logger) forward.Config {
	return forward.Config{
		Ladder:          l,
		Group:           cfg.Group,
		Kafka:           cfg.Config,
		BufferMemory:    int64(cfg.BufferMemory),
		ResumeLead:      cfg.ResumeLead,
		MaxHops:         cfg.MaxHops,
		MaxDelay:        cfg.maxDelay(),
		TargetTimeout:   cfg.TargetTimeout,
		CommitInterval:  cfg.CommitInterval,
		ShutdownTimeout: cfg.ShutdownTimeout,
		StatsInterval:   cfg.StatsInterval,
		ExactlyOnce:     cfg.ExactlyOnce,
		TransactionalID: cfg.TransactionalID,
		TxnInterval:     cfg.TransactionInterval,
		TxnTimeout:      cfg.TransactionTimeout,
		Log:             log,
	}
}

// setMemoryLimit gives the Go runtime a soft memory limit that follows the
// forwarder's budget, unless the operator set GOMEMLIMIT: twice the budget
// (what the forwarder holds of records, and the garbage of decoding them)
// plus 32 MiB for everything else. Without it the heap may grow to twice its
// live size between collections; with it the garbage collector works
// harder only near the limit.
func setMemoryLimit(budget int64, log zerolog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if budget <= 0 {
		budget = forward.DefaultBufferMemory
	}
	limit := 2*budget + 32<<20
	debug.SetMemoryLimit(limit)
	log.Debug().Int64("bytes", limit).Msg("Go memory limit set from LADDER_BUFFER_MEMORY (GOMEMLIMIT overrides it)")
}
