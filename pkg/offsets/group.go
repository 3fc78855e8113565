package offsets

import (
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
	gs, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil || len(gs) != 1 || gs[0].State != "Stable" || len(gs[0].Members) == 0 {
		return false
	}
	for _, m := range gs[0].Members {
		if len(m.MemberAssignment) == 0 {
			return false
		}
	}
	return true
}
