package plan

import (
	"math"

	"github.com/ladder/ladder/pkg/envelope"
)

// Record size, Kafka record batch format v2 without compression (what
// ladder's producers send and what the broker stores):
//
//	batch header   61 bytes (offset, length, epoch, magic, crc, attributes,
//	               last offset delta, first and max timestamp, producer id
//	               and epoch, base sequence, count), shared by the batch
//	record         varint length, attributes (1), varlong timestamp delta,
//	               varint offset delta, varint key length + key, varint
//	               value length + value, varint header count, and per header
//	               varint key length + key + varint value length + value
//
// Varints are zigzag-encoded: one byte up to 63, two up to 8191. The ladder
// headers are ladder-target (the target topic), ladder-due and
// ladder-scheduled (13 decimal digits of unix milliseconds until 2286) and
// ladder-hops (the hop count in decimal); ladder-early is not set.
const (
	batchHeaderBytes = 61
	millisDigits     = 13
	// timestampDeltaBytes assumes the records of one batch are produced
	// within 63 ms of each other.
	timestampDeltaBytes = 1
)

// varintLen is the size of v as a Kafka zigzag varint.
func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

func headerLen(key string, valueLen int) int {
	return varintLen(int64(len(key))) + len(key) + varintLen(int64(valueLen)) + valueLen
}

// recordSizes holds the bytes of one record, batch header share included,
// by the number of decimal digits of its ladder-hops value.
type recordSizes [20]float64

// newRecordSizes sizes the records of a message of valueBytes bytes with a
// key of keyBytes (0: a null key), sent to target, in batches of batch records.
func newRecordSizes(valueBytes, keyBytes int, target string, batch int) recordSizes {
	key := varintLen(-1)
	if keyBytes > 0 {
		key = varintLen(int64(keyBytes)) + keyBytes
	}
	var s recordSizes
	for digits := 1; digits < len(s); digits++ {
		headers := varintLen(4) +
			headerLen(envelope.Target, len(target)) +
			headerLen(envelope.Due, millisDigits) +
			headerLen(envelope.Scheduled, millisDigits) +
			headerLen(envelope.Hops, digits)
		// everything after the length, but the offset delta (the index
		// in the batch)
		base := 1 + timestampDeltaBytes + key + varintLen(int64(valueBytes)) + valueBytes + headers
		var total int
		for i := range batch {
			body := base + varintLen(int64(i))
			total += varintLen(int64(body)) + body
		}
		s[digits] = (float64(total) + batchHeaderBytes) / float64(batch)
	}
	return s
}

// digits is the number of decimal digits of n ≥ 0.
func digits(n int) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

// of is the size of a record carrying ladder-hops = hops.
func (s *recordSizes) of(hops int) float64 { return s[digits(hops)] }

// sum is the total size of the records carrying ladder-hops = from,
// from+1, ..., from+n-1.
func (s *recordSizes) sum(from, n int) float64 {
	var total float64
	end := 10 // hop values below end have at most d digits
	for d := 1; d < len(s) && n > 0; d++ {
		if from < end {
			k := min(end-from, n)
			total += float64(k) * s[d]
			from += k
			n -= k
		}
		if end > math.MaxInt/10 {
			end = math.MaxInt
		} else {
			end *= 10
		}
	}
	return total
}
