// Package inspect reads the state of a ladder's tiers from the cluster, without
// joining the forwarder group: per tier partition the pending records (end
// offset minus the group's committed offset, read through the admin API, so a
// paused partition's numbers are live), the head's due and release times and
// how overdue it is, the head's age against retention (data that could expire
// unforwarded), the group's members and the dead-letter count, and, for the
// work-ahead lanes it is given, whether work-ahead releases early for them and
// why (package workahead: only while the lane's worker group has members and
// its lag is under the threshold).
//
// The retention warning looks at the head, the oldest record not yet
// forwarded, not at the oldest retained record: a tier keeps forwarded records
// until retention deletes them, so its oldest record is always about
// retention.ms old once the topic has run that long, and says nothing about
// risk. The oldest retained record's age is reported for information.
//
// Records are read as the forwarders read them, read_committed, with
// fetches bounded by the partition's end (package offsets, ReadRange): a tier
// written by exactly-once forwarders holds a transaction marker after each
// transaction, at an offset of its own, and records of aborted transactions.
// Neither is pending, and a partition holding only them answers at once. A
// transaction still open (last stable offset below the end) is shown, not
// waited for.
package inspect

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/offsets"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/workahead"
)

// Config configures an Inspector.
type Config struct {
	// Ladder is the tier set to inspect (required).
	Ladder *tier.Ladder
	// Group is the forwarder group (default "ladder").
	Group string
	// Kafka is the connection configuration (required).
	Kafka kafkaconf.Config
	// RetentionWarn is the fraction of retention.ms a head may reach before
	// a warning (default 0.8).
	RetentionWarn float64
	// OverdueWarn is how overdue a head may be before a warning (default 1m).
	OverdueWarn time.Duration
	// WorkAheadLanes maps each work-ahead lane (target topic) to its worker
	// group, as the forwarders' LADDER_WORKAHEAD_LANES (none: not reported).
	WorkAheadLanes map[string]string
	// LagThreshold is the forwarders' work-ahead lag threshold (default 100).
	LagThreshold int64
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives diagnostics (default: discard).
	Log zerolog.Logger
}

// Inspector reads ladder state. It is not safe for concurrent Inspect calls.
type Inspector struct {
	cfg    Config
	client sarama.Client
	admin  sarama.ClusterAdmin
}

// New connects to the cluster.
func New(cfg Config) (*Inspector, error) {
	if cfg.Ladder == nil {
		return nil, errors.New("invalid inspect config: no ladder")
	}
	if cfg.Group == "" {
		cfg.Group = "ladder"
	}
	if cfg.RetentionWarn <= 0 {
		cfg.RetentionWarn = 0.8
	}
	if cfg.OverdueWarn <= 0 {
		cfg.OverdueWarn = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LagThreshold <= 0 {
		cfg.LagThreshold = 100
	}
	sc, err := cfg.Kafka.Base()
	if err != nil {
		return nil, fmt.Errorf("invalid inspect config: %w", err)
	}
	brokers := cfg.Kafka.BrokerList()
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, kafkaconf.Explain(fmt.Errorf("connecting to Kafka: %w", err), brokers)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("starting admin client: %w", err)
	}
	return &Inspector{cfg: cfg, client: client, admin: admin}, nil
}

// Close disconnects.
func (i *Inspector) Close() error {
	return i.admin.Close() // closes the client too
}

// Inspect reads the state of every tier, the group and the dead-letter topic.
func (i *Inspector) Inspect(ctx context.Context) (*Report, error) {
	now := i.cfg.Now().UTC().Truncate(time.Millisecond)
	r := &Report{At: now, Group: i.cfg.Group, Members: []Member{}, WorkAhead: []Lane{}, Warnings: []string{}}
	l := i.cfg.Ladder
	topics := append(l.Topics(), l.DLQTopic())

	// Partitions of every topic.
	if err := i.client.RefreshMetadata(topics...); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		i.cfg.Log.Debug().Err(err).Msg("refreshing metadata")
	}
	mds, err := i.admin.DescribeTopics(topics)
	if err != nil {
		return nil, fmt.Errorf("describing topics: %w", err)
	}
	parts := map[string][]int32{}
	for _, md := range mds {
		if !errors.Is(md.Err, sarama.ErrNoError) {
			continue
		}
		for _, p := range md.Partitions {
			parts[md.Name] = append(parts[md.Name], p.ID)
		}
		slices.Sort(parts[md.Name])
	}

	// Offsets: log start, end and last stable offset of every partition, committed of the tiers.
	starts, ends, stables, err := i.offsets(parts)
	if err != nil {
		return nil, err
	}
	tierParts := map[string][]int32{}
	for _, t := range l.Topics() {
		if ps, ok := parts[t]; ok {
			tierParts[t] = ps
		}
	}
	committed, err := i.committed(r, tierParts)
	if err != nil {
		return nil, err
	}
	retention, err := i.retention(l.Topics(), parts)
	if err != nil {
		return nil, err
	}
	owners, err := i.group(r)
	if err != nil {
		return nil, err
	}

	// Tiers, partitions and the records to read.
	var reads []read
	resumes := map[tp]*offsets.Resume{} // the commits that list parked records
	for _, t := range l.Tiers() {
		tr := Tier{Topic: t.Topic, DelayMS: t.Delay.Milliseconds(), RetentionMS: retention[t.Topic], Partitions: []Partition{}}
		ps, ok := parts[t.Topic]
		if !ok {
			tr.Missing = true
			r.warn("tier topic %s does not exist (provision it: ladder topics apply)", t.Topic)
		}
		for _, p := range ps {
			tp := tp{t.Topic, p}
			pr := Partition{Partition: p, LogStartOffset: starts[tp], EndOffset: ends[tp], CommittedOffset: -1, Owner: owners[tp]}
			pr.LastStableOffset = min(pr.EndOffset, stables[tp])
			if pr.LastStableOffset < pr.EndOffset {
				pr.OpenTransaction, pr.Uncommitted = true, pr.EndOffset-pr.LastStableOffset
				r.Summary.OpenTransactions++
			}
			c, hasCommit := committed[tp]
			if hasCommit {
				pr.CommittedOffset = c.Offset
			}
			pr.NextOffset = max(pr.CommittedOffset, pr.LogStartOffset)
			if pr.CommittedOffset >= 0 && pr.CommittedOffset < pr.LogStartOffset {
				// Records that passed a parked one were forwarded; the
				// forwarder starts again at the log start without the
				// metadata, so those past it are forwarded again.
				pr.Lost = c.Resume.Unforwarded(pr.CommittedOffset, pr.LogStartOffset)
				r.warn("%s/%d: committed offset %d is below the log start %d: %d records expired before they were forwarded "+
					"(raise retention.ms: see topics/topics.yaml maxOutage)", t.Topic, p, pr.CommittedOffset, pr.LogStartOffset, pr.Lost)
			}
			// Offsets, not yet records: the head read counts the records
			// (markers are none); this stays if it cannot read. Records the
			// commit's metadata says passed a parked one are not pending.
			ahead := pr.LastStableOffset - pr.NextOffset
			var resume *offsets.Resume
			if hasCommit && pr.NextOffset == c.Offset {
				resume = &c.Resume
				pr.Parked = int64(len(c.Resume.Parked))
				resumes[tp] = resume
			}
			pr.Pending = max(0, ahead)
			if resume != nil {
				pr.Pending = resume.Unforwarded(pr.NextOffset, pr.LastStableOffset)
			}
			tr.Partitions = append(tr.Partitions, pr)
			idx := len(tr.Partitions) - 1
			tierIdx := len(r.Tiers)
			if ahead > 0 {
				reads = append(reads, read{tp: tp, offset: pr.NextOffset, end: pr.LastStableOffset, tier: tierIdx, part: idx, head: true, resume: resume})
			}
			if pr.LastStableOffset > pr.LogStartOffset && (ahead <= 0 || pr.NextOffset != pr.LogStartOffset) {
				reads = append(reads, read{tp: tp, offset: pr.LogStartOffset, end: pr.LastStableOffset, tier: tierIdx, part: idx})
			}
		}
		r.Tiers = append(r.Tiers, tr)
	}
	i.readAll(ctx, reads)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Heads and totals.
	for ti, t := range l.Tiers() {
		tr := &r.Tiers[ti]
		for pi := range tr.Partitions {
			pr := &tr.Partitions[pi]
			for _, rd := range reads {
				if rd.tier == ti && rd.part == pi {
					i.apply(r, t, tr, pr, rd)
				}
			}
			tr.Pending += pr.Pending
			if h := pr.Head; h != nil {
				if h.OverdueMS > 0 {
					tr.OverduePartitions++
					tr.MaxOverdueMS = max(tr.MaxOverdueMS, h.OverdueMS)
					since, parked := time.Time{}, false
					if res := resumes[tp{t.Topic, pr.Partition}]; res != nil {
						since, parked = res.ParkedSince(h.Offset)
					}
					switch {
					case parked:
						r.warn("%s/%d: head offset %d is parked since %s, waiting for its target %s to exist or accept writes "+
							"(dead-lettered after LADDER_TARGET_TIMEOUT); the records behind it go on",
							t.Topic, pr.Partition, h.Offset, since.UTC().Format(time.RFC3339), h.Target)
					case time.Duration(h.OverdueMS)*time.Millisecond > i.cfg.OverdueWarn:
						r.warn("%s/%d: head offset %d is overdue by %s: are the forwarders running and keeping up?",
							t.Topic, pr.Partition, h.Offset, human(time.Duration(h.OverdueMS)*time.Millisecond))
					}
				}
				if tr.NextReleaseAt == nil || h.ReleaseAt.Before(*tr.NextReleaseAt) {
					at := h.ReleaseAt
					tr.NextReleaseAt = &at
				}
				tr.MaxRetentionUsed = max(tr.MaxRetentionUsed, pr.RetentionUsed)
			}
		}
		r.Summary.Pending += tr.Pending
		r.Summary.OverduePartitions += tr.OverduePartitions
		r.Summary.MaxOverdueMS = max(r.Summary.MaxOverdueMS, tr.MaxOverdueMS)
	}

	// The dead-letter topic.
	dlq := l.DLQTopic()
	r.DeadLetter = Topic{Topic: dlq}
	if ps, ok := parts[dlq]; ok {
		for _, p := range ps {
			r.DeadLetter.Records += max(0, ends[tp{dlq, p}]-starts[tp{dlq, p}])
		}
	} else {
		r.DeadLetter.Missing = true
		r.warn("dead-letter topic %s does not exist (provision it: ladder topics apply)", dlq)
	}
	for _, topic := range slices.Sorted(maps.Keys(i.cfg.WorkAheadLanes)) {
		group := i.cfg.WorkAheadLanes[topic]
		o := workahead.Observe(i.client, i.admin, topic, group)
		state, reason := workahead.Classify(o, topic, group, i.cfg.LagThreshold)
		r.WorkAhead = append(r.WorkAhead, Lane{Lane: topic, Group: group, Members: o.Members, Lag: o.Lag, State: state.String(), Reason: reason})
	}
	if r.Summary.Pending > 0 && len(r.Members) == 0 {
		r.warn("no forwarder is running in group %s: %d records pending", i.cfg.Group, r.Summary.Pending)
	}
	r.Summary.Tiers = len(r.Tiers)
	r.Summary.Members = len(r.Members)
	r.Summary.DeadLetterRecords = r.DeadLetter.Records
	r.Summary.Warnings = len(r.Warnings)
	return r, nil
}

func (r *Report) warn(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

type tp struct {
	topic     string
	partition int32
}

// read is a record to fetch: a head (the first record from the next
// offset on, and where the records end) or the oldest retained record.
type read struct {
	tp
	offset, end int64 // the range read: [offset, end)
	tier, part  int   // indexes into Report.Tiers and its Partitions
	head        bool
	done        bool
	msg         *sarama.ConsumerMessage // nil: no record in the range
	recordsEnd  int64                   // heads: one past the last record
	resume      *offsets.Resume         // heads: what the commit says passed a parked record
	err         error
}

// apply fills a partition from a record read.
func (i *Inspector) apply(r *Report, t tier.Tier, tr *Tier, pr *Partition, rd read) {
	now := r.At
	if rd.err != nil {
		pr.Error = rd.err.Error()
		r.warn("%s/%d: reading offset %d: %v", t.Topic, pr.Partition, rd.offset, rd.err)
		return
	}
	if !rd.done {
		return // not read: the context ended
	}
	if rd.head {
		pr.Pending = 0
		if rd.msg != nil {
			pr.Pending = rd.recordsEnd - rd.msg.Offset
			if rd.resume != nil {
				pr.Pending = rd.resume.Unforwarded(rd.msg.Offset, rd.recordsEnd)
			}
		}
	}
	if rd.msg == nil {
		return // only transaction markers or aborted records: nothing pending
	}
	ts := rd.msg.Timestamp.UTC().Truncate(time.Millisecond)
	if !rd.head || rd.offset == pr.LogStartOffset {
		pr.OldestTimestamp = &ts
		pr.OldestAgeMS = now.Sub(ts).Milliseconds()
	}
	if !rd.head {
		return
	}
	h := &Head{Offset: rd.msg.Offset, Timestamp: ts, AgeMS: now.Sub(ts).Milliseconds()}
	env, err := envelope.Decode(rd.msg.Headers)
	if err != nil {
		h.Error = err.Error()
		r.warn("%s/%d: head offset %d has bad ladder headers (it will be dead-lettered): %v", t.Topic, pr.Partition, h.Offset, err)
	}
	h.Target, h.Hops = env.Target, env.Hops
	if !env.Due.IsZero() {
		due := env.Due.UTC()
		h.Due = &due
	}
	// A timestamp in the future counts as the moment the forwarder sees
	// it (see pkg/forward): at most now.
	entered := ts
	if entered.After(now) {
		entered = now
	}
	h.ReleaseAt = tier.ReleaseAt(t, entered, env.Due).UTC()
	if h.Error != "" {
		h.ReleaseAt = entered // dead-lettered at once
	}
	h.OverdueMS = now.Sub(h.ReleaseAt).Milliseconds()
	pr.Head = h
	if tr.RetentionMS > 0 {
		pr.RetentionUsed = float64(h.AgeMS) / float64(tr.RetentionMS)
		if pr.RetentionUsed > i.cfg.RetentionWarn {
			pr.RetentionRisk = true
			r.warn("%s/%d: the head (offset %d) is %s old, %.0f%% of retention.ms %s: it could expire before it is forwarded",
				t.Topic, pr.Partition, h.Offset, human(time.Duration(h.AgeMS)*time.Millisecond), 100*pr.RetentionUsed,
				tier.Readable(time.Duration(tr.RetentionMS)*time.Millisecond))
		}
	}
}

// offsets lists the log start, end and last stable offsets of every partition.
func (i *Inspector) offsets(parts map[string][]int32) (starts, ends, stables map[tp]int64, err error) {
	list := func(which int64, iso sarama.IsolationLevel) (map[tp]int64, error) {
		req := map[string]map[int32]int64{}
		for t, ps := range parts {
			req[t] = map[int32]int64{}
			for _, p := range ps {
				req[t][p] = which
			}
		}
		out := map[tp]int64{}
		if len(req) == 0 {
			return out, nil
		}
		res, err := i.admin.ListOffsets(req, &sarama.ListOffsetsOptions{IsolationLevel: iso})
		if err != nil {
			return nil, fmt.Errorf("listing offsets: %w", err)
		}
		for t, m := range res {
			for p, o := range m {
				if o.Err != nil && !errors.Is(o.Err, sarama.ErrNoError) {
					return nil, fmt.Errorf("listing offsets of %s/%d: %w", t, p, o.Err)
				}
				out[tp{t, p}] = o.Offset
			}
		}
		return out, nil
	}
	if starts, err = list(sarama.OffsetOldest, sarama.ReadUncommitted); err != nil {
		return nil, nil, nil, err
	}
	if ends, err = list(sarama.OffsetNewest, sarama.ReadUncommitted); err != nil {
		return nil, nil, nil, err
	}
	// The latest offset read_committed is the last stable offset: where the open transactions begin.
	if stables, err = list(sarama.OffsetNewest, sarama.ReadCommitted); err != nil {
		return nil, nil, nil, err
	}
	return starts, ends, stables, nil
}

// committed reads the group's committed offsets and what their metadata
// says was forwarded past them (offsets.Commits). A group that never
// committed has none.
func (i *Inspector) committed(r *Report, parts map[string][]int32) (map[tp]offsets.Commit, error) {
	out := map[tp]offsets.Commit{}
	if len(parts) == 0 {
		return out, nil
	}
	cs, err := offsets.Commits(i.admin, i.cfg.Group, parts)
	if err != nil {
		return nil, err
	}
	for k, c := range cs {
		if c.ResumeErr != nil {
			r.warn("%s/%d: %v: pending counts every record past the committed offset", k.Topic, k.Partition, c.ResumeErr)
		}
		out[tp{k.Topic, k.Partition}] = c
	}
	return out, nil
}

// retention reads retention.ms of the topics that exist.
func (i *Inspector) retention(topics []string, parts map[string][]int32) (map[string]int64, error) {
	var res []*sarama.ConfigResource
	for _, t := range topics {
		if _, ok := parts[t]; ok {
			res = append(res, &sarama.ConfigResource{Type: sarama.TopicResource, Name: t, ConfigNames: []string{"retention.ms"}})
		}
	}
	out := map[string]int64{}
	if len(res) == 0 {
		return out, nil
	}
	results, err := i.admin.DescribeConfigs(res, sarama.DescribeConfigsOptions{})
	if err != nil {
		return nil, fmt.Errorf("describing topic configs: %w", err)
	}
	for _, r := range results {
		for _, c := range r.Configs {
			if c.Name == "retention.ms" {
				if v, err := strconv.ParseInt(c.Value, 10, 64); err == nil {
					out[r.Name] = v
				}
			}
		}
	}
	return out, nil
}

// group describes the forwarder group into r and returns the owner of each partition.
func (i *Inspector) group(r *Report) (map[tp]string, error) {
	owners := map[tp]string{}
	g, err := offsets.DescribeGroup(i.admin, i.cfg.Group)
	if err != nil {
		return nil, err
	}
	if g == nil {
		return owners, nil
	}
	r.GroupState = g.State
	for _, id := range slices.Sorted(maps.Keys(g.Members)) {
		m := g.Members[id]
		mem := Member{MemberID: m.MemberId, ClientID: m.ClientId, Host: m.ClientHost, Assigned: map[string][]int32{}}
		a, err := m.GetMemberAssignment()
		if err != nil {
			i.cfg.Log.Warn().Err(err).Str("member", id).Msg("cannot decode the member's assignment")
		}
		if a != nil {
			for t, ps := range a.Topics {
				ps = slices.Clone(ps)
				slices.Sort(ps)
				mem.Assigned[t] = ps
				for _, p := range ps {
					owners[tp{t, p}] = m.MemberId
				}
			}
		}
		r.Members = append(r.Members, mem)
	}
	return owners, nil
}

// readAll fetches the records of reads, a few partitions at a time, with
// read_committed fetches bounded by each read's end: no group is joined
// (the forwarders' group is never rebalanced), and a range holding only
// transaction markers answers at once.
func (i *Inspector) readAll(ctx context.Context, reads []read) {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for k := range reads {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			rd := &reads[k]
			if rd.head {
				var rr offsets.Readable
				rr, rd.err = offsets.ReadRange(ctx, i.client, rd.topic, rd.partition, rd.offset, rd.end)
				rd.msg, rd.recordsEnd = rr.First, rr.End
			} else {
				rd.msg, rd.err = offsets.FirstRecord(ctx, i.client, rd.topic, rd.partition, rd.offset, rd.end)
			}
			rd.done = ctx.Err() == nil
		})
	}
	wg.Wait()
}
