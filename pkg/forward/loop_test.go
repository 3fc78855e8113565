package forward

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/group"
)

// slowCommitter is a coordinator slow to answer the first (background)
// commit: retrying it, as while the group's coordinator moves or loads,
// until the commit's context ends (retrying), or with its request out,
// until the test releases it whatever the context (!retrying). Later
// commits it answers at once.
type slowCommitter struct {
	retrying bool
	release  chan struct{}
	started  chan struct{}

	mu        sync.Mutex
	calls     []map[string]map[int32]group.Offset
	bgDone    bool          // the first commit returned
	bgBefore  bool          // the first commit had returned when the next one was sent
	finalLeft time.Duration // the time left to the next commit's deadline when it was sent
}

func (c *slowCommitter) Commit(ctx context.Context, offsets map[string]map[int32]group.Offset) error {
	c.mu.Lock()
	c.calls = append(c.calls, maps.Clone(offsets))
	first := len(c.calls) == 1
	if !first {
		c.bgBefore = c.bgDone
		if d, ok := ctx.Deadline(); ok {
			c.finalLeft = time.Until(d)
		}
	}
	c.mu.Unlock()
	if !first {
		return nil
	}
	close(c.started)
	if c.retrying {
		<-ctx.Done()
	} else {
		<-c.release
	}
	c.mu.Lock()
	c.bgDone = true
	c.mu.Unlock()
	return ctx.Err()
}

// TestFinalCommitAfterBackgroundCommit: a partition is released while a
// background commit has not returned. Kafka accepts the old generation's
// commits while the group rebalances, so a background commit sent after
// the final one would set the committed offset back, and the next owner
// would forward the records between the two offsets again.
//   - Retrying: the final commit is sent only once the background commit,
//     cancelled, has returned.
//   - Its request out (it cannot be called back): the final commit is
//     sent after a bounded wait, with at least finalCommitMin left (Kafka
//     answers it after the background request, on the same connection).
func TestFinalCommitAfterBackgroundCommit(t *testing.T) {
	for _, retrying := range []bool{true, false} {
		name := map[bool]string{true: "retrying", false: "request out"}[retrying]
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.ShutdownTimeout = 100 * time.Millisecond })
			h.known("work")
			d := &driver{f: &Forwarder{cfg: *h.m.cfg.Config, log: zerolog.Nop()}, m: h.m, box: newMailbox()}
			c := &slowCommitter{retrying: retrying, release: make(chan struct{}), started: make(chan struct{})}
			defer d.wg.Wait() // the background commit, released by the deferred calls below
			defer close(c.release)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			d.sessCtx, d.endSession = context.WithCancel(ctx)

			h.add("a", "work", 0)
			h.pump()
			h.ack(h.wantSent("a")...)
			d.commit(d.sessCtx, c, false) // offset 1, in the background
			<-c.started
			h.add("b", "work", 0)
			h.pump()
			h.ack(h.wantSent("b")...)

			start := time.Now()
			d.finish(ctx, c, false)
			took := time.Since(start)

			c.mu.Lock()
			defer c.mu.Unlock()
			if len(c.calls) != 2 {
				t.Fatalf("%d commits, want the background one and the final one: %v", len(c.calls), c.calls)
			}
			if got := c.calls[1]["delay-1s"][0].Offset; got != 2 {
				t.Errorf("the final commit is at offset %d, want 2 (past both acknowledged records)", got)
			}
			if c.finalLeft < finalCommitMin-100*time.Millisecond {
				t.Errorf("the final commit was sent with %s left to its deadline, want about %s at least", c.finalLeft, finalCommitMin)
			}
			if retrying {
				if !c.bgBefore || d.committing {
					t.Errorf("the final commit was sent while the background commit was still being retried (returned %v, answer handled %v)",
						c.bgBefore, !d.committing)
				}
			} else {
				// One budget: the settle wait and the final commit's time
				// together take finalCommitBudget, not more.
				if want := finalCommitBudget - finalCommitMin; took < want || took > want+500*time.Millisecond {
					t.Errorf("with the background request out, finish took %s, want the settle wait of %s", took, want)
				}
				if c.finalLeft > finalCommitMin+100*time.Millisecond {
					t.Errorf("the final commit was sent with %s left, want about %s: the budget is shared", c.finalLeft, finalCommitMin)
				}
			}
		})
	}
}
