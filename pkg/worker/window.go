package worker

// window holds the records of one claimed partition that were taken from
// the claim and are not finished yet, in offset order. A record is finished
// when its handler returned Done, or when the record its result produced
// (reschedule, retry, dead letter) was acknowledged by the broker. Offsets
// become committable only as a contiguous finished prefix: a record that
// finishes before an earlier one waits for it, so a crash replays, never skips.
type window struct {
	q    []*entry // in offset order; q[0] is the oldest unfinished
	base uint64   // seq of q[0]
	next uint64   // seq of the next entry added
}

// add appends e and assigns its sequence number.
func (w *window) add(e *entry) {
	if len(w.q) == 0 {
		w.base = w.next
	}
	e.seq = w.next
	w.next++
	w.q = append(w.q, e)
}

// len is the number of entries not finished or waiting for an earlier one.
func (w *window) len() int { return len(w.q) }

// finish marks e finished and returns the offset to commit (the offset after
// the last record of the finished prefix), or -1 if the prefix did not advance.
func (w *window) finish(e *entry) int64 {
	i := e.seq - w.base
	if e.seq < w.base || i >= uint64(len(w.q)) || w.q[i] != e {
		return -1 // not in this window
	}
	e.finished = true
	commit := int64(-1)
	n := 0
	for n < len(w.q) && w.q[n].finished {
		commit = w.q[n].cm.Offset + 1
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

// unfinished calls fn for every entry not finished yet.
func (w *window) unfinished(fn func(*entry)) {
	for _, e := range w.q {
		if !e.finished {
			fn(e)
		}
	}
}
