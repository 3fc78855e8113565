package worker

// window holds the records of one claimed partition that were taken from
// the claim and are not committable yet, in offset order. A record is
// finished when its handler returned Done, or when the record its result
// produced (reschedule, retry, dead letter) was acknowledged by the broker.
// Offsets become committable only as a contiguous finished prefix: a record
// that finishes before an earlier one waits for it, so a crash replays,
// never skips. A finished record keeps only its offset here, not its message.
type window struct {
	q    []slot // in offset order; q[0] is the oldest unfinished
	base uint64 // seq of q[0]
	next uint64 // seq of the next entry added
}

// slot is one record of the window: its offset, and its entry until it is
// finished (nil then).
type slot struct {
	off int64
	e   *entry
}

// add appends e and assigns its sequence number.
func (w *window) add(e *entry) {
	if len(w.q) == 0 {
		w.base = w.next
	}
	e.seq = w.next
	w.next++
	w.q = append(w.q, slot{off: e.cm.Offset, e: e})
}

// len is the number of records taken and not committable yet: unfinished,
// or finished behind an unfinished one.
func (w *window) len() int { return len(w.q) }

// finish marks e finished, drops the window's reference to it, and returns
// the offset to commit (the offset after the last record of the finished
// prefix), or -1 if the prefix did not advance.
func (w *window) finish(e *entry) int64 {
	i := e.seq - w.base
	if e.seq < w.base || i >= uint64(len(w.q)) || w.q[i].e != e {
		return -1 // not in this window
	}
	e.finished = true
	w.q[i].e = nil
	commit := int64(-1)
	n := 0
	for n < len(w.q) && w.q[n].e == nil {
		commit = w.q[n].off + 1
		n++
	}
	if n > 0 {
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
	for _, s := range w.q {
		if s.e != nil {
			fn(s.e)
		}
	}
}
