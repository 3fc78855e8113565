package group_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/group"
	"github.com/ladder/ladder/pkg/laddertest"
)

// client connects to addr with short group timeouts (the embedded broker's
// minimum session timeout is 6s).
func client(t *testing.T, addr string) sarama.Client {
	t.Helper()
	sc, err := laddertest.Kafka(addr).Consumer()
	if err != nil {
		t.Fatal(err)
	}
	sc.Consumer.Group.Session.Timeout = 6 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	sc.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	c, err := sarama.NewClient([]string{addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func join(t *testing.T, m *group.Member) *group.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := m.Join(ctx)
	if err != nil {
		t.Fatalf("joining: %v", err)
	}
	return s
}

func count(claims map[string][]int32) int {
	n := 0
	for _, ps := range claims {
		n += len(ps)
	}
	return n
}

// TestJoinRebalanceCommit: one member gets every partition; a second one
// joining ends the first one's session (ErrRebalance); after both rejoin
// they split the partitions, and offsets committed with metadata read back.
func TestJoinRebalanceCommit(t *testing.T) {
	b := laddertest.Broker(t, 4, "a", "b")
	log := laddertest.Logger(t)
	m1 := group.New(client(t, b.Addr()), "g", []string{"a", "b"}, log)
	s1 := join(t, m1)
	if n := count(s1.Claims()); n != 8 {
		t.Fatalf("one member claims %d partitions, want 8: %v", n, s1.Claims())
	}
	if !s1.Valid(time.Now()) {
		t.Fatal("a fresh session is not valid")
	}
	ctx := context.Background()
	if err := s1.Commit(ctx, map[string]map[int32]group.Offset{"a": {0: {Offset: 42, Metadata: "ladder/1 hi=50 parked=42,45"}}}); err != nil {
		t.Fatalf("commit: %v", err)
	}

	m2 := group.New(client(t, b.Addr()), "g", []string{"a", "b"}, log)
	joined := make(chan *group.Session, 1)
	go func() { joined <- join(t, m2) }()
	select {
	case <-s1.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the first session did not end when a second member joined")
	}
	if !errors.Is(s1.Err(), group.ErrRebalance) {
		t.Fatalf("first session ended with %v, want ErrRebalance", s1.Err())
	}
	// Committing is still allowed before rejoining (eager protocol).
	if err := s1.Commit(ctx, map[string]map[int32]group.Offset{"a": {1: {Offset: 7}}}); err != nil {
		t.Fatalf("commit during the rebalance: %v", err)
	}
	s1.Close()
	s1 = join(t, m1)
	s2 := <-joined
	if s1.Generation() != s2.Generation() {
		t.Fatalf("generations %d and %d", s1.Generation(), s2.Generation())
	}
	if n1, n2 := count(s1.Claims()), count(s2.Claims()); n1+n2 != 8 || n1 == 0 || n2 == 0 {
		t.Fatalf("members claim %d and %d partitions, want 8 split", n1, n2)
	}
	owner := s1
	if _, ok := s2.Claims()["a"]; ok && len(s2.Claims()["a"]) > 0 && s2.Claims()["a"][0] == 0 {
		owner = s2
	}
	got, err := owner.Committed(ctx, true)
	if err != nil {
		t.Fatalf("committed: %v", err)
	}
	if o, ok := got["a"][0]; !ok || o.Offset != 42 || o.Metadata != "ladder/1 hi=50 parked=42,45" {
		t.Fatalf("committed a/0 = %+v (%v), want 42 with its metadata", o, ok)
	}
	s1.Close()
	s2.Close()
	m1.Leave()
	m2.Leave()
}

// TestExpiredSessionIsLost: a member that stops heartbeating loses its
// lease after the session timeout, the coordinator gives its partitions to
// another member, and its late commit is refused as lost.
func TestExpiredSessionIsLost(t *testing.T) {
	b := laddertest.Broker(t, 2, "a")
	log := laddertest.Logger(t)
	m1 := group.New(client(t, b.Addr()), "g", []string{"a"}, log)
	s1 := join(t, m1)
	s1.Close() // heartbeats stop: as if the process were stopped
	laddertest.Eventually(t, 10*time.Second, func() bool { return !s1.Valid(time.Now()) }, "the lease did not lapse")

	m2 := group.New(client(t, b.Addr()), "g", []string{"a"}, log)
	s2 := join(t, m2)
	if n := count(s2.Claims()); n != 2 {
		t.Fatalf("the remaining member claims %d partitions, want 2", n)
	}
	err := s1.Commit(context.Background(), map[string]map[int32]group.Offset{"a": {0: {Offset: 1}}})
	if !errors.Is(err, group.ErrLost) {
		t.Fatalf("a commit of the expired generation returned %v, want ErrLost", err)
	}
	if s1.Valid(time.Now()) {
		t.Fatal("a lost session is valid")
	}
	s2.Close()
	m2.Leave()
}

// TestPartitionsAddedRebalance: partitions added to a subscribed topic
// while the group runs end the leader's session (ErrRebalance); joining
// again, the group assigns them.
func TestPartitionsAddedRebalance(t *testing.T) {
	b := laddertest.Broker(t, 2, "a")
	c := client(t, b.Addr())
	m := group.New(c, "g", []string{"a"}, laddertest.Logger(t))
	m.PartitionCheck = 200 * time.Millisecond
	s := join(t, m)
	if n := count(s.Claims()); n != 2 {
		t.Fatalf("claims %v, want 2 partitions", s.Claims())
	}
	admin, err := sarama.NewClusterAdminFromClient(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreatePartitions("a", 4, nil, false); err != nil {
		t.Fatalf("adding partitions: %v", err)
	}
	select {
	case <-s.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the session did not end when partitions were added")
	}
	if !errors.Is(s.Err(), group.ErrRebalance) {
		t.Fatalf("session ended with %v, want ErrRebalance", s.Err())
	}
	s.Close()
	s = join(t, m)
	if n := count(s.Claims()); n != 4 {
		t.Fatalf("after joining again: claims %v, want 4 partitions", s.Claims())
	}
	s.Close()
	m.Leave()
}
