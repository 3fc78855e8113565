//go:build !nodev

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/ladder/ladder/pkg/devbroker"
	"github.com/ladder/ladder/pkg/kafkaconf"
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
		f.BoolVar(&forwarders, "forwarders", true, "run the forwarders (false: the broker alone, for a separate `ladder run`)")
		f.BoolVar(&demo, "demo", false, "schedule sample messages and print them as they come back")
	})
	if err != nil {
		return err
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

	b, err := devbroker.Start(devbroker.Config{Addr: cfg.DevAddr, DataDir: dataDir, Partitions: int32(cfg.DevPartitions), Log: log})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.EnsureLadder(ctx, nil, l, 0, cfg.DevTopics...); err != nil {
		return err
	}
	cfg.Brokers = []string{b.Addr()}

	work := cfg.DevTopics[0]
	fmt.Fprintf(stdout, `ladder dev: embedded Kafka broker on %[1]s (data in %[2]s)
  tiers         %[3]s
  dead letters  %[4]s
  work topics   %[5]s
  forwarders    %[6]s
  work-ahead    %[10]s

  watch %[7]s:     kcat -C -b %[1]s -t %[7]s -f '%%T %%k %%h %%s\n'
  schedule (90s): ladder schedule --brokers %[1]s --tiers %[8]s --topic %[7]s --delay 90s hello
  with kcat:      echo hello | kcat -P -b %[1]s -t %[9]s -H ladder-target=%[7]s -H ladder-due=$(( $(date +%%s%%3N) + 90000 ))

`, b.Addr(), dataDir, strings.Join(l.Topics(), " "), l.DLQTopic(), strings.Join(cfg.DevTopics, " "),
		map[bool]string{true: "running (group " + cfg.Group + ")", false: "off: start `ladder run --brokers " + b.Addr() + "`"}[forwarders],
		work, l.String(), l.Smallest().Topic,
		map[bool]string{true: "on, lanes " + cfg.WorkaheadLanes, false: "off"}[cfg.WorkaheadEnabled])

	var wg sync.WaitGroup
	if forwarders {
		wg.Go(func() {
			if err := runForwarder(ctx, cfg, l, log); err != nil {
				log.Error().Err(err).Msg("forwarder stopped")
			}
		})
	}
	if demo {
		wg.Go(func() {
			if err := runDemo(ctx, cfg, l, work, stdout); err != nil && ctx.Err() == nil {
				log.Error().Err(err).Msg("demo stopped")
			}
		})
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "ladder dev: stopping")
	wg.Wait()
	return nil
}
