package forward_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

const testTiers = "1s,5s,15s"

type env struct {
	broker *laddertest.TestBroker
	addr   string
	ladder *tier.Ladder
	work   *laddertest.Collector
	dlq    *laddertest.Collector
}

func setup(t *testing.T, partitions int32) *env {
	t.Helper()
	l, err := tier.Parse(testTiers, tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b := laddertest.Ladder(t, l, partitions, "work")
	return &env{
		broker: b,
		addr:   b.Addr(),
		ladder: l,
		work:   laddertest.Collect(t, b.Addr(), "work"),
		dlq:    laddertest.Collect(t, b.Addr(), l.DLQTopic()),
	}
}

// startForwarder runs a forwarder until the test ends or stop is called;
// stop returns once it has stopped cleanly.
func (e *env) startForwarder(t *testing.T, mutate ...func(*forward.Config)) (f *forward.Forwarder, stop func()) {
	t.Helper()
	cfg := forward.Config{Ladder: e.ladder, Group: "ladder-test", Kafka: laddertest.Kafka(e.addr),
		Log: laddertest.Logger(t), ResumeLead: 200 * time.Millisecond}
	for _, m := range mutate {
		m(&cfg)
	}
	f, err := forward.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("forwarder stopped with %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Error("forwarder did not stop within 60s")
			}
		})
	}
	t.Cleanup(stop)
	return f, stop
}

func (e *env) scheduler(t *testing.T) *schedule.Scheduler {
	t.Helper()
	s, err := schedule.New(schedule.Config{Ladder: e.ladder, Kafka: laddertest.Kafka(e.addr), Log: laddertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// checkArrivals asserts that every expected key arrived, none before its due
// time, none later than maxLate, with its foreign headers intact. It returns
// the worst and median lateness.
func checkArrivals(t *testing.T, recs []laddertest.Received, want map[string]schedule.Message, maxLate time.Duration) (worst, median time.Duration) {
	t.Helper()
	got := laddertest.Distinct(recs)
	var lates []time.Duration
	for key, m := range want {
		r, ok := got[key]
		if !ok {
			t.Errorf("key %s never arrived", key)
			continue
		}
		due := m.At.Truncate(time.Millisecond)
		if r.Timestamp.Before(due) || r.At.Before(due) {
			t.Errorf("key %s early: due %s, forwarded %s, received %s", key, due.Format(time.StampMilli),
				r.Timestamp.Format(time.StampMilli), r.At.Format(time.StampMilli))
		}
		late := r.At.Sub(due)
		lates = append(lates, late)
		if late > maxLate {
			t.Errorf("key %s late by %s, more than %s", key, late, maxLate)
		}
		if string(r.Value) != string(m.Value) {
			t.Errorf("key %s value %q, want %q", key, r.Value, m.Value)
		}
		for _, h := range m.Headers {
			if r.Headers[string(h.Key)] != string(h.Value) {
				t.Errorf("key %s header %s = %q, want %q", key, h.Key, r.Headers[string(h.Key)], h.Value)
			}
		}
		if r.Headers[envelope.Target] != "work" || r.Headers[envelope.Due] != strconv.FormatInt(due.UnixMilli(), 10) {
			t.Errorf("key %s ladder headers %v", key, r.Headers)
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			t.Errorf("unexpected key %q arrived", key)
		}
	}
	if len(lates) == 0 {
		return 0, 0
	}
	slices.Sort(lates)
	return lates[len(lates)-1], lates[len(lates)/2]
}

// TestLadderEndToEnd schedules 1,000 messages with random delays from 0 to
// 20s over tiers 1s,5s,15s: all reach the target, none early, none later than
// the smallest tier plus 1s, foreign headers intact.
func TestLadderEndToEnd(t *testing.T) {
	e := setup(t, 4)
	f, _ := e.startForwarder(t)
	s := e.scheduler(t)

	r := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	want := make(map[string]schedule.Message, 1000)
	batch := make([]schedule.Message, 0, 1000)
	for i := range 1000 {
		delay := time.Duration(r.Int64N(int64(20 * time.Second)))
		m := schedule.Message{
			Topic: "work",
			Key:   []byte(fmt.Sprintf("k%04d", i)),
			Value: []byte(fmt.Sprintf("value %d", i)),
			Headers: []sarama.RecordHeader{
				{Key: []byte("trace-id"), Value: []byte(fmt.Sprintf("t-%d", i))},
				{Key: []byte("bin"), Value: []byte{0, 0xff, byte(i)}},
			},
			At: now.Add(delay),
		}
		want[string(m.Key)] = m
		batch = append(batch, m)
	}
	if err := s.ScheduleBatch(context.Background(), batch); err != nil {
		t.Fatalf("scheduling: %v", err)
	}
	recs := e.work.WaitDistinct(t, 1000, 45*time.Second)
	worst, median := checkArrivals(t, recs, want, e.ladder.Smallest().Delay+time.Second)
	snap := f.Snapshot()
	t.Logf("1000 messages: lateness median %s, worst %s; %d records on the target (%d duplicates); forwarder: %+v",
		median, worst, len(recs), len(recs)-1000, snap)
	if e.dlq.Len() != 0 {
		t.Errorf("%d records dead-lettered", e.dlq.Len())
	}
}
