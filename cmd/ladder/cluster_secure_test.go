package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/laddertest/realkafka"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

// securedCluster is a three-node cluster whose clients log in with SASL
// over mutual TLS and need ACLs: admin and kcat are super users, ladder
// (the forwarder's principal) may only do what ACLs allow. admin and
// ladder log in with SCRAM-SHA-512; kcat with PLAIN, and kcat-scram with
// SCRAM-SHA-256 (librdkafka before 2.6.1 cannot do SCRAM with Kafka 4).
type securedCluster struct {
	c    *realkafka.Cluster
	pki  *laddertest.PKI
	pw   map[string]string // user: password
	scan *laddertest.SecretScan
}

func newSecuredCluster(t *testing.T) *securedCluster {
	t.Helper()
	laddertest.NeedsReal(t)
	s := &securedCluster{pki: laddertest.NewPKI(t),
		pw: map[string]string{"admin": "pw-admin-Vq7u", "ladder": "pw-ladder-Hs3k", "kcat": "pw-kcat-Rn8d", "kcat-scram": "pw-kcat-scram-Wd2g"}}
	s.scan = laddertest.ScanForSecrets(t, append(s.pki.Secrets(), s.pw["admin"], s.pw["ladder"], s.pw["kcat"], s.pw["kcat-scram"])...)
	s.c = laddertest.Cluster(t, 3, realkafka.Config{
		Users: []realkafka.User{{Mechanism: "SCRAM-SHA-512", Name: "admin", Password: s.pw["admin"]},
			{Mechanism: "SCRAM-SHA-512", Name: "ladder", Password: s.pw["ladder"]},
			{Mechanism: "PLAIN", Name: "kcat", Password: s.pw["kcat"]},
			{Mechanism: "SCRAM-SHA-256", Name: "kcat-scram", Password: s.pw["kcat-scram"]}},
		TLS:        &realkafka.TLS{CertFile: s.pki.ServerCertFile, KeyFile: s.pki.ServerKeyFile, CAFile: s.pki.CAFile, ClientAuth: true},
		Authorizer: true, SuperUsers: []string{"User:admin", "User:kcat", "User:kcat-scram"},
	})
	t.Cleanup(func() { s.c.WriteLogs(s.scan) }) // before the cluster stops: its logs are scanned too
	return s
}

// kafka is the client configuration of user (SCRAM-SHA-512 over mutual TLS).
func (s *securedCluster) kafka(user string) kafkaconf.Config {
	return kafkaconf.Config{Brokers: s.c.Addrs(), KafkaVersion: "3.0.0", ClientID: "ladder-test-" + user,
		SASL: kafkaconf.SASL{Mechanism: kafkaconf.MechanismSCRAMSHA512, Username: user, Password: kafkaconf.Secret(s.pw[user])},
		TLS:  kafkaconf.TLS{Enabled: true, CAFile: s.pki.CAFile, CertFile: s.pki.ClientCertFile, KeyFile: s.pki.ClientKeyFile}}
}

func (s *securedCluster) saramaConfig(t *testing.T, user string) *sarama.Config {
	t.Helper()
	sc, err := s.kafka(user).Base()
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// ladder makes the topics of a ladder with prefix and its targets (as
// admin) and lets User:ladder forward it: read and write its tiers,
// dead-letter and control topics, write the allowed targets, join any
// group, use any transactional id.
func (s *securedCluster) ladder(t *testing.T, prefix string, allowed []string, others ...string) *tier.Ladder {
	t.Helper()
	l, err := tier.Parse(e2eTiers, prefix)
	if err != nil {
		t.Fatal(err)
	}
	laddertest.ClusterBroker(s.c, s.saramaConfig(t, "admin")).EnsureLadder(t, l, 3, append(allowed, others...)...)
	admin, err := sarama.NewClusterAdmin(s.c.Addrs(), s.saramaConfig(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	allow := func(typ sarama.AclResourceType, name string, pattern sarama.AclResourcePatternType, ops ...sarama.AclOperation) {
		ra := &sarama.ResourceAcls{Resource: sarama.Resource{ResourceType: typ, ResourceName: name, ResourcePatternType: pattern}}
		for _, op := range ops {
			ra.Acls = append(ra.Acls, &sarama.Acl{Principal: "User:ladder", Host: "*", Operation: op, PermissionType: sarama.AclPermissionAllow})
		}
		if err := admin.CreateACLs([]*sarama.ResourceAcls{ra}); err != nil {
			t.Fatalf("ACLs %v on %s: %v", ops, name, err)
		}
	}
	allow(sarama.AclResourceTopic, prefix, sarama.AclPatternPrefixed, sarama.AclOperationRead, sarama.AclOperationWrite, sarama.AclOperationDescribe)
	for _, topic := range allowed {
		allow(sarama.AclResourceTopic, topic, sarama.AclPatternLiteral, sarama.AclOperationWrite, sarama.AclOperationDescribe)
	}
	allow(sarama.AclResourceGroup, "*", sarama.AclPatternLiteral, sarama.AclOperationRead, sarama.AclOperationDescribe)
	allow(sarama.AclResourceTransactionalID, "*", sarama.AclPatternLiteral, sarama.AclOperationWrite, sarama.AclOperationDescribe)
	return l
}

// run starts `ladder run` as User:ladder with the passwords from the
// environment, and extra settings.
func (s *securedCluster) run(t *testing.T, prefix, group string, eos bool, extra ...string) *proc {
	t.Helper()
	k := s.kafka("ladder")
	env := append(secureEnv(k), "LADDER_TOPIC_PREFIX="+prefix, "LADDER_GROUP="+group, "LADDER_HTTP_ADDR=127.0.0.1:0")
	env = append(env, extra...)
	if eos {
		env = append(env, "LADDER_EXACTLY_ONCE=true", "LADDER_TRANSACTIONAL_ID="+group)
	}
	p := start(t, env, "run")
	scanProc(t, s.scan, p)
	return p
}

// TestClusterSecured runs ladder against a three-node cluster that wants
// SCRAM over mutual TLS and enforces ACLs, with kcat (librdkafka: it can
// log in with SCRAM to Apache Kafka) as the independent client.
func TestClusterSecured(t *testing.T) {
	kc := kcat(t)
	s := newSecuredCluster(t)

	t.Run("kcat over SASL and mutual TLS", func(t *testing.T) {
		s.ladder(t, "kc-", []string{"kc-work"})
		s.run(t, "kc-", "kc", false)
		login := func(mechanism, user, password string) []string {
			return []string{"-b", s.c.Bootstrap(), "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=" + mechanism,
				"-X", "sasl.username=" + user, "-X", "sasl.password=" + password, "-X", "ssl.ca.location=" + s.pki.CAFile,
				"-X", "ssl.certificate.location=" + s.pki.ClientCertFile, "-X", "ssl.key.location=" + s.pki.ClientKeyFile}
		}
		args := login("PLAIN", "kcat", s.pw["kcat"])
		due := time.Now().Add(2 * time.Second).UnixMilli()
		produce := exec.Command(kc, append(append([]string{"-P"}, args...), "-t", "kc-1s", "-k", "over-sasl",
			"-H", "ladder-target=kc-work", "-H", fmt.Sprintf("ladder-due=%d", due), "-H", "trace-id=k1")...)
		produce.Stdin = strings.NewReader("hello over SASL and TLS\n")
		out, err := produce.CombinedOutput()
		s.scan.Write(out)
		if err != nil {
			t.Fatalf("kcat -P: %v\n%s", err, out)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		consume := exec.CommandContext(ctx, kc, append(append([]string{"-C"}, args...), "-t", "kc-work", "-o", "beginning",
			"-c", "1", "-f", "%T|%k|%s|%h\n")...)
		out, err = consume.Output()
		s.scan.Write(out)
		if err != nil {
			t.Fatalf("kcat -C: %v\n%s", err, out)
		}
		parts := strings.SplitN(strings.TrimSpace(string(out)), "|", 4)
		var ts int64
		if len(parts) == 4 {
			fmt.Sscan(parts[0], &ts)
		}
		if len(parts) != 4 || parts[1] != "over-sasl" || parts[2] != "hello over SASL and TLS" || ts < due ||
			!strings.Contains(parts[3], "trace-id=k1") {
			t.Errorf("kcat read %q, want over-sasl|hello over SASL and TLS|...trace-id=k1 at or after %d", out, due)
		}
		t.Logf("kcat (PLAIN, mutual TLS) scheduled into kc-1s; ladder run (SCRAM-SHA-512, ACLs) delivered it %d ms after its due time: %s",
			ts-due, strings.TrimSpace(string(out)))

		metadata := func(args []string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, kc, append(append([]string{"-L"}, args...), "-m", "10")...).CombinedOutput()
			s.scan.Write(out)
			return string(out), err
		}
		// A wrong password: librdkafka says so.
		if out, err := metadata(login("PLAIN", "kcat", "wrong-"+s.pw["kcat"][:3])); err == nil || !strings.Contains(out, "Authentication failed") {
			t.Errorf("kcat -L with a wrong password: %v\n%s", err, out)
		}
		// SCRAM: librdkafka before 2.6.1 fails against Kafka 4 (librdkafka
		// PR #4895; kcat issue #462), with the right password.
		out2, err := metadata(login("SCRAM-SHA-256", "kcat-scram", s.pw["kcat-scram"]))
		version := librdkafkaVersion(t, kc)
		if before261(version) {
			if err == nil || !strings.Contains(out2, "Authentication failed") {
				t.Errorf("kcat with librdkafka %s logged in with SCRAM to Kafka %s, which librdkafka before 2.6.1 cannot: %v\n%s",
					version, realkafka.Version, err, out2)
			}
			t.Logf("as known: kcat with librdkafka %s cannot log in with SCRAM-SHA-256 to Kafka %s (the right password): %s",
				version, realkafka.Version, firstLine(out2))
		} else if err != nil {
			t.Errorf("kcat (librdkafka %s) with SCRAM-SHA-256: %v\n%s", version, err, out2)
		}
	})

	for i, m := range clusterModes {
		t.Run("forbidden targets/"+m.name, func(t *testing.T) {
			testForbiddenTargets(t, s, fmt.Sprintf("acl%d-", i), m.eos)
		})
	}
}

// forbiddenTimeout is the forwarder's LADDER_TARGET_TIMEOUT in
// testForbiddenTargets: how long a record for a target it may not write
// waits before it is dead-lettered.
const forbiddenTimeout = 5 * time.Second

// testForbiddenTargets: User:ladder may write target allowed but not
// target secret (no ACL at all) nor readonly (Read and Describe, no Write).
// Records for those two, mixed in the same tier partitions with records
// for allowed, are dead-lettered with reason not_authorized within a
// bounded time, and every record for allowed is delivered (in exactly-once
// mode once), none early, and nothing reaches secret or readonly. The
// targets are named outside the ladder's prefix: User:ladder may write
// every topic with the prefix.
func testForbiddenTargets(t *testing.T, s *securedCluster, prefix string, eos bool) {
	allowed, secret, readonly := "to-"+prefix+"allowed", "to-"+prefix+"secret", "to-"+prefix+"readonly"
	l := s.ladder(t, prefix, []string{allowed}, secret, readonly)
	admin, err := sarama.NewClusterAdmin(s.c.Addrs(), s.saramaConfig(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateACLs([]*sarama.ResourceAcls{{Resource: sarama.Resource{ResourceType: sarama.AclResourceTopic, ResourceName: readonly,
		ResourcePatternType: sarama.AclPatternLiteral}, Acls: []*sarama.Acl{{Principal: "User:ladder", Host: "*",
		Operation: sarama.AclOperationRead, PermissionType: sarama.AclPermissionAllow}}}}); err != nil {
		t.Fatal(err)
	}

	adminK := s.kafka("admin")
	var delivered, dlq *laddertest.Collector
	if eos {
		delivered = laddertest.CollectCommittedWith(t, adminK, allowed)
		dlq = laddertest.CollectCommittedWith(t, adminK, l.DLQTopic())
	} else {
		delivered = laddertest.CollectWith(t, adminK, allowed)
		dlq = laddertest.CollectWith(t, adminK, l.DLQTopic())
	}
	p := s.run(t, prefix, prefix+"group", eos, "LADDER_TARGET_TIMEOUT="+forbiddenTimeout.String())
	metrics := "http://" + httpAddr(t, p) + "/metrics"
	laddertest.Eventually(t, 60*time.Second, func() bool { return strings.Contains(p.out.String(), "partitions assigned") },
		"ladder run was assigned no partitions:\n%s", p.out)

	sch, err := schedule.New(schedule.Config{Ladder: l, Kafka: adminK, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer sch.Close()
	due := time.Now().Add(2 * time.Second)
	want, forbidden := map[string]time.Time{}, map[string]string{}
	var batch []schedule.Message
	for i := range 220 {
		key, target := fmt.Sprintf("k%03d", i), allowed
		switch i % 22 {
		case 5:
			target = secret
		case 16:
			target = readonly
		}
		if target == allowed {
			want[key] = due.Truncate(time.Millisecond)
		} else {
			forbidden[key] = target
		}
		batch = append(batch, schedule.Message{Topic: target, Key: []byte(key), Value: []byte("v-" + key), At: due})
	}
	if err := sch.ScheduleBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}

	const bound = time.Minute
	recs, ok := delivered.WaitFor(bound, func(rs []laddertest.Received) bool { return len(laddertest.Distinct(rs)) >= len(want) })
	dls, dlOK := dlq.WaitFor(bound, func(rs []laddertest.Received) bool { return len(laddertest.Distinct(rs)) >= len(forbidden) })
	if !dlOK || !ok {
		t.Fatalf("within %s, %d of %d records for a forbidden target were dead-lettered and %d of %d for %s delivered: "+
			"the forwarder must dead-letter a record its principal may not write (reason not_authorized) and keep forwarding the rest",
			bound, len(laddertest.Distinct(dls)), len(forbidden), len(laddertest.Distinct(recs)), len(want), allowed)
	}
	c := count(recs, want)
	if c.lost > 0 || c.early > 0 {
		t.Errorf("%s", c)
	}
	// The records for allowed do not wait for the parked ones of their
	// tier partitions: every one arrives before the first dead letter
	// (which comes LADDER_TARGET_TIMEOUT after its record parked).
	var lastDelivered time.Time
	for _, r := range laddertest.Distinct(recs) {
		if r.At.After(lastDelivered) {
			lastDelivered = r.At
		}
	}
	// Both refusals: secret's metadata is refused (no Describe), readonly's
	// writes (its metadata is readable). Each dead letter waited the timeout.
	var firstLate, lastLate time.Duration
	var firstDead time.Time
	errorOf := map[string]string{}
	for key, r := range laddertest.Distinct(dls) {
		if firstDead.IsZero() || r.At.Before(firstDead) {
			firstDead = r.At
		}
		target, ok := forbidden[key]
		if !ok {
			t.Errorf("%s dead-lettered, but its target %s may be written", key, r.Headers[envelope.Target])
			continue
		}
		msg := r.Headers[envelope.Error]
		errorOf[target] = msg
		if r.Headers[envelope.Target] != target || !strings.Contains(msg, target) || !strings.Contains(strings.ToLower(msg), "authoriz") {
			t.Errorf("dead letter %s: target %q, ladder-error %q; want %s and a ladder-error naming it and saying it is not authorized",
				key, r.Headers[envelope.Target], msg, target)
		}
		waited := r.At.Sub(due)
		if waited < forbiddenTimeout-time.Second {
			t.Errorf("%s (target %s) dead-lettered %s after its due time, before LADDER_TARGET_TIMEOUT (%s)", key, target, waited, forbiddenTimeout)
		}
		if firstLate == 0 || waited < firstLate {
			firstLate = waited
		}
		lastLate = max(lastLate, waited)
	}
	if !lastDelivered.Before(firstDead) {
		t.Errorf("the last record for %s arrived %s after the first dead letter: records waited for the parked ones of their partition",
			allowed, lastDelivered.Sub(firstDead))
	}
	for _, topic := range []string{secret, readonly} {
		if n := s.endOffsets(t, topic); n != 0 {
			t.Errorf("%d records reached %s, which User:ladder may not write", n, topic)
		}
	}
	// The counter moves when the acknowledgement reaches the forwarder,
	// which may be after a consumer sees the dead letter.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, body := httpGet(t, metrics)
		byReason, _ := laddertest.MetricValue(body, "ladder_dead_lettered_records_total", `reason="not_authorized"`)
		if byReason >= float64(len(forbidden)) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf(`ladder_dead_lettered_records_total{reason="not_authorized"} = %v, want %d`, byReason, len(forbidden))
			break
		}
	}
	// The forwarder learns from the metadata that it may not write
	// readonly (the operations the broker authorizes) and produces
	// nothing to it: no produce fails, no transaction aborts.
	_, body := httpGet(t, metrics)
	produceErrors, _ := laddertest.MetricValue(body, "ladder_produce_errors_total")
	aborted, _ := laddertest.MetricValue(body, "ladder_transactions_total", `outcome="aborted"`)
	if produceErrors != 0 || aborted != 0 {
		t.Errorf("ladder_produce_errors_total %v, ladder_transactions_total{outcome=\"aborted\"} %v: want 0, nothing produced to a target it may not write",
			produceErrors, aborted)
	}
	if eos {
		laddertest.Eventually(t, 30*time.Second, func() bool { return strings.Contains(p.out.String(), "forwarder started") }, "no start logged")
		if err := p.stop(t, syscall.SIGTERM, 60*time.Second); err != nil {
			t.Errorf("ladder run exited with %v", err)
		}
		if c := count(delivered.ReadToEndWith(t, adminK, allowed), want); c.duplicates > 0 {
			t.Errorf("exactly-once: read_committed saw %d duplicates on %s", c.duplicates, allowed)
		}
	}
	t.Logf("LADDER_TARGET_TIMEOUT=%s: %s; %d dead-lettered (not_authorized) %s to %s after their due time, the first %s after the last delivery; ladder-error for %s (no ACL): %q; for %s (Read, no Write): %q",
		forbiddenTimeout, c, len(laddertest.Distinct(dls)), firstLate.Round(time.Millisecond), lastLate.Round(time.Millisecond),
		firstDead.Sub(lastDelivered).Round(time.Millisecond),
		secret, errorOf[secret], readonly, errorOf[readonly])
}

// endOffsets is the sum of the end offsets of topic's partitions, read as admin.
func (s *securedCluster) endOffsets(t *testing.T, topic string) int64 {
	t.Helper()
	client, err := sarama.NewClient(s.c.Addrs(), s.saramaConfig(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ids, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var sum int64
	for _, id := range ids {
		end, err := client.GetOffset(topic, id, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("end offset of %s/%d: %v", topic, id, err)
		}
		sum += end
	}
	return sum
}

// librdkafkaVersion is the librdkafka version kcat -V names.
func librdkafkaVersion(t *testing.T, kc string) string {
	t.Helper()
	out, err := exec.Command(kc, "-V").CombinedOutput()
	m := regexp.MustCompile(`librdkafka (\d+\.\d+\.\d+)`).FindStringSubmatch(string(out))
	if err != nil || m == nil {
		t.Fatalf("kcat -V: %v\n%s", err, out)
	}
	return m[1]
}

// before261 reports whether version x.y.z is older than 2.6.1.
func before261(version string) bool {
	var v [3]int
	fmt.Sscanf(version, "%d.%d.%d", &v[0], &v[1], &v[2])
	return v[0] < 2 || v[0] == 2 && (v[1] < 6 || v[1] == 6 && v[2] < 1)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
