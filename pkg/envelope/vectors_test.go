package envelope

import (
	"errors"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/internal/vectors"
)

// headerVectors is testdata/headers.json: the header contract that pkg/python's
// tests run too (tests/test_vectors.py).
type headerVectors struct {
	Comment    string             `json:"comment"`
	Decode     []decodeVector     `json:"decode"`
	New        []newVector        `json:"new"`
	Next       []nextVector       `json:"next"`
	DeadLetter []deadLetterVector `json:"dead_letter"`
}

type decodeVector struct {
	Name     string            `json:"name"`
	Headers  []vectors.Header  `json:"headers"`
	Envelope *vectors.Envelope `json:"envelope,omitempty"`
	Error    *ErrorJSON        `json:"error,omitempty"`
}

// ErrorJSON is a *HeaderError in a vector file.
type ErrorJSON struct {
	Header  string `json:"header"`
	Reason  Reason `json:"reason"`
	Message string `json:"message"`
}

func envelopeJSON(env Envelope) *vectors.Envelope {
	return vectors.NewEnvelope(env.Target, env.Due, env.Scheduled, env.Hops, env.Early, env.Error)
}

type newVector struct {
	Name        string           `json:"name"`
	Target      string           `json:"target"`
	DueMs       *int64           `json:"due_ms"` // null: no ladder-due
	ScheduledMs int64            `json:"scheduled_ms"`
	Own         []vectors.Header `json:"own"`
	Headers     []vectors.Header `json:"headers"`
}

type nextVector struct {
	Name    string           `json:"name"`
	In      []vectors.Header `json:"in"`
	Hops    int              `json:"hops"`
	EarlyMs int64            `json:"early_ms"`
	Headers []vectors.Header `json:"headers"`
}

type deadLetterVector struct {
	Name    string           `json:"name"`
	In      []vectors.Header `json:"in"`
	Reason  string           `json:"reason"`
	Headers []vectors.Header `json:"headers"`
}

const headerVectorsFile = "testdata/headers.json"

// TestVectors runs the shared header vectors: decoding (envelopes and the error,
// reason and header of each bad value), and the headers New, Next and
// DeadLetter write.
func TestVectors(t *testing.T) {
	var v headerVectors
	vectors.Load(t, headerVectorsFile, &v)
	for i := range v.Decode {
		c := &v.Decode[i]
		env, err := Decode(vectors.Pointers(t, c.Headers))
		var got decodeVector
		got.Name, got.Headers = c.Name, c.Headers
		if err != nil {
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("%s: error %v is not a *HeaderError", c.Name, err)
			}
			got.Error = &ErrorJSON{Header: he.Header, Reason: he.Reason, Message: err.Error()}
		} else {
			got.Envelope = envelopeJSON(env)
		}
		vectors.CheckJSON(t, "Decode "+c.Name, c, got)
	}
	for i := range v.New {
		c := &v.New[i]
		var due time.Time
		if c.DueMs != nil {
			due = time.UnixMilli(*c.DueMs)
		}
		got := New(c.Target, due, time.UnixMilli(c.ScheduledMs), vectors.Sarama(t, c.Own))
		vectors.CheckJSON(t, "New "+c.Name, &c.Headers, vectors.FromSarama(got))
	}
	for i := range v.Next {
		c := &v.Next[i]
		got := Next(vectors.Pointers(t, c.In), c.Hops, time.Duration(c.EarlyMs)*time.Millisecond)
		vectors.CheckJSON(t, "Next "+c.Name, &c.Headers, vectors.FromSarama(got))
	}
	for i := range v.DeadLetter {
		c := &v.DeadLetter[i]
		got := DeadLetter(vectors.Pointers(t, c.In), c.Reason)
		vectors.CheckJSON(t, "DeadLetter "+c.Name, &c.Headers, vectors.FromSarama(got))
	}
	vectors.Save(t, headerVectorsFile, &v)
}
