package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

// LatenessConfig configures the lateness scenario: Rate messages a second
// for Duration, each due after a delay drawn uniformly from [0, MaxDelay],
// scheduled through the ladder while a forwarder runs.
type LatenessConfig struct {
	Tiers      string        `json:"tiers"`
	Rate       float64       `json:"rate_per_s"`
	Duration   time.Duration `json:"duration_ns"`
	MaxDelay   time.Duration `json:"max_delay_ns"`
	ValueBytes int           `json:"value_bytes"`
	// Dump, when set, is a CSV file that receives one line per tier record
	// released: when it entered, became releasable, became the head, and was
	// forwarded, to look into a slow release.
	Dump string `json:"dump,omitempty"`
}

func (c *LatenessConfig) setDefaults() {
	if c.Tiers == "" {
		c.Tiers = "1s,5s,15s"
	}
	if c.Rate <= 0 {
		c.Rate = 1000
	}
	if c.Duration <= 0 {
		c.Duration = time.Minute
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = 20 * time.Second
	}
	if c.ValueBytes <= 0 {
		c.ValueBytes = 100
	}
}

// Latency is a distribution's p50, p99 and maximum, in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func latency(ds []time.Duration) Latency {
	p50, p99, mx := quantiles(ds)
	return Latency{Count: len(ds), P50: ms(p50), P99: ms(p99), Max: ms(mx)}
}

// TierLateness is the lateness of the records released by one tier.
type TierLateness struct {
	Tier string `json:"tier"`
	// Release is forward time − the moment the record, as the partition's
	// head, became releasable: max(its release time, the forward time of
	// the record before it in the partition). The forwarder's own lag.
	Release Latency `json:"release"`
	// HeadOfLine is how long a record waited behind an earlier head after
	// its own release time (min(timestamp + tier delay, ladder-due)). Only
	// the smallest tier holds records due before the tier's end, so only it
	// shows such waits; they are bounded by its delay.
	HeadOfLine Latency `json:"head_of_line"`
	// EndToEnd is consumer receive time − ladder-due, for the records this
	// tier delivered to the target.
	EndToEnd Latency `json:"end_to_end"`
}

// LatenessResult is the lateness scenario's outcome.
type LatenessResult struct {
	Scheduled int64          `json:"scheduled"`
	Delivered int64          `json:"delivered"`
	Missing   int64          `json:"missing"`
	Early     int64          `json:"early"` // delivered before ladder-due: must be 0
	Hops      int64          `json:"hops"`  // tier records forwarded
	Tiers     []TierLateness `json:"tiers"`
	All       TierLateness   `json:"all"`
	// BoundMs is the end-to-end goal: the smallest tier + 250 ms.
	BoundMs float64 `json:"e2e_bound_ms"`
}

// WriteTable implements Result.
func (r *LatenessResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tier\treleased\trelease p50 ms\tp99\tmax\thead-of-line p99 ms\tmax\tdelivered\te2e p50 ms\tp99\tmax\t")
	for _, t := range append(slices.Clone(r.Tiers), r.All) {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%.1f\t%.1f\t%.1f\t\n", t.Tier, t.Release.Count,
			t.Release.P50, t.Release.P99, t.Release.Max, t.HeadOfLine.P99, t.HeadOfLine.Max,
			t.EndToEnd.Count, t.EndToEnd.P50, t.EndToEnd.P99, t.EndToEnd.Max)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nscheduled %d, delivered %d, missing %d, early %d, tier hops %d\n", r.Scheduled, r.Delivered, r.Missing, r.Early, r.Hops)
}

// seen is one record read from a tier or the target.
type seen struct {
	topic     string
	partition int32
	offset    int64
	hops      int
	ts, at    time.Time
	due       time.Time
}

func lateness(ctx context.Context, env *Env, c *LatenessConfig, rep *Report) error {
	c.setDefaults()
	res := &LatenessResult{}
	rep.Result = res
	prefix := env.name("l") + "-"
	l, err := tier.Parse(c.Tiers, prefix)
	if err != nil {
		return err
	}
	target := prefix + "target"
	topics := ladderTopics(l)
	topics[target] = 0
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

	col, err := collect(env, append(l.Topics(), target))
	if err != nil {
		return err
	}
	defer col.close()
	fwd, err := startForwarder(ctx, env, env.Forwarder, l, prefix+"ladder")
	if err != nil {
		return err
	}
	defer func() {
		if err := fwd.stop(); err != nil && ctx.Err() == nil {
			env.Log.Warn().Err(err).Msg("stopping the forwarder")
		}
	}()
	if err := fwd.waitClaimed(ctx, int64(len(l.Topics()))*int64(env.Partitions), 60*time.Second); err != nil {
		return err
	}

	s, err := schedule.New(schedule.Config{Ladder: l, Kafka: env.Kafka, Log: env.Log})
	if err != nil {
		return err
	}
	val := value(c.ValueBytes)
	total := int64(c.Rate * c.Duration.Seconds())
	prog := env.startProgress("scheduling", total)
	var failed atomic.Int64
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	var sent int64
	for sent < total {
		select {
		case <-ctx.Done():
			tick.Stop()
			s.Close()
			prog.finish()
			return ctx.Err()
		case <-tick.C:
		}
		want := min(int64(time.Since(start).Seconds()*c.Rate), total)
		for ; sent < want; sent++ {
			delay := time.Duration(rng.Int64N(int64(c.MaxDelay) + 1))
			err := s.Send(ctx, schedule.Message{Topic: target, Key: key("l", sent), Value: val, Delay: delay}, func(err error) {
				if err != nil {
					failed.Add(1)
				}
				prog.add(1)
			})
			if err != nil {
				failed.Add(1)
			}
		}
	}
	tick.Stop()
	s.Close()
	prog.finish()
	res.Scheduled = total - failed.Load()
	if f := failed.Load(); f > 0 {
		env.Log.Warn().Int64("failed", f).Msg("some messages could not be scheduled")
	}

	// Every message arrives within its delay plus the largest tier (a head
	// can wait behind a record of the smallest tier at most) and slack.
	wait := c.MaxDelay + l.Smallest().Delay + 30*time.Second
	prog = env.startProgress("waiting for deliveries", res.Scheduled)
	deadline := time.Now().Add(wait)
	for {
		n := col.deliveries()
		prog.set(n)
		if n >= res.Scheduled || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			prog.finish()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	prog.finish()
	col.close()
	rows := analyse(res, l, target, col)
	if c.Dump != "" {
		if err := dumpCSV(c.Dump, rows); err != nil {
			return err
		}
	}
	res.BoundMs = ms(l.Smallest().Delay + 250*time.Millisecond)

	g1 := Goal{Name: "release lateness p99", Target: "≤ 50 ms", Value: res.All.Release.P99, Unit: "ms", Met: res.All.Release.P99 <= 50}
	g2 := Goal{Name: "end-to-end lateness max", Target: fmt.Sprintf("≤ %s ms (smallest tier + 250 ms)", trimFloat(res.BoundMs)),
		Value: res.All.EndToEnd.Max, Unit: "ms", Met: res.All.EndToEnd.Max <= res.BoundMs && res.Missing == 0}
	rep.Goals = append(rep.Goals, g1, g2)
	rep.Summary = fmt.Sprintf("lateness: %d messages at %s/s, delays 0-%s, tiers %s: release p50 %.1f ms p99 %.1f ms max %.1f ms; end-to-end p50 %.0f ms p99 %.0f ms max %.0f ms (bound %.0f ms); %d missing, %d early",
		res.Scheduled, trimFloat(c.Rate), c.MaxDelay, l, res.All.Release.P50, res.All.Release.P99, res.All.Release.Max,
		res.All.EndToEnd.P50, res.All.EndToEnd.P99, res.All.EndToEnd.Max, res.BoundMs, res.Missing, res.Early)
	if res.Missing > 0 || res.Early > 0 {
		return fmt.Errorf("%d of %d messages missing, %d early after waiting %s", res.Missing, res.Scheduled, res.Early, wait)
	}
	return nil
}

// released is one tier record as analyse sees it.
type released struct {
	topic                              string
	partition                          int32
	offset                             int64
	entered, due, release, head, fwded time.Time
}

// analyse computes the lateness figures from every record seen, and returns
// the tier records released, by partition and offset.
func analyse(res *LatenessResult, l *tier.Ladder, target string, col *collector) []released {
	type tp struct {
		topic     string
		partition int32
	}
	parts := map[tp][]released{}
	e2e := map[string][]time.Duration{}
	for _, recs := range col.byKey {
		byHops := map[int]seen{}
		var delivered *seen
		for i := range recs {
			r := recs[i]
			if r.topic == target {
				if delivered == nil || r.at.Before(delivered.at) {
					delivered = &recs[i]
				}
				continue
			}
			if _, dup := byHops[r.hops]; !dup {
				byHops[r.hops] = r
			}
		}
		if delivered != nil {
			res.Delivered++
			if delivered.ts.Before(delivered.due) {
				res.Early++
			}
			from := "direct"
			if prev, ok := byHops[delivered.hops-1]; ok {
				from = prev.topic
			}
			e2e[from] = append(e2e[from], max(delivered.at.Sub(delivered.due), 0))
		}
		for h, r := range byHops {
			next, ok := byHops[h+1]
			if !ok {
				if delivered == nil || delivered.hops != h+1 {
					continue // not forwarded (yet)
				}
				next = *delivered
			}
			t, _ := l.Lookup(r.topic)
			parts[tp{r.topic, r.partition}] = append(parts[tp{r.topic, r.partition}], released{topic: r.topic, partition: r.partition,
				offset: r.offset, entered: r.ts, due: r.due, release: tier.ReleaseAt(t, r.ts, r.due), fwded: next.ts})
		}
	}
	res.Missing = max(res.Scheduled-res.Delivered, 0)
	release, hol := map[string][]time.Duration{}, map[string][]time.Duration{}
	var rows []released
	for p, rs := range parts {
		sort.Slice(rs, func(i, j int) bool { return rs[i].offset < rs[j].offset })
		for i := range rs {
			r := &rs[i]
			r.head = r.release
			if i > 0 && rs[i-1].offset == r.offset-1 && rs[i-1].fwded.After(r.head) {
				r.head = rs[i-1].fwded
			}
			release[p.topic] = append(release[p.topic], max(r.fwded.Sub(r.head), 0))
			hol[p.topic] = append(hol[p.topic], r.head.Sub(r.release))
			res.Hops++
		}
		rows = append(rows, rs...)
	}
	var allRel, allHol, allE2E []time.Duration
	for _, t := range l.Tiers() {
		res.Tiers = append(res.Tiers, TierLateness{Tier: t.Topic, Release: latency(release[t.Topic]),
			HeadOfLine: latency(hol[t.Topic]), EndToEnd: latency(e2e[t.Topic])})
		allRel, allHol = append(allRel, release[t.Topic]...), append(allHol, hol[t.Topic]...)
		allE2E = append(allE2E, e2e[t.Topic]...)
	}
	if d := e2e["direct"]; len(d) > 0 {
		res.Tiers = append(res.Tiers, TierLateness{Tier: "(due at once)", EndToEnd: latency(d)})
		allE2E = append(allE2E, d...)
	}
	res.All = TierLateness{Tier: "all", Release: latency(allRel), HeadOfLine: latency(allHol), EndToEnd: latency(allE2E)}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.topic != b.topic {
			return a.topic < b.topic
		}
		if a.partition != b.partition {
			return a.partition < b.partition
		}
		return a.offset < b.offset
	})
	return rows
}

// dumpCSV writes the released records, times in unix milliseconds.
func dumpCSV(path string, rows []released) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("lateness dump: %w", err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "tier,partition,offset,entered_ms,due_ms,releasable_ms,head_ms,forwarded_ms,release_lateness_ms,head_of_line_ms")
	for _, r := range rows {
		fmt.Fprintf(w, "%s,%d,%d,%d,%d,%d,%d,%d,%d,%d\n", r.topic, r.partition, r.offset, r.entered.UnixMilli(), r.due.UnixMilli(),
			r.release.UnixMilli(), r.head.UnixMilli(), r.fwded.UnixMilli(), r.fwded.Sub(r.head).Milliseconds(), r.head.Sub(r.release).Milliseconds())
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("lateness dump: %w", err)
	}
	return f.Close()
}

// collector reads every partition of some topics from the oldest offset and
// keeps, per key, every record seen with the time it was received.
type collector struct {
	consumer sarama.Consumer
	pcs      []sarama.PartitionConsumer
	wg       sync.WaitGroup
	once     sync.Once

	mu        sync.Mutex
	byKey     map[string][]seen
	delivered map[string]bool // keys read from their target
}

func collect(env *Env, topics []string) (*collector, error) {
	sc, err := env.Kafka.Base()
	if err != nil {
		return nil, err
	}
	sc.Consumer.MaxWaitTime = 20 * time.Millisecond
	sc.Consumer.Return.Errors = false
	consumer, err := sarama.NewConsumer(env.Kafka.BrokerList(), sc)
	if err != nil {
		return nil, fmt.Errorf("starting the collector: %w", err)
	}
	c := &collector{consumer: consumer, byKey: map[string][]seen{}, delivered: map[string]bool{}}
	for _, t := range topics {
		parts, err := consumer.Partitions(t)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("partitions of %s: %w", t, err)
		}
		for _, p := range parts {
			pc, err := consumer.ConsumePartition(t, p, sarama.OffsetOldest)
			if err != nil {
				c.close()
				return nil, fmt.Errorf("consuming %s/%d: %w", t, p, err)
			}
			c.pcs = append(c.pcs, pc)
			c.wg.Go(func() {
				for m := range pc.Messages() {
					c.add(m, time.Now())
				}
			})
		}
	}
	return c, nil
}

func (c *collector) add(m *sarama.ConsumerMessage, at time.Time) {
	env, err := envelope.Decode(m.Headers)
	if err != nil {
		return
	}
	s := seen{topic: m.Topic, partition: m.Partition, offset: m.Offset, hops: env.Hops, ts: m.Timestamp, at: at, due: env.Due}
	k := string(m.Key)
	c.mu.Lock()
	c.byKey[k] = append(c.byKey[k], s)
	if env.Target == m.Topic {
		c.delivered[k] = true
	}
	c.mu.Unlock()
}

// deliveries is the number of distinct keys read from their target topic.
func (c *collector) deliveries() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(len(c.delivered))
}

func (c *collector) close() {
	c.once.Do(func() {
		for _, pc := range c.pcs {
			pc.AsyncClose()
		}
		c.wg.Wait()
		c.consumer.Close()
	})
}
