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

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/worker"
)

// demoLanes are the work topics of `ladder dev --demo`: one lane of quick
// handlers, one of slow ones.
var demoLanes = []string{"work-fast", "work-slow"}

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

// Demo messages come back after a random delay in this range.
const demoMinDelay, demoMaxDelay = 3 * time.Second, time.Minute

// runDemo runs workers on the demo lanes that reschedule every message after
// a random delay, seeds them with messages, and prints a live status.
func runDemo(ctx context.Context, cfg Config, l *tier.Ladder, reg prometheus.Gatherer, stdout io.Writer, log zerolog.Logger) error {
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
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if err := w.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error().Err(err).Msg("demo workers stopped")
		}
	})

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
				Value: []byte("demo"), Delay: rand.N(30 * time.Second)})
		}
		seeded += d.seed
	}
	err = s.ScheduleBatch(ctx, batch)
	s.Close()
	if err != nil {
		return fmt.Errorf("demo: seeding: %w", err)
	}
	fmt.Fprintf(stdout, "demo: seeded %d messages due within 30s; workers reschedule each one %s-%s after handling it. Status every 3s; Ctrl-C stops.\n\n",
		seeded, demoMinDelay, demoMaxDelay)

	start := time.Now()
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	prev := w.Stats()
	prevAt := start
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			cur := w.Stats()
			printDemoStatus(stdout, now.Sub(start), l, cur, prev, now.Sub(prevAt), st, gather(reg))
			prev, prevAt = cur, now
		}
	}
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

// gather reads the metrics of the forwarder: name → label value → value.
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
			var label string
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "tier" || lp.GetName() == "target" {
					label = lp.GetValue()
				}
			}
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

func printDemoStatus(w io.Writer, elapsed time.Duration, l *tier.Ladder, cur, prev []worker.Stats, dt time.Duration,
	st *demoStats, m map[string]map[string]float64) {
	var b strings.Builder
	fmt.Fprintf(&b, "── ladder demo, %s ─────────────────────────────────────────────\n", elapsed.Round(time.Second))
	fmt.Fprintf(&b, "  %-10s %12s %9s %6s %9s %9s %9s %7s\n", "lane", "processed/s", "handled", "lag", "in flight", "late p50", "late p99", "early")
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
		// The lag as work-ahead last read it; "?" when that read failed or
		// none was made (work-ahead off, Kafka unreachable).
		lag := "?"
		if m["ladder_workahead_lane_lag_ok"][s.Lane] == 1 {
			lag = fmt.Sprintf("%.0f", m["ladder_workahead_lane_lag"][s.Lane])
		}
		fmt.Fprintf(&b, "  %-10s %12.1f %9d %6s %9d %9s %9s %7d\n", s.Lane, rate, s.Handled,
			lag, s.InFlight, p50s, p99s, early)
	}
	fmt.Fprintf(&b, "  %-10s %9s %14s %9s\n", "tier", "pending", "next release", "forwarded")
	for _, t := range l.Topics() {
		next := "-"
		if v, ok := m["ladder_next_release_seconds"][t]; ok {
			next = "in " + time.Duration(v*float64(time.Second)).Round(100*time.Millisecond).String()
		}
		fmt.Fprintf(&b, "  %-10s %9.0f %14s %9.0f\n", t, m["ladder_pending_records"][t], next, m["ladder_forwarded_records_total"][t])
	}
	fmt.Fprintf(&b, "  early releases by work-ahead: %.0f   dead letters: %.0f\n\n",
		sum(m["ladder_workahead_releases_total"]), sum(m["ladder_dead_lettered_records_total"]))
	io.WriteString(w, b.String())
}

func sum(m map[string]float64) float64 {
	var t float64
	for _, v := range m {
		t += v
	}
	return t
}
