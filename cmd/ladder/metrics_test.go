package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/laddertest"
)

// httpAddr waits for the process to log the address of its HTTP server.
func httpAddr(t *testing.T, p *proc) string {
	t.Helper()
	var addr string
	laddertest.Eventually(t, 30*time.Second, func() bool {
		for _, line := range strings.Split(p.out.String(), "\n") {
			var ev struct{ Message, Addr string }
			if json.Unmarshal([]byte(line), &ev) == nil && strings.HasPrefix(ev.Message, "serving /metrics") {
				addr = ev.Addr
				return true
			}
		}
		return false
	}, "no HTTP server address logged")
	return addr
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue is the value of the sample named name with every label of
// labels (e.g. `tier="delay-15s"`), summed over the samples that match.
func metricValue(body, name string, labels ...string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}

// TestMetricsAndHealth: /healthz answers, /readyz turns ready once the group
// is joined, and /metrics agrees with what the test put into the tiers:
// held records show as pending and paused in their tier, forwarded ones as
// counters and lateness observations.
func TestMetricsAndHealth(t *testing.T) {
	addr := startDevBroker(t, "work")
	p := start(t, append(runEnv(addr), "LADDER_HTTP_ADDR=127.0.0.1:0"), "run")
	base := "http://" + httpAddr(t, p)

	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	laddertest.Eventually(t, 30*time.Second, func() bool { code, _ := httpGet(t, base+"/readyz"); return code == 200 },
		"/readyz never turned ready")

	const held = 30
	later := time.Now().Add(time.Minute)
	scheduleBacklog(t, addr, held, func(int) time.Time { return later }) // 1m left: delay-15s holds them
	var body string
	laddertest.Eventually(t, 30*time.Second, func() bool {
		_, body = httpGet(t, base+"/metrics")
		pending, _ := metricValue(body, "ladder_pending_records", `tier="delay-15s"`)
		paused, _ := metricValue(body, "ladder_paused_partitions", `tier="delay-15s"`)
		return pending == held && paused >= 1
	}, "ladder_pending_records/ladder_paused_partitions for delay-15s never showed %d held records:\n%s", held, body)
	if next, ok := metricValue(body, "ladder_next_release_seconds", `tier="delay-15s"`); !ok || next <= 0 || next > 15 {
		t.Errorf("ladder_next_release_seconds{tier=delay-15s} = %v (present %v), want within the tier's 15s", next, ok)
	}

	work := laddertest.Collect(t, addr, "work")
	soon := time.Now().Add(1500 * time.Millisecond)
	// Keys must differ from the held ones: scheduleBacklog keys from k000000.
	scheduleBacklogPrefixed(t, addr, "soon-", 20, soon)
	work.WaitDistinct(t, 20, 30*time.Second)
	laddertest.Eventually(t, 10*time.Second, func() bool {
		_, body = httpGet(t, base+"/metrics")
		delivered, _ := metricValue(body, "ladder_forwarded_records_total", `outcome="delivered"`)
		return delivered >= 20
	}, "ladder_forwarded_records_total{outcome=delivered} never reached 20:\n%s", body)
	if n, _ := metricValue(body, "ladder_release_lateness_seconds_count"); n < 20 {
		t.Errorf("ladder_release_lateness_seconds_count = %v, want ≥ 20", n)
	}
	if n, _ := metricValue(body, "ladder_delivery_lateness_seconds_count"); n < 20 {
		t.Errorf("ladder_delivery_lateness_seconds_count = %v, want ≥ 20", n)
	}
	if pending, _ := metricValue(body, "ladder_pending_records", `tier="delay-15s"`); pending != held {
		t.Errorf("held records: ladder_pending_records{tier=delay-15s} = %v, want %d", pending, held)
	}
}
