package bench

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/offsets"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

// PendingConfig configures the pending scenario: records due between DueMin
// and DueMax from now are loaded into the tiers up to each of Steps (a
// running total), and at each step a fresh `ladder run` process claims every
// tier partition and holds every head; its peak RSS is then read.
type PendingConfig struct {
	Steps         []int64       `json:"steps"`
	ValueBytes    int           `json:"value_bytes"`
	Tiers         string        `json:"tiers"`
	DueMin        time.Duration `json:"due_min_ns"`
	DueMax        time.Duration `json:"due_max_ns"`
	LoadProducers int           `json:"load_producers"`
	// Settle is how long the RSS is watched after every head is held.
	Settle  time.Duration `json:"settle_ns"`
	Timeout time.Duration `json:"timeout_ns"` // for the forwarder to hold every head
}

func (c *PendingConfig) setDefaults() {
	if len(c.Steps) == 0 {
		c.Steps = []int64{1_000_000, 5_000_000, 10_000_000}
	}
	slices.Sort(c.Steps)
	if c.ValueBytes <= 0 {
		c.ValueBytes = 100
	}
	if c.Tiers == "" {
		c.Tiers = "1m,15m,1h,6h"
	}
	if c.DueMin <= 0 {
		c.DueMin = time.Hour
	}
	if c.DueMax <= c.DueMin {
		c.DueMax = max(24*time.Hour, c.DueMin+time.Hour)
	}
	if c.LoadProducers <= 0 {
		c.LoadProducers = 4
	}
	if c.Settle <= 0 {
		c.Settle = 5 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Minute
	}
}

// PendingStep is the measurement at one backlog size.
type PendingStep struct {
	Pending int64            `json:"pending"`
	Load    loadStats        `json:"load"` // the records added for this step
	PerTier map[string]int64 `json:"per_tier"`
	// Partitions is the tier partitions claimed; Held those with a head
	// (every non-empty partition), all paused at the measurement.
	Partitions int64         `json:"partitions"`
	Held       int64         `json:"held"`
	ReadyAfter time.Duration `json:"ready_after_ns"` // process start → every head held
	// Forwarder (`ladder run`) peak and current RSS, KiB.
	HWMKiB int64 `json:"forwarder_hwm_kib"`
	RSSKiB int64 `json:"forwarder_rss_kib"`
	// The embedded broker's RSS (KiB) and data directory size (bytes); 0 on a real cluster.
	BrokerRSSKiB    int64 `json:"broker_rss_kib"`
	BrokerDiskBytes int64 `json:"broker_disk_bytes"`
}

// PendingResult is the pending scenario's outcome.
type PendingResult struct {
	Steps    []PendingStep `json:"steps"`
	LoadRate float64       `json:"load_records_per_s"`
	// Spread is (largest − smallest peak RSS) / smallest over the steps.
	Spread float64 `json:"rss_spread"`
}

// WriteTable implements Result.
func (r *PendingResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pending\tload s\tload rec/s\tpartitions\theld\tready s\tforwarder peak RSS MiB\tRSS MiB\tbroker RSS MiB\tbroker disk MiB\t")
	for _, s := range r.Steps {
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t\n", thousands(s.Pending), s.Load.Elapsed.Seconds(),
			thousands(int64(s.Load.Rate)), s.Partitions, s.Held, s.ReadyAfter.Seconds(), float64(s.HWMKiB)/1024,
			float64(s.RSSKiB)/1024, float64(s.BrokerRSSKiB)/1024, float64(s.BrokerDiskBytes)/(1<<20))
	}
	tw.Flush()
	if len(r.Steps) > 0 {
		last := r.Steps[len(r.Steps)-1]
		fmt.Fprintf(w, "\nper tier at %s pending:", thousands(last.Pending))
		for _, t := range slices.Sorted(maps.Keys(last.PerTier)) {
			fmt.Fprintf(w, " %s %s", t, thousands(last.PerTier[t]))
		}
		fmt.Fprintln(w)
	}
}

func pending(ctx context.Context, env *Env, c *PendingConfig, rep *Report) error {
	c.setDefaults()
	if env.Binary == "" {
		return fmt.Errorf("the pending scenario runs `ladder run` as a process: no ladder binary given")
	}
	res := &PendingResult{}
	rep.Result = res
	prefix := env.name("p") + "-"
	l, err := tier.Parse(c.Tiers, prefix)
	if err != nil {
		return err
	}
	if c.DueMin <= l.Smallest().Delay {
		return fmt.Errorf("due-min %s must exceed the smallest tier %s, or heads come due during the run", c.DueMin, l.Smallest().Delay)
	}
	target := prefix + "target"
	topics := ladderTopics(l)
	topics[target] = 0
	if env.BrokerDataDir != "" {
		// ~100 bytes of value, ~90 of headers and key, batch overhead: allow 300 per record.
		need := c.Steps[len(c.Steps)-1] * int64(c.ValueBytes+200)
		if free, err := freeBytes(env.BrokerDataDir); err == nil && free < need+(1<<30) {
			return fmt.Errorf("%s has %d MiB free; %s pending records need about %d MiB", env.BrokerDataDir, free>>20,
				thousands(c.Steps[len(c.Steps)-1]), need>>20)
		}
	}
	if err := createTopics(ctx, env, topics); err != nil {
		return err
	}
	defer func() {
		var names []string
		for t := range topics {
			names = append(names, t)
		}
		deleteTopics(env, names)
	}()
	client, err := connect(env)
	if err != nil {
		return err
	}
	defer client.Close()
	tps, err := offsets.Partitions(client, l.Topics()...)
	if err != nil {
		return err
	}

	val := value(c.ValueBytes)
	var loaded int64
	var loadTime time.Duration
	for i, step := range c.Steps {
		st, err := load(ctx, env, "loading "+thousands(step), loaded, step-loaded, c.LoadProducers, func(i int64) *sarama.ProducerMessage {
			now := time.Now()
			due := now.Add(c.DueMin + time.Duration(rand.Int64N(int64(c.DueMax-c.DueMin))))
			m, _ := schedule.Record(l, schedule.Message{Topic: target, Key: key("p", i), Value: val, At: due}, now)
			return m
		})
		if err != nil {
			return fmt.Errorf("loading %s pending records: %w", thousands(step), err)
		}
		loaded, loadTime = step, loadTime+st.Elapsed
		ps := PendingStep{Pending: step, Load: st, PerTier: map[string]int64{}}
		end, err := offsets.End(client, tps)
		if err != nil {
			return err
		}
		start, err := offsets.Start(client, tps)
		if err != nil {
			return err
		}
		for tp, e := range end {
			if n := e - start[tp]; n > 0 {
				ps.PerTier[tp.Topic] += n
				ps.Held++
			}
			ps.Partitions++
		}
		if err := measurePending(ctx, env, c, l, prefix+"ladder-"+strconv.Itoa(i+1), &ps); err != nil {
			return err
		}
		res.Steps = append(res.Steps, ps)
		env.note("%s pending: ladder run peak RSS %.1f MiB (ready after %.1f s)", thousands(step), float64(ps.HWMKiB)/1024, ps.ReadyAfter.Seconds())
	}
	res.LoadRate = float64(loaded) / loadTime.Seconds()
	lo, hi := res.Steps[0].HWMKiB, res.Steps[0].HWMKiB
	for _, s := range res.Steps {
		lo, hi = min(lo, s.HWMKiB), max(hi, s.HWMKiB)
	}
	res.Spread = float64(hi-lo) / float64(lo)
	last := res.Steps[len(res.Steps)-1]
	peak := float64(last.HWMKiB) / 1024
	rep.Goals = append(rep.Goals,
		Goal{Name: "forwarder peak RSS at " + thousands(last.Pending), Target: "≤ 64 MiB (at 10,000,000)", Value: peak, Unit: "MiB", Met: peak <= 64},
		Goal{Name: "RSS spread over the steps", Target: "≤ 10%", Value: 100 * res.Spread, Unit: "%", Met: res.Spread <= 0.10})
	rep.Summary = fmt.Sprintf("pending: ladder run peak RSS %s MiB at %s pending records (spread %.1f%% from %s); loaded at %s records/s",
		trimFloat(peak), thousands(last.Pending), 100*res.Spread, thousands(res.Steps[0].Pending), thousands(int64(res.LoadRate)))
	return nil
}

// measurePending starts `ladder run` in a new group, waits until it has
// claimed every tier partition and paused on every head, watches its RSS
// for Settle, and stops it.
func measurePending(ctx context.Context, env *Env, c *PendingConfig, l *tier.Ladder, group string, ps *PendingStep) error {
	t0 := time.Now()
	fwd, err := startForwarder(ctx, env, Process, l, group, 0)
	if err != nil {
		return err
	}
	defer func() {
		if err := fwd.stop(); err != nil {
			env.Log.Warn().Err(err).Msg("stopping ladder run")
		}
	}()
	prog := env.startProgress("ladder run holding heads", ps.Held)
	deadline := time.Now().Add(c.Timeout)
	for {
		m, err := scrape(ctx, fwd.metrics)
		if err == nil {
			prog.set(int64(m["ladder_paused_partitions"]))
			if int64(m["ladder_claimed_partitions"]) == ps.Partitions && int64(m["ladder_paused_partitions"]) == ps.Held {
				break
			}
		}
		if time.Now().After(deadline) {
			prog.finish()
			return fmt.Errorf("after %s ladder run holds %v of %d heads and claimed %v of %d partitions (%v)", c.Timeout,
				m["ladder_paused_partitions"], ps.Held, m["ladder_claimed_partitions"], ps.Partitions, err)
		}
		select {
		case <-ctx.Done():
			prog.finish()
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	prog.finish()
	ps.ReadyAfter = time.Since(t0)
	settle := time.After(c.Settle)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-settle:
			done = true
		case <-time.After(250 * time.Millisecond):
		}
		mem, err := fwd.proc.Memory()
		if err != nil {
			return err
		}
		ps.HWMKiB, ps.RSSKiB = max(ps.HWMKiB, mem.HWM), mem.RSS
	}
	if env.Broker != nil {
		if mem, err := env.Broker.Memory(); err == nil {
			ps.BrokerRSSKiB = mem.RSS
		}
		ps.BrokerDiskBytes = dirSize(env.BrokerDataDir)
	}
	return nil
}
