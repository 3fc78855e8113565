//go:build !nodev

package main

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/workahead"
	"github.com/ladder/ladder/pkg/worker"
)

// TestDemoStatus: the demo's status shows each lane's lag and workers as
// read (a dash only when the read failed, never "?" or a 0 that reads as
// "no backlog"), its work-ahead state from the forwarder's metrics ("off"
// without them), and says why records come back early.
func TestDemoStatus(t *testing.T) {
	l, err := tier.Parse(demoTiers, tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	stats := []worker.Stats{{Lane: "work-fast"}, {Lane: "work-slow"}, {Lane: "work-other"}}
	m := map[string]map[string]float64{
		"ladder_workahead_lane_state": {"work-fast/idle": 1, "work-fast/busy": 0, "work-slow/unattended": 1, "work-slow/idle": 0},
	}
	obs := map[string]workahead.Observation{"work-fast": {Members: 2, Lag: 42}, "work-slow": {}, "work-other": {Err: errors.New("down")}}
	out := demoStatus(time.Minute, l, stats, stats, 3*time.Second, newDemoStats(), m, obs, 100)
	t.Logf("\n%s", out)
	for lane, want := range map[string][3]string{"work-fast": {"42", "2", "idle"}, "work-slow": {"0", "0", "unattended"}, "work-other": {"-", "-", "off"}} {
		re := regexp.MustCompile(`(?m)^  ` + lane + ` +[0-9.]+ +[0-9]+ +(\S+) +(\S+) .* (\S+)$`)
		got := re.FindStringSubmatch(out)
		if got == nil || [3]string(got[1:]) != want {
			t.Errorf("lane %s: lag, workers, work-ahead %v, want %q", lane, got, want)
		}
	}
	if !strings.Contains(out, "released before their due time by work-ahead") || !strings.Contains(out, "lag is under 100") {
		t.Errorf("the status does not say why records are early:\n%s", out)
	}
	if out := demoStatus(time.Minute, l, stats, stats, time.Second, newDemoStats(), nil, obs, 100); !strings.Contains(out, "work-ahead is off: nothing comes back early") {
		t.Errorf("without work-ahead:\n%s", out)
	}
}

// TestDemoStatusRedraw: on a terminal each status replaces the previous one
// (cursor up over its lines, clear to the end of the screen); elsewhere the
// blocks are appended as they are.
func TestDemoStatusRedraw(t *testing.T) {
	for _, tty := range []bool{true, false} {
		var b strings.Builder
		r := &redraw{w: &b, tty: tty}
		r.show("one\ntwo\nthree\n")
		r.show("four\nfive\n")
		r.show("six\n")
		want := "one\ntwo\nthree\nfour\nfive\nsix\n"
		if tty {
			want = "one\ntwo\nthree\n\033[3A\033[Jfour\nfive\n\033[2A\033[Jsix\n"
		}
		if b.String() != want {
			t.Errorf("tty %v: %q, want %q", tty, b.String(), want)
		}
	}
	// On an 80-column terminal a longer status line wraps: the cursor goes
	// up over every row it took (a review saw frames pile up).
	var b strings.Builder
	r := &redraw{w: &b, tty: true, cols: func() int { return 10 }}
	r.show("0123456789\n0123456789abcde→\nxy\n") // 1 + 2 + 1 rows
	r.show("z\n")
	if want := "0123456789\n0123456789abcde→\nxy\n\033[4A\033[Jz\n"; b.String() != want {
		t.Errorf("wrapped at 10 columns: %q, want %q", b.String(), want)
	}
}

// TestDemoExercisesEveryTier: with the demo's tiers and delays every tier
// is the entry tier of some messages, and a 90 s message (the banner's
// example) enters through the largest tier that fits.
func TestDemoExercisesEveryTier(t *testing.T) {
	l, err := tier.Parse(demoTiers, tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	now := time.Now()
	for d := demoMinDelay; d < demoMaxDelay; d += 100 * time.Millisecond {
		// Each hop enters the next tier with what is left.
		for at := now; ; {
			next, ok := l.Route(at, now.Add(d))
			if !ok {
				break
			}
			used[next.Topic] = true
			at = at.Add(next.Delay)
		}
	}
	for _, topic := range l.Topics() {
		if !used[topic] {
			t.Errorf("no demo message passes through %s (delays %s-%s)", topic, demoMinDelay, demoMaxDelay)
		}
	}
	if next, _ := l.Route(now, now.Add(90*time.Second)); next.Topic != "delay-1m" {
		t.Errorf("a 90 s message enters through %s, want delay-1m", next.Topic)
	}
}
