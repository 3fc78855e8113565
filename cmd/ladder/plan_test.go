package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const planDelays = "3m-7m:0.5,20m-40m:0.3,90m-150m:0.2"

func runPlan(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), append([]string{"plan"}, args...), strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestPlanTable(t *testing.T) {
	t.Setenv("LADDER_TIERS", "1m,10m,1h")
	out, errOut, code := runPlan(t, "--pending", "50000000", "--delays", planDelays)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"workload: 50,000,000 pending", "delay-10m", "target", "summary:", "hops per message"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "delay-15m") {
		t.Errorf("LADDER_TIERS=1m,10m,1h was not used:\n%s", out)
	}
}

// TestPlanSimulateJSON: --simulate --json has the plan, the simulation and
// the rows comparing them, under stable names.
func TestPlanSimulateJSON(t *testing.T) {
	out, errOut, code := runPlan(t, "--pending", "50000000", "--sim-pending", "100000", "--delays", planDelays,
		"--simulate", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct {
		Plan struct {
			Tiers string `json:"tiers"`
			Total struct {
				DeliveryRate float64 `json:"delivery_rate"`
				MeanHops     float64 `json:"mean_hops"`
			} `json:"total"`
		} `json:"plan"`
		Simulation struct {
			Pending   int   `json:"pending"`
			Delivered int64 `json:"delivered"`
			Early     int64 `json:"early"`
		} `json:"simulation"`
		SimulatedPlan struct {
			Workload struct {
				Pending int64 `json:"pending"`
			} `json:"workload"`
		} `json:"simulated_plan"`
		Comparison []struct {
			Tier          string   `json:"tier"`
			Metric        string   `json:"metric"`
			RelativeError *float64 `json:"relative_error"`
		} `json:"comparison"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if rep.Plan.Tiers != "1m,15m,1h,6h" || rep.Plan.Total.DeliveryRate < 20_000 || rep.Simulation.Pending < 90_000 ||
		rep.Simulation.Delivered == 0 || rep.Simulation.Early != 0 || len(rep.Comparison) == 0 {
		t.Fatalf("report: %+v", rep)
	}
	// The simulation is smaller than the plan: it is compared with the
	// plan of what it simulates, lateness included.
	if rep.SimulatedPlan.Workload.Pending != 100_000 {
		t.Errorf("simulated plan for %d pending, want 100000", rep.SimulatedPlan.Workload.Pending)
	}
	checked := 0
	for _, r := range rep.Comparison {
		if r.Tier == "total" && (r.Metric == "mean_hops" || r.Metric == "delivery_rate" || r.Metric == "lateness_mean") {
			checked++
			if r.RelativeError == nil || *r.RelativeError > 0.02 || *r.RelativeError < -0.02 {
				t.Errorf("%s: simulated and computed apart by %v", r.Metric, r.RelativeError)
			}
		}
	}
	if checked != 3 {
		t.Errorf("comparison rows: %+v", rep.Comparison)
	}
	if !strings.Contains(errOut, "simulating 100000 pending messages") {
		t.Errorf("no progress note on stderr: %q", errOut)
	}
}

func TestPlanSuggest(t *testing.T) {
	csv := filepath.Join(t.TempDir(), "delays.csv")
	if err := os.WriteFile(csv, []byte("delay,weight\n5m,50\n30m,30\n2h,20\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runPlan(t, "--delays-file", csv, "--suggest", "--max-lateness", "1m", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct {
		Plan struct {
			Tiers string `json:"tiers"`
		} `json:"plan"`
		Suggestion struct {
			Ranked []struct {
				Tiers    string  `json:"tiers"`
				MeanHops float64 `json:"mean_hops"`
			} `json:"ranked"`
			Current struct {
				MeanHops float64 `json:"mean_hops"`
			} `json:"current"`
		} `json:"suggestion"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(rep.Suggestion.Ranked) == 0 || rep.Suggestion.Ranked[0].MeanHops != 1 || rep.Plan.Tiers != rep.Suggestion.Ranked[0].Tiers ||
		rep.Suggestion.Current.MeanHops != 3.5 {
		t.Fatalf("suggestion: %+v", rep)
	}
	out, _, code = runPlan(t, "--delays-file", csv, "--suggest")
	if code != 0 || !strings.Contains(out, "rank") || !strings.Contains(out, "current") || !strings.Contains(out, "best: ") {
		t.Errorf("exit %d, table:\n%s", code, out)
	}
}

func TestPlanBadUsage(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{args: nil, want: "give the reschedule delays"},
		{args: []string{"--delays", "5x"}, want: `--delays: invalid delay distribution: "5x"`},
		{args: []string{"--delays", "1m", "--delays-file", "x.csv"}, want: "not both"},
		{args: []string{"--delays-file", "/nonexistent/delays.csv"}, want: "--delays-file: open /nonexistent/delays.csv"},
		{args: []string{"--delays", "1m", "--size", "0"}, want: "invalid --size=0: accepted: 1 or more bytes"},
		{args: []string{"--delays", "1m", "--pending", "0"}, want: "invalid --pending=0"},
		{args: []string{"--delays", "1m", "--max-tiers", "9"}, want: "invalid --max-tiers=9: accepted: 1 to 6"},
		{args: []string{"--delays", "1m", "--objective", "speed"}, want: "invalid --objective=speed"},
		{args: []string{"--delays", "1m", "--lag", "-1s"}, want: "invalid --lag=-1s"},
		{args: []string{"--delays", "1m", "--tiers", "1m,60s"}, want: `invalid --tiers="1m,60s"`},
		{env: map[string]string{"LADDER_TIERS": "1x"}, args: []string{"--delays", "1m"}, want: `invalid LADDER_TIERS="1x"`},
		{args: []string{"--delays", "1m", "extra"}, want: "unexpected arguments: extra"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, errOut, code := runPlan(t, tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, errOut, tc.want)
			}
		})
	}
}
