// Package plan is ladder's capacity planner: from a tier set and a workload
// (pending messages, message size, the distribution of reschedule delays) it
// computes, per tier, the arrival rate, the records and bytes stored, hops,
// write amplification, lateness and the partitions needed; Simulate checks
// that arithmetic against a discrete-event simulation of the same workload,
// and Suggest searches for the tier set with the fewest hops under a
// lateness bound.
//
// The steady state: N messages are pending at all times; each is delivered
// when due and scheduled again at once with a fresh delay from the
// distribution. With mean delay D and mean lateness L, messages are
// scheduled (and delivered) at λ = N / (D + L) per second. A tier receiving
// λ·v records per second (v: its visits per message) and holding each for t
// on average stores λ·v·t records (Little's law).
package plan

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ladder/ladder/pkg/tier"
)

// Workload is what the ladder carries.
type Workload struct {
	// Pending is the number of messages scheduled and not yet delivered.
	Pending int64
	// ValueBytes and KeyBytes are the size of a message (KeyBytes 0: a null key).
	ValueBytes, KeyBytes int
	// Target is the topic messages return to (its name is in every record).
	Target string
	// Delays is the delay each message is scheduled with, every time.
	Delays Distribution
	// Batch is the number of records per produce batch, over which the
	// 61-byte batch header is shared (default 100).
	Batch int
	// PartitionRate is the records per second one partition should carry
	// (default 5000): it sizes the partitions of each topic.
	PartitionRate float64
	// Replication is the topics' replication factor (default 3).
	Replication int
	// Partitions, when > 0, is the partition count of every tier topic
	// instead of the one PartitionRate asks for.
	Partitions int
	// TierPartitions, when set, is the partition count of each tier topic,
	// smallest tier first: it overrides Partitions and PartitionRate there.
	TierPartitions []int
	// Lag is the forwarder's delay between releasing a record and its
	// target receiving it, added to every lateness (default 0).
	Lag time.Duration
}

func (w *Workload) setDefaults() {
	if w.Target == "" {
		w.Target = "work"
	}
	if w.Batch == 0 {
		w.Batch = 100
	}
	if w.PartitionRate == 0 {
		w.PartitionRate = 5000
	}
	if w.Replication == 0 {
		w.Replication = 3
	}
}

// Validate checks w after defaults are applied.
func (w Workload) Validate() error {
	switch {
	case w.Pending < 1:
		return errors.New("pending messages: want 1 or more")
	case w.ValueBytes < 1:
		return errors.New("message size: want 1 byte or more")
	case w.KeyBytes < 0:
		return errors.New("key size: want 0 (null key) or more")
	case w.Batch < 1 || w.Batch > 1_000_000:
		return errors.New("batch: want 1 to 1000000 records")
	case !(w.PartitionRate > 0) || math.IsInf(w.PartitionRate, 0):
		return errors.New("per-partition rate: want a positive number of records per second")
	case w.Replication < 1:
		return errors.New("replication factor: want 1 or more")
	case w.Partitions < 0:
		return errors.New("partitions: want 0 (sized from the rate) or more")
	case w.Lag < 0:
		return errors.New("lag: want 0 or more")
	case len(w.Delays.comps) == 0:
		return errors.New("no delay distribution")
	}
	return tier.ValidateTopic(w.Target)
}

// Plan is the computed capacity of a ladder under a workload.
type Plan struct {
	Tiers    string          `json:"tiers"`
	Workload WorkloadSummary `json:"workload"`
	PerTier  []TierPlan      `json:"per_tier"`
	Target   TierPlan        `json:"target"`
	Total    Total           `json:"total"`
}

// WorkloadSummary echoes the workload a plan is for.
type WorkloadSummary struct {
	Pending          int64   `json:"pending"`
	ValueBytes       int     `json:"value_bytes"`
	KeyBytes         int     `json:"key_bytes"`
	Target           string  `json:"target"`
	Delays           string  `json:"delays"`
	MeanDelaySeconds float64 `json:"mean_delay_seconds"`
	MaxDelaySeconds  float64 `json:"max_delay_seconds"`
	BatchRecords     int     `json:"batch_records"`
	PartitionRate    float64 `json:"partition_rate"`
	Replication      int     `json:"replication"`
	LagSeconds       float64 `json:"lag_seconds"`
}

// TierPlan is one tier topic, or the target topic.
type TierPlan struct {
	// Tier is the tier's label ("15m"), or "target".
	Tier         string  `json:"tier"`
	Topic        string  `json:"topic"`
	DelaySeconds float64 `json:"delay_seconds"`
	// ArrivalRate is records per second produced into the topic.
	ArrivalRate float64 `json:"arrival_rate"`
	// StoredRecords is the records waiting in the tier at any time (Little's law).
	StoredRecords float64 `json:"stored_records"`
	// RecordBytes is the mean size of one record, batch header share included.
	RecordBytes float64 `json:"record_bytes"`
	// StoredBytes is StoredRecords × RecordBytes × replication factor.
	StoredBytes float64 `json:"stored_bytes"`
	// HopsPerMessage is how many times a message enters the topic, on average.
	HopsPerMessage float64 `json:"hops_per_message"`
	// WriteAmplification is the bytes written to the topic per byte of
	// message delivered (replication not counted).
	WriteAmplification float64 `json:"write_amplification"`
	// WriteBytesPerSecond is the bytes per second written, replicas included.
	WriteBytesPerSecond float64 `json:"write_bytes_per_second"`
	// DeliveredShare is the share of messages whose last hop is this tier.
	DeliveredShare float64 `json:"delivered_share"`
	// Lateness is of the messages delivered from this tier.
	Lateness Lateness `json:"lateness"`
	// Partitions is what the arrival rate needs at the per-partition rate.
	Partitions int `json:"partitions"`
}

// Lateness is receive time - due time, in seconds.
type Lateness struct {
	MeanSeconds float64 `json:"mean_seconds"`
	P50Seconds  float64 `json:"p50_seconds"`
	P99Seconds  float64 `json:"p99_seconds"`
	MaxSeconds  float64 `json:"max_seconds"`
}

// Total sums the ladder.
type Total struct {
	// DeliveryRate is messages per second delivered, and scheduled again.
	DeliveryRate  float64 `json:"delivery_rate"`
	StoredRecords float64 `json:"stored_records"`
	StoredBytes   float64 `json:"stored_bytes"`
	MeanHops      float64 `json:"mean_hops"`
	MaxHops       int     `json:"max_hops"`
	// WriteAmplification counts every tier record and the target record.
	WriteAmplification  float64  `json:"write_amplification"`
	WriteBytesPerSecond float64  `json:"write_bytes_per_second"`
	Lateness            Lateness `json:"lateness"`
	// WorstLatenessSeconds is the bound of the routing rule: the smallest
	// tier's delay plus the forwarder lag.
	WorstLatenessSeconds float64 `json:"worst_lateness_seconds"`
	// Partitions is the sum over the tier topics.
	Partitions int `json:"partitions"`
}

// Compute plans ladder l under workload w.
func Compute(l *tier.Ladder, w Workload) (*Plan, error) {
	w.setDefaults()
	if err := w.Validate(); err != nil {
		return nil, err
	}
	sizes := newRecordSizes(w.ValueBytes, w.KeyBytes, w.Target, w.Batch)
	ts := l.Tiers()
	delays := make([]time.Duration, len(ts))
	for i, t := range ts {
		delays[i] = t.Delay
	}
	walk := newPaths(delays, &sizes, true)
	if err := walk.run(w.Delays); err != nil {
		return nil, err
	}
	return assemble(l, w, walk), nil
}

// assemble turns the paths into rates and sizes, settling the delivery rate
// and the lateness it causes together.
func assemble(l *tier.Ladder, w Workload, walk *paths) *Plan {
	ts := l.Tiers()
	meanDelay := float64(w.Delays.Mean()) / 1e9
	lag := w.Lag.Seconds()
	partitions := func(tier int, rate float64) int {
		switch {
		case tier < len(w.TierPartitions) && w.TierPartitions[tier] > 0:
			return w.TierPartitions[tier]
		case w.Partitions > 0:
			return w.Partitions
		}
		return max(1, int(math.Ceil(rate/w.PartitionRate-1e-9)))
	}
	// λ = N / (D + lag + mean lateness); the lateness depends on the
	// arrivals per partition of the smallest tier, which depend on λ.
	lambda := float64(w.Pending) / (meanDelay + lag)
	m := newHOL(ts[0].Delay, walk.pieces)
	var shortLate float64 // mean lateness of a short hop, seconds
	for range 20 {
		p0 := partitions(0, lambda*walk.visits[0])
		m.solve(walk.visits[0]-walk.shortShare, lambda/float64(p0))
		shortLate = m.meanShort() / 1000
		next := float64(w.Pending) / (meanDelay + lag + walk.shortShare*shortLate)
		if math.Abs(next-lambda) <= 1e-12*lambda {
			break
		}
		lambda = next
	}
	rf := float64(w.Replication)
	msgBytes := float64(w.ValueBytes + w.KeyBytes)
	maxShort := 0.0
	if walk.shortShare > 0 {
		maxShort = ms(ts[0].Delay) - float64(walk.minShort)/1e6
	}
	lateness := func(zero, short float64) Lateness {
		// Every message is late by the lag at least; those whose last hop
		// is a short one by the head-of-line blocking besides.
		lt := Lateness{MeanSeconds: lag, P50Seconds: lag, P99Seconds: lag, MaxSeconds: lag}
		if short > 0 {
			lt.MeanSeconds += short * shortLate / (zero + short)
			lt.P50Seconds += m.quantile(0.50, zero, short) / 1000
			lt.P99Seconds += m.quantile(0.99, zero, short) / 1000
			lt.MaxSeconds += maxShort / 1000
		}
		return lt
	}
	p := &Plan{
		Tiers: l.String(),
		Workload: WorkloadSummary{
			Pending: w.Pending, ValueBytes: w.ValueBytes, KeyBytes: w.KeyBytes, Target: w.Target,
			Delays: w.Delays.String(), MeanDelaySeconds: meanDelay, MaxDelaySeconds: w.Delays.Max().Seconds(),
			BatchRecords: w.Batch, PartitionRate: w.PartitionRate, Replication: w.Replication, LagSeconds: lag,
		},
	}
	var exactAll float64
	for i, t := range ts {
		tp := TierPlan{
			Tier: t.Label(), Topic: t.Topic, DelaySeconds: t.Delay.Seconds(),
			ArrivalRate:    lambda * walk.visits[i],
			HopsPerMessage: walk.visits[i],
			DeliveredShare: walk.exact[i],
		}
		held := walk.fullTime[i] / 1e9
		zero, short := walk.exact[i], 0.0
		if i == 0 {
			held += walk.shortTime/1e9 + walk.shortShare*shortLate
			short = walk.shortShare
			tp.DeliveredShare += short
		}
		tp.StoredRecords = lambda * held
		if walk.visits[i] > 0 {
			tp.RecordBytes = walk.bytes[i] / walk.visits[i]
		} else {
			tp.RecordBytes = walk.sizes.of(0)
		}
		tp.StoredBytes = tp.StoredRecords * tp.RecordBytes * rf
		tp.WriteAmplification = walk.bytes[i] / msgBytes
		tp.WriteBytesPerSecond = lambda * walk.bytes[i] * rf
		tp.Lateness = lateness(zero, short)
		tp.Partitions = partitions(i, tp.ArrivalRate)
		exactAll += walk.exact[i]
		p.PerTier = append(p.PerTier, tp)

		p.Total.StoredRecords += tp.StoredRecords
		p.Total.StoredBytes += tp.StoredBytes
		p.Total.WriteBytesPerSecond += tp.WriteBytesPerSecond
		p.Total.Partitions += tp.Partitions
	}
	p.Target = TierPlan{
		Tier: "target", Topic: w.Target,
		ArrivalRate:         lambda,
		RecordBytes:         walk.targetBytes,
		HopsPerMessage:      1,
		WriteAmplification:  walk.targetBytes / msgBytes,
		WriteBytesPerSecond: lambda * walk.targetBytes * rf,
		DeliveredShare:      1,
		Lateness:            lateness(exactAll, walk.shortShare),
		Partitions:          max(1, int(math.Ceil(lambda/w.PartitionRate-1e-9))),
	}
	p.Total.DeliveryRate = lambda
	p.Total.MeanHops = walk.meanHops
	p.Total.MaxHops = walk.maxHops
	p.Total.WriteAmplification = walk.cycleBytes / msgBytes
	p.Total.WriteBytesPerSecond += p.Target.WriteBytesPerSecond
	p.Total.Lateness = p.Target.Lateness
	p.Total.WorstLatenessSeconds = ts[0].Delay.Seconds() + lag
	return p
}

// String is a one-line summary.
func (p *Plan) String() string {
	return fmt.Sprintf("%d pending on %s: %.0f msg/s, %.2f hops (max %d), write amplification %.1f×, lateness mean %s worst %s",
		p.Workload.Pending, p.Tiers, p.Total.DeliveryRate, p.Total.MeanHops, p.Total.MaxHops,
		p.Total.WriteAmplification, fmtSeconds(p.Total.Lateness.MeanSeconds), fmtSeconds(p.Total.WorstLatenessSeconds))
}
