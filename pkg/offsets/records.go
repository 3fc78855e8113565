package offsets

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/IBM/sarama"
)

// Readable is what a read_committed consumer would receive from a range of
// offsets of one partition.
//
// Offsets are not records: an exactly-once (transactional) producer writes a
// transaction marker after each transaction into every partition it wrote,
// and the marker takes an offset; records of an aborted transaction take
// offsets too and are never delivered. A tier written by exactly-once
// forwarders therefore ends with a marker, and "end offset minus committed
// offset" counts one pending record where there is none.
type Readable struct {
	// First is the first record delivered at or after the range's start, nil
	// when the range holds no record (only markers, aborted records, or
	// offsets of a transaction still open).
	First *sarama.ConsumerMessage
	// End is one past the last record delivered in the range; the range's
	// start when First is nil. End - First.Offset counts the records, plus
	// the markers and aborted records between them (at most one marker per
	// transaction): the markers before the first and after the last record
	// are not counted.
	End int64
	// LastStable is the partition's last stable offset as the fetch saw it:
	// offsets from it on belong to a transaction still open, which no
	// read_committed consumer receives until it commits.
	LastStable int64
}

// maxTailSteps bounds the backward search for the last record: each step
// skips one marker or one aborted batch.
const maxTailSteps = 8

// ReadRange reads [from, to) of topic/partition as a read_committed consumer
// would, with fetches sent straight to the partition leader and bounded by
// to, so a range holding only markers answers at once instead of waiting for
// a record that never comes. It returns the first record and where the
// records end. to is normally the high watermark; the range is cut at the
// last stable offset.
//
// It reads from the first record on until a fetch delivers one, then looks
// at the range's tail backwards, one batch a fetch, at most maxTailSteps.
func ReadRange(ctx context.Context, client sarama.Client, topic string, partition int32, from, to int64) (Readable, error) {
	r := Readable{End: from, LastStable: to}
	if from >= to {
		return r, nil
	}
	f := fetcher{client: client, topic: topic, partition: partition}
	first, lso, err := f.first(ctx, from, to)
	if err != nil {
		return r, err
	}
	r.LastStable = lso
	if first == nil {
		return r, nil
	}
	r.First = first
	r.End = first.Offset + 1
	// The tail: step back from the last offset before min(to, lso) over markers and aborted batches.
	end := min(to, lso)
	for step := 0; step < maxTailSteps && end > r.End; step++ {
		last, batchStart, err := f.lastIn(ctx, end-1)
		if err != nil {
			return r, err
		}
		if last >= 0 {
			r.End = max(r.End, last+1)
			return r, nil
		}
		end = batchStart // a marker or an aborted batch: look before it
	}
	if end > r.End {
		r.End = end // gave up stepping back: count what is left as records
	}
	return r, nil
}

// FirstRecord returns the first record a read_committed consumer receives
// at an offset in [from, to) of topic/partition, or nil when there is none:
// ReadRange without the look at the tail.
func FirstRecord(ctx context.Context, client sarama.Client, topic string, partition int32, from, to int64) (*sarama.ConsumerMessage, error) {
	if from >= to {
		return nil, nil
	}
	f := fetcher{client: client, topic: topic, partition: partition}
	m, _, err := f.first(ctx, from, to)
	return m, err
}

// fetcher sends read_committed fetches for one partition.
type fetcher struct {
	client    sarama.Client
	topic     string
	partition int32
	size      int32
}

// batch is one record batch of a fetch answer, decided.
type batch struct {
	first, last int64
	skip        bool // a marker, or records of an aborted transaction
	records     []*sarama.ConsumerMessage
}

// first returns the first delivered record at an offset in [from, to), or
// nil, and the last stable offset.
func (f *fetcher) first(ctx context.Context, from, to int64) (*sarama.ConsumerMessage, int64, error) {
	offset := from
	lso := to
	for offset < min(to, lso) {
		batches, blockLSO, partial, err := f.fetch(ctx, offset)
		if err != nil {
			return nil, lso, err
		}
		if blockLSO >= 0 {
			lso = blockLSO
		}
		progressed := false
		for _, b := range batches {
			if b.last < offset {
				continue
			}
			for _, m := range b.records {
				if m.Offset >= offset && m.Offset < min(to, lso) {
					return m, lso, nil
				}
			}
			offset = b.last + 1
			progressed = true
		}
		switch {
		case progressed:
		case partial && f.size < 64<<20:
			f.size *= 2 // a batch larger than the fetch: ask for more
		default:
			// Nothing delivered below the bound: the rest is an open
			// transaction, or the leader has nothing more.
			return nil, lso, nil
		}
	}
	return nil, lso, nil
}

// lastIn looks at the batch holding offset o: it returns the offset of its
// last delivered record at or before o, or -1 with the batch's first offset
// when the batch delivers nothing (a marker or an aborted transaction).
func (f *fetcher) lastIn(ctx context.Context, o int64) (last, batchStart int64, err error) {
	for {
		batches, _, partial, err := f.fetch(ctx, o)
		if err != nil {
			return -1, o, err
		}
		for _, b := range batches {
			if b.first > o || b.last < o {
				continue
			}
			if b.skip {
				return -1, b.first, nil
			}
			last = -1
			for _, m := range b.records {
				if m.Offset <= o {
					last = m.Offset
				}
			}
			if last < 0 {
				return -1, b.first, nil // compacted away within the batch
			}
			return last, b.first, nil
		}
		if partial && f.size < 64<<20 {
			f.size *= 2
			continue
		}
		return o, o, nil // nothing answered for o (an open transaction): count it
	}
}

// fetch sends one read_committed fetch at offset and decides its batches.
// blockLSO is -1 when the answer does not carry it.
func (f *fetcher) fetch(ctx context.Context, offset int64) (batches []batch, blockLSO int64, partial bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, -1, false, err
	}
	if f.size == 0 {
		f.size = 64 << 10
	}
	conf := f.client.Config()
	req := &sarama.FetchRequest{MinBytes: 1, MaxWaitTime: 100, MaxBytes: f.size, Isolation: sarama.ReadCommitted}
	switch {
	case conf.Version.IsAtLeast(sarama.V2_1_0_0):
		req.Version = 10 // fetch sessions off (SessionID 0, epoch -1), leader epoch unchecked (-1)
		req.SessionID, req.SessionEpoch = 0, -1
	case conf.Version.IsAtLeast(sarama.V0_11_0_0):
		req.Version = 4
	default:
		return nil, -1, false, fmt.Errorf("reading %s/%d with read_committed needs Kafka 0.11 or later (LADDER_KAFKA_VERSION is %s)", f.topic, f.partition, conf.Version)
	}
	req.AddBlock(f.topic, f.partition, offset, f.size, -1)
	var resp *sarama.FetchResponse
	for attempt := 1; ; attempt++ {
		resp, err = f.send(req)
		if err == nil {
			b := resp.GetBlock(f.topic, f.partition)
			if b == nil || !retriable(b.Err) {
				break
			}
			err = b.Err
		}
		if attempt == 3 {
			return nil, -1, false, fmt.Errorf("fetching %s/%d at offset %d: %w", f.topic, f.partition, offset, err)
		}
		// A moved leader: refresh the metadata and try again.
		if rerr := f.client.RefreshMetadata(f.topic); rerr != nil {
			return nil, -1, false, fmt.Errorf("fetching %s/%d at offset %d: %w (refreshing metadata: %w)", f.topic, f.partition, offset, err, rerr)
		}
		select {
		case <-ctx.Done():
			return nil, -1, false, ctx.Err()
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
	block := resp.GetBlock(f.topic, f.partition)
	if block == nil {
		return nil, -1, false, fmt.Errorf("fetching %s/%d at offset %d: %w", f.topic, f.partition, offset, sarama.ErrIncompleteResponse)
	}
	if !errors.Is(block.Err, sarama.ErrNoError) {
		return nil, -1, false, fmt.Errorf("fetching %s/%d at offset %d: %w", f.topic, f.partition, offset, block.Err)
	}
	blockLSO = -1
	if req.Version >= 4 {
		blockLSO = block.LastStableOffset
	}
	return f.decide(block), blockLSO, block.Partial || hasPartial(block), nil
}

func (f *fetcher) send(req *sarama.FetchRequest) (*sarama.FetchResponse, error) {
	leader, err := f.client.Leader(f.topic, f.partition)
	if err != nil {
		return nil, fmt.Errorf("finding the leader: %w", err)
	}
	return leader.Fetch(req)
}

func retriable(err sarama.KError) bool {
	switch err {
	case sarama.ErrNotLeaderForPartition, sarama.ErrLeaderNotAvailable, sarama.ErrUnknownLeaderEpoch,
		sarama.ErrFencedLeaderEpoch, sarama.ErrReplicaNotAvailable:
		return true
	}
	return false
}

func hasPartial(b *sarama.FetchResponseBlock) bool {
	for _, rs := range b.RecordsSet {
		if rs.RecordBatch != nil && rs.RecordBatch.PartialTrailingRecord {
			return true
		}
		if rs.MsgSet != nil && rs.MsgSet.PartialTrailingMessage {
			return true
		}
	}
	return false
}

// decide turns a fetch answer into batches, marking markers and records of
// aborted transactions to skip, as sarama's consumer does (consumer.go,
// parseResponse): a transactional batch is aborted when its producer has an
// aborted transaction starting at or before it and not yet closed by its
// abort marker.
func (f *fetcher) decide(block *sarama.FetchResponseBlock) []batch {
	aborted := slices.Clone(block.AbortedTransactions)
	slices.SortFunc(aborted, func(a, b *sarama.AbortedTransaction) int { return cmp.Compare(a.FirstOffset, b.FirstOffset) })
	open := map[int64]bool{}
	var out []batch
	for _, rs := range block.RecordsSet {
		if rb := rs.RecordBatch; rb != nil {
			if rb.PartialTrailingRecord {
				break
			}
			for len(aborted) > 0 && aborted[0].FirstOffset <= rb.LastOffset() {
				open[aborted[0].ProducerID] = true
				aborted = aborted[1:]
			}
			b := batch{first: rb.FirstOffset, last: rb.LastOffset()}
			switch {
			case rb.Control:
				b.skip = true
				if len(rb.Records) > 0 && isAbortMarker(rb.Records[0].Key) {
					delete(open, rb.ProducerID)
				}
			case rb.IsTransactional && open[rb.ProducerID]:
				b.skip = true
			default:
				for _, rec := range rb.Records {
					ts := rb.FirstTimestamp.Add(rec.TimestampDelta)
					if rb.LogAppendTime {
						ts = rb.MaxTimestamp
					}
					b.records = append(b.records, &sarama.ConsumerMessage{Topic: f.topic, Partition: f.partition,
						Offset: rb.FirstOffset + rec.OffsetDelta, Key: rec.Key, Value: rec.Value, Headers: rec.Headers,
						Timestamp: ts, BlockTimestamp: rb.MaxTimestamp})
				}
			}
			out = append(out, b)
			continue
		}
		if ms := rs.MsgSet; ms != nil {
			// The legacy format (before Kafka 0.11): no transactions, no headers.
			for _, mb := range ms.Messages {
				if mb.Msg == nil {
					continue
				}
				inner := []*sarama.MessageBlock{mb}
				if mb.Msg.Set != nil {
					inner = mb.Msg.Set.Messages
				}
				for _, m := range inner {
					if m.Msg == nil {
						continue
					}
					off := m.Offset
					if mb.Msg.Set != nil && mb.Msg.Version >= 1 {
						// Relative inner offsets: the wrapper carries the last one's absolute offset.
						off += mb.Offset - inner[len(inner)-1].Offset
					}
					out = append(out, batch{first: off, last: off, records: []*sarama.ConsumerMessage{{Topic: f.topic,
						Partition: f.partition, Offset: off, Key: m.Msg.Key, Value: m.Msg.Value, Timestamp: m.Msg.Timestamp}}})
				}
			}
		}
	}
	return out
}

// isAbortMarker reads a control record's key: version (int16), type (int16, 0 abort, 1 commit).
func isAbortMarker(key []byte) bool {
	return len(key) >= 4 && binary.BigEndian.Uint16(key[2:4]) == 0
}
