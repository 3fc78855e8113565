package worker_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/worker"
)

// TestHotKeyDoesNotStallOtherPartitions: in key-ordered mode, records
// waiting behind a hot key whose handler is stuck hold no place in the
// lane's budget, so the lane's other partition is handled in full
// meanwhile; the hot partition stops reading at Concurrency waiting records.
// Once the hot handler returns, every hot record runs, in offset order, and
// both partitions are committed to their end.
func TestHotKeyDoesNotStallOtherPartitions(t *testing.T) {
	e := setup(t, 2, "work")
	const conc, hotN, coldN = 8, 300, 200
	seedPartition(t, e.addr, "work", 0, hotN, func(int) string { return "hot" })
	seedPartition(t, e.addr, "work", 1, coldN, func(i int) string { return fmt.Sprintf("c%03d", i) })

	release := make(chan struct{})
	var (
		handled  counter
		mu       sync.Mutex
		hotOrder []int
	)
	h := func(ctx context.Context, m worker.Message) worker.Result {
		if string(m.Key) == "hot" {
			select {
			case <-release:
			case <-ctx.Done():
				return worker.Retry(ctx.Err())
			}
			orig, _ := m.Header("orig")
			i, _ := strconv.Atoi(string(orig))
			mu.Lock()
			hotOrder = append(hotOrder, i)
			mu.Unlock()
		}
		handled.add(m.Partition)
		return worker.Done()
	}
	w, _ := e.start(t, e.config(t),
		worker.Lane{Topics: []string{"work"}, Group: "workers-hot", KeyOrdered: true, Concurrency: conc, Handler: h})

	waitFor(t, 60*time.Second, func() bool { return handled.get(1) == coldN && w.Stats()[0].Waiting == conc },
		func() string {
			return fmt.Sprintf("while the hot key is stuck: %d of %d records handled on the other partition, stats %+v",
				handled.get(1), coldN, w.Stats()[0])
		})
	s := w.Stats()[0]
	if s.Running != 1 || s.InFlight != 1 || s.Waiting > conc || handled.get(0) != 0 {
		t.Errorf("hot key stuck: want 1 running and in flight, at most %d waiting, none handled; stats %+v, hot handled %d",
			conc, s, handled.get(0))
	}
	t.Logf("while the hot key was stuck: %d of %d handled on the other partition; stats %+v", handled.get(1), coldN, s)

	close(release)
	waitFor(t, 60*time.Second, func() bool { return handled.get(0) == hotN },
		func() string {
			return fmt.Sprintf("hot records handled %d of %d (stats %+v)", handled.get(0), hotN, w.Stats()[0])
		})
	mu.Lock()
	want := make([]int, hotN)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(hotOrder, want) {
		t.Errorf("hot records handled out of offset order: %v", hotOrder)
	}
	mu.Unlock()
	waitFor(t, 30*time.Second, func() bool {
		c := committed(t, e.addr, "workers-hot", "work")
		return c[0] == hotN && c[1] == coldN
	}, func() string {
		return fmt.Sprintf("committed %v, want [%d %d]", committed(t, e.addr, "workers-hot", "work"), hotN, coldN)
	})
	if s := w.Stats()[0]; s.Waiting != 0 || s.InFlight != 0 {
		t.Errorf("after the backlog: stats %+v", s)
	}
}

// TestSlowRecordBoundsTheWindow: one stuck handler holds its partition's
// commit window at its offset. The partition goes on with later records
// only until 16 × Concurrency records are uncommitted, then stops reading;
// the lane's other partition is not held up. Once the stuck handler returns,
// the rest of the partition is handled and committed.
func TestSlowRecordBoundsTheWindow(t *testing.T) {
	e := setup(t, 2, "work")
	const conc, n = 8, 1000
	const bound = 16 * conc
	seedPartition(t, e.addr, "work", 0, n, func(i int) string { return fmt.Sprintf("a%04d", i) })
	seedPartition(t, e.addr, "work", 1, n, func(i int) string { return fmt.Sprintf("b%04d", i) })

	release := make(chan struct{})
	var taken counter // records taken from the claim, by partition
	h := func(ctx context.Context, m worker.Message) worker.Result {
		taken.add(m.Partition)
		if m.Partition == 0 && m.Offset == 0 {
			select {
			case <-release:
			case <-ctx.Done():
				return worker.Retry(ctx.Err())
			}
		}
		return worker.Done()
	}
	w, _ := e.start(t, e.config(t), worker.Lane{Topics: []string{"work"}, Group: "workers-window", Concurrency: conc, Handler: h})

	// Wait for the other partition to be handled in full: the stuck one had
	// as much time to read on.
	waitFor(t, 60*time.Second, func() bool { return taken.get(1) == n && taken.get(0) >= bound },
		func() string {
			return fmt.Sprintf("taken: %d on the stuck partition, %d of %d on the other (stats %+v)",
				taken.get(0), taken.get(1), n, w.Stats()[0])
		})
	got := taken.get(0)
	t.Logf("with one handler stuck: %d records taken from its partition (bound %d), %d from the other", got, bound, taken.get(1))
	if got > bound {
		t.Errorf("%d records taken from the partition of a stuck handler, want at most 16 × Concurrency = %d", got, bound)
	}
	if c := committed(t, e.addr, "workers-window", "work"); c[0] > 0 {
		t.Errorf("committed offset %d past the stuck record at offset 0", c[0])
	}

	close(release)
	waitFor(t, 60*time.Second, func() bool { return taken.get(0) == n },
		func() string {
			return fmt.Sprintf("handled %d of %d after the stuck handler returned", taken.get(0), n)
		})
	waitFor(t, 30*time.Second, func() bool {
		c := committed(t, e.addr, "workers-window", "work")
		return c[0] == n && c[1] == n
	}, func() string {
		return fmt.Sprintf("committed %v, want [%d %d]", committed(t, e.addr, "workers-window", "work"), n, n)
	})
}
