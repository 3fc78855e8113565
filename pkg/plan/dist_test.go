package plan

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func mustDelays(tb testing.TB, list string) Distribution {
	tb.Helper()
	d, err := ParseDelays(list)
	if err != nil {
		tb.Fatalf("ParseDelays(%q): %v", list, err)
	}
	return d
}

func TestParseDelays(t *testing.T) {
	for _, tc := range []struct {
		list, want string
		mean       time.Duration
		err        string
	}{
		{list: "5m:0.5,30m:0.3,2h:0.2", want: "5m:0.5,30m:0.3,2h:0.2", mean: 35*time.Minute + 30*time.Second},
		{list: "2h:2, 5m:5 ,30m:3", want: "5m:0.5,30m:0.3,2h:0.2", mean: 35*time.Minute + 30*time.Second},
		{list: "1m,3m", want: "1m:0.5,3m:0.5", mean: 2 * time.Minute},
		{list: "3m-7m:1,1h", want: "3m-7m:0.5,1h:0.5", mean: 32*time.Minute + 30*time.Second},
		{list: "1d-2d", want: "1d-2d:1", mean: 36 * time.Hour},
		{list: "1m:0,2m:1", want: "2m:1", mean: 2 * time.Minute},
		{list: "", err: "empty list"},
		{list: "5x", err: `"5x"`},
		{list: "7m-3m", err: "FROM < TO"},
		{list: "5m:much", err: "not a number"},
		{list: "5m:-1", err: "≥ 0"},
		{list: "1m:0", err: "every weight is zero"},
		{list: "1500us", err: "whole number of milliseconds"},
	} {
		t.Run(tc.list, func(t *testing.T) {
			d, err := ParseDelays(tc.list)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalidDelays) {
					t.Fatalf("ParseDelays(%q) = %v, want ErrInvalidDelays containing %q", tc.list, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.String() != tc.want || d.Mean() != tc.mean {
				t.Errorf("got %s (mean %s), want %s (mean %s)", d, d.Mean(), tc.want, tc.mean)
			}
			if again := mustDelays(t, d.String()); again.String() != d.String() {
				t.Errorf("String does not round-trip: %s → %s", d, again)
			}
		})
	}
}

func TestReadHistogram(t *testing.T) {
	d, err := ReadHistogram(strings.NewReader("delay,weight\n# the fast lane\n5m, 50\n\n30m,30\n1h,3h,20\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.String(), "5m:0.5,30m:0.3,1h-3h:0.2"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	for _, tc := range []struct{ in, err string }{
		{"5m,1\n30m\n", "line 2"},
		{"5m,1\n30m,x\n", `weight "x"`},
		{"delay,weight\n", "no delays"},
		{"5m,1,2,3\n", "want delay,weight"},
		{"5q,1\n", "line 1"},
	} {
		if _, err := ReadHistogram(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ReadHistogram(%q) = %v, want an error containing %q", tc.in, err, tc.err)
		}
	}
}

// TestSampling: quantile is the inverse of the distribution the simulation
// draws delays from, below is its distribution function, and age is the
// inverse of the equilibrium age distribution, whose mean is E[d²]/2E[d].
func TestSampling(t *testing.T) {
	d := mustDelays(t, "30s:0.25,3m-7m:0.25,20m-40m:0.3,2h:0.2")
	const n = 200_000
	var sum, sumSq, age float64
	for i := range n {
		u := (float64(i) + 0.5) / n
		q := d.quantile(u)
		if b := d.below(float64(q)); b > u+1e-9 {
			t.Fatalf("quantile(%v) = %d ms, but P(delay < %d ms) = %v > u", u, q, q, b)
		}
		if b := d.below(float64(q) + 1); b < u-1e-9 {
			t.Fatalf("quantile(%v) = %d ms, but P(delay ≤ %d ms) = %v < u", u, q, q, b)
		}
		sum += float64(q)
		sumSq += float64(q) * float64(q)
		age += d.age(u)
	}
	mean := sum / n
	if want := ms(d.Mean()); math.Abs(mean-want)/want > 1e-3 {
		t.Errorf("mean of the quantiles %.0f ms, want %.0f", mean, want)
	}
	if want := sumSq / n / (2 * mean); math.Abs(age/n-want)/want > 2e-3 {
		t.Errorf("mean age %.0f ms, want E[d²]/2E[d] = %.0f", age/n, want)
	}
	if d.below(0) != 0 || d.below(ms(d.Max())+1) != 1 {
		t.Errorf("below(0) = %v, below(max) = %v", d.below(0), d.below(ms(d.Max())+1))
	}
	if got := d.below(30_000); got != 0 {
		t.Errorf("P(delay < 30s) = %v, want 0", got)
	}
	if got := d.below(30_001); math.Abs(got-0.25) > 1e-12 {
		t.Errorf("P(delay < 30.001s) = %v, want 0.25", got)
	}
	if got := d.below(ms(5 * time.Minute)); math.Abs(got-0.375) > 1e-12 {
		t.Errorf("P(delay < 5m) = %v, want 0.375", got)
	}
}
