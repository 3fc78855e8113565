package main

import (
	"fmt"
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
		if err := p.stop(t, syscall.SIGTERM, 60*time.Second); err != nil {
			t.Errorf("%s exited with %v after SIGTERM", id, err)
		}
	}
	recs := readToEnd(t, addr, "work", work)
	if dups := verify(t, recs, want); dups != 0 {
		t.Errorf("read_committed saw %d duplicates across %d kills", dups, kills)
	}
	if len(recs) != n {
		t.Errorf("read_committed saw %d records for %d messages", len(recs), n)
	}
	t.Logf("exactly-once: %d messages, %d SIGKILLs, %d records seen by read_committed to the end of the topic, 0 lost", n, kills, len(recs))
}

// endKey prefixes the keys of the end markers readToEnd writes.
const endKey = "end-of-topic-"

// readToEnd writes an end marker (a plain record) to every partition of
// topic and waits until c has read all of them: reading a partition in
// order, c has then read everything committed before. Stop the forwarders
// first. It returns what c read, without the markers.
func readToEnd(t *testing.T, addr, topic string, c *laddertest.Collector) []laddertest.Received {
	t.Helper()
	sc := laddertestAdminConfig()
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	client, err := sarama.NewClient([]string{addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, part := range parts {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: part,
			Key: sarama.StringEncoder(fmt.Sprint(endKey, part))}); err != nil {
			t.Fatalf("writing the end marker of %s/%d: %v", topic, part, err)
		}
	}
	recs, ok := c.WaitFor(60*time.Second, func(rs []laddertest.Received) bool {
		n := 0
		for _, r := range rs {
			if strings.HasPrefix(string(r.Key), endKey) {
				n++
			}
		}
		return n == len(parts)
	})
	if !ok {
		t.Fatalf("the end markers of %s were not all read within 60s", topic)
	}
	out := recs[:0]
	for _, r := range recs {
		if !strings.HasPrefix(string(r.Key), endKey) {
			out = append(out, r)
		}
	}
	return out
}
