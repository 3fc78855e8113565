package forward

import (
	"context"
	"maps"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/group"
)

// retryingCommitter is a coordinator that keeps the first (background)
// commit in its retries, as one moving or loading the group does, until
// the commit's context ends; later commits it answers at once.
type retryingCommitter struct {
	mu       sync.Mutex
	calls    []map[string]map[int32]group.Offset
	bgDone   bool // the first commit returned
	bgBefore bool // the first commit had returned when the next one was sent
	started  chan struct{}
}

func (c *retryingCommitter) Commit(ctx context.Context, offsets map[string]map[int32]group.Offset) error {
	c.mu.Lock()
	c.calls = append(c.calls, maps.Clone(offsets))
	first := len(c.calls) == 1
	if !first {
		c.bgBefore = c.bgDone
	}
	c.mu.Unlock()
	if !first {
		return nil
	}
	close(c.started)
	<-ctx.Done()
	c.mu.Lock()
	c.bgDone = true
	c.mu.Unlock()
	return ctx.Err()
}

// TestFinalCommitAfterBackgroundCommit: a partition is released while a
// background commit is still being retried. The final commit is sent only
// after that commit returned, so a late retry cannot set the committed
// offset back below the final one (while the group rebalances, Kafka accepts
// the old generation's commits, and the next owner would forward the
// records between the two offsets again).
func TestFinalCommitAfterBackgroundCommit(t *testing.T) {
	h := newHarness(t)
	h.known("work")
	d := &driver{f: &Forwarder{cfg: *h.m.cfg.Config, log: zerolog.Nop()}, m: h.m, box: newMailbox()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // unblocks the background commit should finish not cancel it
	d.sessCtx, d.endSession = context.WithCancel(ctx)
	c := &retryingCommitter{started: make(chan struct{})}

	h.add("a", "work", 0)
	h.pump()
	h.ack(h.wantSent("a")...)
	d.commit(d.sessCtx, c, false) // offset 1, in the background
	<-c.started
	h.add("b", "work", 0)
	h.pump()
	h.ack(h.wantSent("b")...)

	d.finish(ctx, c, false)

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.calls) != 2 {
		t.Fatalf("%d commits, want the background one and the final one: %v", len(c.calls), c.calls)
	}
	if !c.bgBefore {
		t.Error("the final commit was sent while the background commit was still being retried")
	}
	if got := c.calls[1]["delay-1s"][0].Offset; got != 2 {
		t.Errorf("the final commit is at offset %d, want 2 (past both acknowledged records)", got)
	}
	if d.committing {
		t.Error("the background commit's answer was not handled before the final commit")
	}
}
