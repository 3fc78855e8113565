package worker_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/worker"
)

// python is Debian's interpreter, which python3-confluent-kafka installs
// for; the python3 first on PATH may be another one without it.
const python = "/usr/bin/python3"

// requirePython skips the test when confluent-kafka is missing, or fails
// it when CI is set (CI installs python3-confluent-kafka).
func requirePython(t *testing.T) {
	t.Helper()
	out, err := exec.Command(python, "-c", "import confluent_kafka; print(confluent_kafka.libversion()[0])").CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("%s with confluent_kafka unavailable (apt-get install python3-confluent-kafka): %v: %s", python, err, out)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Logf("librdkafka %s", strings.TrimSpace(string(out)))
}

// pyLine is a JSON line printed by testdata/worker.py.
type pyLine struct {
	Lane, Key, Value, Orig, Visit string
	Hops                          int
	Due, Received                 int64
	DeadLetter                    string `json:"dead_letter"`
	Attempt                       int
}

// TestPythonWorkerInterop runs testdata/worker.py, a worker written with
// librdkafka's Python client and only the wire contract: it consumes the
// lane, reschedules each message by producing it to a tier with
// ladder-target and ladder-due, and the Go forwarder brings it back to the
// lane, where the Python worker sees it again, on time, with its key, value
// and headers. A message whose handler fails is retried through the ladder
// (ladder-attempt) and dead-lettered after the last attempt.
func TestPythonWorkerInterop(t *testing.T) {
	requirePython(t)
	e := setup(t, 2, "py-work")
	e.forwarder(t)
	dlq := laddertest.Collect(t, e.addr, e.ladder.DLQTopic())
	const n = 20
	seed(t, e.addr, "py-work", n, func(i int) string { return fmt.Sprintf("p%02d", i) })
	p := laddertest.Producer(t, e.addr)
	if _, _, err := p.SendMessage(saramaMessage("py-work", "pfail", "fail-me")); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(python, "testdata/worker.py", "--bootstrap", e.addr, "--lane", "py-work",
		"--group", "workers-python", "--tiers", testTiers, "--prefix", e.ladder.Prefix(),
		"--delay-ms", "1500", "--max-attempts", "2", "--backoff-ms", "500")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		lines []pyLine
		read  sync.WaitGroup
	)
	read.Go(func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l pyLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("worker.py printed %q: %v", sc.Text(), err)
				continue
			}
			mu.Lock()
			lines = append(lines, l)
			mu.Unlock()
		}
	})
	exited := make(chan error, 1)
	go func() { read.Wait(); exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("worker.py stderr:\n%s", stderr.String())
		}
	})

	back := func() map[string]pyLine {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]pyLine{}
		for _, l := range lines {
			if l.Visit == "1" {
				out[l.Key] = l
			}
		}
		return out
	}
	waitFor(t, 60*time.Second, func() bool { return len(back()) >= n && dlq.Len() >= 1 },
		func() string {
			return fmt.Sprintf("%d of %d messages back in worker.py, %d dead letters", len(back()), n, dlq.Len())
		})

	for i := range n {
		key := fmt.Sprintf("p%02d", i)
		l, ok := back()[key]
		switch {
		case !ok:
			t.Errorf("%s never came back", key)
		case l.Lane != "py-work" || l.Value != fmt.Sprintf("v%d", i) || l.Orig != fmt.Sprint(i):
			t.Errorf("%s came back as %+v", key, l)
		case l.Hops < 1:
			t.Errorf("%s came back with %d hops: not through the ladder", key, l.Hops)
		case l.Received < l.Due:
			t.Errorf("%s came back %d ms early", key, l.Due-l.Received)
		}
	}
	d := dlq.Records()[0]
	if string(d.Key) != "pfail" || d.Headers[worker.AttemptHeader] != "2" || d.Headers[envelope.Target] != "py-work" ||
		!strings.Contains(d.Headers[envelope.Error], "cannot process fail-me") {
		t.Errorf("dead letter %s %q headers %v", d.Key, d.Value, d.Headers)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("worker.py exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("worker.py did not stop within 30s of SIGTERM")
	}
	l := back()["p00"]
	t.Logf("%d messages went round the ladder from Python and back; p00: due %d, received %d (+%d ms), %d hops",
		n, l.Due, l.Received, l.Received-l.Due, l.Hops)
}
