package memory

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// batch is the state of one Do call: the stripes it holds, and the
// instant at which its operations apply.
//
// Lock order: a batch takes every stripe it needs at the start, in
// ascending index, and releases them all at the end. Only a sweep (of a
// full store) takes more meanwhile: blocking on a stripe above every one
// the batch holds, trying the others. Nothing else blocks while holding a
// stripe, except on ristretto's goroutine (a Wait, a Del into a full set
// buffer), which takes none of the store's locks.
type batch struct {
	s *Store
	// now is the instant of every operation of the batch, read once the
	// batch holds its stripes.
	now   int64
	held  stripeSet
	top   int  // highest stripe held
	kick  bool // a pending set stopped being empty: wake the resolver
	wrote bool // Set or Del made: queued work for ristretto's goroutine
}

// lock takes the stripes in need, in ascending order, and reads the clock.
func (b *batch) lock(need *stripeSet) {
	b.held = *need
	b.top = -1
	for w, m := range need {
		for ; m != 0; m &= m - 1 {
			i := w*64 + bits.TrailingZeros64(m)
			b.s.stripes[i].mu.Lock()
			b.top = i
		}
	}
	b.now = b.s.now()
}

// unlock resolves the pending sets the batch has grown too large, releases
// every stripe and wakes the resolver if needed. A batch that queued work
// for ristretto's goroutine while it has more than maxQueued calls to go
// through waits for it, holding no lock: the backpressure that keeps a
// flood of new keys from filling ristretto's set buffer.
func (b *batch) unlock() {
	s := b.s
	for w, m := range b.held {
		for ; m != 0; m &= m - 1 {
			st := &s.stripes[w*64+bits.TrailingZeros64(m)]
			if len(st.pending) > pendingMax {
				s.resolve(st, s.applied.Load(), b.now)
				if len(st.pending) > pendingMax {
					s.resolve(st, s.waitApplied(), b.now)
				}
			}
			st.mu.Unlock()
		}
	}
	if b.kick {
		s.wake()
	}
	if b.wrote && s.queued.Load()-s.applied.Load() > maxQueued {
		s.waitApplied()
	}
}

func (b *batch) apply(op *backend.Op, h uint64) (backend.Result, error) {
	st := &b.s.stripes[stripeOf(h)]
	switch op.Kind {
	case backend.Incr:
		return b.incr(st, op.Key, h, op.Delta, op.TTL)
	case backend.Exists:
		return b.exists(st, op.Key, h), nil
	case backend.Expire:
		return b.expire(st, op.Key, h, op.TTL), nil
	case backend.Delete:
		return b.del(st, op.Key, h), nil
	}
	return backend.Result{}, fmt.Errorf("%w: unknown operation %s", backend.ErrInvalid, op.Kind)
}

// find returns the entry held under hash h, or nil: the one ristretto
// returns, or else the one in the stripe's pending set. The batch holds
// st, h's stripe. The entry may belong to another key with the same hash,
// be expired or gone: callers check.
//
// A pending entry that Get returns is applied, and becomes live. Get never
// returns a stale entry while a newer one of the same hash is pending:
// before a Set, insert removes whatever ristretto holds under the hash.
func (b *batch) find(st *stripe, h uint64) *entry {
	if e, ok := b.s.cache.Get(h); ok {
		if e.state.Load() == stPending {
			b.s.seen(st, e)
		}
		return e
	}
	if len(st.pending) != 0 {
		return st.pending[h]
	}
	return nil
}

func (b *batch) incr(st *stripe, key string, h uint64, delta int64, ttl time.Duration) (backend.Result, error) {
	e := b.find(st, h)
	if e != nil && e.is(key) && e.liveAt(b.now) {
		e.value = addClamped(e.value, delta)
		if delta < 0 && e.value == 0 {
			// A give-back that brings the counter to zero removes it,
			// under the stripe lock, so no other call sees the zero.
			b.s.remove(st, e)
			b.wrote = true
			return backend.Result{}, nil
		}
		return e.result(b.now), nil
	}
	if delta <= 0 {
		return backend.Result{}, nil
	}
	return b.create(st, key, h, delta, ttl, e)
}

// create makes key hold delta with ttl. old is what find returned for its
// hash: nil, or a dead entry of the key, or another key's.
func (b *batch) create(st *stripe, key string, h uint64, delta int64, ttl time.Duration, old *entry) (backend.Result, error) {
	s := b.s
	if old != nil {
		if !old.is(key) && old.liveAt(b.now) {
			return backend.Result{}, errCollision
		}
		// Expired or gone: replaced below (insert removes it from
		// ristretto and from the pending set).
		s.retire(old)
	}
	if !s.reserve() && !b.reclaimFor(h, old) {
		return backend.Result{}, s.errFull
	}
	exp := expiry(b.now, ttl)
	e := newEntry(key, h) // stPending
	e.value, e.rexp = delta, s.reclaimAt(exp)
	e.exp.Store(exp)
	b.insert(st, e)
	return e.result(b.now), nil
}

// reclaimFor makes room for a new key of hash h in a full store, and
// reserves it. old is what find returned for h.
//
// First h itself: when find returned nil, ristretto may still store an
// expired entry under h that Get and IterValues hide (one more than
// ReclaimDelay past its expiry that ttl cleanup has not reached yet). A Del
// removes it at once, and OnExit retires it, freeing its place. The Del is
// safe: with no pending entry or ghost of h, no Set of h is queued, and
// the insert that follows Dels h anyway. Then, at most once per sweepEvery,
// a sweep.
func (b *batch) reclaimFor(h uint64, old *entry) bool {
	s := b.s
	if old == nil {
		s.del(h)
		b.wrote = true
		if s.reserve() {
			return true
		}
	}
	if !s.sweepDue(b.now) {
		return false
	}
	b.sweep()
	return s.reserve()
}

func (b *batch) insert(st *stripe, e *entry) {
	b.wrote = true
	if b.s.insert(st, e, b.now) {
		b.s.markDirty(stripeOf(e.h))
		b.kick = true
	}
}

func (b *batch) exists(st *stripe, key string, h uint64) backend.Result {
	if e := b.find(st, h); e != nil && e.is(key) && e.liveAt(b.now) {
		return e.result(b.now)
	}
	return backend.Result{}
}

// expire sets the TTL of a live key. Shortening it, or lengthening it
// within the entry's ristretto expiration, only changes the entry. Beyond
// that the entry is re-inserted: Del, then Set as a new item, and pending
// until ristretto has applied it. The entry keeps its identity.
func (b *batch) expire(st *stripe, key string, h uint64, ttl time.Duration) backend.Result {
	s := b.s
	e := b.find(st, h)
	if e == nil || !e.is(key) || !e.liveAt(b.now) {
		return backend.Result{}
	}
	exp := expiry(b.now, ttl)
	if !s.needsReinsert(exp, e.rexp) {
		e.exp.Store(exp)
		return e.result(b.now)
	}
	// A pending entry's own Set must have been applied before it is Set
	// again (see Store.insert); wait for that before taking it out of
	// the states OnExit acts on.
	if e.state.Load() == stPending && !s.settled(e.ep) {
		s.waitApplied()
	}
	prev := e.state.Load()
	if prev == stGone || !e.state.CompareAndSwap(prev, stMoving) {
		return backend.Result{} // reclaimed by ttl cleanup meanwhile
	}
	e.exp.Store(exp)
	e.rexp = s.reclaimAt(exp)
	if prev == stLive {
		st.seq++ // it leaves ristretto for the pending set: see snapshot
	}
	b.insert(st, e)
	return e.result(b.now)
}

func (b *batch) del(st *stripe, key string, h uint64) backend.Result {
	e := b.find(st, h)
	if e == nil || !e.is(key) {
		return backend.Result{}
	}
	found := e.liveAt(b.now)
	b.s.remove(st, e)
	b.wrote = true
	return backend.Result{Found: found}
}

// remove retires e and removes it from ristretto. A pending entry whose
// Set may still be queued stays in the pending set as a ghost, so that no
// Set of its hash is made before ristretto has applied (and then, by the
// Del queued after it, removed) that one. The caller holds st, e's stripe.
func (s *Store) remove(st *stripe, e *entry) {
	pending := e.state.Load() == stPending
	s.retire(e)
	s.del(e.h)
	if pending && s.settled(e.ep) {
		delete(st.pending, e.h)
	}
}

// sweep reclaims expired keys: those ristretto still shows (within
// ReclaimDelay of their expiry; older ones are hidden from IterValues and
// left to ristretto's cleanup), and expired pending entries. It runs when
// a creation finds the store full, at most once per sweepEvery and one at
// a time. It works in the batch's stripes, blocks on stripes above them
// and only tries the others (the lock order): a stripe busy elsewhere is
// left for the next sweep.
func (b *batch) sweep() {
	s := b.s
	if !s.sweepMu.TryLock() {
		return
	}
	defer s.sweepMu.Unlock()
	now := b.now
	if !s.sweepDue(now) {
		return
	}
	s.lastSweep.Store(now)
	var dead []*entry
	s.cache.IterValues(func(e *entry) bool {
		if !e.liveAt(now) {
			dead = append(dead, e)
		}
		return false
	})
	slices.SortFunc(dead, func(x, y *entry) int { return cmp.Compare(stripeOf(x.h), stripeOf(y.h)) })
	var targets stripeSet
	for _, e := range dead {
		targets.add(stripeOf(e.h))
	}
	for w := range s.dirty {
		targets[w] |= s.dirty[w].Load()
	}
	targets.each(func(i int) {
		n := 0
		for n < len(dead) && stripeOf(dead[n].h) == i {
			n++
		}
		mine := dead[:n]
		dead = dead[n:]
		st := &s.stripes[i]
		switch {
		case b.held.has(i):
		case i > b.top:
			st.mu.Lock()
			defer st.mu.Unlock()
		case st.mu.TryLock():
			defer st.mu.Unlock()
		default:
			return
		}
		for _, e := range mine {
			if v, ok := s.cache.Get(e.h); ok && v == e && !e.liveAt(now) {
				if e.state.Load() == stPending {
					s.seen(st, e)
				}
				s.remove(st, e)
			}
		}
		for _, e := range st.pending {
			if e.state.Load() == stPending && !e.liveAt(now) {
				s.remove(st, e)
			}
		}
	})
}

// addClamped adds d to a counter v >= 0, flooring at zero (memcached's decr
// rule) and saturating at math.MaxInt64.
func addClamped(v, d int64) int64 {
	if d > 0 && v > maxInt64-d {
		return maxInt64
	}
	return max(v+d, 0)
}

const maxInt64 = 1<<63 - 1
