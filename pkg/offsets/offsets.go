// Package offsets reads partition end offsets and a group's committed
// offsets through the admin API, batched per broker, the way lag must be
// read for a paused partition: live from the broker, not from a fetch.
package offsets

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/backoff"
)

// TP names a topic partition.
type TP struct {
	Topic     string
	Partition int32
}

// Partitions lists every partition of topics.
func Partitions(client sarama.Client, topics ...string) (map[string][]int32, error) {
	out := make(map[string][]int32, len(topics))
	for _, t := range topics {
		ps, err := client.Partitions(t)
		if err != nil {
			return nil, fmt.Errorf("listing partitions of %s: %w", t, err)
		}
		out[t] = ps
	}
	return out, nil
}

// End returns the end offset (the offset the next record gets) of each
// partition: one ListOffsets request per leader broker.
func End(client sarama.Client, tps map[string][]int32) (map[TP]int64, error) {
	return list(client, tps, sarama.OffsetNewest)
}

// Start returns the log start offset (the oldest retained record) of each partition.
func Start(client sarama.Client, tps map[string][]int32) (map[TP]int64, error) {
	return list(client, tps, sarama.OffsetOldest)
}

func list(client sarama.Client, tps map[string][]int32, which int64) (map[TP]int64, error) {
	byLeader := map[*sarama.Broker][]TP{}
	for topic, parts := range tps {
		for _, p := range parts {
			leader, err := client.Leader(topic, p)
			if err != nil {
				return nil, fmt.Errorf("finding the leader of %s/%d: %w", topic, p, err)
			}
			byLeader[leader] = append(byLeader[leader], TP{topic, p})
		}
	}
	out := make(map[TP]int64)
	var errs []error
	for broker, list := range byLeader {
		req := &sarama.OffsetRequest{Version: 1}
		for _, tp := range list {
			req.AddBlock(tp.Topic, tp.Partition, which, 1)
		}
		resp, err := broker.GetAvailableOffsets(req)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing offsets on broker %d: %w", broker.ID(), err))
			continue
		}
		for _, tp := range list {
			b := resp.GetBlock(tp.Topic, tp.Partition)
			switch {
			case b == nil:
				errs = append(errs, fmt.Errorf("no offset for %s/%d in the answer", tp.Topic, tp.Partition))
			case b.Err != sarama.ErrNoError:
				errs = append(errs, fmt.Errorf("offset of %s/%d: %w", tp.Topic, tp.Partition, b.Err))
			default:
				out[tp] = b.Offset
			}
		}
	}
	return out, errors.Join(errs...)
}

// Committed returns the offsets group committed for tps; a partition the
// group never committed is absent. A group that never committed at all has
// none: Kafka answers offset -1, kfake answers GROUP_ID_NOT_FOUND, and both
// read as an empty map here.
func Committed(admin sarama.ClusterAdmin, group string, tps map[string][]int32) (map[TP]int64, error) {
	cs, err := Commits(admin, group, tps)
	if err != nil {
		return nil, err
	}
	out := make(map[TP]int64, len(cs))
	for tp, c := range cs {
		out[tp] = c.Offset
	}
	return out, nil
}

// Commit is a committed offset with what its metadata says the forwarder
// forwarded past it (records that passed a parked one).
type Commit struct {
	Offset int64
	Resume Resume // the zero Resume when the metadata says nothing (or is not ladder's)
	// ResumeErr is why ladder's metadata did not decode (Resume is then
	// zero: every record past the offset counts as not forwarded).
	ResumeErr error
}

// loadingWait bounds how long Commits and DescribeGroup wait for a group
// coordinator that is still loading the group's offsets (a broker just
// started or just made the coordinator): sarama's admin client retries a
// moved coordinator, not this. It is short because the wait cannot be
// interrupted and work-ahead reads every lane with it each second: a read
// that fails there only keeps the lane from releasing early.
const loadingWait = 5 * time.Second

// Commits is Committed with each commit's metadata decoded. An error the
// broker returns for one of the partitions is an error.
func Commits(admin sarama.ClusterAdmin, group string, tps map[string][]int32) (map[TP]Commit, error) {
	resp, err := listOffsets(admin, group, tps)
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return map[TP]Commit{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the offsets of group %s: %w", group, err)
	}
	out := make(map[TP]Commit)
	for topic, parts := range resp.Blocks {
		for p, b := range parts {
			if !errors.Is(b.Err, sarama.ErrNoError) {
				return nil, fmt.Errorf("reading the offset of group %s on %s/%d: %w", group, topic, p, b.Err)
			}
			if b.Offset >= 0 {
				r, err := DecodeResume(b.Metadata, b.Offset)
				out[TP{topic, p}] = Commit{Offset: b.Offset, Resume: r, ResumeErr: err}
			}
		}
	}
	return out, nil
}

// listOffsets fetches the committed offsets of tps, waiting while the
// coordinator answers COORDINATOR_LOAD_IN_PROGRESS for the group or for one
// of its partitions.
func listOffsets(admin sarama.ClusterAdmin, group string, tps map[string][]int32) (*sarama.OffsetFetchResponse, error) {
	var resp *sarama.OffsetFetchResponse
	err := whileLoading(func() (err error) {
		resp, err = admin.ListConsumerGroupOffsets(group, tps)
		if err == nil && loading(resp) {
			err = sarama.ErrOffsetsLoadInProgress
		}
		return err
	})
	return resp, err
}

// whileLoading calls try again, for up to loadingWait, while it fails with
// COORDINATOR_LOAD_IN_PROGRESS.
func whileLoading(try func() error) error {
	deadline := time.Now().Add(loadingWait)
	for attempt := 1; ; attempt++ {
		err := try()
		if !errors.Is(err, sarama.ErrOffsetsLoadInProgress) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still loading after %s: %w", loadingWait, err)
		}
		time.Sleep(backoff.Delay(attempt, 50*time.Millisecond, time.Second))
	}
}

// loading reports whether a partition of resp is still being loaded.
func loading(resp *sarama.OffsetFetchResponse) bool {
	for _, parts := range resp.Blocks {
		for _, b := range parts {
			if errors.Is(b.Err, sarama.ErrOffsetsLoadInProgress) {
				return true
			}
		}
	}
	return false
}

// Lag is the records of tps not yet consumed by group: per partition, end
// minus committed, or end minus start when the group never committed there.
func Lag(client sarama.Client, admin sarama.ClusterAdmin, group string, tps map[string][]int32) (int64, error) {
	end, err := End(client, tps)
	if err != nil {
		return 0, err
	}
	committed, err := Committed(admin, group, tps)
	if err != nil {
		return 0, err
	}
	var start map[TP]int64
	var lag int64
	for tp, e := range end {
		c, ok := committed[tp]
		if !ok {
			if start == nil {
				if start, err = Start(client, tps); err != nil {
					return 0, err
				}
			}
			c = start[tp]
		}
		if e > c {
			lag += e - c
		}
	}
	return lag, nil
}
