package plan

import (
	"errors"
	"time"
)

// paths follows every delay of a distribution through the ladder at once,
// the way tier.Route sends a message: while time remains, the largest tier
// that fits, else the smallest tier, which then releases the message at its
// due time. A range of delays moves as one interval for as long as all of it
// takes the same tier, and splits where it straddles a tier boundary, so
// every figure is exact (no sampling): visits per tier, time spent in each
// tier, hops, and the "short" final hops through the smallest tier whose
// remaining time is below that tier's delay (the only hops that can be late).
//
// Forwarding is taken as instantaneous: a released record is stamped with
// its release time and routed on the remaining time, so delays do not drift.
type paths struct {
	tiers []int64 // nanoseconds, ascending
	sizes *recordSizes
	keep  bool // record the short pieces (for lateness)

	// per tier, per scheduled message
	visits   []float64 // records entering the tier
	fullTime []float64 // nanoseconds spent by records that stay the full tier delay
	bytes    []float64 // bytes written into the tier
	exact    []float64 // share of messages delivered, on time, from this tier

	shortShare float64 // share of messages whose last hop is a short one
	shortTime  float64 // mean nanoseconds of that last hop (before any blocking), times shortShare
	minShort   int64   // the smallest remaining time of a short hop
	pieces     []piece

	meanHops    float64
	maxHops     int
	cycleBytes  float64 // bytes written per message: every tier record and the target record
	targetBytes float64 // of which the target record

	stack    []node
	nodes    int
	maxNodes int
}

// piece is a share p of the messages whose last hop is a short one through
// the smallest tier with a remaining time spread evenly over [a, b)
// nanoseconds (a == b: exactly a).
type piece struct {
	a, b int64
	p    float64
}

type node struct {
	lo, hi int64 // remaining time, nanoseconds: [lo, hi), or exactly lo when lo == hi
	p      float64
	h      int // hops so far
	last   int // tier of the last hop
}

// maxNodes bounds the work of one walk (about a second): a tier set far too
// fine for the delays (a 1ms tier for week-long delays) would otherwise run
// for minutes.
const maxNodes = 20_000_000

var errTooFine = errors.New("the tiers are too fine for these delays (too many distinct paths); add a larger tier")

func newPaths(tiers []time.Duration, sizes *recordSizes, keep bool) *paths {
	w := &paths{sizes: sizes, keep: keep, maxNodes: maxNodes}
	for _, t := range tiers {
		w.tiers = append(w.tiers, int64(t))
	}
	k := len(tiers)
	w.visits, w.fullTime, w.bytes, w.exact = make([]float64, k), make([]float64, k), make([]float64, k), make([]float64, k)
	return w
}

func (w *paths) reset() {
	clear(w.visits)
	clear(w.fullTime)
	clear(w.bytes)
	clear(w.exact)
	w.shortShare, w.shortTime, w.minShort = 0, 0, -1
	w.pieces = w.pieces[:0]
	w.meanHops, w.maxHops, w.cycleBytes, w.targetBytes = 0, 0, 0, 0
	w.stack = w.stack[:0]
	w.nodes = 0
}

// run walks every component of d.
func (w *paths) run(d Distribution) error {
	w.reset()
	for _, c := range d.comps {
		w.stack = append(w.stack, node{lo: int64(c.Lo), hi: int64(c.Hi), p: c.Weight, last: -1})
	}
	for len(w.stack) > 0 {
		nd := w.stack[len(w.stack)-1]
		w.stack = w.stack[:len(w.stack)-1]
		if w.nodes++; w.nodes > w.maxNodes {
			return errTooFine
		}
		if nd.lo == nd.hi {
			w.point(nd)
		} else {
			w.split(nd)
		}
	}
	return nil
}

// route is tier.Route on a remaining time r > 0: the largest tier ≤ r, or
// the smallest.
func (w *paths) route(r int64) int {
	k := len(w.tiers) - 1
	for k > 0 && w.tiers[k] > r {
		k--
	}
	return k
}

func (w *paths) point(nd node) {
	r := nd.lo
	if r <= 0 {
		w.exactLeaf(nd)
		return
	}
	k := w.route(r)
	t := w.tiers[k]
	if t > r {
		w.shortLeaf(r, r, nd.p, nd.h)
		return
	}
	// Every hop through tier k until less than t remains.
	n := r / t
	w.full(k, nd.p, nd.h, int(n))
	w.stack = append(w.stack, node{lo: r - n*t, hi: r - n*t, p: nd.p, h: nd.h + int(n), last: k})
}

func (w *paths) split(nd node) {
	length := float64(nd.hi - nd.lo)
	if t0 := w.tiers[0]; nd.lo < t0 {
		b := min(nd.hi, t0)
		w.shortLeaf(nd.lo, b, nd.p*float64(b-nd.lo)/length, nd.h)
	}
	for k, t := range w.tiers {
		lo, hi := max(nd.lo, t), nd.hi
		if k+1 < len(w.tiers) {
			hi = min(hi, w.tiers[k+1])
		}
		if lo >= hi {
			continue
		}
		p := nd.p * float64(hi-lo) / length
		// The whole of [lo, hi) takes tier k for as long as its low end
		// stays ≥ t: n hops.
		n := lo / t
		w.full(k, p, nd.h, int(n))
		w.stack = append(w.stack, node{lo: lo - n*t, hi: hi - n*t, p: p, h: nd.h + int(n), last: k})
	}
}

// full accounts n hops through tier k, each the full tier delay, of a share
// p of the messages having made h hops before.
func (w *paths) full(k int, p float64, h, n int) {
	w.visits[k] += float64(n) * p
	w.fullTime[k] += float64(n) * p * float64(w.tiers[k])
	b := p * w.sizes.sum(h, n)
	w.bytes[k] += b
	w.cycleBytes += b
}

// exactLeaf: delivered exactly on time from the tier of its last hop.
func (w *paths) exactLeaf(nd node) {
	w.exact[nd.last] += nd.p
	w.deliver(nd.p, nd.h)
}

// shortLeaf: one last hop through the smallest tier, released at the due
// time, remaining time in [a, b).
func (w *paths) shortLeaf(a, b int64, p float64, h int) {
	if p <= 0 {
		return
	}
	w.visits[0] += p
	bb := p * w.sizes.of(h)
	w.bytes[0] += bb
	w.cycleBytes += bb
	w.shortShare += p
	w.shortTime += p * float64(a+b) / 2
	if w.minShort < 0 || a < w.minShort {
		w.minShort = a
	}
	if w.keep {
		w.pieces = append(w.pieces, piece{a: a, b: b, p: p})
	}
	w.deliver(p, h+1)
}

func (w *paths) deliver(p float64, hops int) {
	w.meanHops += p * float64(hops)
	if p > 0 {
		w.maxHops = max(w.maxHops, hops)
	}
	tb := p * w.sizes.of(hops)
	w.targetBytes += tb
	w.cycleBytes += tb
}
