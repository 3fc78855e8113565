package workahead_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/offsets"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/workahead"
	"github.com/ladder/ladder/pkg/worker/workertest"
)

// stateIs reports whether ladder_workahead_lane_state{lane, state} is 1.
func stateIs(t *testing.T, g prometheus.Gatherer, lane string, want workahead.State) bool {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ladder_workahead_lane_state" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["lane"] == lane && labels["state"] == want.String() {
				return m.GetGauge().GetValue() == 1
			}
		}
	}
	return false
}

// TestUnattendedLaneReleasesNothingEarly: a lane whose worker group has no
// member is unattended, not idle (DESIGN.md, "Idle work-ahead"). A record
// scheduled 90 s ahead is held, and stays held while the lane is read as
// unattended twenty times over: nothing reaches the lane, nothing is
// released early. A member of the group that reads another topic leaves the
// lane unattended too (a review saw one release the record). Once an idle
// worker of the lane joins the group, the record leaves early, marked
// ladder-early with about 90 s.
func TestUnattendedLaneReleasesNothingEarly(t *testing.T) {
	l, err := tier.Parse("1s,1m", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b := laddertest.Ladder(t, l, 2, "work", "other")
	k := laddertest.Kafka(b.Addr())
	reg := prometheus.NewRegistry()
	wa, err := workahead.New(workahead.Config{Lanes: map[string]string{"work": "workers"}, LagThreshold: 10, Rate: 100,
		Interval: 100 * time.Millisecond, Registerer: reg, Log: laddertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := forward.New(forward.Config{Ladder: l, Group: "ladder", Kafka: k, WorkAhead: wa, Log: laddertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fwd.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("forwarder: %v", err)
		}
	})
	work := laddertest.Collect(t, b.Addr(), "work")

	s, err := schedule.New(schedule.Config{Ladder: l, Kafka: k, Log: laddertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	due := time.Now().Add(90 * time.Second)
	err = s.Schedule(context.Background(), schedule.Message{Topic: "work", Key: []byte("k"), Value: []byte("v"), At: due})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}

	lane := func() workahead.LaneState { return wa.Lanes()[0] }
	laddertest.Eventually(t, 30*time.Second, func() bool { l := lane(); return l.Held == 1 && l.State == workahead.StateUnattended },
		"the record was never held with its lane unattended: %+v", lane())
	held := lane()
	laddertest.Eventually(t, 30*time.Second, func() bool { return lane().Refreshes >= held.Refreshes+20 },
		"the lane was not read again: %+v", lane())
	if l := lane(); l.Released != 0 || l.State != workahead.StateUnattended || l.Held != 1 || work.Len() != 0 {
		t.Fatalf("without a worker group member: released %d, state %s, held %d, %d records on the lane; want 0, unattended, 1, 0 (%+v)",
			l.Released, l.State, l.Held, work.Len(), l)
	}
	if !stateIs(t, reg, "work", workahead.StateUnattended) {
		t.Error(`ladder_workahead_lane_state{lane="work",state="unattended"} is not 1`)
	}
	t.Logf("unattended: %s", lane().Reason)

	// A member of the group that reads another topic only: still unattended.
	workertest.Idle(t, k, l, "workers", "other")
	sc, err := k.Base()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sarama.NewClusterAdmin(k.BrokerList(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	laddertest.Eventually(t, 30*time.Second, func() bool { return offsets.GroupStable(admin, "workers") },
		"the member reading another topic never joined the worker group")
	joined := lane()
	laddertest.Eventually(t, 30*time.Second, func() bool { return lane().Refreshes >= joined.Refreshes+20 },
		"the lane was not read again: %+v", lane())
	if l := lane(); l.Released != 0 || l.State != workahead.StateUnattended || l.Members != 0 || work.Len() != 0 {
		t.Fatalf("with a member reading another topic only: released %d, state %s, %d members, %d records on the lane; want 0, unattended, 0, 0 (%+v)",
			l.Released, l.State, l.Members, work.Len(), l)
	}

	// An idle worker of the lane joins: the record leaves early.
	workertest.Idle(t, k, l, "workers", "work")

	recs, ok := work.WaitFor(60*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= 1 })
	if !ok {
		t.Fatalf("the record never left early with an idle worker: %+v", lane())
	}
	early, err := strconv.ParseInt(recs[0].Headers[envelope.Early], 10, 64)
	if err != nil || time.Duration(early)*time.Millisecond < 30*time.Second || time.Duration(early)*time.Millisecond > 90*time.Second {
		t.Errorf("ladder-early=%q, want the time left of the 90 s (%v)", recs[0].Headers[envelope.Early], err)
	}
	if l := lane(); l.Released != 1 || l.Members != 1 {
		t.Errorf("with an idle worker: released %d, %d members; want 1, 1 (%+v)", l.Released, l.Members, l)
	}
	t.Logf("idle: %s; the record left %dms early", lane().Reason, early)
}
