package forward

import (
	"sync/atomic"

	"github.com/IBM/sarama"
)

// budget bounds, in bytes and for the whole process, what the forwarder
// holds of records: fetched records not yet forwarded (the read-ahead and
// the heads), records handed to the producer until they are acknowledged,
// and fetch responses on their way (reserved at the most a fetch may bring).
// It is not a count per partition: a partition whose head is held keeps a
// copy of its head and nothing of the fetch it came in.
//
// It is owned by the machine's goroutine; gauge is for the metrics.
type budget struct {
	limit    int64
	used     int64 // charged by fetched records still referenced and by flights
	reserved int64 // by fetch requests in flight
	gauge    atomic.Int64
}

func (b *budget) free() int64 { return b.limit - b.used - b.reserved }

func (b *budget) charge(n int64) {
	b.used += n
	b.gauge.Store(b.used + b.reserved)
}

func (b *budget) reserve(n int64) {
	b.reserved += n
	b.gauge.Store(b.used + b.reserved)
}

// fetchMem is the memory of one fetch response. Decoded records point into
// the response's buffer, so the whole response stays alive while any record
// taken from it does: it is charged in full until its last record is done
// with (forwarded and acknowledged, copied, or dropped).
type fetchMem struct {
	b     *budget
	bytes int64
	refs  int
	copy  bool // the memory of one record's own copy (see record.own)
}

func (m *fetchMem) unref() {
	m.refs--
	if m.refs == 0 {
		m.b.charge(-m.bytes)
	}
}

// record is a fetched tier record: its absolute offset and timestamp, the
// decoded record (key, value, headers), and the fetch response holding its
// memory (nil once the record owns a copy).
type record struct {
	offset int64
	ts     int64 // unix milliseconds
	r      *sarama.Record
	mem    *fetchMem
}

// release lets go of the record's share of its fetch response.
func (r *record) release() {
	if r.mem != nil {
		r.mem.unref()
		r.mem = nil
	}
}

// own replaces the record's key, value and headers by copies, so that it no
// longer keeps its fetch response alive (a held head, a parked record); the
// copy is charged to the budget instead.
func (r *record) own() {
	if r.mem == nil || r.mem.copy {
		return
	}
	c := &sarama.Record{Key: clone(r.r.Key), Value: clone(r.r.Value), Headers: make([]*sarama.RecordHeader, len(r.r.Headers))}
	hs := make([]sarama.RecordHeader, len(r.r.Headers))
	for i, h := range r.r.Headers {
		hs[i] = sarama.RecordHeader{Key: clone(h.Key), Value: clone(h.Value)}
		c.Headers[i] = &hs[i]
	}
	b := r.mem.b
	r.r = c
	r.release()
	r.mem = &fetchMem{b: b, bytes: recordCost(c), refs: 1, copy: true}
	b.charge(r.mem.bytes)
}

// clone copies b, keeping nil nil (a null key stays null).
func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// recordCost estimates the memory one fetched record takes until it is
// forwarded and acknowledged: its bytes on the wire (held by the response
// buffer), its decoded form (sarama's Record and headers, its slot in a
// partition's queue), and the flight it becomes when it is handed to the
// producer (flightCost). Charging the flight with the fetch keeps a burst of
// sends within the budget: what was fetched within it can all be in flight.
func recordCost(r *sarama.Record) int64 {
	n := int64(128 + flightCost + len(r.Key) + len(r.Value))
	for _, h := range r.Headers {
		n += int64(64 + len(h.Key) + len(h.Value))
	}
	return n
}

// flightCost is what a record handed to the producer takes besides its
// fetched bytes until it is acknowledged: the flight with its producer
// message and headers, and the producer's own bookkeeping.
const flightCost = 512
