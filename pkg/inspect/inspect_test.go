package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/tier"
)

// record is a record the test puts into a tier.
type record struct {
	topic     string
	partition int32
	target    string // "" leaves ladder-target out: it will be dead-lettered
	due       time.Time
	timestamp time.Time
}

func produce(t *testing.T, addr string, recs ...record) {
	t.Helper()
	p := laddertest.ManualProducer(t, addr)
	for _, r := range recs {
		var hs []sarama.RecordHeader
		if r.target != "" {
			hs = append(hs, sarama.RecordHeader{Key: []byte("ladder-target"), Value: []byte(r.target)})
		}
		if !r.due.IsZero() {
			hs = append(hs, sarama.RecordHeader{Key: []byte("ladder-due"), Value: []byte(strconv.FormatInt(r.due.UnixMilli(), 10))})
		}
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: r.topic, Partition: r.partition, Headers: hs,
			Key: sarama.StringEncoder(keyFor(t, r.partition)), Value: sarama.StringEncoder("v"), Timestamp: r.timestamp}); err != nil {
			t.Fatalf("producing to %s/%d: %v", r.topic, r.partition, err)
		}
	}
}

// keyFor returns a key that the forwarders' partitioner (murmur2) puts in
// partition of a two-partition topic (any key in a one-partition topic), so
// a record forwarded into its own tier again comes back to its partition
// (a null key would land on a random one).
func keyFor(t *testing.T, partition int32) string {
	t.Helper()
	part := kafkaconf.NewMurmur2Partitioner("")
	for i := range 100 {
		k := fmt.Sprint("k", i)
		if got, err := part.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(k)}, 2); err == nil && got == partition {
			return k
		}
	}
	t.Fatalf("no key for partition %d", partition)
	return ""
}

// runForwarder runs a forwarder in-process until the test ends; tune
// adjusts its configuration.
func runForwarder(t *testing.T, l *tier.Ladder, addr, group string, tune ...func(*forward.Config)) {
	t.Helper()
	cfg := forward.Config{Ladder: l, Group: group, Kafka: laddertest.Kafka(addr), Log: laddertest.Logger(t)}
	for _, f := range tune {
		f(&cfg)
	}
	f, err := forward.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := f.Run(ctx); err != nil {
			t.Errorf("forwarder: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func newInspector(t *testing.T, l *tier.Ladder, addr, group string) *Inspector {
	t.Helper()
	in, err := New(Config{Ladder: l, Group: group, Kafka: laddertest.Kafka(addr), Log: laddertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}

func inspect(t *testing.T, in *Inspector) *Report {
	t.Helper()
	r, err := in.Inspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ms(t time.Time) time.Time { return t.Truncate(time.Millisecond).UTC() }

// TestInspectAgreesWithTiers puts known records into the tiers and checks
// what Inspect reports, first with no forwarder (the group never
// committed), then while a forwarder holds the heads paused.
func TestInspectAgreesWithTiers(t *testing.T) {
	const group = "inspect-test"
	l, err := tier.Parse("1m,1h", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b := laddertest.Broker(t, 2, "delay-1m", "delay-1h", "delay-dlq", "work")
	addr := b.Addr()
	// A 1h retention on delay-1h, so a 50-minute-old head is at risk.
	ca := admin(t, addr)
	hour := "3600000"
	if err := ca.IncrementalAlterConfig(sarama.TopicResource, "delay-1h", map[string]sarama.IncrementalAlterConfigsEntry{
		"retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &hour}}, false); err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	a := record{"delay-1h", 0, "work", now.Add(-time.Second), now}      // due: forwarded at once
	bb := record{"delay-1h", 0, "work", now.Add(50 * time.Minute), now} // held until its due time
	c := record{"delay-1h", 0, "work", now.Add(55 * time.Minute), now}
	e := record{"delay-1h", 1, "work", now.Add(2 * time.Hour), now.Add(-50 * time.Minute)} // held until timestamp + 1h; 83% of retention
	d := record{"delay-1h", 1, "work", now.Add(40 * time.Minute), now}
	f := record{"delay-1m", 1, "", time.Time{}, now} // no target: dead-lettered
	produce(t, addr, a, bb, c, e, d, f)

	in := newInspector(t, l, addr, group)

	// No forwarder yet: the group never committed (kfake: GROUP_ID_NOT_FOUND), so
	// everything from the log start is pending.
	r := inspect(t, in)
	if r.Summary.Pending != 6 || len(r.Members) != 0 || r.DeadLetter.Records != 0 {
		t.Fatalf("before forwarding: %+v", r.Summary)
	}
	h0 := r.Tiers[1].Partitions[0]
	if r.Tiers[1].Topic != "delay-1h" || h0.CommittedOffset != -1 || h0.Pending != 3 || h0.Head == nil || h0.Head.Offset != 0 {
		t.Fatalf("delay-1h/0 before forwarding: %+v", h0)
	}
	if h0.Head.OverdueMS < 1000 || !h0.Head.Due.Equal(ms(a.due)) {
		t.Errorf("head A: due %v, overdue %d ms; want due %v, overdue ≥ 1s", h0.Head.Due, h0.Head.OverdueMS, ms(a.due))
	}
	if !hasWarning(r, "no forwarder is running in group inspect-test: 6 records pending") {
		t.Errorf("warnings %q", r.Warnings)
	}

	runForwarder(t, l, addr, group)
	// Wait until A is forwarded and committed, F dead-lettered, and the member assigned.
	laddertest.Eventually(t, 30*time.Second, func() bool {
		r = inspect(t, in)
		return r.Tiers[1].Partitions[0].CommittedOffset == 1 && r.Tiers[0].Partitions[1].CommittedOffset == 1 &&
			r.DeadLetter.Records == 1 && len(r.Members) == 1 && r.Tiers[1].Partitions[0].Owner != ""
	}, "forwarder did not forward A and dead-letter F: last report %+v", r.Summary)

	if r.Summary.Pending != 4 || r.Tiers[0].Pending != 0 || r.Tiers[1].Pending != 4 || r.Summary.OverduePartitions != 0 {
		t.Errorf("pending: summary %+v, delay-1m %d, delay-1h %d", r.Summary, r.Tiers[0].Pending, r.Tiers[1].Pending)
	}
	p0, p1 := r.Tiers[1].Partitions[0], r.Tiers[1].Partitions[1]
	// delay-1h/0: A forwarded and committed; B is the head, held until its due time.
	if p0.NextOffset != 1 || p0.Pending != 2 || p0.Head == nil || p0.Head.Offset != 1 || p0.Head.Target != "work" {
		t.Fatalf("delay-1h/0: %+v head %+v", p0, p0.Head)
	}
	if !p0.Head.Due.Equal(ms(bb.due)) || !p0.Head.ReleaseAt.Equal(ms(bb.due)) {
		t.Errorf("head B: due %v release %v, want both %v", p0.Head.Due, p0.Head.ReleaseAt, ms(bb.due))
	}
	if left := -time.Duration(p0.Head.OverdueMS) * time.Millisecond; left < 49*time.Minute || left > 50*time.Minute {
		t.Errorf("head B releases in %s, want about 50m", left)
	}
	// delay-1h/1: nothing committed for this partition (-1); E is the head, released at timestamp + 1h.
	if p1.CommittedOffset != -1 || p1.NextOffset != 0 || p1.Pending != 2 || p1.Head == nil || p1.Head.Offset != 0 {
		t.Fatalf("delay-1h/1: %+v head %+v", p1, p1.Head)
	}
	if !p1.Head.ReleaseAt.Equal(ms(e.timestamp.Add(time.Hour))) || !p1.Head.Due.Equal(ms(e.due)) {
		t.Errorf("head E: release %v due %v, want release %v", p1.Head.ReleaseAt, p1.Head.Due, ms(e.timestamp.Add(time.Hour)))
	}
	if !p1.RetentionRisk || p1.RetentionUsed < 0.83 || p1.RetentionUsed > 0.85 || r.Tiers[1].RetentionMS != 3600000 {
		t.Errorf("delay-1h/1 retention used %.3f (risk %v) of %d ms, want about 0.83", p1.RetentionUsed, p1.RetentionRisk, r.Tiers[1].RetentionMS)
	}
	if !hasWarning(r, "delay-1h/1: the head (offset 0) is 50m") {
		t.Errorf("no retention warning: %q", r.Warnings)
	}
	if hasWarning(r, "no forwarder") {
		t.Errorf("warns of no forwarder while one runs: %q", r.Warnings)
	}
	// delay-1m: F went to the dead-letter topic; nothing pending, its oldest record is still retained.
	if m1 := r.Tiers[0].Partitions[1]; m1.Head != nil || m1.OldestTimestamp == nil || !m1.OldestTimestamp.Equal(ms(f.timestamp)) {
		t.Errorf("delay-1m/1: %+v", m1)
	}
	mem := r.Members[0]
	if mem.ClientID != "ladder-test" || len(mem.Assigned["delay-1h"]) != 2 || len(mem.Assigned["delay-1m"]) != 2 || p0.Owner != mem.MemberID {
		t.Errorf("member %+v, owner of delay-1h/0 %q", mem, p0.Owner)
	}
	if next := r.Tiers[1].NextReleaseAt; next == nil || !next.Equal(ms(e.timestamp.Add(time.Hour))) {
		t.Errorf("delay-1h next release %v, want E's %v", next, ms(e.timestamp.Add(time.Hour)))
	}

	// The text form says the same.
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("ladder inspect:\n%s", text.String())
	for _, w := range []string{"group inspect-test: Stable, 1 members", ms(bb.due).Format(timeFormat), "held 49m",
		"delay-1h  total", "dead-letter delay-dlq: 1 record", "2 tiers, 4 pending, 0 overdue partitions, 1 members, 1 dead-lettered, 1 warnings"} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("text lacks %q:\n%s", w, text.String())
		}
	}
	// The JSON field names are part of the interface.
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"group_state":"Stable"`, `"next_offset":1`, `"committed_offset":-1`, `"pending":4`,
		`"release_at":"` + ms(bb.due).Format("2006-01-02T15:04:05.999Z07:00") + `"`, `"dead_letter":{"topic":"delay-dlq","records":1}`} {
		if !strings.Contains(string(js), w) {
			t.Errorf("JSON lacks %s:\n%s", w, js)
		}
	}
}

// TestInspectMissingTopics: a ladder that was never provisioned is reported, not an error.
func TestInspectMissingTopics(t *testing.T) {
	l, _ := tier.Parse("1s,5s", tier.DefaultPrefix)
	b := laddertest.Broker(t, 1, "delay-1s")
	r := inspect(t, newInspector(t, l, b.Addr(), "nobody"))
	if !r.Tiers[1].Missing || !r.DeadLetter.Missing || r.Tiers[0].Missing || len(r.Tiers[0].Partitions) != 1 {
		t.Errorf("report %+v", r)
	}
	if !hasWarning(r, "tier topic delay-5s does not exist") || !hasWarning(r, "dead-letter topic delay-dlq does not exist") {
		t.Errorf("warnings %q", r.Warnings)
	}
}

func hasWarning(r *Report, s string) bool {
	for _, w := range r.Warnings {
		if strings.Contains(w, s) {
			return true
		}
	}
	return false
}

func admin(t *testing.T, addr string) sarama.ClusterAdmin {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	ca, err := sarama.NewClusterAdmin([]string{addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close() })
	return ca
}

// TestInspectLostRecords: a committed offset below the log start means
// retention deleted records before they were forwarded: counted and warned.
func TestInspectLostRecords(t *testing.T) {
	l, _ := tier.Parse("1s,5s", tier.DefaultPrefix)
	b := laddertest.Broker(t, 1, "delay-1s", "delay-5s", "delay-dlq")
	now := time.Now()
	past := now.Add(-2 * time.Minute) // due two minutes ago
	produce(t, b.Addr(), record{"delay-5s", 0, "work", past, now}, record{"delay-5s", 0, "work", past, now}, record{"delay-5s", 0, "work", past, now})
	ca := admin(t, b.Addr())
	if _, err := ca.AlterConsumerGroupOffsets("lost", map[string]map[int32]sarama.OffsetAndMetadata{"delay-5s": {0: {Offset: 1}}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := ca.DeleteRecords("delay-5s", map[int32]int64{0: 2}); err != nil {
		t.Fatal(err)
	}
	r := inspect(t, newInspector(t, l, b.Addr(), "lost"))
	p := r.Tiers[1].Partitions[0]
	if p.CommittedOffset != 1 || p.LogStartOffset != 2 || p.NextOffset != 2 || p.Lost != 1 || p.Pending != 1 || p.Head == nil || p.Head.Offset != 2 {
		t.Errorf("delay-5s/0: %+v", p)
	}
	if !hasWarning(r, "delay-5s/0: committed offset 1 is below the log start 2: 1 records expired before they were forwarded") ||
		!hasWarning(r, "no forwarder is running in group lost: 1 records pending") {
		t.Errorf("warnings %q", r.Warnings)
	}
	// The head was due two minutes ago: overdue, and warned about past OverdueWarn (1m).
	if r.Summary.OverduePartitions != 1 || r.Summary.MaxOverdueMS < 120_000 || !hasWarning(r, "delay-5s/0: head offset 2 is overdue by 2m") {
		t.Errorf("summary %+v, warnings %q", r.Summary, r.Warnings)
	}
}

// runForwarderEOS runs an exactly-once forwarder in-process until the test ends.
func runForwarderEOS(t *testing.T, l *tier.Ladder, addr, group string) {
	t.Helper()
	runForwarder(t, l, addr, group, func(c *forward.Config) { c.ExactlyOnce, c.TransactionalID = true, group+"-txn" })
}

// openTxn begins a transaction and writes one record per partition given
// into topic, leaving the transaction open; the caller commits or aborts.
func openTxn(t *testing.T, addr, topic string, partitions ...int32) sarama.SyncProducer {
	t.Helper()
	p := laddertest.TxnProducer(t, addr, "inspect-test-open")
	if err := p.BeginTxn(); err != nil {
		t.Fatal(err)
	}
	for _, part := range partitions {
		hs := []sarama.RecordHeader{{Key: []byte("ladder-target"), Value: []byte("work")}}
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: part, Headers: hs, Value: sarama.StringEncoder("in txn")}); err != nil {
			t.Fatalf("producing in a transaction: %v", err)
		}
	}
	return p
}

// TestInspectTransactionMarkers: a tier written by an exactly-once
// forwarder holds a transaction marker after each transaction, at an
// offset of its own. Once everything is forwarded, the end offset is one
// past the committed offset, yet nothing is pending: inspect reports 0
// pending and no head, without waiting for a record that never comes. An
// open transaction is shown (last stable offset below the end) and not
// waited for; records of an aborted one are skipped like markers.
func TestInspectTransactionMarkers(t *testing.T) {
	const group = "inspect-eos"
	l, err := tier.Parse("1s,1m", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b := laddertest.Broker(t, 2, "delay-1s", "delay-1m", "delay-dlq", "work")
	addr := b.Addr()
	work := laddertest.CollectCommitted(t, addr, "work")
	runForwarderEOS(t, l, addr, group)

	// Due in 2.5s: delay-1s releases each after 1s and, time remaining,
	// forwards it to delay-1s again, in a transaction: markers in delay-1s.
	now := time.Now()
	produce(t, addr, record{"delay-1s", 0, "work", now.Add(2500 * time.Millisecond), now},
		record{"delay-1s", 1, "work", now.Add(2500 * time.Millisecond), now})
	if _, ok := work.WaitFor(30*time.Second, func(r []laddertest.Received) bool { return len(r) >= 2 }); !ok {
		t.Fatalf("delivered %d of 2 records", work.Len())
	}

	in := newInspector(t, l, addr, group)
	var r *Report
	// Every record forwarded and committed: at most the last transaction's
	// marker lies past the committed offset (the forwarder commits past the
	// markers it has read).
	laddertest.Eventually(t, 30*time.Second, func() bool {
		r = inspect(t, in)
		for _, p := range r.Tiers[0].Partitions {
			if p.CommittedOffset < 2 || p.EndOffset > p.CommittedOffset+1 {
				return false
			}
		}
		return true
	}, "delay-1s never settled: %+v", r)
	trailing := r.Tiers[0].Partitions[0].EndOffset - r.Tiers[0].Partitions[0].CommittedOffset

	start := time.Now()
	r = inspect(t, in)
	took := time.Since(start)
	t.Logf("inspect of a tier ending in transaction markers took %s", took.Round(time.Millisecond))
	for _, p := range r.Tiers[0].Partitions {
		if p.Pending != 0 || p.Head != nil || p.Error != "" || p.Uncommitted != 0 {
			t.Errorf("delay-1s/%d: pending %d, head %+v, error %q, uncommitted %d; want nothing pending (end %d is a marker past committed %d)",
				p.Partition, p.Pending, p.Head, p.Error, p.Uncommitted, p.EndOffset, p.CommittedOffset)
		}
	}
	if r.Summary.Pending != 0 || r.Summary.Warnings != 0 {
		t.Errorf("summary %+v, warnings %q", r.Summary, r.Warnings)
	}
	// A generous bound: before, each partition ending in a marker cost a 10s wait for a record.
	if took > 5*time.Second {
		t.Errorf("inspect took %s: it waited for a record behind a marker", took)
	}

	// An open transaction in delay-1s/0: shown, not waited for, not pending yet.
	txn := openTxn(t, addr, "delay-1s", 0)
	start = time.Now()
	r = inspect(t, in)
	took = time.Since(start)
	p0 := r.Tiers[0].Partitions[0]
	if !p0.OpenTransaction || p0.Uncommitted != p0.EndOffset-p0.LastStableOffset || p0.Uncommitted < 1 || p0.Pending != 0 || p0.Head != nil || p0.Error != "" {
		t.Errorf("delay-1s/0 with an open transaction: %+v", p0)
	}
	if r.Summary.OpenTransactions != 1 || took > 5*time.Second {
		t.Errorf("summary %+v after %s", r.Summary, took)
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "open transaction") || !strings.Contains(text.String(), "1 open transactions") {
		t.Errorf("the text does not show the open transaction:\n%s", text.String())
	}

	// Aborted: its record and its abort marker are skipped like markers.
	if err := txn.AbortTxn(); err != nil {
		t.Fatal(err)
	}
	laddertest.Eventually(t, 10*time.Second, func() bool {
		r = inspect(t, in)
		p := r.Tiers[0].Partitions[0]
		// Apache Kafka writes the abort marker after AbortTxn returns.
		return !p.OpenTransaction && p.EndOffset-p.CommittedOffset == trailing+2
	}, "the aborted transaction stays open or its marker is not written: %+v", r.Tiers[0].Partitions[0])
	if p0 = r.Tiers[0].Partitions[0]; p0.Pending != 0 || p0.Head != nil || p0.Error != "" || p0.EndOffset-p0.CommittedOffset != trailing+2 {
		t.Errorf("delay-1s/0 after the abort: %+v; want nothing pending behind marker, aborted record and abort marker", p0)
	}
	// A record behind them: forwarded, so read past them.
	held := record{"delay-1s", 0, "work", now.Add(time.Hour), time.Now()} // released after 1s into delay-1m, held there
	produce(t, addr, held)
	laddertest.Eventually(t, 30*time.Second, func() bool {
		r = inspect(t, in)
		if r.Tiers[1].Pending != 1 {
			return false
		}
		// The forwarder's commit marker follows the record: an inspect
		// between the two (seen on the embedded broker) sees the record last.
		for _, p := range r.Tiers[1].Partitions {
			if p.Head != nil && p.EndOffset < p.Head.Offset+2 {
				return false
			}
		}
		return true
	}, "the record behind the aborted transaction never reached delay-1m, followed by its commit marker: %+v", r)
	p0 = r.Tiers[0].Partitions[0]
	if p0.Pending != 0 || p0.Head != nil || p0.OpenTransaction || p0.Error != "" {
		t.Errorf("delay-1s/0 after the abort and a forward: %+v", p0)
	}
	h := r.Tiers[1]
	var heads int
	for _, p := range h.Partitions {
		if p.Head != nil {
			heads++
			if p.Pending != 1 || p.Head.Target != "work" || p.Head.Offset != p.EndOffset-2 {
				t.Errorf("delay-1m/%d: pending %d, head %+v, end %d: want the record before the trailing marker", p.Partition, p.Pending, p.Head, p.EndOffset)
			}
		}
	}
	if heads != 1 {
		t.Errorf("delay-1m: %d heads, want 1: %+v", heads, h)
	}
}

// TestInspectParkedRecords: a record whose target does not exist is parked
// (it waits LADDER_TARGET_TIMEOUT for the topic) while the records behind
// it are forwarded; the commit stays at the parked record and its metadata
// lists what passed it. Inspect counts the parked record as pending, not
// the records forwarded past it, and says it is parked.
func TestInspectParkedRecords(t *testing.T) {
	const group = "inspect-parked"
	l, err := tier.Parse("1m,1h", tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b := laddertest.Broker(t, 2, "delay-1m", "delay-1h", "delay-dlq", "work")
	addr := b.Addr()
	now := time.Now()
	recs := []record{{"delay-1m", 0, "nosuchtopic-inspect", now.Add(-time.Second), now}}
	for range 3 {
		recs = append(recs, record{"delay-1m", 0, "work", now.Add(-time.Second), now})
	}
	produce(t, addr, recs...)
	work := laddertest.Collect(t, addr, "work")
	runForwarder(t, l, addr, group, func(c *forward.Config) { c.TargetTimeout = time.Hour })
	in := newInspector(t, l, addr, group)
	var r *Report
	laddertest.Eventually(t, 30*time.Second, func() bool {
		r = inspect(t, in)
		p := r.Tiers[0].Partitions[0]
		return work.Len() == 3 && p.CommittedOffset == 0 && p.Parked == 1
	}, "the three good records were not forwarded past the parked one, or inspect does not show it parked: %+v", &r)
	p := r.Tiers[0].Partitions[0]
	if p.Pending != 1 || r.Summary.Pending != 1 || p.Head == nil || p.Head.Offset != 0 || p.Head.Target != "nosuchtopic-inspect" {
		t.Errorf("delay-1m/0: pending %d (summary %d), head %+v; want 1 pending, the parked record at offset 0",
			p.Pending, r.Summary.Pending, p.Head)
	}
	if !hasWarning(r, "delay-1m/0: head offset 0 is parked since ") || hasWarning(r, "are the forwarders running") {
		t.Errorf("warnings %q: want the head said parked, not the forwarders stalled", r.Warnings)
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "(1 parked: target missing or refusing writes)") {
		t.Errorf("the text report does not say the record is parked:\n%s", text.String())
	}
}
