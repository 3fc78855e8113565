package plan

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ladder/ladder/pkg/tier"
)

// Objectives Suggest can minimise.
const (
	// ObjectiveHops minimises the mean number of hops per message.
	ObjectiveHops = "hops"
	// ObjectiveWriteAmp minimises the bytes written per byte delivered. It
	// ranks almost as hops do (every hop writes one record), except that
	// records grow by a byte when ladder-hops reaches 10.
	ObjectiveWriteAmp = "write-amp"
)

// NiceDelays are the tier delays Suggest tries by default: round values an
// operator would pick, from 1s to 7d.
var NiceDelays = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 20 * time.Second,
	30 * time.Second, 45 * time.Second, time.Minute, 2 * time.Minute, 3 * time.Minute, 5 * time.Minute,
	10 * time.Minute, 15 * time.Minute, 20 * time.Minute, 30 * time.Minute, 45 * time.Minute, time.Hour,
	90 * time.Minute, 2 * time.Hour, 3 * time.Hour, 4 * time.Hour, 6 * time.Hour, 8 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 48 * time.Hour, 72 * time.Hour, 168 * time.Hour,
}

// SuggestConfig bounds the search of Suggest.
type SuggestConfig struct {
	// MaxLateness bounds the smallest tier, hence the lateness (required).
	MaxLateness time.Duration
	// MaxTiers is the most tiers a suggestion has (default 4, at most 6).
	MaxTiers int
	// Objective is ObjectiveHops (default) or ObjectiveWriteAmp.
	Objective string
	// Candidates are the delays tried (default: NiceDelays, the delays of
	// the distribution's points and the start of its ranges, and
	// MaxLateness), of which those up to the longest delay are kept: a
	// longer tier is never taken.
	Candidates []time.Duration
	// Top is how many suggestions are returned (default 5).
	Top int
}

// Suggestion is the result of Suggest.
type Suggestion struct {
	Objective          string   `json:"objective"`
	MaxLatenessSeconds float64  `json:"max_lateness_seconds"`
	MaxTiers           int      `json:"max_tiers"`
	Candidates         []string `json:"candidates"`
	// Searched is how many tier sets the search considered.
	Searched int `json:"searched"`
	// Ranked are the best tier sets, best first.
	Ranked []Candidate `json:"ranked"`
	// Current is the ladder given, for comparison.
	Current Candidate `json:"current"`
	// Best is the full plan of the best tier set.
	Best *Plan `json:"best"`
}

// Candidate is one tier set and its figures.
type Candidate struct {
	Tiers                string  `json:"tiers"`
	MeanHops             float64 `json:"mean_hops"`
	MaxHops              int     `json:"max_hops"`
	WriteAmplification   float64 `json:"write_amplification"`
	LatenessMeanSeconds  float64 `json:"lateness_mean_seconds"`
	LatenessP99Seconds   float64 `json:"lateness_p99_seconds"`
	WorstLatenessSeconds float64 `json:"worst_lateness_seconds"`
	Partitions           int     `json:"partitions"`
}

// maxSearch bounds the tier sets Suggest enumerates.
const maxSearch = 5_000_000

// Suggest searches for the tier sets that minimise the objective under w,
// among sets of up to MaxTiers candidate delays whose smallest is at most
// MaxLateness, and plans the best of them and current.
func Suggest(current *tier.Ladder, w Workload, cfg SuggestConfig) (*Suggestion, error) {
	w.setDefaults()
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxTiers == 0 {
		cfg.MaxTiers = 4
	}
	if cfg.Top == 0 {
		cfg.Top = 5
	}
	if cfg.Objective == "" {
		cfg.Objective = ObjectiveHops
	}
	switch {
	case cfg.MaxLateness < time.Millisecond:
		return nil, errors.New("lateness bound: want 1ms or more")
	case cfg.MaxTiers < 1 || cfg.MaxTiers > 6:
		return nil, errors.New("tiers: want 1 to 6")
	case cfg.Objective != ObjectiveHops && cfg.Objective != ObjectiveWriteAmp:
		return nil, fmt.Errorf("objective %q: want %s or %s", cfg.Objective, ObjectiveHops, ObjectiveWriteAmp)
	}
	cands := candidates(w.Delays, cfg)
	if len(cands) == 0 || cands[0] > cfg.MaxLateness {
		return nil, fmt.Errorf("no candidate delay is within the lateness bound %s", tier.Label(cfg.MaxLateness))
	}
	s := &searcher{w: w, cfg: cfg, cands: cands, mean: w.Delays.Mean().Seconds()}
	s.sizes = newRecordSizes(w.ValueBytes, w.KeyBytes, w.Target, w.Batch)
	if n := s.count(); n > maxSearch {
		return nil, fmt.Errorf("%d tier sets to search, more than %d: give fewer candidates or tiers", n, maxSearch)
	}
	s.search()
	if len(s.best) == 0 {
		return nil, errors.New("no tier set could be planned: the candidates are too fine for these delays")
	}
	out := &Suggestion{Objective: cfg.Objective, MaxLatenessSeconds: cfg.MaxLateness.Seconds(), MaxTiers: cfg.MaxTiers,
		Searched: s.searched}
	for _, c := range cands {
		out.Candidates = append(out.Candidates, tier.Label(c))
	}
	for i, r := range s.best {
		l, err := tier.New(r.set, current.Prefix())
		if err != nil {
			return nil, err
		}
		c, p, err := candidate(l, w)
		if err != nil {
			return nil, err
		}
		out.Ranked = append(out.Ranked, c)
		if i == 0 {
			out.Best = p
		}
	}
	var err error
	if out.Current, _, err = candidate(current, w); err != nil {
		return nil, fmt.Errorf("planning the current ladder %s: %w", current, err)
	}
	return out, nil
}

func candidate(l *tier.Ladder, w Workload) (Candidate, *Plan, error) {
	p, err := Compute(l, w)
	if err != nil {
		return Candidate{}, nil, err
	}
	return Candidate{
		Tiers: p.Tiers, MeanHops: p.Total.MeanHops, MaxHops: p.Total.MaxHops,
		WriteAmplification:  p.Total.WriteAmplification,
		LatenessMeanSeconds: p.Total.Lateness.MeanSeconds, LatenessP99Seconds: p.Total.Lateness.P99Seconds,
		WorstLatenessSeconds: p.Total.WorstLatenessSeconds, Partitions: p.Total.Partitions,
	}, p, nil
}

// candidates lists the delays to try, ascending, up to the longest delay.
func candidates(d Distribution, cfg SuggestConfig) []time.Duration {
	var out []time.Duration
	if len(cfg.Candidates) > 0 {
		out = slices.Clone(cfg.Candidates)
	} else {
		out = slices.Clone(NiceDelays)
		for _, c := range d.comps {
			if c.Lo%time.Second == 0 {
				out = append(out, c.Lo)
			}
		}
		out = append(out, cfg.MaxLateness)
	}
	longest := d.Max()
	out = slices.DeleteFunc(out, func(c time.Duration) bool {
		return c <= 0 || c%time.Millisecond != 0 || c > longest
	})
	slices.Sort(out)
	return slices.Compact(out)
}

type searcher struct {
	w     Workload
	cfg   SuggestConfig
	cands []time.Duration
	sizes recordSizes
	mean  float64 // seconds

	set      []time.Duration
	searched int
	best     []ranked
}

type ranked struct {
	set   []time.Duration
	score float64
	max   int
}

// count is the number of tier sets: a smallest tier within the bound, and
// up to MaxTiers-1 larger ones.
func (s *searcher) count() int {
	n := 0
	for i, c := range s.cands {
		if c > s.cfg.MaxLateness {
			break
		}
		rest := len(s.cands) - i - 1
		for k := 0; k < s.cfg.MaxTiers; k++ {
			n += binomial(rest, k)
		}
	}
	return n
}

func binomial(n, k int) int {
	if k < 0 || k > n {
		return 0
	}
	r := 1
	for i := 1; i <= k; i++ {
		r = r * (n - k + i) / i
	}
	return r
}

// search evaluates every tier set, the largest tier first: a set whose
// largest tier is T needs at least mean delay / T hops per message, so once
// the list is full of sets that beat that, smaller largest tiers are skipped.
// Sets are ranked by mean hops in closed form (greedy); for the write-amp
// objective a longer list is then ranked again by its exact bytes.
func (s *searcher) search() {
	keep := s.cfg.Top
	if s.cfg.Objective == ObjectiveWriteAmp {
		keep *= 4
	}
	for top := len(s.cands) - 1; top >= 0; top-- {
		if len(s.best) == keep && s.mean/s.cands[top].Seconds() > s.best[len(s.best)-1].score {
			break
		}
		// sets with this largest tier: a smallest within the bound, and
		// up to MaxTiers-2 tiers strictly between
		for lo := 0; lo <= top && s.cands[lo] <= s.cfg.MaxLateness; lo++ {
			s.set = append(s.set[:0], s.cands[lo])
			switch {
			case lo == top:
				s.eval(keep)
			case s.cfg.MaxTiers >= 2:
				s.between(keep, lo+1, top, s.cfg.MaxTiers-2)
			}
		}
	}
	if s.cfg.Objective == ObjectiveWriteAmp {
		s.rerankBytes()
	}
}

// between adds up to room tiers from cands[from:top], then the top tier.
func (s *searcher) between(keep, from, top, room int) {
	n := len(s.set)
	s.set = append(s.set, s.cands[top])
	s.eval(keep)
	s.set = s.set[:n]
	if room == 0 {
		return
	}
	for i := from; i < top; i++ {
		s.set = append(s.set, s.cands[i])
		s.between(keep, i+1, top, room-1)
		s.set = s.set[:n]
	}
}

func (s *searcher) eval(keep int) {
	s.searched++
	mean, most := newGreedy(s.set).meanMax(s.w.Delays)
	r := ranked{score: mean, max: most}
	i := rankOf(s.best, r, s.set)
	if i >= keep {
		return
	}
	r.set = slices.Clone(s.set)
	s.best = slices.Insert(s.best, i, r)
	if len(s.best) > keep {
		s.best = s.best[:keep]
	}
}

// rerankBytes ranks the list by the bytes written per byte delivered,
// walking each set's paths exactly.
func (s *searcher) rerankBytes() {
	list := s.best
	s.best = nil
	for _, r := range list {
		walk := newPaths(r.set, &s.sizes, false)
		if err := walk.run(s.w.Delays); err != nil {
			continue
		}
		r.score = walk.cycleBytes / float64(s.w.ValueBytes+s.w.KeyBytes)
		i := rankOf(s.best, r, r.set)
		s.best = slices.Insert(s.best, i, r)
	}
	if len(s.best) > s.cfg.Top {
		s.best = s.best[:s.cfg.Top]
	}
}

// rankOf returns where r (with tiers set) goes in best: by score, then fewer
// tiers, then fewer max hops, then the tier list (so the smaller smallest
// tier, which is less late, first).
func rankOf(best []ranked, r ranked, set []time.Duration) int {
	less := func(b ranked) bool {
		if d := r.score - b.score; math.Abs(d) > 1e-9*math.Max(1, math.Abs(b.score)) {
			return d < 0
		}
		if len(set) != len(b.set) {
			return len(set) < len(b.set)
		}
		if r.max != b.max {
			return r.max < b.max
		}
		return slices.Compare(set, b.set) < 0
	}
	for i, b := range best {
		if less(b) {
			return i
		}
	}
	return len(best)
}

// String lists the ranking in one line each.
func (s *Suggestion) String() string {
	var b strings.Builder
	for i, c := range s.Ranked {
		fmt.Fprintf(&b, "%d. %s: %.2f hops\n", i+1, c.Tiers, c.MeanHops)
	}
	return b.String()
}
