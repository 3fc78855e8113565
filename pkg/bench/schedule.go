package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

// ScheduleConfig configures the schedule scenario: Records messages
// scheduled Delay ahead through the scheduler API (Send, pipelined), against
// a plain sarama async producer (acks=all, idempotent) writing the same
// records, key, value and ladder headers, to a topic of its own.
type ScheduleConfig struct {
	Records    int64         `json:"records"`
	ValueBytes int           `json:"value_bytes"`
	Tiers      string        `json:"tiers"`
	Delay      time.Duration `json:"delay_ns"`
	Rounds     int           `json:"rounds"`
	Timeout    time.Duration `json:"timeout_ns"` // per phase
}

func (c *ScheduleConfig) setDefaults() {
	if c.Records <= 0 {
		c.Records = 1_000_000
	}
	if c.ValueBytes <= 0 {
		c.ValueBytes = 100
	}
	if c.Tiers == "" {
		c.Tiers = "1m,15m,1h,6h"
	}
	if c.Delay <= 0 {
		c.Delay = time.Hour
	}
	if c.Rounds <= 0 {
		c.Rounds = 1
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Minute
	}
}

// ProducePhase is one timed production of every record.
type ProducePhase struct {
	Elapsed time.Duration `json:"elapsed_ns"` // first send to last acknowledgement
	Rate    float64       `json:"records_per_s"`
	CPU     time.Duration `json:"cpu_ns"` // the bench process's
	Failed  int64         `json:"failed"`
}

// ScheduleRound is one round of both producers.
type ScheduleRound struct {
	Round     int          `json:"round"`
	Scheduler ProducePhase `json:"scheduler"`
	Raw       ProducePhase `json:"raw"`
	Ratio     float64      `json:"ratio"`
}

// ScheduleResult is the schedule scenario's outcome. Rates are the medians
// over the rounds; Ratio is the median of the rounds' ratios (each round
// runs both producers back to back), RateRatio the ratio of the median rates.
type ScheduleResult struct {
	Records       int64           `json:"records"`
	Rounds        []ScheduleRound `json:"rounds"`
	SchedulerRate float64         `json:"scheduler_records_per_s"`
	RawRate       float64         `json:"raw_records_per_s"`
	Ratio         float64         `json:"ratio"`
	RateRatio     float64         `json:"rate_ratio"`
}

// WriteTable implements Result.
func (r *ScheduleResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tproducer\trecords\tseconds\trecords/s\tCPU s\tCPU s/M\tfailed\tratio\t")
	for _, rd := range r.Rounds {
		for _, x := range []struct {
			name string
			p    ProducePhase
		}{{"raw", rd.Raw}, {"scheduler", rd.Scheduler}} {
			ratio := ""
			if x.name == "scheduler" {
				ratio = fmt.Sprintf("%.3f", rd.Ratio)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%.2f\t%s\t%.2f\t%.2f\t%d\t%s\t\n", rd.Round, x.name, thousands(r.Records), x.p.Elapsed.Seconds(),
				thousands(int64(x.p.Rate)), x.p.CPU.Seconds(), x.p.CPU.Seconds()*1e6/float64(r.Records), x.p.Failed, ratio)
		}
	}
	tw.Flush()
}

func scheduleBench(ctx context.Context, env *Env, c *ScheduleConfig, rep *Report) error {
	c.setDefaults()
	res := &ScheduleResult{Records: c.Records}
	rep.Result = res
	val := value(c.ValueBytes)
	var created []string
	defer func() { deleteTopics(env, created) }()
	var schedRates, rawRates, ratios []float64
	for round := 1; round <= c.Rounds; round++ {
		prefix := env.name("s"+strconv.Itoa(round)) + "-"
		l, err := tier.Parse(c.Tiers, prefix)
		if err != nil {
			return err
		}
		target, rawTopic, warmTopic := prefix+"target", prefix+"raw", prefix+"warmup"
		topics := ladderTopics(l)
		topics[target], topics[rawTopic] = 0, 0
		if round == 1 {
			topics[warmTopic] = 0
		}
		if err := createTopics(ctx, env, topics); err != nil {
			return err
		}
		for t := range topics {
			created = append(created, t)
		}
		if round == 1 {
			// Untimed: connections, broker and runtime warm up before the
			// first timed phase, which would otherwise pay for it alone.
			warm := *c
			warm.Records = min(max(c.Records/5, 1000), 100_000)
			if _, err := produceRaw(ctx, env, "warm-up", warmTopic, target, &warm, val); err != nil {
				return err
			}
		}
		rd := ScheduleRound{Round: round}
		raw := func() (err error) {
			rd.Raw, err = produceRaw(ctx, env, fmt.Sprintf("round %d raw producer", round), rawTopic, target, c, val)
			return err
		}
		sched := func() (err error) {
			var prof *profiler
			if round == 1 {
				prof = &profiler{cpu: env.CPUProfile, mem: env.MemProfile}
			}
			rd.Scheduler, err = produceScheduled(ctx, env, fmt.Sprintf("round %d scheduler", round), l, target, c, val, prof)
			return err
		}
		order := []func() error{raw, sched}
		if round%2 == 0 {
			order = []func() error{sched, raw}
		}
		for _, phase := range order {
			if err := phase(); err != nil {
				return err
			}
		}
		rd.Ratio = rd.Scheduler.Rate / rd.Raw.Rate
		ratios = append(ratios, rd.Ratio)
		res.Rounds = append(res.Rounds, rd)
		schedRates, rawRates = append(schedRates, rd.Scheduler.Rate), append(rawRates, rd.Raw.Rate)
	}
	res.SchedulerRate, res.RawRate = median(schedRates), median(rawRates)
	res.Ratio, res.RateRatio = median(ratios), res.SchedulerRate/res.RawRate
	g := Goal{Name: "scheduler/raw ratio", Target: "≥ 0.9", Value: res.Ratio, Met: res.Ratio >= 0.9}
	rep.Goals = append(rep.Goals, g)
	rep.Summary = fmt.Sprintf("schedule: %s records of %d bytes, %s ahead: scheduler %s/s, raw producer %s/s, ratio %.3f (median of %d rounds; of the median rates %.3f) (goal ≥ 0.9 %s)",
		thousands(c.Records), c.ValueBytes, c.Delay, thousands(int64(res.SchedulerRate)), thousands(int64(res.RawRate)), res.Ratio, len(ratios), res.RateRatio,
		map[bool]string{true: "met", false: "missed"}[g.Met])
	return nil
}

// produceRaw sends the records with a plain async producer configured as
// the ladder's (acks=all, idempotent, murmur2), building each record as a
// user of plain Kafka would: key, value, the ladder headers, a timestamp.
func produceRaw(ctx context.Context, env *Env, label, topic, target string, c *ScheduleConfig, val []byte) (ProducePhase, error) {
	pc, err := env.Kafka.Producer()
	if err != nil {
		return ProducePhase{}, err
	}
	p, err := sarama.NewAsyncProducer(env.Kafka.BrokerList(), pc)
	if err != nil {
		return ProducePhase{}, fmt.Errorf("raw producer: %w", kafkaconf.Explain(err, env.Kafka.BrokerList()))
	}
	prog := env.startProgress(label, c.Records)
	defer prog.finish()
	var failed atomic.Int64
	var acks sync.WaitGroup
	acks.Go(func() {
		for range p.Successes() {
			prog.add(1)
		}
	})
	acks.Go(func() {
		for range p.Errors() {
			failed.Add(1)
		}
	})
	cpu0, t0 := cpuSelf(), time.Now()
	for i := range c.Records {
		now := time.Now()
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(key("s", i)), Value: sarama.ByteEncoder(val),
			Headers: envelope.New(target, now.Add(c.Delay).Truncate(time.Millisecond), now, nil), Timestamp: now}
		select {
		case p.Input() <- m:
		case <-ctx.Done():
			p.AsyncClose()
			acks.Wait()
			return ProducePhase{}, ctx.Err()
		}
	}
	p.AsyncClose()
	acks.Wait()
	el := time.Since(t0)
	return ProducePhase{Elapsed: el, Rate: float64(c.Records) / el.Seconds(), CPU: cpuSelf() - cpu0, Failed: failed.Load()}, nil
}

// produceScheduled sends the records through schedule.Scheduler.Send.
func produceScheduled(ctx context.Context, env *Env, label string, l *tier.Ladder, target string, c *ScheduleConfig, val []byte, prof *profiler) (ProducePhase, error) {
	s, err := schedule.New(schedule.Config{Ladder: l, Kafka: env.Kafka, Log: env.Log})
	if err != nil {
		return ProducePhase{}, err
	}
	prog := env.startProgress(label, c.Records)
	defer prog.finish()
	var failed atomic.Int64
	done := func(err error) {
		if err != nil {
			failed.Add(1)
		}
		prog.add(1)
	}
	if err := prof.start(); err != nil {
		s.Close()
		return ProducePhase{}, err
	}
	cpu0, t0 := cpuSelf(), time.Now()
	var sendErr error
	for i := range c.Records {
		if sendErr = s.Send(ctx, schedule.Message{Topic: target, Key: key("s", i), Value: val, Delay: c.Delay}, done); sendErr != nil {
			break
		}
	}
	s.Close() // flushes: every record has its outcome
	el := time.Since(t0)
	ph := ProducePhase{Elapsed: el, Rate: float64(c.Records) / el.Seconds(), CPU: cpuSelf() - cpu0, Failed: failed.Load()}
	return ph, errors.Join(sendErr, prof.stop())
}
