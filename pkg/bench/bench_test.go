package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/tier"
)

// The scenarios at tiny sizes against an in-memory embedded broker: they
// must finish and report sane figures. The numbers themselves are measured
// by `ladder bench` (make bench), not here.

func testEnv(t *testing.T) *Env {
	t.Helper()
	b := laddertest.Broker(t, 2)
	var progress bytes.Buffer
	return &Env{Kafka: laddertest.Kafka(b.Addr()), Partitions: 2, Progress: &progress, Log: laddertest.Logger(t)}
}

func run(t *testing.T, env *Env, cfg any) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	t.Logf("\n%s", text.String())
	if rep.Summary == "" || len(rep.Goals) == 0 {
		t.Errorf("report without summary or goals: %+v", rep)
	}
	if rep.Host.Cores < 1 || rep.Host.LoadAfter == [3]float64{} && rep.Host.LoadBefore == [3]float64{} && fileExists("/proc/loadavg") {
		t.Errorf("host not described: %+v", rep.Host)
	}
	return rep
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// jsonFields returns the report's JSON result as a map, to check the stable field names.
func jsonFields(t *testing.T, rep *Report) map[string]any {
	t.Helper()
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Scenario string
		Result   map[string]any
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m.Result
}

func TestDrainSmoke(t *testing.T) {
	env := testEnv(t)
	rep := run(t, env, &DrainConfig{Records: 2000, Tiers: "1s,5s"})
	res := rep.Result.(*DrainResult)
	rd := res.Rounds[0]
	if rd.Sarama == nil || rd.Kgo == nil {
		t.Fatalf("baselines not run: %+v", rd)
	}
	for name, p := range map[string]Phase{"forward": rd.Forward, "raw": rd.Raw, "raw sarama": *rd.Sarama, "raw kgo": *rd.Kgo} {
		if p.Rate <= 0 || p.RateTotal <= 0 || p.RateTotal > p.Rate || p.Moving <= 0 || p.Total < p.Moving || p.MoverCPU <= 0 {
			t.Errorf("%s phase not measured: %+v", name, p)
		}
	}
	if res.Ratio <= 0 || res.Ratio != rd.Ratio || res.Preload.Records != 4000 || res.Preload.Loader != LoaderKgo || res.Preload.Batches == 0 {
		t.Errorf("ratio %v (round %v), preload %+v", res.Ratio, rd.Ratio, res.Preload)
	}
	if res.RatioSarama != rd.Forward.RateTotal/rd.Sarama.RateTotal || res.RatioKgo != rd.Forward.RateTotal/rd.Kgo.RateTotal || res.ForwardRateTotal <= 0 {
		t.Errorf("end-to-end ratios: sarama %v, kgo %v; round %+v", res.RatioSarama, res.RatioKgo, rd)
	}
	m := jsonFields(t, rep)
	for _, k := range []string{"forward_records_per_s", "raw_records_per_s", "ratio", "rounds", "forward_cpu_s_per_million",
		"ratio_sarama", "ratio_kgo", "raw_sarama_records_per_s_end_to_end", "raw_kgo_records_per_s_end_to_end"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON result lacks %s: %v", k, m)
		}
	}
}

// TestDrainBaselinesOff runs the drain with the group loop only, loaded
// with sarama's loader: the extra baselines and their ratios are absent.
func TestDrainBaselinesOff(t *testing.T) {
	env := testEnv(t)
	env.Loader = LoaderSarama
	rep := run(t, env, &DrainConfig{Records: 1000, Tiers: "1s", Baselines: []string{}})
	res := rep.Result.(*DrainResult)
	if rd := res.Rounds[0]; rd.Sarama != nil || rd.Kgo != nil || res.RatioSarama != 0 || res.Ratio <= 0 || res.Preload.Loader != LoaderSarama {
		t.Errorf("result %+v, round %+v", res, rd)
	}
	if m := jsonFields(t, rep); m["ratio_sarama"] != nil {
		t.Errorf("JSON shows a ratio not measured: %v", m)
	}
}

func TestDrainProfiles(t *testing.T) {
	env := testEnv(t)
	dir := t.TempDir()
	env.CPUProfile, env.MemProfile = filepath.Join(dir, "cpu"), filepath.Join(dir, "mem")
	run(t, env, &DrainConfig{Records: 2000, Tiers: "1s"})
	for _, f := range []string{"cpu", "mem", "mem.base"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("profile %s not written: %v", f, err)
		}
	}
}

func TestScheduleSmoke(t *testing.T) {
	env := testEnv(t)
	rep := run(t, env, &ScheduleConfig{Records: 2000, Rounds: 2, Tiers: "1s,5s", Delay: time.Minute})
	res := rep.Result.(*ScheduleResult)
	if len(res.Rounds) != 2 {
		t.Fatalf("%d rounds, want 2", len(res.Rounds))
	}
	for _, rd := range res.Rounds {
		if rd.Raw.Rate <= 0 || rd.Scheduler.Rate <= 0 || rd.Raw.Failed+rd.Scheduler.Failed != 0 {
			t.Errorf("round %d: %+v", rd.Round, rd)
		}
	}
	if res.Ratio <= 0 {
		t.Errorf("ratio %v", res.Ratio)
	}
}

func TestLatenessSmoke(t *testing.T) {
	env := testEnv(t)
	rep := run(t, env, &LatenessConfig{Tiers: "1s,2s", Rate: 200, Duration: 2 * time.Second, MaxDelay: 3 * time.Second})
	res := rep.Result.(*LatenessResult)
	if res.Scheduled < 350 || res.Delivered != res.Scheduled || res.Missing != 0 || res.Early != 0 {
		t.Errorf("scheduled %d delivered %d missing %d early %d", res.Scheduled, res.Delivered, res.Missing, res.Early)
	}
	if res.Hops < res.Delivered/2 {
		t.Errorf("%d tier hops for %d messages delayed up to 3s", res.Hops, res.Delivered)
	}
	a := res.All
	for name, l := range map[string]Latency{"release": a.Release, "end-to-end": a.EndToEnd} {
		if l.Count == 0 || l.P50 > l.P99 || l.P99 > l.Max || l.P50 < 0 {
			t.Errorf("%s: %+v", name, l)
		}
	}
	// Sane, not the goal: a forwarder that sleeps through a release shows here.
	if a.Release.Max > 1000 || a.EndToEnd.Max > 1000+2000 {
		t.Errorf("release max %.0f ms, end-to-end max %.0f ms", a.Release.Max, a.EndToEnd.Max)
	}
}

// TestAnalyseHeadOfLine checks the arithmetic on a hand-made partition: a
// record due before the head ahead of it waits for that head (head of
// line), and its release lateness counts from when it became the head.
func TestAnalyseHeadOfLine(t *testing.T) {
	l, err := tier.Parse("1s,5s", "t-")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.UnixMilli(1_800_000_000_000)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	c := &collector{byKey: map[string][]seen{
		// a: entered 1s at t0, due t0+1s, forwarded 3 ms late, received at +1.010s.
		"a": {
			{topic: "t-1s", offset: 0, hops: 0, ts: at(0), due: at(time.Second)},
			{topic: "work", hops: 1, ts: at(1003 * time.Millisecond), at: at(1010 * time.Millisecond), due: at(time.Second)},
		},
		// b: entered 10 ms later, due t0+0.5s: waits behind a (head of line
		// 503 ms), then forwarded 1 ms after a.
		"b": {
			{topic: "t-1s", offset: 1, hops: 0, ts: at(10 * time.Millisecond), due: at(500 * time.Millisecond)},
			{topic: "work", hops: 1, ts: at(1004 * time.Millisecond), at: at(1020 * time.Millisecond), due: at(500 * time.Millisecond)},
		},
	}}
	res := &LatenessResult{Scheduled: 2}
	analyse(res, l, "work", c)
	small := res.Tiers[0]
	if small.Release.Count != 2 || small.Release.Max != 3 || small.Release.P50 != 1 {
		t.Errorf("release %+v, want 2 records, max 3 ms, p50 1 ms", small.Release)
	}
	if small.HeadOfLine.Max != 503 {
		t.Errorf("head of line %+v, want max 503 ms", small.HeadOfLine)
	}
	if small.EndToEnd.Count != 2 || small.EndToEnd.Max != 520 || small.EndToEnd.P50 != 10 {
		t.Errorf("end to end %+v, want 10 ms and 520 ms", small.EndToEnd)
	}
	if res.Delivered != 2 || res.Missing != 0 || res.Early != 0 || res.Hops != 2 {
		t.Errorf("%+v", res)
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// ladderBinary builds the ladder binary once for the tests that start `ladder run`.
func ladderBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ladder-bench-test-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ladder")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/ladder").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building ladder: %v", buildErr)
	}
	return binPath
}

// TestMain removes the ladder binary the tests built, once all are done.
func TestMain(m *testing.M) {
	code := laddertest.Main(m) // stops the Apache Kafka broker the tests shared (LADDER_TEST_KAFKA=real)
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func TestPendingSmoke(t *testing.T) {
	env := testEnv(t)
	env.Binary = ladderBinary(t)
	env.RunEnv = []string{"GOGC=150"}
	rep := run(t, env, &PendingConfig{Steps: []int64{1000, 3000}, Partitions: []int32{1, 3}, Tiers: "1m,15m,1h,6h",
		Settle: 500 * time.Millisecond, Drain: true})
	res := rep.Result.(*PendingResult)
	if len(res.Steps) != 4 || len(res.Drains) != 2 {
		t.Fatalf("%d steps, want 4; %d drains, want 2", len(res.Steps), len(res.Drains))
	}
	for i, s := range res.Steps {
		parts := []int32{1, 1, 3, 3}[i]
		var n int64
		for _, c := range s.PerTier {
			n += c
		}
		if s.PartitionsPerTier != parts || n != s.Pending || s.Partitions != 4*int64(parts) || s.Held == 0 || s.HWMKiB < s.SampledKiB ||
			s.SampledKiB < s.RSSKiB || s.HWMKiB < 1024 || s.Load.Loader != LoaderKgo {
			t.Errorf("step %d: %d per tier, %d records in the tiers, %d partitions, %d held, HWM %d KiB, sampled %d KiB, RSS %d KiB, load %+v",
				s.Pending, s.PartitionsPerTier, n, s.Partitions, s.Held, s.HWMKiB, s.SampledKiB, s.RSSKiB, s.Load)
		}
		if len(s.PerTier) != 4 || s.Forwarded != 0 {
			t.Errorf("step %d: records in %v (want every tier), %d forwarded while held", s.Pending, s.PerTier, s.Forwarded)
		}
	}
	for i, d := range res.Drains {
		if d.PartitionsPerTier != []int32{1, 3}[i] || d.Records != 3000 || d.Rate <= 0 || d.HWMKiB < d.SampledKiB || d.SampledKiB < 1024 {
			t.Errorf("drain %d: %+v", i, d)
		}
	}
	if _, ok := res.Spreads[3]; !ok || res.Spread < res.Spreads[1] || res.Spread < res.Spreads[3] {
		t.Errorf("spreads %v, spread %v", res.Spreads, res.Spread)
	}
	if !slices.Contains(rep.RunEnv, "GOGC=150") || rep.Elapsed <= 0 {
		t.Errorf("report: run env %v, elapsed %s", rep.RunEnv, rep.Elapsed)
	}
}

// TestPendingRoute writes the records where the scheduler would: due 1h-24h
// ahead, they land in the 1h and 6h tiers only.
func TestPendingRoute(t *testing.T) {
	env := testEnv(t)
	env.Binary = ladderBinary(t)
	rep := run(t, env, &PendingConfig{Steps: []int64{2000}, Partitions: []int32{6}, Spread: SpreadRoute, Settle: 200 * time.Millisecond})
	s := rep.Result.(*PendingResult).Steps[0]
	for tier := range s.PerTier {
		if !strings.HasSuffix(tier, "-1h") && !strings.HasSuffix(tier, "-6h") {
			t.Errorf("records due 1h-24h ahead in %s", tier)
		}
	}
	if s.PartitionsPerTier != 6 || len(s.PerTier) == 0 || s.Forwarded != 0 {
		t.Errorf("step %+v", s)
	}
}

// TestDrainPerf drains through `ladder run` with perf record attached: the
// forward phase's CPU profile is attributed (skipped without perf).
func TestDrainPerf(t *testing.T) {
	if _, err := exec.LookPath("perf"); err != nil {
		t.Skip("no perf on PATH")
	}
	env := testEnv(t)
	env.Binary = ladderBinary(t)
	env.Forwarder = Process
	path := filepath.Join(t.TempDir(), "perf.data")
	rep := run(t, env, &DrainConfig{Records: 200_000, Tiers: "1s", Baselines: []string{}, Perf: path}) // long enough for perf to attach and sample on a loaded machine
	p := rep.Result.(*DrainResult).ForwardProfile
	if p == nil || p.Samples == 0 || len(p.Parts) != len(cpuParts)+1 {
		t.Fatalf("profile %+v", p)
	}
	var sum float64
	for _, s := range p.Parts {
		sum += s.Percent
	}
	if sum < 99.9 || sum > 100.1 {
		t.Errorf("parts sum to %.2f%%: %+v", sum, p.Parts)
	}
}
