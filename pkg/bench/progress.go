package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progress shows how far a long phase has come: a bar redrawn in place on a
// terminal, otherwise a line every few seconds. A nil writer shows nothing.
type progress struct {
	w     io.Writer
	tty   bool
	label string
	total int64
	start time.Time
	done  atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

// startProgress starts showing a phase of total units (0: unknown total).
func (e *Env) startProgress(label string, total int64) *progress {
	p := &progress{w: e.Progress, tty: e.TTY, label: label, total: total, start: time.Now(), stop: make(chan struct{})}
	if p.w == nil {
		return p
	}
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	p.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.render(false)
			}
		}
	})
	return p
}

// add counts n more units done.
func (p *progress) add(n int64) { p.done.Add(n) }

// set sets the units done.
func (p *progress) set(n int64) { p.done.Store(n) }

// finish stops the display and prints the final state.
func (p *progress) finish() {
	if p.w == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.render(true)
}

func (p *progress) render(final bool) {
	done := p.done.Load()
	el := time.Since(p.start)
	rate := float64(done) / max(el.Seconds(), 1e-9)
	line := fmt.Sprintf("%-22s %s", p.label, thousands(done))
	if p.total > 0 {
		frac := min(float64(done)/float64(p.total), 1)
		line += fmt.Sprintf("/%s %5.1f%%", thousands(p.total), 100*frac)
		if p.tty {
			const width = 30
			n := int(frac * width)
			line = fmt.Sprintf("%-22s [%s%s] %s/%s", p.label, strings.Repeat("=", n), strings.Repeat(" ", width-n),
				thousands(done), thousands(p.total))
		}
		if !final && rate > 0 && done < p.total {
			line += fmt.Sprintf(" eta %s", time.Duration(float64(p.total-done)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	line += fmt.Sprintf(" %s/s %s", thousands(int64(rate)), el.Round(100*time.Millisecond))
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "\r\033[K%s\n", line)
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	default:
		fmt.Fprintln(p.w, line)
	}
}

// note prints a line between progress displays.
func (e *Env) note(format string, args ...any) {
	if e.Progress != nil {
		fmt.Fprintf(e.Progress, format+"\n", args...)
	}
}
