package realkafka

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestPomVersion(t *testing.T) {
	v, err := PomVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v != Version {
		t.Errorf("pom.xml pins Kafka %s, realkafka.Version is %s: change them together", v, Version)
	}
}

// TestClusterIDNeverAnOption: a cluster id starting with '-' makes
// StorageTool take it for an option ("argument --cluster-id/-t: expected
// one argument"); one base64url id in 64 starts so.
func TestClusterIDNeverAnOption(t *testing.T) {
	for range 10_000 {
		if id := newClusterID(); id[0] == '-' || len(id) != 22 {
			t.Fatalf("cluster id %q", id)
		}
	}
}

func TestTailLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 5, "a\nb\nc\n"},
		{"", 3, "\n"},
		{"a\nb\n", 1, "b\n"},
	} {
		if got := TailLines([]byte(tc.in), tc.n); got != tc.want {
			t.Errorf("TailLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// needReal skips unless the real-Kafka suite was asked for.
func needReal(t *testing.T) {
	t.Helper()
	if os.Getenv("LADDER_TEST_KAFKA") != "real" {
		t.Skip("starts Apache Kafka: run with LADDER_TEST_KAFKA=real (make test-kafka)")
	}
}

// TestStartStop starts one node and a three-node cluster, kills and
// restarts a node, and logs how long each took.
func TestStartStop(t *testing.T) {
	needReal(t)
	for _, nodes := range []int{1, 3} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		began := time.Now()
		c, err := Start(ctx, Config{Nodes: nodes})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d node(s) ready in %s at %s", nodes, time.Since(began).Round(time.Millisecond), c.Bootstrap())
		n := c.Node(nodes)
		pid := n.Pid()
		if err := n.Kill(); err != nil {
			t.Fatal(err)
		}
		if n.Running() || alive(pid) {
			t.Errorf("node %d still runs after Kill", n.ID)
		}
		began = time.Now()
		if err := n.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("node %d of %d restarted in %s", n.ID, nodes, time.Since(began).Round(time.Millisecond))
		dir := c.Dir()
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s left behind after Stop", dir)
		}
		for _, n := range c.Nodes() {
			if n.Running() {
				t.Errorf("node %d runs after Stop", n.ID)
			}
		}
	}
}
