package plan

import (
	"math"
	"time"

	"github.com/ladder/ladder/pkg/tier"
)

// Comparison sets a plan and a simulation of the same workload side by side.
type Comparison struct {
	Plan       *Plan        `json:"plan"`
	Simulation *SimResult   `json:"simulation"`
	Rows       []CompareRow `json:"rows"`
}

// CompareRow is one figure, computed and simulated.
type CompareRow struct {
	// Tier is a tier label, or "total".
	Tier string `json:"tier"`
	// Metric is arrival_rate, stored_records, hops_per_message,
	// delivered_share, lateness_mean, lateness_p50, lateness_p99 or
	// lateness_max (seconds); for the total also delivery_rate, mean_hops
	// and max_hops.
	Metric     string  `json:"metric"`
	Computed   float64 `json:"computed"`
	Simulated  float64 `json:"simulated"`
	Difference float64 `json:"difference"`
	// RelativeError is (simulated - computed) / computed, absent when the
	// computed figure is zero.
	RelativeError *float64 `json:"relative_error,omitempty"`
}

// SimConfigFor is the simulation of plan p's workload on ladder l with
// pending messages: the delays and lag of w, the partitions p computed,
// scaled with the number of messages when it differs from the plan's so
// that a partition carries about the same records per second.
func SimConfigFor(l *tier.Ladder, w Workload, p *Plan, pending int, window time.Duration, seed uint64) SimConfig {
	scale := float64(pending) / float64(p.Workload.Pending)
	parts := make([]int, len(p.PerTier))
	for i, t := range p.PerTier {
		parts[i] = t.Partitions
		if pending != int(p.Workload.Pending) {
			parts[i] = max(1, int(math.Round(float64(t.Partitions)*scale)))
		}
	}
	return SimConfig{Tiers: l, Partitions: parts, Pending: pending, Delays: w.Delays, Window: window, Lag: w.Lag, Seed: seed}
}

// PlanOf is the plan of exactly what cfg simulates: w with cfg's pending
// messages and partitions. Compare a simulation with it when the simulation
// is smaller than the plan it checks.
func PlanOf(cfg SimConfig, w Workload) (*Plan, error) {
	w.Pending = int64(cfg.Pending)
	w.TierPartitions = cfg.Partitions
	return Compute(cfg.Tiers, w)
}

// Compare lines up plan p with simulation s.
func Compare(p *Plan, s *SimResult) *Comparison {
	c := &Comparison{Plan: p, Simulation: s}
	add := func(tierName, metric string, computed, simulated float64) {
		r := CompareRow{Tier: tierName, Metric: metric, Computed: computed, Simulated: simulated, Difference: simulated - computed}
		if computed != 0 {
			e := (simulated - computed) / computed
			r.RelativeError = &e
		}
		c.Rows = append(c.Rows, r)
	}
	lateness := func(name string, a, b Lateness) {
		add(name, "lateness_mean", a.MeanSeconds, b.MeanSeconds)
		add(name, "lateness_p50", a.P50Seconds, b.P50Seconds)
		add(name, "lateness_p99", a.P99Seconds, b.P99Seconds)
		add(name, "lateness_max", a.MaxSeconds, b.MaxSeconds)
	}
	// The simulation may carry fewer messages than the plan: its rates and
	// stored records scale with the pending count.
	scale := float64(s.Pending) / float64(p.Workload.Pending)
	for i, t := range p.PerTier {
		st := s.PerTier[i]
		add(t.Tier, "arrival_rate", t.ArrivalRate*scale, st.ArrivalRate)
		add(t.Tier, "stored_records", t.StoredRecords*scale, st.StoredRecords)
		add(t.Tier, "hops_per_message", t.HopsPerMessage, st.HopsPerMessage)
		add(t.Tier, "delivered_share", t.DeliveredShare, st.DeliveredShare)
		if t.DeliveredShare > 0 || st.DeliveredShare > 0 {
			lateness(t.Tier, t.Lateness, st.Lateness)
		}
	}
	var stored float64
	for _, st := range s.PerTier {
		stored += st.StoredRecords
	}
	add("total", "delivery_rate", p.Total.DeliveryRate*scale, s.DeliveryRate)
	add("total", "stored_records", p.Total.StoredRecords*scale, stored)
	add("total", "mean_hops", p.Total.MeanHops, s.MeanHops)
	add("total", "max_hops", float64(p.Total.MaxHops), float64(s.MaxHops))
	lateness("total", p.Total.Lateness, s.Lateness)
	return c
}

// Row returns the row of tier and metric, if any.
func (c *Comparison) Row(tierName, metric string) (CompareRow, bool) {
	for _, r := range c.Rows {
		if r.Tier == tierName && r.Metric == metric {
			return r, true
		}
	}
	return CompareRow{}, false
}
