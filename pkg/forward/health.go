package forward

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/offsets"
)

// health tracks what readiness depends on: a group session, brokers that
// answer, and produce requests that succeed.
type health struct {
	failing        atomic.Bool // produceErr != nil: lets the success path skip the lock
	mu             sync.Mutex
	inSession      bool
	sessionEnded   time.Time
	joinedOnce     bool
	brokersErr     error
	brokersChecked time.Time
	produceOK      time.Time
	produceErr     error
	produceErrAt   time.Time // first failure since the last success
}

// Grace periods before readiness turns false, in HealthIntervals (10s by
// default): a rebalance or one failed request is routine.
const (
	rebalanceGrace = 3   // out of a group session for 30s
	brokerStale    = 4.5 // no broker answer for 45s
	produceGrace   = 1.5 // producing failing for 15s
	leaseGrace     = 0.5 // the group session lease lapsed 5s ago
)

func grace(interval time.Duration, n float64) time.Duration {
	return time.Duration(float64(interval) * n)
}

func (h *health) setSession(in bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inSession = in
	if in {
		h.joinedOnce = true
	} else {
		h.sessionEnded = time.Now()
	}
}

func (h *health) setBrokers(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.brokersErr, h.brokersChecked = err, time.Now()
}

func (h *health) produced(err error) {
	if err == nil && !h.failing.Load() {
		return // nothing to clear: the success path takes no lock
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	h.failing.Store(err != nil)
	if err == nil {
		h.produceOK, h.produceErr = now, nil
		return
	}
	if h.produceErr == nil {
		h.produceErrAt = now
	}
	h.produceErr = err
}

// ErrNotReady is wrapped by every error Ready returns.
var ErrNotReady = errors.New("forwarder not ready")

// Ready returns nil when the forwarder is in a consumer group session (or
// between two sessions of a rebalance), the brokers answered recently and
// producing is not failing; otherwise an error saying why.
func (f *Forwarder) Ready() error {
	h := &f.health
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	iv := f.cfg.HealthInterval
	switch {
	case h.brokersChecked.IsZero():
		return fmt.Errorf("%w: not connected to Kafka yet", ErrNotReady)
	case h.brokersErr != nil:
		return fmt.Errorf("%w: brokers not answering: %w", ErrNotReady, h.brokersErr)
	case now.Sub(h.brokersChecked) > grace(iv, brokerStale):
		return fmt.Errorf("%w: no answer from the brokers for %s", ErrNotReady, now.Sub(h.brokersChecked).Round(time.Second))
	case !h.joinedOnce:
		return fmt.Errorf("%w: not joined to consumer group %s yet", ErrNotReady, f.cfg.Group)
	case !h.inSession && now.Sub(h.sessionEnded) > grace(iv, rebalanceGrace):
		return fmt.Errorf("%w: out of consumer group %s for %s", ErrNotReady, f.cfg.Group, now.Sub(h.sessionEnded).Round(time.Second))
	case h.produceErr != nil && now.Sub(h.produceErrAt) > grace(iv, produceGrace):
		return fmt.Errorf("%w: producing fails since %s: %w", ErrNotReady, now.Sub(h.produceErrAt).Round(time.Second), h.produceErr)
	}
	if age := f.oldestInFlight(now); age > grace(iv, produceGrace) {
		return fmt.Errorf("%w: a record handed to the producer %s ago is not acknowledged yet (the target's brokers away, or short of in-sync replicas?)",
			ErrNotReady, age.Round(time.Second))
	}
	if s := f.sess.Load(); s != nil && h.inSession && s.Err() == nil {
		// Nothing is forwarded while the lease has lapsed (no heartbeat
		// answered within the session timeout).
		if exp := s.LeaseExpiry(); exp.IsZero() || now.Sub(exp) > grace(iv, leaseGrace) {
			return fmt.Errorf("%w: no heartbeat of consumer group %s answered since %s: forwarding nothing until one is",
				ErrNotReady, f.cfg.Group, exp.Round(time.Second).Format(time.RFC3339))
		}
	}
	return nil
}

// oldestInFlight is how long the oldest record in flight has waited for
// its acknowledgement (0: none).
func (f *Forwarder) oldestInFlight(now time.Time) time.Duration {
	f.partsMu.Lock()
	defer f.partsMu.Unlock()
	var oldest time.Duration
	for _, p := range f.parts {
		if at := p.oldestSent.Load(); at != 0 {
			oldest = max(oldest, now.Sub(time.Unix(0, at)))
		}
	}
	return oldest
}

// refreshOffsets reads the end offset of every claimed partition
// periodically: a paused partition does not fetch, so its high-water mark
// would be frozen. It doubles as the brokers' health check.
func (f *Forwarder) refreshOffsets(ctx context.Context) {
	t := time.NewTicker(f.cfg.HealthInterval)
	defer t.Stop()
	for {
		f.health.setBrokers(f.readEndOffsets(ctx))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *Forwarder) readEndOffsets(ctx context.Context) error {
	f.partsMu.Lock()
	tps := map[string][]int32{}
	byTP := map[offsets.TP]*partition{}
	for _, p := range f.parts {
		tp := offsets.TP{Topic: p.topic, Partition: p.id}
		tps[tp.Topic] = append(tps[tp.Topic], tp.Partition)
		byTP[tp] = p
	}
	f.partsMu.Unlock()
	if len(tps) == 0 {
		// Nothing claimed: still check that some broker answers.
		if _, err := f.client.Controller(); err != nil {
			return fmt.Errorf("reaching the controller: %w", err)
		}
		return nil
	}
	end, err := offsets.End(f.client, tps)
	for tp, off := range end {
		byTP[tp].endOffset.Store(off)
	}
	for tp := range end {
		if rerr := byTP[tp].readPending(ctx, f.client); rerr != nil && ctx.Err() == nil {
			byTP[tp].log.Debug().Err(rerr).Msg("reading the pending records for the gauge")
		}
	}
	return err
}

// maxPendingLook is the most pending offsets the gauge reads to tell
// records from transaction markers: the markers matter when a few offsets
// are pending, and reading a long range every HealthInterval would cost a
// fetch response per partition outside the memory budget.
const maxPendingLook = 64

// readable is what a look at a partition's pending offsets [next, end)
// found: the records lie in [first, last). Offsets are not records: an
// exactly-once forwarder leaves a transaction marker after each transaction
// in every tier partition it wrote, at an offset of its own, and aborted
// records take offsets too. Without this look a tier whose records were all
// forwarded shows one pending record, its last marker.
type readable struct {
	next, end   int64
	first, last int64
}

// readPending reads the partition's pending offsets as a read_committed
// consumer would (offsets.ReadRange: markers and aborted records skipped),
// when they changed since the last look, for pending.
func (p *partition) readPending(ctx context.Context, client sarama.Client) error {
	next, end := p.nextOffset.Load(), p.endOffset.Load()
	if next < 0 || end <= next || end-next > maxPendingLook {
		// Nothing pending, or so much that the markers among it do not
		// matter: counted as offsets, without reading a fetch's worth.
		p.readable.Store(nil)
		return nil
	}
	if r := p.readable.Load(); r != nil && r.next == next && r.end == end {
		return nil
	}
	rr, err := offsets.ReadRange(ctx, client, p.topic, p.id, next, end)
	if err != nil {
		return err
	}
	r := &readable{next: next, end: end, first: rr.End, last: rr.End}
	if rr.First != nil {
		r.first = rr.First.Offset
	}
	p.readable.Store(r)
	return nil
}

// pendingRecords is the number of records from next to end, using the last
// look at the offsets (readPending) for the part it covers: its records not
// forwarded yet, plus every offset past it (not looked at yet).
func (p *partition) pendingRecords(next, end int64) int64 {
	r := p.readable.Load()
	if r == nil || next < r.next || next >= r.end || end < r.end {
		return end - next
	}
	return max(0, r.last-max(next, r.first)) + end - r.end
}
