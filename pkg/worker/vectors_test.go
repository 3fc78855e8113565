package worker

import (
	"fmt"
	"testing"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/internal/vectors"
)

// workerVectors is ../envelope/testdata/worker.json: how a worker reads a
// consumed record (own headers, attempt, envelope), the headers of its dead
// letters and the default back-off, which pkg/python's tests check too
// (tests/test_vectors.py).
type workerVectors struct {
	Comment    string             `json:"comment"`
	Messages   []messageVector    `json:"messages"`
	DeadLetter []deadLetterVector `json:"dead_letter"`
	Backoff    []backoffVector    `json:"backoff"`
}

type messageVector struct {
	Name    string           `json:"name"`
	Topic   string           `json:"topic"`
	Headers []vectors.Header `json:"headers"`
	// Expected.
	Own      []vectors.Header  `json:"own"`
	Attempt  int               `json:"attempt"`
	Envelope *vectors.Envelope `json:"envelope"`
}

type deadLetterVector struct {
	Name    string           `json:"name"`
	Topic   string           `json:"topic"`
	Headers []vectors.Header `json:"headers"`
	Attempt int              `json:"attempt"`
	Reason  string           `json:"reason"`
	// Expected.
	OutHeaders []vectors.Header `json:"out_headers"`
}

type backoffVector struct {
	Attempt int   `json:"attempt"`
	Ms      int64 `json:"ms"`
}

const workerVectorsFile = "../envelope/testdata/worker.json"

// TestVectors runs the shared worker vectors.
func TestVectors(t *testing.T) {
	var v workerVectors
	vectors.Load(t, workerVectorsFile, &v)
	for i := range v.Messages {
		c := &v.Messages[i]
		m := newMessage(&sarama.ConsumerMessage{Topic: c.Topic, Headers: vectors.Pointers(t, c.Headers)})
		vectors.CheckJSON(t, "own headers of "+c.Name, &c.Own, vectors.FromSarama(m.Headers))
		vectors.Check(t, "attempt of "+c.Name, &c.Attempt, m.Attempt)
		vectors.CheckJSON(t, "envelope of "+c.Name, &c.Envelope, vectors.NewEnvelope(m.Envelope.Target, m.Envelope.Due, m.Envelope.Scheduled, m.Envelope.Hops, m.Envelope.Early, m.Envelope.Error))
	}
	for i := range v.DeadLetter {
		c := &v.DeadLetter[i]
		got := deadLetterHeaders(&sarama.ConsumerMessage{Topic: c.Topic, Headers: vectors.Pointers(t, c.Headers)}, c.Attempt, c.Reason)
		vectors.CheckJSON(t, "dead-letter headers of "+c.Name, &c.OutHeaders, vectors.FromSarama(got))
	}
	for i := range v.Backoff {
		c := &v.Backoff[i]
		vectors.Check(t, fmt.Sprintf("DefaultBackoff(%d)", c.Attempt), &c.Ms, DefaultBackoff(c.Attempt).Milliseconds())
	}
	vectors.Save(t, workerVectorsFile, &v)
}
