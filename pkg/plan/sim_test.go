package plan

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/tier"
)

// TestSimulationRoutesLikeTier: the simulation's millisecond routing and
// release rule are tier.Route and tier.ReleaseAt.
func TestSimulationRoutesLikeTier(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 200 {
		l := randomLadder(rng, time.Duration(1+rng.IntN(1000))*time.Millisecond)
		s := &sim{}
		for _, tr := range l.Tiers() {
			s.tiers = append(s.tiers, uint32(tr.Delay.Milliseconds()))
		}
		w := newPaths(delaysOf(l), nil, false)
		for range 200 {
			now := uint32(rng.IntN(1 << 30))
			due := now + 1 + uint32(rng.IntN(int(4*l.Largest().Delay.Milliseconds())))
			want, ok := l.Route(time.UnixMilli(int64(now)), time.UnixMilli(int64(due)))
			if !ok {
				t.Fatalf("tier.Route: a message due later is not routed")
			}
			k := s.route(due - now)
			if l.Tiers()[k] != want || w.route(int64(due-now)*int64(time.Millisecond)) != k {
				t.Fatalf("%s, remaining %dms: simulation routes to %s, paths to %s, tier.Route to %s",
					l, due-now, l.Tiers()[k].Label(), l.Tiers()[w.route(int64(due-now)*1e6)].Label(), want.Label())
			}
			for i, tr := range l.Tiers() {
				rel := tier.ReleaseAt(tr, time.UnixMilli(int64(now)), time.UnixMilli(int64(due)))
				if got := releaseAt(now, s.tiers[i], due); int64(got) != rel.UnixMilli() {
					t.Fatalf("tier %s, entered %d, due %d: releaseAt %d, tier.ReleaseAt %d", tr.Label(), now, due, got, rel.UnixMilli())
				}
			}
		}
		if _, ok := l.Route(time.UnixMilli(5), time.UnixMilli(5)); ok {
			t.Fatal("tier.Route routes a due message to a tier; the simulation delivers it")
		}
	}
}

// TestFIFOs: records come out of each partition in the order they went in,
// across blocks that are recycled between partitions.
func TestFIFOs(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	s := newSlab(100, 7)
	qs := make([]fifo, 7)
	ref := make([][]uint32, 7)
	for i := range qs {
		qs[i] = newFIFO()
	}
	for n := uint32(0); n < 200_000; n++ {
		i := rng.IntN(len(qs))
		if rng.IntN(100) < 52 || len(ref[i]) == 0 {
			s.push(&qs[i], n, n+1, uint16(n))
			ref[i] = append(ref[i], n)
			continue
		}
		if qs[i].n != len(ref[i]) || s.headOwn(&qs[i]) != ref[i][0] {
			t.Fatalf("queue %d: %d records, head %d; want %d, head %d", i, qs[i].n, s.headOwn(&qs[i]), len(ref[i]), ref[i][0])
		}
		due, hops := s.pop(&qs[i])
		if due != ref[i][0]+1 || hops != uint16(ref[i][0]) {
			t.Fatalf("queue %d: popped due %d hops %d, want %d %d", i, due, hops, ref[i][0]+1, uint16(ref[i][0]))
		}
		ref[i] = ref[i][1:]
	}
	var held int
	for _, r := range ref {
		held += len(r)
	}
	blockRecords := int(s.used) * (s.mask + 1)
	if blockRecords > held+2*len(qs)*(s.mask+1)+len(s.recs)/2 {
		t.Errorf("%d blocks of %d for %d records held: blocks are not recycled", s.used, s.mask+1, held)
	}
}

// TestTournament: the root of the winner tree is the smallest key.
func TestTournament(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	s := &sim{leaves: 32, tree: make([]uint64, 64)}
	keys := make([]uint64, 32)
	for i := range s.tree {
		s.tree[i] = empty
	}
	for i := range keys {
		keys[i] = empty
	}
	for range 10_000 {
		q := rng.IntN(29)
		k := uint64(rng.IntN(1000))<<32 | uint64(q)
		if rng.IntN(4) == 0 {
			k = empty
		}
		keys[q] = k
		s.set(q, k)
		if s.tree[1] != slices.Min(keys) {
			t.Fatalf("root %x, smallest key %x", s.tree[1], slices.Min(keys))
		}
	}
}

// TestSimulationAgreesWithPlan is the check of the arithmetic: the same
// workload computed by the planner and simulated message by message,
// figure by figure. It also checks the routing rule's promises in the
// simulation: no message is early, none is later than the smallest tier
// plus the lag.
func TestSimulationAgreesWithPlan(t *testing.T) {
	for _, tc := range []struct {
		name, tiers, delays string
		pending             int
		rate                float64 // per partition, for about 32 partitions in the smallest tier
		partitions          int
		lag                 time.Duration
	}{
		// the user's workload, at 1/25 of the size (its partitions sized as at full size)
		{name: "buckets", tiers: tier.DefaultTiers, delays: "3m-7m:0.5,20m-40m:0.3,90m-150m:0.2", pending: 2_000_000, rate: 200},
		// delays that land exactly: nothing late
		{name: "exact", tiers: tier.DefaultTiers, delays: "5m:0.5,30m:0.3,2h:0.2", pending: 1_000_000, rate: 100},
		// a seconds ladder with a lag, and so many partitions that few
		// records wait in each: head-of-line blocking far from saturation
		{name: "sparse", tiers: "2s,5s,20s", delays: "1s-10s:0.5,30s-70s:0.5", pending: 300_000, partitions: 20_000, lag: 250 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := tier.Parse(tc.tiers, tier.DefaultPrefix)
			if err != nil {
				t.Fatal(err)
			}
			n := int(float64(tc.pending) * simTestScale)
			w := Workload{Pending: int64(n), ValueBytes: 100, Delays: mustDelays(t, tc.delays),
				PartitionRate: tc.rate * simTestScale, Partitions: tc.partitions, Lag: tc.lag}
			p, err := Compute(l, w)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Simulate(context.Background(), SimConfigFor(l, w, p, n, 0, 42))
			if err != nil {
				t.Fatal(err)
			}
			c := Compare(p, s)
			t0 := l.Smallest().Delay.Seconds()
			bound := t0 + tc.lag.Seconds()
			if s.Early != 0 {
				t.Errorf("%d messages delivered before they were due", s.Early)
			}
			if s.Lateness.MaxSeconds > bound {
				t.Errorf("a message was %.3fs late, more than the smallest tier + lag (%.3fs)", s.Lateness.MaxSeconds, bound)
			}
			if s.Delivered < int64(n)/2 {
				t.Fatalf("only %d messages delivered in the window", s.Delivered)
			}
			for _, r := range c.Rows {
				name := fmt.Sprintf("%s %s: computed %.6g, simulated %.6g", r.Tier, r.Metric, r.Computed, r.Simulated)
				switch {
				case r.Metric == "max_hops":
					if r.Simulated > r.Computed {
						t.Errorf("%s: a message made more hops than the most the plan allows", name)
					}
				case r.Metric == "lateness_max":
					if r.Simulated > r.Computed+0.002 {
						t.Errorf("%s: later than the plan's worst", name)
					}
				case r.Metric == "delivered_share":
					if math.Abs(r.Difference) > 0.005 {
						t.Errorf("%s", name)
					}
				case strings.HasPrefix(r.Metric, "lateness_"):
					if math.Abs(r.Difference) > 0.02*t0+0.002 {
						t.Errorf("%s: more than 2%% of the smallest tier apart", name)
					}
				case math.Abs(r.Computed) < 1e-3*float64(n) && r.Metric == "stored_records", r.Computed == 0:
					if math.Abs(r.Difference) > 1e-3*float64(n) {
						t.Errorf("%s", name)
					}
				default:
					if e := math.Abs(*r.RelativeError); e > 0.02 {
						t.Errorf("%s: %.2f%% apart", name, e*100)
					}
				}
			}
			if t.Failed() || testing.Verbose() {
				var b strings.Builder
				_ = WriteComparison(&b, c)
				t.Logf("\n%s", b.String())
			}
		})
	}
}

func TestSimulationStops(t *testing.T) {
	l, err := tier.Parse(tier.DefaultTiers, tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Simulate(ctx, SimConfig{Tiers: l, Pending: 100_000, Delays: mustDelays(t, "1h")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Simulate with a cancelled context: %v, want context.Canceled", err)
	}
}

// TestSmallerSimulation: a simulation smaller than its plan gets partitions
// scaled with it and is checked against the plan of what it simulates.
func TestSmallerSimulation(t *testing.T) {
	l := defaultLadder(t)
	w := Workload{Pending: 50_000_000, ValueBytes: 100, Delays: mustDelays(t, "3m-7m:0.5,20m-40m:0.3,90m-150m:0.2")}
	p, err := Compute(l, w)
	if err != nil {
		t.Fatal(err)
	}
	n := int(400_000 * simTestScale)
	cfg := SimConfigFor(l, w, p, n, 0, 3)
	if want := max(1, int(math.Round(float64(p.PerTier[0].Partitions)*float64(n)/5e7))); cfg.Partitions[0] != want {
		t.Errorf("smallest tier: %d partitions simulated, want %d", cfg.Partitions[0], want)
	}
	small, err := PlanOf(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	for i, tp := range small.PerTier {
		if tp.Partitions != cfg.Partitions[i] {
			t.Errorf("tier %s: planned with %d partitions, simulated with %d", tp.Tier, tp.Partitions, cfg.Partitions[i])
		}
	}
	s, err := Simulate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := Compare(small, s)
	for _, m := range []string{"delivery_rate", "mean_hops", "lateness_mean", "lateness_p99"} {
		r, ok := c.Row("total", m)
		if !ok || r.RelativeError == nil || math.Abs(*r.RelativeError) > 0.02 {
			t.Errorf("total %s: %+v", m, r)
		}
	}
}
