package main

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/offsets"
	"github.com/ladder/ladder/pkg/tier"
)

// TestStoppedProcessDuplicatesLittle: of two `ladder run` processes sharing
// the ladder, one (A) is stopped (SIGSTOP) for 20 s while 20,000 messages
// flow, longer than its group session timeout (10 s): the group gives its
// partitions to the other (B). When A continues (SIGCONT) its session lease
// has lapsed, so it forwards nothing more before it learns the session is
// lost and joins again.
//
// The duplicates are bounded by what A had forwarded and not yet committed
// when it stopped, counted from outside: the records of A's partitions at
// or past A's committed offsets (A commits nothing while stopped) that their
// tier released before the stop and whose forwarded copy (in the next tier
// or the target) was written before the stop. B forwards those again from
// A's commits; a zombie A forwarding after SIGCONT would add records it had
// not forwarded by the stop, which that count leaves out. The bound follows
// A's commit lag, so it holds on a loaded machine as on an idle one (one CI
// run on Apache Kafka under -race counted 2,723 duplicates against the
// fixed bound of 1,000 this test had then; idle runs count 250-370).
func TestStoppedProcessDuplicatesLittle(t *testing.T) {
	addr := startDevBroker(t, "work")
	v := newKafkaView(t, addr)
	l := e2eLadder(t)
	tiers := l.Topics()
	const n = 20_000
	const spread = 30 * time.Second
	first := time.Now().Add(2 * time.Second)
	want := scheduleBacklog(t, addr, n, func(i int) time.Time { return first.Add(time.Duration(i) * spread / n).Truncate(time.Millisecond) })

	a := start(t, append(runEnv(addr), "LADDER_CLIENT_ID=ladder-a"), "run")
	start(t, append(runEnv(addr), "LADDER_CLIENT_ID=ladder-b"), "run")
	var held map[string]int
	laddertest.Eventually(t, 60*time.Second, func() bool {
		h, stable, err := v.holdings("e2e")
		held = h
		return err == nil && stable && len(h) == 2 && h["ladder-a"] > 0 && h["ladder-b"] > 0
	}, "both members never held partitions of group e2e at once: %v", &held)
	laddertest.Eventually(t, 60*time.Second, func() bool {
		fwd, err := v.end("work")
		return err == nil && fwd >= n/10
	}, "a tenth of %d messages never arrived", n)
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Anything A forwarded, it forwarded before now (the signal takes a
	// moment to stop every thread).
	stopped := time.Now().Add(50 * time.Millisecond)
	stoppedAt := v.mustEnd(t, "work")
	// The group keeps A's partitions for its session timeout (10 s), and A
	// commits nothing while stopped: what it held and had committed.
	as, _, err := v.assignments("e2e")
	if err != nil {
		t.Fatal(err)
	}
	aParts := as["ladder-a"]
	aCommitted, err := offsets.Committed(v.admin, "e2e", aParts)
	if err != nil {
		t.Fatal(err)
	}
	if len(aParts) == 0 || time.Since(stopped) > 9*time.Second {
		t.Fatalf("reading A's partitions (%v) took %s, too close to its session timeout", aParts, time.Since(stopped))
	}
	time.Sleep(20 * time.Second) // the length of the stop is what is tested
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	if stoppedAt >= n {
		t.Fatalf("the stop came after every message arrived: nothing was tested")
	}
	v.waitAllCommitted(t, "e2e", 120*time.Second, tiers...)
	recs := readAll(t, addr, v, "work")
	dups := verify(t, recs, want)

	// Every copy of every message, in the tiers and the target, by key: a
	// copy written after a tier record and before the stop is its forward.
	tierRecs := map[string][]laddertest.Received{}
	copies := map[string][]time.Time{}
	for _, r := range recs {
		copies[string(r.Key)] = append(copies[string(r.Key)], r.Timestamp)
	}
	for _, topic := range tiers {
		tierRecs[topic] = readAll(t, addr, v, topic)
		for _, r := range tierRecs[topic] {
			copies[string(r.Key)] = append(copies[string(r.Key)], r.Timestamp)
		}
	}
	forwardedBeforeStop := func(r laddertest.Received) bool {
		for _, ts := range copies[string(r.Key)] {
			if ts.After(r.Timestamp) && !ts.After(stopped) {
				return true
			}
		}
		return false
	}
	uncommitted := 0
	for topic, ps := range aParts {
		tr, ok := l.Lookup(topic)
		if !ok {
			t.Fatalf("A held %s, not a tier", topic)
		}
		mine := map[int32]bool{}
		for _, p := range ps {
			mine[p] = true
		}
		for _, r := range tierRecs[topic] {
			if !mine[r.Partition] {
				continue
			}
			if c, ok := aCommitted[offsets.TP{Topic: topic, Partition: r.Partition}]; ok && r.Offset < c {
				continue
			}
			env, err := envelope.Decode(r.HeaderList)
			if err != nil {
				t.Fatalf("%s/%d@%d: %v", topic, r.Partition, r.Offset, err)
			}
			if !tier.ReleaseAt(tr, r.Timestamp, env.Due).After(stopped) && forwardedBeforeStop(r) {
				uncommitted++
			}
		}
	}
	t.Logf("SIGSTOP 20s of one of two forwarders at %d of %d forwarded: all arrived, none early, %d duplicates; "+
		"A had forwarded %d records and not committed them when it stopped", stoppedAt, n, dups, uncommitted)
	if dups > uncommitted {
		t.Errorf("%d duplicates after a 20 s stop, more than the %d records A had forwarded and not "+
			"committed when it stopped: it forwarded as a zombie", dups, uncommitted)
		explainDuplicates(t, recs, tierRecs, aParts, aCommitted, stopped, resumed)
	}
}

// explainDuplicates logs, for the keys that reached the target more than
// once, every copy of the key in the tiers and the target: partition,
// offset, timestamp relative to the stop, and whether it sat in one of A's
// partitions past A's commit. Enough to tell which forward was repeated.
func explainDuplicates(t *testing.T, recs []laddertest.Received, tierRecs map[string][]laddertest.Received,
	aParts map[string][]int32, aCommitted map[offsets.TP]int64, stopped, resumed time.Time) {
	t.Helper()
	count := map[string]int{}
	for _, r := range recs {
		count[string(r.Key)]++
	}
	byKey := map[string][]laddertest.Received{}
	for _, rs := range tierRecs {
		for _, r := range rs {
			if count[string(r.Key)] > 1 {
				byKey[string(r.Key)] = append(byKey[string(r.Key)], r)
			}
		}
	}
	for _, r := range recs {
		if count[string(r.Key)] > 1 {
			byKey[string(r.Key)] = append(byKey[string(r.Key)], r)
		}
	}
	keys := slices.Sorted(maps.Keys(byKey))
	t.Logf("%d keys arrived more than once; A continued %s after the stop", len(keys), resumed.Sub(stopped).Round(time.Millisecond))
	for i, k := range keys {
		if i == 60 {
			t.Logf("... and %d more keys", len(keys)-i)
			break
		}
		cs := byKey[k]
		slices.SortStableFunc(cs, func(a, b laddertest.Received) int { return a.Timestamp.Compare(b.Timestamp) })
		var b strings.Builder
		for _, r := range cs {
			mark := ""
			if slices.Contains(aParts[r.Topic], r.Partition) {
				mark = " A"
				if c, ok := aCommitted[offsets.TP{Topic: r.Topic, Partition: r.Partition}]; !ok || r.Offset >= c {
					mark = " A-uncommitted"
				}
			}
			fmt.Fprintf(&b, " %s/%d@%d %+.3fs%s;", r.Topic, r.Partition, r.Offset, r.Timestamp.Sub(stopped).Seconds(), mark)
		}
		t.Logf("%s:%s", k, b.String())
	}
}

// TestBrokerRestartUnderLoad restarts the broker (`ladder dev` on the same
// address and data directory) for 10 s while 20,000 messages flow: every
// message arrives, none early; the duplicates (records acknowledged and not
// yet committed when the broker went) are counted.
func TestBrokerRestartUnderLoad(t *testing.T) {
	laddertest.NeedsEmbedded(t, "restarts `ladder dev` (the embedded broker) on its data directory; "+
		"on Apache Kafka, TestClusterBrokerKilled and TestClusterRollingRestart take brokers away under load")
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dev := start(t, nil, "dev", "--forwarders=false", "--addr", addr, "--data-dir", dir,
		"--tiers", e2eTiers, "--partitions", "4", "--topics", "work")
	waitBanner(t, dev)
	v := newKafkaView(t, addr)
	tiers := e2eLadder(t).Topics()
	const n = 20_000
	const spread = 30 * time.Second
	first := time.Now().Add(2 * time.Second)
	dueOf := func(i int) time.Time { return first.Add(time.Duration(i) * spread / n).Truncate(time.Millisecond) }
	want := scheduleBacklog(t, addr, n, dueOf)
	v.client.Close()

	start(t, runEnv(addr), "run")
	untilClock(dueOf(n / 4))
	if err := dev.stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("ladder dev exited with %v", err)
	}
	time.Sleep(10 * time.Second) // the length of the outage is what is tested
	dev = start(t, nil, "dev", "--forwarders=false", "--addr", addr, "--data-dir", dir,
		"--tiers", e2eTiers, "--partitions", "4", "--topics", "work")
	waitBanner(t, dev)
	v = newKafkaView(t, addr)
	v.waitAllCommitted(t, "e2e", 180*time.Second, tiers...)
	recs := readAll(t, addr, v, "work")
	dups := verify(t, recs, want)
	late := 0
	for _, r := range laddertest.Distinct(recs) {
		if r.Timestamp.Sub(want[string(r.Key)]) > 20*time.Second {
			late++
		}
	}
	t.Logf("broker down 10s at a quarter of %d messages: all arrived, none early, %d duplicates, %d more than 20s late", n, dups, late)
}

// waitBanner waits until `ladder dev` printed its address.
func waitBanner(t *testing.T, p *proc) {
	t.Helper()
	laddertest.Eventually(t, 30*time.Second, func() bool { return bannerAddr.MatchString(p.out.String()) },
		"ladder dev printed no address:\n%s", p.out)
}
