package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/kafkaconf"
)

// loadStats is how a bulk load went.
type loadStats struct {
	Records int64         `json:"records"`
	Elapsed time.Duration `json:"elapsed_ns"`
	Rate    float64       `json:"records_per_s"`
}

// load produces n records, gen(i) for i in [from, from+n), with producers
// parallel async producers tuned for bulk (acks from the leader, large
// batches, several requests in flight): setting up a scenario, not measuring.
func load(ctx context.Context, env *Env, label string, from, n int64, producers int, gen func(i int64) *sarama.ProducerMessage) (loadStats, error) {
	if n <= 0 {
		return loadStats{}, nil
	}
	sc, err := env.Kafka.Base()
	if err != nil {
		return loadStats{}, err
	}
	sc.Producer.RequiredAcks = sarama.WaitForLocal
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Partitioner = kafkaconf.NewMurmur2Partitioner
	sc.Producer.Flush.Bytes = 512 << 10
	sc.Producer.Flush.Frequency = 5 * time.Millisecond
	sc.Producer.Flush.MaxMessages = 0
	sc.Net.MaxOpenRequests = 5
	sc.ChannelBufferSize = 4096
	producers = max(producers, 1)

	prog := env.startProgress(label, n)
	defer prog.finish()
	start := time.Now()
	var (
		next   atomic.Int64
		failed atomic.Int64
		first  atomic.Pointer[error]
		wg     sync.WaitGroup
	)
	next.Store(from)
	end := from + n
	ps := make([]sarama.AsyncProducer, 0, producers)
	for range producers {
		p, err := sarama.NewAsyncProducer(env.Kafka.BrokerList(), sc)
		if err != nil {
			for _, p := range ps {
				p.Close()
			}
			return loadStats{}, fmt.Errorf("starting loader: %w", kafkaconf.Explain(err, env.Kafka.BrokerList()))
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		var acks sync.WaitGroup
		acks.Go(func() {
			for range p.Successes() {
				prog.add(1)
			}
		})
		acks.Go(func() {
			for pe := range p.Errors() {
				if failed.Add(1) == 1 {
					err := fmt.Errorf("loading to %s: %w", pe.Msg.Topic, pe.Err)
					first.Store(&err)
				}
			}
		})
		wg.Go(func() {
			defer func() { p.AsyncClose(); acks.Wait() }()
			for ctx.Err() == nil && failed.Load() == 0 {
				// Claim a run of 256 indexes at a time to keep the counter cool.
				lo := next.Add(256) - 256
				if lo >= end {
					return
				}
				for i := lo; i < min(lo+256, end); i++ {
					select {
					case p.Input() <- gen(i):
					case <-ctx.Done():
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return loadStats{}, fmt.Errorf("%d records failed: %w", failed.Load(), *e)
	}
	if err := ctx.Err(); err != nil {
		return loadStats{}, err
	}
	el := time.Since(start)
	return loadStats{Records: n, Elapsed: el, Rate: float64(n) / el.Seconds()}, nil
}

// waitCount polls count until it reaches want, and returns when it last
// saw the count at base (nothing moved yet: the moving time starts there, so
// a phase that moves everything between two polls still has a length) and
// when it reached want.
func waitCount(ctx context.Context, prog *progress, base, want int64, timeout time.Duration, count func() (int64, error)) (idle, done time.Time, err error) {
	deadline := time.Now().Add(timeout)
	idle = time.Now()
	for {
		n, err := count()
		now := time.Now()
		if err == nil {
			prog.set(n - base)
			if n <= base {
				idle = now
			}
			if n >= want {
				return idle, now, nil
			}
		}
		if now.After(deadline) {
			return idle, now, errors.Join(fmt.Errorf("%d of %d records after %s", n-base, want-base, timeout), err)
		}
		select {
		case <-ctx.Done():
			return idle, now, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
