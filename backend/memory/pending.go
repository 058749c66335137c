package memory

import (
	"math/bits"
	"sync"
	"time"
)

// numStripes is the number of stripe locks. A key belongs to the stripe
// its hash tag hashes to: the top stripeBits of its ristretto key.
const (
	stripeBits = 8
	numStripes = 1 << stripeBits
)

// stripeOf returns the stripe of ristretto key h.
func stripeOf(h uint64) int { return int(h >> (64 - stripeBits)) }

// pendingMax is the size of a stripe's pending set beyond which the batch
// that grew it resolves it before letting go of the stripe, waiting for
// ristretto if it must.
const pendingMax = 64

// maxQueued is how many Sets and Dels may wait for ristretto's goroutine
// before batches that add more wait for it (ristretto's set buffer holds
// 32768).
const maxQueued = 4096

// resolveEvery is the least time between two rounds of the resolver while
// entries are pending.
const resolveEvery = time.Millisecond

// stripe guards the keys whose hash tags hash to it: every operation on
// them, every ristretto Set and Del of their hashes, and the pending set
// of entries that were Set into ristretto and may not be visible to Get
// yet.
type stripe struct {
	mu sync.Mutex
	// pending holds, by hash, the stripe's stPending entries, and ghosts:
	// gone entries whose Set may still be queued in ristretto.
	pending map[uint64]*entry
	// seq counts the entries that moved from ristretto into pending
	// (re-inserts), for Keys: see Store.snapshot.
	seq uint64
	_   [40]byte // keep stripes on separate cache lines
}

// stripeSet is a set of stripe indexes.
type stripeSet [numStripes / 64]uint64

func (m *stripeSet) add(i int)          { m[i>>6] |= 1 << (i & 63) }
func (m *stripeSet) has(i int) bool     { return m[i>>6]&(1<<(i&63)) != 0 }
func (m *stripeSet) each(f func(i int)) { eachBit(m[:], f) }

func eachBit(words []uint64, f func(i int)) {
	for w, m := range words {
		for ; m != 0; m &= m - 1 {
			f(w*64 + bits.TrailingZeros64(m))
		}
	}
}

// settled reports whether ristretto has dealt with the store's queued call
// numbered ep.
func (s *Store) settled(ep uint64) bool { return ep <= s.applied.Load() }

// del removes h from ristretto: at once from its map, and from its policy
// through the set buffer.
func (s *Store) del(h uint64) {
	s.cache.Del(h)
	s.queued.Add(1)
}

// waitApplied waits until ristretto has dealt with every Set made before
// it was called, and returns the new value of s.applied. The caller holds
// closeMu shared; it may hold stripe locks (ristretto's goroutine takes
// none of the store's locks).
func (s *Store) waitApplied() uint64 {
	a := s.queued.Load()
	s.cache.Wait()
	for {
		cur := s.applied.Load()
		if cur >= a {
			return cur
		}
		if s.applied.CompareAndSwap(cur, a) {
			return a
		}
	}
}

// insert Sets e into ristretto as a new item, and into st's pending set.
// The caller holds st (e's stripe) and has set e's state to stPending (a
// new entry) or stMoving (a re-insert; insert makes it stPending).
//
// The Set must take ristretto's asynchronous new-item path, never the
// synchronous update path (see the package comment). So insert first makes
// sure that no earlier Set of e.h may still be queued (a pending entry or
// ghost whose Set is not known to be applied: then it waits for ristretto),
// and then Dels e.h, which removes synchronously whatever ristretto stores
// under it (an expired item Get still returns, or one past its ristretto
// expiration that Get hides but the map still holds). No item of e.h can
// then appear in ristretto's map before e's own.
func (s *Store) insert(st *stripe, e *entry, now int64) (dirtied bool) {
	if p := st.pending[e.h]; p != nil {
		if !s.settled(p.ep) {
			s.waitApplied()
		}
		if p != e {
			// Dead (the caller retired it), and its Set applied.
			delete(st.pending, e.h)
		}
	}
	s.set(e, now)
	if len(st.pending) == 0 {
		dirtied = true
		if st.pending == nil {
			st.pending = make(map[uint64]*entry)
		}
	}
	st.pending[e.h] = e
	return dirtied
}

// set Dels e.h and Sets e into ristretto, and leaves e stPending. The
// caller holds e's stripe and has made sure no earlier Set of e.h may
// still be queued. A Set that ristretto does not take (its set buffer is
// full) leaves e dropped, to be Set again when the stripe is resolved.
func (s *Store) set(e *entry, now int64) {
	// The Del removes e at once if ristretto stores it: OnExit ignores it,
	// since it is stMoving, or dropped. After the Del nothing can hand e
	// to OnExit but ttl cleanup of the item Set next, which must retire
	// it: e is stPending from here on.
	s.del(e.h)
	e.state.CompareAndSwap(stMoving, stPending)
	e.dropped.Store(false)
	ok := s.cache.SetWithTTL(e.h, e, 0, ristrettoTTL(e.rexp, now))
	e.ep = s.queued.Add(1)
	if !ok {
		e.dropped.Store(true)
	}
}

// seen marks live a pending entry that Get has just returned: ristretto
// applied its Set, and (since nothing else of its hash is queued while it
// is pending) holds it until its expiry. The caller holds e's stripe.
func (s *Store) seen(st *stripe, e *entry) {
	if !e.dropped.Load() && e.state.CompareAndSwap(stPending, stLive) {
		delete(st.pending, e.h)
	}
}

// resolve settles the entries of st's pending set whose last Set
// ristretto has dealt with (ep up to applied): a ghost leaves the set; an
// entry that ristretto stored becomes live and leaves it; an entry that was
// dropped (not sent, or rejected) is Set again if it is still live, and
// retired if not. applied is a value of Store.applied. The caller holds st.
func (s *Store) resolve(st *stripe, applied uint64, now int64) {
	for h, e := range st.pending {
		if e.ep > applied {
			continue
		}
		if e.state.Load() == stPending {
			if e.dropped.Load() {
				if e.liveAt(now) {
					s.set(e, now)
					continue
				}
				s.retire(e) // nothing stored: no Del needed
			} else {
				// Stored, unless ttl cleanup removed it meanwhile, which
				// exited sees (and retires it): one CAS wins.
				e.state.CompareAndSwap(stPending, stLive)
			}
		}
		delete(st.pending, h)
	}
}

// markDirty tells the resolver that stripe i has pending entries. The
// caller holds stripe i.
func (s *Store) markDirty(i int) {
	s.dirty[i>>6].Or(1 << (i & 63))
}

// wake wakes the resolver if it is idle. Call it after markDirty, without
// holding stripe locks.
func (s *Store) wake() {
	if s.idle.Load() && s.idle.CompareAndSwap(true, false) {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

func (s *Store) anyDirty() bool {
	for i := range s.dirty {
		if s.dirty[i].Load() != 0 {
			return true
		}
	}
	return false
}

// resolver is the store's goroutine: while any stripe has pending entries,
// it waits for ristretto to apply the Sets made so far (one Wait for all
// of them), then resolves the stripes, at most once per resolveEvery; when
// none has, it sleeps until a batch kicks it. It stops on Close.
//
// Batches mark a stripe dirty when its pending set stops being empty; the
// resolver clears the mark before it resolves the stripe and sets it again
// if entries remain. idle and dirty are checked in opposite orders by the
// resolver (idle, then dirty) and batches (dirty, then idle), so a kick is
// never lost.
func (s *Store) resolver() {
	defer close(s.done)
	timer := time.NewTimer(resolveEvery)
	timer.Stop()
	for {
		s.idle.Store(true)
		if !s.anyDirty() || !s.idle.CompareAndSwap(true, false) {
			select {
			case <-s.stop:
				return
			case <-s.kick:
			}
		}
		for {
			if !s.round() {
				return
			}
			if !s.anyDirty() {
				break
			}
			timer.Reset(resolveEvery)
			select {
			case <-s.stop:
				timer.Stop()
				return
			case <-timer.C:
			}
		}
	}
}

// round is one pass of the resolver. It reports false once the store is
// closed.
func (s *Store) round() bool {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed.Load() {
		return false
	}
	select {
	case <-s.stop:
		return false
	default:
	}
	applied := s.waitApplied()
	now := s.now()
	for w := range s.dirty {
		for m := s.dirty[w].Swap(0); m != 0; m &= m - 1 {
			i := w*64 + bits.TrailingZeros64(m)
			st := &s.stripes[i]
			st.mu.Lock()
			s.resolve(st, applied, now)
			if len(st.pending) != 0 {
				s.markDirty(i)
			}
			st.mu.Unlock()
		}
	}
	return true
}
