package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a ladder process started by the bench: the embedded broker or a
// `ladder run` forwarder. Its output is kept (up to a limit) to find the
// addresses it logs and to explain a failure.
type Proc struct {
	pid  int
	cmd  *exec.Cmd // nil for a process the bench only watches
	out  *capped
	done chan struct{}
	err  error // set before done is closed
}

// capped is a concurrency-safe buffer that keeps the first 4 MiB written.
type capped struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := 4<<20 - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

// startProc runs binary with args; env is added to the process environment
// (later entries win). The process is killed if the bench process dies.
func startProc(binary string, env []string, args ...string) (*Proc, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &Proc{cmd: cmd, out: &capped{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s %s: %w", binary, strings.Join(args, " "), err)
	}
	p.pid = cmd.Process.Pid
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// WatchProc returns a process the bench did not start, to read its CPU time
// and memory: a real broker's (its JVM's) pid.
func WatchProc(pid int) (*Proc, error) {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/status", pid)); err != nil {
		return nil, fmt.Errorf("no process %d to watch: %w", pid, err)
	}
	return &Proc{pid: pid}, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.pid }

// Output is what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// waitOutput waits until find returns a non-empty string for the output.
func (p *Proc) waitOutput(ctx context.Context, timeout time.Duration, what string, find func(string) string) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s := find(p.Output()); s != "" {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-p.done:
			if s := find(p.Output()); s != "" {
				return s, nil
			}
			return "", fmt.Errorf("%s exited (%v) before %s:\n%s", p.cmd.Path, p.err, what, tail(p.Output()))
		case <-deadline.C:
			return "", fmt.Errorf("%s: no %s after %s:\n%s", p.cmd.Path, what, timeout, tail(p.Output()))
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM and waits up to grace for the exit, then kills. A
// watched process is left alone.
func (p *Proc) Stop(grace time.Duration) error {
	if p.cmd == nil {
		return nil
	}
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.cmd.Path, grace)
	}
}

// Memory is a process's resident set size, peak and current, in KiB.
type Memory struct{ HWM, RSS int64 }

// Memory reads VmHWM and VmRSS from /proc/<pid>/status.
func (p *Proc) Memory() (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return Memory{}, fmt.Errorf("reading the memory of process %d: %w", p.Pid(), err)
	}
	var m Memory
	for _, line := range strings.Split(string(b), "\n") {
		var v int64
		if n, _ := fmt.Sscanf(line, "VmHWM: %d kB", &v); n == 1 {
			m.HWM = v
		}
		if n, _ := fmt.Sscanf(line, "VmRSS: %d kB", &v); n == 1 {
			m.RSS = v
		}
	}
	return m, nil
}

// CPU is the CPU time (user + system) the process has used, from
// /proc/<pid>/stat in clock ticks of 10ms (USER_HZ is 100 on Linux).
func (p *Proc) CPU() time.Duration {
	if p == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields count from after its ")".
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

var bannerAddr = regexp.MustCompile(`embedded Kafka broker on (\S+)`)

// StartBroker runs the embedded broker as a separate process,
// `ladder dev --forwarders=false`, with its data in dataDir, and returns it
// with its address.
func StartBroker(ctx context.Context, binary, dataDir string, partitions int32) (*Proc, string, error) {
	p, err := startProc(binary, []string{"LADDER_LOG_FORMAT=json", "LADDER_LOG_LEVEL=warn", "LADDER_HTTP_ADDR="},
		"dev", "--forwarders=false", "--addr", "127.0.0.1:0", "--data-dir", dataDir,
		"--partitions", strconv.Itoa(int(partitions)), "--topics", "bench-work")
	if err != nil {
		return nil, "", err
	}
	addr, err := p.waitOutput(ctx, 60*time.Second, "broker address", func(out string) string {
		if m := bannerAddr.FindStringSubmatch(out); m != nil {
			return m[1]
		}
		return ""
	})
	if err != nil {
		p.Stop(5 * time.Second)
		return nil, "", fmt.Errorf("starting the embedded broker (`ladder dev`; a -tags nodev build has none: use --brokers): %w", err)
	}
	return p, addr, nil
}

// startRun runs `ladder run` with env (LADDER_* assignments) and its HTTP
// server on a free loopback port; it returns the process and the address of
// its /metrics once logged.
func startRun(ctx context.Context, binary string, env []string) (*Proc, string, error) {
	env = append(env, "LADDER_HTTP_ADDR=127.0.0.1:0", "LADDER_LOG_FORMAT=json", "LADDER_STATS_INTERVAL=0", "LADDER_WORKAHEAD_ENABLED=false")
	p, err := startProc(binary, env, "run")
	if err != nil {
		return nil, "", err
	}
	addr, err := p.waitOutput(ctx, 60*time.Second, "metrics address", func(out string) string {
		for _, line := range strings.Split(out, "\n") {
			var ev struct{ Message, Addr string }
			if json.Unmarshal([]byte(line), &ev) == nil && strings.HasPrefix(ev.Message, "serving /metrics") {
				return ev.Addr
			}
		}
		return ""
	})
	if err != nil {
		p.Stop(5 * time.Second)
		return nil, "", err
	}
	return p, addr, nil
}

// scrape reads addr's /metrics and returns the sum of each metric's samples,
// by name (labels summed over).
func scrape(ctx context.Context, addr string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(buf.String(), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out, nil
}

// dirSize is the bytes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// freeBytes is the space available to an unprivileged user on dir's filesystem.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

func tail(s string) string {
	const n = 2000
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
