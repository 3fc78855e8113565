package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"time"

	"github.com/ladder/ladder/pkg/soak"
)

func init() {
	register(command{name: "soak", summary: "steady load with random forwarder kills, then prove nothing was lost", order: 65, run: soakCmd})
}

var devAddrLine = regexp.MustCompile(`embedded Kafka broker on (\S+)`)

// soakCmd is `ladder soak`: forwarders run as separate processes and are
// SIGKILLed at random while a steady schedule load flows; at the end every
// scheduled message must have arrived, none early. Without --brokers it
// starts its own embedded broker process (`ladder dev --forwarders=false`).
func soakCmd(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	cfg, err := loadConfig()
	if err != nil {
		return usageError{err}
	}
	sc := soak.Config{Duration: 10 * time.Minute, Rate: 200, MaxDelay: time.Minute, Forwarders: 2, KillEvery: 30 * time.Second}
	var brokersGiven, asJSON bool
	cfg.Tiers = "1s,10s,1m"
	f := newFlags("soak", "soak [--duration 10m] [--rate 200] [--max-delay 1m] [--forwarders 2] [--kill-every 30s] [--exactly-once] [--brokers B]", stderr)
	f.kafka(&cfg.Config)
	f.ladder(&cfg)
	f.log(&cfg)
	f.DurationVar(&sc.Duration, "duration", sc.Duration, "how long the load and the kills go on")
	f.IntVar(&sc.Rate, "rate", sc.Rate, "messages scheduled per second")
	f.DurationVar(&sc.MaxDelay, "max-delay", sc.MaxDelay, "delays are uniform from 0 to this")
	f.IntVar(&sc.Forwarders, "forwarders", sc.Forwarders, "forwarder processes")
	f.DurationVar(&sc.KillEvery, "kill-every", sc.KillEvery, "mean time between SIGKILLs of a random forwarder (0: none)")
	f.BoolVar(&sc.ExactlyOnce, "exactly-once", false, "forwarders in exactly-once mode: duplicates then count as failures")
	f.StringVar(&sc.Target, "topic", "work", "work topic")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsageShown
	}
	f.Visit(func(fl *flag.Flag) { brokersGiven = brokersGiven || fl.Name == "brokers" })
	if _, ok := os.LookupEnv("LADDER_BROKERS"); ok {
		brokersGiven = true
	}
	l, err := cfg.ladder()
	if err != nil {
		return usageError{f.explain(err)}
	}
	if sc.Rate < 1 || sc.Forwarders < 1 || sc.Duration <= 0 || sc.MaxDelay < 0 {
		return usageError{errors.New("--rate and --forwarders must be ≥ 1, --duration positive, --max-delay ≥ 0")}
	}
	log := cfg.logger(stderr)
	sc.Binary, err = os.Executable()
	if err != nil {
		return fmt.Errorf("finding the ladder binary: %w", err)
	}
	if !brokersGiven {
		dir, err := os.MkdirTemp("", "ladder-soak-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		addr, stop, err := startDevProcess(sc.Binary, dir, l.String(), sc.Target)
		if err != nil {
			return err
		}
		defer stop()
		cfg.Brokers = []string{addr}
		fmt.Fprintf(stderr, "soak: embedded broker on %s (data in %s)\n", addr, dir)
	}
	sc.Ladder, sc.Kafka, sc.Log = l, cfg.Config, log
	sc.Env = []string{"LADDER_LOG_LEVEL=" + cfg.LogLevel}
	sc.Progress = func(s soak.Status) {
		fmt.Fprintf(stderr, "soak %s: scheduled %d, arrived %d, kills %d, duplicates %d, early %d\n",
			s.Elapsed.Round(time.Second), s.Scheduled, s.Arrived, s.Kills, s.Duplicates, s.Early)
	}
	res, err := soak.Run(ctx, sc)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "soak: %s, %d forwarders (%s), %d SIGKILLs\n  messages %d, arrived %d, lost %d, duplicated %d, early %d\n  lateness p50 %s, p99 %s, max %s\n",
			res.Duration.Round(time.Second), res.Forwarders, map[bool]string{true: "exactly-once", false: "at-least-once"}[res.ExactlyOnce],
			res.Kills, res.Messages, res.Arrived, res.Lost, res.Duplicated, res.Early,
			res.LateP50.Round(time.Millisecond), res.LateP99.Round(time.Millisecond), res.LateMax.Round(time.Millisecond))
	}
	if res.Lost > 0 || res.Early > 0 || res.ExactlyOnce && res.Duplicated > 0 {
		return fmt.Errorf("soak failed: %d lost, %d early, %d duplicated", res.Lost, res.Early, res.Duplicated)
	}
	return nil
}

// startDevProcess runs `ladder dev --forwarders=false` on a free port and
// returns its address and a function that stops it.
func startDevProcess(binary, dataDir, tiers, topic string) (string, func(), error) {
	cmd := exec.Command(binary, "dev", "--forwarders=false", "--addr", "127.0.0.1:0", "--data-dir", dataDir,
		"--tiers", tiers, "--topics", topic, "--log-level", "warn", "--http-addr", "")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("starting ladder dev: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := devAddrLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case addr := <-found:
		return addr, stop, nil
	case <-time.After(30 * time.Second):
		stop()
		return "", nil, errors.New("ladder dev printed no address within 30s")
	}
}
