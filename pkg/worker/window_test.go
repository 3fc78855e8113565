package worker

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
)

// TestWindowCommitsOnlyTheFinishedPrefix finishes records in random order
// and checks that the offset to commit never passes an unfinished record.
func TestWindowCommitsOnlyTheFinishedPrefix(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var w window
		n := 1 + r.IntN(50)
		es := make([]*entry, n)
		for i := range es {
			es[i] = &entry{cm: &sarama.ConsumerMessage{Offset: int64(100 + 2*i)}} // offsets with gaps, as after compaction
			w.add(es[i])
		}
		committed := int64(-1)
		for _, i := range r.Perm(n) {
			c := w.finish(es[i])
			if c >= 0 {
				if c <= committed {
					t.Fatalf("round %d: commit went from %d to %d", round, committed, c)
				}
				committed = c
			}
			// Every record below the committed offset is finished; the one at it is not.
			for _, e := range es {
				if e.cm.Offset < committed && !e.finished {
					t.Fatalf("round %d: committed %d past unfinished offset %d", round, committed, e.cm.Offset)
				}
			}
		}
		if want := es[n-1].cm.Offset + 1; committed != want || w.len() != 0 {
			t.Fatalf("round %d: all finished, committed %d (want %d), %d left", round, committed, want, w.len())
		}
	}
}

func TestWindowIgnoresForeignEntries(t *testing.T) {
	var w1, w2 window
	a, b := &entry{cm: &sarama.ConsumerMessage{Offset: 1}}, &entry{cm: &sarama.ConsumerMessage{Offset: 2}}
	w1.add(a)
	w2.add(b)
	if c := w1.finish(b); c != -1 {
		t.Errorf("finishing an entry of another window committed %d", c)
	}
	if c := w1.finish(a); c != 2 {
		t.Errorf("commit %d, want 2", c)
	}
}

func hdr(k, v string) *sarama.RecordHeader {
	return &sarama.RecordHeader{Key: []byte(k), Value: []byte(v)}
}

func TestNewMessage(t *testing.T) {
	due := time.UnixMilli(1_800_000_000_000)
	tests := []struct {
		name        string
		headers     []*sarama.RecordHeader
		wantAttempt int
		wantOwn     []string
		wantDue     time.Time
		wantHops    int
		wantEarly   time.Duration
	}{
		{name: "produced straight to the lane", headers: []*sarama.RecordHeader{hdr("a", "1")},
			wantAttempt: 1, wantOwn: []string{"a"}},
		{name: "through the ladder, retried", headers: []*sarama.RecordHeader{hdr("a", "1"), hdr(envelope.Target, "work"),
			hdr(envelope.Due, "1800000000000"), hdr(envelope.Hops, "3"), hdr(envelope.Early, "250"), hdr("b", "2"), hdr(AttemptHeader, "4")},
			wantAttempt: 4, wantOwn: []string{"a", "b"}, wantDue: due, wantHops: 3, wantEarly: 250 * time.Millisecond},
		{name: "malformed ladder headers are ignored", headers: []*sarama.RecordHeader{hdr(envelope.Due, "soon"), hdr(AttemptHeader, "x")},
			wantAttempt: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMessage(&sarama.ConsumerMessage{Topic: "work", Headers: tt.headers})
			if m.Attempt != tt.wantAttempt {
				t.Errorf("attempt %d, want %d", m.Attempt, tt.wantAttempt)
			}
			var own []string
			for _, h := range m.Headers {
				own = append(own, string(h.Key))
			}
			if len(own) != len(tt.wantOwn) || (len(own) > 0 && own[0] != tt.wantOwn[0]) {
				t.Errorf("own headers %v, want %v", own, tt.wantOwn)
			}
			if m.Envelope.Target != "work" || !m.Envelope.Due.Equal(tt.wantDue) || m.Envelope.Hops != tt.wantHops ||
				m.Envelope.Early != tt.wantEarly {
				t.Errorf("envelope %+v", m.Envelope)
			}
			if len(tt.headers) != len(m.Headers)+countLadder(tt.headers) {
				t.Errorf("consumed headers were modified")
			}
		})
	}
}

func countLadder(hs []*sarama.RecordHeader) int {
	n := 0
	for _, h := range hs {
		if len(h.Key) > 7 && string(h.Key[:7]) == "ladder-" {
			n++
		}
	}
	return n
}

func TestDeadLetterHeaders(t *testing.T) {
	cm := &sarama.ConsumerMessage{Topic: "work", Headers: []*sarama.RecordHeader{hdr("a", "1"), hdr(AttemptHeader, "2"),
		hdr(envelope.Error, "old")}}
	got := map[string][]string{}
	for _, h := range deadLetterHeaders(cm, 3, "boom") {
		got[string(h.Key)] = append(got[string(h.Key)], string(h.Value))
	}
	want := map[string]string{"a": "1", AttemptHeader: "3", envelope.Target: "work", envelope.Error: "boom"}
	for k, v := range want {
		if len(got[k]) != 1 || got[k][0] != v {
			t.Errorf("header %s = %v, want [%s]", k, got[k], v)
		}
	}
}

func TestDefaultBackoff(t *testing.T) {
	for attempt, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 4: 80 * time.Second, 30: time.Hour} {
		if got := DefaultBackoff(attempt); got != want {
			t.Errorf("DefaultBackoff(%d) = %s, want %s", attempt, got, want)
		}
	}
}

// TestWindowFinishedKeepsOnlyTheOffset: records finished behind an
// unfinished one are no longer referenced by the window, only their offsets
// are kept, so their messages can be collected while the first one runs on.
func TestWindowFinishedKeepsOnlyTheOffset(t *testing.T) {
	var w window
	first := &entry{cm: &sarama.ConsumerMessage{Offset: 0}}
	w.add(first)
	const n = 100
	msgs := make([]weak.Pointer[sarama.ConsumerMessage], 0, n)
	func() {
		for i := 1; i <= n; i++ {
			e := &entry{cm: &sarama.ConsumerMessage{Offset: int64(i), Value: make([]byte, 4<<10)}}
			w.add(e)
			msgs = append(msgs, weak.Make(e.cm))
			if c := w.finish(e); c != -1 {
				t.Fatalf("offset %d finished behind offset 0 committed %d", i, c)
			}
		}
	}()
	runtime.GC()
	kept := 0
	for _, p := range msgs {
		if p.Value() != nil {
			kept++
		}
	}
	if kept > 0 {
		t.Errorf("%d of %d finished messages still referenced behind an unfinished one", kept, n)
	}
	if w.len() != n+1 {
		t.Errorf("window holds %d records, want %d", w.len(), n+1)
	}
	if c := w.finish(first); c != n+1 || w.len() != 0 {
		t.Errorf("finishing the first: commit %d (want %d), %d left", c, n+1, w.len())
	}
}
