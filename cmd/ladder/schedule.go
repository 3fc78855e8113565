package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

func init() {
	register(command{name: "schedule", summary: "schedule a message, or one per line of stdin, for a topic", order: 30, run: scheduleCmd})
}

// scheduleCmd is `ladder schedule`: schedule VALUE, or one value per line of
// stdin, for --topic after --delay or at --at.
func scheduleCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := loadConfig()
	if err != nil {
		return usageError{err}
	}
	var (
		target, delay, at, key, keyDelim string
		headers                          headerList
		fromStdin                        bool
	)
	f := newFlags("schedule", "schedule --topic T (--delay D | --at TIME) [--key K] [--header k=v]... (VALUE | --stdin)", stderr)
	f.kafka(&cfg.Config)
	f.ladder(&cfg)
	f.log(&cfg)
	f.StringVar(&target, "topic", "", "target topic the message comes back to (required)")
	f.StringVar(&delay, "delay", "", "how long from now, e.g. 90s, 15m, 2h, 3d")
	f.StringVar(&at, "at", "", "when: RFC 3339 time (2026-11-24T18:00:00Z) or unix milliseconds")
	f.StringVar(&key, "key", "", "record key (default: none)")
	f.Var(&headers, "header", "record header k=v; repeat for more")
	f.BoolVar(&fromStdin, "stdin", false, "schedule one message per line of stdin instead of VALUE")
	f.StringVar(&keyDelim, "key-delimiter", "", "with --stdin: split each line at the first DELIM into key and value")
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsageShown
	}
	if err := cfg.validateLog(); err != nil {
		return usageError{f.explain(err)}
	}
	if err := cfg.Config.Validate(); err != nil {
		return usageError{f.explain(err)}
	}
	l, err := cfg.ladder()
	if err != nil {
		return usageError{f.explain(err)}
	}
	if err := tier.ValidateTopic(target); err != nil {
		return usageError{fmt.Errorf("--topic: %w", err)}
	}
	when, err := parseWhen(delay, at)
	if err != nil {
		return usageError{err}
	}
	switch {
	case fromStdin && f.NArg() > 0:
		return usageError{errors.New("give VALUE or --stdin, not both")}
	case !fromStdin && f.NArg() != 1:
		return usageError{errors.New("give exactly one VALUE (quote it if it has spaces), or --stdin")}
	case keyDelim != "" && !fromStdin:
		return usageError{errors.New("--key-delimiter needs --stdin")}
	}

	s, err := schedule.New(schedule.Config{Ladder: l, Kafka: cfg.Config, Log: cfg.logger(stderr)})
	if err != nil {
		return err
	}
	defer s.Close()
	msg := func(k, v []byte) schedule.Message {
		m := schedule.Message{Topic: target, Key: k, Value: v, Headers: headers}
		when(&m)
		return m
	}
	var k []byte
	if key != "" {
		k = []byte(key)
	}
	if !fromStdin {
		r, err := s.ScheduleReceipt(ctx, msg(k, []byte(f.Arg(0))))
		if err != nil {
			return err
		}
		// The due time printed is the one in the ladder-due header sent.
		fmt.Fprintf(stdout, "scheduled for %s, due %s (unix ms %d), via %s (partition %d, offset %d)\n",
			target, r.Due.UTC().Format(rfc3339Millis), r.Due.UnixMilli(), r.Topic, r.Partition, r.Offset)
		return nil
	}
	return scheduleLines(ctx, s, stdin, stdout, stderr, keyDelim, k, msg)
}

// rfc3339Millis is RFC 3339 with the milliseconds the wire carries.
const rfc3339Millis = "2006-01-02T15:04:05.000Z07:00"

// scheduleLines schedules one message per line, pipelined, and reports
// progress on stderr every two seconds.
func scheduleLines(ctx context.Context, s *schedule.Scheduler, stdin io.Reader, stdout, stderr io.Writer,
	keyDelim string, key []byte, msg func(k, v []byte) schedule.Message) error {
	var sent, acked, failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	progress := time.NewTicker(2 * time.Second)
	defer progress.Stop()
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		k, v := key, append([]byte(nil), line...)
		if keyDelim != "" {
			if before, after, ok := strings.Cut(string(line), keyDelim); ok {
				k, v = []byte(before), []byte(after)
			}
		}
		err := s.Send(ctx, msg(k, v), func(err error) {
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			acked.Add(1)
		})
		if err != nil {
			return err
		}
		sent.Add(1)
		select {
		case <-progress.C:
			fmt.Fprintf(stderr, "scheduled %d (%d acknowledged, %.0f/s)\n", sent.Load(), acked.Load(),
				float64(acked.Load())/time.Since(start).Seconds())
		default:
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	s.Flush()
	fmt.Fprintf(stdout, "scheduled %d messages (%d failed) in %s\n", acked.Load(), failed.Load(), time.Since(start).Round(time.Millisecond))
	if err, _ := firstErr.Load().(error); err != nil {
		return fmt.Errorf("%d messages failed, the first with: %w", failed.Load(), err)
	}
	return nil
}

// parseWhen turns --delay or --at into a setter of the message's due time.
func parseWhen(delay, at string) (func(*schedule.Message), error) {
	switch {
	case delay != "" && at != "":
		return nil, errors.New("give --delay or --at, not both")
	case delay != "":
		d, err := parseDelay(delay)
		if err != nil {
			return nil, fmt.Errorf("--delay: %w", err)
		}
		return func(m *schedule.Message) { m.Delay = d }, nil
	case at != "":
		t, err := parseAt(at)
		if err != nil {
			return nil, fmt.Errorf("--at %q: accepted: an RFC 3339 time such as 2026-11-24T18:00:00Z, or unix milliseconds", at)
		}
		return func(m *schedule.Message) { m.At = t }, nil
	}
	return nil, errors.New("give --delay (e.g. 90m) or --at (RFC 3339 or unix milliseconds)")
}

func parseDelay(s string) (time.Duration, error) {
	if d, err := tier.ParseDuration(s); err == nil {
		return d, nil
	}
	// Allow compound delays with days and a zero delay too: "0s", "1d12h" is
	// not Go syntax, so only plain durations beyond whole days.
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: accepted: a duration such as 90s, 15m, 1h30m or 2d", s)
	}
	return d, nil
}

func parseAt(s string) (time.Time, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// headerList is a repeatable --header k=v flag.
type headerList []sarama.RecordHeader

func (h *headerList) String() string {
	var parts []string
	for _, x := range *h {
		parts = append(parts, string(x.Key)+"="+string(x.Value))
	}
	return strings.Join(parts, " ")
}

func (h *headerList) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: accepted: key=value", s)
	}
	*h = append(*h, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
	return nil
}
