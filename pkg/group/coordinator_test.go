package group_test

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/group"
	"github.com/ladder/ladder/pkg/laddertest"
)

// TestCoordinatorLoadingIsRoutine drives a member against sarama's mock
// broker whose coordinator first answers COORDINATOR_LOAD_IN_PROGRESS, as a
// freshly started Apache Kafka broker does while it reads
// __consumer_offsets (seen on Kafka 4.4: the join failed instead of being
// retried). Join, sync and commit wait it out.
func TestCoordinatorLoadingIsRoutine(t *testing.T) {
	loading := sarama.ErrOffsetsLoadInProgress
	mb := laddertest.MockCoordinator(t, "g", "a", 2, map[string]sarama.MockResponse{
		"JoinGroupRequest": sarama.NewMockSequence(
			sarama.NewMockJoinGroupResponse(t).SetError(loading),
			sarama.NewMockJoinGroupResponse(t).SetError(loading),
			sarama.NewMockJoinGroupResponse(t).SetGenerationId(3).SetMemberId("m-1").SetLeaderId("other").SetGroupProtocol("range"),
		),
		"SyncGroupRequest": sarama.NewMockSequence(
			sarama.NewMockSyncGroupResponse(t).SetError(loading),
			sarama.NewMockSyncGroupResponse(t).SetMemberAssignment(&sarama.ConsumerGroupMemberAssignment{
				Topics: map[string][]int32{"a": {1, 0}},
			}),
		),
		"OffsetCommitRequest": sarama.NewMockSequence(
			sarama.NewMockOffsetCommitResponse(t).SetError("g", "a", 0, loading),
			sarama.NewMockOffsetCommitResponse(t).SetError("g", "a", 0, loading),
			sarama.NewMockOffsetCommitResponse(t).SetError("g", "a", 0, loading),
			sarama.NewMockOffsetCommitResponse(t).SetError("g", "a", 0, loading),
			sarama.NewMockOffsetCommitResponse(t),
		),
		"HeartbeatRequest":  sarama.NewMockHeartbeatResponse(t),
		"LeaveGroupRequest": sarama.NewMockLeaveGroupResponse(t),
	})

	sc, err := laddertest.Kafka(mb.Addr()).Consumer()
	if err != nil {
		t.Fatal(err)
	}
	sc.ApiVersionsRequest = false
	sc.Metadata.Retry.Backoff = 10 * time.Millisecond
	c, err := sarama.NewClient([]string{mb.Addr()}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	m := group.New(c, "g", []string{"a"}, laddertest.Logger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := m.Join(ctx)
	if err != nil {
		t.Fatalf("join: %v (a loading coordinator must be waited out)", err)
	}
	defer s.Close()
	if s.Generation() != 3 || len(s.Claims()["a"]) != 2 {
		t.Fatalf("generation %d, claims %v; want 3 and a/0, a/1", s.Generation(), s.Claims())
	}
	if err := s.Commit(ctx, map[string]map[int32]group.Offset{"a": {0: {Offset: 5}}}); err != nil {
		t.Fatalf("commit: %v (a loading coordinator must be retried)", err)
	}
}
