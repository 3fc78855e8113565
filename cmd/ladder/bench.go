package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ladder/ladder/pkg/bench"
	"github.com/ladder/ladder/pkg/kafkaconf"
)

func init() {
	register(command{name: "bench", summary: "benchmarks: drain, schedule, lateness, pending (embedded broker or --brokers)", order: 60, run: benchCmd})
}

const benchUsage = `bench <drain|schedule|lateness|pending|redis> [flags]

  drain     preload --records due records into the smallest tier; time the forwarder moving them to
            the target, and a plain sarama consume→produce loop moving the same records: forward/raw ratio
  schedule  the scheduler API (Send, pipelined) against a plain sarama async producer: ratio
  lateness  a steady schedule load (--rate, --duration, delays 0..--max-delay) through the ladder:
            release and end-to-end lateness, p50/p99/max per tier
  pending   for each --partitions count per tier and each of --steps, load that many pending records (due
            a day ahead, in every tier) on fresh topics; a fresh ` + "`ladder run`" + ` process claims every partition
            and holds every head: its peak RSS; then (--drain, last step) the backlog is made due and
            drained: the peak RSS while draining
  redis     for comparison: load --records members into a Redis sorted set you started (--addr) and
            print its memory

Without --brokers, the embedded broker runs as a separate process (` + "`ladder dev --forwarders=false`" + `) with its
data in a temporary directory; with --brokers, the bench creates its topics (bench-<run>-...) on that cluster
and deletes them after. Records are loaded with franz-go in 1 MiB batches, one partition's batch per request
(--loader kgo, the way librdkafka and the Java client batch under load), or with sarama's small batches
(--loader sarama). Every ` + "`ladder run`" + ` started gets the bench's environment (e.g. LADDER_BUFFER_MEMORY) and
--run-env. Progress goes to stderr; the report to stdout (--json for machines).`

// benchCmd is `ladder bench SCENARIO`.
func benchCmd(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "usage: ladder %s\n", benchUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return usageError{errors.New("name a scenario: drain, schedule, lateness, pending or redis")}
	}
	scenario, args := args[0], args[1:]
	if scenario == "redis" {
		return benchRedis(args, stdout, stderr)
	}
	cfg, err := loadConfig()
	if err != nil {
		return usageError{err}
	}
	cfg.LogLevel = "warn"
	var (
		asJSON                bool
		partitions            = 6
		mode                  = bench.InProcess
		dataDir, cpuProf, mem string
		keep                  bool
		loader                = bench.LoaderKgo
		batchBytes            = bench.DefaultBatchBytes
		runEnv                envList
		brokerPid             int
	)
	f := newFlags("bench "+scenario, benchUsage, stderr)
	// Only the flag selects a cluster: a LADDER_BROKERS left in the
	// environment must not send benchmark load and topics to it.
	cfg.Brokers = nil
	f.list(&cfg.Brokers, "brokers", "", "bootstrap brokers of the cluster to benchmark, comma-separated host:port (default: start the embedded broker)")
	f.str(&cfg.KafkaVersion, "kafka-version", "LADDER_KAFKA_VERSION", "lowest Kafka version of the cluster")
	f.str(&cfg.ClientID, "client-id", "LADDER_CLIENT_ID", "Kafka client.id")
	f.log(&cfg)
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	if scenario != "pending" {
		f.IntVar(&partitions, "partitions", partitions, "partitions of every topic the bench creates")
	}
	f.StringVar(&loader, "loader", loader, "how records are loaded before a measurement: kgo (franz-go, --batch-bytes batches, one partition's batch per request) or sarama (its small batches)")
	f.IntVar(&batchBytes, "batch-bytes", batchBytes, "the kgo loader's record batch size in bytes")
	f.Var(&runEnv, "run-env", "KEY=VALUE added to the environment of every `ladder run` the bench starts (repeatable), e.g. LADDER_BUFFER_MEMORY=33554432")
	f.StringVar(&dataDir, "data-dir", "", "data directory of the embedded broker (default: a temporary directory, removed after)")
	f.IntVar(&brokerPid, "broker-pid", 0, "with --brokers: the pid of the (single) broker's process on this machine, to report its CPU time and RSS")
	f.BoolVar(&keep, "keep-data", false, "keep the embedded broker's data directory")
	var cfgAny any
	switch scenario {
	case "drain":
		c := &bench.DrainConfig{}
		f.Int64Var(&c.Records, "records", 1_000_000, "records to preload and forward")
		f.IntVar(&c.ValueBytes, "value-bytes", 100, "bytes per record value")
		f.StringVar(&c.Tiers, "tiers", "1m,15m,1h,6h", "tier delays; records are preloaded into the smallest")
		f.IntVar(&c.Rounds, "rounds", 1, "rounds (raw and forward each); medians are reported")
		f.IntVar(&c.LoadProducers, "load-producers", 4, "parallel producers preloading the records")
		f.DurationVar(&c.Timeout, "timeout", 30*time.Minute, "give up a phase after this long")
		profileFlags(f, &mode, &cpuProf, &mem, "the first forward phase")
		f.BoolVar(&c.ProfileRaw, "profile-raw", false, "profile the first raw phase instead of the forward phase, to compare")
		f.Func("baselines", "copy loops to run beside the sarama group loop: sarama (partition consumers), kgo (franz-go), comma-separated, or none (default sarama,kgo)", func(s string) (err error) {
			c.Baselines, err = bench.ParseBaselines(s)
			return err
		})
		f.StringVar(&c.Perf, "perf", "", "with --forwarder process: `perf record -g` ladder run during the first forward phase into this file")
		cfgAny = c
	case "schedule":
		c := &bench.ScheduleConfig{}
		f.Int64Var(&c.Records, "records", 1_000_000, "records to schedule")
		f.IntVar(&c.ValueBytes, "value-bytes", 100, "bytes per record value")
		f.StringVar(&c.Tiers, "tiers", "1m,15m,1h,6h", "tier delays")
		f.DurationVar(&c.Delay, "delay", time.Hour, "delay of every scheduled message")
		f.IntVar(&c.Rounds, "rounds", 1, "rounds (raw and scheduler each); medians are reported")
		f.DurationVar(&c.Timeout, "timeout", 30*time.Minute, "give up a phase after this long")
		profileFlags(f, nil, &cpuProf, &mem, "the first scheduler phase")
		cfgAny = c
	case "lateness":
		c := &bench.LatenessConfig{}
		f.StringVar(&c.Tiers, "tiers", "1s,5s,15s", "tier delays")
		f.Float64Var(&c.Rate, "rate", 1000, "messages scheduled per second")
		f.DurationVar(&c.Duration, "duration", time.Minute, "how long messages are scheduled")
		f.DurationVar(&c.MaxDelay, "max-delay", 20*time.Second, "delays are uniform from 0 to this")
		f.IntVar(&c.ValueBytes, "value-bytes", 100, "bytes per record value")
		f.StringVar(&mode, "forwarder", mode, "where the forwarder runs: inproc (in this process) or process (`ladder run`)")
		f.StringVar(&c.Dump, "dump", "", "write one CSV line per released tier record to this file (times in unix ms)")
		cfgAny = c
	case "pending":
		c := &bench.PendingConfig{}
		f.Var((*countList)(&c.Steps), "steps", "pending totals to measure at, comma-separated; k and M suffixes (default 1M,10M)")
		f.Var((*partitionList)(&c.Partitions), "partitions", "partitions per tier topic, comma-separated: the steps run on fresh topics for each (default 6,24,48)")
		f.BoolVar(&c.Drain, "drain", true, "after the last step, make the backlog due and watch the RSS while ladder run drains it")
		f.DurationVar(&c.DrainTimeout, "drain-timeout", 30*time.Minute, "give up the drain after this long")
		f.IntVar(&c.ValueBytes, "value-bytes", 100, "bytes per record value")
		f.StringVar(&c.Tiers, "tiers", "1m,15m,1h,6h", "tier delays")
		f.StringVar(&c.Spread, "spread", bench.SpreadTiers, "tiers: an equal share in every tier, due --due-max ahead (every partition holds a head); route: due between --due-min and --due-max, in the tier the scheduler picks")
		f.DurationVar(&c.DueMin, "due-min", time.Hour, "--spread route: records are due between --due-min and --due-max from now")
		f.DurationVar(&c.DueMax, "due-max", 24*time.Hour, "see --due-min; --spread tiers: records are due this far ahead")
		f.IntVar(&c.LoadProducers, "load-producers", 4, "parallel producers loading the records")
		f.DurationVar(&c.Settle, "settle", 5*time.Second, "watch the RSS this long once every head is held")
		f.DurationVar(&c.Timeout, "timeout", 5*time.Minute, "give up when ladder run has not held every head after this long")
		cfgAny = c
	default:
		fmt.Fprintf(stderr, "usage: ladder %s\n", benchUsage)
		return usageError{fmt.Errorf("unknown scenario %q: accepted: drain, schedule, lateness, pending", scenario)}
	}
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsageShown
	}
	if f.NArg() > 0 {
		return usageError{errors.New("unexpected arguments: " + strings.Join(f.Args(), " "))}
	}
	if err := cfg.validateLog(); err != nil {
		return usageError{f.explain(err)}
	}
	if partitions < 1 || partitions > 1000 {
		return usageError{fmt.Errorf("--partitions %d: accepted: 1 to 1000", partitions)}
	}
	if mode != bench.InProcess && mode != bench.Process {
		return usageError{fmt.Errorf("--forwarder %q: accepted: inproc or process", mode)}
	}
	if mode == bench.Process && (cpuProf != "" || mem != "") {
		return usageError{errors.New("--cpuprofile and --memprofile profile the in-process forwarder: use --forwarder inproc")}
	}
	if c, ok := cfgAny.(*bench.DrainConfig); ok && c.Perf != "" && mode != bench.Process {
		return usageError{errors.New("--perf profiles `ladder run`: use --forwarder process (--cpuprofile profiles the in-process forwarder)")}
	}
	if c, ok := cfgAny.(*bench.PendingConfig); ok && c.Spread != bench.SpreadTiers && c.Spread != bench.SpreadRoute {
		return usageError{fmt.Errorf("--spread %q: accepted: tiers or route", c.Spread)}
	}
	if loader != bench.LoaderKgo && loader != bench.LoaderSarama {
		return usageError{fmt.Errorf("--loader %q: accepted: kgo or sarama", loader)}
	}
	if batchBytes < bench.MinBatchBytes || batchBytes > bench.MaxBatchBytes {
		return usageError{fmt.Errorf("--batch-bytes %d: accepted: %d to %d", batchBytes, bench.MinBatchBytes, bench.MaxBatchBytes)}
	}
	binary, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the ladder binary: %w", err)
	}
	env := &bench.Env{Partitions: int32(partitions), Binary: binary, Forwarder: mode, Progress: stderr, TTY: isTerminal(stderr),
		CPUProfile: cpuProf, MemProfile: mem, Log: cfg.logger(stderr), Loader: loader, BatchBytes: int32(batchBytes), RunEnv: runEnv}
	if flagSet(f, "brokers") {
		if err := cfg.Config.Validate(); err != nil {
			var fe *kafkaconf.FieldError
			if errors.As(err, &fe) && fe.Var == "LADDER_BROKERS" {
				fe.Var = "--brokers"
			}
			return usageError{f.explain(err)}
		}
		env.Kafka = cfg.Config
		if brokerPid > 0 {
			if env.Broker, err = bench.WatchProc(brokerPid); err != nil {
				return usageError{fmt.Errorf("--broker-pid: %w", err)}
			}
		}
	} else {
		if brokerPid > 0 {
			return usageError{errors.New("--broker-pid watches a real broker: give --brokers too")}
		}
		dir := dataDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "ladder-bench-"); err != nil {
				return fmt.Errorf("creating the broker's data directory: %w", err)
			}
		}
		if !keep {
			defer os.RemoveAll(dir)
		}
		broker, addr, err := bench.StartBroker(ctx, binary, dir, env.Partitions)
		if err != nil {
			return err
		}
		defer broker.Stop(30 * time.Second)
		fmt.Fprintf(stderr, "embedded broker: pid %d on %s, data in %s\n", broker.Pid(), addr, dir)
		env.Broker, env.BrokerDataDir = broker, dir
		env.Kafka = cfg.Config
		env.Kafka.Brokers = []string{addr}
	}
	rep, err := bench.Run(ctx, env, cfgAny)
	if rep != nil && rep.Result != nil && (err == nil || rep.Summary != "") {
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if jerr := enc.Encode(rep); jerr != nil {
				return errors.Join(err, jerr)
			}
		} else {
			rep.WriteText(stdout)
		}
	}
	return err
}

func profileFlags(f *flags, mode *string, cpu, mem *string, what string) {
	if mode != nil {
		f.StringVar(mode, "forwarder", *mode, "where the forwarder runs: inproc (in this process) or process (`ladder run`)")
	}
	f.StringVar(cpu, "cpuprofile", "", "write a CPU profile of "+what+" to this file")
	f.StringVar(mem, "memprofile", "", "write an allocation profile of "+what+" to this file (and FILE.base at its start, for pprof -base)")
}

// countList is a comma-separated list of counts with optional k or M suffixes.
type countList []int64

func (c *countList) String() string {
	var parts []string
	for _, n := range *c {
		parts = append(parts, strconv.FormatInt(n, 10))
	}
	return strings.Join(parts, ",")
}

func (c *countList) Set(s string) error {
	var out []int64
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		mult := int64(1)
		switch {
		case strings.HasSuffix(p, "k"):
			mult, p = 1_000, strings.TrimSuffix(p, "k")
		case strings.HasSuffix(p, "M"):
			mult, p = 1_000_000, strings.TrimSuffix(p, "M")
		}
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a positive count (k and M suffixes allowed)", p)
		}
		out = append(out, n*mult)
	}
	*c = out
	return nil
}

// partitionList is a comma-separated list of partition counts (1 to 1000).
type partitionList []int32

func (p *partitionList) String() string {
	var parts []string
	for _, n := range *p {
		parts = append(parts, strconv.Itoa(int(n)))
	}
	return strings.Join(parts, ",")
}

func (p *partitionList) Set(s string) error {
	var out []int32
	for _, v := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 1000 {
			return fmt.Errorf("%q is not a partition count from 1 to 1000", v)
		}
		out = append(out, int32(n))
	}
	*p = out
	return nil
}

// envList is repeated KEY=VALUE assignments.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }

func (e *envList) Set(s string) error {
	k, _, ok := strings.Cut(s, "=")
	if !ok || k == "" || strings.ContainsAny(k, " \t") {
		return fmt.Errorf("%q is not KEY=VALUE", s)
	}
	*e = append(*e, s)
	return nil
}

// benchRedis is `ladder bench redis`: the memory of a Redis sorted set
// holding the same pending messages, for comparison (Redis not included).
func benchRedis(args []string, stdout, stderr io.Writer) error {
	f := newFlags("bench redis", "bench redis [--addr 127.0.0.1:6390] [--records 1000000] [--value-bytes 100]", stderr)
	addr := f.String("addr", "127.0.0.1:6390", "address of a Redis started for the measurement")
	n := f.Int("records", 1_000_000, "members to load")
	size := f.Int("value-bytes", 100, "bytes per member (a unique id, then filler)")
	batch := f.Int("batch", 1000, "members per ZADD")
	key := f.String("key", "ladder:pending", "sorted set key (replaced)")
	save := f.Bool("save", true, "SAVE after loading and report the RDB file size")
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsageShown
	}
	if *n < 1 || *size < 13 || *batch < 1 {
		return usageError{errors.New("--records and --batch must be ≥ 1, --value-bytes ≥ 13")}
	}
	return bench.RedisMemory(*addr, *n, *size, *batch, *key, *save, stdout)
}
