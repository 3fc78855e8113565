package forward_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/schedule"
)

// TestExactlyOnceEndToEnd: in exactly-once mode, messages with random
// delays cross the tiers in transactions; a read_committed consumer of the
// target sees each exactly once, none early.
func TestExactlyOnceEndToEnd(t *testing.T) {
	e := setup(t, 3)
	committed := laddertest.CollectCommitted(t, e.addr, "work")
	f, _ := e.startForwarder(t, func(c *forward.Config) {
		c.ExactlyOnce = true
		c.TxnInterval = 50 * time.Millisecond
	})
	s := e.scheduler(t)
	const n = 500
	r := rand.New(rand.NewPCG(5, 6))
	now := time.Now()
	want := map[string]schedule.Message{}
	var batch []schedule.Message
	for i := range n {
		m := schedule.Message{Topic: "work", Key: []byte(fmt.Sprintf("x%03d", i)), Value: []byte("v"),
			At: now.Add(time.Duration(r.Int64N(int64(12 * time.Second))))}
		want[string(m.Key)] = m
		batch = append(batch, m)
	}
	if err := s.ScheduleBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	recs := committed.WaitDistinct(t, n, 40*time.Second)
	worst, median := checkArrivals(t, recs, want, e.ladder.Smallest().Delay+time.Second)
	if len(recs) != n {
		t.Errorf("read_committed saw %d records for %d messages", len(recs), n)
	}
	t.Logf("exactly-once: %d messages, %d records seen; lateness median %s worst %s; %+v", n, len(recs), median, worst, f.Snapshot())
}
