package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/worker"
)

// testTiers is the short ladder of the tests: messages come back in seconds.
const testTiers = "1s,5s"

func TestMain(m *testing.M) {
	// The test binary doubles as the worker process of the tests that kill
	// one and of the benchmark (see child_test.go).
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	os.Exit(laddertest.Main(m))
}

type env struct {
	addr   string
	ladder *tier.Ladder
}

// setup starts a broker with the tiers, the dead-letter topic and topics.
func setup(t testing.TB, partitions int32, topics ...string) *env {
	t.Helper()
	l, err := tier.Parse(testTiers, tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b := laddertest.Broker(t, partitions, append(append(l.Topics(), l.DLQTopic(), l.ControlTopic()), topics...)...)
	return &env{addr: b.Addr(), ladder: l}
}

// forwarder runs the ladder's forwarder in-process until the test ends.
func (e *env) forwarder(t *testing.T) {
	t.Helper()
	f, err := forward.New(forward.Config{Ladder: e.ladder, Group: "ladder-test", Kafka: laddertest.Kafka(e.addr),
		Log: laddertest.Logger(t), ResumeLead: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "forwarder", f.Run)
}

func (e *env) config(t *testing.T) worker.Config {
	return worker.Config{Kafka: laddertest.Kafka(e.addr), Ladder: e.ladder, Log: laddertest.Logger(t),
		ShutdownTimeout: 10 * time.Second}
}

// start runs a worker until the test ends or stop is called; stop returns
// once Run returned (and fails the test if that takes longer than 60s).
func (e *env) start(t *testing.T, cfg worker.Config, lanes ...worker.Lane) (w *worker.Worker, stop func()) {
	t.Helper()
	w, err := worker.New(cfg, lanes...)
	if err != nil {
		t.Fatal(err)
	}
	return w, run(t, "worker", w.Run)
}

// run calls fn in a goroutine until the test ends or stop is called.
func run(t *testing.T, what string, fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s stopped with %v", what, err)
				}
			case <-time.After(60 * time.Second):
				t.Errorf("%s did not stop within 60s", what)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// seed produces n records to topic, keys key(i), values "v<i>", one header
// "orig: <i>", pipelined, and waits for the broker to acknowledge them all.
func seed(t testing.TB, addr, topic string, n int, key func(i int) string) {
	t.Helper()
	p := laddertest.Producer(t, addr)
	const batch = 500
	for lo := 0; lo < n; lo += batch {
		var msgs []*sarama.ProducerMessage
		for i := lo; i < min(lo+batch, n); i++ {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key(i)),
				Value:   sarama.StringEncoder(fmt.Sprintf("v%d", i)),
				Headers: []sarama.RecordHeader{{Key: []byte("orig"), Value: fmt.Appendf(nil, "%d", i)}}})
		}
		if err := p.SendMessages(msgs); err != nil {
			t.Fatalf("seeding %s: %v", topic, err)
		}
	}
}

// child is a worker process started by a test (the test binary in child mode).
type child struct {
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

// startChild runs this test binary as a worker process with the given
// child settings; it is killed when the test ends.
func startChild(t testing.TB, settings childSettings) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), settings.env()...)
	c := &child{cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting worker process: %v", err)
	}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		err := <-c.done
		c.done <- err
		if t.Failed() {
			t.Logf("output of worker process %d:\n%s", c.cmd.Process.Pid, c.out.String())
		}
	})
	return c
}

// signal sends sig and waits up to within for the process to exit.
func (c *child) signal(t testing.TB, sig syscall.Signal, within time.Duration) error {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling worker process: %v", err)
	}
	select {
	case err := <-c.done:
		c.done <- err // for the cleanup
		return err
	case <-time.After(within):
		t.Fatalf("worker process did not exit within %s of %v", within, sig)
		return nil
	}
}

// rss returns the process's peak and current resident set size in KiB,
// from /proc/<pid>/status.
func (c *child) rss(t testing.TB) (hwm, cur int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("reading worker process status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var v int64
		if n, _ := fmt.Sscanf(line, "VmHWM: %d kB", &v); n == 1 {
			hwm = v
		}
		if n, _ := fmt.Sscanf(line, "VmRSS: %d kB", &v); n == 1 {
			cur = v
		}
	}
	return hwm, cur
}

// waitFor waits until cond is true, checking every 20ms, or fails the test
// after timeout with what() (evaluated then, so it shows the final state).
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// committed returns the group's committed offsets on topic's partitions
// (nil when it has none yet: kfake answers GROUP_ID_NOT_FOUND then).
func committed(t testing.TB, addr, group, topic string) map[int32]int64 {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	a, err := sarama.NewClusterAdmin([]string{addr}, sc)
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	defer a.Close()
	r, err := a.ListConsumerGroupOffsets(group, nil)
	if err != nil {
		return nil
	}
	out := map[int32]int64{}
	for p, b := range r.Blocks[topic] {
		out[p] = b.Offset
	}
	return out
}

func saramaMessage(topic, key, value string) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.StringEncoder(value)}
}

// seedPartition produces n records to one partition of topic, keys key(i),
// values "v<i>", one header "orig: <i>", and waits for the broker to
// acknowledge them all.
func seedPartition(t testing.TB, addr, topic string, partition int32, n int, key func(i int) string) {
	t.Helper()
	p := laddertest.ManualProducer(t, addr)
	msgs := make([]*sarama.ProducerMessage, 0, n)
	for i := range n {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: partition, Key: sarama.StringEncoder(key(i)),
			Value:   sarama.StringEncoder(fmt.Sprintf("v%d", i)),
			Headers: []sarama.RecordHeader{{Key: []byte("orig"), Value: fmt.Appendf(nil, "%d", i)}}})
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatalf("seeding %s/%d: %v", topic, partition, err)
	}
}

// counter counts handled records per partition, safe for concurrent use.
type counter struct {
	mu sync.Mutex
	n  map[int32]int
}

func (c *counter) add(p int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[int32]int{}
	}
	c.n[p]++
}

func (c *counter) get(p int32) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[p]
}
