package plan

import (
	"math"
	"time"
)

// hol is the head-of-line model of lateness in the smallest tier.
//
// A partition of the smallest tier (delay T) releases its records in order,
// each at max(its own release, the release of the record before it). Its
// own release is entered + w, where w = T for a record that stays the full
// delay and w = the remaining time (< T) for a "short" record, the last hop
// of a message. So a short record entering at a with wait w is late by
// max(0, M - w), where M is the largest (own release - a) over the records
// ahead of it: those that entered in the last T. Taking arrivals as a
// Poisson stream of rate μ per partition, independent waits with survival
// S(v) = P(w > v):
//
//	P(M ≤ m) = G(m) = exp(-μ ∫_m^T S(v) dv)
//	E[lateness | w] = ∫_w^T (1 - G(m)) dm,   P(lateness ≤ x | w) = G(w + x)
//
// The waits are binned on a grid over [0, T] (1 ms bins up to 2^18 of them).
type hol struct {
	t0    float64   // smallest tier, ms
	h     float64   // bin width, ms
	mass  []float64 // share of messages whose short last hop waits in each bin
	nz    []int     // bins with mass
	short float64   // Σ mass
	g     []float64 // G at the bin edges k·h
	integ []float64 // ∫ from edge k to T of (1 - G)
}

// newHOL bins the short pieces of the smallest tier t0; solve then gives
// the model its arrival rate.
func newHOL(t0 time.Duration, pieces []piece) *hol {
	T := ms(t0)
	n := int(math.Min(math.Ceil(T), 1<<18))
	m := &hol{t0: T, h: T / float64(n), mass: make([]float64, n), g: make([]float64, n+1), integ: make([]float64, n+1)}
	diff := make([]float64, n+1)
	for _, pc := range pieces {
		a, b := float64(pc.a)/1e6, float64(pc.b)/1e6
		ia := min(int(a/m.h), n-1)
		ib := min(int(b/m.h), n)
		if pc.a == pc.b || ia == ib {
			m.mass[ia] += pc.p
			continue
		}
		rho := pc.p / (b - a)
		m.mass[ia] += rho * (float64(ia+1)*m.h - a)
		if ib < n {
			m.mass[ib] += rho * (b - float64(ib)*m.h)
		}
		diff[ia+1] += rho * m.h
		diff[ib] -= rho * m.h
	}
	var run float64
	for j := range n {
		run += diff[j]
		m.mass[j] += run
		if m.mass[j] > 0 {
			m.nz = append(m.nz, j)
			m.short += m.mass[j]
		}
	}
	return m
}

// solve computes G for fullVisits records per message that stay the full
// delay and perPartition messages per second scheduled per partition of the
// smallest tier.
func (m *hol) solve(fullVisits, perPartition float64) {
	// A(m) = rate × (fullVisits·(T - m) + Σ_{c_j > m} mass_j·(c_j - m)),
	// bin centres c_j = (j + ½)h, from suffix sums.
	n, T := len(m.mass), m.t0
	rate := perPartition / 1000 // per ms
	var sm, sw float64
	for k := n; k >= 0; k-- {
		if k < n {
			sm += m.mass[k]
			sw += m.mass[k] * (float64(k) + 0.5) * m.h
		}
		edge := float64(k) * m.h
		m.g[k] = math.Exp(-rate * (fullVisits*(T-edge) + sw - edge*sm))
		if k < n {
			m.integ[k] = m.integ[k+1] + m.h*(2-m.g[k]-m.g[k+1])/2
		}
	}
}

// gAt is G(x), x in ms, interpolated; 1 from T on.
func (m *hol) gAt(x float64) float64 {
	if x >= m.t0 {
		return 1
	}
	f := x / m.h
	k := int(f)
	return m.g[k] + (f-float64(k))*(m.g[k+1]-m.g[k])
}

// meanShort is the mean lateness, ms, of the short hops.
func (m *hol) meanShort() float64 {
	if m.short == 0 {
		return 0
	}
	var s float64
	for _, j := range m.nz {
		s += m.mass[j] * (m.integ[j] + m.integ[j+1]) / 2
	}
	return s / m.short
}

// cdf is P(lateness ≤ x ms) over a mix of zero messages never late and
// short ones in the proportions of the arguments.
func (m *hol) cdf(x, zero, short float64) float64 {
	if short == 0 || m.short == 0 {
		return 1
	}
	var s float64
	for _, j := range m.nz {
		s += m.mass[j] * m.gAt((float64(j)+0.5)*m.h+x)
	}
	return (zero + short*s/m.short) / (zero + short)
}

// quantile is the lateness, ms, below which a share q of the mix falls.
func (m *hol) quantile(q, zero, short float64) float64 {
	if m.cdf(0, zero, short) >= q {
		return 0
	}
	lo, hi := 0.0, m.t0
	for hi-lo > 0.01 {
		mid := (lo + hi) / 2
		if m.cdf(mid, zero, short) >= q {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}
