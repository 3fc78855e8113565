// Package workertest runs workers in tests, as net/http/httptest runs
// servers. It is kept out of laddertest, which pkg/schedule (a dependency
// of pkg/worker) tests with: laddertest must not import pkg/worker.
package workertest

import (
	"context"
	"testing"

	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/worker"
)

// Idle runs, until the test ends, a worker of group on topics that
// handles every message at once: the lane's workers exist and are idle.
func Idle(tb testing.TB, k kafkaconf.Config, l *tier.Ladder, group string, topics ...string) {
	tb.Helper()
	w, err := worker.New(worker.Config{Kafka: k, Ladder: l, Log: laddertest.Logger(tb)}, worker.Lane{Topics: topics, Group: group,
		Concurrency: 1, Handler: func(context.Context, worker.Message) worker.Result { return worker.Done() }})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
}
