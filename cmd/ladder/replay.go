package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/ladder/ladder/pkg/replay"
)

func init() {
	register(command{name: "replay", summary: "move dead-lettered records back into the ladder", order: 36, run: replayCmd})
}

// replayCmd is `ladder replay`: read the dead-letter topic up to its end,
// drop ladder-error, optionally fix ladder-target, and schedule each record again.
func replayCmd(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	cfg, err := loadConfig()
	if err != nil {
		return usageError{err}
	}
	rc := replay.Config{Group: "ladder-replay"}
	f := newFlags("replay", "replay [--match TEXT] [--target TOPIC] [--dry-run] [--group G]", stderr)
	f.kafka(&cfg.Config)
	f.ladder(&cfg)
	f.log(&cfg)
	f.StringVar(&rc.Match, "match", "", "replay only records whose ladder-error contains TEXT")
	f.StringVar(&rc.Target, "target", "", "set ladder-target to TOPIC (for records that had none or a bad one)")
	f.BoolVar(&rc.DryRun, "dry-run", false, "print what would be replayed; change nothing")
	f.StringVar(&rc.Group, "group", rc.Group, "consumer group keeping the replay's progress")
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsageShown
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
	rc.Ladder, rc.Kafka, rc.Log = l, cfg.Config, cfg.logger(stderr)
	verb := "replayed"
	if rc.DryRun {
		verb = "would replay"
	}
	rc.Report = func(r replay.Result) {
		if r.Skipped != "" {
			fmt.Fprintf(stdout, "%s/%d@%d  skipped: %s\n", l.DLQTopic(), r.Partition, r.Offset, r.Skipped)
			return
		}
		fmt.Fprintf(stdout, "%s/%d@%d  %s to %s (was: %s)\n", l.DLQTopic(), r.Partition, r.Offset, verb, r.To, r.Error)
	}
	st, err := replay.Run(ctx, rc)
	fmt.Fprintf(stdout, "read %d dead letters: %s %d, skipped %d (still not routable), %d not matching\n",
		st.Read, verb, st.Replayed, st.Skipped, st.Filtered)
	return err
}
