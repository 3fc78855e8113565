package plan

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ladder/ladder/pkg/tier"
)

// Component is one part of a reschedule-delay distribution: every delay
// equal to Lo when Lo == Hi (a point), else delays spread evenly over
// [Lo, Hi). Weight is its share of the messages.
type Component struct {
	Lo, Hi time.Duration
	Weight float64
}

// Point reports whether c is a single delay.
func (c Component) Point() bool { return c.Lo == c.Hi }

// Mean is the mean delay of c.
func (c Component) Mean() time.Duration { return c.Lo + (c.Hi-c.Lo)/2 }

func (c Component) String() string {
	w := strconv.FormatFloat(c.Weight, 'g', 4, 64)
	if c.Point() {
		return tier.Label(c.Lo) + ":" + w
	}
	return tier.Label(c.Lo) + "-" + tier.Label(c.Hi) + ":" + w
}

// Distribution is the delay a message is scheduled with, each time it is
// scheduled: a weighted mix of points and ranges, weights summing to 1.
// Delays are whole milliseconds, as ladder-due carries them.
type Distribution struct {
	comps []Component

	// The cumulative distribution, for sampling: at each knot x[i] a point
	// mass jump[i], then mass seg[i] spread evenly up to x[i+1]; cum[i] is
	// the probability of a delay below x[i].
	x, jump, seg, cum []float64 // milliseconds, except the masses
	// eq[i] is the probability that the age of a pending message (the time
	// since it was scheduled) is below x[i]: the equilibrium distribution
	// of a renewal process, density P(delay > age) / mean delay.
	eq []float64
}

// ErrInvalidDelays is wrapped by the errors of delay lists and histograms
// that cannot be used.
var ErrInvalidDelays = errors.New("invalid delay distribution")

// NewDistribution checks and normalises comps: positive whole-millisecond
// delays, Lo ≤ Hi, weights ≥ 0 and not all zero.
func NewDistribution(comps []Component) (Distribution, error) {
	if len(comps) == 0 {
		return Distribution{}, fmt.Errorf("%w: no delays", ErrInvalidDelays)
	}
	var total float64
	for _, c := range comps {
		switch {
		case c.Lo <= 0 || c.Lo%time.Millisecond != 0 || c.Hi%time.Millisecond != 0:
			return Distribution{}, fmt.Errorf("%w: delay %s: want a positive whole number of milliseconds", ErrInvalidDelays, c.Lo)
		case c.Hi < c.Lo:
			return Distribution{}, fmt.Errorf("%w: range %s-%s ends before it starts", ErrInvalidDelays, tier.Label(c.Lo), tier.Label(c.Hi))
		case math.IsNaN(c.Weight) || math.IsInf(c.Weight, 0) || c.Weight < 0:
			return Distribution{}, fmt.Errorf("%w: weight %v of %s: want a number ≥ 0", ErrInvalidDelays, c.Weight, tier.Label(c.Lo))
		}
		total += c.Weight
	}
	if total <= 0 {
		return Distribution{}, fmt.Errorf("%w: every weight is zero", ErrInvalidDelays)
	}
	d := Distribution{}
	for _, c := range comps {
		if c.Weight > 0 {
			c.Weight /= total
			d.comps = append(d.comps, c)
		}
	}
	slices.SortStableFunc(d.comps, func(a, b Component) int {
		if a.Lo != b.Lo {
			return cmp.Compare(int64(a.Lo), int64(b.Lo))
		}
		return cmp.Compare(int64(a.Hi), int64(b.Hi))
	})
	d.buildCDF()
	return d, nil
}

// ParseDelays parses a delay list: comma-separated DELAY[:WEIGHT] or
// FROM-TO[:WEIGHT] (uniform over the range), e.g. "5m:0.5,30m:0.3,2h:0.2"
// or "3m-7m:0.5,20m-40m:0.3,90m-150m:0.2". A missing weight is 1.
func ParseDelays(s string) (Distribution, error) {
	if strings.TrimSpace(s) == "" {
		return Distribution{}, fmt.Errorf("%w: empty list (want e.g. 5m:0.5,30m:0.3,2h:0.2)", ErrInvalidDelays)
	}
	var comps []Component
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		spec, weight, hasWeight := strings.Cut(f, ":")
		w := 1.0
		if hasWeight {
			var err error
			if w, err = strconv.ParseFloat(strings.TrimSpace(weight), 64); err != nil {
				return Distribution{}, fmt.Errorf("%w: %q: weight %q is not a number", ErrInvalidDelays, f, weight)
			}
		}
		c, err := parseSpan(spec)
		if err != nil {
			return Distribution{}, fmt.Errorf("%w: %q: %w", ErrInvalidDelays, f, err)
		}
		c.Weight = w
		comps = append(comps, c)
	}
	return NewDistribution(comps)
}

// parseSpan parses DELAY or FROM-TO.
func parseSpan(s string) (Component, error) {
	from, to, isRange := strings.Cut(strings.TrimSpace(s), "-")
	lo, err := tier.ParseDuration(strings.TrimSpace(from))
	if err != nil {
		return Component{}, err
	}
	hi := lo
	if isRange {
		if hi, err = tier.ParseDuration(strings.TrimSpace(to)); err != nil {
			return Component{}, err
		}
		if hi <= lo {
			return Component{}, fmt.Errorf("range %s-%s: want FROM < TO", from, to)
		}
	}
	return Component{Lo: lo, Hi: hi}, nil
}

// ReadHistogram reads a histogram file: one bucket a line, either
// "delay,weight" (every message of the bucket has that delay) or
// "from,to,weight" (delays spread evenly over [from, to)). Blank lines, lines
// starting with # and a first line that is a header are skipped.
func ReadHistogram(r io.Reader) (Distribution, error) {
	sc := bufio.NewScanner(r)
	var comps []Component
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Split(text, ",")
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		c, err := histogramLine(fields)
		if err != nil {
			if len(comps) == 0 && line == 1 && !startsWithDigit(fields[0]) {
				continue // a header such as "delay,weight"
			}
			return Distribution{}, fmt.Errorf("%w: line %d %q: %w", ErrInvalidDelays, line, text, err)
		}
		comps = append(comps, c)
	}
	if err := sc.Err(); err != nil {
		return Distribution{}, fmt.Errorf("reading histogram: %w", err)
	}
	return NewDistribution(comps)
}

func startsWithDigit(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }

func histogramLine(f []string) (Component, error) {
	if len(f) != 2 && len(f) != 3 {
		return Component{}, errors.New("want delay,weight or from,to,weight")
	}
	w, err := strconv.ParseFloat(f[len(f)-1], 64)
	if err != nil {
		return Component{}, fmt.Errorf("weight %q is not a number", f[len(f)-1])
	}
	spec := f[0]
	if len(f) == 3 {
		spec = f[0] + "-" + f[1]
	}
	c, err := parseSpan(spec)
	c.Weight = w
	return c, err
}

// Components returns the normalised components, by delay. The slice must
// not be modified.
func (d Distribution) Components() []Component { return d.comps }

// Mean is the mean delay.
func (d Distribution) Mean() time.Duration {
	var m float64
	for _, c := range d.comps {
		m += c.Weight * float64(c.Lo+c.Hi) / 2
	}
	return time.Duration(m)
}

// Max is the largest delay (the supremum of the ranges).
func (d Distribution) Max() time.Duration {
	var m time.Duration
	for _, c := range d.comps {
		m = max(m, c.Hi)
	}
	return m
}

// String renders d as a list ParseDelays accepts.
func (d Distribution) String() string {
	parts := make([]string, len(d.comps))
	for i, c := range d.comps {
		parts[i] = c.String()
	}
	return strings.Join(parts, ",")
}

// buildCDF lays out the cumulative distribution over the knots (every Lo and
// Hi), in milliseconds, and the equilibrium age distribution.
func (d *Distribution) buildCDF() {
	knots := []float64{0}
	for _, c := range d.comps {
		knots = append(knots, ms(c.Lo), ms(c.Hi))
	}
	slices.Sort(knots)
	knots = slices.Compact(knots)
	n := len(knots)
	d.x = knots
	d.jump = make([]float64, n)
	d.seg = make([]float64, n)
	for _, c := range d.comps {
		lo, hi := ms(c.Lo), ms(c.Hi)
		i, _ := slices.BinarySearch(knots, lo)
		if c.Point() {
			d.jump[i] += c.Weight
			continue
		}
		// spread over the segments from lo to hi
		for j := i; j < n-1 && knots[j] < hi; j++ {
			d.seg[j] += c.Weight * (knots[j+1] - knots[j]) / (hi - lo)
		}
	}
	d.cum = make([]float64, n)
	d.eq = make([]float64, n)
	mean := ms(d.Mean())
	for i := 1; i < n; i++ {
		d.cum[i] = d.cum[i-1] + d.jump[i-1] + d.seg[i-1]
		// ∫ P(delay > y) dy over segment i-1: survival falls linearly from
		// 1 - cum[i-1] - jump[i-1] by seg[i-1].
		s0 := 1 - d.cum[i-1] - d.jump[i-1]
		d.eq[i] = d.eq[i-1] + (s0-d.seg[i-1]/2)*(knots[i]-knots[i-1])/mean
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantile returns the delay in milliseconds (whole, as the wire carries
// them) below which a share u of the delays fall: the inverse of the
// cumulative distribution.
func (d *Distribution) quantile(u float64) int64 {
	i := d.knot(d.cum, u)
	if u < d.cum[i]+d.jump[i] || d.seg[i] == 0 || i == len(d.x)-1 {
		return int64(d.x[i])
	}
	x := d.x[i] + (u-d.cum[i]-d.jump[i])/d.seg[i]*(d.x[i+1]-d.x[i])
	return min(int64(x), int64(d.x[i+1])-1)
}

// below is the probability that a delay, in whole milliseconds, is below x
// milliseconds.
func (d *Distribution) below(x float64) float64 {
	i := d.knot(d.x, x)
	p := d.cum[i]
	if x > d.x[i] {
		p += d.jump[i]
		if i < len(d.x)-1 {
			p += d.seg[i] * min(1, (x-d.x[i])/(d.x[i+1]-d.x[i]))
		}
	}
	return p
}

// age returns the age in milliseconds below which a share u of the pending
// messages are: the inverse of the equilibrium distribution.
func (d *Distribution) age(u float64) float64 {
	i := d.knot(d.eq, u)
	if i == len(d.x)-1 {
		return d.x[i]
	}
	// Solve s0·t - ρ·t²/2 = target on the segment, ρ the density there.
	target := (u - d.eq[i]) * ms(d.Mean())
	s0 := 1 - d.cum[i] - d.jump[i]
	width := d.x[i+1] - d.x[i]
	rho := d.seg[i] / width
	var t float64
	if rho == 0 {
		t = target / s0
	} else {
		t = (s0 - math.Sqrt(max(0, s0*s0-2*rho*target))) / rho
	}
	return d.x[i] + min(max(t, 0), width)
}

// knot is the last index i with v[i] ≤ u (0 if none).
func (d *Distribution) knot(v []float64, u float64) int {
	i, found := slices.BinarySearch(v, u)
	if found {
		// the last of equal values: zero-mass stretches repeat a value
		for i+1 < len(v) && v[i+1] == u {
			i++
		}
		return i
	}
	return max(i-1, 0)
}
