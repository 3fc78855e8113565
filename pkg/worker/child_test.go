package worker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/worker"
)

// childEnv switches the test binary into a worker process (see TestMain).
const childEnv = "LADDER_WORKER_TEST_CHILD"

// childSettings configure a worker process. Mode "relay" handles a
// message twice: the first visit reschedules it after 1s through the
// ladder, the second sends it to topic "sink" at once. Mode "io" waits 20ms
// (simulated I/O) and reschedules every message after an hour.
type childSettings struct {
	Mode        string
	Addr        string
	Tiers       string
	Lane        string
	Concurrency int
}

func (s childSettings) env() []string {
	return []string{childEnv + "=" + s.Mode, "CHILD_ADDR=" + s.Addr, "CHILD_TIERS=" + s.Tiers,
		"CHILD_LANE=" + s.Lane, "CHILD_CONCURRENCY=" + strconv.Itoa(s.Concurrency)}
}

// childMain runs a worker until SIGTERM or SIGINT and returns the exit code.
func childMain() int {
	level := zerolog.WarnLevel
	if os.Getenv("LADDER_TEST_DEBUG") != "" {
		level = zerolog.DebugLevel
	}
	log := zerolog.New(os.Stderr).Level(level).With().Timestamp().Int("pid", os.Getpid()).Logger()
	l, err := tier.Parse(os.Getenv("CHILD_TIERS"), tier.DefaultPrefix)
	if err != nil {
		log.Error().Err(err).Msg("child tiers")
		return 2
	}
	conc, _ := strconv.Atoi(os.Getenv("CHILD_CONCURRENCY"))
	var h worker.Handler
	switch mode := os.Getenv(childEnv); mode {
	case "relay":
		h = func(ctx context.Context, m worker.Message) worker.Result {
			time.Sleep(time.Duration(2+rand.IntN(8)) * time.Millisecond)
			if _, visited := m.Header("visit"); !visited {
				return worker.Reschedule(time.Second).
					WithHeaders(append(m.Headers, sarama.RecordHeader{Key: []byte("visit"), Value: []byte("1")})...)
			}
			return worker.Reschedule(0).To("sink")
		}
	case "io":
		h = func(ctx context.Context, m worker.Message) worker.Result {
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return worker.Retry(ctx.Err())
			}
			return worker.Reschedule(time.Hour)
		}
	default:
		log.Error().Str("mode", mode).Msg("unknown child mode")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err = worker.Run(ctx, worker.Config{Kafka: laddertest.Kafka(os.Getenv("CHILD_ADDR")), Ladder: l, Log: log},
		worker.Lane{Topics: []string{os.Getenv("CHILD_LANE")}, Group: "workers-child", Concurrency: conc, Handler: h})
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}
