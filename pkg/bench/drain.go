package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/tier"
)

// Drain baselines: plain copy loops that move the same records between two
// topics, beside the forwarder, in every round. The sarama consumer group
// loop ("raw") always runs; Baselines adds the others.
const (
	// BaselineSarama is plain sarama partition consumers (no group, no
	// commits) feeding one idempotent acks=all async producer, configured
	// as ladder's: the ceiling of a sarama forwarder.
	BaselineSarama = "sarama"
	// BaselineKgo is franz-go (kgo) consuming every partition directly and
	// producing with its defaults (idempotent, acks=all) but no
	// compression: the broker's practical limit for a Go client.
	BaselineKgo = "kgo"
)

// DrainConfig configures the drain scenario: Records already-due records in
// the smallest tier, forwarded to their target, against plain
// consume→produce loops moving the same records between two topics.
type DrainConfig struct {
	Records       int64         `json:"records"`
	ValueBytes    int           `json:"value_bytes"`
	Tiers         string        `json:"tiers"`
	Rounds        int           `json:"rounds"`
	LoadProducers int           `json:"load_producers"`
	Timeout       time.Duration `json:"timeout_ns"` // per phase
	// ProfileRaw takes the profiles of Env during the first raw phase
	// instead of the first forward phase, to compare the two.
	ProfileRaw bool `json:"profile_raw"`
	// Baselines run beside the sarama group loop: BaselineSarama,
	// BaselineKgo (default both).
	Baselines []string `json:"baselines"`
	// Perf, when set, is the perf.data file of `perf record -g` attached to
	// `ladder run` during the first forward phase (forwarder mode process):
	// a CPU profile of the process itself, which serves no pprof.
	Perf string `json:"perf,omitempty"`
}

// ParseBaselines reads a comma-separated list of drain baselines ("" or
// "none": none).
func ParseBaselines(s string) ([]string, error) {
	out := []string{}
	if s == "" || s == "none" {
		return out, nil
	}
	for _, b := range strings.Split(s, ",") {
		b = strings.TrimSpace(b)
		if b != BaselineSarama && b != BaselineKgo {
			return nil, fmt.Errorf("baseline %q: accepted: %s, %s (comma-separated) or none", b, BaselineSarama, BaselineKgo)
		}
		if !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return out, nil
}

func (c *DrainConfig) setDefaults() {
	if c.Records <= 0 {
		c.Records = 1_000_000
	}
	if c.ValueBytes <= 0 {
		c.ValueBytes = 100
	}
	if c.Tiers == "" {
		c.Tiers = "1m,15m,1h,6h"
	}
	if c.Rounds <= 0 {
		c.Rounds = 1
	}
	if c.LoadProducers <= 0 {
		c.LoadProducers = 4
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Minute
	}
	if c.Baselines == nil {
		c.Baselines = []string{BaselineSarama, BaselineKgo}
	}
}

// Phase is one timed move of every record to its destination.
type Phase struct {
	// Total is from the start of the mover to the last record at the destination.
	Total time.Duration `json:"total_ns"`
	// Moving is from the last poll (every 20 ms) that saw no record at the
	// destination to the one that saw the last: the rate's base, without the
	// time to join the group.
	Moving time.Duration `json:"moving_ns"`
	// Rate is over Moving; RateTotal over Total (end to end: the group
	// join, or a process's start, included).
	Rate      float64 `json:"records_per_s"`
	RateTotal float64 `json:"records_per_s_end_to_end"`
	// MoverCPU is the CPU time of the process that moved the records (the
	// bench process, or `ladder run` in process mode); BrokerCPU the
	// broker's (embedded, or a real one watched with --broker-pid; else 0).
	MoverCPU  time.Duration `json:"mover_cpu_ns"`
	BrokerCPU time.Duration `json:"broker_cpu_ns"`
	// MoverHWMKiB is the peak RSS of `ladder run` in process mode (0 in process).
	MoverHWMKiB int64 `json:"mover_hwm_kib,omitempty"`
}

// CPUPerMillion is the mover's CPU seconds per million records.
func (p Phase) cpuPerMillion(n int64) float64 { return p.MoverCPU.Seconds() * 1e6 / float64(n) }

// DrainRound is one round: every mover on freshly loaded topics.
type DrainRound struct {
	Round   int   `json:"round"`
	Forward Phase `json:"forward"`
	// Raw is the sarama consumer group loop; Sarama and Kgo the baselines
	// of DrainConfig.Baselines (nil when not run).
	Raw    Phase  `json:"raw"`
	Sarama *Phase `json:"raw_sarama,omitempty"`
	Kgo    *Phase `json:"raw_kgo,omitempty"`
	// Ratio is forward/raw over the moving times; RatioSarama and RatioKgo
	// forward/baseline end to end (each mover's start to its last record).
	Ratio       float64 `json:"ratio"`
	RatioSarama float64 `json:"ratio_sarama,omitempty"`
	RatioKgo    float64 `json:"ratio_kgo,omitempty"`
}

// DrainResult is the drain scenario's outcome. Rates are the medians over
// the rounds; ratios are the medians of the rounds' ratios (each round runs
// every mover back to back, so its ratio is free of the machine's slower
// drifts), RateRatio the ratio of the median rates.
type DrainResult struct {
	Records        int64        `json:"records"`
	Preload        loadStats    `json:"preload"`
	Rounds         []DrainRound `json:"rounds"`
	ForwardRate    float64      `json:"forward_records_per_s"`
	RawRate        float64      `json:"raw_records_per_s"`
	Ratio          float64      `json:"ratio"`
	RateRatio      float64      `json:"rate_ratio"`
	ForwardCPUPerM float64      `json:"forward_cpu_s_per_million"`
	RawCPUPerM     float64      `json:"raw_cpu_s_per_million"`
	// End to end (start to last record; the forwarder's group join
	// included): the forwarder's and the baselines' median rates, and the
	// medians of the rounds' forward/baseline ratios (0 when not run).
	ForwardRateTotal float64 `json:"forward_records_per_s_end_to_end"`
	SaramaRate       float64 `json:"raw_sarama_records_per_s_end_to_end,omitempty"`
	KgoRate          float64 `json:"raw_kgo_records_per_s_end_to_end,omitempty"`
	RatioSarama      float64 `json:"ratio_sarama,omitempty"`
	RatioKgo         float64 `json:"ratio_kgo,omitempty"`
	// ForwardProfile is where `ladder run` spent its CPU in the first
	// forward phase (DrainConfig.Perf).
	ForwardProfile *CPUProfile `json:"forward_cpu_profile,omitempty"`
}

// WriteTable implements Result.
func (r *DrainResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tmover\trecords\ttotal s\tmoving s\trecords/s end to end\tmoving\tmover CPU s\tCPU s/M\tbroker CPU s\tpeak RSS MiB\tforward/this\t")
	for _, rd := range r.Rounds {
		type row struct {
			name  string
			p     *Phase
			ratio float64
		}
		rows := []row{{"raw (sarama group)", &rd.Raw, rd.Ratio}, {"raw sarama", rd.Sarama, rd.RatioSarama},
			{"raw kgo", rd.Kgo, rd.RatioKgo}, {"forward", &rd.Forward, 0}}
		for _, x := range rows {
			if x.p == nil {
				continue
			}
			ratio := ""
			if x.ratio > 0 {
				ratio = fmt.Sprintf("%.3f", x.ratio)
			}
			rss := "-"
			if x.p.MoverHWMKiB > 0 {
				rss = fmt.Sprintf("%.1f", float64(x.p.MoverHWMKiB)/1024)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%.2f\t%.2f\t%s\t%s\t%.2f\t%.2f\t%.2f\t%s\t%s\t\n", rd.Round, x.name, thousands(r.Records),
				x.p.Total.Seconds(), x.p.Moving.Seconds(), thousands(int64(x.p.RateTotal)), thousands(int64(x.p.Rate)), x.p.MoverCPU.Seconds(),
				x.p.cpuPerMillion(r.Records), x.p.BrokerCPU.Seconds(), rss, ratio)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "\nforward/this: over the moving times for the sarama group loop, end to end for the other baselines")
	fmt.Fprintf(w, "preload (tier and copy source, each round): %s\n", r.Preload)
	if r.ForwardProfile != nil {
		writeProfile(w, "ladder run's CPU in round 1 (perf record; each sample in the first part it ran under)", r.ForwardProfile)
	}
}

func drain(ctx context.Context, env *Env, c *DrainConfig, rep *Report) error {
	c.setDefaults()
	res := &DrainResult{Records: c.Records}
	rep.Result = res
	client, err := connect(env)
	if err != nil {
		return err
	}
	defer client.Close()
	val := value(c.ValueBytes)
	var created []string
	defer func() { deleteTopics(env, created) }()

	var fwdRates, rawRates, fwdCPU, rawCPU, ratios, fwdTotal, saramaRates, saramaRatios, kgoRates, kgoRatios []float64
	for round := 1; round <= c.Rounds; round++ {
		prefix := env.name("r"+strconv.Itoa(round)) + "-"
		l, err := tier.Parse(c.Tiers, prefix)
		if err != nil {
			return err
		}
		target, src, dst := prefix+"target", prefix+"raw-src", prefix+"raw-dst"
		topics := ladderTopics(l)
		topics[target], topics[src], topics[dst] = 0, 0, 0
		for _, b := range c.Baselines {
			topics[prefix+b+"-dst"] = 0
		}
		if err := createTopics(ctx, env, topics); err != nil {
			return err
		}
		for t := range topics {
			created = append(created, t)
		}

		// The same records for both: due an hour ago, stamped an hour ago, so
		// the smallest tier releases every one at once.
		past := time.Now().Add(-time.Hour)
		hdrs := envelope.New(target, past, past, nil)
		tierTopic := l.Smallest().Topic
		n := c.Records
		st, err := load(ctx, env, fmt.Sprintf("round %d preload", round), 0, 2*n, c.LoadProducers, func(i int64) *sarama.ProducerMessage {
			topic := tierTopic
			if i >= n {
				topic, i = src, i-n
			}
			return &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(key("d", i)), Value: sarama.ByteEncoder(val),
				Headers: hdrs, Timestamp: past}
		})
		if err != nil {
			return fmt.Errorf("preloading: %w", err)
		}
		res.Preload.add(st)

		rd := DrainRound{Round: round}
		var rawProf, fwdProf *profiler
		if round == 1 && c.ProfileRaw {
			rawProf = &profiler{cpu: env.CPUProfile, mem: env.MemProfile}
		} else if round == 1 {
			fwdProf = &profiler{cpu: env.CPUProfile, mem: env.MemProfile}
		}
		runRaw := func() error {
			rd.Raw, err = timePhase(ctx, env, fmt.Sprintf("round %d raw copy", round), client, dst, n, c.Timeout, func() (*running, error) {
				return startRawCopy(ctx, env, src, dst, prefix+"raw")
			}, rawProf)
			return err
		}
		runForward := func() error {
			prof := fwdProf
			if round == 1 && c.Perf != "" {
				if prof == nil {
					prof = &profiler{}
				}
				prof.perf = c.Perf
			}
			rd.Forward, err = timePhase(ctx, env, fmt.Sprintf("round %d forward", round), client, target, n, c.Timeout, func() (*running, error) {
				return startForwarder(ctx, env, env.Forwarder, l, prefix+"ladder")
			}, prof)
			return err
		}
		baseline := func(name string, ph **Phase, start func(dst string) (*running, error)) func() error {
			return func() error {
				p, err := timePhase(ctx, env, fmt.Sprintf("round %d raw %s", round, name), client, prefix+name+"-dst", n, c.Timeout,
					func() (*running, error) { return start(prefix + name + "-dst") }, nil)
				*ph = &p
				return err
			}
		}
		order := []func() error{runRaw}
		for _, b := range c.Baselines {
			switch b {
			case BaselineSarama:
				order = append(order, baseline(b, &rd.Sarama, func(dst string) (*running, error) { return startSaramaCopy(ctx, env, src, dst) }))
			case BaselineKgo:
				order = append(order, baseline(b, &rd.Kgo, func(dst string) (*running, error) { return startKgoCopy(ctx, env, src, dst) }))
			}
		}
		// The forwarder runs last in odd rounds, first in even ones; the
		// baselines rotate.
		rot := (round - 1) % len(order)
		order = append(order[rot:], order[:rot]...)
		if round%2 == 0 {
			order = append([]func() error{runForward}, order...)
		} else {
			order = append(order, runForward)
		}
		for _, phase := range order {
			if err := phase(); err != nil {
				return err
			}
		}
		if round == 1 && c.Perf != "" {
			if res.ForwardProfile, err = perfProfile(c.Perf); err != nil {
				return err
			}
		}
		rd.Ratio = rd.Forward.Rate / rd.Raw.Rate
		if rd.Sarama != nil {
			rd.RatioSarama = rd.Forward.RateTotal / rd.Sarama.RateTotal
			saramaRates, saramaRatios = append(saramaRates, rd.Sarama.RateTotal), append(saramaRatios, rd.RatioSarama)
		}
		if rd.Kgo != nil {
			rd.RatioKgo = rd.Forward.RateTotal / rd.Kgo.RateTotal
			kgoRates, kgoRatios = append(kgoRates, rd.Kgo.RateTotal), append(kgoRatios, rd.RatioKgo)
		}
		ratios = append(ratios, rd.Ratio)
		res.Rounds = append(res.Rounds, rd)
		fwdRates, rawRates = append(fwdRates, rd.Forward.Rate), append(rawRates, rd.Raw.Rate)
		fwdTotal = append(fwdTotal, rd.Forward.RateTotal)
		fwdCPU, rawCPU = append(fwdCPU, rd.Forward.cpuPerMillion(n)), append(rawCPU, rd.Raw.cpuPerMillion(n))
	}
	res.ForwardRate, res.RawRate = median(fwdRates), median(rawRates)
	res.Ratio, res.RateRatio = median(ratios), res.ForwardRate/res.RawRate
	res.ForwardCPUPerM, res.RawCPUPerM = median(fwdCPU), median(rawCPU)
	res.ForwardRateTotal = median(fwdTotal)
	res.SaramaRate, res.RatioSarama = median(saramaRates), median(saramaRatios)
	res.KgoRate, res.RatioKgo = median(kgoRates), median(kgoRatios)
	g := Goal{Name: "forward/raw ratio", Target: "≥ 0.9", Value: res.Ratio, Met: res.Ratio >= 0.9}
	rep.Goals = append(rep.Goals, g)
	rep.Summary = fmt.Sprintf("drain: %s records of %d bytes: forward %s/s, raw %s/s, ratio %.3f (median of %d rounds; of the median rates %.3f) (goal ≥ 0.9 %s); CPU per million: forward %.2f s, raw %.2f s",
		thousands(c.Records), c.ValueBytes, thousands(int64(res.ForwardRate)), thousands(int64(res.RawRate)), res.Ratio, len(ratios), res.RateRatio,
		map[bool]string{true: "met", false: "missed"}[g.Met], res.ForwardCPUPerM, res.RawCPUPerM)
	if len(saramaRatios) > 0 {
		gs := Goal{Name: "forward/raw sarama ratio, end to end", Target: "≥ 0.8", Value: res.RatioSarama, Met: res.RatioSarama >= 0.8}
		rep.Goals = append(rep.Goals, gs)
		rep.Summary += fmt.Sprintf("; end to end: forward %s/s, raw sarama %s/s, ratio %.3f (goal ≥ 0.8 %s)", thousands(int64(res.ForwardRateTotal)),
			thousands(int64(res.SaramaRate)), res.RatioSarama, map[bool]string{true: "met", false: "missed"}[gs.Met])
	}
	if len(kgoRatios) > 0 {
		rep.Summary += fmt.Sprintf("; raw kgo %s/s, forward/kgo %.3f", thousands(int64(res.KgoRate)), res.RatioKgo)
	}
	return nil
}

// timePhase starts a mover and times it until dst holds n records more
// than when it started.
func timePhase(ctx context.Context, env *Env, label string, client sarama.Client, dst string, n int64, timeout time.Duration,
	start func() (*running, error), prof *profiler) (Phase, error) {
	parts, err := client.Partitions(dst)
	if err != nil {
		return Phase{}, fmt.Errorf("partitions of %s: %w", dst, err)
	}
	tps := map[string][]int32{dst: parts}
	base, err := endSum(client, tps)
	if err != nil {
		return Phase{}, err
	}
	if err := prof.start(); err != nil {
		return Phase{}, err
	}
	brokerCPU := env.Broker.CPU()
	t0 := time.Now()
	mover, err := start()
	if err != nil {
		prof.stop()
		return Phase{}, err
	}
	if mover.proc != nil {
		if err := prof.attach(mover.proc.Pid()); err != nil {
			mover.stop()
			prof.stop()
			return Phase{}, err
		}
	}
	moverCPU := mover.cpu()
	if mover.proc != nil {
		moverCPU = 0 // a new process: all its CPU is this phase's
	}
	prog := env.startProgress(label, n)
	idle, done, err := waitCount(ctx, prog, base, base+n, timeout, func() (int64, error) { return endSum(client, tps) })
	prog.finish()
	p := Phase{Total: done.Sub(t0), Moving: done.Sub(idle), MoverCPU: mover.cpu() - moverCPU, BrokerCPU: env.Broker.CPU() - brokerCPU}
	if mover.proc != nil {
		if m, err := mover.proc.Memory(); err == nil {
			p.MoverHWMKiB = m.HWM
		}
	}
	p.Rate = float64(n) / max(p.Moving.Seconds(), 1e-3)
	p.RateTotal = float64(n) / max(p.Total.Seconds(), 1e-3)
	perr := prof.stop()
	if serr := mover.stop(); serr != nil && !errors.Is(serr, context.Canceled) {
		env.Log.Warn().Err(serr).Msg("stopping the mover")
	}
	return p, errors.Join(err, perr)
}

// profiler writes a CPU profile and an allocation profile (with a base
// taken at start, for `go tool pprof -base`) around a phase. A nil profiler
// or empty paths do nothing.
//
// perf, when set, is the output of `perf record -g` attached to a mover
// process (attach): the CPU profile of `ladder run`, which serves no pprof.
type profiler struct {
	cpu, mem string
	cpuFile  *os.File
	perf     string
	perfCmd  *exec.Cmd
	perfOut  *capped
}

// perfFrequency is the sampling rate of perf record, per second: enough for
// a drain of a few seconds, light on the profiled process.
const perfFrequency = 999

// attach starts perf record on process pid, when p.perf is set.
func (p *profiler) attach(pid int) error {
	if p == nil || p.perf == "" {
		return nil
	}
	p.perfOut = &capped{}
	cmd := exec.Command("perf", "record", "-F", strconv.Itoa(perfFrequency), "-g", "-o", p.perf, "-p", strconv.Itoa(pid))
	cmd.Stdout, cmd.Stderr = p.perfOut, p.perfOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGINT}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting perf record (install perf, or drop --perf): %w", err)
	}
	p.perfCmd = cmd
	return nil
}

func (p *profiler) start() error {
	if p == nil {
		return nil
	}
	if p.mem != "" {
		if err := writeAllocs(p.mem + ".base"); err != nil {
			return err
		}
	}
	if p.cpu != "" {
		f, err := os.Create(p.cpu)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("cpu profile: %w", err)
		}
		p.cpuFile = f
	}
	return nil
}

func (p *profiler) stop() error {
	if p == nil {
		return nil
	}
	var errs []error
	if p.perfCmd != nil {
		// perf writes its file when interrupted, and exits non-zero.
		_ = p.perfCmd.Process.Signal(syscall.SIGINT)
		_ = p.perfCmd.Wait()
		if st, err := os.Stat(p.perf); err != nil || st.Size() == 0 {
			errs = append(errs, fmt.Errorf("perf record wrote no %s: %v\n%s", p.perf, err, tail(p.perfOut.String())))
		}
		p.perfCmd = nil
	}
	if p.cpuFile != nil {
		pprof.StopCPUProfile()
		errs = append(errs, p.cpuFile.Close())
		p.cpuFile = nil
	}
	if p.mem != "" {
		errs = append(errs, writeAllocs(p.mem))
	}
	return errors.Join(errs...)
}

func writeAllocs(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("allocation profile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("allocation profile: %w", err)
	}
	return f.Close()
}

// startRawCopy runs the baseline: a plain sarama consumer group on src
// whose records go to dst through an async producer with the forwarder's
// producer and consumer settings (acks=all, idempotent, the same fetch sizes
// and buffers), each offset marked after its record is acknowledged.
func startRawCopy(ctx context.Context, env *Env, src, dst, group string) (*running, error) {
	pc, cc, err := copyConfigs(env)
	if err != nil {
		return nil, err
	}
	brokers := env.Kafka.BrokerList()
	producer, err := sarama.NewAsyncProducer(brokers, pc)
	if err != nil {
		return nil, fmt.Errorf("raw copy producer: %w", err)
	}
	cg, err := sarama.NewConsumerGroup(brokers, group, cc)
	if err != nil {
		producer.Close()
		return nil, fmt.Errorf("raw copy consumer group: %w", err)
	}
	var acks sync.WaitGroup
	acks.Go(func() {
		for m := range producer.Successes() {
			o := m.Metadata.(rawOrigin)
			o.sess.MarkOffset(o.m.Topic, o.m.Partition, o.m.Offset+1, "")
		}
	})
	acks.Go(func() {
		for pe := range producer.Errors() {
			env.Log.Warn().Err(pe.Err).Msg("raw copy: produce failed")
		}
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		h := rawHandler{dst: dst, in: producer.Input()}
		var err error
		for runCtx.Err() == nil {
			if err = cg.Consume(runCtx, []string{src}, h); err != nil && runCtx.Err() == nil {
				env.Log.Warn().Err(err).Msg("raw copy: consumer group")
				time.Sleep(100 * time.Millisecond)
			}
		}
		cg.Close()
		producer.AsyncClose()
		acks.Wait()
		done <- nil
	}()
	return &running{stop: func() error { cancel(); return <-done }}, nil
}

type rawOrigin struct {
	sess sarama.ConsumerGroupSession
	m    *sarama.ConsumerMessage
}

type rawHandler struct {
	dst string
	in  chan<- *sarama.ProducerMessage
}

func (rawHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (rawHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h rawHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return nil
			}
			select {
			case h.in <- copyMessage(m, h.dst, rawOrigin{s, m}):
			case <-s.Context().Done():
				return nil
			}
		case <-s.Context().Done():
			return nil
		}
	}
}
