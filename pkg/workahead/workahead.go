// Package workahead releases held heads early when the workers of a lane run
// out of work: while a lane's worker group has active members and its lag
// stays under a threshold, the held heads bound for that lane with the
// earliest due time are released, at a bounded rate, marked ladder-early. It
// stops when the lag rises or the last member leaves.
//
// A lane nobody consumes is unattended, not idle: "nothing to do" means
// workers exist and wait for work. Without a member nothing leaves early, so
// a message scheduled before its workers start comes back on time.
//
// Members are read with DescribeConsumerGroups, lag through the admin API
// (end offsets minus the worker group's committed offsets), never from a
// consumer's fetch state, which is frozen for a paused partition.
package workahead

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/backoff"
	"github.com/ladder/ladder/pkg/tier"
)

// Config configures a Controller.
type Config struct {
	// Lanes maps each target topic (lane) to the consumer group of its
	// workers (required, at least one).
	Lanes map[string]string
	// LagThreshold: a lane with active members is idle while its lag is
	// below this (default 100).
	LagThreshold int64
	// Rate is the most early releases per second per lane, per forwarder
	// process (default 100).
	Rate float64
	// Interval is how often lag is read (default 1s).
	Interval time.Duration
	// Registerer receives the work-ahead metrics (nil: none).
	Registerer prometheus.Registerer
	// Log receives lane state changes.
	Log zerolog.Logger
}

// ParseLanes parses "work-fast=workers-fast,work-slow=workers-slow".
func ParseLanes(s string) (map[string]string, error) {
	lanes := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		topic, group, ok := strings.Cut(pair, "=")
		if !ok || group == "" {
			return nil, fmt.Errorf("lane %q: want topic=workergroup", pair)
		}
		if err := tier.ValidateTopic(topic); err != nil {
			return nil, fmt.Errorf("lane %q: %w", pair, err)
		}
		lanes[topic] = group
	}
	if len(lanes) == 0 {
		return nil, errors.New("no lanes: want topic=workergroup pairs, comma-separated")
	}
	return lanes, nil
}

// Controller decides which held heads leave early. It is safe for
// concurrent use by the partitions of a forwarder.
type Controller struct {
	cfg   Config
	log   zerolog.Logger
	lanes map[string]*lane

	mu    sync.Mutex
	heads map[*Head]struct{}

	releases   *prometheus.CounterVec
	lagGauge   *prometheus.GaugeVec
	lagOK      *prometheus.GaugeVec
	idleGag    *prometheus.GaugeVec
	stateGauge *prometheus.GaugeVec
}

type lane struct {
	topic, group string
	state        State
	reason       string
	members      int
	lag          int64
	tokens       float64
	err          error
	refreshes    int
	released     int64
}

// Head is a held head registered with the controller.
type Head struct {
	target  string
	due     time.Time
	release chan struct{}
	notify  func() // called (it must not block) when the head is released early; may be nil
}

// Released is closed when the controller releases the head early.
func (h *Head) Released() <-chan struct{} { return h.release }

// New validates cfg and returns a Controller.
func New(cfg Config) (*Controller, error) {
	if len(cfg.Lanes) == 0 {
		return nil, errors.New("invalid work-ahead config: no lanes")
	}
	if cfg.LagThreshold <= 0 {
		cfg.LagThreshold = 100
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 100
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	c := &Controller{cfg: cfg, log: cfg.Log.With().Str("component", "workahead").Logger(),
		lanes: map[string]*lane{}, heads: map[*Head]struct{}{},
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ladder_workahead_releases_total",
			Help: "Heads released before their due time because their lane's workers were idle.",
		}, []string{"target"}),
		lagGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ladder_workahead_lane_lag",
			Help: "Records of the lane not yet committed by its worker group, as last read successfully (see ladder_workahead_lane_lag_ok).",
		}, []string{"target"}),
		lagOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ladder_workahead_lane_lag_ok",
			Help: "1 when the last read of the lane's lag succeeded, 0 otherwise (lag unknown: nothing is released early for the lane).",
		}, []string{"target"}),
		idleGag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ladder_workahead_lane_idle",
			Help: "1 while the lane's worker group has members and its lag is under the threshold: work-ahead releases heads for it.",
		}, []string{"target"}),
		stateGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ladder_workahead_lane_state",
			Help: "1 for the lane's work-ahead state, 0 for the others: unknown (not read), unattended (no worker group member), busy (lag at or above the threshold), idle (releasing early).",
		}, []string{"lane", "state"}),
	}
	for topic, group := range cfg.Lanes {
		l := &lane{topic: topic, group: group}
		c.lanes[topic] = l
		// Unknown until the first read.
		c.lagOK.WithLabelValues(topic).Set(0)
		c.idleGag.WithLabelValues(topic).Set(0)
		c.setState(l, StateUnknown, "not read yet")
	}
	if cfg.Registerer != nil {
		for _, col := range []prometheus.Collector{c.releases, c.lagGauge, c.lagOK, c.idleGag, c.stateGauge} {
			if err := cfg.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("registering work-ahead metrics: %w", err)
			}
		}
	}
	return c, nil
}

// Hold registers a held head bound for target, due at due. It returns nil
// when target is not a watched lane. The caller must Drop it when the head
// leaves (released early, due, or revoked).
func (c *Controller) Hold(target string, due time.Time) *Head {
	return c.HoldFunc(target, due, nil)
}

// HoldFunc is Hold that also calls notify, which must not block, when the
// controller releases the head: a caller holding many heads in one
// goroutine learns of a release without a channel per head.
func (c *Controller) HoldFunc(target string, due time.Time, notify func()) *Head {
	if _, ok := c.lanes[target]; !ok {
		return nil
	}
	h := &Head{target: target, due: due, release: make(chan struct{}), notify: notify}
	c.mu.Lock()
	c.heads[h] = struct{}{}
	c.mu.Unlock()
	return h
}

// Drop unregisters h. Dropping nil is a no-op.
func (c *Controller) Drop(h *Head) {
	if h == nil {
		return
	}
	c.mu.Lock()
	delete(c.heads, h)
	c.mu.Unlock()
}

// LaneState is a lane as last seen, for tests and status output.
type LaneState struct {
	Topic     string
	Group     string
	Members   int // members of Group reading Topic at the last stable read
	Lag       int64
	State     State
	Reason    string // why the lane is in State, in words
	Idle      bool   // State == StateIdle: heads leave early
	Held      int    // held heads bound for the lane, registered now
	Refreshes int    // lane reads so far
	Released  int64  // early releases so far
	Err       error  // last read error
}

// Lanes returns the state of every lane, sorted by topic.
func (c *Controller) Lanes() []LaneState {
	c.mu.Lock()
	defer c.mu.Unlock()
	held := map[string]int{}
	for h := range c.heads {
		held[h.target]++
	}
	out := make([]LaneState, 0, len(c.lanes))
	for _, l := range c.lanes {
		out = append(out, LaneState{Topic: l.topic, Group: l.group, Members: l.members, Lag: l.lag, State: l.state, Reason: l.reason,
			Idle: l.state == StateIdle, Held: held[l.topic], Refreshes: l.refreshes, Released: l.released, Err: l.err})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return out
}

// Run reads the lanes' members and lag every Interval and releases heads of
// idle lanes until ctx is done. brokers and sc configure its own admin connection.
// While Kafka is unreachable it retries connecting with back-off (Interval
// doubling to 30s); the lanes' lag is unknown meanwhile, so nothing is
// released early. It returns nil once ctx is done.
func (c *Controller) Run(ctx context.Context, brokers []string, sc *sarama.Config) error {
	r := c.connect(ctx, brokers, sc)
	if r == nil {
		return nil // ctx done before Kafka was reachable
	}
	defer r.Close()

	refresh := time.NewTicker(c.cfg.Interval)
	defer refresh.Stop()
	// Release in small steps so a rate of, say, 50/s is spread over the second.
	step := 20 * time.Millisecond
	tick := time.NewTicker(step)
	defer tick.Stop()
	c.refresh(r)
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-refresh.C:
			c.refresh(r)
		case now := <-tick.C:
			c.release(now.Sub(last))
			last = now
		}
	}
}

// connect opens the admin connection, retrying with back-off until it
// succeeds or ctx is done (nil). Each failure counts as a failed read of
// every lane.
func (c *Controller) connect(ctx context.Context, brokers []string, sc *sarama.Config) *Reader {
	var r *Reader
	backoff.Retry(ctx, backoff.New(c.cfg.Interval, 30*time.Second), func() (err error) {
		r, err = NewReader(brokers, sc, c.cfg.Lanes)
		return err
	}, func(err error, d time.Duration) {
		err = fmt.Errorf("work-ahead: %w", err)
		for _, l := range c.lanes {
			c.record(l, Observation{Err: err})
		}
		c.log.Warn().Err(err).Dur("retry_in", d).Msg("work-ahead cannot read the lanes' lag; nothing is released early until it can")
	})
	return r
}

func (c *Controller) refresh(r *Reader) {
	for _, l := range c.lanes {
		o := Observe(r.client, r.admin, l.topic, l.group)
		if state, reason, changed := c.record(l, o); changed {
			// l.members: the last stable read's (only this goroutine writes it)
			c.log.Info().Str("lane", l.topic).Str("workers", l.group).Int("members", l.members).Int64("lag", o.Lag).
				Str("state", state.String()).Msg("work-ahead: lane " + l.topic + " " + state.String() + ": " + reason)
		}
		if o.Err != nil {
			c.log.Warn().Err(o.Err).Str("lane", l.topic).Msg("reading lane members and lag")
		}
	}
}

// record keeps the result of one read of l and updates its gauges. Only an
// idle lane releases: an unknown lag or member count, no member, or a lag at
// the threshold stop it. It returns the lane's state, why, and whether the
// state changed.
func (c *Controller) record(l *lane, o Observation) (State, string, bool) {
	state, reason := Classify(o, l.topic, l.group, c.cfg.LagThreshold)
	c.mu.Lock()
	changed := state != l.state
	l.err = o.Err
	l.refreshes++
	if o.Err == nil {
		l.lag = o.Lag
		if !o.Rebalancing { // the members of the last stable read stand meanwhile
			l.members = o.Members
		}
	}
	if state != StateIdle {
		l.tokens = 0
	}
	c.setState(l, state, reason)
	c.mu.Unlock()
	if o.Err == nil {
		c.lagGauge.WithLabelValues(l.topic).Set(float64(o.Lag))
		c.lagOK.WithLabelValues(l.topic).Set(1)
	} else {
		c.lagOK.WithLabelValues(l.topic).Set(0)
	}
	return state, reason, changed
}

// setState sets l's state and its gauges.
func (c *Controller) setState(l *lane, s State, reason string) {
	l.state, l.reason = s, reason
	for _, st := range States {
		c.stateGauge.WithLabelValues(l.topic, st.String()).Set(map[bool]float64{true: 1}[st == s])
	}
	c.idleGag.WithLabelValues(l.topic).Set(map[bool]float64{true: 1}[s == StateIdle])
}

// release gives each idle lane its tokens for elapsed and spends them on the
// registered heads of that lane with the earliest due time.
func (c *Controller) release(elapsed time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lanes {
		if l.state != StateIdle {
			continue
		}
		l.tokens = min(l.tokens+c.cfg.Rate*elapsed.Seconds(), max(c.cfg.Rate, 1))
		for l.tokens >= 1 {
			var first *Head
			for h := range c.heads {
				if h.target == l.topic && (first == nil || h.due.Before(first.due)) {
					first = h
				}
			}
			if first == nil {
				break
			}
			delete(c.heads, first)
			close(first.release)
			if first.notify != nil {
				first.notify()
			}
			l.tokens--
			l.released++
			// Count it now: the lane's lag will rise as these arrive.
			l.lag++
			if l.lag >= c.cfg.LagThreshold {
				l.tokens = 0
				c.setState(l, StateBusy, fmt.Sprintf("%s, lag %d ≥ threshold %d (counting the heads released early since the last read): nothing leaves early",
					members(l.members), l.lag, c.cfg.LagThreshold))
			}
			c.releases.WithLabelValues(l.topic).Inc()
		}
	}
}
