package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/inspect"
	"github.com/ladder/ladder/pkg/laddertest"
)

const inspectTiers = "1m,1h"

// heldLadder is a broker with known records in the tiers of 1m,1h and a
// `ladder run` forwarding them, holding the heads of delay-1h for about an hour.
type heldLadder struct {
	addr string
	env  []string
	now  time.Time
	// dues of the records left in delay-1h, per partition, in offset order.
	dues map[int32][]time.Time
}

func startHeldLadder(t *testing.T) *heldLadder {
	t.Helper()
	b := laddertest.Broker(t, 2, "delay-1m", "delay-1h", "delay-dlq", "work")
	h := &heldLadder{addr: b.Addr(), now: time.Now(),
		env: []string{"LADDER_BROKERS=" + b.Addr(), "LADDER_TIERS=" + inspectTiers, "LADDER_GROUP=inspect-e2e"}}
	h.dues = map[int32][]time.Time{0: {h.now.Add(70 * time.Minute), h.now.Add(80 * time.Minute)}, 1: {h.now.Add(90 * time.Minute)}}

	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer([]string{h.addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(topic string, partition int32, key string, headers ...string) {
		var hs []sarama.RecordHeader
		for k := 0; k < len(headers); k += 2 {
			hs = append(hs, sarama.RecordHeader{Key: []byte(headers[k]), Value: []byte(headers[k+1])})
		}
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: partition, Key: sarama.StringEncoder(key),
			Value: sarama.StringEncoder("value of " + key), Headers: hs, Timestamp: h.now}); err != nil {
			t.Fatal(err)
		}
	}
	ms := func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
	// delay-1h/0: one record already due (forwarded at once), then two held.
	send("delay-1h", 0, "due-now", "ladder-target", "work", "ladder-due", ms(h.now.Add(-time.Second)))
	send("delay-1h", 0, "order-70", "ladder-target", "work", "ladder-due", ms(h.dues[0][0]), "trace-id", "abc,123")
	send("delay-1h", 0, "order-80", "ladder-target", "work", "ladder-due", ms(h.dues[0][1]))
	send("delay-1h", 1, "order-90", "ladder-target", "work", "ladder-due", ms(h.dues[1][0]))
	// delay-1m/1: no ladder-target: dead-lettered.
	send("delay-1m", 1, "lost-target", "ladder-due", ms(h.now))

	start(t, h.env, "run")
	return h
}

// inspectJSON runs `ladder inspect --json` until ready(report) or the deadline.
func (h *heldLadder) inspectJSON(t *testing.T, ready func(*inspect.Report) bool) *inspect.Report {
	t.Helper()
	var r *inspect.Report
	t.Cleanup(func() {
		if t.Failed() && r != nil {
			js, _ := json.MarshalIndent(r, "", "  ")
			t.Logf("last ladder inspect --json:\n%s", js)
		}
	})
	laddertest.Eventually(t, 30*time.Second, func() bool {
		out, code := runLadder(t, h.env, "inspect", "--json")
		if code != 0 {
			t.Fatalf("ladder inspect --json exited %d:\n%s", code, out)
		}
		r = new(inspect.Report)
		if err := json.Unmarshal([]byte(out), r); err != nil {
			t.Fatalf("ladder inspect --json printed no report: %v\n%s", err, out)
		}
		return ready(r)
	}, "ladder inspect never showed the forwarder settled")
	return r
}

// settled: the due record forwarded and committed, the bad one dead-lettered
// and committed past (the dead letter is written before the commit: a pair
// run saw it pending in between), the forwarder a member.
func settled(r *inspect.Report) bool {
	return len(r.Tiers) == 2 && r.Tiers[1].Partitions[0].CommittedOffset == 1 && r.DeadLetter.Records == 1 &&
		r.Tiers[0].Pending == 0 && len(r.Members) == 1
}

// TestInspectJSONAgreesWithTiers: `ladder inspect --json`, while `ladder run`
// holds the heads, reports what the test put into the tiers.
func TestInspectJSONAgreesWithTiers(t *testing.T) {
	h := startHeldLadder(t)
	r := h.inspectJSON(t, settled)

	if r.Group != "inspect-e2e" || r.Summary.Pending != 3 || r.Tiers[0].Pending != 0 || r.Tiers[1].Pending != 3 ||
		r.Summary.OverduePartitions != 0 || r.Summary.DeadLetterRecords != 1 {
		t.Errorf("summary %+v; delay-1m pending %d, delay-1h pending %d", r.Summary, r.Tiers[0].Pending, r.Tiers[1].Pending)
	}
	for p, dues := range h.dues {
		pr := r.Tiers[1].Partitions[p]
		if pr.Pending != int64(len(dues)) || pr.Head == nil {
			t.Errorf("delay-1h/%d: pending %d, want %d; head %+v", p, pr.Pending, len(dues), pr.Head)
			continue
		}
		wantDue := dues[0].Truncate(time.Millisecond)
		// Released at min(timestamp + 1h, due): timestamp + 1h for all of them.
		wantRelease := h.now.Add(time.Hour).Truncate(time.Millisecond)
		if pr.Head.Due == nil || !pr.Head.Due.Equal(wantDue) || !pr.Head.ReleaseAt.Equal(wantRelease) || pr.Head.Target != "work" {
			t.Errorf("delay-1h/%d head: due %v release %v target %s; want due %v release %v", p, pr.Head.Due, pr.Head.ReleaseAt, pr.Head.Target, wantDue, wantRelease)
		}
		if pr.Head.OverdueMS >= 0 || pr.Owner != r.Members[0].MemberID {
			t.Errorf("delay-1h/%d: overdue %d ms (want held), owner %q", p, pr.Head.OverdueMS, pr.Owner)
		}
	}
	if got := r.Tiers[1].Partitions[0].Head.Offset; got != 1 {
		t.Errorf("delay-1h/0 head offset %d, want 1 (offset 0 was forwarded)", got)
	}
	if got := r.Tiers[1].Partitions[1].CommittedOffset; got != -1 {
		t.Errorf("delay-1h/1 committed offset %d, want -1 (nothing forwarded from it yet)", got)
	}

	// The table says the same.
	out, code := runLadder(t, h.env, "inspect")
	if code != 0 || !strings.Contains(out, "2 tiers, 3 pending, 0 overdue partitions, 1 members, 1 dead-lettered, 0 warnings") {
		t.Errorf("ladder inspect exited %d:\n%s", code, out)
	}
}

// TestInspectScript runs topics/inspect.sh with the real kcat against a
// ladder whose forwarder holds the heads: peek shows the held record (the
// group's next offset, from ladder inspect) with its headers and due time in
// human time, count counts the tiers, dlq shows the reason.
func TestInspectScript(t *testing.T) {
	kcatPath := kcat(t)
	h := startHeldLadder(t)
	h.inspectJSON(t, settled)
	env := append(h.env, "KCAT="+kcatPath)

	out, code := runScript(t, env, "inspect.sh", "peek", "delay-1h", "0")
	t.Logf("inspect.sh peek delay-1h 0:\n%s", out)
	due := h.dues[0][0]
	for _, w := range []string{
		"delay-1h/0 offset 1 (the forwarders' next record, from ladder inspect)",
		"key        order-70",
		"header     ladder-target=work",
		fmt.Sprintf("header     ladder-due=%d  %s", due.UnixMilli(), due.UTC().Format("2006-01-02 15:04:05.000 UTC")),
		"header     trace-id=abc,123",
		fmt.Sprintf("release    %d  %s: ", h.now.Add(time.Hour).UnixMilli(), h.now.Add(time.Hour).UTC().Format("2006-01-02 15:04:05.000 UTC")),
		"due in 5", // 59m and some seconds, unless the test is slow
		"value      value of order-70",
	} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("inspect.sh peek (exit %d) lacks %q:\n%s", code, w, out)
		}
	}

	// Without a working ladder binary peek stops with the reason instead of
	// showing another record (offset 0, already forwarded); an explicit
	// offset needs no ladder.
	for _, bad := range []struct{ ladder, says string }{
		{"/nonexistent/ladder", `ladder binary "/nonexistent/ladder" not found`},
		{"/bin/false", "ladder inspect failed"},
	} {
		out, code = runScript(t, append(env, "LADDER="+bad.ladder), "inspect.sh", "peek", "delay-1h", "0")
		if code != 2 || strings.Contains(out, "due-now") || !strings.Contains(out, "inspect.sh: cannot find the forwarders' next offset of delay-1h/0") ||
			!strings.Contains(out, bad.says) || !strings.Contains(out, "give the offset: inspect.sh peek delay-1h 0 OFFSET") {
			t.Errorf("inspect.sh peek with LADDER=%s (exit %d):\n%s", bad.ladder, code, out)
		}
	}
	noLadder := append(env, "LADDER=/nonexistent/ladder")
	out, code = runScript(t, noLadder, "inspect.sh", "peek", "delay-dlq", "1")
	if code != 0 || !strings.Contains(out, "offset 0 (the oldest retained record: delay-dlq is not a tier of LADDER_TIERS=1m,1h)") {
		t.Errorf("inspect.sh peek delay-dlq 1 (exit %d):\n%s", code, out)
	}
	out, code = runScript(t, noLadder, "inspect.sh", "peek", "delay-1h", "0", "2")
	if code != 0 || !strings.Contains(out, "offset 2 (offset given)") || !strings.Contains(out, "key        order-80") {
		t.Errorf("inspect.sh peek with an offset (exit %d):\n%s", code, out)
	}

	out, code = runScript(t, env, "inspect.sh", "count")
	for _, w := range []string{"delay-1h/0  offsets 0..3  3 records", "delay-1h/1  offsets 0..1  1 record\n", "delay-1h total 4 records", "delay-1m total 1 record\n", "delay-dlq total 1 record\n"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("inspect.sh count (exit %d) lacks %q:\n%s", code, w, out)
		}
	}

	out, code = runScript(t, env, "inspect.sh", "dlq")
	for _, w := range []string{"key lost-target", "ladder-error=ladder-target: header is missing", "value value of lost-target"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("inspect.sh dlq (exit %d) lacks %q:\n%s", code, w, out)
		}
	}
}

// TestInspectScriptEmptyDLQ: an empty dead-letter topic is said to be
// empty, a missing one to be missing (kcat prints nothing for either).
func TestInspectScriptEmptyDLQ(t *testing.T) {
	env := []string{"KCAT=" + kcat(t), "LADDER_TIERS=" + inspectTiers}
	b := laddertest.Broker(t, 2, "delay-1m", "delay-1h", "delay-dlq")
	out, code := runScript(t, append(env, "LADDER_BROKERS="+b.Addr()), "inspect.sh", "dlq")
	if code != 0 || !strings.Contains(out, "delay-dlq: the dead-letter topic is empty") {
		t.Errorf("inspect.sh dlq of an empty topic (exit %d):\n%s", code, out)
	}
	none := laddertest.Broker(t, 1)
	out, code = runScript(t, append(env, "LADDER_BROKERS="+none.Addr()), "inspect.sh", "dlq")
	if code != 2 || !strings.Contains(out, "the dead-letter topic delay-dlq does not exist") {
		t.Errorf("inspect.sh dlq without the topic (exit %d):\n%s", code, out)
	}
}

// TestInspectWatch: --watch prints a report every interval until interrupted, then exits 0.
func TestInspectWatch(t *testing.T) {
	b := laddertest.Broker(t, 1, "delay-1s", "delay-5s", "delay-dlq")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- Main(ctx, []string{"inspect", "--json", "--watch", "100ms", "--brokers", b.Addr(), "--tiers", "1s,5s", "--group", "watch"},
			nil, out, io.Discard)
	}()
	laddertest.Eventually(t, 20*time.Second, func() bool { return strings.Count(out.String(), `"summary"`) >= 3 },
		"--watch printed %d reports", strings.Count(out.String(), `"summary"`))
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("ladder inspect --watch exited %d when interrupted, want 0", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ladder inspect --watch did not stop when interrupted")
	}
	dec := json.NewDecoder(strings.NewReader(out.String()))
	for n := 0; ; n++ {
		var r inspect.Report
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil || r.Summary.Tiers != 2 {
			t.Fatalf("report %d: %v, %+v", n, err, r.Summary)
		}
	}
}

// TestInspectUsage: bad flags exit 2 naming the flag.
func TestInspectUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect", "--watch", "-1s"}, `invalid --watch="-1s"`},
		{[]string{"inspect", "--retention-warn", "80"}, `invalid --retention-warn="80": accepted: a fraction`},
		{[]string{"inspect", "--group", ""}, `invalid --group=""`},
		{[]string{"inspect", "--tiers", "1m,1x"}, `invalid --tiers="1m,1x"`},
		{[]string{"inspect", "now"}, "unexpected arguments: now"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), tc.args, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("ladder %v: exit %d, want 2 with %q:\n%s", tc.args, code, tc.want, stderr.String())
		}
	}
}

// TestInspectScriptMutualTLS runs topics/inspect.sh with the real kcat
// against a broker that requires mutual TLS, configured only through
// LADDER_TLS_* (no KCAT_ARGS): the script hands them to kcat in a private
// config file (-F), removed when it exits. Without the client certificate
// the broker refuses kcat.
func TestInspectScriptMutualTLS(t *testing.T) {
	kcatPath := kcat(t)
	pki := laddertest.NewPKI(t)
	scan := laddertest.ScanForSecrets(t, pki.Secrets()...)
	_, k := laddertest.SecureBroker(t, laddertest.Secure{PKI: pki, Mutual: true, LogTo: scan}, 2, "delay-1m", "delay-1h", "delay-dlq")
	sc, err := k.Base()
	if err != nil {
		t.Fatal(err)
	}
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer(k.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	now := time.Now()
	due := now.Add(90 * time.Minute)
	for _, m := range []*sarama.ProducerMessage{
		{Topic: "delay-1h", Partition: 1, Key: sarama.StringEncoder("over-mtls"), Value: sarama.StringEncoder("held"), Timestamp: now,
			Headers: []sarama.RecordHeader{{Key: []byte("ladder-target"), Value: []byte("work")}, {Key: []byte("ladder-due"), Value: []byte(strconv.FormatInt(due.UnixMilli(), 10))}}},
		{Topic: "delay-1h", Partition: 1, Key: sarama.StringEncoder("second"), Value: sarama.StringEncoder("v"), Timestamp: now},
		{Topic: "delay-dlq", Partition: 0, Key: sarama.StringEncoder("bad"), Value: sarama.StringEncoder("v"), Timestamp: now,
			Headers: []sarama.RecordHeader{{Key: []byte("ladder-error"), Value: []byte("ladder-target: header is missing")}}},
	} {
		if _, _, err := p.SendMessage(m); err != nil {
			t.Fatal(err)
		}
	}

	tmp := t.TempDir() // the script's TMPDIR: its config file must not outlive it
	env := []string{"KCAT=" + kcatPath, "TMPDIR=" + tmp, "LADDER_BROKERS=" + k.Brokers[0], "LADDER_TIERS=" + inspectTiers,
		"LADDER_GROUP=inspect-mtls", "LADDER_TLS_ENABLED=true", "LADDER_TLS_CA_FILE=" + pki.CAFile}
	withCert := append(env[:len(env):len(env)], "LADDER_TLS_CERT_FILE="+pki.ClientCertFile, "LADDER_TLS_KEY_FILE="+pki.ClientKeyFile)
	run := func(env []string, args ...string) string {
		t.Helper()
		out, code := runScript(t, env, "inspect.sh", args...)
		scan.Write([]byte(out))
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Errorf("inspect.sh %s left %d files in TMPDIR: %v", args[0], len(left), left[0].Name())
		}
		if code != 0 {
			t.Errorf("inspect.sh %s over mutual TLS exited %d:\n%s", args[0], code, out)
		}
		return out
	}

	// peek takes the next offset from ladder inspect (same variables; the group never committed: the log start).
	out := run(withCert, "peek", "delay-1h", "1")
	for _, w := range []string{"delay-1h/1 offset 0 (the forwarders' next record, from ladder inspect)", "key        over-mtls",
		fmt.Sprintf("header     ladder-due=%d  %s", due.UnixMilli(), due.UTC().Format("2006-01-02 15:04:05.000 UTC"))} {
		if !strings.Contains(out, w) {
			t.Errorf("inspect.sh peek lacks %q:\n%s", w, out)
		}
	}
	out = run(withCert, "count")
	for _, w := range []string{"delay-1h/1  offsets 0..2  2 records", "delay-1h total 2 records", "delay-1m total 0 records", "delay-dlq total 1 record\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("inspect.sh count lacks %q:\n%s", w, out)
		}
	}
	out = run(withCert, "dlq")
	if !strings.Contains(out, "key bad") || !strings.Contains(out, "ladder-error=ladder-target: header is missing") {
		t.Errorf("inspect.sh dlq:\n%s", out)
	}

	// No client certificate: the broker refuses the handshake; the script says so.
	out, code := runScript(t, append(env, "KCAT_ARGS=-m 3"), "inspect.sh", "count", "delay-1h")
	scan.Write([]byte(out))
	t.Logf("inspect.sh count without the client certificate (exit %d):\n%s", code, out)
	if code != 2 || strings.Contains(out, "offsets 0..2") || !strings.Contains(out, "inspect.sh: cannot read the metadata of delay-1h: % ERROR: Failed to acquire metadata") {
		t.Errorf("inspect.sh count without the client certificate: exit %d:\n%s", code, out)
	}
}

// fakeKcat is a kcat stand-in that records its arguments and the config
// file it is given (-F), with the file's mode, in dir. Asked for metadata
// (-L) it lists one partition; it consumes nothing.
func fakeKcat(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "kcat")
	script := `#!/bin/sh
out=` + dir + `
printf '%s\n' "$@" >>"$out/argv"
case " $* " in *" -L "*) echo "  partition 0, leader 1, replicas: 1, isrs: 1" ;; esac
while [ $# -gt 0 ]; do
	if [ "$1" = -F ]; then
		cp "$2" "$out/conf"
		stat -c %a "$2" >"$out/mode"
		echo "$2" >"$out/path"
	fi
	shift
done
`
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInspectScriptSASLConfig checks the config file topics/inspect.sh gives
// kcat for SASL (kcat cannot log in with SASL to the embedded broker, see
// BROKER.md): the LADDER_SASL_* and LADDER_TLS_* settings mapped to
// librdkafka properties, the password in the file (mode 0600, removed on
// exit) and never on kcat's command line; bad settings refused by name.
func TestInspectScriptSASLConfig(t *testing.T) {
	const pw = "pw-kcat-Hq7#z=x"
	scan := laddertest.ScanForSecrets(t, pw)
	base := []string{"LADDER_BROKERS=kafka-0:9093"}
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		conf []string
	}{
		{"SCRAM over TLS, password from the environment",
			[]string{"LADDER_SASL_MECHANISM=scram-sha-512", "LADDER_SASL_USERNAME=svc-ladder", "LADDER_SASL_PASSWORD=" + pw,
				"LADDER_TLS_ENABLED=true", "LADDER_TLS_CA_FILE=" + pwFile},
			[]string{"security.protocol=SASL_SSL", "ssl.ca.location=" + pwFile, "sasl.mechanisms=SCRAM-SHA-512", "sasl.username=svc-ladder", "sasl.password=" + pw}},
		{"PLAIN without TLS, password from a file",
			[]string{"LADDER_SASL_MECHANISM=PLAIN", "LADDER_SASL_USERNAME=u", "LADDER_SASL_PASSWORD_FILE=" + pwFile},
			[]string{"security.protocol=SASL_PLAINTEXT", "sasl.mechanisms=PLAIN", "sasl.username=u", "sasl.password=" + pw}},
		{"SCRAM-SHA-256 with mutual TLS",
			[]string{"LADDER_SASL_MECHANISM=SCRAM-SHA-256", "LADDER_SASL_USERNAME=u", "LADDER_SASL_PASSWORD=" + pw, "LADDER_TLS_ENABLED=1",
				"LADDER_TLS_CERT_FILE=/c.pem", "LADDER_TLS_KEY_FILE=/k.pem"},
			[]string{"security.protocol=SASL_SSL", "ssl.certificate.location=/c.pem", "ssl.key.location=/k.pem", "sasl.mechanisms=SCRAM-SHA-256", "sasl.username=u", "sasl.password=" + pw}},
		{"TLS without verification",
			[]string{"LADDER_TLS_ENABLED=true", "LADDER_TLS_INSECURE_SKIP_VERIFY=true"},
			[]string{"security.protocol=SSL", "enable.ssl.certificate.verification=false", "ssl.endpoint.identification.algorithm=none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tmp := t.TempDir()
			env := append(append(base[:len(base):len(base)], "KCAT="+fakeKcat(t, dir), "TMPDIR="+tmp), tc.env...)
			out, code := runScript(t, env, "inspect.sh", "dlq", "3")
			scan.Write([]byte(out))
			if code != 0 {
				t.Fatalf("inspect.sh dlq exited %d:\n%s", code, out)
			}
			read := func(name string) string {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatalf("the fake kcat recorded no %s: %v", name, err)
				}
				return strings.TrimSpace(string(b))
			}
			conf, argv, mode, path := read("conf"), read("argv"), read("mode"), read("path")
			if got := strings.Split(conf, "\n"); strings.Join(got, "|") != strings.Join(tc.conf, "|") {
				t.Errorf("config file:\n%s\nwant:\n%s", conf, strings.Join(tc.conf, "\n"))
			}
			scan.Write([]byte(argv))
			if strings.Contains(argv, pw) || !strings.Contains(argv, "-F\n"+path+"\n-b\nkafka-0:9093\n-C") {
				t.Errorf("kcat's arguments:\n%s", argv)
			}
			if mode != "600" || !strings.HasPrefix(path, tmp+"/") {
				t.Errorf("config file %s has mode %s, want 600 in TMPDIR %s", path, mode, tmp)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("config file %s outlived the script: %v", path, err)
			}
		})
	}

	// Without TLS or SASL there is no file; bad settings are refused, naming the variable and not the password.
	dir := t.TempDir()
	out, code := runScript(t, append(base, "KCAT="+fakeKcat(t, dir)), "inspect.sh", "dlq")
	if _, err := os.Stat(filepath.Join(dir, "conf")); code != 0 || err == nil {
		t.Errorf("plaintext: exit %d, config file %v:\n%s", code, err, out)
	}
	for _, tc := range []struct {
		env  []string
		says string
	}{
		{[]string{"LADDER_SASL_MECHANISM=GSSAPI"}, `invalid LADDER_SASL_MECHANISM="GSSAPI"`},
		{[]string{"LADDER_SASL_MECHANISM=PLAIN", "LADDER_SASL_PASSWORD=" + pw}, "invalid LADDER_SASL_USERNAME"},
		{[]string{"LADDER_SASL_MECHANISM=PLAIN", "LADDER_SASL_USERNAME=u"}, "invalid LADDER_SASL_PASSWORD"},
		{[]string{"LADDER_SASL_MECHANISM=PLAIN", "LADDER_SASL_USERNAME=u", "LADDER_SASL_PASSWORD=" + pw, "LADDER_SASL_PASSWORD_FILE=" + pwFile}, "not both"},
		{[]string{"LADDER_SASL_MECHANISM=PLAIN", "LADDER_SASL_USERNAME=u", "LADDER_SASL_PASSWORD=" + pw + " "}, "LADDER_SASL_PASSWORD begins or ends with a blank"},
		{[]string{"LADDER_TLS_CA_FILE=/ca.pem"}, `invalid LADDER_TLS_ENABLED="": accepted: true when LADDER_TLS_CA_FILE is set`},
		{[]string{"LADDER_TLS_ENABLED=yes"}, `invalid LADDER_TLS_ENABLED="yes"`},
		{[]string{"LADDER_TLS_ENABLED=true", "LADDER_TLS_CERT_FILE=/c.pem"}, "invalid LADDER_TLS_KEY_FILE"},
		{[]string{"LADDER_TLS_ENABLED=true", "LADDER_TLS_SERVER_NAME=kafka.internal"}, `LADDER_TLS_SERVER_NAME="kafka.internal" has no kcat (librdkafka) equivalent`},
	} {
		dir := t.TempDir()
		out, code := runScript(t, append(append(base[:len(base):len(base)], "KCAT="+fakeKcat(t, dir)), tc.env...), "inspect.sh", "dlq")
		scan.Write([]byte(out))
		if _, err := os.Stat(filepath.Join(dir, "argv")); code != 2 || !strings.Contains(out, tc.says) || err == nil {
			t.Errorf("%v: exit %d (kcat run: %v), want 2 and %q:\n%s", tc.env, code, err == nil, tc.says, out)
		}
	}
}
