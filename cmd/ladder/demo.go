//go:build !nodev

package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

var demoDelays = []time.Duration{2 * time.Second, 5 * time.Second, 12 * time.Second, 25 * time.Second,
	40 * time.Second, 70 * time.Second, 100 * time.Second}

// runDemo schedules a handful of messages for work and prints each one as it
// comes back, with how late it was and how many tiers it passed through.
func runDemo(ctx context.Context, cfg Config, l *tier.Ladder, work string, stdout io.Writer) error {
	sc, err := cfg.Config.Base()
	if err != nil {
		return err
	}
	consumer, err := sarama.NewConsumer(cfg.BrokerList(), sc)
	if err != nil {
		return fmt.Errorf("demo: watching %s: %w", work, err)
	}
	defer consumer.Close()
	parts, err := consumer.Partitions(work)
	if err != nil {
		return fmt.Errorf("demo: partitions of %s: %w", work, err)
	}
	arrivals := make(chan *sarama.ConsumerMessage)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, p := range parts {
		pc, err := consumer.ConsumePartition(work, p, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("demo: watching %s/%d: %w", work, p, err)
		}
		defer pc.AsyncClose()
		wg.Go(func() {
			for m := range pc.Messages() {
				select {
				case arrivals <- m:
				case <-ctx.Done():
				}
			}
		})
	}

	s, err := schedule.New(schedule.Config{Ladder: l, Kafka: cfg.Config, Log: zerolog.Nop()})
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Now()
	var batch []schedule.Message
	for i, d := range demoDelays {
		batch = append(batch, schedule.Message{Topic: work, Key: []byte(fmt.Sprintf("demo-%d", i+1)),
			Value: []byte(fmt.Sprintf("hello from %s ago", d)), Delay: d})
	}
	if err := s.ScheduleBatch(ctx, batch); err != nil {
		return fmt.Errorf("demo: scheduling: %w", err)
	}
	fmt.Fprintf(stdout, "demo: scheduled %d messages at %s for %s, due in %v; each prints as it comes back:\n\n",
		len(batch), now.Format("15:04:05"), work, demoDelays)
	const row = "  %-8s %6s  %-12s  %-12s  %7s  %4s\n"
	fmt.Fprintf(stdout, row, "key", "delay", "due", "arrived", "late", "hops")
	for seen := 0; seen < len(batch); {
		select {
		case <-ctx.Done():
			return nil
		case m := <-arrivals:
			env, err := envelope.Decode(m.Headers)
			if err != nil || env.Scheduled.IsZero() {
				continue // not one of ours
			}
			seen++
			at := time.Now()
			fmt.Fprintf(stdout, row, m.Key, env.Due.Sub(env.Scheduled).Round(time.Second),
				env.Due.Format("15:04:05.000"), at.Format("15:04:05.000"), at.Sub(env.Due).Round(time.Millisecond), strconv.Itoa(env.Hops))
		}
	}
	fmt.Fprintf(stdout, "\ndemo: all %d messages came back, none early. The broker and forwarders keep running: Ctrl-C stops them.\n", len(batch))
	return nil
}
