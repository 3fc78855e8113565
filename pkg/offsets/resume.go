package forward

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

const resumePrefix = "ladder/1 "

// maxParked bounds the parked records of one partition: the commit metadata
// stays below the broker's offset.metadata.max.bytes (4096 by default; 128
// entries take about 2.3 KB). Past it, a record whose target is known to be
// missing or forbidden is dead-lettered at once instead of parked.
const maxParked = 128

// parkedAt is a parked record in commit metadata.
type parkedAt struct {
	offset int64
	since  time.Time
}

// resume is what a committed position says lies ahead of it.
type resume struct {
	hi     int64      // every record in [commit, hi) was forwarded, except parked
	parked []parkedAt // sorted by offset
}

// encodeResume renders the metadata of a commit at commit; "" when nothing
// past it was forwarded.
func encodeResume(commit, hi int64, parked []parkedAt) string {
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
		b.WriteString(strconv.FormatInt(p.offset-commit, 10))
		b.WriteByte('@')
		b.WriteString(strconv.FormatInt(p.since.Unix(), 10))
	}
	return b.String()
}

// decodeResume reads the metadata of a commit at commit. Metadata it does
// not know (another tool's, or none) skips nothing.
func decodeResume(meta string, commit int64) (resume, error) {
	if !strings.HasPrefix(meta, resumePrefix) {
		return resume{}, nil
	}
	var r resume
	for _, f := range strings.Fields(meta[len(resumePrefix):]) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "hi":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < commit {
				return resume{}, fmt.Errorf("commit metadata %q: bad hi", meta)
			}
			r.hi = n
		case "parked":
			for _, e := range strings.Split(v, ",") {
				d, at, _ := strings.Cut(e, "@")
				n, err := strconv.ParseInt(d, 10, 64)
				sec, serr := strconv.ParseInt(at, 10, 64)
				if err != nil || serr != nil || n < 0 {
					return resume{}, fmt.Errorf("commit metadata %q: bad parked record %q", meta, e)
				}
				r.parked = append(r.parked, parkedAt{offset: commit + n, since: time.Unix(sec, 0)})
			}
		}
	}
	slices.SortFunc(r.parked, func(a, b parkedAt) int { return cmp.Compare(a.offset, b.offset) })
	if len(r.parked) > 0 && r.parked[len(r.parked)-1].offset >= r.hi {
		return resume{}, fmt.Errorf("commit metadata %q: a parked offset at or past hi", meta)
	}
	return r, nil
}

// skips reports whether the record at offset was forwarded already.
func (r *resume) skips(offset int64) bool {
	if offset >= r.hi {
		return false
	}
	_, parked := r.parkedSince(offset)
	return !parked
}

// parkedSince is when the record at offset began to wait for its target,
// if the commit lists it.
func (r *resume) parkedSince(offset int64) (time.Time, bool) {
	i, ok := slices.BinarySearchFunc(r.parked, offset, func(p parkedAt, o int64) int { return cmp.Compare(p.offset, o) })
	if !ok {
		return time.Time{}, false
	}
	return r.parked[i].since, true
}
