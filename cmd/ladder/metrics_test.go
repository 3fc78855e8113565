package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

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

// sendTo produces records to one tier partition, with headers given as name, value pairs.
func sendTo(t *testing.T, addr, topic string, partition int32, key string, headers ...string) {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer([]string{addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var hs []sarama.RecordHeader
	for k := 0; k+1 < len(headers); k += 2 {
		hs = append(hs, sarama.RecordHeader{Key: []byte(headers[k]), Value: []byte(headers[k+1])})
	}
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: partition, Key: sarama.StringEncoder(key),
		Value: sarama.StringEncoder("v"), Headers: hs}); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsAndHealth: /healthz answers, /readyz turns ready once the group
// is joined, and /metrics agrees with what the test put into the tiers:
// held records show as pending and paused in their tier, forwarded ones as
// counters (by outcome: delivered to the target, forwarded to a smaller
// tier, dead-lettered, and the dead-lettered ones by reason) and lateness
// observations, and a head that cannot be sent shows as overdue, growing,
// until it goes.
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
		pending, _ := laddertest.MetricValue(body, "ladder_pending_records", `tier="delay-15s"`)
		paused, _ := laddertest.MetricValue(body, "ladder_paused_partitions", `tier="delay-15s"`)
		return pending == held && paused >= 1
	}, "ladder_pending_records/ladder_paused_partitions for delay-15s never showed %d held records:\n%s", held, body)
	if next, ok := laddertest.MetricValue(body, "ladder_next_release_seconds", `tier="delay-15s"`); !ok || next <= 0 || next > 15 {
		t.Errorf("ladder_next_release_seconds{tier=delay-15s} = %v (present %v), want within the tier's 15s", next, ok)
	}

	work := laddertest.Collect(t, addr, "work")
	soon := time.Now().Add(1500 * time.Millisecond)
	// Keys must differ from the held ones: scheduleBacklog keys from k000000.
	scheduleBacklogPrefixed(t, addr, "soon-", 20, soon)
	work.WaitDistinct(t, 20, 30*time.Second)
	laddertest.Eventually(t, 10*time.Second, func() bool {
		_, body = httpGet(t, base+"/metrics")
		delivered, _ := laddertest.MetricValue(body, "ladder_forwarded_records_total", `outcome="delivered"`)
		return delivered >= 20
	}, "ladder_forwarded_records_total{outcome=delivered} never reached 20:\n%s", body)
	if n, _ := laddertest.MetricValue(body, "ladder_release_lateness_seconds_count"); n < 20 {
		t.Errorf("ladder_release_lateness_seconds_count = %v, want ≥ 20", n)
	}
	if n, _ := laddertest.MetricValue(body, "ladder_delivery_lateness_seconds_count"); n < 20 {
		t.Errorf("ladder_delivery_lateness_seconds_count = %v, want ≥ 20", n)
	}
	if pending, _ := laddertest.MetricValue(body, "ladder_pending_records", `tier="delay-15s"`); pending != held {
		t.Errorf("held records: ladder_pending_records{tier=delay-15s} = %v, want %d", pending, held)
	}

	// Forwarded from tier to tier: due in 7s, scheduled into delay-5s, which
	// forwards them to delay-1s after 5s, which delivers them.
	const hops = 10
	scheduleBacklogPrefixed(t, addr, "hop-", hops, time.Now().Add(7*time.Second))
	work.WaitDistinct(t, 20+hops, 40*time.Second)
	laddertest.Eventually(t, 10*time.Second, func() bool {
		_, body = httpGet(t, base+"/metrics")
		n, _ := laddertest.MetricValue(body, "ladder_forwarded_records_total", `tier="delay-5s"`, `outcome="forwarded"`)
		return n == hops
	}, "ladder_forwarded_records_total{tier=delay-5s,outcome=forwarded} never reached %d:\n%s", hops, body)
	if n, _ := laddertest.MetricValue(body, "ladder_forwarded_records_total", `tier="delay-1s"`, `outcome="delivered"`); n < 20+hops {
		t.Errorf("ladder_forwarded_records_total{tier=delay-1s,outcome=delivered} = %v, want ≥ %d", n, 20+hops)
	}

	// Dead-lettered, by reason: no ladder-target, and a ladder-due that is no number.
	sendTo(t, addr, "delay-1s", 1, "no-target", "ladder-due", strconv.FormatInt(time.Now().UnixMilli(), 10))
	sendTo(t, addr, "delay-1s", 2, "bad-due", "ladder-target", "work", "ladder-due", "soon")
	laddertest.Eventually(t, 20*time.Second, func() bool {
		_, body = httpGet(t, base+"/metrics")
		missing, _ := laddertest.MetricValue(body, "ladder_dead_lettered_records_total", `tier="delay-1s"`, `reason="missing_target"`)
		badDue, _ := laddertest.MetricValue(body, "ladder_dead_lettered_records_total", `tier="delay-1s"`, `reason="invalid_due"`)
		all, _ := laddertest.MetricValue(body, "ladder_forwarded_records_total", `outcome="dead_lettered"`)
		return missing == 1 && badDue == 1 && all == 2
	}, "ladder_dead_lettered_records_total never showed one missing_target and one invalid_due:\n%s", body)

	// Overdue: a record for a topic that does not exist yet waits for it
	// (parked; the due record behind it goes on), and
	// ladder_head_overdue_seconds counts it, growing, as ladder inspect
	// sees it at the committed offset, until the topic exists.
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	sendTo(t, addr, "delay-1s", 0, "for-later", "ladder-target", "later", "ladder-due", now)
	sendTo(t, addr, "delay-1s", 0, "behind", "ladder-target", "work", "ladder-due", now)
	work.WaitDistinct(t, 20+hops+1, 30*time.Second)
	overdue := func() float64 {
		_, body = httpGet(t, base+"/metrics")
		v, _ := laddertest.MetricValue(body, "ladder_head_overdue_seconds", `tier="delay-1s"`)
		return v
	}
	var first float64
	laddertest.Eventually(t, 20*time.Second, func() bool { first = overdue(); return first >= 1 },
		"ladder_head_overdue_seconds{tier=delay-1s} never passed 1s for a record waiting for a missing topic:\n%s", body)
	laddertest.Eventually(t, 20*time.Second, func() bool { return overdue() >= first+1 },
		"ladder_head_overdue_seconds{tier=delay-1s} stays at %v while the record waits:\n%s", first, body)
	if err := rawAdmin(t, addr).CreateTopic("later", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	laddertest.Collect(t, addr, "later").WaitDistinct(t, 1, 30*time.Second)
	laddertest.Eventually(t, 20*time.Second, func() bool { return overdue() == 0 },
		"ladder_head_overdue_seconds{tier=delay-1s} stays above 0 after the head went:\n%s", body)
	t.Logf("a record waiting for a missing topic: overdue passed %.1fs, then grew, and fell to 0 once the topic existed", first)
}
