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

// TestRebalanceJoinAndLeave moves partitions between two forwarders while
// heads are held: B joins (partitions move from A to B), then B leaves
// cleanly (they move back to A, which paused some of them before). Nothing
// is lost, nothing is early, and A's partitions are not left paused.
func TestRebalanceJoinAndLeave(t *testing.T) {
	e := setup(t, 6)
	fa, _ := e.startForwarder(t)
	s := e.scheduler(t)

	const n = 600
	r := rand.New(rand.NewPCG(3, 4))
	now := time.Now()
	want := make(map[string]schedule.Message, n)
	var batch []schedule.Message
	for i := range n {
		m := schedule.Message{Topic: "work", Key: []byte(fmt.Sprintf("r%03d", i)), Value: []byte("v"),
			At: now.Add(time.Second + time.Duration(r.Int64N(int64(18*time.Second))))}
		want[string(m.Key)] = m
		batch = append(batch, m)
	}
	if err := s.ScheduleBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	laddertest.Eventually(t, 30*time.Second, func() bool { return fa.Snapshot().Held > 0 }, "forwarder A holds no head")

	e.work.WaitFor(30*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= n/4 })
	fb, stopB := e.startForwarder(t, func(c *forward.Config) { c.Log = c.Log.With().Str("member", "B").Logger() })
	laddertest.Eventually(t, 30*time.Second, func() bool { return fb.Snapshot().Claimed > 0 }, "forwarder B never claimed a partition")

	// B forwards some of what comes due after it joined (records are due
	// until 19 s after scheduling); on a loaded machine its join can come
	// after half of them arrived, so this waits for B, not for a count.
	laddertest.Eventually(t, 30*time.Second, func() bool {
		s := fb.Snapshot()
		return s.Delivered+s.Forwarded > 0
	}, "forwarder B claimed partitions but forwarded nothing")
	stopB()

	recs := e.work.WaitDistinct(t, n, 60*time.Second)
	// Two rebalances may each add a session timeout's worth of delay
	// (the group pauses while it rebalances); nothing may be early.
	worst, median := checkArrivals(t, recs, want, 10*time.Second)
	t.Logf("%d messages across two rebalances: %d records (%d duplicates), lateness median %s worst %s; A %+v, B %+v",
		n, len(recs), len(recs)-n, median, worst, fa.Snapshot(), fb.Snapshot())
}
