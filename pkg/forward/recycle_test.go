package forward

import (
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// TestFailedFlightNotReused: a flight is reused once acknowledged, unless
// the producer once returned its message with an error: sarama reads a
// message it handed back as an error once more (v1.61.1: its back-off
// reads msg.retries after returnError), so zeroing that flight for reuse
// is a data race (TestBrokerUnreachable under -race on Apache Kafka).
func TestFailedFlightNotReused(t *testing.T) {
	h := newHarness(t)
	h.known("work")
	h.add("a", "work", 0)
	h.add("b", "work", 0)
	h.pump()
	sent := h.wantSent("a", "b")
	failed := sent[0]
	h.fail(failed, sarama.ErrNotEnoughReplicas)
	h.advance(time.Minute)
	resent := h.wantSent("a")
	h.ack(resent[0], sent[1])
	if len(h.m.free) != 1 || h.m.free[0] != sent[1] {
		t.Fatalf("%d flights kept for reuse after acknowledging a once-failed and a never-failed record, want only the never-failed one", len(h.m.free))
	}
	for _, fl := range h.m.free {
		if fl == failed {
			t.Fatal("a flight whose message the producer returned with an error was kept for reuse")
		}
	}
}
