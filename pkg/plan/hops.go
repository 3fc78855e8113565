package plan

import "time"

// greedy counts hops in closed form, for searching many tier sets fast.
//
// With the routing rule, a remaining time y in the region of tier k
// (T_k ≤ y < T_k+1, or y ≥ T_k for the largest) takes tier k until less than
// T_k remains, so hops(y) = ⌊y/T_k⌋ + hops(y mod T_k), and hops(y) = 1 for
// 0 < y < T_0 (one short hop), 0 for y = 0. Over a stretch of region k the
// count is periodic plus a step per period, which gives the integral of hops
// from 0 to x and its maximum over an interval in O(tiers) steps, with one
// memo per tier. paths gets the same numbers (and many more) by walking;
// a test holds the two to each other.
type greedy struct {
	t      []int64   // tier delays, ns, ascending
	whole  []float64 // ∫ hops over [0, T_k)
	maxBel []int     // max hops over [0, T_k)
}

func newGreedy(tiers []time.Duration) *greedy {
	g := &greedy{}
	for _, t := range tiers {
		g.t = append(g.t, int64(t))
	}
	for k, t := range g.t {
		if k == 0 {
			g.whole = append(g.whole, float64(t))
			g.maxBel = append(g.maxBel, 1)
			continue
		}
		g.whole = append(g.whole, g.integral(t))
		g.maxBel = append(g.maxBel, g.maxOver(0, t))
	}
	return g
}

// region is the tier whose region holds y > 0 (the largest tier ≤ y), or
// -1 below the smallest tier. Only tiers below limit are considered.
func (g *greedy) region(y int64, limit int) int {
	k := limit - 1
	for k >= 0 && g.t[k] > y {
		k--
	}
	return k
}

// hops is the number of hops of a remaining time r ≥ 0.
func (g *greedy) hops(r int64) int {
	if r <= 0 {
		return 0
	}
	k := g.region(r, len(g.t))
	if k < 0 {
		return 1
	}
	q := r / g.t[k]
	return int(q) + g.hops(r-q*g.t[k])
}

// integral is ∫ hops over [0, x).
func (g *greedy) integral(x int64) float64 {
	if x <= 0 {
		return 0
	}
	// the region of the points just below x
	k := g.region(x-1, len(g.t))
	if k < 0 {
		return float64(x)
	}
	t := g.t[k]
	// [0, T_k), then periods j = 1..q-1 of [jT, (j+1)T) worth j·T + whole,
	// then [qT, x) worth q·r + ∫ hops over [0, r).
	q := x / t
	r := x - q*t
	fq := float64(q)
	return fq*g.whole[k] + float64(t)*fq*(fq-1)/2 + fq*float64(r) + g.integral(r)
}

// maxOver is the largest hops over [a, b), 0 ≤ a < b.
func (g *greedy) maxOver(a, b int64) int {
	last := b - 1
	best := 0
	if a < g.t[0] && last > 0 {
		best = 1 // a short hop
	}
	for k := len(g.t) - 1; k >= 0; k-- {
		t := g.t[k]
		lo := max(a, t)
		hi := last
		if k+1 < len(g.t) {
			hi = min(hi, g.t[k+1]-1)
		}
		if lo > hi {
			continue
		}
		qlo, qhi := lo/t, hi/t
		var m int
		if qlo == qhi {
			m = int(qlo) + g.maxOver(lo-qlo*t, hi-qlo*t+1)
		} else {
			m = max(int(qlo)+g.maxOver(lo-qlo*t, t), int(qhi)+g.maxOver(0, hi-qhi*t+1))
			if qhi-qlo >= 2 {
				m = max(m, int(qhi)-1+g.maxBel[k])
			}
		}
		best = max(best, m)
	}
	return best
}

// meanMax is the mean and the largest hops of distribution d.
func (g *greedy) meanMax(d Distribution) (mean float64, most int) {
	for _, c := range d.comps {
		if c.Point() {
			h := g.hops(int64(c.Lo))
			mean += c.Weight * float64(h)
			most = max(most, h)
			continue
		}
		lo, hi := int64(c.Lo), int64(c.Hi)
		mean += c.Weight * (g.integral(hi) - g.integral(lo)) / float64(hi-lo)
		most = max(most, g.maxOver(lo, hi))
	}
	return mean, most
}
