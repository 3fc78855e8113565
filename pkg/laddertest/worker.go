package laddertest

import (
	"context"
	"testing"

	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/worker"
)

// IdleWorker runs, until the test ends, a worker of group on topics that
// handles every message at once: the lane's workers exist and are idle.
func IdleWorker(tb testing.TB, k kafkaconf.Config, l *tier.Ladder, group string, topics ...string) {
	tb.Helper()
	w, err := worker.New(worker.Config{Kafka: k, Ladder: l, Log: Logger(tb)}, worker.Lane{Topics: topics, Group: group,
		Concurrency: 1, Handler: func(context.Context, worker.Message) worker.Result { return worker.Done() }})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
}
