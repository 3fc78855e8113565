package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestWaitDrainedNeverTakesAFailedPollForDone: a progress poll that fails
// is reported and keeps the count; only a poll that reads 0 ends the wait,
// and without one the wait times out with the count it last read.
func TestWaitDrainedNeverTakesAFailedPollForDone(t *testing.T) {
	polls := []struct {
		n   int64
		err error
	}{{5, nil}, {0, errors.New("broker away")}, {0, errors.New("broker away")}, {2, nil}}
	i := 0
	remaining := func() (int64, error) {
		if i >= len(polls) {
			return 2, nil
		}
		p := polls[i]
		i++
		return p.n, p.err
	}
	var stderr bytes.Buffer
	err := waitDrained(context.Background(), 10, remaining, time.Millisecond, 200*time.Millisecond, &stderr, "delay-1m")
	if err == nil || !strings.Contains(err.Error(), "2 of 10 records still in delay-1m") {
		t.Fatalf("waitDrained = %v, want a timeout with 2 of 10 left", err)
	}
	if !strings.Contains(stderr.String(), "reading progress: broker away") {
		t.Errorf("the failed polls were not reported:\n%s", stderr.String())
	}
	i = len(polls)
	done := func() (int64, error) { return 0, nil }
	if err := waitDrained(context.Background(), 10, done, time.Millisecond, time.Second, &stderr, "delay-1m"); err != nil {
		t.Fatalf("a drain read as done: %v", err)
	}
}
