// Package counting wraps a store to count the calls made to it: the tests
// of the round-trip budget use it, and so does cmd/lockbench. It imports
// neither package testing nor anything beyond package backend, so a
// production binary can use it.
package counting

import (
	"context"
	"iter"
	"sync/atomic"

	"github.com/go-lockout/lockout/backend"
)

// Store wraps a store and counts the calls made to it.
type Store struct {
	backend.Backend
	calls atomic.Int64
	ops   atomic.Int64
}

// New returns a counting wrapper around b. It hides b's optional
// capabilities; Wrap keeps them.
func New(b backend.Backend) *Store { return &Store{Backend: b} }

// Do counts one call and its operations, and passes them on.
func (c *Store) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	c.calls.Add(1)
	c.ops.Add(int64(len(ops)))
	return c.Backend.Do(ctx, ops, res)
}

// Calls returns the number of Do calls so far.
func (c *Store) Calls() int64 { return c.calls.Load() }

// Ops returns the number of operations passed to Do so far.
func (c *Store) Ops() int64 { return c.ops.Load() }

// Reset sets both counts to zero.
func (c *Store) Reset() {
	c.calls.Store(0)
	c.ops.Store(0)
}

// Lister is a Store over a store that implements backend.Lister.
type Lister struct {
	*Store
	l backend.Lister
}

// Keys passes the listing on, uncounted.
func (c Lister) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return c.l.Keys(ctx, prefix)
}

// Wrap returns a counting wrapper around b that keeps b's Lister
// capability (a *Store, or a Lister when b can list), and the *Store that
// counts.
func Wrap(b backend.Backend) (backend.Backend, *Store) {
	c := New(b)
	if l, ok := b.(backend.Lister); ok {
		return Lister{c, l}, c
	}
	return c, c
}
