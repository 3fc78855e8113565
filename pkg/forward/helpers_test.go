package forward_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/ops"
)

// modes are the two delivery modes the fault and bad-input tests run in.
var modes = []struct {
	name string
	eos  bool
}{{"at-least-once", false}, {"exactly-once", true}}

// eachMode runs test once per delivery mode, as subtests.
func eachMode(t *testing.T, test func(t *testing.T, eos bool)) {
	t.Helper()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { test(t, m.eos) })
	}
}

// target collects topic the way its readers must read it in the mode:
// read_committed in exactly-once mode.
func (e *env) target(t *testing.T, eos bool, topic string) *laddertest.Collector {
	t.Helper()
	if eos {
		return laddertest.CollectCommitted(t, e.addr, topic)
	}
	if topic == "work" {
		return e.work
	}
	return laddertest.Collect(t, e.addr, topic)
}

// observed is a forwarder whose /metrics and /readyz are served over HTTP
// as in `ladder run`.
type observed struct {
	*forward.Forwarder
	stop func()
	base string
}

// startObserved starts a forwarder in the given mode with fast health
// checks, and its metrics and health server.
func (e *env) startObserved(t *testing.T, eos bool, mutate ...func(*forward.Config)) *observed {
	t.Helper()
	reg := prometheus.NewRegistry()
	f, stop := e.startForwarder(t, append([]func(*forward.Config){func(c *forward.Config) {
		c.Registerer = reg
		c.ExactlyOnce = eos
		c.TxnInterval = 50 * time.Millisecond
		c.HealthInterval = 500 * time.Millisecond
	}}, mutate...)...)
	srv, err := ops.Listen("127.0.0.1:0", reg, f.Ready, laddertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("metrics server: %v", err)
		}
	})
	return &observed{Forwarder: f, stop: stop, base: "http://" + srv.Addr()}
}

func (o *observed) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(o.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// readyz is whether /readyz answers 200, and its body.
func (o *observed) readyz(t *testing.T) (bool, string) {
	t.Helper()
	code, body := o.get(t, "/readyz")
	return code == http.StatusOK, strings.TrimSpace(body)
}

// metric is the sum of the /metrics samples named name that carry every
// label of labels (each like `outcome="aborted"`); 0 when there are none.
func (o *observed) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	_, body := o.get(t, "/metrics")
	v, _ := laddertest.MetricValue(body, name, labels...)
	return v
}

// exactlyOnce stops the forwarder, reads topic to its end and fails the test
// unless every key of want was read exactly once.
func exactlyOnce[V any](t *testing.T, e *env, stop func(), c *laddertest.Collector, topic string, want map[string]V) {
	t.Helper()
	stop()
	recs := c.ReadToEnd(t, e.addr, topic)
	seen := map[string]int{}
	for _, r := range recs {
		seen[string(r.Key)]++
	}
	for k := range want {
		if seen[k] != 1 {
			t.Errorf("read_committed saw key %s %d times, want once", k, seen[k])
		}
	}
	if len(recs) != len(want) {
		t.Errorf("read_committed saw %d records on %s for %d messages", len(recs), topic, len(want))
	}
}

// waitReady waits until /readyz answers 200.
func (o *observed) waitReady(t *testing.T, timeout time.Duration, why string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, body := o.readyz(t)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not ready after %s: /readyz says %q; %+v", why, timeout, body, o.Snapshot())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitNotReady waits until /readyz answers 503 and returns its body.
func (o *observed) waitNotReady(t *testing.T, timeout time.Duration, why string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, body := o.readyz(t)
		if !ok {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still ready after %s", why, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitMetric waits until the metric reaches at least want.
func (o *observed) waitMetric(t *testing.T, timeout time.Duration, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := o.metric(t, name, labels...)
		if v >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v after %s, want ≥ %v", name, labels, v, timeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
