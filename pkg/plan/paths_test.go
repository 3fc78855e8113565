package plan

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/tier"
)

// follow sends one message with remaining time r through l with tier.Route
// and tier.ReleaseAt, forwarding instantly: the reference for the planner.
func follow(l *tier.Ladder, r time.Duration) (visits []int, held []time.Duration, short time.Duration, exitTier int) {
	ts := l.Tiers()
	visits, held = make([]int, len(ts)), make([]time.Duration, len(ts))
	var now time.Time
	due := now.Add(r)
	for {
		next, ok := l.Route(now, due)
		if !ok {
			return visits, held, short, exitTier
		}
		i := slices.Index(ts, next)
		release := tier.ReleaseAt(next, now, due)
		visits[i]++
		held[i] += release.Sub(now)
		if release.Sub(now) < next.Delay {
			short = release.Sub(now)
		}
		now, exitTier = release, i
	}
}

func randomLadder(rng *rand.Rand, unit time.Duration) *tier.Ladder {
	pool := []int{1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90, 120, 250}
	rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	var delays []time.Duration
	for _, v := range pool[:1+rng.IntN(5)] {
		delays = append(delays, time.Duration(v)*unit)
	}
	l, err := tier.New(delays, tier.DefaultPrefix)
	if err != nil {
		panic(err)
	}
	return l
}

func delaysOf(l *tier.Ladder) []time.Duration {
	var out []time.Duration
	for _, t := range l.Tiers() {
		out = append(out, t.Delay)
	}
	return out
}

func walkOf(tb testing.TB, l *tier.Ladder, d Distribution) *paths {
	tb.Helper()
	sizes := newRecordSizes(100, 0, "work", 100)
	w := newPaths(delaysOf(l), &sizes, true)
	if err := w.run(d); err != nil {
		tb.Fatal(err)
	}
	return w
}

// TestPathsOfOneDelay: for a single delay, the walk and the closed form give
// what following the message with tier.Route and tier.ReleaseAt gives.
func TestPathsOfOneDelay(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		l := randomLadder(rng, time.Second)
		r := time.Duration(1+rng.IntN(2000)) * 100 * time.Millisecond
		d, err := NewDistribution([]Component{{Lo: r, Hi: r, Weight: 1}})
		if err != nil {
			t.Fatal(err)
		}
		visits, held, short, exit := follow(l, r)
		w := walkOf(t, l, d)
		hops := 0
		for i, v := range visits {
			hops += v
			wantTime := float64(held[i])
			gotTime := w.fullTime[i]
			if i == 0 {
				gotTime += w.shortTime
			}
			if w.visits[i] != float64(v) || math.Abs(gotTime-wantTime) > 1 {
				t.Fatalf("%s, delay %s, tier %s: walk %v visits %v ns, want %d visits %v ns",
					l, r, l.Tiers()[i].Label(), w.visits[i], gotTime, v, wantTime)
			}
		}
		if hops != l.Hops(r) || w.meanHops != float64(hops) || w.maxHops != hops || newGreedy(delaysOf(l)).hops(int64(r)) != hops {
			t.Fatalf("%s, delay %s: walk %v hops (max %d), greedy %d, Ladder.Hops %d, followed %d", l, r,
				w.meanHops, w.maxHops, newGreedy(delaysOf(l)).hops(int64(r)), l.Hops(r), hops)
		}
		if short > 0 && (w.shortShare != 1 || w.shortTime != float64(short) || exit != 0) ||
			short == 0 && (w.shortShare != 0 || w.exact[exit] != 1) {
			t.Fatalf("%s, delay %s: walk short share %v time %v, exact %v; followed: short %s, exit %d",
				l, r, w.shortShare, w.shortTime, w.exact, short, exit)
		}
	}
}

// TestPathsOfARange: over a range of delays the walk is exact. hops is
// constant between whole milliseconds here (every tier is whole ms), so
// following the mid-point of every millisecond gives the exact averages.
func TestPathsOfARange(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 40 {
		l := randomLadder(rng, time.Millisecond)
		lo := 1 + rng.IntN(300)
		hi := lo + 1 + rng.IntN(2000)
		d, err := NewDistribution([]Component{{Lo: time.Duration(lo) * time.Millisecond, Hi: time.Duration(hi) * time.Millisecond, Weight: 1}})
		if err != nil {
			t.Fatal(err)
		}
		n := float64(hi - lo)
		k := len(l.Tiers())
		visits, held := make([]float64, k), make([]float64, k)
		var hops, shortShare, shortTime float64
		most := 0
		for m := lo; m < hi; m++ {
			r := time.Duration(m)*time.Millisecond + 500*time.Microsecond
			v, h, short, _ := follow(l, r)
			total := 0
			for i := range v {
				visits[i] += float64(v[i]) / n
				held[i] += float64(h[i]) / n
				total += v[i]
			}
			hops += float64(total) / n
			most = max(most, total)
			if short > 0 {
				shortShare += 1 / n
				shortTime += float64(short) / n
			}
		}
		w := walkOf(t, l, d)
		g := newGreedy(delaysOf(l))
		gMean, gMax := g.meanMax(d)
		name := fmt.Sprintf("%s, delays %dms-%dms", l, lo, hi)
		near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
		if !near(w.meanHops, hops) || w.maxHops != most || !near(gMean, hops) || gMax != most {
			t.Fatalf("%s: walk %v hops (max %d), greedy %v (max %d), want %v (max %d)", name, w.meanHops, w.maxHops, gMean, gMax, hops, most)
		}
		if !near(w.shortShare, shortShare) || !near(w.shortTime, shortTime) {
			t.Fatalf("%s: walk short share %v time %v, want %v %v", name, w.shortShare, w.shortTime, shortShare, shortTime)
		}
		for i := range visits {
			got := w.fullTime[i]
			if i == 0 {
				got += w.shortTime
			}
			if !near(w.visits[i], visits[i]) || math.Abs(got-held[i]) > 1e-6*held[i]+1 {
				t.Fatalf("%s, tier %d: walk visits %v time %v, want %v %v", name, i, w.visits[i], got, visits[i], held[i])
			}
		}
	}
}

// TestGreedyMatchesPaths: the closed form and the walk agree on mixes of
// points and ranges over real-sized ladders.
func TestGreedyMatchesPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 300 {
		l := randomLadder(rng, time.Minute)
		var comps []Component
		for range 1 + rng.IntN(4) {
			lo := time.Duration(1+rng.IntN(5000)) * time.Second
			c := Component{Lo: lo, Hi: lo, Weight: rng.Float64() + 0.01}
			if rng.IntN(2) == 0 {
				c.Hi = lo + time.Duration(1+rng.IntN(20000))*time.Second
			}
			comps = append(comps, c)
		}
		d, err := NewDistribution(comps)
		if err != nil {
			t.Fatal(err)
		}
		w := walkOf(t, l, d)
		mean, most := newGreedy(delaysOf(l)).meanMax(d)
		if math.Abs(mean-w.meanHops) > 1e-9*w.meanHops || most != w.maxHops {
			t.Fatalf("%s, delays %s: greedy %v hops (max %d), walk %v (max %d)", l, d, mean, most, w.meanHops, w.maxHops)
		}
	}
}

func TestPathsTooFine(t *testing.T) {
	l, err := tier.Parse("1ms", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	sizes := newRecordSizes(100, 0, "work", 100)
	w := newPaths(delaysOf(l), &sizes, false)
	w.maxNodes = 100_000
	if err := w.run(mustDelays(t, "1s-7d")); !errors.Is(err, errTooFine) {
		t.Fatal("a 1ms tier for delays up to a week: want an error, not minutes of work")
	}
}
