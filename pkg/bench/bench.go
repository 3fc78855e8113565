// Package bench runs ladder's benchmark scenarios against a Kafka cluster and
// reports them as a table, a one-line summary and stable JSON: drain (the
// forwarder against a plain sarama consume→produce loop), schedule (the
// scheduler API against a plain async producer), lateness (release and
// end-to-end lateness under a steady load) and pending (the peak RSS of a
// `ladder run` process holding millions of pending records).
//
// It never imports the embedded broker: `ladder bench` starts it as a
// separate process (`ladder dev --forwarders=false`), so the broker's CPU and
// memory are not charged to the measured process, and the same code runs
// against a real cluster.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/offsets"
	"github.com/ladder/ladder/pkg/tier"
)

// Forwarder modes: where the forwarder under test runs.
const (
	InProcess = "inproc"  // a forward.Forwarder in the bench process (its CPU profile can be taken)
	Process   = "process" // `ladder run` as a separate process
)

// Env is where a scenario runs.
type Env struct {
	// Kafka is the cluster: the embedded broker process's or a real one.
	Kafka kafkaconf.Config
	// Partitions of every topic the bench creates (default 6).
	Partitions int32
	// Binary is the ladder executable, for `ladder run` processes.
	Binary string
	// Forwarder is InProcess (default) or Process.
	Forwarder string
	// Loader writes the records a scenario needs before it measures:
	// LoaderKgo (default; batches of BatchBytes, as real producers write
	// under load) or LoaderSarama (sarama's small batches).
	Loader string
	// BatchBytes is the kgo loader's record batch size (default 1 MiB).
	BatchBytes int32
	// RunEnv is added to the environment of every `ladder run` the bench
	// starts, after the bench's own environment (which passes through, so
	// e.g. LADDER_BUFFER_MEMORY set for the bench reaches ladder run).
	RunEnv []string
	// Broker is the broker's process, if known: the embedded broker the
	// bench started, or a real broker's watched (WatchProc). Its CPU time and
	// RSS are reported.
	Broker *Proc
	// BrokerDataDir is the embedded broker's data directory ("" for a real cluster).
	BrokerDataDir string
	// Progress receives progress bars (TTY) or periodic progress lines; nil: none.
	Progress io.Writer
	TTY      bool
	// CPUProfile and MemProfile, when set, are written around the measured
	// phase of the in-process forwarder or scheduler (see each scenario).
	CPUProfile, MemProfile string
	// RunID makes topic and group names unique per run (default: from the clock).
	RunID string
	Log   zerolog.Logger
}

func (e *Env) setDefaults() {
	if e.Partitions <= 0 {
		e.Partitions = 6
	}
	if e.Forwarder == "" {
		e.Forwarder = InProcess
	}
	if e.Loader == "" {
		e.Loader = LoaderKgo
	}
	if e.BatchBytes == 0 {
		e.BatchBytes = DefaultBatchBytes
	}
	if e.RunID == "" {
		e.RunID = strconv.FormatInt(time.Now().Unix()%1_000_000, 36)
	}
}

func (e *Env) validate() error {
	if e.Forwarder != InProcess && e.Forwarder != Process {
		return fmt.Errorf("forwarder mode %q: accepted: %s or %s", e.Forwarder, InProcess, Process)
	}
	if e.Forwarder == Process && e.Binary == "" {
		return errors.New("forwarder mode process needs the ladder binary")
	}
	if e.Loader != LoaderKgo && e.Loader != LoaderSarama {
		return fmt.Errorf("loader %q: accepted: %s or %s", e.Loader, LoaderKgo, LoaderSarama)
	}
	if e.BatchBytes < MinBatchBytes || e.BatchBytes > MaxBatchBytes {
		return fmt.Errorf("batch bytes %d: accepted: %d to %d", e.BatchBytes, MinBatchBytes, MaxBatchBytes)
	}
	return e.Kafka.Validate()
}

// name returns a topic or group name unique to this run.
func (e *Env) name(parts ...string) string {
	return "bench-" + e.RunID + "-" + strings.Join(parts, "-")
}

// Report is the outcome of one scenario: what `--json` prints.
type Report struct {
	Scenario  string    `json:"scenario"`
	Started   time.Time `json:"started"`
	Host      Host      `json:"host"`
	Broker    string    `json:"broker"`    // "embedded (separate process)" or the bootstrap list
	Forwarder string    `json:"forwarder"` // inproc or process
	Config    any       `json:"config"`
	// Loader is how the scenario wrote its records (Env.Loader, BatchBytes).
	Loader string `json:"loader"`
	// RunEnv is what the environment sets for `ladder run` processes: the
	// LADDER_* and Go runtime variables passed through (passwords hidden)
	// and Env.RunEnv.
	RunEnv []string `json:"run_env,omitempty"`
	// Elapsed is the wall time of the whole scenario, set up included.
	Elapsed time.Duration `json:"elapsed_ns"`
	Result  Result        `json:"result"`
	Goals   []Goal        `json:"goals"`
	Summary string        `json:"summary"`
}

// Result is a scenario's figures.
type Result interface {
	// WriteTable prints the figures as an aligned table.
	WriteTable(w io.Writer)
}

// Goal is one of the performance goals and whether the run met it.
type Goal struct {
	Name   string  `json:"name"`
	Target string  `json:"target"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Met    bool    `json:"met"`
}

func (g Goal) String() string {
	mark := "met"
	if !g.Met {
		mark = "MISSED"
	}
	return fmt.Sprintf("%s %s %s (goal %s, %s)", g.Name, trimFloat(g.Value), g.Unit, g.Target, mark)
}

// Host describes the machine the run measured, with the load average before
// and after: the machine may be shared.
type Host struct {
	Cores      int        `json:"cores"`
	GoVersion  string     `json:"go_version"`
	LoadBefore [3]float64 `json:"load_avg_before"`
	LoadAfter  [3]float64 `json:"load_avg_after"`
	GOMAXPROCS int        `json:"gomaxprocs"`
}

func hostNow() Host {
	return Host{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), LoadBefore: loadAvg(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
}

// loadAvg reads /proc/loadavg (zeros where it cannot).
func loadAvg() [3]float64 {
	var out [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	for i, f := range strings.Fields(string(b)) {
		if i == 3 {
			break
		}
		out[i], _ = strconv.ParseFloat(f, 64)
	}
	return out
}

// WriteText prints the report for a person: header, table, goals, summary.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "ladder bench %s — broker: %s, forwarder: %s, loader: %s, %d cores, load average %.2f %.2f %.2f → %.2f %.2f %.2f, %s\n",
		r.Scenario, r.Broker, r.Forwarder, r.Loader, r.Host.Cores, r.Host.LoadBefore[0], r.Host.LoadBefore[1], r.Host.LoadBefore[2],
		r.Host.LoadAfter[0], r.Host.LoadAfter[1], r.Host.LoadAfter[2], r.Elapsed.Round(time.Second))
	if len(r.RunEnv) > 0 {
		fmt.Fprintf(w, "ladder run environment: %s\n", strings.Join(r.RunEnv, " "))
	}
	fmt.Fprintln(w)
	r.Result.WriteTable(w)
	if len(r.Goals) > 0 {
		fmt.Fprintln(w)
		for _, g := range r.Goals {
			fmt.Fprintf(w, "goal: %s\n", g)
		}
	}
	fmt.Fprintf(w, "\n%s\n", r.Summary)
}

// Run runs one scenario by name with its configuration (a *DrainConfig,
// *ScheduleConfig, *LatenessConfig or *PendingConfig).
func Run(ctx context.Context, env *Env, cfg any) (*Report, error) {
	env.setDefaults()
	if err := env.validate(); err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now(), Host: hostNow(), Forwarder: env.Forwarder, Config: cfg, RunEnv: runEnv(env)}
	rep.Loader = env.Loader
	if env.Loader == LoaderKgo {
		rep.Loader += fmt.Sprintf(" (%d KiB batches)", env.BatchBytes>>10)
	}
	rep.Broker = strings.Join(env.Kafka.BrokerList(), ",")
	switch {
	case env.BrokerDataDir != "":
		rep.Broker = "embedded (separate process, " + rep.Broker + ")"
	case env.Broker != nil:
		rep.Broker += fmt.Sprintf(" (broker pid %d)", env.Broker.Pid())
	}
	var err error
	switch c := cfg.(type) {
	case *DrainConfig:
		rep.Scenario = "drain"
		err = drain(ctx, env, c, rep)
	case *ScheduleConfig:
		rep.Scenario = "schedule"
		err = scheduleBench(ctx, env, c, rep)
	case *LatenessConfig:
		rep.Scenario = "lateness"
		err = lateness(ctx, env, c, rep)
	case *PendingConfig:
		rep.Scenario = "pending"
		rep.Forwarder = Process
		err = pending(ctx, env, c, rep)
	default:
		return nil, fmt.Errorf("unknown scenario configuration %T", cfg)
	}
	deleteGroups(env)
	rep.Host.LoadAfter = loadAvg()
	rep.Elapsed = time.Since(rep.Started)
	if err != nil {
		return rep, fmt.Errorf("bench %s: %w", rep.Scenario, err)
	}
	return rep, nil
}

// runSets is what startForwarder and startRun set for `ladder run`.
var runSets = []string{"LADDER_BROKERS", "LADDER_KAFKA_VERSION", "LADDER_TIERS", "LADDER_TOPIC_PREFIX", "LADDER_GROUP",
	"LADDER_LOG_LEVEL", "LADDER_HTTP_ADDR", "LADDER_LOG_FORMAT", "LADDER_STATS_INTERVAL", "LADDER_WORKAHEAD_ENABLED"}

// runEnv lists what the environment gives `ladder run` beyond what the
// bench sets: LADDER_* variables (secrets hidden) and the Go runtime's, then
// env.RunEnv.
func runEnv(env *Env) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "GOGC" || k == "GOMEMLIMIT" || k == "GODEBUG" || k == "GOMAXPROCS":
		case !strings.HasPrefix(k, "LADDER_") || slices.Contains(runSets, k):
			continue
		case strings.Contains(k, "PASSWORD") || strings.Contains(k, "SECRET"):
			v = "***"
		}
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return append(out, env.RunEnv...)
}

// connect returns a sarama client for offset queries.
func connect(env *Env) (sarama.Client, error) {
	sc, err := env.Kafka.Base()
	if err != nil {
		return nil, err
	}
	c, err := sarama.NewClient(env.Kafka.BrokerList(), sc)
	if err != nil {
		return nil, fmt.Errorf("connecting to %v: %w", env.Kafka.BrokerList(), kafkaconf.Explain(err, env.Kafka.BrokerList()))
	}
	return c, nil
}

// createTopics creates topics with env.Partitions partitions and the
// cluster's default replication factor, and waits until every partition's
// leader answers for it (metadata can name a leader that has not yet taken
// the partition: Apache Kafka then answers NOT_LEADER_OR_FOLLOWER). Topics
// that exist are an error: a run's names are its own.
func createTopics(ctx context.Context, env *Env, partitions map[string]int32) error {
	sc, err := env.Kafka.Base()
	if err != nil {
		return err
	}
	sc.Admin.Timeout = 30 * time.Second
	admin, err := sarama.NewClusterAdmin(env.Kafka.BrokerList(), sc)
	if err != nil {
		return fmt.Errorf("connecting admin client: %w", kafkaconf.Explain(err, env.Kafka.BrokerList()))
	}
	defer admin.Close()
	names := make([]string, 0, len(partitions))
	for t, n := range partitions {
		if n <= 0 {
			n = env.Partitions
		}
		// -1: the broker's default replication factor (Kafka 2.4+, kfake).
		if err := admin.CreateTopic(t, &sarama.TopicDetail{NumPartitions: n, ReplicationFactor: -1}, false); err != nil {
			return fmt.Errorf("creating topic %s: %w", t, err)
		}
		names = append(names, t)
	}
	client, err := sarama.NewClient(env.Kafka.BrokerList(), sc)
	if err != nil {
		return fmt.Errorf("connecting to %v: %w", env.Kafka.BrokerList(), kafkaconf.Explain(err, env.Kafka.BrokerList()))
	}
	defer client.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := admin.DescribeTopics(names)
		ready := err == nil && len(md) == len(names)
		for _, t := range md {
			ready = ready && t.Err == sarama.ErrNoError && len(t.Partitions) > 0
		}
		if ready {
			err = leadersAnswer(client, md)
			ready = err == nil
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("topics %v not ready after 30s: %v", names, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// leadersAnswer asks each partition's leader for its end offset.
func leadersAnswer(client sarama.Client, md []*sarama.TopicMetadata) error {
	for _, t := range md {
		if err := client.RefreshMetadata(t.Name); err != nil {
			return fmt.Errorf("refreshing the metadata of %s: %w", t.Name, err)
		}
		for _, p := range t.Partitions {
			if _, err := client.GetOffset(t.Name, p.ID, sarama.OffsetNewest); err != nil {
				return fmt.Errorf("reading the end offset of %s/%d: %w", t.Name, p.ID, err)
			}
		}
	}
	return nil
}

// deleteTopics removes a run's topics (best effort): from a real cluster,
// and from the embedded broker too, whose disk a long run would fill.
func deleteTopics(env *Env, topics []string) {
	if len(topics) == 0 {
		return
	}
	sc, err := env.Kafka.Base()
	if err != nil {
		return
	}
	admin, err := sarama.NewClusterAdmin(env.Kafka.BrokerList(), sc)
	if err != nil {
		env.Log.Warn().Err(err).Msg("cannot delete the bench topics")
		return
	}
	defer admin.Close()
	for _, t := range topics {
		if err := admin.DeleteTopic(t); err != nil {
			env.Log.Warn().Err(err).Str("topic", t).Msg("deleting bench topic")
		}
	}
}

// deleteGroups removes the consumer groups of this run (best effort): on a
// real cluster their committed offsets would otherwise stay for
// offsets.retention.minutes (7 days by default).
func deleteGroups(env *Env) {
	sc, err := env.Kafka.Base()
	if err != nil {
		return
	}
	admin, err := sarama.NewClusterAdmin(env.Kafka.BrokerList(), sc)
	if err != nil {
		env.Log.Warn().Err(err).Msg("cannot delete the bench's consumer groups")
		return
	}
	defer admin.Close()
	groups, err := admin.ListConsumerGroups()
	if err != nil {
		env.Log.Warn().Err(err).Msg("listing consumer groups to delete the bench's")
		return
	}
	for g := range groups {
		if strings.HasPrefix(g, env.name("")) {
			if err := admin.DeleteConsumerGroup(g); err != nil {
				env.Log.Warn().Err(err).Str("group", g).Msg("deleting bench consumer group")
			}
		}
	}
}

// ladderTopics are the topics of l with their partition counts (0: env's).
func ladderTopics(l *tier.Ladder) map[string]int32 {
	out := map[string]int32{l.DLQTopic(): 0, l.ControlTopic(): 1}
	for _, t := range l.Topics() {
		out[t] = 0
	}
	return out
}

// endSum is the sum of the end offsets of every partition of topics.
func endSum(client sarama.Client, tps map[string][]int32) (int64, error) {
	end, err := offsets.End(client, tps)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, o := range end {
		n += o
	}
	return n, nil
}

// value returns a payload of size bytes.
func value(size int) []byte {
	v := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i := range v {
		v[i] = letters[r.IntN(len(letters))]
	}
	return v
}

// key renders a record key: prefix and a zero-padded decimal.
func key(prefix string, i int64) []byte {
	b := make([]byte, 0, len(prefix)+10)
	b = append(b, prefix...)
	s := strconv.FormatInt(i, 10)
	for range 10 - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// cpuSelf is the CPU time this process has used.
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// quantiles returns the p50, p99 and max of ds (zeros when empty).
func quantiles(ds []time.Duration) (p50, p99, maxd time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.5) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return at(0.50), at(0.99), s[len(s)-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func trimFloat(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// thousands renders n with thousands separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
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

// median of xs (0 when empty).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
