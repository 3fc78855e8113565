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

	"github.com/ladder/ladder/pkg/control"
	"github.com/ladder/ladder/pkg/offsets"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

// Pending spreads: which tiers the pending records are written to.
const (
	// SpreadTiers writes every tier an equal share, due DueMax (a day)
	// ahead, so every tier partition holds a head and its read-ahead: the
	// worst case for the forwarder's memory. The smallest tier's share is
	// written last, since a tier holds a record only its delay past its
	// timestamp (a minute for 1m): the step fails if ladder run forwards
	// anything before the measurement ends.
	SpreadTiers = "tiers"
	// SpreadRoute writes each record where the scheduler would: due
	// uniformly between DueMin and DueMax ahead (1h-24h: the 1h and 6h
	// tiers of the default ladder).
	SpreadRoute = "route"
)

// PendingConfig configures the pending scenario: for each count of
// Partitions per tier and each of Steps, on fresh topics, that many records
// due hours ahead are loaded into the tiers (as Spread says), and a fresh
// `ladder run` process claims every tier partition and holds every head;
// its peak RSS is then read. With Drain, the last step's process then
// forwards the whole backlog, made due, and its RSS is read while it
// drains.
type PendingConfig struct {
	Steps []int64 `json:"steps"`
	// Spread is SpreadTiers (default) or SpreadRoute.
	Spread string `json:"spread"`
	// Partitions is the partitions of every tier topic (and of the target
	// and dead-letter topics); the steps run once for each (default 6, 24
	// and 48).
	Partitions    []int32       `json:"partitions_per_tier"`
	ValueBytes    int           `json:"value_bytes"`
	Tiers         string        `json:"tiers"`
	DueMin        time.Duration `json:"due_min_ns"`
	DueMax        time.Duration `json:"due_max_ns"`
	LoadProducers int           `json:"load_producers"`
	// Settle is how long the RSS is watched after every head is held.
	Settle  time.Duration `json:"settle_ns"`
	Timeout time.Duration `json:"timeout_ns"` // for the forwarder to hold every head
	// Drain, after the last step: a drain command for every tier on the
	// control topic (what `ladder drain` writes) makes every pending record
	// due now, and the RSS is watched until all reached the target.
	Drain        bool          `json:"drain"`
	DrainTimeout time.Duration `json:"drain_timeout_ns"`
}

func (c *PendingConfig) setDefaults() {
	if len(c.Steps) == 0 {
		c.Steps = []int64{1_000_000, 10_000_000}
	}
	slices.Sort(c.Steps)
	if len(c.Partitions) == 0 {
		c.Partitions = []int32{6, 24, 48}
	}
	if c.Spread == "" {
		c.Spread = SpreadTiers
	}
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
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 30 * time.Minute
	}
}

// PendingStep is the measurement at one backlog size.
type PendingStep struct {
	// PartitionsPerTier is the partitions of each tier topic.
	PartitionsPerTier int32            `json:"partitions_per_tier"`
	Pending           int64            `json:"pending"`
	Load              loadStats        `json:"load"` // the records added for this step
	PerTier           map[string]int64 `json:"per_tier"`
	// Partitions is the tier partitions claimed; Held those with a head
	// (every non-empty partition), all paused at the measurement.
	Partitions int64         `json:"partitions"`
	Held       int64         `json:"held"`
	ReadyAfter time.Duration `json:"ready_after_ns"` // process start → every head held
	// Forwarded is what ladder run forwarded before the measurement ended
	// (ladder_forwarded_records_total): 0, or heads came due during it.
	Forwarded int64 `json:"forwarded"`
	// Forwarder (`ladder run`) peak RSS (VmHWM), the largest VmRSS sampled
	// (every 200-250 ms from its start), and the VmRSS at the end, KiB.
	HWMKiB     int64 `json:"forwarder_hwm_kib"`
	SampledKiB int64 `json:"forwarder_rss_sampled_max_kib"`
	RSSKiB     int64 `json:"forwarder_rss_kib"`
	// The broker's RSS (KiB; embedded, or a real one watched with
	// --broker-pid) and the embedded broker's data directory size (bytes).
	BrokerRSSKiB    int64 `json:"broker_rss_kib"`
	BrokerDiskBytes int64 `json:"broker_disk_bytes"`
}

// PendingDrain is the last step's `ladder run` forwarding its whole backlog.
type PendingDrain struct {
	PartitionsPerTier int32         `json:"partitions_per_tier"`
	Records           int64         `json:"records"`
	Elapsed           time.Duration `json:"elapsed_ns"` // drain command → every record at the target
	Rate              float64       `json:"records_per_s"`
	// SampledKiB is the largest VmRSS sampled while draining, HWMKiB the
	// process's VmHWM after (its peak over holding and draining), KiB.
	SampledKiB int64 `json:"forwarder_rss_sampled_max_kib"`
	HWMKiB     int64 `json:"forwarder_hwm_kib"`
	RSSKiB     int64 `json:"forwarder_rss_kib"`
}

// PendingResult is the pending scenario's outcome.
type PendingResult struct {
	Steps  []PendingStep  `json:"steps"`
	Drains []PendingDrain `json:"drains,omitempty"`
	// Load is every record loaded, over all partition counts.
	Load     loadStats `json:"load"`
	LoadRate float64   `json:"load_records_per_s"`
	// Spreads is, per partition count, (largest − smallest peak RSS) /
	// smallest over the steps; Spread the largest of them.
	Spreads map[int32]float64 `json:"rss_spread_by_partitions"`
	Spread  float64           `json:"rss_spread"`
	// Growths is, per partition count, the peak RSS at the largest step
	// over the peak at the smallest, minus 1 (negative: it fell); Growth the
	// largest of them: what memory does as the backlog grows.
	Growths map[int32]float64 `json:"rss_growth_by_partitions"`
	Growth  float64           `json:"rss_growth"`
}

// WriteTable implements Result.
func (r *PendingResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "per tier\tpending\tload s\tload rec/s\tKiB/batch\tpartitions\theld\tready s\tforwarder peak RSS MiB\tsampled max\tend\tbroker RSS MiB\tbroker disk MiB\t")
	for _, s := range r.Steps {
		fmt.Fprintf(tw, "%d\t%s\t%.1f\t%s\t%.0f\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t\n", s.PartitionsPerTier, thousands(s.Pending),
			s.Load.Elapsed.Seconds(), thousands(int64(s.Load.Rate)), s.Load.BatchBytes/1024, s.Partitions, s.Held, s.ReadyAfter.Seconds(),
			mib(s.HWMKiB), mib(s.SampledKiB), mib(s.RSSKiB), mib(s.BrokerRSSKiB), float64(s.BrokerDiskBytes)/(1<<20))
	}
	tw.Flush()
	if len(r.Drains) > 0 {
		fmt.Fprintln(w, "\nthe backlog made due and drained by the last step's ladder run:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "per tier\trecords\tdrain s\trecords/s\tsampled max RSS MiB\tpeak RSS (VmHWM) MiB\tend\t")
		for _, d := range r.Drains {
			fmt.Fprintf(tw, "%d\t%s\t%.1f\t%s\t%.1f\t%.1f\t%.1f\t\n", d.PartitionsPerTier, thousands(d.Records), d.Elapsed.Seconds(),
				thousands(int64(d.Rate)), mib(d.SampledKiB), mib(d.HWMKiB), mib(d.RSSKiB))
		}
		tw.Flush()
	}
	if len(r.Steps) > 0 {
		last := r.Steps[len(r.Steps)-1]
		fmt.Fprintf(w, "\nrecords per tier at the last step (%s pending, %d partitions per tier):", thousands(last.Pending), last.PartitionsPerTier)
		for _, t := range slices.Sorted(maps.Keys(last.PerTier)) {
			fmt.Fprintf(w, " %s %s", t, thousands(last.PerTier[t]))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "load: %s\n", r.Load)
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

func pending(ctx context.Context, env *Env, c *PendingConfig, rep *Report) error {
	c.setDefaults()
	if env.Binary == "" {
		return fmt.Errorf("the pending scenario runs `ladder run` as a process: no ladder binary given")
	}
	if c.Spread != SpreadTiers && c.Spread != SpreadRoute {
		return fmt.Errorf("spread %q: accepted: %s or %s", c.Spread, SpreadTiers, SpreadRoute)
	}
	res := &PendingResult{Spreads: map[int32]float64{}, Growths: map[int32]float64{}, Growth: -1}
	rep.Result = res
	for _, parts := range c.Partitions {
		if err := pendingAt(ctx, env, c, parts, res); err != nil {
			rep.Summary = fmt.Sprintf("pending: stopped at %d partitions per tier after %d steps and %d drains: %v", parts, len(res.Steps), len(res.Drains), err)
			return err
		}
	}
	res.LoadRate = res.Load.Rate
	var worst PendingStep // the largest backlog over the most partitions
	for _, s := range res.Steps {
		if s.PartitionsPerTier > worst.PartitionsPerTier || s.PartitionsPerTier == worst.PartitionsPerTier && s.Pending >= worst.Pending {
			worst = s
		}
	}
	// The goal is stated at 96 partitions (24 per tier of 4); the step
	// nearest to it in partitions, with the largest backlog, is judged.
	var goal PendingStep
	for _, s := range res.Steps {
		d, g := abs64(s.Partitions-96), abs64(goal.Partitions-96)
		if goal.Partitions == 0 || d < g || d == g && s.Pending >= goal.Pending {
			goal = s
		}
	}
	peak := mib(worst.HWMKiB)
	rep.Goals = append(rep.Goals,
		Goal{Name: fmt.Sprintf("forwarder peak RSS at %s pending over %d partitions", thousands(goal.Pending), goal.Partitions),
			Target: "≤ 64 MiB (at 10,000,000 over 96 partitions)", Value: mib(goal.HWMKiB), Unit: "MiB", Met: mib(goal.HWMKiB) <= 64},
		Goal{Name: "peak RSS growth from the smallest backlog to the largest", Target: "≤ 10%", Value: 100 * res.Growth, Unit: "%", Met: res.Growth <= 0.10})
	rep.Summary = fmt.Sprintf("pending: ladder run peak RSS %s MiB at %s pending records, %d partitions per tier (spread over the steps ≤ %.1f%%)",
		trimFloat(peak), thousands(worst.Pending), worst.PartitionsPerTier, 100*res.Spread)
	for _, d := range res.Drains {
		rep.Summary += fmt.Sprintf("; draining %s at %d per tier: peak RSS %s MiB, %s records/s", thousands(d.Records), d.PartitionsPerTier,
			trimFloat(mib(d.HWMKiB)), thousands(int64(d.Rate)))
	}
	rep.Summary += fmt.Sprintf("; loaded at %s records/s, %.0f KiB per batch (%s loader)", thousands(int64(res.Load.Rate)),
		res.Load.BatchBytes/1024, res.Load.Loader)
	return nil
}

// pendingAt runs the steps at parts partitions per tier, each on fresh
// topics.
func pendingAt(ctx context.Context, env *Env, c *PendingConfig, parts int32, res *PendingResult) error {
	for i, step := range c.Steps {
		if err := pendingStep(ctx, env, c, parts, i, step, i == len(c.Steps)-1 && c.Drain, res); err != nil {
			return err
		}
	}
	var lo, hi int64
	for _, s := range res.Steps {
		if s.PartitionsPerTier != parts {
			continue
		}
		if lo == 0 || s.HWMKiB < lo {
			lo = s.HWMKiB
		}
		hi = max(hi, s.HWMKiB)
	}
	res.Spreads[parts] = float64(hi-lo) / float64(max(lo, 1))
	res.Spread = max(res.Spread, res.Spreads[parts])
	var first, last PendingStep
	for _, s := range res.Steps {
		if s.PartitionsPerTier != parts {
			continue
		}
		if first.Pending == 0 || s.Pending < first.Pending {
			first = s
		}
		if s.Pending >= last.Pending {
			last = s
		}
	}
	res.Growths[parts] = float64(last.HWMKiB)/float64(max(first.HWMKiB, 1)) - 1
	res.Growth = max(res.Growth, res.Growths[parts])
	return nil
}

func abs64(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// pendingStep loads step records on fresh topics of parts partitions per
// tier, measures a fresh `ladder run` holding them and, with drain, the
// same process draining them.
func pendingStep(ctx context.Context, env *Env, c *PendingConfig, parts int32, i int, step int64, drain bool, res *PendingResult) error {
	prefix := env.name("p"+strconv.Itoa(int(parts)), strconv.Itoa(i+1)) + "-"
	l, err := tier.Parse(c.Tiers, prefix)
	if err != nil {
		return err
	}
	if c.Spread == SpreadRoute && c.DueMin <= l.Smallest().Delay {
		return fmt.Errorf("due-min %s must exceed the smallest tier %s, or heads come due during the run", c.DueMin, l.Smallest().Delay)
	}
	target := prefix + "target"
	topics := map[string]int32{l.ControlTopic(): 1, l.DLQTopic(): parts, target: parts}
	for _, t := range l.Topics() {
		topics[t] = parts
	}
	if env.BrokerDataDir != "" {
		// ~100 bytes of value, ~90 of headers and key, batch overhead: allow 300 per record.
		need := step * int64(c.ValueBytes+200)
		if free, err := freeBytes(env.BrokerDataDir); err == nil && free < need+(1<<30) {
			return fmt.Errorf("%s has %d MiB free; %s pending records need about %d MiB", env.BrokerDataDir, free>>20, thousands(step), need>>20)
		}
	}
	if err := createTopics(ctx, env, topics); err != nil {
		return err
	}
	defer deleteTopics(env, slices.Collect(maps.Keys(topics)))
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
	// SpreadTiers: equal shares, the largest tier's first, the smallest's last.
	tiers := l.Tiers()
	share := (step + int64(len(tiers)) - 1) / int64(len(tiers))
	st, err := load(ctx, env, fmt.Sprintf("loading %s (%d per tier)", thousands(step), parts), 0, step, c.LoadProducers, func(i int64) *sarama.ProducerMessage {
		now := time.Now()
		if c.Spread == SpreadTiers {
			m, _ := schedule.Record(l, schedule.Message{Topic: target, Key: key("p", i), Value: val, At: now.Add(c.DueMax)}, now)
			m.Topic = tiers[len(tiers)-1-int(i/share)].Topic
			return m
		}
		due := now.Add(c.DueMin + time.Duration(rand.Int64N(int64(c.DueMax-c.DueMin))))
		m, _ := schedule.Record(l, schedule.Message{Topic: target, Key: key("p", i), Value: val, At: due}, now)
		return m
	})
	if err != nil {
		return fmt.Errorf("loading %s pending records: %w", thousands(step), err)
	}
	res.Load.add(st)
	ps := PendingStep{PartitionsPerTier: parts, Pending: step, Load: st, PerTier: map[string]int64{}}
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
	fwd, err := measurePending(ctx, env, c, l, prefix+"ladder", &ps)
	if err != nil {
		return err
	}
	defer fwd.stopLogged(env)
	res.Steps = append(res.Steps, ps)
	env.note("%s pending, %d partitions per tier: ladder run peak RSS %.1f MiB (ready after %.1f s)", thousands(step), parts,
		mib(ps.HWMKiB), ps.ReadyAfter.Seconds())
	if ps.Forwarded > 0 {
		return fmt.Errorf("ladder run forwarded %d records while it was measured holding %s: heads came due (a slow load? the smallest tier holds a record only %s)",
			ps.Forwarded, thousands(step), l.Smallest().Delay)
	}
	if !drain {
		return nil
	}
	d, err := drainPending(ctx, env, c, l, client, target, step, fwd)
	if err != nil {
		return err
	}
	d.PartitionsPerTier = parts
	res.Drains = append(res.Drains, d)
	env.note("drained %s records at %d partitions per tier in %.1f s: ladder run peak RSS %.1f MiB", thousands(d.Records), parts,
		d.Elapsed.Seconds(), mib(d.HWMKiB))
	return nil
}

// measurePending starts `ladder run` in a new group, waits until it has
// claimed every tier partition and paused on every head, and watches its
// RSS for Settle. It returns the process, still running.
func measurePending(ctx context.Context, env *Env, c *PendingConfig, l *tier.Ladder, group string, ps *PendingStep) (*running, error) {
	t0 := time.Now()
	fwd, err := startForwarder(ctx, env, Process, l, group)
	if err != nil {
		return nil, err
	}
	sample := func() error {
		mem, err := fwd.proc.Memory()
		if err != nil {
			return err
		}
		ps.HWMKiB, ps.SampledKiB, ps.RSSKiB = max(ps.HWMKiB, mem.HWM), max(ps.SampledKiB, mem.RSS), mem.RSS
		return nil
	}
	fail := func(err error) (*running, error) {
		fwd.stopLogged(env)
		return nil, err
	}
	prog := env.startProgress("ladder run holding heads", ps.Held)
	deadline := time.Now().Add(c.Timeout)
	for {
		m, err := scrape(ctx, fwd.metrics)
		if serr := sample(); serr != nil {
			prog.finish()
			return fail(serr)
		}
		if err == nil {
			prog.set(int64(m["ladder_paused_partitions"]))
			if int64(m["ladder_claimed_partitions"]) == ps.Partitions && int64(m["ladder_paused_partitions"]) == ps.Held {
				break
			}
		}
		if time.Now().After(deadline) {
			prog.finish()
			return fail(fmt.Errorf("after %s ladder run holds %v of %d heads and claimed %v of %d partitions (%v)", c.Timeout,
				m["ladder_paused_partitions"], ps.Held, m["ladder_claimed_partitions"], ps.Partitions, err))
		}
		select {
		case <-ctx.Done():
			prog.finish()
			return fail(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	prog.finish()
	ps.ReadyAfter = time.Since(t0)
	settle := time.After(c.Settle)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-settle:
			done = true
		case <-time.After(250 * time.Millisecond):
		}
		if err := sample(); err != nil {
			return fail(err)
		}
	}
	m, err := scrape(ctx, fwd.metrics)
	if err != nil {
		return fail(err)
	}
	ps.Forwarded = int64(m["ladder_forwarded_records_total"])
	if env.Broker != nil {
		if mem, err := env.Broker.Memory(); err == nil {
			ps.BrokerRSSKiB = mem.RSS
		}
	}
	if env.BrokerDataDir != "" {
		ps.BrokerDiskBytes = dirSize(env.BrokerDataDir)
	}
	return fwd, nil
}

// drainRequestEvery is how often drainPending writes its drain commands again.
const drainRequestEvery = 5 * time.Second

// drainPending makes every record of l's tiers due with a drain command per
// tier (as `ladder drain` writes it), and samples fwd's RSS until the target
// holds want records.
func drainPending(ctx context.Context, env *Env, c *PendingConfig, l *tier.Ladder, client sarama.Client, target string, want int64, fwd *running) (PendingDrain, error) {
	pc, err := env.Kafka.Producer()
	if err != nil {
		return PendingDrain{}, err
	}
	producer, err := sarama.NewSyncProducer(env.Kafka.BrokerList(), pc)
	if err != nil {
		return PendingDrain{}, fmt.Errorf("starting the drain command producer: %w", err)
	}
	defer producer.Close()
	parts, err := client.Partitions(target)
	if err != nil {
		return PendingDrain{}, fmt.Errorf("partitions of %s: %w", target, err)
	}
	tps := map[string][]int32{target: parts}
	base, err := endSum(client, tps)
	if err != nil {
		return PendingDrain{}, err
	}
	d := PendingDrain{Records: want}
	t0 := time.Now()
	// A drain command covers a tier up to its end offsets when written.
	// Records of the smallest tiers that come due before the drain reaches
	// them hop to a larger tier, after its command's offsets: the commands
	// are written again every few seconds until every record is delivered.
	request := func() error {
		for _, t := range l.Topics() {
			if _, err := control.RequestDrain(client, producer, l.ControlTopic(), t, time.Hour); err != nil {
				return err
			}
		}
		return nil
	}
	if err := request(); err != nil {
		return d, err
	}
	again := time.Now().Add(drainRequestEvery)
	prog := env.startProgress("draining the backlog", want)
	defer prog.finish()
	deadline := time.Now().Add(c.DrainTimeout)
	for {
		if time.Now().After(again) {
			if err := request(); err != nil {
				return d, err
			}
			again = time.Now().Add(drainRequestEvery)
		}
		mem, err := fwd.proc.Memory()
		if err != nil {
			return d, err
		}
		d.HWMKiB, d.SampledKiB, d.RSSKiB = mem.HWM, max(d.SampledKiB, mem.RSS), mem.RSS
		n, err := endSum(client, tps)
		if err == nil {
			prog.set(n - base)
			if n-base >= want {
				break
			}
		}
		if time.Now().After(deadline) {
			return d, fmt.Errorf("after %s, %d of %d records drained to %s (%v)", c.DrainTimeout, n-base, want, target, err)
		}
		select {
		case <-ctx.Done():
			return d, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	d.Elapsed = time.Since(t0)
	d.Rate = float64(want) / d.Elapsed.Seconds()
	if mem, err := fwd.proc.Memory(); err == nil {
		d.HWMKiB, d.SampledKiB, d.RSSKiB = mem.HWM, max(d.SampledKiB, mem.RSS), mem.RSS
	}
	return d, nil
}
