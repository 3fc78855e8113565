package main

import (
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/offsets"
)

// TestExactlyOnceSurvivesKills runs two `ladder run --exactly-once`
// processes and SIGKILLs one of them, again and again, while messages flow;
// each is restarted with its stable transactional id. Once every message
// arrived, both forwarders are stopped and a read_committed consumer reads
// the target to its end: it sees every message exactly once (a duplicate
// committed after the last new key counts too), none early.
func TestExactlyOnceSurvivesKills(t *testing.T) {
	addr := startDevBroker(t, "work")
	const n = 10_000
	now := time.Now()
	want := scheduleBacklog(t, addr, n, func(i int) time.Time { return now.Add(time.Duration(i) * 20 * time.Second / n) })
	work := laddertest.CollectCommitted(t, addr, "work")
	eos := func(id string) []string {
		return append(runEnv(addr), "LADDER_EXACTLY_ONCE=true", "LADDER_TRANSACTIONAL_ID="+id, "LADDER_GROUP=e2e-eos")
	}
	procs := map[string]*proc{"eos-a": start(t, eos("eos-a"), "run"), "eos-b": start(t, eos("eos-b"), "run")}
	admin, err := sarama.NewClusterAdmin([]string{addr}, laddertestAdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	r := rand.New(rand.NewPCG(uint64(now.UnixNano()), 9))
	kills := 0
	for k := 1; k <= 4; k++ {
		if _, ok := work.WaitFor(60*time.Second, func(rs []laddertest.Received) bool { return len(rs) >= k*n/5 }); !ok {
			t.Fatalf("only %d of %d arrived before kill %d", work.Len(), n, k)
		}
		// Kill only a member of a settled group (see offsets.GroupSettled).
		if !offsets.GroupSettled(admin, "e2e-eos", time.Second, 60*time.Second) {
			t.Fatalf("group e2e-eos did not settle before kill %d", k)
		}
		id := []string{"eos-a", "eos-b"}[r.IntN(2)]
		procs[id].stop(t, syscall.SIGKILL, 10*time.Second)
		kills++
		procs[id] = start(t, eos(id), "run")
	}
	work.WaitDistinct(t, n, 120*time.Second)
	for id, p := range procs {
		// A forwarder restarted just now may not handle signals yet.
		laddertest.Eventually(t, 30*time.Second, func() bool { return strings.Contains(p.out.String(), "forwarder started") },
			"%s never logged its start:\n%s", id, p.out)
		if err := p.stop(t, syscall.SIGTERM, 60*time.Second); err != nil {
			t.Errorf("%s exited with %v after SIGTERM", id, err)
		}
	}
	recs := work.ReadToEnd(t, addr, "work")
	if dups := verify(t, recs, want); dups != 0 {
		t.Errorf("read_committed saw %d duplicates across %d kills", dups, kills)
	}
	if len(recs) != n {
		t.Errorf("read_committed saw %d records for %d messages", len(recs), n)
	}
	t.Logf("exactly-once: %d messages, %d SIGKILLs, %d records seen by read_committed to the end of the topic, 0 lost", n, kills, len(recs))
}
