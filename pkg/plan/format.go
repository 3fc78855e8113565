package plan

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// WriteTable writes p as a table: one row per tier, the target, the total,
// then a summary line.
func WriteTable(w io.Writer, p *Plan) error {
	wl := p.Workload
	rf := fmt.Sprintf("×%d", wl.Replication)
	fmt.Fprintf(w, "workload: %s pending messages of %s (%s per record, headers and batch share included), "+
		"delays %s (mean %s, max %s), replication %d, %s records/s per partition, lag %s\n\n",
		groupThousands(wl.Pending), fmtBytes(float64(wl.ValueBytes+wl.KeyBytes)), fmtBytes(p.Target.RecordBytes),
		wl.Delays, fmtSeconds(wl.MeanDelaySeconds), fmtSeconds(wl.MaxDelaySeconds), wl.Replication,
		fmtCount(wl.PartitionRate), fmtSeconds(wl.LagSeconds))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "tier\ttopic\tin rec/s\tstored rec\tstored %s\thops/msg\twrite amp\twrite/s %s\tdelivered\tlate mean\tlate p50\tlate p99\tlate max\tpartitions\t\n", rf, rf)
	row := func(t TierPlan, stored string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s/s\t%s\t%s\t%s\t%s\t%s\t%d\t\n",
			t.Tier, t.Topic, fmtCount(t.ArrivalRate), stored, storedBytes(t, stored), t.HopsPerMessage, t.WriteAmplification,
			fmtBytes(t.WriteBytesPerSecond), fmtPercent(t.DeliveredShare),
			lateCell(t, t.Lateness.MeanSeconds), lateCell(t, t.Lateness.P50Seconds), lateCell(t, t.Lateness.P99Seconds),
			lateCell(t, t.Lateness.MaxSeconds), t.Partitions)
	}
	for _, t := range p.PerTier {
		row(t, fmtCount(t.StoredRecords))
	}
	row(p.Target, "-")
	tt := p.Total
	fmt.Fprintf(tw, "total\t\t\t%s\t%s\t%.2f\t%.2f\t%s/s\t\t%s\t%s\t%s\t%s\t%d\t\n",
		fmtCount(tt.StoredRecords), fmtBytes(tt.StoredBytes), tt.MeanHops, tt.WriteAmplification,
		fmtBytes(tt.WriteBytesPerSecond), fmtSeconds(tt.Lateness.MeanSeconds), fmtSeconds(tt.Lateness.P50Seconds),
		fmtSeconds(tt.Lateness.P99Seconds), fmtSeconds(tt.Lateness.MaxSeconds), tt.Partitions+p.Target.Partitions)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nsummary: %s msg/s scheduled and delivered; %.2f hops per message (max %d); write amplification %.1f× "+
		"(%s/s written with replication %d); %s records, %s stored with replication; lateness mean %s, p99 %s, "+
		"worst %s (smallest tier %s + lag %s); %d tier partitions + %d target\n",
		fmtCount(tt.DeliveryRate), tt.MeanHops, tt.MaxHops, tt.WriteAmplification, fmtBytes(tt.WriteBytesPerSecond),
		wl.Replication, fmtCount(tt.StoredRecords), fmtBytes(tt.StoredBytes), fmtSeconds(tt.Lateness.MeanSeconds),
		fmtSeconds(tt.Lateness.P99Seconds), fmtSeconds(tt.WorstLatenessSeconds), p.PerTier[0].Tier,
		fmtSeconds(wl.LagSeconds), tt.Partitions, p.Target.Partitions)
	return err
}

func storedBytes(t TierPlan, stored string) string {
	if stored == "-" {
		return "-"
	}
	return fmtBytes(t.StoredBytes)
}

func lateCell(t TierPlan, v float64) string {
	if t.DeliveredShare == 0 {
		return "-"
	}
	return fmtSeconds(v)
}

// WriteComparison writes c: what was simulated, then each figure computed
// and simulated with the relative error.
func WriteComparison(w io.Writer, c *Comparison) error {
	s := c.Simulation
	perSec := func(n float64) string { return fmtCount(n/s.WallSeconds) + "/s" }
	fmt.Fprintf(w, "simulation: %s pending, %s measured after the warm-up, %s messages delivered in it, none early: %v; "+
		"%s of simulated time, %s events (records released or scheduled) in %.1fs (%s events, %s messages delivered)\n\n",
		groupThousands(int64(s.Pending)), fmtSeconds(s.WindowSeconds), groupThousands(s.Delivered), s.Early == 0,
		fmtSeconds(s.SimulatedSeconds), fmtCount(float64(s.Events)), s.WallSeconds, perSec(float64(s.Events)), perSec(float64(s.Delivered)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "tier\tmetric\tcomputed\tsimulated\terror\t\n")
	for _, r := range c.Rows {
		f := metricFormat(r.Metric)
		e := "-"
		if r.RelativeError != nil {
			e = fmt.Sprintf("%+.2f%%", *r.RelativeError*100)
		} else if r.Difference == 0 {
			e = "0"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", r.Tier, strings.ReplaceAll(r.Metric, "_", " "), f(r.Computed), f(r.Simulated), e)
	}
	return tw.Flush()
}

func metricFormat(metric string) func(float64) string {
	switch {
	case strings.HasPrefix(metric, "lateness"):
		return fmtSeconds
	case metric == "delivered_share":
		return fmtPercent
	case metric == "hops_per_message" || metric == "mean_hops":
		return func(v float64) string { return fmt.Sprintf("%.3f", v) }
	case metric == "max_hops":
		return func(v float64) string { return fmt.Sprintf("%.0f", v) }
	}
	return fmtCount
}

// fmtCount renders n with three significant digits and a k, M, G or T suffix.
func fmtCount(n float64) string {
	return scaled(n, []string{"", "k", "M", "G", "T"})
}

// fmtBytes renders n bytes in decimal units.
func fmtBytes(n float64) string {
	return scaled(n, []string{" B", " kB", " MB", " GB", " TB", " PB"})
}

func scaled(n float64, units []string) string {
	i := 0
	for math.Abs(n) >= 999.5 && i < len(units)-1 {
		n /= 1000
		i++
	}
	switch {
	case n == 0:
		return "0" + units[0]
	case i == 0 && n == math.Trunc(n):
		return fmt.Sprintf("%.0f%s", n, units[i])
	case math.Abs(n) >= 99.95:
		return fmt.Sprintf("%.0f%s", n, units[i])
	case math.Abs(n) >= 9.995:
		return fmt.Sprintf("%.1f%s", n, units[i])
	}
	return fmt.Sprintf("%.2f%s", n, units[i])
}

func fmtPercent(f float64) string {
	switch {
	case f == 0:
		return "0%"
	case f >= 0.9995 && f < 1.0005:
		return "100%"
	case f < 0.001:
		return fmt.Sprintf("%.3f%%", f*100)
	}
	return fmt.Sprintf("%.1f%%", f*100)
}

// fmtSeconds renders a duration in seconds: 850ms, 29.8s, 4m12s, 2h05m, 3d04h.
func fmtSeconds(s float64) string {
	switch {
	case s == 0:
		return "0s"
	case s < 1:
		return fmt.Sprintf("%.0fms", s*1000)
	case s < 59.95:
		return fmt.Sprintf("%.1fs", s)
	case s < 3600:
		r := math.Round(s)
		return fmt.Sprintf("%dm%02ds", int(r)/60, int(r)%60)
	case s < 86400:
		r := math.Round(s / 60)
		return fmt.Sprintf("%dh%02dm", int(r)/60, int(r)%60)
	}
	r := math.Round(s / 3600)
	return fmt.Sprintf("%dd%02dh", int(r)/24, int(r)%24)
}

// groupThousands renders n as 50,000,000.
func groupThousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// WriteSuggestion writes the ranking of s and the current ladder under it.
func WriteSuggestion(w io.Writer, s *Suggestion) error {
	what := "mean hops"
	if s.Objective == ObjectiveWriteAmp {
		what = "write amplification"
	}
	fmt.Fprintf(w, "suggest: minimise %s with the smallest tier at most %s and at most %d tiers; "+
		"%s tier sets searched over %s\n\n",
		what, fmtSeconds(s.MaxLatenessSeconds), s.MaxTiers, groupThousands(int64(s.Searched)), strings.Join(s.Candidates, ","))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "rank\ttiers\thops/msg\tmax hops\twrite amp\tlate mean\tlate p99\tworst\tpartitions\t\n")
	row := func(rank string, c Candidate) {
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%d\t%.2f\t%s\t%s\t%s\t%d\t\n", rank, c.Tiers, c.MeanHops, c.MaxHops,
			c.WriteAmplification, fmtSeconds(c.LatenessMeanSeconds), fmtSeconds(c.LatenessP99Seconds),
			fmtSeconds(c.WorstLatenessSeconds), c.Partitions)
	}
	for i, c := range s.Ranked {
		row(fmt.Sprint(i+1), c)
	}
	row("current", s.Current)
	return tw.Flush()
}
