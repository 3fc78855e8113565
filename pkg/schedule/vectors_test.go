package schedule

import (
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/internal/vectors"
	"github.com/ladder/ladder/pkg/tier"
)

// scheduleVectors is ../envelope/testdata/schedule.json: the records Record
// builds, which pkg/python's tests check too (tests/test_vectors.py).
type scheduleVectors struct {
	Comment string           `json:"comment"`
	Records []scheduleVector `json:"records"`
}

type scheduleVector struct {
	Name    string           `json:"name"`
	Tiers   string           `json:"tiers"`
	Prefix  string           `json:"prefix"`
	Target  string           `json:"target"`
	Headers []vectors.Header `json:"headers"`
	DueMs   int64            `json:"due_ms"`
	NowMs   int64            `json:"now_ms"`
	// Expected: the record, or the error.
	Topic       string           `json:"topic,omitempty"`
	TimestampMs int64            `json:"timestamp_ms,omitempty"`
	OutHeaders  []vectors.Header `json:"out_headers,omitempty"`
	Error       string           `json:"error,omitempty"`
}

const scheduleVectorsFile = "../envelope/testdata/schedule.json"

// TestVectors runs the shared scheduling vectors: the tier (or target) a
// message due at a time goes to, its timestamp and its headers.
func TestVectors(t *testing.T) {
	var v scheduleVectors
	vectors.Load(t, scheduleVectorsFile, &v)
	for i := range v.Records {
		c := &v.Records[i]
		l, err := tier.Parse(c.Tiers, c.Prefix)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		m := Message{Topic: c.Target, Key: []byte("k"), Value: []byte("v"), Headers: vectors.Sarama(t, c.Headers), At: time.UnixMilli(c.DueMs)}
		pm, err := Record(l, m, time.UnixMilli(c.NowMs))
		got := *c
		got.Topic, got.TimestampMs, got.OutHeaders, got.Error = "", 0, nil, ""
		if err != nil {
			got.Error = err.Error()
		} else {
			got.Topic, got.TimestampMs, got.OutHeaders = pm.Topic, pm.Timestamp.UnixMilli(), vectors.FromSarama(pm.Headers)
		}
		vectors.CheckJSON(t, "Record "+c.Name, c, got)
	}
	vectors.Save(t, scheduleVectorsFile, &v)
}
