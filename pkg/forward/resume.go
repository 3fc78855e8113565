package forward

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
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
// The metadata is "ladder/1 hi=<offset> parked=<offset>,<offset>"; a commit
// without it (or with anything else) skips nothing.

const resumePrefix = "ladder/1 "

// maxParked bounds the parked records of one partition: the commit metadata
// stays far below the broker's offset.metadata.max.bytes (4096 by default).
// A partition with this many parked records takes no new head until one of
// them is resolved (sent, or dead-lettered after LADDER_TARGET_TIMEOUT).
const maxParked = 64

// resume is what a committed position says lies ahead of it.
type resume struct {
	hi     int64   // every record in [commit, hi) was forwarded, except parked
	parked []int64 // sorted
}

// encodeResume renders the metadata of a commit; "" when nothing past the
// commit was forwarded.
func encodeResume(hi int64, parked []int64) string {
	if len(parked) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(resumePrefix)
	b.WriteString("hi=")
	b.WriteString(strconv.FormatInt(hi, 10))
	b.WriteString(" parked=")
	for i, o := range parked {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(o, 10))
	}
	return b.String()
}

// decodeResume reads commit metadata. Metadata it does not know (another
// tool's, or none) skips nothing.
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
			for _, s := range strings.Split(v, ",") {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil || n < commit {
					return resume{}, fmt.Errorf("commit metadata %q: bad parked offset %q", meta, s)
				}
				r.parked = append(r.parked, n)
			}
		}
	}
	slices.Sort(r.parked)
	if len(r.parked) > 0 && r.parked[len(r.parked)-1] >= r.hi {
		return resume{}, fmt.Errorf("commit metadata %q: a parked offset at or past hi", meta)
	}
	return r, nil
}

// skips reports whether the record at offset was forwarded already.
func (r *resume) skips(offset int64) bool {
	if offset >= r.hi {
		return false
	}
	_, parked := slices.BinarySearch(r.parked, offset)
	return !parked
}
