package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/devbroker"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/laddertest"
)

// TestConfigRedactsPassword: `ladder config` shows the SASL settings with
// the password as ***, and warns about insecure ones.
func TestConfigRedactsPassword(t *testing.T) {
	const pw = "pw-config-Vb7mQ"
	scan := laddertest.ScanForSecrets(t, pw)
	t.Setenv("LADDER_SASL_MECHANISM", "PLAIN")
	t.Setenv("LADDER_SASL_USERNAME", "alice")
	t.Setenv("LADDER_SASL_PASSWORD", pw)
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"config"}, nil, &stdout, &stderr)
	scan.Write(stdout.Bytes())
	scan.Write(stderr.Bytes())
	if code != 0 {
		t.Fatalf("ladder config: exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"LADDER_SASL_MECHANISM            PLAIN", "LADDER_SASL_USERNAME             alice", "LADDER_SASL_PASSWORD             ***"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("ladder config lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "warning: LADDER_SASL_MECHANISM=PLAIN without LADDER_TLS_ENABLED=true") {
		t.Errorf("no warning about PLAIN in clear text: %q", stderr.String())
	}
}

// TestSecurityFlags: every Kafka command takes the SASL and TLS flags, bad
// values are refused naming the flag, and there is no --sasl-password (a
// command line shows in ps).
func TestSecurityFlags(t *testing.T) {
	const pw = "pw-flags-Lq2wT"
	scan := laddertest.ScanForSecrets(t, pw)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := Main(context.Background(), args, strings.NewReader(""), &out, &out)
		scan.Write(out.Bytes())
		return code, out.String()
	}
	for _, cmd := range [][]string{{"run"}, {"schedule", "--topic", "work", "--delay", "1m"}, {"inspect"},
		{"topics", "plan", "-f", "spec.yaml"}, {"drain", "--tier", "delay-1m"}, {"replay"}} {
		with := func(flags ...string) []string { return append(append([]string{}, cmd...), flags...) }
		if code, out := run(with("--sasl-password", pw)...); code != 2 || !strings.Contains(out, "flag provided but not defined: -sasl-password") {
			t.Errorf("ladder %s --sasl-password: exit %d: %s", cmd[0], code, out)
		}
		if code, out := run(with("--sasl-mechanism", "KERBEROS")...); code != 2 || !strings.Contains(out, `invalid --sasl-mechanism="KERBEROS": accepted: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512`) {
			t.Errorf("ladder %s --sasl-mechanism KERBEROS: exit %d: %s", cmd[0], code, out)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "u", "--sasl-password-file", missing}, "invalid --sasl-password-file=" + fmt.Sprintf("%q", missing)},
		{[]string{"--sasl-username", "u"}, "invalid LADDER_SASL_MECHANISM"},
		{[]string{"--tls-ca-file", pwFile}, "invalid LADDER_TLS_ENABLED"},
		{[]string{"--tls", "--tls-ca-file", pwFile}, "invalid --tls-ca-file=" + fmt.Sprintf("%q", pwFile) + ": accepted: a PEM file of CA certificates (found no certificate in it)"},
		{[]string{"--tls", "--tls-cert-file", pwFile}, "invalid LADDER_TLS_KEY_FILE"},
	} {
		args := append([]string{"inspect"}, tc.args...)
		if code, out := run(args...); code != 2 || !strings.Contains(out, tc.says) {
			t.Errorf("ladder %s: exit %d, want 2 and %q: %s", strings.Join(args, " "), code, tc.says, out)
		}
	}
}

// secureEnv is the environment of a ladder process that connects to the
// broker of k, password from LADDER_SASL_PASSWORD.
func secureEnv(k kafkaconf.Config) []string {
	env := []string{"LADDER_BROKERS=" + strings.Join(k.Brokers, ","), "LADDER_TIERS=" + e2eTiers, "LADDER_GROUP=e2e",
		"LADDER_RESUME_LEAD=200ms", "LADDER_HTTP_ADDR="}
	if k.SASL.Mechanism != "" {
		env = append(env, "LADDER_SASL_MECHANISM="+k.SASL.Mechanism, "LADDER_SASL_USERNAME="+k.SASL.Username,
			"LADDER_SASL_PASSWORD="+string(k.SASL.Password))
	}
	if k.TLS.Enabled {
		env = append(env, "LADDER_TLS_ENABLED=true", "LADDER_TLS_CA_FILE="+k.TLS.CAFile)
		if k.TLS.CertFile != "" {
			env = append(env, "LADDER_TLS_CERT_FILE="+k.TLS.CertFile, "LADDER_TLS_KEY_FILE="+k.TLS.KeyFile)
		}
	}
	return env
}

// runBinary runs the ladder binary to completion, recording its output in
// scan, and returns the exit code, output and duration.
func runBinary(t *testing.T, scan *laddertest.SecretScan, env []string, args ...string) (int, string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(append(os.Environ(), "LADDER_LOG_FORMAT=json"), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	scan.Write(out)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out), d
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out), d
	}
	t.Fatalf("ladder %s: %v", strings.Join(args, " "), err)
	return -1, "", d
}

// scanProc records a started process's output in scan when the test ends
// (registered after ScanForSecrets, so it runs before the scan).
func scanProc(t *testing.T, scan *laddertest.SecretScan, p *proc) {
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		p.done <- nil // for start's own cleanup
		scan.Write([]byte(p.out.String()))
	})
}

// TestSecureCommands runs the built binary against a broker that requires
// SCRAM-SHA-512 over mutual TLS: `ladder run` forwards what `ladder
// schedule` scheduled (password from the environment, then from
// --sasl-password-file), `ladder inspect` reports; with a wrong password
// schedule, inspect and topics exit 1 at once with the clear error. No
// password or private key appears in any output.
func TestSecureCommands(t *testing.T) {
	const right, wrong = "pw-cli-Right-Ze4r", "pw-cli-Wrong-Py9s"
	pki := laddertest.NewPKI(t)
	scan := laddertest.ScanForSecrets(t, append(pki.Secrets(), right, wrong)...)
	l := e2eLadder(t)
	_, k := laddertest.SecureBroker(t, laddertest.Secure{PKI: pki, Mutual: true, LogTo: scan,
		Users: []devbroker.User{{Mechanism: "SCRAM-SHA-512", Name: "svc-ladder", Password: right}}},
		2, append(append(l.Topics(), l.DLQTopic(), l.ControlTopic()), "work")...)
	env := secureEnv(k)
	scanProc(t, scan, start(t, env, "run"))
	work := laddertest.CollectWith(t, k, "work")

	if code, out, _ := runBinary(t, scan, env, "schedule", "--topic", "work", "--delay", "1s", "--key", "from-env", "hello"); code != 0 || !strings.Contains(out, "via delay-1s") {
		t.Fatalf("ladder schedule: exit %d: %s", code, out)
	}
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(right+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fileEnv := withoutPassword(env)
	if code, out, _ := runBinary(t, scan, fileEnv, "schedule", "--sasl-password-file", pwFile, "--topic", "work", "--delay", "1s", "--key", "from-file", "hello"); code != 0 {
		t.Fatalf("ladder schedule --sasl-password-file: exit %d: %s", code, out)
	}
	recs := work.WaitDistinct(t, 2, 30*time.Second)
	if got := laddertest.Distinct(recs); string(got["from-file"].Value) != "hello" {
		t.Errorf("arrived: %v", got)
	}
	if code, out, _ := runBinary(t, scan, env, "inspect", "--json"); code != 0 || !strings.Contains(out, "delay-1s") {
		t.Errorf("ladder inspect: exit %d: %s", code, out)
	}

	bad := append(withoutPassword(env), "LADDER_SASL_PASSWORD="+wrong)
	says := `SASL authentication failed for user \"svc-ladder\" with mechanism SCRAM-SHA-512`
	for _, args := range [][]string{
		{"schedule", "--topic", "work", "--delay", "1s", "x"},
		{"inspect"},
		{"topics", "plan", "-f", "../../topics/topics.yaml", "--allow-other-ladder"}, // the spec is 1m..6h, LADDER_TIERS the e2e tiers
	} {
		code, out, d := runBinary(t, scan, bad, args...)
		if code != 1 || !strings.Contains(strings.ReplaceAll(out, `\"`, `"`), strings.ReplaceAll(says, `\"`, `"`)) {
			t.Errorf("ladder %s with a wrong password: exit %d, want 1 and %q:\n%s", args[0], code, says, out)
		}
		if d > 10*time.Second {
			t.Errorf("ladder %s with a wrong password took %s to fail: want at once", args[0], d)
		}
		t.Logf("ladder %s with a wrong password: exit %d after %s", args[0], code, d.Round(time.Millisecond))
	}
	noCert := []string{}
	for _, e := range env {
		if !strings.HasPrefix(e, "LADDER_TLS_CERT_FILE=") && !strings.HasPrefix(e, "LADDER_TLS_KEY_FILE=") {
			noCert = append(noCert, e)
		}
	}
	if code, out, _ := runBinary(t, scan, noCert, "inspect"); code != 1 || !strings.Contains(out, "TLS handshake failed") {
		t.Errorf("ladder inspect without a client certificate: exit %d: %s", code, out)
	}
}

func withoutPassword(env []string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, "LADDER_SASL_PASSWORD=") {
			out = append(out, e)
		}
	}
	return out
}

// startSecureDev runs `ladder dev` with env (its broker requires what the
// clients are configured with) and returns its address.
func startSecureDev(t *testing.T, scan *laddertest.SecretScan, env []string, args ...string) string {
	t.Helper()
	p := start(t, env, append([]string{"dev", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--tiers", e2eTiers,
		"--partitions", "2", "--topics", "work"}, args...)...)
	scanProc(t, scan, p)
	var addr string
	laddertest.Eventually(t, 30*time.Second, func() bool {
		m := bannerAddr.FindStringSubmatch(p.out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil && strings.Contains(p.out.String(), "forwarders ")
	}, "ladder dev printed no address:\n%s", p.out)
	return addr
}

// TestDevSecure: `ladder dev` with LADDER_SASL_* and a broker certificate
// runs a broker that requires that user over TLS, and its forwarders and
// `ladder schedule` connect with the same environment.
func TestDevSecure(t *testing.T) {
	const pw = "pw-dev-Kd3xW"
	pki := laddertest.NewPKI(t)
	scan := laddertest.ScanForSecrets(t, append(pki.Secrets(), pw)...)
	k := kafkaconf.Config{KafkaVersion: "3.0.0", ClientID: "ladder-test",
		SASL: kafkaconf.SASL{Mechanism: "SCRAM-SHA-256", Username: "dev", Password: pw},
		TLS:  kafkaconf.TLS{Enabled: true, CAFile: pki.CAFile}}
	env := append(secureEnv(k)[1:], "LADDER_WORKAHEAD_ENABLED=false") // the address is the dev broker's
	addr := startSecureDev(t, scan, env, "--broker-tls-cert", pki.ServerCertFile, "--broker-tls-key", pki.ServerKeyFile)
	k.Brokers = []string{addr}
	work := laddertest.CollectWith(t, k, "work")
	if code, out, _ := runBinary(t, scan, append(env, "LADDER_BROKERS="+addr), "schedule", "--topic", "work", "--delay", "1s", "--key", "dev", "hello"); code != 0 {
		t.Fatalf("ladder schedule: exit %d: %s", code, out)
	}
	work.WaitDistinct(t, 1, 30*time.Second)
	if code, out, _ := runBinary(t, scan, []string{"LADDER_BROKERS=" + addr, "LADDER_TIERS=" + e2eTiers}, "inspect"); code != 1 {
		t.Errorf("plaintext inspect of a TLS dev broker: exit %d: %s", code, out)
	}
}

// TestKcatTLS: kcat (librdkafka) schedules into a tier of a TLS-only
// broker and reads the work topic over TLS, verifying the broker with the
// CA file; the forwarders in between are `ladder dev`'s, over TLS too.
// (kcat cannot log in with SASL to the embedded broker: librdkafka wants
// SaslHandshake v0.)
func TestKcatTLS(t *testing.T) {
	kc := kcat(t)
	pki := laddertest.NewPKI(t)
	scan := laddertest.ScanForSecrets(t, pki.Secrets()...)
	env := []string{"LADDER_TLS_ENABLED=true", "LADDER_TLS_CA_FILE=" + pki.CAFile, "LADDER_GROUP=e2e", "LADDER_RESUME_LEAD=200ms",
		"LADDER_WORKAHEAD_ENABLED=false"} // nothing released early: the due time is checked
	addr := startSecureDev(t, scan, env, "--broker-tls-cert", pki.ServerCertFile, "--broker-tls-key", pki.ServerKeyFile)
	tlsArgs := []string{"-b", addr, "-X", "security.protocol=SSL", "-X", "ssl.ca.location=" + pki.CAFile}

	due := time.Now().Add(2 * time.Second).UnixMilli()
	produce := exec.Command(kc, append(append([]string{"-P"}, tlsArgs...), "-t", "delay-1s", "-k", "over-tls",
		"-H", "ladder-target=work", "-H", fmt.Sprintf("ladder-due=%d", due))...)
	produce.Stdin = strings.NewReader("hello over TLS\n")
	out, err := produce.CombinedOutput()
	scan.Write(out)
	if err != nil {
		t.Fatalf("kcat -P over TLS: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	consume := exec.CommandContext(ctx, kc, append(append([]string{"-C"}, tlsArgs...), "-t", "work", "-c", "1", "-f", "%T|%k|%s\n")...)
	out, err = consume.Output()
	scan.Write(out)
	if err != nil {
		t.Fatalf("kcat -C over TLS: %v\n%s", err, out)
	}
	parts := strings.SplitN(strings.TrimSpace(string(out)), "|", 3)
	var ts int64
	if len(parts) == 3 {
		fmt.Sscan(parts[0], &ts)
	}
	if len(parts) != 3 || parts[1] != "over-tls" || parts[2] != "hello over TLS" || ts < due {
		t.Errorf("kcat read %q, want over-tls|hello over TLS at or after %d", out, due)
	}

	// Without the CA, kcat refuses the broker's certificate.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	noCA := exec.CommandContext(ctx2, kc, "-L", "-b", addr, "-X", "security.protocol=SSL", "-m", "5")
	out, err = noCA.CombinedOutput()
	scan.Write(out)
	if err == nil {
		t.Errorf("kcat without the CA listed the TLS broker:\n%s", out)
	}
}
