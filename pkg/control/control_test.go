package control

import (
	"testing"
	"time"
)

func TestDrainState(t *testing.T) {
	s := NewState()
	now := time.Now()
	changed := s.Changed()
	if s.DrainUntil("delay-1h", 0, now) != -1 {
		t.Fatal("a drain before any command")
	}
	s.Apply(Drain{Tier: "delay-1h", Until: map[string]int64{"0": 42}, Requested: now, Expires: now.Add(time.Hour)})
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by Apply")
	}
	if got := s.DrainUntil("delay-1h", 0, now); got != 42 {
		t.Errorf("DrainUntil = %d, want 42", got)
	}
	if got := s.DrainUntil("delay-1h", 1, now); got != -1 {
		t.Errorf("partition without an offset: %d", got)
	}
	if got := s.DrainUntil("delay-1h", 0, now.Add(2*time.Hour)); got != -1 {
		t.Errorf("expired command still in force: %d", got)
	}
	s.Apply(Drain{Tier: "delay-1h", Until: map[string]int64{"0": 7}, Requested: now.Add(-time.Minute), Expires: now.Add(time.Hour)})
	if got := s.DrainUntil("delay-1h", 0, now); got != 42 {
		t.Errorf("an older command replaced a newer one: %d", got)
	}
}
