package forward

// window tracks the records of one partition that were handed to the
// producer and not yet acknowledged, in source-offset order. Offsets become
// committable only as a contiguous prefix: a record acknowledged out of order
// waits for every record before it, so a crash replays, never skips.
type window struct {
	q    []*flight // in source order; q[0] is the oldest unfinished
	base uint64    // seq of q[0]
	next uint64    // seq of the next record added
}

// add appends f to the window and assigns its sequence number.
func (w *window) add(f *flight) {
	if len(w.q) == 0 {
		w.base = w.next
	}
	f.seq = w.next
	w.next++
	w.q = append(w.q, f)
}

// len is the number of records in flight or waiting for an earlier one.
func (w *window) len() int { return len(w.q) }

// done marks f acknowledged and returns the offset to commit (the offset
// after the last record of the now-finished prefix), or -1 if the prefix did
// not advance.
func (w *window) done(f *flight) int64 {
	i := f.seq - w.base
	if f.seq < w.base || i >= uint64(len(w.q)) || w.q[i] != f {
		return -1 // from an earlier claim of this partition
	}
	f.acked = true
	commit := int64(-1)
	n := 0
	for n < len(w.q) && w.q[n].acked {
		commit = w.q[n].offset + 1
		n++
	}
	if n > 0 {
		clear(w.q[:n])
		w.q = w.q[n:]
		w.base += uint64(n)
		if len(w.q) == 0 {
			w.q = w.q[:0:0] // release the backing array after a burst
		}
	}
	return commit
}
