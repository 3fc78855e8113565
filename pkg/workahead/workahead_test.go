package workahead

import (
	"testing"
	"time"
)

func TestParseLanes(t *testing.T) {
	got, err := ParseLanes(" work-fast=workers-fast, work-slow=workers-slow ")
	if err != nil || len(got) != 2 || got["work-slow"] != "workers-slow" {
		t.Fatalf("ParseLanes = %v, %v", got, err)
	}
	for _, bad := range []string{"", "work", "work=", "a b=c", ","} {
		if _, err := ParseLanes(bad); err == nil {
			t.Errorf("ParseLanes(%q) accepted", bad)
		}
	}
}

// TestReleaseEarliestFirstAtRate: an idle lane's tokens go to its heads in
// due order, at most Rate per second; other lanes' heads are untouched.
func TestReleaseEarliestFirstAtRate(t *testing.T) {
	c, err := New(Config{Lanes: map[string]string{"a": "ga", "b": "gb"}, LagThreshold: 1000, Rate: 10})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var heads []*Head
	for i := range 5 {
		heads = append(heads, c.Hold("a", now.Add(time.Duration(5-i)*time.Minute))) // latest first
	}
	other := c.Hold("b", now)
	if c.Hold("not-a-lane", now) != nil {
		t.Error("a head for an unwatched target was registered")
	}
	c.lanes["a"].state = StateIdle
	c.release(200 * time.Millisecond) // 10/s × 0.2s = 2 releases
	released := func(h *Head) bool {
		select {
		case <-h.Released():
			return true
		default:
			return false
		}
	}
	for i, h := range heads {
		want := i >= 3 // the two earliest due: heads[4], heads[3]
		if released(h) != want {
			t.Errorf("head %d (due +%dm) released=%v, want %v", i, 5-i, released(h), want)
		}
	}
	if released(other) {
		t.Error("a head of a busy lane was released")
	}
	if l := c.Lanes()[0]; l.Released != 2 {
		t.Errorf("lane a released %d", l.Released)
	}
}
