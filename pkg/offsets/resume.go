package offsets

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A partition's commit is the offset of its first record not yet forwarded:
// the next owner starts there. Records behind a parked one (waiting for its
// target to exist or to accept writes) keep flowing meanwhile, so the commit
// also carries, in its metadata, what lies past that offset: every record
// below hi was forwarded except the parked ones listed. The next owner
// forwards those and skips the rest, so a rebalance, a restart or a crash
// while a record is parked repeats nothing (and in exactly-once mode the
// metadata is committed in the same transaction as the records).
//
// The metadata is "ladder/1 hi=<offset> parked=<delta>@<unix seconds>,...":
// each parked record as its offset minus the committed one, and when it
// began to wait (so LADDER_TARGET_TIMEOUT runs from then, across owners). A
// commit without it (or with anything else) skips nothing.
//
// The forwarder (pkg/forward) writes and reads it; `ladder inspect` and
// `ladder drain --wait` read it to count what is pending.

const resumePrefix = "ladder/1 "

// Parked is a parked record in commit metadata: its offset, and since when
// it waits for its target.
type Parked struct {
	Offset int64
	Since  time.Time
}

// Resume is what a committed position says lies ahead of it. The zero
// value says nothing was forwarded past the commit.
type Resume struct {
	Hi     int64    // every record in [commit, Hi) was forwarded, except Parked
	Parked []Parked // sorted by offset
}

// EncodeResume renders the metadata of a commit at commit; "" when nothing
// past it was forwarded.
func EncodeResume(commit, hi int64, parked []Parked) string {
	if len(parked) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(resumePrefix)
	b.WriteString("hi=")
	b.WriteString(strconv.FormatInt(hi, 10))
	b.WriteString(" parked=")
	for i, p := range parked {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(p.Offset-commit, 10))
		b.WriteByte('@')
		b.WriteString(strconv.FormatInt(p.Since.Unix(), 10))
	}
	return b.String()
}

// DecodeResume reads the metadata of a commit at commit. Metadata it does
// not know (another tool's, or none) skips nothing.
func DecodeResume(meta string, commit int64) (Resume, error) {
	if !strings.HasPrefix(meta, resumePrefix) {
		return Resume{}, nil
	}
	var r Resume
	for _, f := range strings.Fields(meta[len(resumePrefix):]) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "hi":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < commit {
				return Resume{}, fmt.Errorf("commit metadata %q: bad hi", meta)
			}
			r.Hi = n
		case "parked":
			for _, e := range strings.Split(v, ",") {
				d, at, _ := strings.Cut(e, "@")
				n, err := strconv.ParseInt(d, 10, 64)
				sec, serr := strconv.ParseInt(at, 10, 64)
				if err != nil || serr != nil || n < 0 {
					return Resume{}, fmt.Errorf("commit metadata %q: bad parked record %q", meta, e)
				}
				r.Parked = append(r.Parked, Parked{Offset: commit + n, Since: time.Unix(sec, 0)})
			}
		}
	}
	slices.SortFunc(r.Parked, func(a, b Parked) int { return cmp.Compare(a.Offset, b.Offset) })
	if len(r.Parked) > 0 && r.Parked[len(r.Parked)-1].Offset >= r.Hi {
		return Resume{}, fmt.Errorf("commit metadata %q: a parked offset at or past hi", meta)
	}
	return r, nil
}

// Skips reports whether the record at offset was forwarded already.
func (r *Resume) Skips(offset int64) bool {
	if offset >= r.Hi {
		return false
	}
	_, parked := r.ParkedSince(offset)
	return !parked
}

// ParkedSince is when the record at offset began to wait for its target,
// if the commit lists it.
func (r *Resume) ParkedSince(offset int64) (time.Time, bool) {
	i, ok := slices.BinarySearchFunc(r.Parked, offset, func(p Parked, o int64) int { return cmp.Compare(p.Offset, o) })
	if !ok {
		return time.Time{}, false
	}
	return r.Parked[i].Since, true
}

// Unforwarded counts the offsets in [from, end) not yet forwarded: the
// parked ones below Hi, and every one from Hi on.
func (r *Resume) Unforwarded(from, end int64) int64 {
	if end <= from {
		return 0
	}
	n := max(0, end-max(r.Hi, from))
	for _, p := range r.Parked {
		if p.Offset >= from && p.Offset < min(r.Hi, end) {
			n++
		}
	}
	return n
}
