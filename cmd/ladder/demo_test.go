//go:build !nodev

package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/worker"
)

// TestDemoStatusUnknownLag: the demo's status shows a lane's lag only when
// work-ahead's last read of it succeeded, and "?" otherwise (never a 0 that
// reads as "no backlog").
func TestDemoStatusUnknownLag(t *testing.T) {
	l, err := tier.Parse("2s,10s", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	stats := []worker.Stats{{Lane: "work-fast"}, {Lane: "work-slow"}, {Lane: "work-other"}}
	m := map[string]map[string]float64{
		"ladder_workahead_lane_lag":    {"work-fast": 42, "work-slow": 0},
		"ladder_workahead_lane_lag_ok": {"work-fast": 1, "work-slow": 0},
	}
	var b strings.Builder
	printDemoStatus(&b, time.Minute, l, stats, stats, 3*time.Second, newDemoStats(), m)
	out := b.String()
	for lane, want := range map[string]string{"work-fast": "42", "work-slow": "?", "work-other": "?"} {
		re := regexp.MustCompile(`(?m)^  ` + lane + ` +[0-9.]+ +[0-9]+ +(\S+) `)
		got := re.FindStringSubmatch(out)
		if got == nil || got[1] != want {
			t.Errorf("lane %s: lag column %v, want %q\n%s", lane, got, want, out)
		}
	}
}
