package worker_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/worker"
)

// TestRescheduleRoundTripTwoLanes sends 1,000 messages around the loop
// process → tier → back on two lanes: the first visit reschedules each
// message after 0.5-3s (one in five to the other lane, with a header added),
// the second finishes it. Every message comes back once, on the right lane,
// never early, through at least one tier, with its key, value and headers.
func TestRescheduleRoundTripTwoLanes(t *testing.T) {
	e := setup(t, 4, "work-fast", "work-slow")
	e.forwarder(t)
	const perLane = 500
	seed(t, e.addr, "work-fast", perLane, func(i int) string { return fmt.Sprintf("f%03d", i) })
	seed(t, e.addr, "work-slow", perLane, func(i int) string { return fmt.Sprintf("s%03d", i) })

	type back struct {
		lane, value, orig, visit string
		late                     time.Duration
		hops                     int
	}
	var (
		mu       sync.Mutex
		returned = map[string]back{}
		visits   = map[string]int{}
	)
	handler := func(other string) worker.Handler {
		return func(ctx context.Context, m worker.Message) worker.Result {
			now := time.Now()
			mu.Lock()
			visits[string(m.Key)]++
			mu.Unlock()
			visit, _ := m.Header("visit")
			if visit == nil {
				res := worker.Reschedule(time.Duration(500+rand.IntN(2500)) * time.Millisecond).
					WithHeaders(append(m.Headers, sarama.RecordHeader{Key: []byte("visit"), Value: []byte("1")})...)
				if (m.Key[len(m.Key)-1]-'0')%5 == 0 {
					res = res.To(other)
				}
				return res
			}
			orig, _ := m.Header("orig")
			mu.Lock()
			returned[string(m.Key)] = back{lane: m.Topic, value: string(m.Value), orig: string(orig), visit: string(visit),
				late: m.Late(now), hops: m.Envelope.Hops}
			mu.Unlock()
			return worker.Done()
		}
	}
	w, _ := e.start(t, e.config(t),
		worker.Lane{Topics: []string{"work-fast"}, Group: "workers-fast", Handler: handler("work-slow")},
		worker.Lane{Topics: []string{"work-slow"}, Group: "workers-slow", Concurrency: 64, Handler: handler("work-fast")})

	count := func() int { mu.Lock(); defer mu.Unlock(); return len(returned) }
	waitFor(t, 90*time.Second, func() bool { return count() == 2*perLane },
		func() string {
			return fmt.Sprintf("messages back: %d of %d (stats %+v)", count(), 2*perLane, w.Stats())
		})

	mu.Lock()
	defer mu.Unlock()
	var worst time.Duration
	dups := 0
	for lane, prefix := range map[string]string{"work-fast": "f", "work-slow": "s"} {
		for i := range perLane {
			key := fmt.Sprintf("%s%03d", prefix, i)
			b, ok := returned[key]
			if !ok {
				t.Errorf("%s never came back", key)
				continue
			}
			wantLane := lane
			if (key[len(key)-1]-'0')%5 == 0 {
				wantLane = map[string]string{"work-fast": "work-slow", "work-slow": "work-fast"}[lane]
			}
			if b.lane != wantLane {
				t.Errorf("%s came back on %s, want %s", key, b.lane, wantLane)
			}
			if b.late < 0 {
				t.Errorf("%s came back %s early", key, -b.late)
			}
			if b.hops < 1 {
				t.Errorf("%s came back with %d hops, want ≥1 (through a tier)", key, b.hops)
			}
			if b.value != fmt.Sprintf("v%d", i) || b.orig != fmt.Sprint(i) || b.visit != "1" {
				t.Errorf("%s came back with value %q, orig %q, visit %q", key, b.value, b.orig, b.visit)
			}
			worst = max(worst, b.late)
			dups += visits[key] - 2
		}
	}
	mu.Unlock()
	rescheduled := func() int64 { st := w.Stats(); return st[0].Rescheduled + st[1].Rescheduled }
	waitFor(t, 10*time.Second, func() bool { return rescheduled() >= 2*perLane },
		func() string { return fmt.Sprintf("rescheduled %d, want ≥ %d", rescheduled(), 2*perLane) })
	mu.Lock()
	st := w.Stats()
	t.Logf("%d messages back, worst lateness %s, %d duplicate visits; stats %+v", len(returned), worst, dups, st)
}

// TestKeyOrder interleaves 20 keys × 50 records on one lane. In key-ordered
// mode, records of a key never run at the same time and run in offset order;
// without it, the same records do run concurrently (so the check would see
// a violation).
func TestKeyOrder(t *testing.T) {
	for _, ordered := range []bool{true, false} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			e := setup(t, 3, "work")
			const keys, perKey = 20, 50
			seed(t, e.addr, "work", keys*perKey, func(i int) string { return fmt.Sprintf("k%02d", i%keys) })

			var (
				mu      sync.Mutex
				seen    = map[string][]int{} // key → orig sequence in the order handled
				active  = map[string]int{}
				overlap = map[string]int{}
				total   atomic.Int64
			)
			h := func(ctx context.Context, m worker.Message) worker.Result {
				k := string(m.Key)
				orig, _ := m.Header("orig")
				var i int
				fmt.Sscan(string(orig), &i)
				mu.Lock()
				active[k]++
				overlap[k] = max(overlap[k], active[k])
				seen[k] = append(seen[k], i/keys)
				mu.Unlock()
				time.Sleep(time.Duration(1+rand.IntN(4)) * time.Millisecond)
				mu.Lock()
				active[k]--
				mu.Unlock()
				total.Add(1)
				return worker.Done()
			}
			e.start(t, e.config(t), worker.Lane{Topics: []string{"work"}, Handler: h, KeyOrdered: ordered, Concurrency: 256})
			waitFor(t, 60*time.Second, func() bool { return total.Load() >= keys*perKey },
				func() string { return fmt.Sprintf("handled %d of %d", total.Load(), keys*perKey) })

			mu.Lock()
			defer mu.Unlock()
			maxOverlap := 0
			for k, seqs := range seen {
				maxOverlap = max(maxOverlap, overlap[k])
				if !ordered {
					continue
				}
				if overlap[k] > 1 {
					t.Errorf("key %s: %d records ran at once", k, overlap[k])
				}
				for j, s := range seqs {
					if s != j {
						t.Errorf("key %s handled in order %v, want 0..%d", k, seqs, perKey-1)
						break
					}
				}
			}
			if !ordered && maxOverlap < 2 {
				t.Errorf("without key order, no two records of a key ran at once: the order check would not see a violation")
			}
			t.Logf("ordered=%v: most records of one key running at once: %d", ordered, maxOverlap)
		})
	}
}

// TestFailingHandlerDeadLetters: a handler that always fails is retried
// through the ladder (ladder-attempt counting up) and ends on the
// dead-letter topic after MaxAttempts with ladder-error and ladder-attempt;
// a panicking handler does the same; DeadLetter goes there at once, and so
// does a reschedule the ladder refuses (a tier as target would loop).
func TestFailingHandlerDeadLetters(t *testing.T) {
	e := setup(t, 2, "work")
	e.forwarder(t)
	dlq := laddertest.Collect(t, e.addr, e.ladder.DLQTopic())
	keys := []string{"fail", "panic", "bad", "loop", "ok"}
	seed(t, e.addr, "work", len(keys), func(i int) string { return keys[i] })

	var (
		mu    sync.Mutex
		calls = map[string][]worker.Message{}
	)
	h := func(ctx context.Context, m worker.Message) worker.Result {
		mu.Lock()
		calls[string(m.Key)] = append(calls[string(m.Key)], m)
		mu.Unlock()
		switch string(m.Key) {
		case "fail":
			return worker.Retry(errors.New("boom"))
		case "panic":
			panic("handler bug")
		case "bad":
			return worker.DeadLetter("bad input")
		case "loop":
			return worker.Reschedule(time.Second).To(e.ladder.Smallest().Topic)
		}
		return worker.Done()
	}
	const attempts = 3
	w, _ := e.start(t, e.config(t), worker.Lane{Topics: []string{"work"}, Handler: h, MaxAttempts: attempts,
		Backoff: func(int) time.Duration { return 300 * time.Millisecond }})

	recs, ok := dlq.WaitFor(60*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= 4 })
	if !ok {
		t.Fatalf("dead-letter topic has %d records, want 4", len(recs))
	}
	want := map[string]struct {
		errPart string
		attempt string
	}{
		"fail":  {"3 attempts failed; last: boom", "3"},
		"panic": {"handler panicked: handler bug", "3"},
		"bad":   {"bad input", "1"},
		"loop":  {"cannot reschedule: invalid message: target delay-1s is a topic of the ladder itself", "1"},
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range recs {
		k := string(r.Key)
		wt, ok := want[k]
		if !ok {
			t.Errorf("unexpected dead letter %s: %v", k, r.Headers)
			continue
		}
		delete(want, k)
		if !strings.Contains(r.Headers[envelope.Error], wt.errPart) {
			t.Errorf("%s: ladder-error %q, want it to contain %q", k, r.Headers[envelope.Error], wt.errPart)
		}
		if r.Headers[worker.AttemptHeader] != wt.attempt {
			t.Errorf("%s: ladder-attempt %q, want %s", k, r.Headers[worker.AttemptHeader], wt.attempt)
		}
		if r.Headers[envelope.Target] != "work" || r.Headers["orig"] == "" || string(r.Value) == "" {
			t.Errorf("%s: dead letter lost its target, headers or value: %v %q", k, r.Headers, r.Value)
		}
		if n, _ := fmt.Sscan(r.Headers[worker.AttemptHeader], new(int)); n != 1 {
			t.Errorf("%s: ladder-attempt is not decimal", k)
		}
		cs := calls[k]
		if got := fmt.Sprint(len(cs)); got != wt.attempt {
			t.Errorf("%s: handled %s times, want %s", k, got, wt.attempt)
		}
		for i, m := range cs {
			if m.Attempt != i+1 {
				t.Errorf("%s: call %d saw attempt %d", k, i+1, m.Attempt)
			}
			if i > 0 && m.Envelope.Hops < 1 {
				t.Errorf("%s: retry %d did not go through the ladder (hops %d)", k, i, m.Envelope.Hops)
			}
			if _, ok := m.Header(worker.AttemptHeader); ok {
				t.Errorf("%s: ladder-attempt shows among the message's own headers", k)
			}
		}
	}
	for k := range want {
		t.Errorf("%s never reached the dead-letter topic", k)
	}
	// The dead letters are read back before the worker may have processed
	// their acknowledgements: wait for its totals.
	waitFor(t, 10*time.Second, func() bool {
		st := w.Stats()[0]
		return st.Panics == attempts && st.DeadLettered == 4 && st.Retried == 2*(attempts-1) && st.Done == 1 && st.InFlight == 0
	}, func() string {
		return fmt.Sprintf("stats %+v: want %d panics, 4 dead letters, %d retries, 1 done", w.Stats()[0], attempts, 2*(attempts-1))
	})
}

// TestSlowLaneDoesNotHoldUpFast gives the fast lane the same backlog twice
// in one process: first beside an idle slow lane (the baseline), then beside
// a saturated one (every slow handler blocks until cancelled). The second
// run takes at most 3 × the baseline + 0.5s, and the slow lane stays
// saturated meanwhile. Stopping then cancels the blocked handlers after
// ShutdownTimeout and Run returns.
func TestSlowLaneDoesNotHoldUpFast(t *testing.T) {
	e := setup(t, 4, "work-fast", "work-slow")
	const fastN, slowN, slowConc = 3000, 100, 8

	var cancelled atomic.Int64
	slow := func(ctx context.Context, m worker.Message) worker.Result {
		<-ctx.Done()
		cancelled.Add(1)
		return worker.Retry(ctx.Err())
	}
	fast := func(ctx context.Context, m worker.Message) worker.Result {
		time.Sleep(2 * time.Millisecond)
		return worker.Done()
	}
	cfg := e.config(t)
	cfg.ShutdownTimeout = time.Second
	w, stop := e.start(t, cfg,
		worker.Lane{Topics: []string{"work-slow"}, Concurrency: slowConc, Handler: slow},
		worker.Lane{Topics: []string{"work-fast"}, Concurrency: 64, Handler: fast})

	// fastRun seeds the fast backlog and returns how long it took to be
	// handled (seeding included).
	fastRun := func(name string) time.Duration {
		t.Helper()
		want := w.Stats()[1].Done + fastN
		began := time.Now()
		seed(t, e.addr, "work-fast", fastN, func(i int) string { return fmt.Sprintf("%s%d", name, i) })
		waitFor(t, 60*time.Second, func() bool { return w.Stats()[1].Done >= want },
			func() string {
				return fmt.Sprintf("%s: fast lane handled %d of %d (stats %+v)", name, w.Stats()[1].Done-want+fastN, fastN, w.Stats())
			})
		return time.Since(began)
	}

	// Both lanes joined their groups: the baseline measures handling only.
	waitFor(t, 30*time.Second, func() bool { st := w.Stats(); return st[0].Claimed == 4 && st[1].Claimed == 4 },
		func() string { return fmt.Sprintf("lanes never claimed their partitions: %+v", w.Stats()) })
	idle := fastRun("idle")
	if s := w.Stats()[0]; s.Handled != 0 || s.Running != 0 {
		t.Fatalf("slow lane not idle during the baseline: %+v", s)
	}
	seed(t, e.addr, "work-slow", slowN, func(i int) string { return fmt.Sprintf("s%d", i) })
	waitFor(t, 30*time.Second, func() bool { return w.Stats()[0].Running == slowConc },
		func() string { return fmt.Sprintf("slow lane never saturated: %+v", w.Stats()[0]) })
	busy := fastRun("busy")
	if s := w.Stats()[0]; s.Running != slowConc || s.Handled != 0 {
		t.Errorf("slow lane not saturated while the fast one ran: %+v", s)
	}
	t.Logf("fast lane, %d messages (seeding included): %s beside an idle slow lane, %s beside a saturated one",
		fastN, idle.Round(time.Millisecond), busy.Round(time.Millisecond))
	if limit := 3*idle + 500*time.Millisecond; busy > limit {
		t.Errorf("fast lane took %s beside a saturated slow lane, more than 3 × %s + 0.5s = %s", busy, idle, limit)
	}

	began := time.Now()
	stop()
	if took := time.Since(began); took > 30*time.Second {
		t.Errorf("stopping took %s with ShutdownTimeout 1s", took)
	}
	if cancelled.Load() != slowConc {
		t.Errorf("%d slow handlers saw their ctx cancelled, want %d", cancelled.Load(), slowConc)
	}
	t.Logf("stopped in %s", time.Since(began).Round(time.Millisecond))
}

// TestGracefulStopCommits stops a worker mid-backlog: running handlers
// finish (their ctx is not cancelled), their offsets are committed, and a
// new worker in the same group handles the rest: every message exactly once.
func TestGracefulStopCommits(t *testing.T) {
	e := setup(t, 4, "work")
	const n = 600
	seed(t, e.addr, "work", n, func(i int) string { return fmt.Sprintf("g%03d", i) })
	var (
		mu          sync.Mutex
		handled     = map[string]int{}
		interrupted atomic.Int64
	)
	h := func(ctx context.Context, m worker.Message) worker.Result {
		time.Sleep(100 * time.Millisecond)
		if ctx.Err() != nil {
			interrupted.Add(1)
		}
		mu.Lock()
		handled[string(m.Key)]++
		mu.Unlock()
		return worker.Done()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(handled) }
	lane := worker.Lane{Topics: []string{"work"}, Group: "workers-graceful", Concurrency: 16, Handler: h}

	w1, stop1 := e.start(t, e.config(t), lane)
	waitFor(t, 60*time.Second, func() bool { return count() >= n/6 }, func() string { return fmt.Sprintf("first worker handled %d", count()) })
	if r := w1.Stats()[0].Running; r == 0 {
		t.Fatalf("no handler running when stopping: nothing to drain")
	}
	stop1()
	if s := w1.Stats()[0]; s.Running != 0 || s.InFlight != 0 {
		t.Errorf("after stop, running %d, in flight %d", s.Running, s.InFlight)
	}
	stoppedAt := count()
	if stoppedAt >= n {
		t.Fatalf("first worker handled all %d before it was stopped", n)
	}

	e.start(t, e.config(t), lane)
	waitFor(t, 60*time.Second, func() bool { return count() >= n }, func() string { return fmt.Sprintf("handled %d of %d", count(), n) })
	mu.Lock()
	defer mu.Unlock()
	for k, c := range handled {
		if c != 1 {
			t.Errorf("%s handled %d times", k, c)
		}
	}
	if interrupted.Load() != 0 {
		t.Errorf("%d handlers saw their ctx cancelled during a graceful stop", interrupted.Load())
	}
	t.Logf("stopped after %d of %d, restarted, all handled exactly once", stoppedAt, n)
}

// TestSIGKILLLosesNothing kills a worker process with SIGKILL while it is
// relaying a backlog (each message: reschedule through the ladder, then on
// to topic sink), starts another, and checks every message reached sink.
func TestSIGKILLLosesNothing(t *testing.T) {
	e := setup(t, 4, "work", "sink")
	e.forwarder(t)
	sink := laddertest.Collect(t, e.addr, "sink")
	const n = 2000
	seed(t, e.addr, "work", n, func(i int) string { return fmt.Sprintf("x%04d", i) })
	settings := childSettings{Mode: "relay", Addr: e.addr, Tiers: testTiers, Lane: "work", Concurrency: 16}

	first := startChild(t, settings)
	recs, ok := sink.WaitFor(90*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= n/2 })
	if !ok {
		t.Fatalf("sink has %d records before the kill, want %d", len(recs), n/2)
	}
	offsets := committed(t, e.addr, "workers-child", "work")
	if err := first.signal(t, syscall.SIGKILL, 10*time.Second); err == nil {
		t.Fatal("worker process exited cleanly on SIGKILL?")
	}
	killedAt := len(laddertest.Distinct(sink.Records()))
	if killedAt >= n {
		t.Fatalf("all %d messages relayed before the kill: test proves nothing", n)
	}

	second := startChild(t, settings)
	recs = sink.WaitDistinct(t, n, 120*time.Second)
	if err := second.signal(t, syscall.SIGTERM, 60*time.Second); err != nil {
		t.Errorf("second worker process did not stop cleanly: %v", err)
	}
	t.Logf("killed after %d of %d relayed (committed offsets of the lane then: %v); all %d arrived, %d duplicates",
		killedAt, n, offsets, n, len(recs)-n)
}

// TestRebalanceHandsOverCleanly starts a second worker in the same group
// mid-backlog: the first one's partitions are revoked, their running
// handlers finish and are committed before the new owner starts, so every
// message is handled exactly once, and both workers take part.
func TestRebalanceHandsOverCleanly(t *testing.T) {
	e := setup(t, 6, "work")
	const n = 2000
	seed(t, e.addr, "work", n, func(i int) string { return fmt.Sprintf("r%04d", i) })
	var (
		mu      sync.Mutex
		handled = map[string]int{}
	)
	h := func(ctx context.Context, m worker.Message) worker.Result {
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		handled[string(m.Key)]++
		mu.Unlock()
		return worker.Done()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(handled) }
	lane := worker.Lane{Topics: []string{"work"}, Group: "workers-rebalance", Concurrency: 16, Handler: h}

	a, _ := e.start(t, e.config(t), lane)
	waitFor(t, 60*time.Second, func() bool { return count() >= n/8 }, func() string { return fmt.Sprintf("A handled %d", count()) })
	b, _ := e.start(t, e.config(t), lane)
	waitFor(t, 90*time.Second, func() bool { return count() >= n }, func() string {
		return fmt.Sprintf("handled %d of %d; A %+v, B %+v", count(), n, a.Stats()[0], b.Stats()[0])
	})
	mu.Lock()
	defer mu.Unlock()
	for k, c := range handled {
		if c != 1 {
			t.Errorf("%s handled %d times", k, c)
		}
	}
	sa, sb := a.Stats()[0], b.Stats()[0]
	if sb.Handled == 0 {
		t.Errorf("B joined but handled nothing (A %+v, B %+v)", sa, sb)
	}
	t.Logf("A handled %d, B %d; each message once", sa.Handled, sb.Handled)
}
