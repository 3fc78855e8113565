package workahead_test

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/workahead"
)

// gauge is the value of the sample of metric name with label target=lane,
// and whether there is one.
func gauge(t *testing.T, g prometheus.Gatherer, name, lane string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "target" && lp.GetValue() == lane {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

// TestRunRetriesUntilKafkaIsReachable: Kafka is unreachable when work-ahead
// starts (a proxy refuses every connection). Run keeps retrying with
// back-off instead of giving up, the lane's lag is unknown meanwhile
// (ladder_workahead_lane_lag_ok 0, state unknown, so nothing is released),
// and once Kafka is reachable the lag is read (lag_ok 1) and the lane,
// which no worker consumes, is unattended (not idle: nothing is released).
func TestRunRetriesUntilKafkaIsReachable(t *testing.T) {
	b := laddertest.Broker(t, 1, "work")
	p := laddertest.NewProxy(t) // no target yet: every connection is closed at once
	reg := prometheus.NewRegistry()
	c, err := workahead.New(workahead.Config{Lanes: map[string]string{"work": "workers"}, Interval: 100 * time.Millisecond,
		Registerer: reg, Log: laddertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	sc.Metadata.Retry.Max = 1
	sc.Metadata.Retry.Backoff = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, []string{p.Addr()}, sc) }()

	var runErr error
	returned := func() bool {
		select {
		case runErr = <-done:
			return true
		default:
			return false
		}
	}
	laddertest.Eventually(t, 30*time.Second, func() bool {
		if returned() {
			t.Fatalf("Run gave up while Kafka was unreachable: %v", runErr)
		}
		return c.Lanes()[0].Err != nil
	}, "no failed connection reported while Kafka is unreachable: %+v", c.Lanes())
	if ok, found := gauge(t, reg, "ladder_workahead_lane_lag_ok", "work"); !found || ok != 0 {
		t.Errorf("ladder_workahead_lane_lag_ok = %v (present %v) while Kafka is unreachable, want 0", ok, found)
	}
	if l := c.Lanes()[0]; l.Idle || l.State != workahead.StateUnknown {
		t.Errorf("lane %s with an unknown lag: %+v", l.State, l)
	}

	p.SetTarget(b.Addr())
	laddertest.Eventually(t, 60*time.Second, func() bool {
		if returned() {
			t.Fatalf("Run returned %v", runErr)
		}
		ok, _ := gauge(t, reg, "ladder_workahead_lane_lag_ok", "work")
		return ok == 1 && c.Lanes()[0].State == workahead.StateUnattended
	}, "lag never read once Kafka was reachable: %+v", c.Lanes())
	if l := c.Lanes()[0]; l.Err != nil || l.Lag != 0 || l.Idle {
		t.Errorf("lane after Kafka became reachable: %+v", l)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v after ctx was cancelled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
}
