package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
)

// CPUProfile is where a process spent its CPU, from `perf record -g`.
type CPUProfile struct {
	Samples int     `json:"samples"`
	Seconds float64 `json:"cpu_s"` // CPU time the samples stand for
	// Parts counts each sample once, in the first part of cpuParts any of
	// its stack's frames belongs to.
	Parts []CPUShare `json:"parts"`
	// Overlay is what share of all samples ran under allocation, GC
	// assists and GC background marking, whichever part they count in.
	Overlay []CPUShare `json:"overlay"`
}

// CPUShare is one part of a CPU profile.
type CPUShare struct {
	Part    string  `json:"part"`
	Percent float64 `json:"percent"`
}

// cpuPart names a part of a forwarder's work by the functions in it: a
// frame belongs to it when its symbol contains one of match.
type cpuPart struct {
	name  string
	match []string
}

// cpuParts is the order a sample is attributed in: the first part any frame
// of its stack belongs to. Specific parts come first (a header decoded in
// the forwarder's goroutine counts as header decode, not forwarder), and
// runtime work last (allocation counts in the part that allocated; see
// Overlay for it).
var cpuParts = []cpuPart{
	{"GC background mark", []string{"runtime.gcBgMarkWorker"}},
	{"fetch: decode records (sarama)", []string{"sarama.(*FetchResponse).decode", "sarama.(*RecordBatch).decode", "sarama.(*Records).decode", "sarama.(*Record).decode"}},
	{"fetch: request, feed partitions (sarama)", []string{"sarama.(*brokerConsumer)", "sarama.(*partitionConsumer)", "sarama.(*consumer)", "sarama.(*Broker).Fetch"}},
	{"produce: encode request (sarama)", []string{"sarama.(*ProduceRequest).encode", "sarama.(*RecordBatch).encode", "sarama.(*Record).encode", "sarama.(*RecordHeader).encode"}},
	{"produce: batch, dispatch, acks (sarama)", []string{"sarama.(*asyncProducer)", "sarama.(*brokerProducer)", "sarama.(*partitionProducer)", "sarama.(*topicProducer)", "sarama.(*produceSet)", "sarama.(*Broker).AsyncProduce"}},
	{"ladder headers: decode", []string{"ladder/pkg/envelope.(*Decoder)", "ladder/pkg/envelope.Decode", "ladder/pkg/envelope.parse"}},
	{"ladder headers: encode", []string{"ladder/pkg/envelope."}},
	{"metrics (prometheus histograms, counters)", []string{"prometheus/client_golang", "pkg/forward.(*partition).observe"}},
	{"forwarder (pkg/forward, pkg/group: own code)", []string{"ladder/pkg/forward.", "ladder/pkg/group."}},
	{"group membership, commits (sarama)", []string{"sarama.(*consumerGroup", "sarama.(*offsetManager", "sarama.(*partitionOffsetManager"}},
	{"network I/O (sarama connections, syscalls)", []string{"sarama.(*Broker)", "sarama.(*bufConn)", "internal/poll.", "syscall."}},
	{"Go runtime (scheduler, timers, channels)", []string{"runtime."}},
}

// cpuOverlay are the runtime's shares reported across the parts.
var cpuOverlay = []cpuPart{
	{"allocation (mallocgc, assists included)", []string{"runtime.mallocgc"}},
	{"GC assists", []string{"runtime.gcAssistAlloc"}},
	{"GC (background mark and assists)", []string{"runtime.gcBgMarkWorker", "runtime.gcAssistAlloc"}},
}

// perfProfile reads a perf.data file with `perf script` and attributes its
// samples.
func perfProfile(path string) (*CPUProfile, error) {
	cmd := exec.Command("perf", "script", "-i", path, "-F", "period,ip,sym")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("perf script -i %s: %w: %s", path, err, tail(errOut.String()))
	}
	return attribute(&out)
}

// attribute reads `perf script -F period,ip,sym` output: per sample a line
// with its period, then one line per frame, then a blank line.
func attribute(r io.Reader) (*CPUProfile, error) {
	parts := make([]int64, len(cpuParts)+1) // the last: other
	overlay := make([]int64, len(cpuOverlay))
	var total int64
	p := &CPUProfile{}
	var (
		period int64
		frames []string
	)
	flush := func() {
		if period == 0 {
			return
		}
		p.Samples++
		total += period
		parts[partOf(cpuParts, frames, len(cpuParts))] += period
		for i, o := range cpuOverlay {
			if partOf([]cpuPart{o}, frames, -1) == 0 {
				overlay[i] += period
			}
		}
		period, frames = 0, frames[:0]
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == '\t' || line[0] == ' ' && period != 0:
			f := strings.Fields(line)
			if len(f) >= 2 {
				frames = append(frames, strings.Join(f[1:], " "))
			}
		default:
			flush()
			v, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("perf script: unexpected sample line %q", line)
			}
			period = v
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if total == 0 {
		return nil, fmt.Errorf("perf script: no samples")
	}
	p.Seconds = float64(total) / 1e9
	for i, n := range parts {
		name := "other"
		if i < len(cpuParts) {
			name = cpuParts[i].name
		}
		p.Parts = append(p.Parts, CPUShare{Part: name, Percent: 100 * float64(n) / float64(total)})
	}
	for i, n := range overlay {
		p.Overlay = append(p.Overlay, CPUShare{Part: cpuOverlay[i].name, Percent: 100 * float64(n) / float64(total)})
	}
	return p, nil
}

// partOf is the index of the first part any frame belongs to, or none.
func partOf(parts []cpuPart, frames []string, none int) int {
	for i, part := range parts {
		for _, f := range frames {
			for _, m := range part.match {
				if strings.Contains(f, m) {
					return i
				}
			}
		}
	}
	return none
}

// writeProfile prints p as a table.
func writeProfile(w io.Writer, title string, p *CPUProfile) {
	fmt.Fprintf(w, "\n%s: %d samples, %.2f CPU s\n", title, p.Samples, p.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range p.Parts {
		fmt.Fprintf(tw, "  %s\t%5.1f%%\n", s.Part, s.Percent)
	}
	fmt.Fprintf(tw, "  of all samples, under:\t\n")
	for _, s := range p.Overlay {
		fmt.Fprintf(tw, "    %s\t%5.1f%%\n", s.Part, s.Percent)
	}
	tw.Flush()
}
