// Package vectors reads and rewrites the shared test vectors: JSON files under
// pkg/tier/testdata and pkg/envelope/testdata that the Go tests and the Python
// package's tests (pkg/python) both run, so that the two implementations of the
// wire contract cannot drift apart.
//
// A vector file holds each case's input and its expected output. The Go tests
// compare; run them with -update to rewrite the expected outputs from the Go
// implementation (then review the diff: the Python tests must agree with it).
package vectors

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/IBM/sarama"
)

// Update is the -update flag of every test binary that imports this package.
var Update = flag.Bool("update", false, "rewrite the expected outputs of the shared test vectors from the Go implementation")

// Header is a record header in a vector file: its value as text, or as hex
// when it is not valid UTF-8.
type Header struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
	Hex   string `json:"hex,omitempty"`
}

// Bytes is the header's value.
func (h Header) Bytes(tb testing.TB) []byte {
	tb.Helper()
	if h.Hex == "" {
		return []byte(h.Value)
	}
	b, err := hex.DecodeString(h.Hex)
	if err != nil {
		tb.Fatalf("header %s: bad hex %q: %v", h.Key, h.Hex, err)
	}
	return b
}

// Sarama converts headers of a vector file to sarama's.
func Sarama(tb testing.TB, hs []Header) []sarama.RecordHeader {
	tb.Helper()
	out := make([]sarama.RecordHeader, len(hs))
	for i, h := range hs {
		out[i] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Bytes(tb)}
	}
	return out
}

// Pointers converts headers of a vector file to sarama's consumed form.
func Pointers(tb testing.TB, hs []Header) []*sarama.RecordHeader {
	tb.Helper()
	out := make([]*sarama.RecordHeader, len(hs))
	for i, h := range Sarama(tb, hs) {
		out[i] = &h
	}
	return out
}

// FromSarama converts sarama headers to the form of a vector file.
func FromSarama(hs []sarama.RecordHeader) []Header {
	out := make([]Header, len(hs))
	for i, h := range hs {
		out[i] = Header{Key: string(h.Key)}
		if utf8.Valid(h.Value) {
			out[i].Value = string(h.Value)
		} else {
			out[i].Hex = hex.EncodeToString(h.Value)
		}
	}
	return out
}

// Envelope is a decoded envelope in a vector file: times in unix
// milliseconds, absent fields left out.
type Envelope struct {
	Target      string `json:"target"`
	DueMs       int64  `json:"due_ms,omitempty"`
	ScheduledMs int64  `json:"scheduled_ms,omitempty"`
	Hops        int    `json:"hops,omitempty"`
	EarlyMs     int64  `json:"early_ms,omitempty"`
	Error       string `json:"error,omitempty"`
}

// NewEnvelope is the vector form of an envelope's fields (zero times are absent).
func NewEnvelope(target string, due, scheduled time.Time, hops int, early time.Duration, errText string) *Envelope {
	e := &Envelope{Target: target, Hops: hops, EarlyMs: early.Milliseconds(), Error: errText}
	if !due.IsZero() {
		e.DueMs = due.UnixMilli()
	}
	if !scheduled.IsZero() {
		e.ScheduledMs = scheduled.UnixMilli()
	}
	return e
}

// Load decodes the vector file at path into v, refusing unknown fields.
func Load(tb testing.TB, path string, v any) {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("reading test vectors: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		tb.Fatalf("decoding test vectors %s: %v", path, err)
	}
}

// Save writes v to path, indented, when -update is set.
func Save(tb testing.TB, path string, v any) {
	tb.Helper()
	if !*Update {
		return
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		tb.Fatalf("encoding test vectors: %v", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		tb.Fatalf("writing test vectors: %v", err)
	}
	tb.Logf("rewrote %s from the Go implementation: review the diff", path)
}

// Check reports a mismatch between want (from the file) and got (from Go), or
// records got when -update is set.
func Check[T comparable](tb testing.TB, what string, want *T, got T) {
	tb.Helper()
	if *Update {
		*want = got
		return
	}
	if *want != got {
		tb.Errorf("%s: Go gives %#v, the vectors say %#v", what, got, *want)
	}
}

// normal is v as JSON decodes it: invalid UTF-8 in a Go string compares as
// the U+FFFD it encodes to.
func normal(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// CheckJSON is Check for values compared by their JSON encoding (slices, structs with slices).
func CheckJSON[T any](tb testing.TB, what string, want *T, got T) {
	tb.Helper()
	if *Update {
		*want = got
		return
	}
	w, g := normal(*want), normal(got)
	if !reflect.DeepEqual(w, g) {
		wj, _ := json.Marshal(*want)
		gj, _ := json.Marshal(got)
		tb.Errorf("%s: Go gives %s, the vectors say %s", what, gj, wj)
	}
}
