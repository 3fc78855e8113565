package forward

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a forwarded record, the outcome label of ladder_forwarded_records_total.
const (
	OutcomeForwarded    = "forwarded"     // to a smaller tier
	OutcomeDelivered    = "delivered"     // to its target, due
	OutcomeEarly        = "early"         // to its target before due, by work-ahead
	OutcomeDeadLettered = "dead_lettered" // to the dead-letter topic
)

// metrics are the forwarder's Prometheus instruments. Labels are bounded:
// tier topic, outcome, reason; never a key, offset or message id.
type metrics struct {
	records         *prometheus.CounterVec
	deadLettered    *prometheus.CounterVec
	produceErrors   *prometheus.CounterVec
	releaseLateness *prometheus.HistogramVec
	dueLateness     *prometheus.HistogramVec
	transactions    *prometheus.CounterVec
	sessions        prometheus.Counter
}

// latencyBuckets span 1ms to about 1h.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2.5, 17)

func newMetrics(exactlyOnce bool) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ladder_forwarded_records_total",
			Help: "Records forwarded out of a tier and acknowledged by the broker, by outcome (forwarded to a smaller tier, delivered to the target, early by work-ahead, dead_lettered).",
		}, []string{"tier", "outcome"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ladder_dead_lettered_records_total",
			Help: "Records sent to the dead-letter topic, by reason.",
		}, []string{"tier", "reason"}),
		produceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ladder_produce_errors_total",
			Help: "Produce attempts that failed and were retried (the offset is held meanwhile).",
		}, []string{"tier"}),
		releaseLateness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ladder_release_lateness_seconds",
			Help:    "Forward time minus the moment the head became releasable (min of timestamp + tier delay and ladder-due).",
			Buckets: latencyBuckets,
		}, []string{"tier"}),
		dueLateness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ladder_delivery_lateness_seconds",
			Help:    "For records delivered to their target: forward time minus ladder-due.",
			Buckets: latencyBuckets,
		}, []string{"tier"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ladder_transactions_total",
			Help: "Exactly-once transactions by outcome: committed, aborted (its records are sent again), fenced (aborted because this forwarder was fenced: a stale group generation, which ends that session, or another producer with its transactional.id).",
		}, []string{"outcome"}),
		sessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ladder_group_sessions_total",
			Help: "Consumer group sessions this forwarder started (one per rebalance it took part in).",
		}),
	}
	if exactlyOnce {
		for _, o := range []string{TxnCommitted, TxnAborted, TxnFenced} {
			m.transactions.WithLabelValues(o)
		}
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.records, m.deadLettered, m.produceErrors, m.releaseLateness, m.dueLateness, m.transactions, m.sessions}
}

// tierMetrics are the instruments of one tier, resolved once per claim so
// the per-record path does no label lookup.
type tierMetrics struct {
	forwarded, delivered, early, deadLettered prometheus.Counter
	produceErrors                             prometheus.Counter
	releaseLateness, dueLateness              prometheus.Observer
	m                                         *metrics
	tier                                      string
}

func (m *metrics) forTier(tier string) *tierMetrics {
	return &tierMetrics{
		forwarded:       m.records.WithLabelValues(tier, OutcomeForwarded),
		delivered:       m.records.WithLabelValues(tier, OutcomeDelivered),
		early:           m.records.WithLabelValues(tier, OutcomeEarly),
		deadLettered:    m.records.WithLabelValues(tier, OutcomeDeadLettered),
		produceErrors:   m.produceErrors.WithLabelValues(tier),
		releaseLateness: m.releaseLateness.WithLabelValues(tier),
		dueLateness:     m.dueLateness.WithLabelValues(tier),
		m:               m,
		tier:            tier,
	}
}

func (t *tierMetrics) deadLetter(reason string) {
	t.deadLettered.Inc()
	t.m.deadLettered.WithLabelValues(t.tier, reason).Inc()
}

// Gauges computed at scrape time from the claimed partitions.
var (
	descClaimed = prometheus.NewDesc("ladder_claimed_partitions",
		"Tier partitions claimed by this forwarder.", []string{"tier"}, nil)
	descPaused = prometheus.NewDesc("ladder_paused_partitions",
		"Claimed tier partitions paused because their head is not due yet.", []string{"tier"}, nil)
	descPending = prometheus.NewDesc("ladder_pending_records",
		"Records in the claimed tier partitions not yet forwarded: end offset (refreshed every few seconds, live even while paused) minus the next offset to commit.", []string{"tier"}, nil)
	descOverdue = prometheus.NewDesc("ladder_head_overdue_seconds",
		"The largest time by which a claimed partition's head is past its release time and not yet forwarded (0 when every head is waiting or forwarded).", []string{"tier"}, nil)
	descNextRelease = prometheus.NewDesc("ladder_next_release_seconds",
		"Seconds until the earliest held head of the tier is released.", []string{"tier"}, nil)
	descParked = prometheus.NewDesc("ladder_parked_records",
		"Records waiting for their target topic to exist or accept writes (dead-lettered after LADDER_TARGET_TIMEOUT); the records behind them go on.", []string{"tier"}, nil)
	descInFlight = prometheus.NewDesc("ladder_oldest_in_flight_seconds",
		"How long the oldest record handed to the producer (or its transaction) has waited for its acknowledgement; 0 when none is in flight. The producer retries failed batches itself, in order, for minutes: this is where they show.", []string{"tier"}, nil)
	descBuffer = prometheus.NewDesc("ladder_buffer_bytes",
		"Bytes the forwarder holds of records (fetched, held, in flight) and has reserved for fetches on their way, against LADDER_BUFFER_MEMORY.", nil, nil)
	descBufferLimit = prometheus.NewDesc("ladder_buffer_limit_bytes",
		"LADDER_BUFFER_MEMORY: the most the forwarder holds of records, for the whole process.", nil, nil)
	descBrokersUp = prometheus.NewDesc("ladder_brokers_up",
		"1 when the last broker health check (every HealthInterval: the end offsets of the claimed partitions, or the controller) succeeded, else 0.", nil, nil)
)

// brokersUp is 1 when the brokers answered the last health check in time.
func (f *Forwarder) brokersUp() float64 {
	h := &f.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.brokersChecked.IsZero() || h.brokersErr != nil || time.Since(h.brokersChecked) > grace(f.cfg.HealthInterval, brokerStale) {
		return 0
	}
	return 1
}

// Describe implements prometheus.Collector.
func (f *Forwarder) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClaimed, descPaused, descPending, descOverdue, descNextRelease, descParked, descInFlight, descBuffer, descBufferLimit, descBrokersUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector with the state of the claimed partitions.
func (f *Forwarder) Collect(ch chan<- prometheus.Metric) {
	type agg struct {
		claimed, paused, pending, parked int
		overdue, next, inFlight          float64
		hasNext                          bool
	}
	now := time.Now().UnixNano()
	by := make(map[string]*agg, len(f.topics))
	for _, t := range f.topics {
		by[t] = &agg{}
	}
	f.partsMu.Lock()
	for _, p := range f.parts {
		a := by[p.tier.Topic]
		a.claimed++
		if p.heldState.Load() {
			a.paused++
		}
		a.pending += int(p.pending())
		a.parked += int(p.parkedCount.Load())
		if at := p.oldestSent.Load(); at != 0 {
			a.inFlight = max(a.inFlight, float64(now-at)/1e9)
		}
		if at := p.releaseNanos.Load(); at != 0 {
			d := float64(now-at) / 1e9
			if d > a.overdue {
				a.overdue = d
			}
			if d < 0 && (!a.hasNext || -d < a.next) {
				a.next, a.hasNext = -d, true
			}
		}
	}
	f.partsMu.Unlock()
	ch <- prometheus.MustNewConstMetric(descBrokersUp, prometheus.GaugeValue, f.brokersUp())
	ch <- prometheus.MustNewConstMetric(descBuffer, prometheus.GaugeValue, float64(f.mem.gauge.Load()))
	ch <- prometheus.MustNewConstMetric(descBufferLimit, prometheus.GaugeValue, float64(f.mem.limit))
	for t, a := range by {
		ch <- prometheus.MustNewConstMetric(descClaimed, prometheus.GaugeValue, float64(a.claimed), t)
		ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, float64(a.paused), t)
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(a.pending), t)
		ch <- prometheus.MustNewConstMetric(descOverdue, prometheus.GaugeValue, a.overdue, t)
		ch <- prometheus.MustNewConstMetric(descParked, prometheus.GaugeValue, float64(a.parked), t)
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, a.inFlight, t)
		if a.hasNext {
			ch <- prometheus.MustNewConstMetric(descNextRelease, prometheus.GaugeValue, a.next, t)
		}
	}
}
