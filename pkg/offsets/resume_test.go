package offsets

import (
	"testing"
	"time"
)

func TestResumeRoundTrip(t *testing.T) {
	since := time.Unix(1_800_000_000, 0)
	meta := EncodeResume(100, 110, []Parked{{Offset: 100, Since: since}, {Offset: 104, Since: since.Add(time.Minute)}})
	if want := "ladder/1 hi=110 parked=0@1800000000,4@1800000060"; meta != want {
		t.Fatalf("EncodeResume = %q, want %q", meta, want)
	}
	r, err := DecodeResume(meta, 100)
	if err != nil {
		t.Fatal(err)
	}
	for off, skip := range map[int64]bool{100: false, 101: true, 104: false, 109: true, 110: false, 200: false} {
		if r.Skips(off) != skip {
			t.Errorf("Skips(%d) = %v, want %v", off, !skip, skip)
		}
	}
	if s, ok := r.ParkedSince(104); !ok || !s.Equal(since.Add(time.Minute)) {
		t.Errorf("ParkedSince(104) = %v, %v", s, ok)
	}
	if EncodeResume(100, 110, nil) != "" {
		t.Error("a commit with nothing parked carries metadata")
	}
}

// TestResumeUnforwarded: what `ladder inspect` counts as pending past a
// commit whose metadata lists parked records.
func TestResumeUnforwarded(t *testing.T) {
	r, err := DecodeResume("ladder/1 hi=110 parked=0@1,4@1", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ from, end, want int64 }{
		{100, 110, 2},  // the two parked
		{100, 120, 12}, // and ten past hi
		{101, 120, 11}, // from past the first parked
		{100, 104, 1},  // an end below hi
		{115, 120, 5},  // wholly past hi
		{120, 110, 0},  // empty
	} {
		if got := r.Unforwarded(c.from, c.end); got != c.want {
			t.Errorf("Unforwarded(%d, %d) = %d, want %d", c.from, c.end, got, c.want)
		}
	}
	var none Resume // other metadata, or none: nothing was forwarded past the commit
	if got := none.Unforwarded(100, 120); got != 20 {
		t.Errorf("without metadata Unforwarded = %d, want 20", got)
	}
}

func TestResumeRefusesBadMetadata(t *testing.T) {
	for _, meta := range []string{"ladder/1 hi=99 parked=0@1", "ladder/1 hi=x", "ladder/1 hi=110 parked=-1@1",
		"ladder/1 hi=110 parked=10@1", "ladder/1 hi=110 parked=a@1"} {
		if _, err := DecodeResume(meta, 100); err == nil {
			t.Errorf("DecodeResume(%q) accepted it", meta)
		}
	}
	if r, err := DecodeResume("another tool's metadata", 100); err != nil || r.Hi != 0 || len(r.Parked) != 0 {
		t.Errorf("foreign metadata: %+v, %v; want nothing skipped", r, err)
	}
}
