package replay_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/replay"
	"github.com/ladder/ladder/pkg/tier"
)

// TestReplayDeadLetters: records dead-lettered for a missing target are
// replayed with --target into the ladder and arrive (one due later through
// a tier, one due now straight to the target); others are filtered by
// --match; a second run replays nothing again.
func TestReplayDeadLetters(t *testing.T) {
	l, err := tier.Parse("1s,5s", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b := laddertest.Ladder(t, l, 2, "work")
	kafka := laddertest.Kafka(b.Addr())
	f, err := forward.New(forward.Config{Ladder: l, Group: "fw", Kafka: kafka, Log: laddertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	dlq := laddertest.Collect(t, b.Addr(), l.DLQTopic())
	work := laddertest.Collect(t, b.Addr(), "work")
	p := laddertest.Producer(t, b.Addr())
	later := strconv.FormatInt(time.Now().Add(4*time.Second).UnixMilli(), 10)
	for _, r := range []struct {
		key     string
		headers []sarama.RecordHeader
	}{
		{"no-target-now", []sarama.RecordHeader{{Key: []byte("trace"), Value: []byte("a")}}},
		{"no-target-later", []sarama.RecordHeader{{Key: []byte(envelope.Due), Value: []byte(later)}}},
		{"seconds", []sarama.RecordHeader{{Key: []byte(envelope.Target), Value: []byte("work")}, {Key: []byte(envelope.Due), Value: []byte("1767225600")}}},
	} {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "delay-1s", Key: sarama.StringEncoder(r.key),
			Value: sarama.StringEncoder("v"), Headers: r.headers}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := dlq.WaitFor(20*time.Second, func(rs []laddertest.Received) bool { return len(rs) == 3 }); !ok {
		t.Fatalf("%d records dead-lettered, want 3", dlq.Len())
	}

	var results []replay.Result
	st, err := replay.Run(context.Background(), replay.Config{Ladder: l, Kafka: kafka, Match: "ladder-target", Target: "work",
		Log: laddertest.Logger(t), Report: func(r replay.Result) { results = append(results, r) }})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if st.Read != 3 || st.Replayed != 2 || st.Filtered != 1 || st.Skipped != 0 {
		t.Fatalf("stats %+v, want 3 read, 2 replayed, 1 filtered", st)
	}
	to := map[string]bool{}
	for _, r := range results {
		to[r.To] = true
	}
	if !to["work"] || !to["delay-1s"] {
		t.Errorf("replayed to %v, want work (due now) and delay-1s (due in 4s)", to)
	}
	recs := work.WaitDistinct(t, 2, 20*time.Second)
	for _, r := range laddertest.Distinct(recs) {
		if r.Headers[envelope.Error] != "" || r.Headers[envelope.Target] != "work" {
			t.Errorf("%s arrived with headers %v", r.Key, r.Headers)
		}
		if string(r.Key) == "no-target-now" && r.Headers["trace"] != "a" {
			t.Errorf("foreign header lost: %v", r.Headers)
		}
		if string(r.Key) == "no-target-later" && r.Headers[envelope.Due] != later {
			t.Errorf("no-target-later: due %s, want %s", r.Headers[envelope.Due], later)
		}
	}
	if got := laddertest.Distinct(recs)["no-target-later"]; got.Timestamp.Before(time.UnixMilli(mustInt(t, later))) {
		t.Errorf("the replayed record due later arrived early")
	}

	again, err := replay.Run(context.Background(), replay.Config{Ladder: l, Kafka: kafka, Target: "work", Log: laddertest.Logger(t)})
	if err != nil || again.Read != 0 {
		t.Errorf("second replay: %+v, %v; want nothing read", again, err)
	}
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
