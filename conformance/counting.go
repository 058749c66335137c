package conformance

import (
	"context"
	"iter"
	"sync/atomic"

	"github.com/go-lockout/lockout/backend"
)

// Counting wraps a store and counts the calls made to it, for tests of the
// round-trip budget. It implements backend.Lister when the store does.
type Counting struct {
	backend.Backend
	calls atomic.Int64
	ops   atomic.Int64
}

// NewCounting returns a counting wrapper around b.
func NewCounting(b backend.Backend) *Counting { return &Counting{Backend: b} }

// Do counts one call and its operations, and passes them on.
func (c *Counting) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	c.calls.Add(1)
	c.ops.Add(int64(len(ops)))
	return c.Backend.Do(ctx, ops, res)
}

// Calls returns the number of Do calls so far.
func (c *Counting) Calls() int64 { return c.calls.Load() }

// Ops returns the number of operations passed to Do so far.
func (c *Counting) Ops() int64 { return c.ops.Load() }

// Reset sets both counts to zero.
func (c *Counting) Reset() {
	c.calls.Store(0)
	c.ops.Store(0)
}

// CountingLister is a Counting over a store that implements backend.Lister.
type CountingLister struct {
	*Counting
	l backend.Lister
}

// Keys passes the listing on, uncounted.
func (c CountingLister) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return c.l.Keys(ctx, prefix)
}

// Wrap returns a counting wrapper around b that keeps b's Lister
// capability: a *Counting, or a CountingLister when b can list.
func Wrap(b backend.Backend) (backend.Backend, *Counting) {
	c := NewCounting(b)
	if l, ok := b.(backend.Lister); ok {
		return CountingLister{c, l}, c
	}
	return c, c
}
