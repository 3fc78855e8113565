package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/control"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/offsets"
)

func init() {
	register(command{name: "drain", summary: "release every record of a tier now, through the running forwarders", order: 35, run: drainCmd})
}

// drainCmd is `ladder drain --tier delay-1h`: it writes a drain command to
// the control topic, which every running forwarder follows, and waits until
// the forwarder group has committed past every record that was in the tier.
func drainCmd(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	cfg, err := loadConfig()
	if err != nil {
		return usageError{err}
	}
	var (
		tierTopic string
		ttl       time.Duration = time.Hour
		wait      bool          = true
		timeout   time.Duration = 30 * time.Minute
	)
	f := newFlags("drain", "drain --tier TOPIC [--wait=false] [--ttl 1h] [--timeout 30m]", stderr)
	f.kafka(&cfg.Config)
	f.ladder(&cfg)
	f.str(&cfg.Group, "group", "LADDER_GROUP", "consumer group of the forwarders")
	f.StringVar(&tierTopic, "tier", "", "tier topic to drain, e.g. delay-1h (required)")
	f.DurationVar(&ttl, "ttl", ttl, "the command stays in force this long, for forwarders that (re)start meanwhile")
	f.BoolVar(&wait, "wait", wait, "wait until the forwarders have released every record that was in the tier")
	f.DurationVar(&timeout, "timeout", timeout, "with --wait: give up after this long")
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsageShown
	}
	if err := cfg.Config.Validate(); err != nil {
		return usageError{f.explain(err)}
	}
	for _, w := range cfg.Config.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	l, err := cfg.ladder()
	if err != nil {
		return usageError{f.explain(err)}
	}
	if _, ok := l.Lookup(tierTopic); !ok {
		return usageError{fmt.Errorf("--tier %q: accepted: one of the ladder's tiers %v", tierTopic, l.Topics())}
	}
	if ttl <= 0 || timeout <= 0 {
		return usageError{errors.New("--ttl and --timeout must be positive durations")}
	}

	pc, err := cfg.Config.Producer()
	if err != nil {
		return err
	}
	brokers := cfg.BrokerList()
	client, err := sarama.NewClient(brokers, pc)
	if err != nil {
		return fmt.Errorf("connecting: %w", kafkaconf.Explain(err, brokers))
	}
	defer client.Close()
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		return fmt.Errorf("starting producer: %w", err)
	}
	defer producer.Close()
	d, err := control.RequestDrain(client, producer, l.ControlTopic(), tierTopic, ttl)
	if err != nil {
		return err
	}
	parts := map[string][]int32{tierTopic: nil}
	for p := range d.Until {
		n, _ := strconv.Atoi(p)
		parts[tierTopic] = append(parts[tierTopic], int32(n))
	}
	remaining := func() (int64, error) {
		admin, err := sarama.NewClusterAdmin(brokers, pc)
		if err != nil {
			return 0, err
		}
		defer admin.Close()
		committed, err := offsets.Commits(admin, cfg.Group, parts)
		if err != nil {
			return 0, err
		}
		start, err := offsets.Start(client, parts)
		if err != nil {
			return 0, err
		}
		var left int64
		for p, until := range d.Until {
			n, _ := strconv.Atoi(p)
			tp := offsets.TP{Topic: tierTopic, Partition: int32(n)}
			c, ok := committed[tp]
			if !ok || c.Offset < start[tp] {
				left += max(until-start[tp], 0)
				continue
			}
			// Records that passed a parked one (the commit's metadata)
			// were released.
			left += c.Resume.Unforwarded(c.Offset, until)
		}
		return left, nil
	}
	total, err := remaining()
	if err != nil {
		return fmt.Errorf("reading progress: %w", err)
	}
	fmt.Fprintf(stdout, "drain of %s requested: %d records to release now (command in force until %s)\n",
		tierTopic, total, d.Expires.Format(time.RFC3339))
	if !wait {
		return nil
	}
	if err := waitDrained(ctx, total, remaining, 2*time.Second, timeout, stderr, tierTopic); err != nil {
		return fmt.Errorf("%w: are forwarders running (group %s)?", err, cfg.Group)
	}
	fmt.Fprintf(stdout, "drained %s: all %d records released\n", tierTopic, total)
	return nil
}

// waitDrained polls remaining every interval until no record of the drain
// is left (nil), or timeout passes, or ctx is done. A poll that fails is
// reported and leaves the count as it was: it never passes for a drain done.
func waitDrained(ctx context.Context, total int64, remaining func() (int64, error), interval, timeout time.Duration, stderr io.Writer, tierTopic string) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for left := total; left > 0; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("%d of %d records still in %s after %s", left, total, tierTopic, timeout)
		case <-tick.C:
		}
		n, err := remaining()
		if err != nil {
			fmt.Fprintf(stderr, "reading progress: %v\n", err)
			continue
		}
		left = n
		fmt.Fprintf(stderr, "drain %s: %d of %d released\n", tierTopic, total-left, total)
	}
	return nil
}
