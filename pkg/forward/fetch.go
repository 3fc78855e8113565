package forward

import (
	"errors"
	"time"

	"github.com/IBM/sarama"
)

// The forwarder fetches its partitions itself (sarama's partition consumers
// would keep a decoded fetch of every partition, a megabyte each with real
// producers' batches, while its head is held). A partition asks for records
// only when it has no head, or a head due within ResumeLead, and little
// read-ahead; a fetch is sent to a partition's leader only when the memory
// budget has room for what it may bring (its MaxBytes, reserved until it
// lands). One fetch is on its way per broker at a time; the machine decodes
// nothing itself: sarama's FetchResponse does.

// fetchReq is one fetch request to a broker, for some partitions.
type fetchReq struct {
	broker   *sarama.Broker
	req      *sarama.FetchRequest
	parts    []*partition
	offsets  []int64
	epochs   []uint32
	reserved int64
}

// minFetchBytes is the least room a fetch is sent with: Kafka returns a
// partition's first batch whole even beyond the request's limits (KIP-74),
// so progress never needs more, and a smaller fetch is not worth a request.
const minFetchBytes = 256 << 10

// maxPartitionFetchBytes is the per-partition limit of a fetch, as the Java
// client's max.partition.fetch.bytes.
const maxPartitionFetchBytes = 1 << 20

// newFetchRequest is the fetch request for the brokers of version v:
// read_committed, no fetch session.
func newFetchRequest(v sarama.KafkaVersion, maxWait time.Duration, maxBytes int32) *sarama.FetchRequest {
	r := &sarama.FetchRequest{MinBytes: 1, MaxWaitTime: int32(maxWait / time.Millisecond), MaxBytes: maxBytes,
		Isolation: sarama.ReadCommitted, SessionID: 0, SessionEpoch: -1}
	switch {
	case v.IsAtLeast(sarama.V2_7_0_0):
		r.Version = 12
	case v.IsAtLeast(sarama.V2_3_0_0):
		r.Version = 11
	case v.IsAtLeast(sarama.V2_1_0_0):
		r.Version = 10
	case v.IsAtLeast(sarama.V2_0_0_0):
		r.Version = 8
	case v.IsAtLeast(sarama.V1_1_0_0):
		r.Version = 7
	case v.IsAtLeast(sarama.V1_0_0_0):
		r.Version = 6
	default:
		r.Version = 5
	}
	return r
}

// fetched takes a fetch response: each partition's records join its
// read-ahead queue, charged to the budget with the response.
func (m *machine) fetched(fr *fetchReq, resp *sarama.FetchResponse, err error, now time.Time) {
	m.mem.reserve(-fr.reserved)
	mem := &fetchMem{b: m.mem}
	for i, p := range fr.parts {
		p.fetching = false
		if p.gone || p.fetchEpoch != fr.epochs[i] || p.fetchAt != fr.offsets[i] {
			continue // dropped meanwhile: fetched again when wanted
		}
		m.markDirty(p)
		if err != nil {
			p.fetchFailed(err, now)
			continue
		}
		b := resp.GetBlock(p.topic, p.id)
		if b == nil {
			continue
		}
		switch {
		case errors.Is(b.Err, sarama.ErrNoError):
		case errors.Is(b.Err, sarama.ErrOffsetOutOfRange):
			// Retention deleted records the group had not forwarded (or the
			// topic was recreated): start over from the earliest offset.
			p.log.Error().Int64("offset", p.fetchAt).Msg("offset out of range: records were deleted before they were forwarded; resuming at the earliest offset")
			p.fetchAt = -1
			m.resetOffset(p)
			continue
		default:
			p.fetchFailed(b.Err, now)
			continue
		}
		p.fetchErr = 0
		recs, next, bytes := parseBlock(b, p.fetchAt, mem)
		mem.bytes += bytes
		p.fetchAt = next
		if len(recs) > 0 {
			p.enqueue(recs)
		}
	}
	if mem.refs > 0 {
		m.mem.charge(mem.bytes)
	}
}

// fetchFailed backs the partition's fetches off (100ms doubling to 5s) and
// has the metadata of its topic read again: its leader may have moved.
func (p *partition) fetchFailed(err error, now time.Time) {
	p.fetchErr++
	d := targetBackoff(p.fetchErr)
	p.fetchOK = now.Add(d)
	p.setWake(p.fetchOK)
	if p.fetchErr == 1 || p.fetchErr%10 == 0 {
		p.log.Warn().Err(err).Int("failures", p.fetchErr).Dur("retry_in", d).Msg("fetching failed")
	}
	p.m.refreshMetadata(p.topic)
}

// parseBlock returns the records of a partition's fetch response from
// offset from on, and the next offset to fetch, as a read_committed
// consumer sees them: transaction markers and records of aborted
// transactions skipped. bytes is what the response holds of the partition.
func parseBlock(b *sarama.FetchResponseBlock, from int64, mem *fetchMem) (recs []record, next int64, bytes int64) {
	next = from
	aborted := b.AbortedTransactions
	var abortedBy map[int64]bool // producer ids inside an aborted transaction
	for _, rs := range b.RecordsSet {
		if rs == nil {
			continue
		}
		if rs.MsgSet != nil {
			for _, mb := range legacyMessages(rs.MsgSet, 0) {
				bytes += int64(128 + len(mb.Msg.Key) + len(mb.Msg.Value))
				if mb.Offset < from {
					continue
				}
				r := &sarama.Record{Key: mb.Msg.Key, Value: mb.Msg.Value}
				recs = append(recs, record{offset: mb.Offset, ts: mb.Msg.Timestamp.UnixMilli(), r: r, mem: mem})
				mem.refs++
				bytes += flightCost
				next = max(next, mb.Offset+1)
			}
			continue
		}
		batch := rs.RecordBatch
		if batch == nil || batch.PartialTrailingRecord {
			continue // cut off by the response's size limit: fetched again next time
		}
		last := batch.LastOffset()
		for len(aborted) > 0 && aborted[0].FirstOffset <= last {
			if abortedBy == nil {
				abortedBy = map[int64]bool{}
			}
			abortedBy[aborted[0].ProducerID] = true
			aborted = aborted[1:]
		}
		next = max(next, last+1)
		if batch.Control {
			if len(batch.Records) > 0 && abortMarker(batch.Records[0].Key) {
				delete(abortedBy, batch.ProducerID)
			}
			continue
		}
		skip := batch.IsTransactional && abortedBy[batch.ProducerID]
		for _, r := range batch.Records {
			cost := recordCost(r)
			off := batch.FirstOffset + r.OffsetDelta
			if skip || off < from {
				bytes += cost - flightCost
				continue
			}
			ts := batch.FirstTimestamp.Add(r.TimestampDelta)
			if batch.LogAppendTime {
				ts = batch.MaxTimestamp
			}
			recs = append(recs, record{offset: off, ts: ts.UnixMilli(), r: r, mem: mem})
			mem.refs++
			bytes += cost
		}
	}
	return recs, next, bytes
}

// abortMarker reports whether a control record's key is an abort marker
// (version int16, type int16: 0 abort, 1 commit).
func abortMarker(key []byte) bool {
	return len(key) >= 4 && key[2] == 0 && key[3] == 0
}

// legacyMessages flattens a message set of the old formats (compressed
// wrappers hold a nested set; their inner offsets may be relative).
func legacyMessages(set *sarama.MessageSet, depth int) []*sarama.MessageBlock {
	var out []*sarama.MessageBlock
	for _, mb := range set.Messages {
		if mb == nil || mb.Msg == nil {
			continue
		}
		if mb.Msg.Set != nil && depth == 0 {
			inner := legacyMessages(mb.Msg.Set, 1)
			if n := len(inner); n > 0 && mb.Msg.Version >= 1 {
				// Relative inner offsets: the wrapper carries the last one.
				base := mb.Offset - inner[n-1].Offset
				for _, in := range inner {
					out = append(out, &sarama.MessageBlock{Offset: base + in.Offset, Msg: in.Msg})
				}
				continue
			}
			out = append(out, inner...)
			continue
		}
		out = append(out, mb)
	}
	return out
}

// fetchWants returns the partitions that want records now.
func (m *machine) fetchWants(now time.Time) []*partition {
	var out []*partition
	for _, p := range m.all {
		if p.wantsFetch(now) {
			out = append(out, p)
		}
	}
	return out
}

// fetchRoom is how many bytes a fetch may bring now: 0 when the budget has
// no room for one (after dropping the read-ahead of held partitions, whose
// heads are copied and which fetch again when their head comes due).
func (m *machine) fetchRoom() int64 {
	free := m.mem.free()
	if free < minFetchBytes {
		for _, p := range m.all {
			if p.state == holding && p.qh < len(p.queue) {
				p.dropReadAhead()
			}
		}
		free = m.mem.free()
	}
	if free < minFetchBytes {
		return 0
	}
	return min(free, m.cfg.maxFetchBytes)
}
