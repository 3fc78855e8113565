package main

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBenchCommand runs `ladder bench drain` at a tiny size through the
// binary: it starts the embedded broker as its own process, prints JSON
// with the stable field names, and leaves no process behind.
func TestBenchCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "bench", "drain", "--records", "2000", "--partitions", "2", "--tiers", "1s", "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ladder bench drain: %v\n%s", err, stderr.String())
	}
	var rep struct {
		Scenario string
		Broker   string
		Host     struct {
			Cores         int
			LoadAvgBefore [3]float64 `json:"load_avg_before"`
		}
		Result struct {
			Records            int64
			ForwardRecordsPerS float64 `json:"forward_records_per_s"`
			RawRecordsPerS     float64 `json:"raw_records_per_s"`
			Ratio              float64
		}
		Goals   []struct{ Name string }
		Summary string
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	r := rep.Result
	if rep.Scenario != "drain" || !strings.HasPrefix(rep.Broker, "embedded") || rep.Host.Cores < 1 || r.Records != 2000 ||
		r.ForwardRecordsPerS <= 0 || r.RawRecordsPerS <= 0 || r.Ratio <= 0 || len(rep.Goals) != 2 || rep.Summary == "" {
		t.Errorf("report: %s", out)
	}
	if !strings.Contains(stderr.String(), "embedded broker: pid") {
		t.Errorf("stderr does not show the broker process: %s", stderr.String())
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{{"bench"}, {"bench", "nosuch"}, {"bench", "drain", "--forwarder", "elsewhere"},
		{"bench", "pending", "--steps", "1M,x"}, {"bench", "drain", "--forwarder", "process", "--cpuprofile", "x"},
		{"bench", "drain", "--brokers", "nonsense"}, {"bench", "drain", "--loader", "kcat"}, {"bench", "drain", "--batch-bytes", "100"},
		{"bench", "drain", "--baselines", "librdkafka"}, {"bench", "drain", "--perf", "perf.data"}, {"bench", "pending", "--partitions", "6,0"},
		{"bench", "pending", "--run-env", "NOEQUALS"}, {"bench", "lateness", "--batch-bytes", "1073741824"}, {"bench", "pending", "--spread", "evenly"}, {"bench", "drain", "--broker-pid", "1"},
		{"bench", "drain", "--brokers", "127.0.0.1:9", "--broker-pid", "999999999"}} {
		cmd := exec.Command(binary, args...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("ladder %s: %v, want exit 2\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func TestPartitionList(t *testing.T) {
	var p partitionList
	if err := p.Set("6, 24,48"); err != nil {
		t.Fatal(err)
	}
	if want := (partitionList{6, 24, 48}); !slices.Equal(p, want) || p.String() != "6,24,48" {
		t.Errorf("got %v, want %v", p, want)
	}
	for _, bad := range []string{"", "0", "1001", "6,x", "-1"} {
		if err := p.Set(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestEnvList(t *testing.T) {
	var e envList
	for _, kv := range []string{"LADDER_BUFFER_MEMORY=33554432", "GOGC=off", "EMPTY="} {
		if err := e.Set(kv); err != nil {
			t.Errorf("%q: %v", kv, err)
		}
	}
	if len(e) != 3 || e[0] != "LADDER_BUFFER_MEMORY=33554432" {
		t.Errorf("got %v", e)
	}
	for _, bad := range []string{"", "=x", "NOEQUALS", "A B=c"} {
		if err := e.Set(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCountList(t *testing.T) {
	var c countList
	if err := c.Set("500k, 1M,10000000"); err != nil {
		t.Fatal(err)
	}
	if want := (countList{500_000, 1_000_000, 10_000_000}); !slices.Equal(c, want) {
		t.Errorf("got %v, want %v", c, want)
	}
	for _, bad := range []string{"", "1G", "-5", "1.5M"} {
		if err := c.Set(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
