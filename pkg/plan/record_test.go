package plan

import (
	"math"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ladder/ladder/pkg/envelope"
)

// TestRecordSizeMatchesKafkaEncoding encodes real record batches (format v2,
// franz-go's kmsg) carrying the ladder headers and checks the bytes per
// record the planner assumes, batch header share included.
func TestRecordSizeMatchesKafkaEncoding(t *testing.T) {
	for _, tc := range []struct {
		value, key, batch, hops int
		target                  string
	}{
		{value: 100, batch: 100, hops: 3, target: "work"},
		{value: 100, batch: 1, hops: 0, target: "work"},
		{value: 10, key: 16, batch: 500, hops: 12, target: "orders.retry"},
		{value: 4000, key: 36, batch: 20, hops: 123, target: "w"},
		// the record length crosses 8191 (a 3-byte varint) inside the batch
		{value: 8095, batch: 100, hops: 5, target: "work"},
	} {
		t.Run(strconv.Itoa(tc.value)+"/"+strconv.Itoa(tc.batch), func(t *testing.T) {
			headers := []kmsg.Header{
				{Key: envelope.Target, Value: []byte(tc.target)},
				{Key: envelope.Due, Value: []byte("1767225600000")},
				{Key: envelope.Scheduled, Value: []byte("1767225000000")},
				{Key: envelope.Hops, Value: []byte(strconv.Itoa(tc.hops))},
			}
			var key []byte
			if tc.key > 0 {
				key = make([]byte, tc.key)
			}
			var records []byte
			for i := range tc.batch {
				r := kmsg.Record{TimestampDelta64: int64(i % 50), OffsetDelta: int32(i), Key: key,
					Value: make([]byte, tc.value), Headers: headers}
				r.Length = int32(len(r.AppendTo(nil)) - 1) // the length of everything after it
				records = r.AppendTo(records)
			}
			b := kmsg.RecordBatch{Magic: 2, NumRecords: int32(tc.batch), LastOffsetDelta: int32(tc.batch - 1), Records: records}
			b.Length = int32(len(b.AppendTo(nil)) - 12)
			encoded := float64(len(b.AppendTo(nil))) / float64(tc.batch)

			s := newRecordSizes(tc.value, tc.key, tc.target, tc.batch)
			if got := s.of(tc.hops); math.Abs(got-encoded) > 1e-9 {
				t.Errorf("planner: %.4f bytes per record; Kafka encoding: %.4f", got, encoded)
			}
		})
	}
}

func TestRecordSizeSum(t *testing.T) {
	s := newRecordSizes(100, 0, "work", 100)
	for _, tc := range []struct{ from, n int }{{0, 0}, {0, 1}, {0, 10}, {3, 20}, {9, 2}, {95, 10}, {7, 1000}} {
		var want float64
		for j := tc.from; j < tc.from+tc.n; j++ {
			want += s.of(j)
		}
		if got := s.sum(tc.from, tc.n); math.Abs(got-want) > 1e-6 {
			t.Errorf("sum(%d, %d) = %v, want %v", tc.from, tc.n, got, want)
		}
	}
	if s.of(9) >= s.of(10) {
		t.Errorf("a two-digit ladder-hops should take one more byte: %v, %v", s.of(9), s.of(10))
	}
}
