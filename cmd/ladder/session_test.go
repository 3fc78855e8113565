package main

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/laddertest"
)

// TestStoppedProcessDuplicatesLittle: of two `ladder run` processes sharing
// the ladder, one is stopped (SIGSTOP) for 20 s while 20,000 messages flow,
// longer than its group session timeout (10 s): the group gives its
// partitions to the other. When it continues (SIGCONT) its session lease has
// lapsed, so it forwards nothing more before it learns the session is lost
// and joins again: the duplicates are what it had in flight and not yet
// committed when it stopped, not what it would forward as a zombie.
//
// On Apache Kafka it is skipped for now: one CI run (2026-12-05) counted
// 2,723 duplicates after the stop, over the bound, where two earlier runs
// counted 103 and 228 (pkg/laddertest/KAFKA.md). Not understood yet: see
// the open issue; it must not pass by a looser bound.
func TestStoppedProcessDuplicatesLittle(t *testing.T) {
	laddertest.NeedsEmbedded(t, "on Apache Kafka one run of three duplicated 2,723 records after the stop, "+
		"not yet explained (KAFKA.md, Known)")
	addr := startDevBroker(t, "work")
	v := newKafkaView(t, addr)
	tiers := e2eLadder(t).Topics()
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
	stoppedAt := v.mustEnd(t, "work")
	time.Sleep(20 * time.Second) // the length of the stop is what is tested
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if stoppedAt >= n {
		t.Fatalf("the stop came after every message arrived: nothing was tested")
	}
	v.waitAllCommitted(t, "e2e", 120*time.Second, tiers...)
	recs := readAll(t, addr, v, "work")
	dups := verify(t, recs, want)
	t.Logf("SIGSTOP 20s of one of two forwarders at %d of %d forwarded: all arrived, none early, %d duplicates", stoppedAt, n, dups)
	// A bound far above what is in flight and uncommitted at 1,000 msg/s
	// (LADDER_COMMIT_INTERVAL 500ms), far below what a zombie forwards.
	if dups > n/20 {
		t.Errorf("%d duplicates after a 20 s stop: more than in flight when it stopped", dups)
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
