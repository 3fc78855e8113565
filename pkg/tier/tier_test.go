package tier

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func mustParse(tb testing.TB, list string) *Ladder {
	tb.Helper()
	l, err := Parse(list, DefaultPrefix)
	if err != nil {
		tb.Fatalf("Parse(%q): %v", list, err)
	}
	return l
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		list   string
		topics string
		err    string
	}{
		{list: DefaultTiers, topics: "delay-1m,delay-15m,delay-1h,delay-6h"},
		{list: "6h, 1m ,1h,15m", topics: "delay-1m,delay-15m,delay-1h,delay-6h"},
		{list: "1s,90s,2d", topics: "delay-1s,delay-90s,delay-2d"},
		{list: "500ms,1500ms,36h", topics: "delay-500ms,delay-1500ms,delay-36h"},
		{list: "1h30m", topics: "delay-90m"},
		{list: "", err: "empty"},
		{list: "1m,,1h", err: "empty delay"},
		{list: "1x", err: `delay "1x"`},
		{list: "1m,60s", err: "appears twice"},
		{list: "-1m", err: "positive"},
		{list: "0s", err: "positive"},
		{list: "1500us", err: "whole number of milliseconds"},
		{list: "1.5d", err: "whole number of days"},
		{list: "1s,2s,1s", err: "appears twice"},
	} {
		t.Run(tc.list, func(t *testing.T) {
			l, err := Parse(tc.list, DefaultPrefix)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalidSpec) {
					t.Fatalf("Parse(%q) = %v, want ErrInvalidSpec containing %q", tc.list, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.list, err)
			}
			if got := strings.Join(l.Topics(), ","); got != tc.topics {
				t.Errorf("topics = %s, want %s", got, tc.topics)
			}
			again := mustParse(t, l.String())
			if again.String() != l.String() {
				t.Errorf("String() does not round-trip: %q → %q", l.String(), again.String())
			}
		})
	}
}

func TestTooManyTiers(t *testing.T) {
	var labels []string
	for i := 1; i <= MaxTiers+1; i++ {
		labels = append(labels, fmt.Sprintf("%ds", i))
	}
	if _, err := Parse(strings.Join(labels, ","), DefaultPrefix); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("want a too-many-tiers error, got %v", err)
	}
}

func TestPrefixAndDLQ(t *testing.T) {
	l, err := Parse("1m", "sched.")
	if err != nil {
		t.Fatal(err)
	}
	if l.DLQTopic() != "sched.dlq" || l.Topics()[0] != "sched.1m" {
		t.Errorf("got %s and %v", l.DLQTopic(), l.Topics())
	}
	for _, bad := range []string{"", "bad prefix", "ü-"} {
		if _, err := Parse("1m", bad); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
	if tr, ok := l.Lookup("sched.1m"); !ok || tr.Delay != time.Minute {
		t.Errorf("Lookup(sched.1m) = %v, %v", tr, ok)
	}
	if _, ok := l.Lookup("sched.dlq"); ok {
		t.Error("the dead-letter topic is not a tier")
	}
}

func TestLabel(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Second:            "1s",
		90 * time.Second:       "90s",
		15 * time.Minute:       "15m",
		time.Hour:              "1h",
		6 * time.Hour:          "6h",
		48 * time.Hour:         "2d",
		36 * time.Hour:         "36h",
		500 * time.Millisecond: "500ms",
	} {
		if got := Label(d); got != want {
			t.Errorf("Label(%s) = %s, want %s", d, got, want)
		}
	}
}

func TestValidateTopic(t *testing.T) {
	for name, ok := range map[string]bool{
		"work": true, "work-fast": true, "a.b_c-D9": true, strings.Repeat("x", 249): true,
		"": false, ".": false, "..": false, "a b": false, "a/b": false, strings.Repeat("x", 250): false,
	} {
		if err := ValidateTopic(name); (err == nil) != ok {
			t.Errorf("ValidateTopic(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestRoute(t *testing.T) {
	l := mustParse(t, DefaultTiers)
	now := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		remaining time.Duration
		want      string // "" = target
	}{
		{-time.Hour, ""},
		{0, ""},
		{time.Millisecond, "delay-1m"},
		{59 * time.Second, "delay-1m"},
		{time.Minute, "delay-1m"},
		{14*time.Minute + 59*time.Second, "delay-1m"},
		{15 * time.Minute, "delay-15m"},
		{59 * time.Minute, "delay-15m"},
		{time.Hour, "delay-1h"},
		{6 * time.Hour, "delay-6h"},
		{30 * day, "delay-6h"},
	} {
		next, ok := l.Route(now, now.Add(tc.remaining))
		got := ""
		if ok {
			got = next.Topic
		}
		if got != tc.want {
			t.Errorf("Route(remaining=%s) = %q, want %q", tc.remaining, got, tc.want)
		}
	}
}

func TestReleaseAt(t *testing.T) {
	tr := Tier{Delay: time.Minute}
	in := time.Unix(100, 0)
	if got := ReleaseAt(tr, in, time.Time{}); !got.Equal(in.Add(time.Minute)) {
		t.Errorf("no due: %v", got)
	}
	if got := ReleaseAt(tr, in, in.Add(10*time.Second)); !got.Equal(in.Add(10 * time.Second)) {
		t.Errorf("due before end of tier: %v", got)
	}
	if got := ReleaseAt(tr, in, in.Add(time.Hour)); !got.Equal(in.Add(time.Minute)) {
		t.Errorf("due after end of tier: %v", got)
	}
}

// maxHopsBelowLargest bounds the hops of any delay shorter than the largest
// tier: at most ceil(next/this)-1 passes through each tier below the largest,
// plus the final pass through the smallest.
func maxHopsBelowLargest(l *Ladder) int {
	ts := l.Tiers()
	n := 1
	for i := 0; i+1 < len(ts); i++ {
		n += int((ts[i+1].Delay+ts[i].Delay-1)/ts[i].Delay) - 1
	}
	return n
}

// TestHopsBounded checks the hop bound on random delays and prints the hop
// counts of the default ladder.
func TestHopsBounded(t *testing.T) {
	for _, list := range []string{DefaultTiers, "1s,5s,15s", "1m,1h", "90s,1h,1d"} {
		l := mustParse(t, list)
		largest := l.Largest().Delay
		bound := func(d time.Duration) int { return int(d/largest) + maxHopsBelowLargest(l) }
		r := rand.New(rand.NewPCG(1, uint64(len(list))))
		for range 100_000 {
			d := time.Duration(r.Int64N(int64(10*largest))) + 1
			if h := l.Hops(d); h < 1 || h > bound(d) {
				t.Fatalf("%s: Hops(%s) = %d, bound %d", list, d, h, bound(d))
			}
		}
	}
	l := mustParse(t, DefaultTiers)
	var b strings.Builder
	fmt.Fprintf(&b, "hops on the default ladder %s (bound below 6h: %d):\n", l, maxHopsBelowLargest(l))
	for _, d := range []time.Duration{30 * time.Second, time.Minute, 5 * time.Minute, 14*time.Minute + 59*time.Second,
		15 * time.Minute, 59*time.Minute + 59*time.Second, time.Hour, 5*time.Hour + 59*time.Minute + 59*time.Second,
		6 * time.Hour, day, 7 * day} {
		fmt.Fprintf(&b, "  %-10s %3d\n", d, l.Hops(d))
	}
	t.Log(b.String())
	if got := l.Hops(5*time.Hour + 59*time.Minute + 59*time.Second); got != maxHopsBelowLargest(l) {
		t.Errorf("the worst delay below 6h takes %d hops, bound says %d", got, maxHopsBelowLargest(l))
	}
}

// TestLadderNeverEarlyLatenessBounded simulates forwarders that release the
// head of each FIFO tier exactly when due (one partition per tier, so head of
// line blocking is at its worst) for random schedules, and checks the two
// routing invariants: no message reaches its target before its due time, and
// none arrives later than the smallest tier's delay.
func TestLadderNeverEarlyLatenessBounded(t *testing.T) {
	for _, list := range []string{DefaultTiers, "1s,5s,15s", "1m,1h", "10s,7m,2h"} {
		t.Run(list, func(t *testing.T) {
			l := mustParse(t, list)
			r := rand.New(rand.NewPCG(7, uint64(len(list))))
			maxLate := simulate(t, l, r, 20_000, 3*l.Largest().Delay)
			if maxLate > l.Smallest().Delay {
				t.Fatalf("max lateness %s exceeds the smallest tier %s", maxLate, l.Smallest().Delay)
			}
			t.Logf("%s: max lateness %s (bound %s)", list, maxLate, l.Smallest().Delay)
		})
	}
}

type simRecord struct {
	due     time.Time
	entered time.Time
}

type simEvent struct {
	at   time.Time
	tier int // -1: a new message scheduled
	rec  simRecord
}

type eventQueue []simEvent

func (q eventQueue) Len() int           { return len(q) }
func (q eventQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q eventQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)        { *q = append(*q, x.(simEvent)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

func simulate(t *testing.T, l *Ladder, r *rand.Rand, n int, maxDelay time.Duration) time.Duration {
	t.Helper()
	start := time.Unix(1_700_000_000, 0)
	queues := make([][]simRecord, len(l.Tiers()))
	armed := make([]bool, len(queues))
	var events eventQueue
	for range n {
		at := start.Add(time.Duration(r.Int64N(int64(maxDelay))))
		due := at.Add(time.Duration(r.Int64N(int64(maxDelay))))
		heap.Push(&events, simEvent{at: at, tier: -1, rec: simRecord{due: due}})
	}
	idx := func(tr Tier) int { i, _ := l.byName[tr.Topic]; return i }
	arm := func(i int, now time.Time) {
		if armed[i] || len(queues[i]) == 0 {
			return
		}
		h := queues[i][0]
		at := ReleaseAt(l.Tiers()[i], h.entered, h.due)
		if at.Before(now) {
			at = now
		}
		armed[i] = true
		heap.Push(&events, simEvent{at: at, tier: i})
	}
	var maxLate time.Duration
	delivered := 0
	hop := func(now time.Time, rec simRecord) {
		next, ok := l.Route(now, rec.due)
		if !ok {
			if now.Before(rec.due) {
				t.Fatalf("delivered %s early", rec.due.Sub(now))
			}
			maxLate = max(maxLate, now.Sub(rec.due))
			delivered++
			return
		}
		i := idx(next)
		queues[i] = append(queues[i], simRecord{due: rec.due, entered: now})
		arm(i, now)
	}
	for events.Len() > 0 {
		e := heap.Pop(&events).(simEvent)
		if e.tier < 0 {
			hop(e.at, e.rec)
			continue
		}
		head := queues[e.tier][0]
		queues[e.tier] = queues[e.tier][1:]
		armed[e.tier] = false
		hop(e.at, head)
		arm(e.tier, e.at)
	}
	if delivered != n {
		t.Fatalf("delivered %d of %d", delivered, n)
	}
	return maxLate
}

// FuzzRoute checks the routing rule on arbitrary ladders and times: a
// message goes to its target only when due, otherwise to a tier that fits
// the remaining time (or the smallest), and its release from that tier is
// never after its due time when the tier fits, never before it when not.
func FuzzRoute(f *testing.F) {
	f.Add(uint32(60), uint32(900), uint32(3600), int64(1_700_000_000_000), int64(90_000))
	f.Add(uint32(1), uint32(5), uint32(15), int64(0), int64(-1))
	f.Add(uint32(7), uint32(7), uint32(8), int64(1), int64(6_999))
	f.Fuzz(func(t *testing.T, a, b, c uint32, nowMs, remainingMs int64) {
		var delays []time.Duration
		for _, s := range []uint32{a, b, c} {
			if s%100_000 > 0 {
				delays = append(delays, time.Duration(s%100_000)*time.Second)
			}
		}
		l, err := New(delays, DefaultPrefix)
		if err != nil {
			return // duplicates or none: refused, fine
		}
		now := time.UnixMilli(nowMs % (1 << 50))
		due := now.Add(time.Duration(remainingMs%(1<<40)) * time.Millisecond)
		next, ok := l.Route(now, due)
		remaining := due.Sub(now)
		switch {
		case !ok && remaining > 0:
			t.Fatalf("delivered %s early", remaining)
		case ok && remaining <= 0:
			t.Fatalf("routed to %s although due", next.Topic)
		case ok && next.Delay > remaining && next != l.Smallest():
			t.Fatalf("routed to %s with only %s left", next.Topic, remaining)
		case ok:
			if _, known := l.Lookup(next.Topic); !known {
				t.Fatalf("routed to unknown topic %s", next.Topic)
			}
			if rel := ReleaseAt(next, now, due); rel.After(due) || rel.Before(now) {
				t.Fatalf("released at %s, due %s, entered %s", rel, due, now)
			}
		}
	})
}

func TestReadable(t *testing.T) {
	for d, want := range map[time.Duration]string{
		7 * day: "7d", 6 * time.Hour: "6h", 3962 * time.Second: "1h6m2s", 85*time.Hour + 48*time.Minute: "3d13h48m",
		1500 * time.Millisecond: "1.5s", 500 * time.Millisecond: "500ms", 0: "0s", -time.Minute: "-1m", day + time.Minute: "1d1m",
	} {
		if got := Readable(d); got != want {
			t.Errorf("Readable(%v) = %q, want %q", d, got, want)
		}
	}
}
