package plan

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/ladder/ladder/pkg/tier"
)

// SimConfig is a discrete-event simulation of a ladder carrying a workload.
type SimConfig struct {
	// Tiers is the ladder (required).
	Tiers *tier.Ladder
	// Partitions is the partition count of each tier topic, smallest tier
	// first (default: 1 each). Each record goes to a random partition.
	Partitions []int
	// Pending is the number of messages in the ladder (required). The run
	// carries about that many: see SimResult.Pending.
	Pending int
	// Delays is the delay each message is scheduled with (required).
	Delays Distribution
	// Window is the simulated time measured (default: the mean delay, so
	// that about Pending messages are delivered in it).
	Window time.Duration
	// Warmup is simulated before the window (default: twice the smallest
	// tier): the simulation starts in the steady state, except for the
	// head-of-line blocking in the smallest tier, which needs one tier delay.
	Warmup time.Duration
	// Lag is added between release and delivery, as in Workload.
	Lag time.Duration
	// Seed seeds the random numbers (partitions, delays).
	Seed uint64
}

// SimResult is what a simulation measured over its window.
type SimResult struct {
	// Pending is the number of messages the run carried: within a small
	// fraction of SimConfig.Pending (see sim).
	Pending       int       `json:"pending"`
	WindowSeconds float64   `json:"window_seconds"`
	Delivered     int64     `json:"delivered"`
	DeliveryRate  float64   `json:"delivery_rate"`
	MeanHops      float64   `json:"mean_hops"`
	MaxHops       int       `json:"max_hops"`
	Early         int64     `json:"early"`
	Lateness      Lateness  `json:"lateness"`
	PerTier       []SimTier `json:"per_tier"`
	// Events is every record released or scheduled in the whole run, warm-up included.
	Events int64 `json:"events"`
	// SimulatedSeconds is the simulated time of the whole run: the history
	// of the initial messages (up to the longest delay), the warm-up and
	// the window.
	SimulatedSeconds float64 `json:"simulated_seconds"`
	WallSeconds      float64 `json:"wall_seconds"`
}

// SimTier is what the simulation measured in one tier.
type SimTier struct {
	Tier        string  `json:"tier"`
	Partitions  int     `json:"partitions"`
	ArrivalRate float64 `json:"arrival_rate"`
	// StoredRecords is the time-averaged number of records in the tier.
	StoredRecords  float64 `json:"stored_records"`
	HopsPerMessage float64 `json:"hops_per_message"`
	DeliveredShare float64 `json:"delivered_share"`
	// Lateness is of the messages delivered from this tier.
	Lateness Lateness `json:"lateness"`
}

// sim is one run. Times are milliseconds since the start of the run (uint32:
// 49 days); the steady state begins at zero = max delay + bound, where bound
// (the smallest tier + lag) is the most a message can be late.
//
// The run starts empty and schedules the initial messages at the times they
// would have been scheduled in the steady state, in increasing order, so
// that at zero every pending message is where its own history puts it. In
// the steady state a message is pending from its scheduling until its
// delivery, d + ℓ later (d its delay, ℓ its lateness), so its age at zero is
// uniform over [0, d + ℓ). ℓ is not known before the message is simulated,
// so the initial ages are drawn uniform over [0, d + bound), a wider range,
// and a message delivered before zero (its age was beyond d + ℓ) is dropped:
// the survivors are exactly the steady state, whatever the lateness turns
// out to be. Their number, the pending count of the run, is close to the
// Pending asked for (within bound / mean delay).
type sim struct {
	tiers  []uint32 // ms
	qBase  []int    // first queue of each tier
	parts  []uint64
	tierOf []int
	q      []fifo
	nq     int      // tier queues; then the initial-schedule stream, then the delivery-lag line
	tree   []uint64 // tournament over the queue heads: see set
	leaves int
	slab   *slab
	rng    uint64
	dist   *Distribution

	lag           uint32
	mStart, end   uint32 // the measured window
	tick, nextTic uint32 // stored records are sampled every tick within it

	// initial schedules still to come
	initLeft int
	initN    int
	initAge  uint32  // of the next initial message
	bound    uint32  // smallest tier + lag: the most a message is late
	zero     uint32  // the start of the steady state
	flat     float64 // share of initial ages in [0, bound)
	dropped  int64   // initial messages delivered before zero

	occ, occSum []int64
	samples     int64
	arrivals    []int64
	delivered   []int64
	hopsSum     int64
	maxHops     int
	early       int64
	hist        []histogram
	events      int64
}

type histogram struct {
	counts []uint32
	width  uint32 // ms per bin
	n      int64
	sum    float64
	max    int64
}

func (h *histogram) add(v int64) {
	b := int(v / int64(h.width))
	if b >= len(h.counts) {
		b = len(h.counts) - 1
	}
	h.counts[b]++
	h.n++
	h.sum += float64(v)
	h.max = max(h.max, v)
}

func (h *histogram) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(h.n)))
	var c uint64
	for i, n := range h.counts {
		c += uint64(n)
		if c >= want {
			return float64(uint32(i)*h.width) / 1000
		}
	}
	return float64(h.max) / 1000
}

func (h *histogram) merge(o *histogram) {
	for i, n := range o.counts {
		h.counts[i] += n
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

func (h *histogram) lateness() Lateness {
	if h.n == 0 {
		return Lateness{}
	}
	return Lateness{MeanSeconds: h.sum / float64(h.n) / 1000, P50Seconds: h.quantile(0.5),
		P99Seconds: h.quantile(0.99), MaxSeconds: float64(h.max) / 1000}
}

// Simulate runs the simulation of cfg. It stops early with ctx's error.
func Simulate(ctx context.Context, cfg SimConfig) (*SimResult, error) {
	s, err := newSim(cfg)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := s.run(ctx); err != nil {
		return nil, fmt.Errorf("simulation stopped after %d events: %w", s.events, err)
	}
	res := s.result(cfg)
	res.WallSeconds = time.Since(start).Seconds()
	return res, nil
}

func newSim(cfg SimConfig) (*sim, error) {
	if cfg.Tiers == nil || cfg.Pending < 1 || len(cfg.Delays.comps) == 0 {
		return nil, errors.New("simulation: want a ladder, pending messages and a delay distribution")
	}
	ts := cfg.Tiers.Tiers()
	delays := make([]time.Duration, len(ts))
	for i, t := range ts {
		delays[i] = t.Delay
	}
	sizes := recordSizes{}
	walk := newPaths(delays, &sizes, false)
	if err := walk.run(cfg.Delays); err != nil {
		return nil, err
	}
	if walk.maxHops >= math.MaxUint16 {
		return nil, fmt.Errorf("simulation: a message makes %d hops, more than the simulation counts", walk.maxHops)
	}
	if cfg.Window <= 0 {
		cfg.Window = cfg.Delays.Mean()
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = 2 * ts[0].Delay
	}
	dmax := cfg.Delays.Max()
	horizon := dmax + ts[0].Delay + 2*cfg.Lag + cfg.Warmup + cfg.Window + cfg.Tiers.Largest().Delay
	if horizon >= time.Duration(math.MaxUint32-1)*time.Millisecond {
		return nil, fmt.Errorf("simulation: %s of simulated time is more than 49 days: shorten the window", horizon)
	}
	if cfg.Lag%time.Millisecond != 0 || cfg.Window%time.Millisecond != 0 || cfg.Warmup%time.Millisecond != 0 {
		return nil, errors.New("simulation: lag, window and warm-up must be whole milliseconds")
	}
	s := &sim{dist: &cfg.Delays, rng: cfg.Seed ^ 0x9e3779b97f4a7c15, lag: uint32(cfg.Lag.Milliseconds())}
	for i, t := range ts {
		s.tiers = append(s.tiers, uint32(t.Delay.Milliseconds()))
		p := 1
		if i < len(cfg.Partitions) && cfg.Partitions[i] > 0 {
			p = cfg.Partitions[i]
		}
		s.qBase = append(s.qBase, s.nq)
		s.parts = append(s.parts, uint64(p))
		for range p {
			s.tierOf = append(s.tierOf, i)
		}
		s.nq += p
	}
	s.q = make([]fifo, s.nq+2)
	k := len(ts)
	s.occ, s.occSum, s.arrivals, s.delivered = make([]int64, k), make([]int64, k), make([]int64, k), make([]int64, k)
	s.hist = make([]histogram, k)
	bound := int64(ts[0].Delay.Milliseconds()) + int64(s.lag) + 2
	bins := min(bound, 1<<20)
	width := uint32((bound + bins - 1) / bins)
	for i := range s.hist {
		s.hist[i] = histogram{counts: make([]uint32, bins+1), width: width}
	}
	s.bound = uint32((ts[0].Delay + cfg.Lag).Milliseconds())
	s.zero = uint32(dmax.Milliseconds()) + s.bound
	s.mStart = s.zero + uint32(cfg.Warmup.Milliseconds())
	s.end = s.mStart + uint32(cfg.Window.Milliseconds())
	s.tick = max(1, uint32(cfg.Window.Milliseconds()/8192))
	s.nextTic = s.mStart
	// Ages are uniform over [0, bound) with probability bound/(D + bound),
	// else bound + an age of the equilibrium for cycles of length d. Draw
	// enough that about Pending survive, guessing that the messages ending
	// with a short hop are late by bound/2 on average.
	mean, b := ms(cfg.Delays.Mean()), float64(s.bound)
	s.flat = b / (mean + b)
	guess := float64(s.lag) + walk.shortShare*float64(ts[0].Delay.Milliseconds())/2
	s.initN = int(math.Round(float64(cfg.Pending) * (mean + b) / (mean + guess)))
	s.initLeft = s.initN
	s.slab = newSlab(s.initN, s.nq)
	for i := range s.q {
		s.q[i] = newFIFO()
	}
	s.leaves = 1 << bits.Len(uint(s.nq+2))
	s.tree = make([]uint64, 2*s.leaves)
	for i := range s.tree {
		s.tree[i] = empty
	}
	s.set(s.nq, uint64(s.nextInitTime())<<32|uint64(s.nq))
	return s, nil
}

func (s *sim) next() uint64 {
	// wyrand
	s.rng += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(s.rng, s.rng^0xe7037ed1a0b428db)
	return hi ^ lo
}

func (s *sim) float() float64 { return float64(s.next()>>11) / (1 << 53) }

// nextInitTime draws the age of the next initial message (ms) and returns
// when it was scheduled. Ages are stratified, the j-th of Pending strata for
// j from Pending-1 down to 0, so they decrease and the schedule times increase.
func (s *sim) nextInitTime() uint32 {
	j := s.initLeft - 1
	u := (float64(j) + s.float()) / float64(s.initN)
	var age float64
	if u < s.flat {
		age = u / s.flat * float64(s.bound)
	} else {
		age = float64(s.bound) + s.dist.age((u-s.flat)/(1-s.flat))
	}
	s.initAge = min(uint32(age), s.zero)
	return s.zero - s.initAge
}

// releaseAt is tier.ReleaseAt in milliseconds: a record that entered a tier
// of delay at entered leaves it at the end of the delay, or when due if that
// comes first. (The simulation always has a due time.)
func releaseAt(entered, delay, due uint32) uint32 { return min(entered+delay, due) }

// route is tier.Route on the remaining time rem > 0, in milliseconds: the
// largest tier that fits, or the smallest.
func (s *sim) route(rem uint32) int {
	k := len(s.tiers) - 1
	for k > 0 && s.tiers[k] > rem {
		k--
	}
	return k
}

// enqueue appends a record entering tier k at t to a random partition.
func (s *sim) enqueue(t, due uint32, hops uint16, k int, measuring bool) {
	p := s.qBase[k] + int(hi64(s.next(), s.parts[k]))
	f := &s.q[p]
	own := releaseAt(t, s.tiers[k], due)
	s.slab.push(f, own, due, hops)
	s.occ[k]++
	if measuring {
		s.arrivals[k]++
	}
	if f.n == 1 {
		s.set(p, uint64(max(own, f.last))<<32|uint64(p))
	}
}

func hi64(x, n uint64) uint64 {
	hi, _ := bits.Mul64(x, n)
	return hi
}

// schedule draws a delay for a message scheduled at t.
func (s *sim) schedule(t uint32, measuring bool) {
	d := uint32(s.dist.quantile(s.float()))
	s.enqueue(t, t+d, 1, s.route(d), measuring)
}

func (s *sim) run(ctx context.Context) error {
	lagLine := s.nq + 1
	for {
		top := s.tree[1]
		t := uint32(top >> 32) // empty (no queue holds a record) is beyond the end
		if t >= s.end {
			return nil
		}
		if s.events&(1<<22-1) == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		for t >= s.nextTic && s.nextTic < s.end {
			for k, n := range s.occ {
				s.occSum[k] += n
			}
			s.samples++
			s.nextTic += s.tick
		}
		measuring := t >= s.mStart
		s.events++
		qi := int(uint32(top))
		switch {
		case qi < s.nq:
			// Release the head of partition qi at t, then route it.
			f := &s.q[qi]
			due, hops := s.slab.pop(f)
			f.last = t
			k := s.tierOf[qi]
			s.occ[k]--
			if f.n > 0 {
				s.set(qi, uint64(max(s.slab.headOwn(f), t))<<32|uint64(qi))
			} else {
				s.set(qi, empty)
			}
			if due > t {
				s.enqueue(t, due, hops+1, s.route(due-t), measuring)
				continue
			}
			if t+s.lag < s.zero {
				s.dropped++ // an initial message that was not pending at zero
				continue
			}
			if measuring {
				s.delivered[k]++
				s.hopsSum += int64(hops)
				s.maxHops = max(s.maxHops, int(hops))
				if late := int64(t) + int64(s.lag) - int64(due); late < 0 {
					s.early++
				} else {
					s.hist[k].add(late)
				}
			}
			if s.lag == 0 {
				s.schedule(t, measuring)
			} else {
				s.delay(lagLine, t+s.lag)
			}
		case qi == s.nq:
			// An initial schedule: age a, delay drawn given delay + bound > a.
			t0, age := t, s.initAge
			s.initLeft--
			if s.initLeft > 0 {
				s.set(qi, uint64(s.nextInitTime())<<32|uint64(qi))
			} else {
				s.set(qi, empty)
			}
			floor := int64(age) - int64(s.bound) // the delay must exceed it
			below := s.dist.below(float64(floor) + 1)
			d := uint32(max(s.dist.quantile(below+s.float()*(1-below)), floor+1, 1))
			s.enqueue(t0, t0+d, 1, s.route(d), measuring)
		default:
			// The delivery-lag line: the target received it; schedule again.
			f := &s.q[qi]
			s.slab.pop(f)
			if f.n > 0 {
				s.set(qi, uint64(s.slab.headOwn(f))<<32|uint64(qi))
			} else {
				s.set(qi, empty)
			}
			s.schedule(t, measuring)
		}
	}
}

// delay puts a delivered message on the lag line until at.
func (s *sim) delay(line int, at uint32) {
	f := &s.q[line]
	s.slab.push(f, at, 0, 0)
	if f.n == 1 {
		s.set(line, uint64(at)<<32|uint64(line))
	}
}

// empty is the key of a queue with no record: later than any time.
const empty = math.MaxUint64

// set gives queue q the key x: the release time of its head << 32 | q, or
// empty. The queues are the leaves of a winner tree: every node holds the
// smaller key of its two children, so the root is the next release of the
// whole ladder (ties to the lower queue). An update walks from the leaf to
// the root with one branch-free min per level: the merge costs log2(queues)
// steps that the processor never mispredicts.
func (s *sim) set(q int, x uint64) {
	t := s.tree
	i := s.leaves + q
	t[i] = x
	for i > 1 {
		// The subtree's new minimum stays in a register: only the
		// sibling is loaded, so no step waits on the store before it.
		x = min(x, t[i^1])
		i >>= 1
		t[i] = x
	}
}

func (s *sim) result(cfg SimConfig) *SimResult {
	window := float64(s.end-s.mStart) / 1000
	var delivered int64
	for _, n := range s.delivered {
		delivered += n
	}
	r := &SimResult{Pending: s.initN - int(s.dropped), WindowSeconds: window, Delivered: delivered,
		DeliveryRate: float64(delivered) / window, MaxHops: s.maxHops, Early: s.early, Events: s.events,
		SimulatedSeconds: float64(s.end) / 1000}
	if delivered > 0 {
		r.MeanHops = float64(s.hopsSum) / float64(delivered)
	}
	all := histogram{counts: make([]uint32, len(s.hist[0].counts)), width: s.hist[0].width}
	for i, t := range cfg.Tiers.Tiers() {
		st := SimTier{Tier: t.Label(), Partitions: int(s.parts[i]), ArrivalRate: float64(s.arrivals[i]) / window,
			Lateness: s.hist[i].lateness()}
		if s.samples > 0 {
			st.StoredRecords = float64(s.occSum[i]) / float64(s.samples)
		}
		if delivered > 0 {
			st.HopsPerMessage = float64(s.arrivals[i]) / float64(delivered)
			st.DeliveredShare = float64(s.delivered[i]) / float64(delivered)
		}
		all.merge(&s.hist[i])
		r.PerTier = append(r.PerTier, st)
	}
	r.Lateness = all.lateness()
	return r
}
