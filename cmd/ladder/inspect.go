package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/ladder/ladder/pkg/inspect"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/workahead"
)

func init() {
	register(command{name: "inspect", summary: "show pending records, heads, lag against retention, the forwarder group and the work-ahead lanes", order: 50, run: inspectCmd})
}

// inspectCmd is `ladder inspect [--json] [--watch 5s]`.
func inspectCmd(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	cfg, err := loadConfig()
	if err != nil {
		return usageError{err}
	}
	var (
		asJSON        bool
		watch         time.Duration
		retentionWarn float64
		overdueWarn   time.Duration
	)
	f := newFlags("inspect", "inspect [--json] [--watch 5s] [flags]", stderr)
	f.kafka(&cfg.Config)
	f.ladder(&cfg)
	f.str(&cfg.Group, "group", "LADDER_GROUP", "consumer group of the forwarders")
	f.str(&cfg.WorkaheadLanes, "workahead-lanes", "LADDER_WORKAHEAD_LANES", "work-ahead lanes to report, as the forwarders watch them: target=workergroup, comma-separated")
	f.Int64Var(&cfg.WorkaheadLagThreshold, "workahead-lag-threshold", cfg.WorkaheadLagThreshold, "the forwarders' work-ahead lag threshold"+f.env("workahead-lag-threshold", "LADDER_WORKAHEAD_LAG_THRESHOLD"))
	f.log(&cfg)
	f.BoolVar(&asJSON, "json", false, "print JSON (stable field names) instead of a table")
	f.DurationVar(&watch, "watch", 0, "refresh every interval, such as 5s, until interrupted (0: once)")
	f.Float64Var(&retentionWarn, "retention-warn", 0.8, "warn when a head's age exceeds this fraction of retention.ms")
	f.DurationVar(&overdueWarn, "overdue-warn", time.Minute, "warn when a head is overdue by more than this")
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsageShown
	}
	switch {
	case f.NArg() > 0:
		return usageError{errors.New("unexpected arguments: " + strings.Join(f.Args(), " "))}
	case watch < 0:
		return usageError{&kafkaconf.FieldError{Var: "--watch", Value: watch.String(), Accept: "a positive interval such as 5s, or 0 for once"}}
	case retentionWarn <= 0 || retentionWarn > 1:
		return usageError{&kafkaconf.FieldError{Var: "--retention-warn", Value: fmt.Sprint(retentionWarn), Accept: "a fraction above 0, at most 1, such as 0.8"}}
	case overdueWarn <= 0:
		return usageError{&kafkaconf.FieldError{Var: "--overdue-warn", Value: overdueWarn.String(), Accept: "a positive duration such as 1m"}}
	case cfg.Group == "":
		return usageError{f.explain(&kafkaconf.FieldError{Var: "LADDER_GROUP", Accept: "a non-empty consumer group id"})}
	}
	for _, check := range []func() error{cfg.validateLog, cfg.Config.Validate} {
		if err := check(); err != nil {
			return usageError{f.explain(err)}
		}
	}
	l, err := cfg.ladder()
	if err != nil {
		return usageError{f.explain(err)}
	}
	var lanes map[string]string
	if strings.TrimSpace(cfg.WorkaheadLanes) != "" {
		if lanes, err = workahead.ParseLanes(cfg.WorkaheadLanes); err != nil {
			return usageError{f.explain(&kafkaconf.FieldError{Var: "LADDER_WORKAHEAD_LANES", Value: cfg.WorkaheadLanes,
				Accept: "target=workergroup pairs, comma-separated (" + err.Error() + ")"})}
		}
	}
	if cfg.WorkaheadLagThreshold < 1 {
		return usageError{f.explain(&kafkaconf.FieldError{Var: "LADDER_WORKAHEAD_LAG_THRESHOLD", Value: fmt.Sprint(cfg.WorkaheadLagThreshold), Accept: "a whole number of 1 or more"})}
	}
	log := cfg.logger(stderr)
	if err := envconfig.CheckDisallowed("ladder", &cfg); err != nil {
		log.Warn().Err(err).Msg("unknown LADDER_* variable: misspelled?")
	}

	in, err := inspect.New(inspect.Config{Ladder: l, Group: cfg.Group, Kafka: cfg.Config,
		RetentionWarn: retentionWarn, OverdueWarn: overdueWarn, WorkAheadLanes: lanes, LagThreshold: cfg.WorkaheadLagThreshold, Log: log})
	if err != nil {
		return err
	}
	defer in.Close()
	clear := watch > 0 && !asJSON && isTerminal(stdout)
	for {
		r, err := in.Inspect(ctx)
		switch {
		case ctx.Err() != nil:
			return nil // interrupted
		case err != nil && watch == 0:
			return err
		case err != nil:
			log.Error().Err(err).Msg("inspecting the ladder")
		default:
			if clear {
				fmt.Fprint(stdout, "\033[H\033[2J")
			}
			if err := printReport(stdout, r, asJSON); err != nil {
				return err
			}
		}
		if watch == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(watch):
		}
	}
}

func printReport(w io.Writer, r *inspect.Report, asJSON bool) error {
	if !asJSON {
		return r.WriteText(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
