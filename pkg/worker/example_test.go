package worker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/worker"
)

// checkStatus stands for the application's I/O (an HTTP call, a query).
func checkStatus(ctx context.Context, key []byte) (finished bool, err error) { return false, nil }

var errTemporary = errors.New("temporary")

// Two lanes in one process: fast checks with many in flight, slow ones with
// few. Each check comes back every five minutes until it is finished.
func ExampleRun() {
	ladder, _ := tier.Parse(tier.DefaultTiers, tier.DefaultPrefix)
	cfg := worker.Config{
		Kafka:  kafkaconf.Config{Brokers: []string{"127.0.0.1:9092"}, KafkaVersion: "3.0.0", ClientID: "checks"},
		Ladder: ladder,
		Log:    zerolog.New(os.Stderr),
	}
	check := func(ctx context.Context, m worker.Message) worker.Result {
		finished, err := checkStatus(ctx, m.Key)
		switch {
		case errors.Is(err, errTemporary):
			return worker.Retry(err) // back through the ladder after the lane's back-off
		case err != nil:
			return worker.DeadLetter(err.Error())
		case finished:
			return worker.Done()
		}
		return worker.Reschedule(5 * time.Minute)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := worker.Run(ctx, cfg,
		worker.Lane{Topics: []string{"work-fast"}, Group: "workers-fast", Concurrency: 512, Handler: check},
		worker.Lane{Topics: []string{"work-slow"}, Group: "workers-slow", Concurrency: 16, Handler: check, KeyOrdered: true},
	)
	if err != nil {
		cfg.Log.Error().Err(err).Msg("worker")
	}
}

// A handler's Result says what happens next: a reschedule can change what
// comes back and to which lane; a retry or a dead letter carries its reason.
func ExampleResult() {
	for _, r := range []worker.Result{
		worker.Done(),
		worker.Reschedule(5 * time.Minute).To("work-slow").WithValue([]byte("check again")),
		worker.RetryAfter(30*time.Second, errTemporary),
		worker.DeadLetter("order cancelled"),
	} {
		fmt.Println(r, r.Err())
	}
	// Output:
	// done <nil>
	// reschedule <nil>
	// retry temporary
	// dead_letter order cancelled
}
