// Package group is a Kafka consumer group member built on sarama's protocol
// requests (JoinGroup, SyncGroup, Heartbeat, OffsetCommit, OffsetFetch,
// LeaveGroup), with the assignment computed by a sarama BalanceStrategy.
//
// Unlike sarama's ConsumerGroup it does not consume: the caller fetches the
// assigned partitions itself. The forwarder needs that to hold a partition's
// head without holding the rest of its fetched batch (sarama's partition
// consumers keep a decoded fetch per partition, a megabyte per partition with
// real producers' batches). It also tells the caller what a forwarder needs
// to stop in time:
//   - a session lease (Session.Valid): the session is surely alive until the
//     send time of the last answered heartbeat plus the session timeout. A
//     process that was stopped (SIGSTOP, a long GC pause, a VM freeze) or cut
//     off from the coordinator finds its lease lapsed and stops forwarding
//     before it learns whether the group expired it;
//   - the moment the session is known lost (Session.Done with ErrLost): the
//     coordinator answered UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION or
//     FENCED_INSTANCE_ID, so another member may own the partitions already;
//   - a rebalance (Session.Done with ErrRebalance): the member finishes what is
//     in flight, commits (allowed until it rejoins) and joins again.
//
// The protocol is eager: every rebalance revokes every partition.
package group

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"
)

// ErrRebalance ends a session whose group is rebalancing: finish, commit, and Join again.
var ErrRebalance = errors.New("the group is rebalancing")

// ErrLost ends a session the coordinator no longer knows: its partitions may
// belong to another member already, so nothing more may be forwarded or
// committed under it.
var ErrLost = errors.New("the group session is lost")

// ErrClosed ends a session closed by its member.
var ErrClosed = errors.New("the group session was closed")

// Member is one member of a consumer group. Join, Leave and the sessions'
// methods may be called from different goroutines, but Join and Leave not
// concurrently with each other.
type Member struct {
	client   sarama.Client
	conf     *sarama.Config
	group    string
	topics   []string
	strategy sarama.BalanceStrategy
	log      zerolog.Logger

	memberID string
	userData []byte         // the UserData of the last assignment, sent back on the next join (sticky assignor)
	planned  map[string]int // leader: the partition counts the assignment was computed with

	// PartitionCheck is how often the leader reads the subscribed topics'
	// partition counts: when one changed (partitions added), it ends the
	// session (ErrRebalance) so that the group assigns the new ones
	// (default 10s).
	PartitionCheck time.Duration
}

// New returns a member of group subscribed to topics. It uses client's
// configuration: Version picks the request versions; Consumer.Group's
// Session.Timeout, Heartbeat.Interval, Rebalance.Timeout and the first of
// Rebalance.GroupStrategies (default sticky) are used.
func New(client sarama.Client, group string, topics []string, log zerolog.Logger) *Member {
	conf := client.Config()
	strategy := sarama.NewBalanceStrategySticky()
	if s := conf.Consumer.Group.Rebalance.GroupStrategies; len(s) > 0 {
		strategy = s[0]
	}
	return &Member{client: client, conf: conf, group: group, topics: slices.Clone(topics), strategy: strategy,
		log: log.With().Str("component", "group").Logger(), PartitionCheck: 10 * time.Second}
}

// Join joins the group and returns the session of the generation it got,
// retrying the coordinator's transient answers (a rebalance in progress, a
// moved coordinator, a member id to use) until ctx is done. A failure to
// reach the coordinator is returned: the caller retries with back-off.
func (m *Member) Join(ctx context.Context) (*Session, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, retry, err := m.join()
		if err == nil {
			return s, nil
		}
		if !retry {
			return nil, err
		}
		if errors.Is(err, sarama.ErrMemberIdRequired) {
			continue // the coordinator gave the member id to join with: at once
		}
		m.log.Debug().Err(err).Msg("joining again")
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// join makes one JoinGroup and SyncGroup round. retry says whether the
// error is one of the coordinator's routine answers.
func (m *Member) join() (s *Session, retry bool, err error) {
	coord, err := m.coordinator()
	if err != nil {
		return nil, false, err
	}
	req := sarama.NewJoinGroupRequest(m.conf.Version)
	req.GroupId = m.group
	req.MemberId = m.memberID
	req.SessionTimeout = int32(m.conf.Consumer.Group.Session.Timeout / time.Millisecond)
	req.ProtocolType = "consumer"
	if req.Version >= 1 {
		req.RebalanceTimeout = int32(m.conf.Consumer.Group.Rebalance.Timeout / time.Millisecond)
	}
	meta := &sarama.ConsumerGroupMemberMetadata{Version: m.subscriptionVersion(), Topics: m.topics, UserData: m.userData}
	if err := req.AddGroupProtocolMetadata(m.strategy.Name(), meta); err != nil {
		return nil, false, fmt.Errorf("encoding the subscription of group %s: %w", m.group, err)
	}
	resp, err := coord.JoinGroup(req)
	if err != nil {
		m.dropCoordinator(coord)
		return nil, false, fmt.Errorf("joining group %s: %w", m.group, err)
	}
	switch resp.Err {
	case sarama.ErrNoError:
	case sarama.ErrMemberIdRequired:
		m.memberID = resp.MemberId
		return nil, true, resp.Err
	case sarama.ErrUnknownMemberId, sarama.ErrFencedInstancedId:
		m.memberID = ""
		return nil, true, resp.Err
	case sarama.ErrRebalanceInProgress, sarama.ErrOffsetsLoadInProgress:
		// ErrOffsetsLoadInProgress is COORDINATOR_LOAD_IN_PROGRESS: a
		// coordinator that just took the group (a fresh or restarted
		// broker) is still reading __consumer_offsets.
		return nil, true, resp.Err
	case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable:
		m.dropCoordinator(nil)
		return nil, true, resp.Err
	default:
		return nil, false, fmt.Errorf("joining group %s: %w", m.group, resp.Err)
	}
	m.memberID = resp.MemberId
	leader := resp.LeaderId == resp.MemberId
	var plan sarama.BalanceStrategyPlan
	var members map[string]sarama.ConsumerGroupMemberMetadata
	if leader {
		if members, err = resp.GetMembers(); err != nil {
			return nil, false, fmt.Errorf("decoding the members of group %s: %w", m.group, err)
		}
		if plan, err = m.balance(members); err != nil {
			return nil, false, err
		}
	}
	sreq := m.syncRequest(resp.GenerationId)
	for id := range members {
		a := &sarama.ConsumerGroupMemberAssignment{Topics: plan[id]}
		if a.UserData, err = m.strategy.AssignmentData(id, plan[id], resp.GenerationId); err != nil {
			return nil, false, fmt.Errorf("encoding the assignment of member %s: %w", id, err)
		}
		if err := sreq.AddGroupAssignmentMember(id, a); err != nil {
			return nil, false, fmt.Errorf("encoding the assignment of member %s: %w", id, err)
		}
	}
	sent := time.Now() // the coordinator starts the member's session timer when it completes the sync
	sresp, err := coord.SyncGroup(sreq)
	if err != nil {
		m.dropCoordinator(coord)
		return nil, false, fmt.Errorf("syncing group %s: %w", m.group, err)
	}
	switch sresp.Err {
	case sarama.ErrNoError:
	case sarama.ErrRebalanceInProgress, sarama.ErrOffsetsLoadInProgress:
		return nil, true, sresp.Err
	case sarama.ErrUnknownMemberId, sarama.ErrIllegalGeneration, sarama.ErrFencedInstancedId:
		m.memberID = ""
		return nil, true, sresp.Err
	case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable:
		m.dropCoordinator(nil)
		return nil, true, sresp.Err
	default:
		return nil, false, fmt.Errorf("syncing group %s: %w", m.group, sresp.Err)
	}
	a, err := sresp.GetMemberAssignment()
	if err != nil {
		return nil, false, fmt.Errorf("decoding the assignment of group %s: %w", m.group, err)
	}
	claims := map[string][]int32{}
	if a != nil {
		m.userData = a.UserData
		for topic, parts := range a.Topics {
			if len(parts) > 0 {
				claims[topic] = slices.Sorted(slices.Values(parts))
			}
		}
	}
	return newSession(m, resp.GenerationId, m.memberID, claims, leader, sent), false, nil
}

func (m *Member) syncRequest(generation int32) *sarama.SyncGroupRequest {
	req := &sarama.SyncGroupRequest{GroupId: m.group, MemberId: m.memberID, GenerationId: generation}
	v := m.conf.Version
	switch {
	case v.IsAtLeast(sarama.V2_5_0_0):
		req.Version = 5
		protocolType, protocolName := "consumer", m.strategy.Name()
		req.ProtocolType, req.ProtocolName = &protocolType, &protocolName
	case v.IsAtLeast(sarama.V2_4_0_0):
		req.Version = 4
	case v.IsAtLeast(sarama.V2_3_0_0):
		req.Version = 3
	case v.IsAtLeast(sarama.V2_0_0_0):
		req.Version = 2
	case v.IsAtLeast(sarama.V0_11_0_0):
		req.Version = 1
	}
	return req
}

// subscriptionVersion is the version of the member metadata the brokers of
// the configured version understand.
func (m *Member) subscriptionVersion() int16 {
	if m.conf.Version.IsAtLeast(sarama.V2_4_0_0) {
		return 1
	}
	return 0
}

// balance computes the assignment of every member (the leader's job).
func (m *Member) balance(members map[string]sarama.ConsumerGroupMemberMetadata) (sarama.BalanceStrategyPlan, error) {
	var topics []string
	for _, meta := range members {
		for _, t := range meta.Topics {
			if !slices.Contains(topics, t) {
				topics = append(topics, t)
			}
		}
	}
	if err := m.client.RefreshMetadata(topics...); err != nil {
		return nil, fmt.Errorf("reading the metadata of the subscribed topics %v: %w", topics, err)
	}
	partitions := map[string][]int32{}
	m.planned = map[string]int{}
	for _, t := range topics {
		ps, err := m.client.Partitions(t)
		if err != nil {
			return nil, fmt.Errorf("reading the partitions of %s: %w", t, err)
		}
		partitions[t] = ps
		m.planned[t] = len(ps)
	}
	plan, err := m.strategy.Plan(members, partitions)
	if err != nil {
		return nil, fmt.Errorf("assigning the partitions of group %s: %w", m.group, err)
	}
	return plan, nil
}

// partitionsChanged reports, for the leader, a topic whose partition count
// is no longer the one the assignment was computed with.
func (m *Member) partitionsChanged() (string, bool) {
	topics := slices.Sorted(maps.Keys(m.planned))
	if err := m.client.RefreshMetadata(topics...); err != nil {
		m.log.Debug().Err(err).Msg("reading the partition counts")
		return "", false
	}
	for _, t := range topics {
		ps, err := m.client.Partitions(t)
		if err == nil && len(ps) != m.planned[t] {
			return fmt.Sprintf("%s has %d partitions, the assignment %d", t, len(ps), m.planned[t]), true
		}
	}
	return "", false
}

// Leave leaves the group (a rebalance follows at once instead of after the
// session timeout). Errors are only logged: the session expires anyway.
func (m *Member) Leave() {
	if m.memberID == "" {
		return
	}
	coord, err := m.coordinator()
	if err != nil {
		m.log.Warn().Err(err).Msg("leaving the group: no coordinator")
		return
	}
	req := &sarama.LeaveGroupRequest{GroupId: m.group, MemberId: m.memberID}
	v := m.conf.Version
	switch {
	case v.IsAtLeast(sarama.V3_2_0_0):
		req.Version = 5
	case v.IsAtLeast(sarama.V2_4_0_0):
		req.Version = 4
	case v.IsAtLeast(sarama.V2_0_0_0):
		req.Version = 2
	case v.IsAtLeast(sarama.V0_11_0_0):
		req.Version = 1
	}
	if req.Version >= 3 {
		req.Members = []sarama.MemberIdentity{{MemberId: m.memberID}}
		if req.Version >= 5 {
			reason := "the member is stopping"
			req.Members[0].Reason = &reason
		}
	}
	resp, err := coord.LeaveGroup(req)
	switch {
	case err != nil:
		m.log.Warn().Err(err).Msg("leaving the group")
	case resp.Err != sarama.ErrNoError && resp.Err != sarama.ErrUnknownMemberId:
		m.log.Warn().Err(resp.Err).Msg("leaving the group")
	}
	m.memberID = ""
}

func (m *Member) coordinator() (*sarama.Broker, error) {
	coord, err := m.client.Coordinator(m.group)
	if err != nil {
		return nil, fmt.Errorf("finding the coordinator of group %s: %w", m.group, err)
	}
	return coord, nil
}

// dropCoordinator makes the next request look the coordinator up again
// (closing b's connection, which a failed request may have left broken).
func (m *Member) dropCoordinator(b *sarama.Broker) {
	if b != nil {
		_ = b.Close()
	}
	if err := m.client.RefreshCoordinator(m.group); err != nil {
		m.log.Debug().Err(err).Msg("looking up the coordinator again")
	}
}
