package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/devbroker"
	"github.com/ladder/ladder/pkg/laddertest"
)

// provisionSpec fits the embedded broker (one broker: replication factor 1).
const provisionSpec = `
defaults:
  partitions: 3
  replicationFactor: 1
  minInsyncReplicas: 1
  maxOutage: 1h
ladder:
  topicPrefix: delay-
  tiers: [1s, 5s]
deadLetter:
  retention: 2d
lanes:
  topics: [work-fast, work-slow]
overrides:
  work-slow:
    partitions: 2
`

// runScript runs a script of topics/ with the ladder binary and env; it
// returns stdout+stderr and the exit code.
func runScript(t *testing.T, env []string, script string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("sh", append([]string{filepath.Join("..", "..", "topics", script)}, args...)...)
	cmd.Env = append(append(os.Environ(), "LADDER="+binary, "LADDER_LOG_FORMAT=json"), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("running %s: %v\n%s", script, err, out)
	return "", 0
}

func runLadder(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(append(os.Environ(), "LADDER_LOG_FORMAT=json"), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), 0
	case errors.As(err, &exit):
		return stdout.String() + stderr.String(), exit.ExitCode()
	}
	t.Fatalf("running ladder %v: %v", args, err)
	return "", 0
}

// TestProvisionScript runs topics/provision.sh against the embedded broker:
// the first run creates everything, the second changes nothing, and verify
// catches drift made by hand (a changed config, added partitions, a deleted
// topic), which the next run repairs as far as it may.
func TestProvisionScript(t *testing.T) {
	b := laddertest.Broker(t, 1)
	spec := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(spec, []byte(provisionSpec), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"LADDER_BROKERS=" + b.Addr(), "TOPICS_FILE=" + spec}

	out, code := runScript(t, env, "provision.sh")
	if code != 0 {
		t.Fatalf("first provision.sh exited %d:\n%s", code, out)
	}
	for _, w := range []string{
		"+ create delay-1s: 3 partitions, replication factor 1, cleanup.policy=delete min.insync.replicas=1 retention=1h6m2s",
		"+ create delay-5s:", "+ create delay-dlq:", "+ create work-fast:",
		"+ create work-slow: 2 partitions",
		"applied 6 changes",
		"ok: 6 topics match " + spec,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("first run lacks %q:\n%s", w, out)
		}
	}
	ca := rawAdmin(t, b.Addr())
	md, err := ca.DescribeTopics([]string{"delay-1s", "delay-5s", "delay-dlq", "work-fast", "work-slow"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range md {
		if m.Err != sarama.ErrNoError || len(m.Partitions) == 0 {
			t.Errorf("topic %s after provisioning: %v, %d partitions", m.Name, m.Err, len(m.Partitions))
		}
	}

	out, code = runScript(t, env, "provision.sh")
	if code != 0 || !strings.Contains(out, "nothing to change: 6 topics match the spec") || strings.Contains(out, "applying") {
		t.Fatalf("second provision.sh (exit %d) changed something:\n%s", code, out)
	}

	// Drift by hand.
	short := "60000"
	if err := ca.IncrementalAlterConfig(sarama.TopicResource, "delay-5s", map[string]sarama.IncrementalAlterConfigsEntry{
		"retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &short}}, false); err != nil {
		t.Fatal(err)
	}
	if err := ca.CreatePartitions("work-fast", 6, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := ca.DeleteTopic("delay-dlq"); err != nil {
		t.Fatal(err)
	}
	var verify string
	laddertest.Eventually(t, 10*time.Second, func() bool {
		verify, code = runLadder(t, []string{"LADDER_BROKERS=" + b.Addr()}, "topics", "verify", "-f", spec)
		return strings.Contains(verify, "delay-dlq: missing")
	}, "verify does not see the deleted topic")
	if code != 1 {
		t.Errorf("verify exited %d on drift, want 1", code)
	}
	for _, w := range []string{
		"drift: 3 differences",
		"delay-dlq: missing",
		"delay-5s: retention=1m, spec says 1h6m6s",
		"work-fast: has 6 partitions, spec says 3: will NOT shrink",
	} {
		if !strings.Contains(verify, w) {
			t.Errorf("verify lacks %q:\n%s", w, verify)
		}
	}

	// provision.sh repairs what it may; verify still fails on the partitions it will not remove.
	out, code = runScript(t, env, "provision.sh")
	if code != 1 || !strings.Contains(out, "applied 2 changes") || !strings.Contains(out, "drift: 1 differences") {
		t.Fatalf("provision.sh after drift exited %d:\n%s", code, out)
	}
	if cfg := topicConfig(t, ca, "delay-5s"); cfg["retention.ms"] != "3966000" {
		t.Errorf("delay-5s retention.ms=%s after repair", cfg["retention.ms"])
	}
}

// TestTopicsUsage: bad calls exit 2 with a message saying what is wrong.
func TestTopicsUsage(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(provisionSpec, "maxOutage: 1h", "maxOutage: 1h\n  configs:\n    retention.msec: \"1\"", 1)+
		"  delay-5s:\n    retention: 30m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"topics"}, "say what to do"},
		{[]string{"topics", "destroy", "-f", bad}, `unknown action "destroy"`},
		{[]string{"topics", "plan"}, "-f FILE is required"},
		{[]string{"topics", "apply", "-f", filepath.Join(dir, "none.yaml")}, "no such file"},
		{[]string{"topics", "verify", "-f", bad}, "retention 30m (1800000 ms) does not exceed its delay 5s + maxOutage 1h"},
		{[]string{"topics", "verify", "-f", bad}, `"retention.msec" is not a Kafka topic config (did you mean retention.ms?)`},
		{[]string{"topics", "plan", "-f", bad, "--brokers", "nohost"}, "--brokers"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), tc.args, nil, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("ladder %v: exit %d, want 2 with %q:\n%s", tc.args, code, tc.want, stderr.String())
		}
	}
}

func rawAdmin(t *testing.T, addr string) sarama.ClusterAdmin {
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

func topicConfig(t *testing.T, ca sarama.ClusterAdmin, topic string) map[string]string {
	t.Helper()
	cfg, err := describeTopicConfig(ca, topic)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// describeTopicConfig reads a topic's configs from whichever broker the
// admin picks; an error the broker returns for the topic (one that has not
// yet learnt of it answers UNKNOWN_TOPIC_OR_PARTITION) is an error, not an
// empty config.
func describeTopicConfig(ca sarama.ClusterAdmin, topic string) (map[string]string, error) {
	res, err := ca.DescribeConfigs([]*sarama.ConfigResource{{Type: sarama.TopicResource, Name: topic}}, sarama.DescribeConfigsOptions{})
	if err != nil {
		return nil, fmt.Errorf("describing configs of topic %s: %w", topic, err)
	}
	if len(res) != 1 {
		return nil, fmt.Errorf("describing configs of topic %s: %d results", topic, len(res))
	}
	if res[0].ErrorCode != 0 {
		return nil, fmt.Errorf("describing configs of topic %s: %w: %s", topic, sarama.KError(res[0].ErrorCode), res[0].ErrorMsg)
	}
	out := map[string]string{}
	for _, c := range res[0].Configs {
		out[c.Name] = c.Value
	}
	return out, nil
}

// TestTopicsWarnsOfOtherLadder: LADDER_TIERS or LADDER_TOPIC_PREFIX naming
// other tiers than the spec is refused by plan, apply and verify (exit 2,
// naming both, nothing created), as the chart refuses to render; with
// --allow-other-ladder it is only a warning. Unset, they claim nothing.
func TestTopicsWarnsOfOtherLadder(t *testing.T) {
	b := laddertest.Broker(t, 1)
	spec := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(spec, []byte(provisionSpec), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), append(append([]string{"topics"}, args...), "-f", spec, "--brokers", b.Addr()), nil, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	for _, tc := range []struct {
		env  map[string]string
		says string
	}{
		{map[string]string{"LADDER_TIERS": "1s,10s"}, `LADDER_TIERS="1s,10s" LADDER_TOPIC_PREFIX="delay-" name the tiers delay-1s, delay-10s; the spec ` + spec + ` names delay-1s, delay-5s`},
		{map[string]string{"LADDER_TOPIC_PREFIX": "wait-"}, `LADDER_TIERS="1s,5s" LADDER_TOPIC_PREFIX="wait-" name the tiers wait-1s, wait-5s; the spec ` + spec + ` names delay-1s, delay-5s`},
		{map[string]string{"LADDER_TIERS": "5s,1s", "LADDER_TOPIC_PREFIX": "wait-"}, `name the tiers wait-1s, wait-5s`},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		for _, verb := range []string{"plan", "apply", "verify"} {
			code, stdout, stderr := run(verb)
			if code != 2 || !strings.Contains(stderr, tc.says) || !strings.Contains(stderr, "--allow-other-ladder") || stdout != "" {
				t.Errorf("%v ladder topics %s: exit %d, want 2 and %q\nstdout:\n%s\nstderr:\n%s", tc.env, verb, code, tc.says, stdout, stderr)
			}
		}
		for k := range tc.env {
			os.Unsetenv(k)
		}
	}
	md, err := rawAdmin(t, b.Addr()).ListTopics()
	for name := range md {
		if strings.HasPrefix(name, "__") { // Apache Kafka's own (__consumer_offsets, __transaction_state)
			delete(md, name)
		}
	}
	if err != nil || len(md) != 0 {
		t.Errorf("a refused apply created topics: %v %v", md, err)
	}

	// Intended: a spec for another ladder, said so with the flag.
	t.Setenv("LADDER_TIERS", "1s,10s")
	code, stdout, stderr := run("plan", "--allow-other-ladder")
	want := `warning: LADDER_TIERS="1s,10s" LADDER_TOPIC_PREFIX="delay-" name the tiers delay-1s, delay-10s; the spec ` + spec + ` names delay-1s, delay-5s`
	if code != 0 || !strings.Contains(stderr, want) || !strings.Contains(stdout, "6 to create") {
		t.Errorf("--allow-other-ladder: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// The same tiers written another way (60s is 1m) and unset variables are no mismatch.
	t.Setenv("LADDER_TIERS", "5000ms, 1s")
	if code, _, stderr := run("plan"); code != 0 || strings.Contains(stderr, "name the tiers") {
		t.Errorf("LADDER_TIERS=\"5000ms, 1s\": exit %d: %s", code, stderr)
	}
	os.Unsetenv("LADDER_TIERS")
	if code, _, stderr := run("plan"); code != 0 || strings.Contains(stderr, "name the tiers") {
		t.Errorf("LADDER_TIERS unset: exit %d: %s", code, stderr)
	}
}

// TestTopicsPlanSecure: `ladder topics plan`, apply and verify succeed
// against a broker that requires SCRAM over TLS, with the right credentials
// from LADDER_SASL_*, and against one that requires mutual TLS, with the
// client certificate from LADDER_TLS_*. No password or private key appears
// in any output. (The wrong-password case is in TestSecureCommands.)
func TestTopicsPlanSecure(t *testing.T) {
	const pw = "pw-topics-Jx8vQ"
	spec := filepath.Join(t.TempDir(), "topics.yaml")
	// secureEnv sets LADDER_TIERS to e2eTiers: the spec names the same tiers.
	if err := os.WriteFile(spec, []byte(strings.Replace(provisionSpec, "tiers: [1s, 5s]", "tiers: [1s, 5s, 15s]", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sec  laddertest.Secure
	}{
		{"SCRAM-SHA-256 over TLS", laddertest.Secure{Users: []devbroker.User{{Mechanism: "SCRAM-SHA-256", Name: "provisioner", Password: pw}}}},
		{"mutual TLS", laddertest.Secure{Mutual: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pki := laddertest.NewPKI(t)
			scan := laddertest.ScanForSecrets(t, append(pki.Secrets(), pw)...)
			tc.sec.PKI, tc.sec.LogTo = pki, scan
			_, k := laddertest.SecureBroker(t, tc.sec, 1)
			env := secureEnv(k)
			if tc.sec.Mutual != (k.TLS.CertFile != "") || (len(tc.sec.Users) > 0) != (k.SASL.Mechanism != "") {
				t.Fatalf("client configuration %+v does not exercise %s", k, tc.name)
			}
			code, out, _ := runBinary(t, scan, env, "topics", "plan", "-f", spec)
			if code != 0 || !strings.Contains(out, "+ create delay-15s:") || !strings.Contains(out, "7 to create") {
				t.Fatalf("ladder topics plan (%s): exit %d:\n%s", tc.name, code, out)
			}
			if code, out, _ := runBinary(t, scan, env, "topics", "apply", "-f", spec); code != 0 || !strings.Contains(out, "applied 7 changes") {
				t.Fatalf("ladder topics apply (%s): exit %d:\n%s", tc.name, code, out)
			}
			if code, out, _ := runBinary(t, scan, env, "topics", "verify", "-f", spec); code != 0 || !strings.Contains(out, "ok: 7 topics match") {
				t.Errorf("ladder topics verify (%s): exit %d:\n%s", tc.name, code, out)
			}
		})
	}
}

// TestProvisionDev provisions `ladder dev` (one broker) with the shipped
// spec and scripts. As shipped (replication factor 3) apply changes nothing:
// plan and apply name the same changes the cluster cannot take, with the
// same counts, and the dev topics keep their partitions and configs. With
// --replication-factor 1 it succeeds, run from a checkout without ladder on
// PATH: the script finds the checkout's bin/ladder.
func TestProvisionDev(t *testing.T) {
	_, addr := startDevDefault(t)
	env := []string{"LADDER_BROKERS=" + addr}

	plan, code := runLadder(t, env, "topics", "plan", "-f", filepath.Join("..", "..", "topics", "topics.yaml"))
	if code != 0 {
		t.Fatalf("ladder topics plan: exit %d\n%s", code, plan)
	}
	out, code := runScript(t, env, "provision.sh")
	t.Logf("provision.sh as shipped (exit %d):\n%s", code, out)
	summary := func(s string) string {
		return regexp.MustCompile(`(?m)^\d+ to create, .*$`).FindString(s)
	}
	if code != 1 || summary(plan) == "" || summary(out) != summary(plan) || !strings.Contains(summary(plan), "(8 the cluster cannot take") {
		t.Errorf("provision.sh as shipped: exit %d, summary %q; plan's %q", code, summary(out), summary(plan))
	}
	for _, w := range []string{
		"x work-fast: cannot create it with replication factor 3: the cluster has 1 broker\n",
		"note: a one-broker cluster (such as ladder dev): provision it with --replication-factor 1 (topics/provision.sh --replication-factor 1)",
		"x delay-1m: cannot set min.insync.replicas=2: the topic has replication factor 1",
		"ladder topics: the plan cannot be fully applied, so nothing was changed:",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("provision.sh as shipped lacks %q", w)
		}
	}
	ca := rawAdmin(t, addr)
	topics, err := ca.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := topics["work-fast"]; ok || topics["delay-6h"].NumPartitions != 6 {
		t.Errorf("a refused apply changed the cluster: work-fast created %v, delay-6h has %d partitions", ok, topics["delay-6h"].NumPartitions)
	}
	if cfg := topicConfig(t, ca, "delay-1m"); cfg["min.insync.replicas"] != "1" {
		t.Errorf("a refused apply set min.insync.replicas=%s on delay-1m", cfg["min.insync.replicas"])
	}

	// A checkout with bin/ladder (make build), ladder not on PATH.
	checkout := t.TempDir()
	for _, dir := range []string{"topics", "bin"} {
		if err := os.Mkdir(filepath.Join(checkout, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"provision.sh", "find-ladder.sh", "topics.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "topics", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(checkout, "topics", f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(binary, filepath.Join(checkout, "bin", "ladder")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "topics/provision.sh", "--replication-factor", "1")
	cmd.Dir = checkout
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LADDER_BROKERS=" + addr, "LADDER_LOG_FORMAT=json", "HOME=" + t.TempDir()}
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "note: --replication-factor 1: replication factor 1 for all 8 topics") ||
		!strings.Contains(string(b), "ok: 8 topics match topics/topics.yaml") {
		t.Errorf("provision.sh --replication-factor 1 from a checkout: %v\n%s", err, b)
	}
	if cfg := topicConfig(t, ca, "delay-1m"); cfg["min.insync.replicas"] != "1" || cfg["retention.ms"] != "285186000" {
		t.Errorf("delay-1m after provisioning: %v", cfg)
	}

	// Without any ladder: the script says how to get one.
	cmd = exec.Command("sh", filepath.Join(checkout, "topics", "provision.sh"))
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	os.Remove(filepath.Join(checkout, "bin", "ladder"))
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "no ladder binary: build one (make build: bin/ladder), install one (make install), or set LADDER") {
		t.Errorf("provision.sh without ladder: %v\n%s", err, b)
	}
}

// startDevDefault runs `ladder dev --forwarders=false` with the default
// tiers and work topic on a free port, and returns its address.
func startDevDefault(t *testing.T) (*proc, string) {
	t.Helper()
	p := start(t, nil, "dev", "--forwarders=false", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	out := waitFor(t, p, "  inspect:")
	return p, bannerAddr.FindStringSubmatch(out)[1]
}

// waitFor waits until p's output holds s and returns it.
func waitFor(t *testing.T, p *proc, s string) string {
	t.Helper()
	laddertest.Eventually(t, 30*time.Second, func() bool { return strings.Contains(p.out.String(), s) }, "no %q in:\n%s", s, p.out)
	return p.out.String()
}
