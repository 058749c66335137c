package memory

import (
	"fmt"
	"math/bits"
	"runtime"

	"github.com/go-lockout/lockout/backend"
)

// batch is the state of one Do call: the shards it holds, and the instant
// at which its operations apply.
//
// Lock order: a batch takes every shard it needs at the start, in
// ascending index, and releases them all at the end. Only a creation in a
// full store takes more meanwhile, one at a time (see reclaim): blocking
// on a shard above every one the batch holds, only trying the others. The
// sweeper and Keys hold one shard at a time and wait for nothing while
// they do.
type batch struct {
	s    *Store
	held shardSet
	top  int   // highest shard held
	now  int64 // the instant of every operation, read once the shards are held
	// spare counts the room the batch holds and has not used: keys
	// reserved for its creations and not made yet, and keys it removed.
	// A removal keeps its room for the batch, so that a key deleted and
	// created again in one batch (the engine replaces a lock so) cannot
	// find it taken by another call meanwhile; release gives it back.
	spare int64
}

// reserveCreations counts the keys the batch creates (an Incr that adds to
// a key not live when the batch began, once per key) and reserves room for
// them all before any operation applies, or returns the store's ErrFull.
// places holds each operation's cell, looked up; an expired key found
// there is removed.
func (b *batch) reserveCreations(ops []backend.Op, places []place) error {
	n, removed := int64(0), false
	for i := range ops {
		op, p := &ops[i], &places[i]
		if op.Kind != backend.Incr || op.Delta <= 0 {
			continue
		}
		sh := &b.s.shards[p.shard]
		if removed {
			// The cell found may have moved: a removal shifts the keys
			// after it.
			p.cell = sh.findFrom(p.hash, op.Key, p.cell)
		}
		if p.cell >= 0 {
			if sh.at(p.cell).live(b.now) {
				continue
			}
			// Expired: removed, as any operation that finds it does, so
			// that its room counts.
			b.remove(sh, p.cell)
			p.cell, removed = -1, true
		}
		if b.earlierIncr(ops, places, i) {
			continue // counted already
		}
		n++
	}
	if n <= b.spare { // the room of the expired keys removed
		return nil
	}
	if err := b.reserve(n - b.spare); err != nil {
		return err
	}
	b.spare = n
	return nil
}

// reserve counts n more keys, reclaiming expired keys while the store has
// no room for them, or returns the store's ErrFull.
func (b *batch) reserve(n int64) error {
	for !b.s.reserve(n) {
		if !b.reclaim() {
			return b.s.errFull
		}
	}
	return nil
}

// earlierIncr reports whether an operation before ops[i] adds to the same
// key, in a batch small enough to look; a larger one counts such a key
// once per operation, and may be refused with the room for one key left.
func (b *batch) earlierIncr(ops []backend.Op, places []place, i int) bool {
	if len(ops) > 16 {
		return false
	}
	for j := range i {
		if places[j].hash == places[i].hash && ops[j].Kind == backend.Incr && ops[j].Delta > 0 && ops[j].Key == ops[i].Key {
			return true
		}
	}
	return false
}

// release gives back the room the batch holds and has not used.
func (b *batch) release() {
	if b.spare > 0 {
		b.s.keys.Add(-b.spare)
		b.spare = 0
	}
}

// lock takes the shards in b.held, in ascending order, and reads the clock.
func (b *batch) lock() {
	b.top = -1
	for w, m := range b.held {
		for ; m != 0; m &= m - 1 {
			i := w*64 + bits.TrailingZeros64(m)
			b.s.shards[i].mu.Lock()
			b.top = i
		}
	}
	b.now = b.s.now()
}

// unlock releases every shard the batch holds.
func (b *batch) unlock() {
	for w, m := range b.held {
		for ; m != 0; m &= m - 1 {
			b.s.shards[w*64+bits.TrailingZeros64(m)].mu.Unlock()
		}
	}
}

// place is where an operation's key lives: its shard, its hash there, and
// the cell it was found in before the batch applied any operation (a hint:
// an operation before it may have moved it), or -1.
type place struct {
	hash  uint64
	cell  int
	shard uint8
}

// apply applies op on its shard sh, which the batch holds, where p is the
// place of op's key.
func (b *batch) apply(op *backend.Op, sh *shard, p *place) (backend.Result, error) {
	switch op.Kind {
	case backend.Incr:
		return b.incr(sh, p, op)
	case backend.Exists:
		if i, ok := b.get(sh, p, op.Key); ok {
			return sh.at(i).result(b.now), nil
		}
		return backend.Result{}, nil
	case backend.Expire:
		i, ok := b.get(sh, p, op.Key)
		if !ok {
			return backend.Result{}, nil
		}
		sh.setExp(i, expiry(b.now, op.TTL))
		return sh.at(i).result(b.now), nil
	case backend.Delete:
		i := sh.findFrom(p.hash, op.Key, p.cell)
		if i < 0 {
			return backend.Result{}, nil
		}
		found := sh.at(i).live(b.now)
		b.remove(sh, i)
		return backend.Result{Found: found}, nil
	}
	return backend.Result{}, fmt.Errorf("memory: %w: unknown operation %s", backend.ErrInvalid, op.Kind)
}

// get returns the cell of key, at place p, in sh if the key is live. An
// expired entry it finds is removed.
func (b *batch) get(sh *shard, p *place, key string) (int, bool) {
	i := sh.findFrom(p.hash, key, p.cell)
	if i < 0 {
		return 0, false
	}
	if !sh.at(i).live(b.now) {
		b.remove(sh, i)
		return 0, false
	}
	return i, true
}

// remove deletes the key in cell i of sh. Its room stays the batch's
// until release.
func (b *batch) remove(sh *shard, i int) {
	sh.remove(i)
	b.spare++
}

func (b *batch) incr(sh *shard, p *place, op *backend.Op) (backend.Result, error) {
	key, delta := op.Key, op.Delta
	if i, ok := b.get(sh, p, key); ok {
		e := sh.at(i)
		if delta == 0 || delta < 0 && op.IfExpiresBefore != 0 && e.exp >= op.IfExpiresBefore {
			// A read, or a conditional decrement of a key that expires
			// too late (never included: never is the largest).
			return e.result(b.now), nil
		}
		e.value = addClamped(e.value, delta)
		if e.value == 0 {
			// A give-back that brings the counter to zero removes it,
			// under the shard lock, so no other call sees the zero.
			b.remove(sh, i)
			return backend.Result{}, nil
		}
		return e.result(b.now), nil
	}
	if delta <= 0 {
		return backend.Result{}, nil
	}
	// The batch reserved room for its creations (reserveCreations). A key
	// removed earlier in the batch (Delete, or a give-back to zero) and
	// created again takes the room its removal kept (batch.spare).
	if b.spare > 0 {
		b.spare--
	} else if err := b.reserve(1); err != nil {
		return backend.Result{}, err
	}
	e := entry{value: delta, exp: expiry(b.now, op.TTL)}
	if err := sh.add(p.hash, key, e); err != nil {
		b.s.keys.Add(-1) // the reservation
		return backend.Result{}, fmt.Errorf("%w: %w", backend.ErrFull, err)
	}
	return e.result(b.now), nil
}

// lockTries is how many times reclaim tries a shard below the batch's
// highest before it gives up on it.
const lockTries = 4

// reclaim frees the place of expired keys in a full store, and reports
// whether it freed any. It sweeps shards where keys may have expired until
// one frees some: the batch's own, those above them (waiting for them, in
// ascending order: the lock order), and those below that it can take
// within a few tries.
func (b *batch) reclaim() bool {
	s := b.s
	for i := range s.shards {
		sh := &s.shards[i]
		if sh.minExp.Load() > b.now {
			continue
		}
		// The keys swept are uncounted under the shard's lock: whoever
		// finds them gone finds them uncounted too (Len).
		n := 0
		sweep := func() {
			n = sh.sweep(b.now)
			s.keys.Add(-int64(n))
		}
		switch {
		case b.held.has(i):
			sweep()
		case i > b.top:
			sh.mu.Lock()
			sweep()
			sh.mu.Unlock()
		default:
			for try := range lockTries {
				if sh.mu.TryLock() {
					sweep()
					sh.mu.Unlock()
					break
				}
				if try < lockTries-1 {
					runtime.Gosched()
				}
			}
		}
		if n > 0 {
			return true
		}
	}
	return false
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
