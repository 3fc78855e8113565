package inspect

import (
	"strings"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/worker/workertest"
)

func text(t *testing.T, r *Report) string {
	t.Helper()
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestInspectEmptyLadderAndWorkAhead: an empty ladder is one line, not a row
// of zeros per partition; the work-ahead lanes it is given show their state
// and why: unattended while the worker group has no member, idle once an
// idle worker joins. A pending record brings the table back.
func TestInspectEmptyLadderAndWorkAhead(t *testing.T) {
	l, err := tier.Parse("1s,5s", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b := laddertest.Ladder(t, l, 2, "work")
	in, err := New(Config{Ladder: l, Group: "nobody", Kafka: laddertest.Kafka(b.Addr()), Log: laddertest.Logger(t),
		WorkAheadLanes: map[string]string{"work": "workers"}, LagThreshold: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })

	r := inspect(t, in)
	out := text(t, r)
	t.Logf("empty ladder:\n%s", out)
	if !r.Empty() || strings.Contains(out, "TIER") || strings.Count(out, "\n") > 12 {
		t.Errorf("an empty ladder printed a table (Empty %v):\n%s", r.Empty(), out)
	}
	for _, w := range []string{
		"empty: nothing pending in 2 tiers (delay-1s delay-5s; 4 partitions)",
		"dead-letter delay-dlq: 0 records",
		"work: unattended: worker group workers has no member reading work: nobody consumes it, so nothing leaves early",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("lacks %q:\n%s", w, out)
		}
	}
	if len(r.WorkAhead) != 1 || r.WorkAhead[0] != (Lane{Lane: "work", Group: "workers", State: "unattended", Reason: r.WorkAhead[0].Reason}) {
		t.Errorf("work_ahead %+v", r.WorkAhead)
	}

	// An idle worker joins the lane's group.
	workertest.Idle(t, laddertest.Kafka(b.Addr()), l, "workers", "work")
	laddertest.Eventually(t, 30*time.Second, func() bool {
		r = inspect(t, in)
		return len(r.WorkAhead) == 1 && r.WorkAhead[0].State == "idle"
	}, "the lane never turned idle: %+v", r.WorkAhead)
	if out := text(t, r); !strings.Contains(out, "work: idle: 1 member, lag 0 < threshold 10: its earliest heads leave early") {
		t.Errorf("lacks the idle lane:\n%s", out)
	}

	// Something pending: the table is back.
	produce(t, b.Addr(), record{"delay-5s", 1, "work", time.Now().Add(time.Hour), time.Now()})
	r = inspect(t, in)
	if out := text(t, r); r.Empty() || !strings.Contains(out, "TIER") || !strings.Contains(out, "delay-5s  total  1") {
		t.Errorf("a pending record is not shown (Empty %v):\n%s", r.Empty(), out)
	}
}
