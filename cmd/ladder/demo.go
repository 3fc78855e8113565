//go:build !nodev

package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/workahead"
	"github.com/ladder/ladder/pkg/worker"
)

// demoLanes are the work topics of `ladder dev --demo`: one lane of quick
// handlers, one of slow ones.
var demoLanes = []string{"work-fast", "work-slow"}

// demoTiers are the tiers of `ladder dev --demo` unless --tiers or
// LADDER_TIERS is given: short enough that every message comes back within
// two minutes, and every tier carries some (see demoMinDelay, demoMaxDelay).
const demoTiers = "1s,5s,20s,1m"

// demoLane describes a demo lane: its workers' simulated I/O and concurrency.
type demoLane struct {
	topic        string
	concurrency  int
	ioMin, ioMax time.Duration
	seed         int
}

var demoSetup = []demoLane{
	{topic: "work-fast", concurrency: 64, ioMin: 5 * time.Millisecond, ioMax: 30 * time.Millisecond, seed: 3000},
	{topic: "work-slow", concurrency: 32, ioMin: 100 * time.Millisecond, ioMax: 500 * time.Millisecond, seed: 1000},
}

// Demo messages come back after a random delay in this range, seeded ones
// too. With demoTiers a third of them enter through delay-1m, and each
// smaller tier carries what is left of the others: every tier moves.
const demoMinDelay, demoMaxDelay = 2 * time.Second, 90 * time.Second

// runDemo runs workers on the demo lanes that reschedule every message after
// a random delay, seeds them with messages, and prints a live status,
// redrawn in place when tty (stdout is a terminal), appended otherwise. It
// returns when ctx is done, or with an error when the workers stop.
func runDemo(ctx context.Context, cfg Config, l *tier.Ladder, reg prometheus.Gatherer, stdout io.Writer, tty bool, log zerolog.Logger) error {
	st := newDemoStats()
	var lanes []worker.Lane
	for _, d := range demoSetup {
		if !slices.Contains(cfg.DevTopics, d.topic) {
			continue
		}
		d := d
		lanes = append(lanes, worker.Lane{Topics: []string{d.topic}, Name: d.topic, Group: d.topic + "-workers",
			Concurrency: d.concurrency, Handler: func(ctx context.Context, m worker.Message) worker.Result {
				st.observe(d.topic, m, time.Now())
				io := d.ioMin + rand.N(d.ioMax-d.ioMin) // simulated I/O
				select {
				case <-time.After(io):
				case <-ctx.Done():
				}
				return worker.Reschedule(demoMinDelay + rand.N(demoMaxDelay-demoMinDelay))
			}})
	}
	if len(lanes) == 0 {
		return fmt.Errorf("demo: no demo lane among the work topics %v (want %v)", cfg.DevTopics, demoLanes)
	}
	w, err := worker.New(worker.Config{Kafka: cfg.Config, Ladder: l, Log: log}, lanes...)
	if err != nil {
		return err
	}
	workersDone := make(chan error, 1)
	go func() { workersDone <- w.Run(ctx) }()
	defer func() { <-workersDone }()

	s, err := schedule.New(schedule.Config{Ladder: l, Kafka: cfg.Config, Log: log})
	if err != nil {
		return err
	}
	seeded := 0
	var batch []schedule.Message
	for _, d := range demoSetup {
		if !slices.Contains(cfg.DevTopics, d.topic) {
			continue
		}
		for i := range d.seed {
			batch = append(batch, schedule.Message{Topic: d.topic, Key: []byte(fmt.Sprintf("%s-%d", d.topic, i)),
				Value: []byte("demo"), Delay: demoMinDelay + rand.N(demoMaxDelay-demoMinDelay)})
		}
		seeded += d.seed
	}
	err = s.ScheduleBatch(ctx, batch)
	s.Close()
	if err != nil {
		return fmt.Errorf("demo: seeding: %w", err)
	}
	fmt.Fprintf(stdout, "demo: seeded %d messages due in %s-%s; workers reschedule each one %s-%s after handling it. Status every 3s; Ctrl-C stops.\n\n",
		seeded, demoMinDelay, demoMaxDelay, demoMinDelay, demoMaxDelay)

	// The lanes' lag and members, read as work-ahead reads them, for the status.
	groups := map[string]string{}
	for _, ln := range lanes {
		groups[ln.Name] = ln.Group
	}
	sc, err := cfg.Config.Base()
	if err != nil {
		return err
	}
	reader, err := workahead.NewReader(cfg.BrokerList(), sc, groups)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer reader.Close()

	start := time.Now()
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	prev := w.Stats()
	prevAt := start
	out := &redraw{w: stdout, tty: tty, cols: func() int { return terminalWidth(stdout) }}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-workersDone:
			workersDone <- err // for the deferred wait
			return fmt.Errorf("demo workers stopped: %w", err)
		case now := <-tick.C:
			cur := w.Stats()
			out.show(demoStatus(now.Sub(start), l, cur, prev, now.Sub(prevAt), st, gather(reg), reader.Observe(), cfg.WorkaheadLagThreshold))
			prev, prevAt = cur, now
		}
	}
}

// redraw shows a status block: on a terminal in place of the previous one
// (cursor up over it, clear to the end of the screen), else appended.
type redraw struct {
	w    io.Writer
	tty  bool
	cols func() int // the terminal's width in columns (0: unknown)
	rows int        // terminal rows of the block shown last
}

func (r *redraw) show(block string) {
	if r.tty && r.rows > 0 {
		fmt.Fprintf(r.w, "\033[%dA\033[J", r.rows)
	}
	io.WriteString(r.w, block)
	cols := 0
	if r.cols != nil {
		cols = r.cols()
	}
	r.rows = rowsOf(block, cols)
}

// rowsOf is how many terminal rows block takes, its lines wrapped at cols
// columns (not wrapped when cols is 0). Each rune is taken as one column:
// the status is ASCII but for a few arrows and dashes.
func rowsOf(block string, cols int) int {
	rows := 0
	for line := range strings.Lines(block) {
		if !strings.HasSuffix(line, "\n") {
			break // the cursor stays on this row
		}
		n := utf8.RuneCountInString(strings.TrimSuffix(line, "\n"))
		if cols <= 0 || n <= cols {
			rows++
		} else {
			rows += (n + cols - 1) / cols
		}
	}
	return rows
}

// demoStats keeps recent lateness per lane (handler start minus due).
type demoStats struct {
	mu    sync.Mutex
	late  map[string][]time.Duration // ring of recent samples
	next  map[string]int
	early map[string]int64
}

func newDemoStats() *demoStats {
	return &demoStats{late: map[string][]time.Duration{}, next: map[string]int{}, early: map[string]int64{}}
}

const demoWindow = 4096

func (d *demoStats) observe(lane string, m worker.Message, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m.Envelope.Early > 0 {
		d.early[lane]++
		return
	}
	if m.Envelope.Due.IsZero() {
		return
	}
	ring := d.late[lane]
	if len(ring) < demoWindow {
		d.late[lane] = append(ring, m.Late(now))
		return
	}
	ring[d.next[lane]] = m.Late(now)
	d.next[lane] = (d.next[lane] + 1) % demoWindow
}

func (d *demoStats) percentiles(lane string) (p50, p99 time.Duration, n int) {
	d.mu.Lock()
	s := slices.Clone(d.late[lane])
	d.mu.Unlock()
	if len(s) == 0 {
		return 0, 0, 0
	}
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)], len(s)
}

// gather reads the metrics of the forwarder: name → label value → value,
// the label being the tier, target or lane, followed by "/" and the state
// for a metric with a state label.
func gather(g prometheus.Gatherer) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	mfs, err := g.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "ladder_") {
			continue
		}
		vals := map[string]float64{}
		for _, m := range mf.GetMetric() {
			var label, state string
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "tier", "target", "lane":
					label = lp.GetValue()
				case "state":
					state = "/" + lp.GetValue()
				}
			}
			label += state
			vals[label] += value(m)
		}
		out[mf.GetName()] = vals
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}

// demoStatus renders one status block: per lane its rate, totals, lag and
// workers (obs, read by the demo as work-ahead reads them), lateness, early
// count and work-ahead state (from the forwarder's metrics m: "off" when it
// does not run); per tier what it holds; then why records come back early.
func demoStatus(elapsed time.Duration, l *tier.Ladder, cur, prev []worker.Stats, dt time.Duration,
	st *demoStats, m map[string]map[string]float64, obs map[string]workahead.Observation, threshold int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "── ladder demo, %s ─────────────────────────────────────────────\n", elapsed.Round(time.Second))
	fmt.Fprintf(&b, "  %-10s %11s %8s %6s %7s %9s %8s %8s %6s  %s\n", "lane", "processed/s", "handled", "lag", "workers",
		"in flight", "late p50", "late p99", "early", "work-ahead")
	waOn := false
	for i, s := range cur {
		rate := float64(s.Handled-prev[i].Handled) / dt.Seconds()
		p50, p99, n := st.percentiles(s.Lane)
		p50s, p99s := "-", "-"
		if n > 0 {
			p50s, p99s = p50.Round(time.Millisecond).String(), p99.Round(time.Millisecond).String()
		}
		st.mu.Lock()
		early := st.early[s.Lane]
		st.mu.Unlock()
		lag, members := "-", "-"
		if o, ok := obs[s.Lane]; ok && o.Err == nil {
			lag = fmt.Sprint(o.Lag)
			if !o.Rebalancing {
				members = fmt.Sprint(o.Members)
			}
		}
		state := "off"
		for k, v := range m["ladder_workahead_lane_state"] {
			if lane, name, _ := strings.Cut(k, "/"); lane == s.Lane && v == 1 {
				state, waOn = name, true
			}
		}
		fmt.Fprintf(&b, "  %-10s %11.1f %8d %6s %7s %9d %8s %8s %6d  %s\n", s.Lane, rate, s.Handled,
			lag, members, s.InFlight, p50s, p99s, early, state)
	}
	fmt.Fprintf(&b, "  %-10s %9s %14s %9s\n", "tier", "pending", "next release", "forwarded")
	for _, t := range l.Topics() {
		next := "-"
		if v, ok := m["ladder_next_release_seconds"][t]; ok {
			next = "in " + time.Duration(v*float64(time.Second)).Round(100*time.Millisecond).String()
		}
		fmt.Fprintf(&b, "  %-10s %9.0f %14s %9.0f\n", t, m["ladder_pending_records"][t], next, m["ladder_forwarded_records_total"][t])
	}
	if waOn {
		fmt.Fprintf(&b, "  early: %.0f released before their due time by work-ahead. A lane is idle while its workers are there\n"+
			"  (a member in its group) and its lag is under %d; then its earliest held messages go ahead, marked ladder-early.\n"+
			"  Unattended (no worker) or busy lanes get everything on time. late: handler start minus due, on-time messages.\n",
			sum(m["ladder_workahead_releases_total"]), threshold)
	} else {
		b.WriteString("  work-ahead is off: nothing comes back early. late: handler start minus due.\n")
	}
	fmt.Fprintf(&b, "  dead letters: %.0f\n\n", sum(m["ladder_dead_lettered_records_total"]))
	return b.String()
}

func sum(m map[string]float64) float64 {
	var t float64
	for _, v := range m {
		t += v
	}
	return t
}
