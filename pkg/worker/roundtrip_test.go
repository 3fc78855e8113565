package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/worker"
)

// TestResultRoundTrips sends one message around the loop (handler → tier →
// back) per kind of result:
//   - RescheduleAt comes back at its time, as it was;
//   - Reschedule with WithValue and WithHeaders comes back with the new value
//     and headers, without the ladder-* headers the handler tried to set
//     (ladder-attempt among them, which would otherwise count as retries);
//   - RetryAfter comes back after its own back-off (not the lane's hour),
//     as it was, with ladder-attempt 2.
//
// Each went through a tier, and none came back before it was due.
func TestResultRoundTrips(t *testing.T) {
	e := setup(t, 2, "work")
	e.forwarder(t)
	raw := laddertest.Collect(t, e.addr, "work")
	keys := []string{"at", "value", "retry"}
	seed(t, e.addr, "work", len(keys), func(i int) string { return keys[i] })

	type visit struct {
		m  worker.Message
		at time.Time
	}
	var (
		mu     sync.Mutex
		visits = map[string][]visit{}
		due    = map[string]time.Time{} // the earliest the second visit may come
	)
	h := func(ctx context.Context, m worker.Message) worker.Result {
		now := time.Now()
		k := string(m.Key)
		mu.Lock()
		defer mu.Unlock()
		visits[k] = append(visits[k], visit{m, now})
		if len(visits[k]) > 1 {
			return worker.Done()
		}
		switch k {
		case "at":
			at := now.Add(2500 * time.Millisecond)
			due[k] = at.Truncate(time.Millisecond) // the wire carries milliseconds
			return worker.RescheduleAt(at)
		case "value":
			due[k] = now.Add(1500 * time.Millisecond).Truncate(time.Millisecond)
			return worker.Reschedule(1500*time.Millisecond).WithValue([]byte("new")).WithHeaders(
				sarama.RecordHeader{Key: []byte("own"), Value: []byte("1")},
				sarama.RecordHeader{Key: []byte(worker.AttemptHeader), Value: []byte("7")},
				sarama.RecordHeader{Key: []byte(envelope.Due), Value: []byte("1")},
				sarama.RecordHeader{Key: []byte("ladder-custom"), Value: []byte("x")})
		case "retry":
			due[k] = now.Add(2 * time.Second).Truncate(time.Millisecond)
			return worker.RetryAfter(2*time.Second, errors.New("later"))
		}
		return worker.DeadLetter("unexpected key")
	}
	e.start(t, e.config(t), worker.Lane{Topics: []string{"work"}, Handler: h, MaxAttempts: 3,
		Backoff: func(int) time.Duration { return time.Hour }})

	back := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, k := range keys {
			n += min(len(visits[k]), 2) / 2
		}
		return n
	}
	waitFor(t, 60*time.Second, func() bool { return back() == len(keys) },
		func() string { return fmt.Sprintf("%d of %d messages came back", back(), len(keys)) })

	mu.Lock()
	defer mu.Unlock()
	for i, k := range keys {
		vs := visits[k]
		if len(vs) != 2 {
			t.Errorf("%s handled %d times, want 2", k, len(vs))
			continue
		}
		m, at := vs[1].m, vs[1].at
		if at.Before(due[k]) || at.Before(m.Envelope.Due) || m.Envelope.Due.Before(due[k]) {
			t.Errorf("%s came back at %s, due %s (ladder-due %s): early", k, at.Format(time.StampMilli),
				due[k].Format(time.StampMilli), m.Envelope.Due.Format(time.StampMilli))
		}
		if m.Envelope.Hops < 1 || m.Envelope.Early != 0 {
			t.Errorf("%s came back with envelope %+v: want ≥1 hop, not early", k, m.Envelope)
		}
		orig, _ := m.Header("orig")
		switch k {
		case "at":
			if !m.Envelope.Due.Equal(due[k]) || string(m.Value) != fmt.Sprintf("v%d", i) || string(orig) != fmt.Sprint(i) ||
				m.Attempt != 1 {
				t.Errorf("at: came back with ladder-due %s (want %s), value %q, orig %q, attempt %d", m.Envelope.Due, due[k],
					m.Value, orig, m.Attempt)
			}
		case "value":
			own, _ := m.Header("own")
			if string(m.Value) != "new" || string(own) != "1" || orig != nil || m.Attempt != 1 {
				t.Errorf("value: came back with value %q, headers %v, attempt %d; want value new, only header own, attempt 1",
					m.Value, m.Headers, m.Attempt)
			}
		case "retry":
			if string(m.Value) != fmt.Sprintf("v%d", i) || string(orig) != fmt.Sprint(i) || m.Attempt != 2 {
				t.Errorf("retry: came back with value %q, orig %q, attempt %d; want v%d, %d, 2", m.Value, orig, m.Attempt, i, i)
			}
		}
	}
	// The record that brought "value" back, as on the wire: the SDK's ladder
	// headers only, each once.
	recs, ok := raw.WaitFor(10*time.Second, func(rs []laddertest.Received) bool {
		for _, r := range rs {
			if string(r.Key) == "value" && r.Headers[envelope.Hops] != "" {
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatal("the returning record of value was not read back from the lane")
	}
	for _, r := range recs {
		if string(r.Key) != "value" || r.Headers[envelope.Hops] == "" {
			continue
		}
		count := map[string]int{}
		for _, h := range r.HeaderList {
			if strings.HasPrefix(string(h.Key), "ladder-") {
				count[string(h.Key)]++
			}
		}
		for name, c := range count {
			if c != 1 || name == worker.AttemptHeader || name == "ladder-custom" {
				t.Errorf("value came back with %d × %s (headers %v): a handler's ladder-* header went through", c, name, r.Headers)
			}
		}
		if r.Headers[envelope.Due] == "1" {
			t.Errorf("value came back with the handler's ladder-due")
		}
	}
}
