package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/tier"
)

// running is a forwarder under test, in this process or as `ladder run`.
type running struct {
	proc    *Proc  // Process mode
	metrics string // Process mode: address of /metrics
	stop    func() error
	// claimed is how many tier partitions the forwarder has claimed.
	claimed func(ctx context.Context) (int64, error)
}

// cpu is the CPU time of the process the forwarder runs in.
func (r *running) cpu() time.Duration {
	if r.proc != nil {
		return r.proc.CPU()
	}
	return cpuSelf()
}

// stopLogged stops the forwarder and logs a failure to stop.
func (r *running) stopLogged(env *Env) {
	if err := r.stop(); err != nil {
		env.Log.Warn().Err(err).Msg("stopping the forwarder")
	}
}

// waitClaimed waits until the forwarder has claimed n partitions.
func (r *running) waitClaimed(ctx context.Context, n int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := r.claimed(ctx)
		if err == nil && got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the forwarder claimed %d of %d partitions after %s (%v)", got, n, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startForwarder starts a forwarder of ladder l in group, in this process
// or as `ladder run` (mode InProcess or Process).
func startForwarder(ctx context.Context, env *Env, mode string, l *tier.Ladder, group string) (*running, error) {
	if mode == Process {
		vars := []string{
			"LADDER_BROKERS=" + strings.Join(env.Kafka.BrokerList(), ","),
			"LADDER_KAFKA_VERSION=" + env.Kafka.KafkaVersion,
			"LADDER_TIERS=" + l.String(),
			"LADDER_TOPIC_PREFIX=" + l.Prefix(),
			"LADDER_GROUP=" + group,
			"LADDER_LOG_LEVEL=info",
		}
		vars = append(vars, env.RunEnv...)
		p, addr, err := startRun(ctx, env.Binary, vars)
		if err != nil {
			return nil, fmt.Errorf("starting ladder run: %w", err)
		}
		return &running{proc: p, metrics: addr, stop: func() error { return p.Stop(60 * time.Second) },
			claimed: func(ctx context.Context) (int64, error) {
				m, err := scrape(ctx, addr)
				return int64(m["ladder_claimed_partitions"]), err
			}}, nil
	}
	fwd, err := forward.New(forward.Config{Ladder: l, Group: group, Kafka: env.Kafka,
		Log: env.Log.With().Str("component", "forwarder").Logger()})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- fwd.Run(runCtx) }()
	return &running{stop: func() error { cancel(); return <-done },
		claimed: func(context.Context) (int64, error) { return fwd.Snapshot().Claimed, nil }}, nil
}
