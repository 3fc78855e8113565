package group

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/backoff"
)

// Session is one generation of the member: the partitions assigned to it,
// kept alive by heartbeats until it ends (Done) or is closed.
type Session struct {
	m          *Member
	generation int32
	memberID   string
	claims     map[string][]int32
	leader     bool

	// lease is until when the coordinator surely keeps the session, with
	// the monotonic clock reading of time.Now (a wall-clock step does not
	// move it); nil once the session is lost.
	lease atomic.Pointer[time.Time]

	mu   sync.Mutex
	err  error
	lost bool // known lost: the lease is never renewed again
	done chan struct{}

	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

func newSession(m *Member, generation int32, memberID string, claims map[string][]int32, leader bool, sent time.Time) *Session {
	s := &Session{m: m, generation: generation, memberID: memberID, claims: claims, leader: leader,
		done: make(chan struct{}), stop: make(chan struct{}), stopped: make(chan struct{})}
	s.renew(sent)
	go s.heartbeat()
	return s
}

// Generation is the group generation of the session.
func (s *Session) Generation() int32 { return s.generation }

// MemberID is the member id of the session.
func (s *Session) MemberID() string { return s.memberID }

// Claims are the partitions assigned in this session, by topic, sorted.
func (s *Session) Claims() map[string][]int32 { return s.claims }

// Leader reports whether this member computed the group's assignment.
func (s *Session) Leader() bool { return s.leader }

// Done is closed when the session ends: Err says why.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is why the session ended (ErrRebalance, ErrLost, ErrClosed), or nil.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Valid reports whether the session is surely alive at now: a heartbeat sent
// less than the session timeout before now was answered, and the session is
// not known lost. Forward nothing while it is false.
func (s *Session) Valid(now time.Time) bool {
	l := s.lease.Load()
	return l != nil && now.Before(*l)
}

// LeaseExpiry is when Valid turns false unless a heartbeat renews it (zero
// once the session is lost).
func (s *Session) LeaseExpiry() time.Time {
	if l := s.lease.Load(); l != nil {
		return *l
	}
	return time.Time{}
}

func (s *Session) renew(sent time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lost {
		l := sent.Add(s.m.conf.Consumer.Group.Session.Timeout)
		s.lease.Store(&l)
	}
}

// end ends the session for err (the first reason wins). A lost session is
// invalid at once.
func (s *Session) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(err, ErrLost) {
		s.lost = true
		s.lease.Store(nil)
	}
	if s.err != nil {
		return
	}
	s.err = err
	close(s.done)
}

// Close stops the heartbeats and ends the session (ErrClosed unless it had
// ended already). Call it before joining again or leaving.
func (s *Session) Close() {
	s.once.Do(func() { close(s.stop) })
	<-s.stopped
	s.end(ErrClosed)
}

// heartbeat keeps the session alive until Close, renewing the lease on
// every answer. It goes on after a rebalance started (the member finishes
// and commits meanwhile), and stops when the session is lost.
func (s *Session) heartbeat() {
	defer close(s.stopped)
	interval := s.m.conf.Consumer.Group.Heartbeat.Interval
	t := time.NewTimer(interval)
	defer t.Stop()
	checked := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if s.leader && s.m.PartitionCheck > 0 && time.Since(checked) >= s.m.PartitionCheck && s.Err() == nil {
			checked = time.Now()
			if why, changed := s.m.partitionsChanged(); changed {
				s.m.log.Info().Str("change", why).Msg("partitions added: the group assigns them anew")
				s.end(fmt.Errorf("%w (%s)", ErrRebalance, why))
			}
		}
		next := interval
		sent := time.Now()
		err := s.beat()
		switch {
		case err == nil:
			s.renew(sent)
		case errors.Is(err, sarama.ErrRebalanceInProgress):
			s.renew(sent) // the coordinator still counts the member
			s.end(fmt.Errorf("%w (heartbeat of generation %d)", ErrRebalance, s.generation))
		case isLost(err):
			s.m.log.Warn().Err(err).Int32("generation", s.generation).Msg("group session lost")
			if errors.Is(err, sarama.ErrUnknownMemberId) {
				s.m.memberID = ""
			}
			s.end(fmt.Errorf("%w: %w", ErrLost, err))
			return
		default:
			// Coordinator away or moved, or an answer that says nothing of
			// the member: retry soon; the lease runs out meanwhile. Lapsed
			// for two more session timeouts, the coordinator has surely
			// expired the member: the session is lost.
			s.m.log.Debug().Err(err).Msg("heartbeat failed; retrying")
			next = min(interval, time.Second)
			if time.Since(s.LeaseExpiry()) > 2*s.m.conf.Consumer.Group.Session.Timeout {
				s.m.log.Warn().Err(err).Int32("generation", s.generation).Msg("no heartbeat answered for three session timeouts: the session is lost")
				s.end(fmt.Errorf("%w: no heartbeat answered since %s: %w", ErrLost, s.LeaseExpiry().Add(-s.m.conf.Consumer.Group.Session.Timeout).Format(time.RFC3339), err))
				return
			}
		}
		t.Reset(next)
	}
}

func (s *Session) beat() error {
	coord, err := s.m.coordinator()
	if err != nil {
		return err
	}
	req := &sarama.HeartbeatRequest{GroupId: s.m.group, MemberId: s.memberID, GenerationId: s.generation}
	v := s.m.conf.Version
	switch {
	case v.IsAtLeast(sarama.V2_4_0_0):
		req.Version = 4
	case v.IsAtLeast(sarama.V2_3_0_0):
		req.Version = 3
	case v.IsAtLeast(sarama.V2_0_0_0):
		req.Version = 2
	case v.IsAtLeast(sarama.V0_11_0_0):
		req.Version = 1
	}
	resp, err := coord.Heartbeat(req)
	if err != nil {
		s.m.dropCoordinator(coord)
		return fmt.Errorf("heartbeat to group %s: %w", s.m.group, err)
	}
	if resp.Err == sarama.ErrNotCoordinatorForConsumer || resp.Err == sarama.ErrConsumerCoordinatorNotAvailable {
		s.m.dropCoordinator(nil)
	}
	if resp.Err != sarama.ErrNoError {
		return resp.Err
	}
	return nil
}

// isLost reports whether a coordinator's answer means the member is no
// longer part of the generation.
func isLost(err error) bool {
	return errors.Is(err, sarama.ErrUnknownMemberId) || errors.Is(err, sarama.ErrIllegalGeneration) ||
		errors.Is(err, sarama.ErrFencedInstancedId)
}

// Offset is a committed position: the next offset to read, and the
// metadata string stored with it.
type Offset struct {
	Offset   int64
	Metadata string
}

// commitAttempts bounds Commit's attempts while the coordinator moves or
// loads the group: with its back-off (50ms doubling to 1s), about 3.5s.
const commitAttempts = 8

// Commit commits offsets (topic → partition → offset) under the session's
// generation. An answer that the generation is over ends the session as
// lost and is returned wrapped in ErrLost.
func (s *Session) Commit(ctx context.Context, offsets map[string]map[int32]Offset) error {
	if len(offsets) == 0 {
		return nil
	}
	req := sarama.NewOffsetCommitRequest(s.m.conf, s.m.group)
	req.ConsumerGroupGeneration = s.generation
	req.ConsumerID = s.memberID
	for topic, parts := range offsets {
		for p, o := range parts {
			req.AddBlock(topic, p, o.Offset, 0, o.Metadata)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var last error
	for attempt := 1; attempt <= commitAttempts; attempt++ {
		if attempt > 1 && !backoff.Sleep(ctx, backoff.Delay(attempt-1, 50*time.Millisecond, time.Second)) {
			return ctx.Err()
		}
		coord, err := s.m.coordinator()
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil { // finding the coordinator took a while
			return err
		}
		resp, err := coord.CommitOffset(req)
		if err != nil {
			s.m.dropCoordinator(coord)
			last = fmt.Errorf("committing offsets of group %s: %w", s.m.group, err)
			continue
		}
		var retry bool
		last = nil
		for topic, parts := range resp.Errors {
			for p, kerr := range parts {
				switch {
				case kerr == sarama.ErrNoError:
				case isLost(kerr):
					err := fmt.Errorf("%w: committing offsets of generation %d: %w", ErrLost, s.generation, kerr)
					s.end(err)
					return err
				case kerr == sarama.ErrNotCoordinatorForConsumer || kerr == sarama.ErrConsumerCoordinatorNotAvailable ||
					kerr == sarama.ErrOffsetsLoadInProgress:
					if kerr != sarama.ErrOffsetsLoadInProgress { // loading: the right coordinator, not ready yet
						s.m.dropCoordinator(nil)
					}
					retry = true
					last = fmt.Errorf("committing offsets of group %s: %w", s.m.group, kerr)
				default:
					last = fmt.Errorf("committing the offset of %s/%d: %w", topic, p, kerr)
				}
			}
		}
		if !retry {
			return last
		}
	}
	return last
}

// Committed reads the committed offsets of the session's partitions. A
// partition without a commit is missing from the result. With stable set
// (for read_committed readers), offsets that a pending transaction is
// committing are waited for (KIP-447, Kafka 2.5 and later).
func (s *Session) Committed(ctx context.Context, stable bool) (map[string]map[int32]Offset, error) {
	out := map[string]map[int32]Offset{}
	if len(s.claims) == 0 {
		return out, nil
	}
	for {
		req := sarama.NewOffsetFetchRequest(s.m.conf.Version, s.m.group, s.claims)
		req.RequireStable = stable && req.Version >= 7
		coord, err := s.m.coordinator()
		if err != nil {
			return nil, err
		}
		resp, err := coord.FetchOffset(req)
		if err != nil {
			s.m.dropCoordinator(coord)
			return nil, fmt.Errorf("reading the committed offsets of group %s: %w", s.m.group, err)
		}
		top := resp.Err
		if resp.Version >= 8 && len(resp.Groups) > 0 {
			top = resp.Groups[0].Err
		}
		retry := false
		switch top {
		case sarama.ErrNoError:
		case sarama.ErrGroupIDNotFound:
			// kfake answers so for a group that never committed (Kafka
			// answers offset -1): no commits yet.
			return out, nil
		case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable:
			s.m.dropCoordinator(nil)
			retry = true
		case sarama.ErrOffsetsLoadInProgress:
			retry = true // the coordinator is right, and still loading the group
		default:
			return nil, fmt.Errorf("reading the committed offsets of group %s: %w", s.m.group, top)
		}
		for topic, parts := range s.claims {
			for _, p := range parts {
				if retry {
					break
				}
				b := resp.GetBlock(topic, p)
				if b == nil {
					continue
				}
				switch b.Err {
				case sarama.ErrNoError:
				case sarama.ErrUnstableOffsetCommit, sarama.ErrOffsetsLoadInProgress:
					retry = true // a transaction is committing offsets of this partition
					continue
				default:
					return nil, fmt.Errorf("reading the committed offset of %s/%d: %w", topic, p, b.Err)
				}
				if b.Offset >= 0 {
					if out[topic] == nil {
						out[topic] = map[int32]Offset{}
					}
					out[topic][p] = Offset{Offset: b.Offset, Metadata: b.Metadata}
				}
			}
		}
		if !retry {
			return out, nil
		}
		clear(out)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
