package forward

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/backoff"
	"github.com/ladder/ladder/pkg/control"
	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/offsets"
	"github.com/ladder/ladder/pkg/tier"
)

// The machine's unit tests drive it through interleavings that are hard to
// produce against a broker (an abort as the session ends, a failure followed
// by a record of the same key, a lease that lapses), deterministically: no
// goroutine, no clock, no network. The sink and the lease are fakes; records
// are handed to partitions as a fetch would.

type fakeSink struct {
	sent   []*flight
	refuse bool
	ended  []bool
}

func (s *fakeSink) ready(*flight, time.Time) bool { return !s.refuse }
func (s *fakeSink) send(fl *flight, _ time.Time)  { s.sent = append(s.sent, fl) }
func (s *fakeSink) tick(time.Time) time.Time      { return time.Time{} }
func (s *fakeSink) ending(lost bool, _ time.Time) { s.ended = append(s.ended, lost) }
func (s *fakeSink) idle() bool                    { return true }
func (s *fakeSink) result(*event, time.Time)      {}
func (s *fakeSink) take() []*flight               { out := s.sent; s.sent = nil; return out }

func valuesOf(fls []*flight) []string {
	var out []string
	for _, fl := range fls {
		out = append(out, string(fl.rec.r.Value))
	}
	return out
}

type fakeLease struct{ valid bool }

func (l *fakeLease) Valid(time.Time) bool { return l.valid }

// harness is a machine with one tier partition (delay-1s/0 of tiers 1s,5s)
// and a clock.
type harness struct {
	t       *testing.T
	m       *machine
	p       *partition
	sink    *fakeSink
	lease   *fakeLease
	now     time.Time
	lookups []string
	next    int64 // offset of the next record
}

func newHarness(t *testing.T, mutate ...func(*Config)) *harness {
	t.Helper()
	l, err := tier.Parse("1s,5s", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Ladder: l, Group: "g"}
	for _, f := range mutate {
		f(cfg)
	}
	cfg.setDefaults()
	mc := &machineConfig{Config: cfg, control: control.NewState(), maxMessageBytes: 1 << 20,
		partitionFetchBytes: maxPartitionFetchBytes, maxFetchBytes: 16 << 20}
	h := &harness{t: t, sink: &fakeSink{}, lease: &fakeLease{valid: true}, now: time.UnixMilli(1_800_000_000_000)}
	var stats Stats
	var hl health
	h.m = newMachine(mc, zerolog.Nop(), newMetrics(false), &stats, &hl, &budget{limit: cfg.BufferMemory})
	h.m.sink = h.sink
	h.m.targets.lookup = func(topic string) { h.lookups = append(h.lookups, topic) }
	h.m.resetOffset = func(*partition) {}
	h.m.refreshMetadata = func(string) {}
	parts := h.m.assign(h.lease, map[string][]int32{"delay-1s": {0}})
	h.p = parts[0]
	h.p.start(0, "")
	return h
}

// add hands the partition a fetched record with value v for target, due
// after dueIn, entered the tier at the harness's now.
func (h *harness) add(v, target string, dueIn time.Duration) {
	h.t.Helper()
	hs := []*sarama.RecordHeader{{Key: []byte(envelope.Target), Value: []byte(target)},
		{Key: []byte(envelope.Due), Value: []byte(strconv.FormatInt(h.now.Add(dueIn).UnixMilli(), 10))}}
	r := &sarama.Record{Key: []byte("same-key"), Value: []byte(v), Headers: hs}
	mem := &fetchMem{b: h.m.mem, bytes: recordCost(r), refs: 1}
	h.m.mem.charge(mem.bytes)
	h.p.enqueue([]record{{offset: h.next, ts: h.now.UnixMilli(), r: r, mem: mem}})
	h.next++
	h.p.fetchAt = h.next
}

// known makes target's lookup succeed.
func (h *harness) known(target string) {
	h.m.handle(event{kind: evLooked, topic: target}, h.now)
}

func (h *harness) pump() { h.m.pump(h.now) }

func (h *harness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.pump()
}

func (h *harness) ack(fls ...*flight) { h.m.handle(event{kind: evAcks, flights: fls}, h.now) }

func (h *harness) fail(fl *flight, err error) {
	h.m.handle(event{kind: evFailed, fl: fl, err: err}, h.now)
}

func (h *harness) commit() (int64, string) { return h.p.commitPoint(0) }

func (h *harness) wantSent(want ...string) []*flight {
	h.t.Helper()
	got := h.sink.take()
	if strings.Join(valuesOf(got), ",") != strings.Join(want, ",") {
		h.t.Fatalf("sent %v, want %v (partition %s)", valuesOf(got), want, h.p.state)
	}
	return got
}

// TestFailureHoldsLaterRecords: a record whose produce failed is sent again
// after its back-off before any record the partition had not sent yet (one
// key's records keep their order), and the commit stays at it until it is
// acknowledged.
func TestFailureHoldsLaterRecords(t *testing.T) {
	h := newHarness(t)
	h.known("work")
	h.add("a", "work", 0)
	h.add("b", "work", 0)
	h.pump()
	sent := h.wantSent("a", "b")
	h.fail(sent[0], sarama.ErrNotEnoughReplicas)
	if h.p.state != retrying {
		t.Fatalf("state %s after a failure, want retrying", h.p.state)
	}
	h.add("c", "work", 0) // same key, due, behind the failed one
	h.pump()
	h.wantSent()
	h.ack(sent[1])
	if off, _ := h.commit(); off != 0 {
		t.Fatalf("commit at %d while record 0 is retried, want 0", off)
	}
	h.advance(retryDelay(1) - time.Millisecond)
	h.wantSent()
	h.advance(time.Millisecond)
	resent := h.wantSent("a") // the failed record first, alone
	h.pump()
	h.wantSent() // c waits until a is acknowledged
	h.ack(resent[0])
	h.pump()
	last := h.wantSent("c")
	h.ack(last...)
	if off, meta := h.commit(); off != 3 || meta != "" {
		t.Fatalf("commit (%d, %q), want (3, \"\")", off, meta)
	}
}

// TestAbortAsSessionEnds (exactly-once): a transaction aborts after the
// session ended: its records are not sent again (the next owner forwards
// them from the committed offset), and the commit point stays at the first
// of them.
func TestAbortAsSessionEnds(t *testing.T) {
	h := newHarness(t)
	h.known("work")
	h.add("a", "work", 0)
	h.add("b", "work", 0)
	h.pump()
	sent := h.wantSent("a", "b")
	for _, fl := range sent {
		fl.txn = 7
	}
	h.m.end(false, h.now)
	if len(h.sink.ended) != 1 || h.sink.ended[0] {
		t.Fatalf("the sink was told %v, want one graceful ending", h.sink.ended)
	}
	h.m.handle(event{kind: evTxnDone, flights: sent, err: errors.New("aborted")}, h.now)
	h.advance(time.Minute)
	h.wantSent()
	if off, _ := h.commit(); off != 0 {
		t.Fatalf("commit point %d after the abort, want 0", off)
	}
	if n := h.m.inFlight(); n != 0 {
		t.Fatalf("%d records counted in flight after the abort: the session would wait for them", n)
	}
}

// TestRetryDuringRevoke: records waiting for their retry when the session
// ends are not sent again, and the commit stays at the first of them.
func TestRetryDuringRevoke(t *testing.T) {
	h := newHarness(t)
	h.known("work")
	h.add("a", "work", 0)
	h.add("b", "work", 0)
	h.pump()
	sent := h.wantSent("a", "b")
	h.ack(sent[0])
	h.fail(sent[1], sarama.ErrNotEnoughReplicas)
	h.m.end(false, h.now)
	h.advance(time.Minute)
	h.wantSent()
	if off, _ := h.commit(); off != 1 {
		t.Fatalf("commit point %d, want 1 (the failed record)", off)
	}
}

// TestParkedRecordLetsOthersPass: a record whose target is missing parks;
// the records behind it are sent; the commit stops at the parked record and
// says the others were forwarded; once the target exists the parked one is
// sent, and the commit moves past everything.
func TestParkedRecordLetsOthersPass(t *testing.T) {
	h := newHarness(t)
	h.known("work")
	h.add("lost", "nosuch", 0)
	h.add("b", "work", 0)
	h.add("c", "work", 0)
	h.pump()
	if len(h.lookups) != 1 || h.lookups[0] != "nosuch" {
		t.Fatalf("lookups %v", h.lookups)
	}
	sent := h.wantSent("b", "c")
	h.m.handle(event{kind: evLooked, topic: "nosuch", err: sarama.ErrUnknownTopicOrPartition}, h.now)
	h.ack(sent...)
	off, meta := h.commit()
	want := fmt.Sprintf("ladder/1 hi=3 parked=0@%d", h.now.Unix())
	if off != 0 || meta != want {
		t.Fatalf("commit (%d, %q), want (0, %q)", off, meta, want)
	}
	r, err := offsets.DecodeResume(meta, off)
	if err != nil || r.Skips(0) || !r.Skips(1) || !r.Skips(2) || r.Skips(3) {
		t.Fatalf("resume %+v (%v) skips the wrong records", r, err)
	}
	if since, ok := r.ParkedSince(0); !ok || !since.Equal(h.now.Truncate(time.Second)) {
		t.Fatalf("the commit says record 0 waits since %v (%v), want %v: a next owner would restart its wait", since, ok, h.now)
	}
	h.advance(time.Second) // the lookup back-off passes: looked up again
	h.known("nosuch")
	h.pump()
	last := h.wantSent("lost")
	h.ack(last...)
	if off, meta := h.commit(); off != 3 || meta != "" {
		t.Fatalf("commit (%d, %q), want (3, \"\")", off, meta)
	}
}

// TestParkedRecordExpires: a record whose target stays missing is
// dead-lettered with reason unknown_target once it has waited TargetTimeout
// and a lookup after that confirmed the target missing; a lookup that got
// no answer (a broker away) dead-letters nothing.
func TestParkedRecordExpires(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.TargetTimeout = 10 * time.Second })
	h.add("lost", "nosuch", 0)
	h.pump()
	answer := func(err error) {
		for _, tp := range h.lookups {
			h.m.handle(event{kind: evLooked, topic: tp, err: err}, h.now)
		}
		h.lookups = nil
	}
	answer(sarama.ErrUnknownTopicOrPartition)
	for range 9 {
		h.advance(time.Second)
		answer(sarama.ErrUnknownTopicOrPartition)
	}
	h.advance(time.Second) // the wait ends: a lookup is asked for at once
	if len(h.lookups) != 1 {
		t.Fatalf("lookups %v when the wait ended, want one", h.lookups)
	}
	answer(sarama.ErrOutOfBrokers)
	h.advance(time.Second)
	h.wantSent() // no answer about the topic: nothing is dead-lettered for an outage
	h.advance(5 * time.Second)
	answer(sarama.ErrUnknownTopicOrPartition)
	h.pump()
	dl := h.wantSent("lost")
	if !dl[0].dlq || dl[0].reason != ReasonUnknownTarget || dl[0].msg.Topic != "delay-dlq" {
		t.Fatalf("sent to %s as dlq=%v reason %q", dl[0].msg.Topic, dl[0].dlq, dl[0].reason)
	}
}

// TestParkingFullDeadLettersAtOnce: a partition keeps at most maxParked
// records waiting; past that, a record whose target the brokers said is
// missing is dead-lettered at once, and the records behind it flow.
func TestParkingFullDeadLettersAtOnce(t *testing.T) {
	h := newHarness(t)
	h.known("work")
	for i := range maxParked + 5 {
		h.add(fmt.Sprint("lost-", i), "nosuch", 0)
	}
	h.add("good", "work", 0)
	h.pump()
	h.m.handle(event{kind: evLooked, topic: "nosuch", err: sarama.ErrUnknownTopicOrPartition}, h.now)
	h.pump()
	sent := h.sink.take()
	var dl, good int
	for _, fl := range sent {
		switch {
		case fl.dlq && fl.reason == ReasonUnknownTarget:
			dl++
		case string(fl.rec.r.Value) == "good":
			good++
		}
	}
	if dl != 5 || good != 1 || len(h.p.parked) != maxParked {
		t.Fatalf("%d dead-lettered at once, %d good sent, %d parked; want 5, 1, %d", dl, good, len(h.p.parked), maxParked)
	}
}

// TestLapsedLeaseSendsNothing: while the group session's lease has lapsed
// (a stopped process, a coordinator away), nothing is sent; once a
// heartbeat renews it, the partition goes on.
func TestLapsedLeaseSendsNothing(t *testing.T) {
	h := newHarness(t)
	h.known("work")
	h.lease.valid = false
	h.add("a", "work", 0)
	h.pump()
	h.wantSent()
	h.advance(time.Second)
	h.wantSent()
	h.lease.valid = true
	h.advance(leasePoll)
	h.wantSent("a")
}

// TestDueAndEarlyTogether: a head whose work-ahead release arrives when it
// is due anyway is not marked early.
func TestDueAndEarlyTogether(t *testing.T) {
	h := newHarness(t)
	h.known("work")
	h.add("a", "work", 2*time.Second)
	h.pump()
	h.wantSent()
	h.now = h.now.Add(time.Second) // tier 1s releases it; due in 1s: to delay-1s again
	h.m.handle(event{kind: evEarly, p: h.p, offset: 0}, h.now)
	h.pump()
	sent := h.wantSent("a")
	if !sent[0].early.IsZero() {
		t.Fatalf("a record released when its tier released it was marked early")
	}
}

// TestFarHeadKeepsOnlyItsCopy: a partition whose head is due further away
// than ResumeLead lets go of its fetched records (and their memory) and
// keeps a copy of the head alone.
func TestFarHeadKeepsOnlyItsCopy(t *testing.T) {
	h := newHarness(t)
	for i := range 100 {
		h.add(fmt.Sprint("r", i), "work", time.Hour)
	}
	before := h.m.mem.used
	h.pump()
	h.wantSent()
	if h.p.state != holding || len(h.p.queue) != 0 || h.p.fetchAt != 1 {
		t.Fatalf("state %s, %d queued, fetch at %d: want holding, nothing queued, fetch from 1", h.p.state, len(h.p.queue), h.p.fetchAt)
	}
	if used := h.m.mem.used; used >= before/50 {
		t.Fatalf("%d bytes still charged of %d: the read-ahead was kept", used, before)
	}
	if h.p.wantsFetch(h.now) {
		t.Fatal("a partition holding a far head wants records")
	}
	h.now = h.p.head.release.Add(-h.m.cfg.ResumeLead)
	if !h.p.wantsFetch(h.now) {
		t.Fatal("a partition whose head is due within ResumeLead does not fetch ahead")
	}
}

// TestMaxHopsCoversMaxDelay: a hop limit a record within the maximum delay
// would reach is refused; by default it is derived from the maximum delay.
func TestMaxHopsCoversMaxDelay(t *testing.T) {
	l, err := tier.Parse("10s,1m,5m", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	c := Config{Ladder: l, MaxHops: 10_000}
	c.setDefaults()
	if err := c.validate(); !errors.Is(err, ErrHopsBelowMaxDelay) {
		t.Fatalf("MaxHops 10000 with a 365d delay on 10s,1m,5m: %v, want ErrHopsBelowMaxDelay", err)
	}
	c = Config{Ladder: l}
	c.setDefaults()
	if need := HopsWithin(l, c.MaxDelay); c.MaxHops <= need || need < 105_000 {
		t.Fatalf("default MaxHops %d, hops of the maximum delay %d", c.MaxHops, need)
	}
	for _, d := range []time.Duration{time.Minute, 40 * 24 * time.Hour, 365 * 24 * time.Hour} {
		if hops := l.Hops(d); hops > HopsWithin(l, d) {
			t.Errorf("a %s delay takes %d hops, more than the bound %d", d, hops, HopsWithin(l, d))
		}
	}
}

// TestFencedProducerKeepsItsID: a producer fenced after its transaction
// outlived the transaction timeout (the broker aborted it) starts again
// under the same transactional.id; one fenced within the timeout (another
// producer took the id) moves to the next id of the process, base-1, then
// base-2: ids do not pile up with every fencing.
func TestFencedProducerKeepsItsID(t *testing.T) {
	cfg := &Config{TransactionalID: "base", TxnTimeout: 10 * time.Second}
	s := &eosSink{cfg: cfg, log: zerolog.Nop(), metrics: newMetrics(true), health: &health{}, backoff: newTestBackoff(),
		pc: transactionalConfig(sarama.NewConfig(), "base", cfg.TxnTimeout), state: eosClosing}
	now := time.Now()
	fenced := fmt.Errorf("committing the transaction: %w", sarama.ErrProducerFenced)
	s.result(&event{kind: evTxnDone, err: fenced, replace: true, opened: now.Add(-11 * time.Second)}, now)
	if id := s.pc.Producer.Transaction.ID; id != "base" || s.state != eosStopped {
		t.Fatalf("after a timeout: id %q, state %d; want base, stopped", id, s.state)
	}
	for _, want := range []string{"base-1", "base-2"} {
		s.state = eosClosing
		s.result(&event{kind: evTxnDone, err: fenced, replace: true, opened: now.Add(-time.Second)}, now)
		if id := s.pc.Producer.Transaction.ID; id != want {
			t.Fatalf("fenced by another producer: id %q, want %q", id, want)
		}
	}
}

func newTestBackoff() *backoff.Backoff { return backoff.New(time.Millisecond, time.Millisecond) }

// TestFailedFetchWakesThePartition: a partition whose fetch failed wakes
// when its back-off ends, so it fetches again though no other event comes
// (exactly-once mode has no commit tick to wake the machine).
func TestFailedFetchWakesThePartition(t *testing.T) {
	h := newHarness(t)
	h.pump()
	if !h.p.wantsFetch(h.now) {
		t.Fatal("an empty partition wants no records")
	}
	h.p.fetching = true
	fr := &fetchReq{parts: []*partition{h.p}, offsets: []int64{h.p.fetchAt}, epochs: []uint32{h.p.fetchEpoch}}
	h.m.handle(event{kind: evFetched, fetch: fr, err: errors.New("broker away")}, h.now)
	next := h.m.pump(h.now)
	if h.p.wantsFetch(h.now) {
		t.Fatal("a partition whose fetch just failed fetches again at once")
	}
	if next.IsZero() || next.After(h.p.fetchOK) {
		t.Fatalf("the machine next wakes at %v, after the fetch back-off ends at %v", next, h.p.fetchOK)
	}
	h.now = next
	h.pump()
	if !h.p.wantsFetch(h.now) {
		t.Fatal("the partition does not fetch again after its back-off")
	}
}
