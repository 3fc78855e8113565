package forward

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/backoff"
	"github.com/ladder/ladder/pkg/group"
)

// driver is the goroutine around the machine: it joins the group, turns
// fetch responses, producer results, lookups and timers into the machine's
// events, and performs the I/O the machine asks for (fetches, commits,
// lookups). One session at a time; the machine outlives them.
type driver struct {
	f   *Forwarder
	m   *machine
	box *mailbox
	cc  *sarama.Config

	sessCtx    context.Context    // ends with the session: its background jobs stop
	endSession context.CancelFunc // cancels sessCtx
	fetchers   map[int32]*fetcher
	wg         sync.WaitGroup // lookups, offset resets, commits, fetchers

	committing bool
	fenced     bool
	refreshed  map[string]time.Time // topics whose metadata was refreshed, when
}

// fetcher sends one broker's fetches, one at a time.
type fetcher struct {
	in   chan *fetchReq
	busy bool
}

func newDriver(f *Forwarder, m *machine, box *mailbox, cc *sarama.Config) *driver {
	d := &driver{f: f, m: m, box: box, cc: cc, fetchers: map[int32]*fetcher{}, refreshed: map[string]time.Time{}}
	client := f.client
	m.targets.lookup = func(topic string) {
		d.wg.Go(func() { box.post(event{kind: evLooked, topic: topic, err: lookupTarget(client, topic)}) })
	}
	m.early = func(p *partition, offset int64) { box.post(event{kind: evEarly, p: p, offset: offset}) }
	m.resetOffset = d.resetOffset
	m.refreshMetadata = d.refreshMetadata
	return d
}

func (d *driver) currentSession() *group.Session { return d.f.sess.Load() }

// run joins the group and runs sessions until ctx is done, then leaves.
func (d *driver) run(ctx context.Context) {
	member := group.New(d.f.client, d.f.cfg.Group, d.f.topics, d.f.log)
	b := backoff.New(100*time.Millisecond, 10*time.Second)
	for ctx.Err() == nil {
		sess, err := member.Join(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w := b.Next()
			d.f.log.Warn().Err(err).Dur("retry_in", w).Msg("joining the consumer group failed")
			d.wait(ctx, w)
			continue
		}
		b.Reset()
		d.session(ctx, sess)
		sess.Close()
	}
	member.Leave()
}

// wait handles events (results of a session that ended) for w or until ctx is done.
func (d *driver) wait(ctx context.Context, w time.Duration) {
	t := time.NewTimer(w)
	defer t.Stop()
	for {
		d.drain(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-d.box.ping:
		}
	}
}

// session forwards the partitions of sess until it ends or ctx is done.
func (d *driver) session(ctx context.Context, sess *group.Session) {
	f, m := d.f, d.m
	d.f.sess.Store(sess)
	d.fenced = false
	d.sessCtx, d.endSession = context.WithCancel(ctx)
	defer d.endSession()
	f.metrics.sessions.Inc()
	f.health.setSession(true)
	defer f.health.setSession(false)
	parts := m.assign(sess, sess.Claims())
	f.setParts(parts)
	defer f.setParts(nil)
	f.log.Info().Str("member", sess.MemberID()).Int32("generation", sess.Generation()).
		Interface("claims", sess.Claims()).Msg("partitions assigned")

	committed, err := sess.Committed(ctx, f.cfg.ExactlyOnce)
	if err != nil {
		f.log.Warn().Err(err).Msg("reading the committed offsets failed; joining again")
		m.end(true, time.Now())
		m.release()
		return
	}
	for _, p := range parts {
		if c, ok := committed[p.topic][p.id]; ok {
			p.start(c.Offset, c.Metadata)
		} else {
			d.resetOffset(p)
		}
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	commitAt := time.Now().Add(f.cfg.CommitInterval)
	changed := f.control.Changed()
	logAt := time.Now()
	for {
		now := time.Now()
		d.drain(now)
		if now.Sub(logAt) > 5*time.Second {
			logAt = now
			m.logState(now)
		}
		if d.fenced {
			break
		}
		next := m.pump(now)
		d.fetch(now)
		if !f.cfg.ExactlyOnce && !now.Before(commitAt) {
			d.commit(d.sessCtx, sess, false)
			commitAt = now.Add(f.cfg.CommitInterval)
		}
		if !f.cfg.ExactlyOnce && (next.IsZero() || commitAt.Before(next)) {
			next = commitAt
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(now), 0)
		}
		timer.Reset(wait)
		select {
		case <-d.box.ping:
		case <-timer.C:
		case <-changed:
			changed = f.control.Changed()
			m.markAllDirty()
		case <-sess.Done():
		case <-ctx.Done():
		}
		if ctx.Err() != nil || sess.Err() != nil {
			break
		}
	}
	lost := d.fenced || errors.Is(sess.Err(), group.ErrLost)
	if lost {
		f.log.Warn().Err(sess.Err()).Msg("group session lost: dropping the partitions without committing (the new owners forward from the committed offsets)")
	} else {
		f.log.Info().Err(sess.Err()).Msg("partitions released: finishing the records in flight and committing")
	}
	d.finish(ctx, sess, lost)
	m.release()
}

// finish ends the session in the machine and, unless it was lost, waits up
// to ShutdownTimeout for the records in flight, then commits.
func (d *driver) finish(ctx context.Context, sess committer, lost bool) {
	f, m := d.f, d.m
	now := time.Now()
	m.end(lost, now)
	if lost {
		return
	}
	deadline := now.Add(f.cfg.ShutdownTimeout)
	timer := time.NewTimer(f.cfg.ShutdownTimeout)
	defer timer.Stop()
	for m.inFlight() > 0 || !m.sink.idle() {
		select {
		case <-d.box.ping:
			d.drain(time.Now())
			m.pump(time.Now())
			continue
		case <-timer.C:
		}
		f.log.Warn().Int("in_flight", m.inFlight()).Dur("waited", f.cfg.ShutdownTimeout).
			Msg("releasing partitions with unacknowledged records; the next owner forwards them again")
		break
	}
	if !f.cfg.ExactlyOnce && !d.fenced {
		// One budget for settling and committing: what is left of the
		// shutdown timeout, at least finalCommitBudget, of which the final
		// commit keeps finalCommitMin.
		end := later(deadline, time.Now().Add(finalCommitBudget))
		d.settleCommit(end.Add(-finalCommitMin))
		cctx, cancel := context.WithDeadline(context.Background(), later(end, time.Now().Add(finalCommitMin)))
		defer cancel()
		d.commit(cctx, sess, true)
	}
}

// finalCommitBudget is the least time a released session has, after its
// records in flight, to settle its background commit and commit; the final
// commit keeps at least finalCommitMin of it.
const (
	finalCommitBudget = 5 * time.Second
	finalCommitMin    = time.Second
)

// settleCommit stops the session's background commit and waits, until
// deadline, for its answer. Sent after the final commit (a retry while the
// coordinator moves or loads the group), its older offsets would be
// accepted while the group rebalances and would set the released
// partitions back: their next owner would forward those records again.
// Cancelled, it returns at once unless its request is out (or it is still
// finding the coordinator); should the deadline come first, the final
// commit follows that request over the same coordinator connection, and
// Kafka answers a connection's requests in order.
func (d *driver) settleCommit(deadline time.Time) {
	d.endSession()
	if !d.committing {
		return
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for d.committing {
		select {
		case <-d.box.ping:
			d.drain(time.Now())
		case <-timer.C:
			d.f.log.Warn().Msg("the background commit has not returned; the final commit follows it")
			return
		}
	}
}

// drain hands the mailbox's events to the machine.
func (d *driver) drain(now time.Time) {
	var buf []event
	for {
		buf = d.box.take(buf)
		if len(buf) == 0 {
			return
		}
		for i := range buf {
			ev := &buf[i]
			switch ev.kind {
			case evFetched:
				if fe := d.fetchers[ev.fetch.broker.ID()]; fe != nil {
					fe.busy = false
				}
			case evCommitted:
				d.committing = false
			case evTxnDone:
				d.fenced = d.fenced || ev.fenced
			case evStart:
				if !ev.p.gone && ev.p.fetchAt == -1 {
					ev.p.start(ev.offset, "")
				}
				continue
			}
			d.m.handle(*ev, now)
		}
		clear(buf)
	}
}

// committer commits a session's offsets: a *group.Session.
type committer interface {
	Commit(ctx context.Context, offsets map[string]map[int32]group.Offset) error
}

// commit commits the machine's commit points (at-least-once): in the
// background, one commit at a time, or now and waiting for it (final).
func (d *driver) commit(ctx context.Context, sess committer, final bool) {
	if d.committing && !final {
		return
	}
	points := d.m.commits(final)
	if len(points) == 0 {
		return
	}
	offsets := map[string]map[int32]group.Offset{}
	for p, c := range points {
		if offsets[p.topic] == nil {
			offsets[p.topic] = map[int32]group.Offset{}
		}
		offsets[p.topic][p.id] = group.Offset{Offset: c.offset, Metadata: c.meta}
	}
	if final {
		err := sess.Commit(ctx, offsets)
		if err != nil {
			d.f.log.Warn().Err(err).Msg("committing the offsets of the released partitions failed; the next owner forwards their records again")
		}
		d.m.handle(event{kind: evCommitted, commits: points, err: err}, time.Now())
		return
	}
	d.committing = true
	d.wg.Go(func() {
		err := sess.Commit(ctx, offsets)
		d.box.post(event{kind: evCommitted, commits: points, err: err})
	})
}

// fetch sends a fetch to each idle broker leading partitions that want
// records, as far as the memory budget has room.
func (d *driver) fetch(now time.Time) {
	wants := d.m.fetchWants(now)
	if len(wants) == 0 {
		return
	}
	byBroker := map[*sarama.Broker][]*partition{}
	for _, p := range wants {
		b, err := d.f.client.Leader(p.topic, p.id)
		if err != nil {
			p.fetchFailed(err, now)
			d.m.schedule(p)
			continue
		}
		if fe := d.fetchers[b.ID()]; fe != nil && fe.busy {
			continue
		}
		byBroker[b] = append(byBroker[b], p)
	}
	for b, ps := range byBroker {
		room := d.m.fetchRoom()
		if room == 0 {
			return
		}
		fe := d.fetchers[b.ID()]
		if fe == nil {
			fe = &fetcher{in: make(chan *fetchReq, 1)}
			d.fetchers[b.ID()] = fe
			d.wg.Go(func() {
				for fr := range fe.in {
					resp, err := fr.broker.Fetch(fr.req)
					d.box.post(event{kind: evFetched, fetch: fr, resp: resp, err: err})
				}
			})
		}
		fr := &fetchReq{broker: b, req: newFetchRequest(d.cc.Version, d.cc.Consumer.MaxWaitTime, int32(room)), reserved: room}
		partMax := int32(min(d.m.cfg.partitionFetchBytes, room))
		for _, p := range ps {
			fr.req.AddBlock(p.topic, p.id, p.fetchAt, partMax, -1)
			fr.parts = append(fr.parts, p)
			fr.offsets = append(fr.offsets, p.fetchAt)
			fr.epochs = append(fr.epochs, p.fetchEpoch)
			p.fetching = true
		}
		d.m.mem.reserve(room)
		fe.busy = true
		fe.in <- fr
	}
}

// resetOffset looks up the earliest offset of p (a partition without a
// commit, or whose records were deleted) and posts it.
func (d *driver) resetOffset(p *partition) {
	client, ctx, log := d.f.client, d.sessCtx, p.log
	topic, id := p.topic, p.id
	d.wg.Go(func() {
		for attempt := 1; ; attempt++ {
			off, err := client.GetOffset(topic, id, sarama.OffsetOldest)
			if err == nil {
				d.box.post(event{kind: evStart, p: p, offset: off})
				return
			}
			log.Warn().Err(err).Msg("reading the earliest offset failed; retrying")
			if !backoff.Sleep(ctx, backoff.Delay(attempt, 100*time.Millisecond, 5*time.Second)) {
				return
			}
		}
	})
}

// refreshMetadata has the metadata of topic read again (at most once a
// second): a partition's leader moved, or its fetch failed.
func (d *driver) refreshMetadata(topic string) {
	now := time.Now()
	if now.Sub(d.refreshed[topic]) < time.Second {
		return
	}
	d.refreshed[topic] = now
	client := d.f.client
	d.wg.Go(func() {
		if err := client.RefreshMetadata(topic); err != nil {
			d.f.log.Debug().Err(err).Str("topic", topic).Msg("refreshing metadata")
		}
	})
}

// stop ends the fetchers and waits for every background job.
func (d *driver) stop() {
	for _, fe := range d.fetchers {
		close(fe.in)
	}
	d.wg.Wait()
}
