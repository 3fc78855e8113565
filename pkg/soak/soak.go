// Package soak runs the ladder under a steady schedule load for a given
// time while killing forwarder processes at random, then proves that every
// scheduled message arrived, none early, and counts duplicates.
package soak

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/envelope"
	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/offsets"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

// Config configures a soak run.
type Config struct {
	Ladder      *tier.Ladder
	Kafka       kafkaconf.Config
	Target      string        // work topic (default "work")
	Duration    time.Duration // how long load and kills go on
	Rate        int           // messages scheduled per second
	MaxDelay    time.Duration // delays are uniform in [0, MaxDelay]
	Forwarders  int           // forwarder processes
	KillEvery   time.Duration // mean time between SIGKILLs (0: no kills)
	ExactlyOnce bool          // forwarders in exactly-once mode; the check reads read_committed
	Binary      string        // the ladder binary to run forwarders with
	Env         []string      // extra environment for the forwarders
	Drain       time.Duration // after the load, how long to wait for the last messages
	Log         zerolog.Logger
	Progress    func(Status) // called every few seconds (optional)
}

// Status is the state of a running soak.
type Status struct {
	Elapsed            time.Duration
	Scheduled, Arrived int
	Kills, Restarts    int
	Duplicates, Early  int
}

// Result is what a soak proved.
type Result struct {
	Messages    int           `json:"messages"`
	Arrived     int           `json:"arrived"`
	Lost        int           `json:"lost"`
	Duplicated  int           `json:"duplicated"`
	Early       int           `json:"early"`
	Kills       int           `json:"kills"`
	Forwarders  int           `json:"forwarders"`
	ExactlyOnce bool          `json:"exactly_once"`
	Duration    time.Duration `json:"duration_ns"`
	LateP50     time.Duration `json:"late_p50_ns"`
	LateP99     time.Duration `json:"late_p99_ns"`
	LateMax     time.Duration `json:"late_max_ns"`
}

// Run soaks the ladder and returns the result; an error means the soak
// itself could not run, not that the ladder failed (see Result).
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Target == "" {
		cfg.Target = "work"
	}
	if cfg.Forwarders < 1 || cfg.Rate < 1 || cfg.Duration <= 0 || cfg.Binary == "" || cfg.Ladder == nil {
		return Result{}, errors.New("invalid soak config: need a ladder, a binary, forwarders ≥ 1, rate ≥ 1 and a duration")
	}
	brokers := cfg.Kafka.BrokerList()
	cc, err := cfg.Kafka.Consumer()
	if err != nil {
		return Result{}, err
	}
	if cfg.ExactlyOnce {
		cc.Consumer.IsolationLevel = sarama.ReadCommitted
	}
	client, err := sarama.NewClient(brokers, cc)
	if err != nil {
		return Result{}, fmt.Errorf("connecting: %w", kafkaconf.Explain(err, brokers))
	}
	defer client.Close()
	parts, err := offsets.Partitions(client, cfg.Target)
	if err != nil {
		return Result{}, err
	}
	start, err := offsets.End(client, parts)
	if err != nil {
		return Result{}, err
	}

	// Watch the target from its current end.
	w := &watcher{due: map[string]time.Time{}, seen: map[string]int{}, read: map[int32]int64{}}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return Result{}, err
	}
	defer consumer.Close()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var watching sync.WaitGroup
	defer func() { stopWatch(); watching.Wait() }()
	for tp, off := range start {
		pc, err := consumer.ConsumePartition(tp.Topic, tp.Partition, off)
		if err != nil {
			return Result{}, fmt.Errorf("watching %s/%d: %w", tp.Topic, tp.Partition, err)
		}
		watching.Go(func() {
			defer pc.AsyncClose()
			for {
				select {
				case <-watchCtx.Done():
					return
				case m := <-pc.Messages():
					w.arrive(m)
				}
			}
		})
	}

	admin, err := sarama.NewClusterAdmin(brokers, cc)
	if err != nil {
		return Result{}, fmt.Errorf("admin client: %w", err)
	}
	defer admin.Close()
	runID := strconv.FormatInt(time.Now().UnixNano(), 36)
	fw := &fleet{cfg: cfg, runID: runID, group: "ladder-soak-" + runID}
	defer fw.stopAll()
	for i := range cfg.Forwarders {
		if err := fw.start(i); err != nil {
			return Result{}, err
		}
	}

	s, err := schedule.New(schedule.Config{Ladder: cfg.Ladder, Kafka: cfg.Kafka, Log: cfg.Log})
	if err != nil {
		return Result{}, err
	}
	defer s.Close()

	began := time.Now()
	r := rand.New(rand.NewPCG(uint64(began.UnixNano()), 17))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	nextKill := began.Add(jitter(r, cfg.KillEvery))
	lastReport := began
	n := 0
	perTick := float64(cfg.Rate) / 10
	var owed float64
	var sendErr error
	var stableSince time.Time
	for time.Since(began) < cfg.Duration && ctx.Err() == nil && sendErr == nil {
		<-tick.C
		owed += perTick
		for ; owed >= 1; owed-- {
			key := fmt.Sprintf("soak-%s-%08d", runID, n)
			due := time.Now().Add(time.Duration(r.Int64N(int64(cfg.MaxDelay) + 1)))
			w.expect(key, due)
			n++
			if err := s.Send(ctx, schedule.Message{Topic: cfg.Target, Key: []byte(key), Value: []byte("soak"), At: due}, func(err error) {
				if err != nil {
					w.failed(key)
				}
			}); err != nil {
				sendErr = err
				break
			}
		}
		if cfg.KillEvery > 0 && time.Now().After(nextKill) {
			// Kill only a member of a group settled for 2s (see offsets.GroupSettled).
			switch {
			case !offsets.GroupStable(admin, fw.group):
				stableSince = time.Time{}
			case stableSince.IsZero():
				stableSince = time.Now()
			case time.Since(stableSince) >= 2*time.Second:
				fw.killOne(r)
				nextKill, stableSince = time.Now().Add(jitter(r, cfg.KillEvery)), time.Time{}
			}
		}
		fw.restartDead()
		if cfg.Progress != nil && time.Since(lastReport) >= 5*time.Second {
			lastReport = time.Now()
			cfg.Progress(w.status(time.Since(began), fw))
		}
	}
	s.Flush()
	if sendErr != nil && ctx.Err() == nil {
		return Result{}, fmt.Errorf("scheduling: %w", sendErr)
	}
	// Let the ladder bring back the last messages: their delay, plus the
	// smallest tier, plus a margin for the last kill's rebalance.
	drain := cfg.Drain
	if drain <= 0 {
		drain = cfg.MaxDelay + cfg.Ladder.Smallest().Delay + time.Minute
	}
	deadline := time.Now().Add(drain)
	for time.Now().Before(deadline) && ctx.Err() == nil && !w.complete() {
		time.Sleep(200 * time.Millisecond)
		fw.restartDead()
		if cfg.Progress != nil && time.Since(lastReport) >= 5*time.Second {
			lastReport = time.Now()
			cfg.Progress(w.status(time.Since(began), fw))
		}
	}
	// Count to the end of the target: stop the forwarders (their last
	// transactions end), write a marker to every partition and read up to
	// them, so a duplicate that arrived after the last new key counts too.
	fw.stopAll()
	if ctx.Err() == nil {
		if err := w.readToEnd(ctx, cfg.Kafka, cfg.Target, parts[cfg.Target], time.Minute); err != nil {
			return Result{}, err
		}
	}
	res := w.result()
	res.Kills, res.Forwarders, res.ExactlyOnce, res.Duration = fw.kills, cfg.Forwarders, cfg.ExactlyOnce, time.Since(began)
	return res, ctx.Err()
}

// endKey is the key of the end markers readToEnd writes.
const endKey = "ladder-soak-end-of-topic"

// readToEnd writes an end marker (a plain record) to every partition of
// topic and waits until the watcher has read up to each: reading a
// partition in order, it has then read everything committed before.
func (w *watcher) readToEnd(ctx context.Context, k kafkaconf.Config, topic string, parts []int32, timeout time.Duration) error {
	pc, err := k.Producer()
	if err != nil {
		return err
	}
	pc.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer(k.BrokerList(), pc)
	if err != nil {
		return fmt.Errorf("starting the end-marker producer: %w", kafkaconf.Explain(err, k.BrokerList()))
	}
	defer p.Close()
	markers := map[int32]int64{}
	for _, part := range parts {
		_, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: part, Key: sarama.StringEncoder(endKey)})
		if err != nil {
			return fmt.Errorf("writing the end marker of %s/%d: %w", topic, part, err)
		}
		markers[part] = off
	}
	deadline := time.Now().Add(timeout)
	for !w.reached(markers) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the end markers of %s were not all read within %s", topic, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// reached reports whether every partition was read up to its marker.
func (w *watcher) reached(markers map[int32]int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for part, off := range markers {
		if r, ok := w.read[part]; !ok || r < off {
			return false
		}
	}
	return true
}

func jitter(r *rand.Rand, mean time.Duration) time.Duration {
	if mean <= 0 {
		return time.Duration(1 << 62)
	}
	return mean/2 + time.Duration(r.Int64N(int64(mean)))
}

type watcher struct {
	mu      sync.Mutex
	read    map[int32]int64 // the last offset read per partition of the target
	due     map[string]time.Time
	seen    map[string]int
	dups    int
	early   int
	late    []time.Duration
	failedN int
}

func (w *watcher) expect(key string, due time.Time) {
	w.mu.Lock()
	w.due[key] = due.Truncate(time.Millisecond)
	w.mu.Unlock()
}

func (w *watcher) failed(key string) {
	w.mu.Lock()
	delete(w.due, key) // never acknowledged: not owed by the ladder
	w.failedN++
	w.mu.Unlock()
}

func (w *watcher) arrive(m *sarama.ConsumerMessage) {
	now := time.Now()
	w.mu.Lock()
	w.read[m.Partition] = m.Offset
	w.mu.Unlock()
	env, err := envelope.Decode(m.Headers)
	if err != nil {
		return // not scheduled by the soak (an end marker)
	}
	key := string(m.Key)
	w.mu.Lock()
	defer w.mu.Unlock()
	due, ok := w.due[key]
	if !ok {
		if !env.Due.IsZero() && w.seen[key] == 0 {
			due = env.Due // arrived before its expectation was recorded
			w.due[key] = due
		}
	}
	w.seen[key]++
	if w.seen[key] > 1 {
		w.dups++
		return
	}
	if m.Timestamp.Before(due) && env.Early == 0 {
		w.early++
	}
	w.late = append(w.late, now.Sub(due))
}

func (w *watcher) complete() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.due {
		if w.seen[k] == 0 {
			return false
		}
	}
	return true
}

func (w *watcher) status(elapsed time.Duration, fw *fleet) Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	arrived := 0
	for k := range w.due {
		if w.seen[k] > 0 {
			arrived++
		}
	}
	return Status{Elapsed: elapsed, Scheduled: len(w.due), Arrived: arrived, Kills: fw.kills, Restarts: fw.restarts,
		Duplicates: w.dups, Early: w.early}
}

func (w *watcher) result() Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	res := Result{Messages: len(w.due), Duplicated: w.dups, Early: w.early}
	for k := range w.due {
		if w.seen[k] > 0 {
			res.Arrived++
		}
	}
	res.Lost = res.Messages - res.Arrived
	if len(w.late) > 0 {
		slices.Sort(w.late)
		at := func(q float64) time.Duration { return w.late[min(len(w.late)-1, int(q*float64(len(w.late))))] }
		res.LateP50, res.LateP99, res.LateMax = at(0.5), at(0.99), w.late[len(w.late)-1]
	}
	return res
}

// fleet is the forwarder processes.
type fleet struct {
	cfg      Config
	runID    string
	group    string
	mu       sync.Mutex
	procs    []*exec.Cmd
	done     []chan struct{}
	kills    int
	restarts int
}

func (f *fleet) start(i int) error {
	cmd := exec.Command(f.cfg.Binary, "run")
	env := append(os.Environ(), "LADDER_BROKERS="+joinComma(f.cfg.Kafka.BrokerList()), "LADDER_TIERS="+f.cfg.Ladder.String(),
		"LADDER_TOPIC_PREFIX="+f.cfg.Ladder.Prefix(), "LADDER_HTTP_ADDR=", "LADDER_LOG_LEVEL=warn", "LADDER_LOG_FORMAT=json",
		"LADDER_GROUP="+f.group)
	if f.cfg.ExactlyOnce {
		env = append(env, "LADDER_EXACTLY_ONCE=true", fmt.Sprintf("LADDER_TRANSACTIONAL_ID=soak-%s-%d", f.runID, i))
	}
	env = append(env, f.cfg.Env...) // the caller's settings win
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting forwarder %d: %w", i, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.procs) <= i {
		f.procs = append(f.procs, nil)
		f.done = append(f.done, nil)
	}
	f.procs[i], f.done[i] = cmd, done
	return nil
}

func (f *fleet) killOne(r *rand.Rand) {
	f.mu.Lock()
	i := r.IntN(len(f.procs))
	cmd, done := f.procs[i], f.done[i]
	f.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	f.mu.Lock()
	f.kills++
	f.procs[i] = nil
	f.mu.Unlock()
	f.cfg.Log.Info().Int("forwarder", i).Msg("soak: SIGKILLed a forwarder")
}

// restartDead restarts every forwarder that is not running.
func (f *fleet) restartDead() {
	f.mu.Lock()
	var dead []int
	for i, c := range f.procs {
		if c == nil {
			dead = append(dead, i)
			continue
		}
		select {
		case <-f.done[i]:
			dead = append(dead, i)
		default:
		}
	}
	f.mu.Unlock()
	for _, i := range dead {
		if err := f.start(i); err != nil {
			f.cfg.Log.Error().Err(err).Msg("soak: restarting a forwarder")
			continue
		}
		f.mu.Lock()
		f.restarts++
		f.mu.Unlock()
	}
}

// stopAll stops every forwarder (SIGTERM, SIGKILL after 30s); it may be
// called again.
func (f *fleet) stopAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range f.procs {
		if c != nil {
			_ = c.Process.Signal(syscall.SIGTERM)
			select {
			case <-f.done[i]:
			case <-time.After(30 * time.Second):
				_ = c.Process.Kill()
				<-f.done[i]
			}
			f.procs[i] = nil
		}
	}
}

func joinComma(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}
