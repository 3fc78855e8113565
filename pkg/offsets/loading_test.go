package offsets_test

import (
	"testing"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/offsets"
)

// TestALoadingCoordinatorIsWaitedFor: a coordinator still loading the
// group's offsets (a broker just started: seen on Apache Kafka 4.4 in
// `ladder inspect`'s test) answers COORDINATOR_LOAD_IN_PROGRESS for the
// group or for a partition; Commits and DescribeGroup wait it out instead
// of failing.
func TestALoadingCoordinatorIsWaitedFor(t *testing.T) {
	loading := sarama.ErrOffsetsLoadInProgress
	mb := laddertest.MockCoordinator(t, "g", "t", 1, map[string]sarama.MockResponse{
		"OffsetFetchRequest": sarama.NewMockSequence(
			sarama.NewMockOffsetFetchResponse(t).SetError(loading),
			sarama.NewMockOffsetFetchResponse(t).SetOffset("g", "t", 0, -1, "", loading),
			sarama.NewMockOffsetFetchResponse(t).SetOffset("g", "t", 0, 42, "", sarama.ErrNoError),
		),
		"DescribeGroupsRequest": sarama.NewMockSequence(
			sarama.NewMockDescribeGroupsResponse(t).AddGroupDescription("g", &sarama.GroupDescription{GroupId: "g", Err: loading, ErrorCode: int16(loading)}),
			sarama.NewMockDescribeGroupsResponse(t).AddGroupDescription("g", &sarama.GroupDescription{GroupId: "g", State: "Empty"}),
		),
	})
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	sc.ApiVersionsRequest = false
	admin, err := sarama.NewClusterAdmin([]string{mb.Addr()}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	got, err := offsets.Commits(admin, "g", map[string][]int32{"t": {0}})
	if err != nil {
		t.Fatalf("commits: %v (a loading coordinator must be waited for)", err)
	}
	if c := got[offsets.TP{Topic: "t", Partition: 0}]; c.Offset != 42 {
		t.Fatalf("t/0 committed %+v, want 42", c)
	}
	g, err := offsets.DescribeGroup(admin, "g")
	if err != nil || g == nil || g.State != "Empty" {
		t.Fatalf("describe: %+v, %v; want the group in state Empty (a loading coordinator must be waited for)", g, err)
	}
}
