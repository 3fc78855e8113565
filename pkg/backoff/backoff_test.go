package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBackoffDoublesToItsCap(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next())
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != 100*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
}

func TestDelay(t *testing.T) {
	for attempt, want := range map[int]time.Duration{1: 100, 2: 200, 3: 400, 8: 10000, 100: 10000} {
		if d := Delay(attempt, 100*time.Millisecond, 10*time.Second); d != want*time.Millisecond {
			t.Errorf("Delay(%d) = %v, want %vms", attempt, d, want)
		}
	}
}

func TestRetry(t *testing.T) {
	n := 0
	var logged []error
	ok := Retry(context.Background(), New(time.Millisecond, time.Millisecond), func() error {
		n++
		if n < 3 {
			return errors.New("not yet")
		}
		return nil
	}, func(err error, _ time.Duration) { logged = append(logged, err) })
	if !ok || n != 3 || len(logged) != 2 {
		t.Fatalf("Retry: ok=%v after %d tries, %d failures told", ok, n, len(logged))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Retry(ctx, New(time.Hour, time.Hour), func() error { return errors.New("never") }, nil) {
		t.Fatal("Retry succeeded with a done context")
	}
}
