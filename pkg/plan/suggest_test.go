package plan

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/tier"
)

func defaultLadder(tb testing.TB) *tier.Ladder {
	tb.Helper()
	l, err := tier.Parse(tier.DefaultTiers, tier.DefaultPrefix)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// TestSuggestExactDelays: when every delay can have its own tier, one hop
// each is the best there is.
func TestSuggestExactDelays(t *testing.T) {
	w := Workload{Pending: 1_000_000, ValueBytes: 100, Delays: mustDelays(t, "5m:0.5,30m:0.3,2h:0.2")}
	s, err := Suggest(defaultLadder(t), w, SuggestConfig{MaxLateness: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	best := s.Ranked[0]
	if best.MeanHops != 1 || best.MaxHops != 1 || !strings.HasSuffix(best.Tiers, ",5m,30m,2h") {
		t.Errorf("best %+v, want one hop each through 5m, 30m, 2h", best)
	}
	if s.Best == nil || s.Best.Tiers != best.Tiers || s.Current.Tiers != tier.DefaultTiers || s.Current.MeanHops != 3.5 {
		t.Errorf("best plan %v, current %+v", s.Best, s.Current)
	}
}

// TestSuggestIsTheBest: on a small candidate set, the suggestion is the
// minimum of an exhaustive search planned set by set, and the ranking is in
// order.
func TestSuggestIsTheBest(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	cands := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 7 * time.Minute,
		20 * time.Minute, time.Hour, 3 * time.Hour, 5 * time.Hour}
	for range 3 {
		var comps []Component
		for range 1 + rng.IntN(3) {
			lo := time.Duration(1+rng.IntN(300)) * time.Minute
			c := Component{Lo: lo, Hi: lo, Weight: rng.Float64() + 0.1}
			if rng.IntN(2) == 0 {
				c.Hi = lo + time.Duration(1+rng.IntN(200))*time.Minute
			}
			comps = append(comps, c)
		}
		d, err := NewDistribution(comps)
		if err != nil {
			t.Fatal(err)
		}
		w := Workload{Pending: 1_000_000, ValueBytes: 100, Delays: d}
		for _, obj := range []string{ObjectiveHops, ObjectiveWriteAmp} {
			cfg := SuggestConfig{MaxLateness: 2 * time.Minute, MaxTiers: 3, Candidates: cands, Objective: obj, Top: 2}
			s, err := Suggest(defaultLadder(t), w, cfg)
			if err != nil {
				t.Fatal(err)
			}
			usable := candidates(d, cfg)
			best := math.Inf(1)
			for mask := 1; mask < 1<<len(usable); mask++ {
				var set []time.Duration
				for i, c := range usable {
					if mask&(1<<i) != 0 {
						set = append(set, c)
					}
				}
				if len(set) > cfg.MaxTiers || set[0] > cfg.MaxLateness {
					continue
				}
				l, err := tier.New(set, tier.DefaultPrefix)
				if err != nil {
					t.Fatal(err)
				}
				walk := walkOf(t, l, d)
				score := walk.meanHops
				if obj == ObjectiveWriteAmp {
					score = walk.cycleBytes / float64(w.ValueBytes)
				}
				best = math.Min(best, score)
			}
			score := func(c Candidate) float64 {
				if obj == ObjectiveWriteAmp {
					return c.WriteAmplification
				}
				return c.MeanHops
			}
			if got := score(s.Ranked[0]); math.Abs(got-best) > 1e-9*best {
				t.Errorf("delays %s, %s: suggested %s scores %v, the best of all sets %v", d, obj, s.Ranked[0].Tiers, got, best)
			}
			if !slices.IsSortedFunc(s.Ranked, func(a, b Candidate) int {
				if math.Abs(score(a)-score(b)) <= 1e-9*score(b) {
					return 0
				}
				return int(math.Copysign(1, score(a)-score(b)))
			}) {
				t.Errorf("ranking out of order: %+v", s.Ranked)
			}
		}
	}
}

func TestSuggestRefuses(t *testing.T) {
	w := Workload{Pending: 1000, ValueBytes: 100, Delays: mustDelays(t, "1h")}
	for _, tc := range []struct {
		cfg  SuggestConfig
		want string
	}{
		{SuggestConfig{}, "lateness bound"},
		{SuggestConfig{MaxLateness: time.Minute, MaxTiers: 7}, "1 to 6"},
		{SuggestConfig{MaxLateness: time.Minute, Objective: "speed"}, `objective "speed"`},
		{SuggestConfig{MaxLateness: time.Minute, Candidates: []time.Duration{5 * time.Minute}}, "within the lateness bound"},
	} {
		if _, err := Suggest(defaultLadder(t), w, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Suggest(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
}
