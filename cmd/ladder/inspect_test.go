package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/inspect"
	"github.com/ladder/ladder/pkg/laddertest"
)

const inspectTiers = "1m,1h"

// heldLadder is a broker with known records in the tiers of 1m,1h and a
// `ladder run` forwarding them, holding the heads of delay-1h for about an hour.
type heldLadder struct {
	addr string
	env  []string
	now  time.Time
	// dues of the records left in delay-1h, per partition, in offset order.
	dues map[int32][]time.Time
}

func startHeldLadder(t *testing.T) *heldLadder {
	t.Helper()
	b := laddertest.Broker(t, 2, "delay-1m", "delay-1h", "delay-dlq", "work")
	h := &heldLadder{addr: b.Addr(), now: time.Now(),
		env: []string{"LADDER_BROKERS=" + b.Addr(), "LADDER_TIERS=" + inspectTiers, "LADDER_GROUP=inspect-e2e"}}
	h.dues = map[int32][]time.Time{0: {h.now.Add(70 * time.Minute), h.now.Add(80 * time.Minute)}, 1: {h.now.Add(90 * time.Minute)}}

	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer([]string{h.addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(topic string, partition int32, key string, headers ...string) {
		var hs []sarama.RecordHeader
		for k := 0; k < len(headers); k += 2 {
			hs = append(hs, sarama.RecordHeader{Key: []byte(headers[k]), Value: []byte(headers[k+1])})
		}
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: partition, Key: sarama.StringEncoder(key),
			Value: sarama.StringEncoder("value of " + key), Headers: hs, Timestamp: h.now}); err != nil {
			t.Fatal(err)
		}
	}
	ms := func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
	// delay-1h/0: one record already due (forwarded at once), then two held.
	send("delay-1h", 0, "due-now", "ladder-target", "work", "ladder-due", ms(h.now.Add(-time.Second)))
	send("delay-1h", 0, "order-70", "ladder-target", "work", "ladder-due", ms(h.dues[0][0]), "trace-id", "abc,123")
	send("delay-1h", 0, "order-80", "ladder-target", "work", "ladder-due", ms(h.dues[0][1]))
	send("delay-1h", 1, "order-90", "ladder-target", "work", "ladder-due", ms(h.dues[1][0]))
	// delay-1m/1: no ladder-target: dead-lettered.
	send("delay-1m", 1, "lost-target", "ladder-due", ms(h.now))

	start(t, h.env, "run")
	return h
}

// inspectJSON runs `ladder inspect --json` until ready(report) or the deadline.
func (h *heldLadder) inspectJSON(t *testing.T, ready func(*inspect.Report) bool) *inspect.Report {
	t.Helper()
	var r *inspect.Report
	t.Cleanup(func() {
		if t.Failed() && r != nil {
			js, _ := json.MarshalIndent(r, "", "  ")
			t.Logf("last ladder inspect --json:\n%s", js)
		}
	})
	laddertest.Eventually(t, 30*time.Second, func() bool {
		out, code := runLadder(t, h.env, "inspect", "--json")
		if code != 0 {
			t.Fatalf("ladder inspect --json exited %d:\n%s", code, out)
		}
		r = new(inspect.Report)
		if err := json.Unmarshal([]byte(out), r); err != nil {
			t.Fatalf("ladder inspect --json printed no report: %v\n%s", err, out)
		}
		return ready(r)
	}, "ladder inspect never showed the forwarder settled")
	return r
}

// settled: the due record forwarded and committed, the bad one dead-lettered, the forwarder a member.
func settled(r *inspect.Report) bool {
	return len(r.Tiers) == 2 && r.Tiers[1].Partitions[0].CommittedOffset == 1 && r.DeadLetter.Records == 1 && len(r.Members) == 1
}

// TestInspectJSONAgreesWithTiers: `ladder inspect --json`, while `ladder run`
// holds the heads, reports what the test put into the tiers.
func TestInspectJSONAgreesWithTiers(t *testing.T) {
	h := startHeldLadder(t)
	r := h.inspectJSON(t, settled)

	if r.Group != "inspect-e2e" || r.Summary.Pending != 3 || r.Tiers[0].Pending != 0 || r.Tiers[1].Pending != 3 ||
		r.Summary.OverduePartitions != 0 || r.Summary.DeadLetterRecords != 1 {
		t.Errorf("summary %+v; delay-1m pending %d, delay-1h pending %d", r.Summary, r.Tiers[0].Pending, r.Tiers[1].Pending)
	}
	for p, dues := range h.dues {
		pr := r.Tiers[1].Partitions[p]
		if pr.Pending != int64(len(dues)) || pr.Head == nil {
			t.Errorf("delay-1h/%d: pending %d, want %d; head %+v", p, pr.Pending, len(dues), pr.Head)
			continue
		}
		wantDue := dues[0].Truncate(time.Millisecond)
		// Released at min(timestamp + 1h, due): timestamp + 1h for all of them.
		wantRelease := h.now.Add(time.Hour).Truncate(time.Millisecond)
		if pr.Head.Due == nil || !pr.Head.Due.Equal(wantDue) || !pr.Head.ReleaseAt.Equal(wantRelease) || pr.Head.Target != "work" {
			t.Errorf("delay-1h/%d head: due %v release %v target %s; want due %v release %v", p, pr.Head.Due, pr.Head.ReleaseAt, pr.Head.Target, wantDue, wantRelease)
		}
		if pr.Head.OverdueMS >= 0 || pr.Owner != r.Members[0].MemberID {
			t.Errorf("delay-1h/%d: overdue %d ms (want held), owner %q", p, pr.Head.OverdueMS, pr.Owner)
		}
	}
	if got := r.Tiers[1].Partitions[0].Head.Offset; got != 1 {
		t.Errorf("delay-1h/0 head offset %d, want 1 (offset 0 was forwarded)", got)
	}
	if got := r.Tiers[1].Partitions[1].CommittedOffset; got != -1 {
		t.Errorf("delay-1h/1 committed offset %d, want -1 (nothing forwarded from it yet)", got)
	}

	// The table says the same.
	out, code := runLadder(t, h.env, "inspect")
	if code != 0 || !strings.Contains(out, "2 tiers, 3 pending, 0 overdue partitions, 1 members, 1 dead-lettered, 0 warnings") {
		t.Errorf("ladder inspect exited %d:\n%s", code, out)
	}
}

// TestInspectScript runs topics/inspect.sh with the real kcat against a
// ladder whose forwarder holds the heads: peek shows the held record (the
// group's next offset, from ladder inspect) with its headers and due time in
// human time, count counts the tiers, dlq shows the reason.
func TestInspectScript(t *testing.T) {
	kcatPath := kcat(t)
	h := startHeldLadder(t)
	h.inspectJSON(t, settled)
	env := append(h.env, "KCAT="+kcatPath)

	out, code := runScript(t, env, "inspect.sh", "peek", "delay-1h", "0")
	t.Logf("inspect.sh peek delay-1h 0:\n%s", out)
	due := h.dues[0][0]
	for _, w := range []string{
		"delay-1h/0 offset 1 (the forwarders' next record, from ladder inspect)",
		"key        order-70",
		"header     ladder-target=work",
		fmt.Sprintf("header     ladder-due=%d  %s", due.UnixMilli(), due.UTC().Format("2006-01-02 15:04:05.000 UTC")),
		"header     trace-id=abc,123",
		fmt.Sprintf("release    %d  %s: ", h.now.Add(time.Hour).UnixMilli(), h.now.Add(time.Hour).UTC().Format("2006-01-02 15:04:05.000 UTC")),
		"due in 5", // 59m and some seconds, unless the test is slow
		"value      value of order-70",
	} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("inspect.sh peek (exit %d) lacks %q:\n%s", code, w, out)
		}
	}

	// Without the ladder binary: an explicit offset, or the oldest retained record.
	noLadder := append(env, "LADDER=/nonexistent/ladder")
	out, code = runScript(t, noLadder, "inspect.sh", "peek", "delay-1h", "0")
	if code != 0 || !strings.Contains(out, "offset 0 (the oldest retained record") || !strings.Contains(out, "key        due-now") {
		t.Errorf("inspect.sh peek without ladder (exit %d):\n%s", code, out)
	}
	out, code = runScript(t, noLadder, "inspect.sh", "peek", "delay-1h", "0", "2")
	if code != 0 || !strings.Contains(out, "offset 2 (offset given)") || !strings.Contains(out, "key        order-80") {
		t.Errorf("inspect.sh peek with an offset (exit %d):\n%s", code, out)
	}

	out, code = runScript(t, env, "inspect.sh", "count")
	for _, w := range []string{"delay-1h/0  offsets 0..3  3 records", "delay-1h total 4 records", "delay-1m total 1 records", "delay-dlq total 1 records"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("inspect.sh count (exit %d) lacks %q:\n%s", code, w, out)
		}
	}

	out, code = runScript(t, env, "inspect.sh", "dlq")
	for _, w := range []string{"key lost-target", "ladder-error=ladder-target: header is missing", "value value of lost-target"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("inspect.sh dlq (exit %d) lacks %q:\n%s", code, w, out)
		}
	}
}

// TestInspectWatch: --watch prints a report every interval until interrupted, then exits 0.
func TestInspectWatch(t *testing.T) {
	b := laddertest.Broker(t, 1, "delay-1s", "delay-5s", "delay-dlq")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- Main(ctx, []string{"inspect", "--json", "--watch", "100ms", "--brokers", b.Addr(), "--tiers", "1s,5s", "--group", "watch"},
			nil, out, io.Discard)
	}()
	laddertest.Eventually(t, 20*time.Second, func() bool { return strings.Count(out.String(), `"summary"`) >= 3 },
		"--watch printed %d reports", strings.Count(out.String(), `"summary"`))
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("ladder inspect --watch exited %d when interrupted, want 0", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ladder inspect --watch did not stop when interrupted")
	}
	dec := json.NewDecoder(strings.NewReader(out.String()))
	for n := 0; ; n++ {
		var r inspect.Report
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil || r.Summary.Tiers != 2 {
			t.Fatalf("report %d: %v, %+v", n, err, r.Summary)
		}
	}
}

// TestInspectUsage: bad flags exit 2 naming the flag.
func TestInspectUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect", "--watch", "-1s"}, `invalid --watch="-1s"`},
		{[]string{"inspect", "--retention-warn", "80"}, `invalid --retention-warn="80": accepted: a fraction`},
		{[]string{"inspect", "--group", ""}, `invalid --group=""`},
		{[]string{"inspect", "--tiers", "1m,1x"}, `invalid --tiers="1m,1x"`},
		{[]string{"inspect", "now"}, "unexpected arguments: now"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), tc.args, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("ladder %v: exit %d, want 2 with %q:\n%s", tc.args, code, tc.want, stderr.String())
		}
	}
}
