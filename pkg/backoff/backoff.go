// Package backoff is the capped exponential back-off every retry loop of
// ladder uses: connecting to Kafka, re-joining a group, sending a record
// again, waiting for a target topic.
package backoff

import (
	"context"
	"time"
)

// Backoff doubles its delay from Min up to Max. The zero value is not
// usable: make one with New.
type Backoff struct {
	cur, min, max time.Duration
}

// New returns a back-off starting at lo, doubling up to hi.
func New(lo, hi time.Duration) *Backoff { return &Backoff{min: lo, max: hi} }

// Next returns the delay before the next attempt.
func (b *Backoff) Next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.min
	case b.cur < b.max:
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

// Reset starts again from the smallest delay (after a success).
func (b *Backoff) Reset() { b.cur = 0 }

// Delay is the delay before attempt (1-based) of a back-off from lo
// doubling to hi: lo, 2lo, 4lo, ... hi.
func Delay(attempt int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// Retry calls try until it succeeds (true) or ctx is done (false), waiting
// the back-off's delays between attempts; failed is told each error and the
// delay before the next attempt (to log it).
func Retry(ctx context.Context, b *Backoff, try func() error, failed func(err error, retryIn time.Duration)) bool {
	for {
		err := try()
		if err == nil {
			b.Reset()
			return true
		}
		d := b.Next()
		if failed != nil {
			failed(err, d)
		}
		if !Sleep(ctx, d) {
			return false
		}
	}
}

// Sleep waits d, or until ctx is done (false).
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
