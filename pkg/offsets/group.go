package offsets

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// GroupSettled reports whether consumer group has been Stable, with every
// member holding an assignment, for at least hold (polling every 100ms, at
// most for timeout).
//
// Why tests and ladder soak wait for it before a SIGKILL: kfake never expires a member
// killed after its JoinGroup answer and before its SyncGroup once the leader
// has synced (Kafka expires it after session.timeout.ms); that member then
// keeps its partitions for good. Killing only members of a settled group
// stays out of that window. See pkg/devbroker/README.md.
func GroupSettled(admin sarama.ClusterAdmin, group string, hold, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	var since time.Time
	for time.Now().Before(deadline) {
		if GroupStable(admin, group) {
			if since.IsZero() {
				since = time.Now()
			}
			if time.Since(since) >= hold {
				return true
			}
		} else {
			since = time.Time{}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// GroupStable reports whether group is Stable with every member holding an
// assignment, now.
func GroupStable(admin sarama.ClusterAdmin, group string) bool {
	g, err := DescribeGroup(admin, group)
	if err != nil || g == nil || g.State != "Stable" || len(g.Members) == 0 {
		return false
	}
	for _, m := range g.Members {
		if len(m.MemberAssignment) == 0 {
			return false
		}
	}
	return true
}

// DescribeGroup describes group (nil when the answer leaves it out), waiting
// up to loadingWait while its coordinator is still loading the group
// (COORDINATOR_LOAD_IN_PROGRESS, a broker just started). An error of the
// group's is an error, but for a group Kafka does not know, which comes back
// with GROUP_ID_NOT_FOUND in its Err (DescribeGroups v6 on) or in state Dead.
func DescribeGroup(admin sarama.ClusterAdmin, group string) (*sarama.GroupDescription, error) {
	var out *sarama.GroupDescription
	err := whileLoading(func() error {
		gs, err := admin.DescribeConsumerGroups([]string{group})
		if err != nil {
			return err
		}
		out = nil
		for _, g := range gs {
			if g.GroupId == group {
				out = g
			}
		}
		if out != nil && errors.Is(out.Err, sarama.ErrOffsetsLoadInProgress) {
			return out.Err
		}
		return nil
	})
	if err == nil && out != nil && !errors.Is(out.Err, sarama.ErrNoError) && !errors.Is(out.Err, sarama.ErrGroupIDNotFound) {
		err = out.Err
	}
	if err != nil {
		return nil, fmt.Errorf("describing group %s: %w", group, err)
	}
	return out, nil
}
