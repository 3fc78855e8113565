package forward_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/workahead"
)

// runWorkers consumes "work" in group "workers", committing every record
// quickly, until the returned stop is called.
func runWorkers(t *testing.T, addr string) (stop func()) {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	g, err := sarama.NewConsumerGroup([]string{addr}, "workers", sc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{"work"}, markAll{}); err != nil && ctx.Err() == nil {
				t.Logf("workers: %v", err)
			}
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait(); g.Close() }) }
	t.Cleanup(stop)
	return stop
}

type markAll struct{}

func (markAll) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (markAll) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (markAll) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		s.MarkMessage(m, "")
	}
	return nil
}

func lane(c *workahead.Controller) workahead.LaneState { return c.Lanes()[0] }

// TestWorkAheadOnlyWhileIdle: with the workers of lane "work" idle, held
// heads bound for it are released early, marked ladder-early; when the lane
// gets busy (lag above the threshold) releases stop; when it is idle again
// they resume. Nothing released early is lost.
func TestWorkAheadOnlyWhileIdle(t *testing.T) {
	e := setup(t, 2)
	wa, err := workahead.New(workahead.Config{Lanes: map[string]string{"work": "workers"}, LagThreshold: 5,
		Rate: 20, Interval: 200 * time.Millisecond, Log: laddertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e.startForwarder(t, func(c *forward.Config) { c.WorkAhead = wa })
	stopWorkers := runWorkers(t, e.addr)

	const n = 200
	now := time.Now()
	var batch []schedule.Message
	due := map[string]time.Time{}
	for i := range n {
		at := now.Add(time.Minute + time.Duration(i)*100*time.Millisecond)
		key := fmt.Sprintf("w%03d", i)
		due[key] = at.Truncate(time.Millisecond)
		batch = append(batch, schedule.Message{Topic: "work", Key: []byte(key), Value: []byte("v"), At: at})
	}
	if err := e.scheduler(t).ScheduleBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	early := func(rs []laddertest.Received) []laddertest.Received {
		var out []laddertest.Received
		for _, r := range rs {
			if r.Headers[envelope.Early] != "" {
				out = append(out, r)
			}
		}
		return out
	}

	// Idle: early releases flow, each marked with how early it is.
	recs, ok := e.work.WaitFor(30*time.Second, func(rs []laddertest.Received) bool { return len(early(rs)) >= 20 })
	if !ok {
		t.Fatalf("%d early releases while the lane was idle, want ≥ 20 (lane %+v)", len(early(recs)), lane(wa))
	}
	for _, r := range early(recs) {
		ms, err := strconv.ParseInt(r.Headers[envelope.Early], 10, 64)
		d := due[string(r.Key)]
		if err != nil || ms <= 0 || !r.Timestamp.Before(d) || d.Sub(r.Timestamp) > time.Duration(ms+1000)*time.Millisecond {
			t.Errorf("%s: ladder-early=%q, forwarded %s before due", r.Key, r.Headers[envelope.Early], d.Sub(r.Timestamp))
		}
	}

	// Busy: the workers stop and the lane fills beyond the threshold.
	stopWorkers()
	p := laddertest.Producer(t, e.addr)
	for i := range 20 {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "work", Value: sarama.StringEncoder(fmt.Sprint("busy ", i))}); err != nil {
			t.Fatal(err)
		}
	}
	laddertest.Eventually(t, 10*time.Second, func() bool { l := lane(wa); return !l.Idle && l.Lag >= 20 }, "lane never seen busy: %+v", lane(wa))
	busy := lane(wa)
	laddertest.Eventually(t, 10*time.Second, func() bool { return lane(wa).Refreshes >= busy.Refreshes+5 }, "lag not read again")
	if l := lane(wa); l.Released != busy.Released || l.Idle {
		t.Fatalf("work-ahead went on while the lane was busy: released %d → %d, %+v", busy.Released, l.Released, l)
	}

	// Idle again: the workers catch up and releases resume.
	runWorkers(t, e.addr)
	laddertest.Eventually(t, 20*time.Second, func() bool { return lane(wa).Released > busy.Released+5 },
		"work-ahead did not resume once the lane was idle again: %+v", lane(wa))

	// Every head released early arrived.
	released := lane(wa).Released
	recs, ok = e.work.WaitFor(20*time.Second, func(rs []laddertest.Received) bool { return int64(len(early(rs))) >= released })
	if !ok {
		t.Fatalf("%d early records on the target, %d released", len(early(recs)), released)
	}
	t.Logf("work-ahead: %d released early while idle, none while busy (lag %d), resumed after", released, busy.Lag)
}
