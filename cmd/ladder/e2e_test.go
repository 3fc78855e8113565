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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

// binary is the ladder binary built once for the tests that run it as a
// separate process (built without -race: it is the product, not the test).
var binary string

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
	code := m.Run()
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
	cmd := exec.Command(binary, args...)
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
// its data on disk and returns its address.
func startDevBroker(t *testing.T, topics string) string {
	t.Helper()
	p := start(t, nil, "dev", "--forwarders=false", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--tiers", e2eTiers, "--partitions", "4", "--topics", topics)
	var addr string
	laddertest.Eventually(t, 30*time.Second, func() bool {
		m := bannerAddr.FindStringSubmatch(p.out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}, "ladder dev printed no address:\n%s", p.out)
	return addr
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

// interruptBacklog schedules a 50,000-record backlog, lets `ladder run`
// forward a fifth of it, stops it with sig, starts a second one and waits
// for every record. It returns where the first stopped, how it exited and
// how many duplicates arrived.
func interruptBacklog(t *testing.T, sig syscall.Signal) (stoppedAt, dups, n int, exit error) {
	t.Helper()
	addr := startDevBroker(t, "work")
	n = 50_000
	due := time.Now().Add(2 * time.Second)
	want := scheduleBacklog(t, addr, n, func(int) time.Time { return due })
	work := laddertest.Collect(t, addr, "work")

	first := start(t, runEnv(addr), "run")
	if _, ok := work.WaitFor(60*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= n/5 }); !ok {
		t.Fatalf("only %d of %d arrived before the %v", work.Len(), n, sig)
	}
	exit = first.stop(t, sig, 40*time.Second)
	stoppedAt = work.Len()
	if stoppedAt >= n {
		t.Fatalf("the %v came after the backlog was done: nothing was tested", sig)
	}
	start(t, runEnv(addr), "run")
	recs := work.WaitDistinct(t, n, 120*time.Second)
	return stoppedAt, verify(t, recs, want), n, exit
}

// TestCrashMidBacklog kills `ladder run` with SIGKILL while it forwards a
// backlog, restarts it, and checks that every message arrives, none early;
// duplicates are allowed (at-least-once) and reported.
func TestCrashMidBacklog(t *testing.T) {
	killedAt, dups, n, _ := interruptBacklog(t, syscall.SIGKILL)
	t.Logf("SIGKILL after %d of %d records: all %d arrived after restart, %d duplicates (%.1f%%)",
		killedAt, n, n, dups, 100*float64(dups)/float64(n))
}

// TestGracefulStopCommits stops `ladder run` with SIGTERM mid-backlog: it
// must exit 0 after its in-flight records are acknowledged and committed,
// so the next run forwards the rest with no duplicate at all.
func TestGracefulStopCommits(t *testing.T) {
	stoppedAt, dups, n, exit := interruptBacklog(t, syscall.SIGTERM)
	if exit != nil {
		t.Errorf("ladder run exited with %v after SIGTERM, want 0", exit)
	}
	if dups != 0 {
		t.Errorf("%d duplicates after a graceful stop at %d of %d: in-flight records were not committed", dups, stoppedAt, n)
	}
	t.Logf("SIGTERM after %d of %d records: clean exit, all arrived after restart, %d duplicates", stoppedAt, n, dups)
}

// TestTwoProcessesOneStops runs two `ladder run` processes in one group;
// one stops mid-stream. Nothing is lost, nothing is early.
func TestTwoProcessesOneStops(t *testing.T) {
	addr := startDevBroker(t, "work")
	const n = 1000
	now := time.Now()
	want := scheduleBacklog(t, addr, n, func(i int) time.Time { return now.Add(time.Duration(i) * 15 * time.Second / n) })
	work := laddertest.Collect(t, addr, "work")

	a := start(t, runEnv(addr), "run")
	start(t, runEnv(addr), "run")
	if _, ok := work.WaitFor(60*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= n/3 }); !ok {
		t.Fatalf("only %d of %d arrived", work.Len(), n)
	}
	if err := a.stop(t, syscall.SIGTERM, 40*time.Second); err != nil {
		t.Errorf("first forwarder exited with %v after SIGTERM", err)
	}
	stoppedAt := work.Len()
	if stoppedAt >= n {
		t.Fatalf("the stop came after every message arrived: nothing was tested")
	}
	recs := work.WaitDistinct(t, n, 90*time.Second)
	dups := verify(t, recs, want)
	t.Logf("one of two forwarders stopped at %d of %d: all arrived, %d duplicates", stoppedAt, n, dups)
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

	one := exec.Command(binary, "schedule", "--topic", "work", "--delay", "2s", "--key", "single", "--header", "a=b", "hello")
	one.Env = append(os.Environ(), env...)
	if out, err := one.CombinedOutput(); err != nil || !strings.Contains(string(out), "via delay-1s") {
		t.Fatalf("ladder schedule: %v\n%s", err, out)
	}
	many := exec.Command(binary, "schedule", "--topic", "work", "--delay", "1s", "--stdin", "--key-delimiter", ":")
	many.Env = append(os.Environ(), env...)
	many.Stdin = strings.NewReader("k1:v1\nk2:v2\nk3:v3\n")
	if out, err := many.CombinedOutput(); err != nil || !strings.Contains(string(out), "scheduled 3 messages (0 failed)") {
		t.Fatalf("ladder schedule --stdin: %v\n%s", err, out)
	}
	recs := work.WaitDistinct(t, 4, 30*time.Second)
	got := laddertest.Distinct(recs)
	if r := got["single"]; string(r.Value) != "hello" || r.Headers["a"] != "b" {
		t.Errorf("single: %q %v", r.Value, r.Headers)
	}
	if r := got["k2"]; string(r.Value) != "v2" {
		t.Errorf("k2: value %q", r.Value)
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
