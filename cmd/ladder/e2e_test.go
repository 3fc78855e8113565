package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/offsets"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

// binary is the ladder binary built once for the tests that run it as a
// separate process (built without -race: it is the product, not the test).
var binary, runUnderTest string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ladder-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "ladder")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ladder:", err)
		os.Exit(1)
	}
	// LADDER_E2E_RUN_BINARY runs `ladder run` from another build (an older
	// release, to measure before and after a change); the rest is this one.
	runUnderTest = binary
	if b := os.Getenv("LADDER_E2E_RUN_BINARY"); b != "" {
		runUnderTest = b
	}
	code := laddertest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

const e2eTiers = "1s,5s,15s"

// proc is a ladder process started by a test.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs the ladder binary with args and LADDER_* env; it is killed when the test ends.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	bin := binary
	if len(args) > 0 && args[0] == "run" {
		bin = runUnderTest
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "LADDER_LOG_FORMAT=json", "LADDER_STATS_INTERVAL=0", "LADDER_HTTP_ADDR="), env...)
	p := &proc{cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ladder %v: %v", args, err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of ladder %s:\n%s", strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// stop sends sig and waits for the process to exit.
func (p *proc) stop(t *testing.T, sig syscall.Signal, within time.Duration) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling %v: %v", sig, err)
	}
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(within):
		t.Fatalf("ladder did not exit within %s of %v", within, sig)
		return nil
	}
}

var bannerAddr = regexp.MustCompile(`embedded Kafka broker on (\S+)`)

// startDevBroker runs `ladder dev --forwarders=false` on a free port with
// its data on disk and returns its address; with LADDER_TEST_KAFKA=real it
// makes the same topics on Apache Kafka instead.
func startDevBroker(t *testing.T, topics string) string {
	t.Helper()
	if laddertest.Real() {
		return laddertest.Ladder(t, e2eLadder(t), 4, strings.Split(topics, ",")...).Addr()
	}
	_, addr := startDev(t, t.TempDir(), topics)
	return addr
}

// startDev runs `ladder dev --forwarders=false` on a free port with its data
// in dataDir and returns the process and the address from its banner.
func startDev(t *testing.T, dataDir, topics string) (*proc, string) {
	t.Helper()
	p := start(t, nil, "dev", "--forwarders=false", "--addr", "127.0.0.1:0", "--data-dir", dataDir,
		"--tiers", e2eTiers, "--partitions", "4", "--topics", topics)
	var addr string
	laddertest.Eventually(t, 30*time.Second, func() bool {
		m := bannerAddr.FindStringSubmatch(p.out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}, "ladder dev printed no address:\n%s", p.out)
	return p, addr
}

func runEnv(addr string) []string {
	return []string{"LADDER_BROKERS=" + addr, "LADDER_TIERS=" + e2eTiers, "LADDER_GROUP=e2e", "LADDER_RESUME_LEAD=200ms",
		"LADDER_HTTP_ADDR=127.0.0.1:0"}
}

func e2eLadder(t *testing.T) *tier.Ladder {
	t.Helper()
	l, err := tier.Parse(e2eTiers, tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// scheduleBacklog schedules n messages due at due, keyed k00000...
func scheduleBacklog(t *testing.T, addr string, n int, due func(i int) time.Time) map[string]time.Time {
	t.Helper()
	return scheduleKeyed(t, addr, "k", n, due)
}

// scheduleBacklogPrefixed schedules n messages due at due, keyed prefix00000...
func scheduleBacklogPrefixed(t *testing.T, addr, prefix string, n int, due time.Time) map[string]time.Time {
	t.Helper()
	return scheduleKeyed(t, addr, prefix, n, func(int) time.Time { return due })
}

func scheduleKeyed(t *testing.T, addr, prefix string, n int, due func(i int) time.Time) map[string]time.Time {
	t.Helper()
	s, err := schedule.New(schedule.Config{Ladder: e2eLadder(t), Kafka: laddertest.Kafka(addr), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := make(map[string]time.Time, n)
	batch := make([]schedule.Message, n)
	for i := range n {
		key := fmt.Sprintf("%s%06d", prefix, i)
		at := due(i)
		want[key] = at.Truncate(time.Millisecond)
		batch[i] = schedule.Message{Topic: "work", Key: []byte(key), Value: []byte("payload-" + key), At: at}
	}
	if err := s.ScheduleBatch(context.Background(), batch); err != nil {
		t.Fatalf("scheduling %d messages: %v", n, err)
	}
	return want
}

// verify checks every key arrived, none early, and returns the duplicate count.
func verify(t *testing.T, recs []laddertest.Received, want map[string]time.Time) int {
	t.Helper()
	got := laddertest.Distinct(recs)
	for key, due := range want {
		r, ok := got[key]
		switch {
		case !ok:
			t.Errorf("key %s lost", key)
		case r.Timestamp.Before(due):
			t.Errorf("key %s forwarded %s before its due time", key, due.Sub(r.Timestamp))
		}
	}
	return len(recs) - len(got)
}

// kafkaView reads end offsets, committed offsets and group members through
// the admin API: live from the broker, where a collector lags behind.
type kafkaView struct {
	client sarama.Client
	admin  sarama.ClusterAdmin
}

func newKafkaView(t *testing.T, addr string) *kafkaView {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, laddertestAdminConfig())
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		client.Close()
		t.Fatalf("admin client: %v", err)
	}
	t.Cleanup(func() { admin.Close() }) // closes the client too
	return &kafkaView{client: client, admin: admin}
}

// end is the sum of the end offsets of every partition of topics.
func (v *kafkaView) end(topics ...string) (int64, error) {
	tps, err := offsets.Partitions(v.client, topics...)
	if err != nil {
		return 0, err
	}
	end, err := offsets.End(v.client, tps)
	return sumOffsets(end), err
}

func (v *kafkaView) mustEnd(t *testing.T, topics ...string) int64 {
	t.Helper()
	n, err := v.end(topics...)
	if err != nil {
		t.Fatalf("end offsets of %v: %v", topics, err)
	}
	return n
}

// committed is the sum of the offsets group committed on topics.
func (v *kafkaView) committed(group string, topics ...string) (int64, error) {
	tps, err := offsets.Partitions(v.client, topics...)
	if err != nil {
		return 0, err
	}
	c, err := offsets.Committed(v.admin, group, tps)
	return sumOffsets(c), err
}

func sumOffsets(m map[offsets.TP]int64) int64 {
	var n int64
	for _, o := range m {
		n += o
	}
	return n
}

// allCommitted reports whether group has committed every record of topics.
// Committed offsets are read first and end offsets after: ends only grow, so
// when they are equal, every record in those topics was forwarded,
// acknowledged and committed at the first read, and none arrived between
// the reads. Nothing is left to forward then, so the target cannot grow.
func (v *kafkaView) allCommitted(group string, topics ...string) (bool, error) {
	tps, err := offsets.Partitions(v.client, topics...)
	if err != nil {
		return false, err
	}
	committed, err := offsets.Committed(v.admin, group, tps)
	if err != nil {
		return false, err
	}
	end, err := offsets.End(v.client, tps)
	if err != nil {
		return false, err
	}
	for tp, e := range end {
		if e > 0 && committed[tp] != e {
			return false, nil
		}
	}
	return true, nil
}

func (v *kafkaView) waitAllCommitted(t *testing.T, group string, timeout time.Duration, topics ...string) {
	t.Helper()
	var lastErr error
	laddertest.Eventually(t, timeout, func() bool {
		ok, err := v.allCommitted(group, topics...)
		lastErr = err
		return ok
	}, "group %s did not commit every record of %v (last error: %v)", group, topics, &lastErr)
}

// holdings maps the client id of each member of group to the number of
// partitions assigned to it; ok is false unless the group is Stable.
func (v *kafkaView) holdings(group string) (held map[string]int, ok bool, err error) {
	as, ok, err := v.assignments(group)
	if err != nil {
		return nil, false, err
	}
	held = map[string]int{}
	for client, tps := range as {
		held[client] += 0
		for _, ps := range tps {
			held[client] += len(ps)
		}
	}
	return held, ok, nil
}

// assignments maps the client id of each member of group to the partitions
// assigned to it, by topic; ok is false unless the group is Stable.
func (v *kafkaView) assignments(group string) (as map[string]map[string][]int32, ok bool, err error) {
	gs, err := v.admin.DescribeConsumerGroups([]string{group})
	if err != nil || len(gs) != 1 {
		return nil, false, fmt.Errorf("describing group %s: %w (%d groups)", group, err, len(gs))
	}
	as = map[string]map[string][]int32{}
	for _, m := range gs[0].Members {
		a, err := m.GetMemberAssignment()
		if err != nil {
			return nil, false, fmt.Errorf("decoding the assignment of %s: %w", m.ClientId, err)
		}
		if as[m.ClientId] == nil {
			as[m.ClientId] = map[string][]int32{}
		}
		if a != nil {
			for topic, ps := range a.Topics {
				as[m.ClientId][topic] = append(as[m.ClientId][topic], ps...)
			}
		}
	}
	return as, gs[0].State == "Stable", nil
}

// readAll reads topic from its beginning up to its end offsets as they are
// now: every record, so no late duplicate escapes the count.
func readAll(t *testing.T, addr string, v *kafkaView, topic string) []laddertest.Received {
	t.Helper()
	total := int(v.mustEnd(t, topic))
	c := laddertest.Collect(t, addr, topic)
	recs, ok := c.WaitFor(60*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= total })
	if !ok {
		t.Fatalf("read %d of the %d records of %s", len(recs), total, topic)
	}
	return recs
}

// untilClock blocks until the wall clock reaches at. The tests below use it
// to let due times pass (to build a backlog), never to let things settle.
func untilClock(at time.Time) { time.Sleep(time.Until(at)) }

// backlogRun is what interruptBacklog saw.
type backlogRun struct {
	n                int
	dueAtStart       int   // messages due when the first forwarder started (none forwarded yet)
	forwardedAtStop  int64 // records on the target when the first forwarder had exited (end offsets)
	committedAtStop  int64 // tier offsets group e2e had committed by then
	backlogAtRestart int   // messages due but not forwarded when the second forwarder started
	records, dups    int   // records on the target at the end, and how many were duplicates
	exit             error // how the first forwarder exited
}

// interruptBacklog schedules n messages due over 10 s. A fifth is due before
// the first `ladder run` starts (a backlog at start); once it has committed
// tier offsets (read through the admin API) it is stopped with sig while
// forwarding; a tenth more comes due while none runs (a second backlog);
// then a second `ladder run` forwards the rest. When group e2e has
// committed every tier record, the whole target is read to its end offsets:
// every message must be there, none early, and the duplicates are counted.
func interruptBacklog(t *testing.T, sig syscall.Signal) backlogRun {
	t.Helper()
	addr := startDevBroker(t, "work")
	v := newKafkaView(t, addr)
	tiers := e2eLadder(t).Topics()
	const n = 20_000
	const spread = 10 * time.Second
	first := time.Now().Add(2 * time.Second)
	dueOf := func(i int) time.Time { return first.Add(time.Duration(i) * spread / n).Truncate(time.Millisecond) }
	dueBy := func(at time.Time) int { return sort.Search(n, func(i int) bool { return dueOf(i).After(at) }) }
	want := scheduleBacklog(t, addr, n, dueOf)
	res := backlogRun{n: n}

	untilClock(dueOf(n / 5))
	res.dueAtStart = dueBy(time.Now())
	p := start(t, runEnv(addr), "run")
	// Kill only a member of a settled group (see offsets.GroupSettled), and
	// only once it has committed: then it has forwarded, acknowledged and
	// committed some records and is in the middle of more.
	if !offsets.GroupSettled(v.admin, "e2e", time.Second, 60*time.Second) {
		t.Fatal("group e2e did not settle")
	}
	var committed int64
	laddertest.Eventually(t, 60*time.Second, func() bool {
		committed, _ = v.committed("e2e", tiers...)
		return committed > 0
	}, "group e2e committed no tier offset")
	res.exit = p.stop(t, sig, 40*time.Second)
	stopped := time.Now()
	res.forwardedAtStop = v.mustEnd(t, "work")
	res.committedAtStop, _ = v.committed("e2e", tiers...)
	if res.forwardedAtStop >= int64(n) {
		t.Fatalf("the %v came after all %d messages were forwarded: nothing was tested", sig, n)
	}

	untilClock(stopped.Add(spread / 10))
	res.backlogAtRestart = dueBy(time.Now()) - int(v.mustEnd(t, "work"))
	if res.backlogAtRestart <= 0 {
		t.Fatalf("no message came due while no forwarder ran: nothing was tested")
	}
	start(t, runEnv(addr), "run")
	v.waitAllCommitted(t, "e2e", 180*time.Second, tiers...)

	recs := readAll(t, addr, v, "work")
	res.records = len(recs)
	res.dups = verify(t, recs, want)
	if dl := v.mustEnd(t, e2eLadder(t).DLQTopic()); dl != 0 {
		t.Errorf("%d records on the dead-letter topic", dl)
	}
	return res
}

// TestCrashMidBacklog kills `ladder run` with SIGKILL while it forwards a
// backlog, restarts it, and checks that every message arrives, none early;
// duplicates are allowed (at-least-once), counted and reported.
func TestCrashMidBacklog(t *testing.T) {
	r := interruptBacklog(t, syscall.SIGKILL)
	t.Logf("SIGKILL: %d messages, %d due at start; killed with %d forwarded and %d tier offsets committed; "+
		"%d due and waiting at restart; all %d arrived, none early: %d records, %d duplicates (%.2f%%)",
		r.n, r.dueAtStart, r.forwardedAtStop, r.committedAtStop, r.backlogAtRestart, r.n, r.records, r.dups,
		100*float64(r.dups)/float64(r.n))
}

// TestGracefulStopCommits stops `ladder run` with SIGTERM mid-backlog: it
// must exit 0 after its in-flight records are acknowledged and committed,
// so the next run forwards the rest with no duplicate at all.
func TestGracefulStopCommits(t *testing.T) {
	r := interruptBacklog(t, syscall.SIGTERM)
	if r.exit != nil {
		t.Errorf("ladder run exited with %v after SIGTERM, want 0", r.exit)
	}
	if r.dups != 0 {
		t.Errorf("%d duplicates after a graceful stop at %d of %d: in-flight records were not committed", r.dups, r.forwardedAtStop, r.n)
	}
	t.Logf("SIGTERM: %d messages, %d due at start; stopped (exit %v) with %d forwarded and %d tier offsets committed; "+
		"%d due and waiting at restart; all arrived, none early: %d records, %d duplicates",
		r.n, r.dueAtStart, r.exit, r.forwardedAtStop, r.committedAtStop, r.backlogAtRestart, r.records, r.dups)
}

// TestTwoProcessesOneStops runs two `ladder run` processes in one group;
// once both hold partitions, one stops mid-stream. Nothing is lost, nothing
// is early.
func TestTwoProcessesOneStops(t *testing.T) {
	addr := startDevBroker(t, "work")
	v := newKafkaView(t, addr)
	tiers := e2eLadder(t).Topics()
	const n = 1000
	now := time.Now()
	want := scheduleBacklog(t, addr, n, func(i int) time.Time { return now.Add(time.Duration(i) * 15 * time.Second / n) })

	a := start(t, append(runEnv(addr), "LADDER_CLIENT_ID=ladder-a"), "run")
	start(t, append(runEnv(addr), "LADDER_CLIENT_ID=ladder-b"), "run")
	laddertest.Eventually(t, 60*time.Second, func() bool {
		fwd, err := v.end("work")
		return err == nil && fwd >= n/3
	}, "a third of %d messages never arrived", n)
	var held map[string]int
	laddertest.Eventually(t, 60*time.Second, func() bool {
		h, stable, err := v.holdings("e2e")
		held = h
		return err == nil && stable && len(h) == 2 && h["ladder-a"] > 0 && h["ladder-b"] > 0
	}, "both members never held partitions of group e2e at once: %v", &held)
	if err := a.stop(t, syscall.SIGTERM, 40*time.Second); err != nil {
		t.Errorf("first forwarder exited with %v after SIGTERM", err)
	}
	stoppedAt := v.mustEnd(t, "work")
	if stoppedAt >= n {
		t.Fatalf("the stop came after every message arrived: nothing was tested")
	}
	v.waitAllCommitted(t, "e2e", 90*time.Second, tiers...)
	recs := readAll(t, addr, v, "work")
	dups := verify(t, recs, want)
	t.Logf("two forwarders held %v partitions; ladder-a stopped at %d of %d forwarded: all arrived, none early, %d duplicates",
		held, stoppedAt, n, dups)
}

func kcat(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("kcat is not installed; .ci/run installs it (apt-get install kcat)")
		}
		t.Skip("kcat is not installed (apt-get install kcat)")
	}
	return path
}

// TestKcatInterop schedules with kcat straight into a tier topic and reads
// the work topic with kcat: the record is forwarded when due with its
// original key, value and headers.
func TestKcatInterop(t *testing.T) {
	kc := kcat(t)
	addr := startDevBroker(t, "work")
	start(t, runEnv(addr), "run")

	due := time.Now().Add(3 * time.Second).UnixMilli()
	produce := exec.Command(kc, "-P", "-b", addr, "-t", "delay-1s", "-k", "order-42",
		"-H", "ladder-target=work", "-H", fmt.Sprintf("ladder-due=%d", due), "-H", "trace-id=abc123")
	produce.Stdin = strings.NewReader("hello from kcat\n")
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	consume := exec.CommandContext(ctx, kc, "-C", "-b", addr, "-t", "work", "-c", "1", "-f", "%T|%k|%s|%h\n")
	out, err := consume.Output()
	if err != nil {
		t.Fatalf("kcat -C: %v\n%s", err, out)
	}
	var ts int64
	var key, value, headers string
	parts := strings.SplitN(strings.TrimSpace(string(out)), "|", 4)
	if len(parts) != 4 {
		t.Fatalf("kcat printed %q", out)
	}
	fmt.Sscan(parts[0], &ts)
	key, value, headers = parts[1], parts[2], parts[3]
	if key != "order-42" || value != "hello from kcat" {
		t.Errorf("key %q value %q", key, value)
	}
	if ts < due {
		t.Errorf("forwarded at %d, %d ms before its due time", ts, due-ts)
	}
	// 3s over tiers 1s,5s,15s: three passes through delay-1s.
	for _, h := range []string{"ladder-target=work", fmt.Sprintf("ladder-due=%d", due), "trace-id=abc123", "ladder-hops=3"} {
		if !strings.Contains(headers, h) {
			t.Errorf("headers %q lack %s", headers, h)
		}
	}
	t.Logf("kcat read: ts=%d (due %d, +%dms) key=%s headers=%s", ts, due, ts-due, key, headers)
}

// TestScheduleCommand schedules through the CLI, one VALUE and --stdin, and
// sees the messages arrive.
func TestScheduleCommand(t *testing.T) {
	addr := startDevBroker(t, "work")
	start(t, runEnv(addr), "run")
	work := laddertest.Collect(t, addr, "work")
	env := append(runEnv(addr), "LADDER_LOG_LEVEL=warn")

	// It prints the due time it sent, in RFC 3339 and unix milliseconds.
	printed := regexp.MustCompile(`scheduled for work, due (\S+) \(unix ms (\d+)\), via (\S+) `)
	sent := func(args ...string) (time.Time, string) {
		t.Helper()
		cmd := exec.Command(binary, append([]string{"schedule", "--topic", "work"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		m := printed.FindStringSubmatch(string(out))
		if err != nil || m == nil {
			t.Fatalf("ladder schedule %v: %v\n%s", args, err, out)
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		ms, _ := strconv.ParseInt(m[2], 10, 64)
		if err != nil || at.UnixMilli() != ms || !at.Equal(time.UnixMilli(ms)) {
			t.Errorf("ladder schedule %v printed due %s and unix ms %s: not one time (%v)", args, m[1], m[2], err)
		}
		return time.UnixMilli(ms), m[3]
	}
	before := time.Now()
	due, via := sent("--delay", "2s", "--key", "single", "--header", "a=b", "hello")
	after := time.Now()
	if due.Before(before.Add(2*time.Second).Truncate(time.Millisecond)) || due.After(after.Add(2*time.Second)) || via != "delay-1s" {
		t.Errorf("--delay 2s between %s and %s: printed due %s via %s", before.Format(time.RFC3339Nano), after.Format(time.RFC3339Nano), due, via)
	}
	at := time.Now().Add(3 * time.Second).Truncate(time.Millisecond)
	if due, _ := sent("--at", at.Format(time.RFC3339Nano), "--key", "at", "at"); !due.Equal(at) {
		t.Errorf("--at %s: printed due %s", at.Format(time.RFC3339Nano), due)
	}
	many := exec.Command(binary, "schedule", "--topic", "work", "--delay", "1s", "--stdin", "--key-delimiter", ":")
	many.Env = append(os.Environ(), env...)
	many.Stdin = strings.NewReader("k1:v1\nk2:v2\nk3:v3\n")
	if out, err := many.CombinedOutput(); err != nil || !strings.Contains(string(out), "scheduled 3 messages (0 failed)") {
		t.Fatalf("ladder schedule --stdin: %v\n%s", err, out)
	}
	recs := work.WaitDistinct(t, 5, 30*time.Second)
	got := laddertest.Distinct(recs)
	if r := got["single"]; string(r.Value) != "hello" || r.Headers["a"] != "b" {
		t.Errorf("single: %q %v", r.Value, r.Headers)
	}
	// The printed due time is the one on the wire, and was kept.
	if r := got["single"]; r.Headers["ladder-due"] != strconv.FormatInt(due.UnixMilli(), 10) || r.Timestamp.Before(due) {
		t.Errorf("single: ladder-due %s, forwarded at %s; printed due %d", r.Headers["ladder-due"], r.Timestamp, due.UnixMilli())
	}
	if r := got["at"]; r.Headers["ladder-due"] != strconv.FormatInt(at.UnixMilli(), 10) || r.Timestamp.Before(at) {
		t.Errorf("at: ladder-due %s, forwarded at %s; want %d", r.Headers["ladder-due"], r.Timestamp, at.UnixMilli())
	}
	if r := got["k2"]; string(r.Value) != "v2" {
		t.Errorf("k2: value %q", r.Value)
	}
}

// TestDevKeepsDataAcrossRestarts: `ladder dev` prints the bootstrap address
// and a kcat command to watch the work topic; records pending in a tier
// (not yet due, no forwarder running) survive a restart of `ladder dev` on
// the same --data-dir, headers and all; the printed kcat command works.
func TestDevKeepsDataAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	p, addr := startDev(t, dir, "work")
	banner := p.out.String()
	watch := regexp.MustCompile(`(?m)^  watch work: +(kcat -C -b (\S+) -t work .*)$`).FindStringSubmatch(banner)
	if !strings.Contains(banner, "embedded Kafka broker on "+addr+" (data in "+dir+")") || watch == nil || watch[2] != addr {
		t.Fatalf("the banner lacks the bootstrap address, the data directory or a kcat command to watch work:\n%s", banner)
	}

	const n = 100
	want := scheduleBacklog(t, addr, n, func(int) time.Time { return time.Now().Add(time.Hour) })
	v := newKafkaView(t, addr)
	if pending := v.mustEnd(t, "delay-15s"); pending != n {
		t.Fatalf("%d records in delay-15s, want %d", pending, n)
	}
	if err := p.stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("ladder dev exited with %v after SIGTERM", err)
	}

	_, addr = startDev(t, dir, "work")
	v = newKafkaView(t, addr)
	recs := readAll(t, addr, v, "delay-15s")
	got := laddertest.Distinct(recs)
	if len(recs) != n || len(got) != n {
		t.Errorf("after the restart delay-15s holds %d records, %d distinct; want %d", len(recs), len(got), n)
	}
	for key, due := range want {
		r, ok := got[key]
		if !ok {
			t.Errorf("pending record %s lost in the restart", key)
			continue
		}
		if r.Headers["ladder-target"] != "work" || r.Headers["ladder-due"] != strconv.FormatInt(due.UnixMilli(), 10) ||
			string(r.Value) != "payload-"+key {
			t.Errorf("record %s came back as %q with headers %v", key, r.Value, r.Headers)
		}
	}
	if fwd := v.mustEnd(t, "work"); fwd != 0 {
		t.Errorf("%d records reached work with no forwarder running", fwd)
	}

	// The kcat command of the first banner, pointed at the new address, sees
	// a message sent straight to work.
	kc := kcat(t)
	scheduleKeyed(t, addr, "now", 1, func(int) time.Time { return time.Now().Add(-time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", strings.Replace(watch[1], watch[2], addr, 1)+" -c 1 -e")
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(kc)+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "now000000") || !strings.Contains(string(out), "payload-now000000") {
		t.Errorf("the banner's kcat command (%s): %v\n%s", watch[1], err, out)
	}
}

// TestDrainCommand: `ladder drain --tier delay-15s` releases every record
// held in that tier now, through the running forwarder; they arrive early,
// marked ladder-early, and the command exits once all are released.
func TestDrainCommand(t *testing.T) {
	addr := startDevBroker(t, "work")
	start(t, runEnv(addr), "run")
	const n = 100
	later := time.Now().Add(10 * time.Minute)
	scheduleBacklog(t, addr, n, func(int) time.Time { return later })
	work := laddertest.Collect(t, addr, "work")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	drain := exec.CommandContext(ctx, binary, "drain", "--tier", "delay-15s", "--timeout", "50s")
	drain.Env = append(os.Environ(), runEnv(addr)...)
	out, err := drain.CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("drained delay-15s: all %d records released", n)) {
		t.Fatalf("ladder drain: %v\n%s", err, out)
	}
	recs := work.WaitDistinct(t, n, 20*time.Second)
	for _, r := range laddertest.Distinct(recs) {
		if r.Headers["ladder-early"] == "" || !r.Timestamp.Before(later) {
			t.Errorf("%s: not marked early (headers %v)", r.Key, r.Headers)
		}
	}
}

// TestSoakCommand runs `ladder soak` briefly: its own broker, two
// forwarders, a SIGKILL every few seconds; it must prove nothing lost.
func TestSoakCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "soak", "--duration", "15s", "--rate", "50", "--max-delay", "4s",
		"--kill-every", "4s", "--json", "--log-level", "warn")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ladder soak: %v\n%s", err, out)
	}
	var res struct{ Messages, Lost, Early, Kills int }
	if err := json.Unmarshal(out, &res); err != nil || res.Messages < 300 || res.Lost != 0 || res.Early != 0 || res.Kills < 1 {
		t.Fatalf("soak result %+v (%v):\n%s", res, err, out)
	}
}

// TestDemo runs `ladder dev --demo` (what `make demo` runs): within seconds
// its status shows both lanes handling messages that came back through the
// ladder; SIGINT stops it cleanly.
func TestDemo(t *testing.T) {
	p := start(t, []string{"LADDER_LOG_LEVEL=warn"}, "dev", "--demo", "--tiers", "2s,10s,30s", "--addr", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0")
	handled := regexp.MustCompile(`(?m)^  (work-fast|work-slow) +[0-9.]+ +([1-9][0-9]*) `)
	laddertest.Eventually(t, 60*time.Second, func() bool {
		lanes := map[string]bool{}
		for _, m := range handled.FindAllStringSubmatch(p.out.String(), -1) {
			lanes[m[1]] = true
		}
		return len(lanes) == 2
	}, "the demo status never showed both lanes handling messages:\n%s", p.out)
	if err := p.stop(t, syscall.SIGINT, 40*time.Second); err != nil {
		t.Errorf("ladder dev --demo exited with %v after SIGINT\n%s", err, p.out)
	}
}

func laddertestAdminConfig() *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	return sc
}
