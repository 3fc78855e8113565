package plan

import "math/bits"

// slab holds the records of every simulated partition (12 bytes a record),
// cut into blocks of a power-of-two size. Each FIFO is a chain of blocks; a block is back on the free list as soon as its last
// record is read. Nothing is allocated per record; the arrays grow (by a
// quarter) only if the partitions ever hold more than they were sized for.
type slab struct {
	recs  []record
	next  []int32 // per block: the next block of its FIFO
	free  int32   // first free block, -1 if none
	used  int32   // blocks ever handed out
	shift uint
	mask  int
}

// record is one simulated Kafka record: the fields read together are stored
// together, so that a partition's head and tail are one memory stream each.
type record struct {
	own  uint32 // its own release time: min(entered + tier delay, due)
	due  uint32
	hops uint16 // tiers entered so far, this one included
}

// fifo is one partition: slots head (the next record to read) to tail (the
// next to write), across blocks of the slab. tail < 0: it holds no block.
type fifo struct {
	head, tail int
	n          int    // records held
	last       uint32 // when the record before the head was released
}

// newSlab sizes a slab for records in queues FIFOs: blocks of a size that
// wastes little in the mostly empty partitions of a ladder with many.
func newSlab(records, queues int) *slab {
	per := max(records/max(queues, 1)/4, 1)
	size := min(max(1<<bits.Len(uint(per-1)), 16), 4096)
	s := &slab{free: -1, shift: uint(bits.TrailingZeros(uint(size))), mask: size - 1}
	s.grow(records/size + 2*queues + 8)
	return s
}

func (s *slab) grow(blocks int) {
	recs := make([]record, len(s.recs)+blocks*(s.mask+1))
	copy(recs, s.recs)
	s.recs = recs
	next := make([]int32, len(s.next)+blocks)
	copy(next, s.next)
	s.next = next
}

func (s *slab) alloc() int {
	if b := s.free; b >= 0 {
		s.free = s.next[b]
		return int(b) << s.shift
	}
	if int(s.used) == len(s.next) {
		s.grow(len(s.next)/4 + 1)
	}
	s.used++
	return int(s.used-1) << s.shift
}

func (s *slab) release(slot int) {
	b := int32(slot >> s.shift)
	s.next[b] = s.free
	s.free = b
}

func newFIFO() fifo { return fifo{tail: -1} }

// push appends a record to f.
func (s *slab) push(f *fifo, own, due uint32, hops uint16) {
	switch {
	case f.tail < 0:
		f.head = s.alloc()
		f.tail = f.head
	case f.tail&s.mask == 0: // the tail block is full
		b := s.alloc()
		s.next[(f.tail-1)>>s.shift] = int32(b >> s.shift)
		f.tail = b
	}
	s.recs[f.tail] = record{own: own, due: due, hops: hops}
	f.tail++
	f.n++
}

// pop removes the head of f, which must not be empty, and returns its due
// time and hops.
func (s *slab) pop(f *fifo) (due uint32, hops uint16) {
	r := &s.recs[f.head]
	due, hops = r.due, r.hops
	f.head++
	f.n--
	if f.head&s.mask == 0 { // read the whole block
		done := f.head - 1
		if f.n == 0 {
			f.tail = -1
		} else {
			f.head = int(s.next[done>>s.shift]) << s.shift
		}
		s.release(done)
	}
	return due, hops
}

// headOwn is the own release time of the head of f, which must not be empty.
func (s *slab) headOwn(f *fifo) uint32 { return s.recs[f.head].own }
