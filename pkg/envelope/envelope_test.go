package envelope

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func hdrs(kv ...string) []*sarama.RecordHeader {
	var out []*sarama.RecordHeader
	for i := 0; i < len(kv); i += 2 {
		out = append(out, &sarama.RecordHeader{Key: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return out
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []*sarama.RecordHeader
		want    Envelope
		reason  Reason
	}{
		{name: "full", headers: hdrs("trace", "x", Target, "work", Due, "1767225600000", Scheduled, "1767225000000", Hops, "3", Early, "250"),
			want: Envelope{Target: "work", Due: time.UnixMilli(1767225600000), Scheduled: time.UnixMilli(1767225000000), Hops: 3, Early: 250 * time.Millisecond}},
		{name: "target only", headers: hdrs(Target, "work-fast"), want: Envelope{Target: "work-fast"}},
		{name: "error kept", headers: hdrs(Target, "w", Error, "boom"), want: Envelope{Target: "w", Error: "boom"}},
		{name: "foreign ladder-ish header ignored", headers: hdrs(Target, "w", "ladder-attempt", "x"), want: Envelope{Target: "w"}},
		{name: "no headers", reason: ReasonMissingTarget},
		{name: "empty target", headers: hdrs(Target, ""), reason: ReasonMissingTarget},
		{name: "bad target", headers: hdrs(Target, "a b"), reason: ReasonInvalidTarget},
		{name: "long target", headers: hdrs(Target, strings.Repeat("t", 250)), reason: ReasonInvalidTarget},
		{name: "internal target", headers: hdrs(Target, "__consumer_offsets"), reason: ReasonInvalidTarget},
		{name: "largest early", headers: hdrs(Target, "w", Early, "9223372036854"), want: Envelope{Target: "w", Early: 9223372036854 * time.Millisecond}},
		{name: "overflowing early", headers: hdrs(Target, "w", Early, "9223372036855"), reason: ReasonInvalidHeader},
		{name: "non-numeric due", headers: hdrs(Target, "w", Due, "tomorrow"), reason: ReasonInvalidDue},
		{name: "negative due", headers: hdrs(Target, "w", Due, "-1767225600000"), reason: ReasonInvalidDue},
		{name: "plus due", headers: hdrs(Target, "w", Due, "+1767225600000"), reason: ReasonInvalidDue},
		{name: "spaced due", headers: hdrs(Target, "w", Due, " 1767225600000"), reason: ReasonInvalidDue},
		{name: "empty due", headers: hdrs(Target, "w", Due, ""), reason: ReasonInvalidDue},
		{name: "seconds due", headers: hdrs(Target, "w", Due, "1767225600"), reason: ReasonInvalidDue},
		{name: "overflowing due", headers: hdrs(Target, "w", Due, "99999999999999999999"), reason: ReasonInvalidDue},
		{name: "bad hops", headers: hdrs(Target, "w", Hops, "x"), reason: ReasonInvalidHops},
		{name: "huge hops", headers: hdrs(Target, "w", Hops, "999999999999"), reason: ReasonInvalidHops},
		{name: "bad scheduled", headers: hdrs(Target, "w", Scheduled, "x"), reason: ReasonInvalidHeader},
		{name: "two targets", headers: hdrs(Target, "a", Target, "b"), reason: ReasonDuplicateHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.headers)
			if tc.reason != "" {
				if ReasonOf(err) != tc.reason {
					t.Fatalf("Decode: err %v (reason %q), want reason %q", err, ReasonOf(err), tc.reason)
				}
				var he *HeaderError
				if !errors.As(err, &he) || !strings.HasPrefix(err.Error(), he.Header+": ") {
					t.Fatalf("error %q does not name its header", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got != tc.want {
				t.Fatalf("Decode = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNewAndNextPassThrough(t *testing.T) {
	own := []sarama.RecordHeader{
		{Key: []byte("trace-id"), Value: []byte{0, 1, 2, 0xff}},
		{Key: []byte(Target), Value: []byte("spoofed")},
		{Key: []byte("dup"), Value: []byte("1")},
		{Key: []byte("dup"), Value: []byte("2")},
		{Key: []byte(""), Value: nil},
	}
	due, sched := time.UnixMilli(1767225600123), time.UnixMilli(1767225000456)
	first := New("work", due, sched, own)
	in := make([]*sarama.RecordHeader, len(first))
	for i := range first {
		in[i] = &first[i]
	}
	env, err := Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	want := Envelope{Target: "work", Due: due, Scheduled: sched}
	if env != want {
		t.Fatalf("decoded %+v, want %+v", env, want)
	}
	hop := Next(in, env.Hops, 0)
	in2 := make([]*sarama.RecordHeader, len(hop))
	for i := range hop {
		in2[i] = &hop[i]
	}
	env2, err := Decode(in2)
	if err != nil {
		t.Fatal(err)
	}
	if env2.Hops != 1 || env2.Target != "work" || !env2.Due.Equal(due) || !env2.Scheduled.Equal(sched) {
		t.Fatalf("after one hop: %+v", env2)
	}
	if got, want := foreign(in2), foreign(in); !equalHeaders(got, want) {
		t.Fatalf("foreign headers changed: %q → %q", want, got)
	}
	if !equalHeaders(foreign(in), []sarama.RecordHeader{own[0], own[2], own[3], own[4]}) {
		t.Fatalf("foreign headers not kept in order: %q", foreign(in))
	}

	dl := DeadLetter(append(in2, &sarama.RecordHeader{Key: []byte(Error), Value: []byte("old")}), "ladder-due: bad")
	early := Next(in2, env2.Hops, 1500*time.Millisecond)
	if v := value(dl, Error); v != "ladder-due: bad" || len(dl) != len(in2)+1 || value(dl, Hops) != "1" {
		t.Errorf("dead-letter headers %q", dl)
	}
	if v := value(early, Early); v != "1500" {
		t.Errorf("ladder-early = %q", v)
	}
}

func foreign(hs []*sarama.RecordHeader) []sarama.RecordHeader {
	var out []sarama.RecordHeader
	for _, h := range hs {
		if headerIndex(h.Key) < 0 {
			out = append(out, *h)
		}
	}
	return out
}

func equalHeaders(a, b []sarama.RecordHeader) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

func value(hs []sarama.RecordHeader, key string) string {
	for _, h := range hs {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

// FuzzDecode feeds arbitrary header sets to Decode. It must never panic; when
// it accepts a record, the next hop must decode to the same envelope with one
// more hop and the same foreign headers, byte for byte.
// fuzzDecoder lives across fuzz inputs, so its memory of targets is tested
// against many records (fuzz targets run one at a time per process).
var fuzzDecoder Decoder

func FuzzDecode(f *testing.F) {
	f.Add([]byte(Target), []byte("work"), []byte(Due), []byte("1767225600000"), []byte("x-trace"), []byte{0xff, 0})
	f.Add([]byte(Target), []byte(""), []byte(Hops), []byte("9"), []byte(Due), []byte("12"))
	f.Add([]byte(Target), []byte("a.b_c-D"), []byte(Hops), []byte("007"), []byte(Early), []byte("1"))
	f.Add([]byte(Due), []byte("-1"), []byte(Target), []byte("w"), []byte(Target), []byte("w"))
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 []byte) {
		in := []*sarama.RecordHeader{{Key: k1, Value: v1}, {Key: k2, Value: v2}, {Key: k3, Value: v3}}
		env, err := Decode(in)
		// A Decoder remembers validated targets: twice, it must agree with Decode.
		for range 2 {
			denv, derr := fuzzDecoder.Decode(in)
			if denv != env || (derr == nil) != (err == nil) || (err != nil && derr.Error() != err.Error()) {
				t.Fatalf("Decoder gives %+v, %v; Decode %+v, %v", denv, derr, env, err)
			}
		}
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		out := Next(in, env.Hops, 0)
		next := make([]*sarama.RecordHeader, len(out))
		for i := range out {
			next[i] = &out[i]
		}
		env2, err := Decode(next)
		if err != nil {
			t.Fatalf("next hop of an accepted record is refused: %v", err)
		}
		env.Hops++
		if env2 != env {
			t.Fatalf("next hop decodes to %+v, want %+v", env2, env)
		}
		if !equalHeaders(foreign(next), foreign(in)) {
			t.Fatalf("foreign headers changed")
		}
	})
}
