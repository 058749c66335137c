package memory

import (
	"fmt"
	"math/bits"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// batch is the state of one Do call: the stripe locks it holds and the
// entries it has set into ristretto but not yet confirmed.
//
// Lock order: stripes in ascending index, then at most one entry mutex.
// A batch blocks on a stripe only above every stripe it holds; a lower one
// is tried with TryLock and, failing that, the batch flushes (confirms its
// pending entries and releases every stripe) before blocking. Nothing is
// called on ristretto while an entry mutex is held, and ristretto's own
// goroutine (which runs OnExit) takes neither kind of lock, so a batch may
// wait for it while holding stripes.
type batch struct {
	s   *Store
	now int64 // refreshed whenever the batch may have blocked

	held  [numStripes / 64]uint64 // stripes locked
	nheld int
	top   int // highest stripe held, -1 for none

	moving [numStripes / 64]uint64 // stripes whose seq this batch made odd

	// The entries set into ristretto (new or re-inserted) since the last
	// flush: not yet visible to Get, so looked up here first. The first
	// ones are kept in an array, so that a decision that creates a few
	// keys allocates no slice.
	pend  [4]*entry
	npend int
	extra []*entry          // pending entries beyond len(pend)
	pidx  map[uint64]*entry // index of all pending entries by hash, once they are many
}

const pendIndexAt = 8

// inFlight returns the entries in flight: two slices, since those past the
// first four are kept apart.
func (b *batch) inFlight() ([]*entry, []*entry) {
	return b.pend[:min(b.npend, len(b.pend))], b.extra
}

func (b *batch) apply(op *backend.Op) (backend.Result, error) {
	// A read takes effect after every write before it in the batch, on
	// any key (see backend.Backend). Writes to existing keys are visible
	// at once; the keys this batch created or re-inserted are not, until
	// a flush has waited for ristretto to apply them.
	if b.npend > 0 && (op.Kind == backend.Exists || op.Kind == backend.Incr && op.Delta <= 0) {
		if err := b.flush(); err != nil {
			return backend.Result{}, err
		}
	}
	h := b.s.hash(op.Key)
	switch op.Kind {
	case backend.Incr:
		return b.incr(op.Key, h, op.Delta, op.TTL)
	case backend.Exists:
		return b.exists(op.Key, h)
	case backend.Expire:
		return b.expire(op.Key, h, op.TTL)
	case backend.Delete:
		return b.del(op.Key, h)
	}
	return backend.Result{}, fmt.Errorf("%w: unknown operation %s", backend.ErrInvalid, op.Kind)
}

// pending returns the entry this batch has in flight under hash h, if any.
func (b *batch) pending(h uint64) *entry {
	if b.pidx != nil {
		return b.pidx[h]
	}
	first, extra := b.inFlight()
	for _, e := range first {
		if e.h == h {
			return e
		}
	}
	for _, e := range extra {
		if e.h == h {
			return e
		}
	}
	return nil
}

func (b *batch) addPending(e *entry) {
	if b.npend < len(b.pend) {
		b.pend[b.npend] = e
	} else {
		b.extra = append(b.extra, e)
	}
	b.npend++
	switch {
	case b.pidx != nil:
		b.pidx[e.h] = e
	case b.npend > pendIndexAt:
		b.pidx = make(map[uint64]*entry, 2*b.npend)
		first, extra := b.inFlight()
		for _, p := range first {
			b.pidx[p.h] = p
		}
		for _, p := range extra {
			b.pidx[p.h] = p
		}
	}
}

// find returns the entry stored under hash h, or nil. The entry may belong
// to another key with the same hash, be expired or gone: callers check its
// key, and its liveness under its mutex.
//
// Ristretto hides an entry while a batch re-inserts it (between its Del and
// the Wait that follows its Set). A miss is therefore trusted only when the
// batch holds the stripe, or when the stripe's seq was even and unchanged
// around the Get; otherwise the lookup is repeated under the stripe lock.
func (b *batch) find(h uint64) (*entry, error) {
	if b.npend > 0 {
		if e := b.pending(h); e != nil {
			return e, nil
		}
	}
	i := stripeOf(h)
	st := &b.s.stripes[i]
	seq := st.seq.Load()
	if e, ok := b.s.cache.Get(h); ok {
		return e, nil
	}
	if b.holds(i) || (seq&1 == 0 && st.seq.Load() == seq) {
		return nil, nil
	}
	if err := b.lockStripe(i); err != nil {
		return nil, err
	}
	e, _ := b.s.cache.Get(h)
	return e, nil
}

// lookup is find for an operation on key that treats another key's entry
// as a miss.
func (b *batch) lookup(key string, h uint64) (*entry, error) {
	e, err := b.find(h)
	if e != nil && e.key != key {
		e = nil
	}
	return e, err
}

// locked returns the entry stored under h once the batch holds h's stripe
// (taking it if needed). Under the stripe lock ristretto is authoritative:
// every Set of this stripe's keys by other batches has been waited for.
// A key this batch has in flight is flushed first, so that its item is
// visible and no later Del or Set of the same hash overtakes it.
func (b *batch) locked(h uint64) (*entry, error) {
	if b.npend > 0 && b.pending(h) != nil {
		if err := b.flush(); err != nil {
			return nil, err
		}
	}
	if err := b.lockStripe(stripeOf(h)); err != nil {
		return nil, err
	}
	e, _ := b.s.cache.Get(h)
	return e, nil
}

func (b *batch) holds(i int) bool { return b.held[i>>6]&(1<<(i&63)) != 0 }

func (b *batch) lockStripe(i int) error {
	if b.holds(i) {
		return nil
	}
	mu := &b.s.stripes[i].mu
	if i < b.top && !mu.TryLock() {
		if err := b.flush(); err != nil {
			return err
		}
		mu.Lock()
	} else if i > b.top {
		mu.Lock()
	}
	b.held[i>>6] |= 1 << (i & 63)
	b.nheld++
	b.top = max(b.top, i)
	b.now = b.s.now()
	return nil
}

// markMoving makes stripe i's seq odd, once per flush, before the batch
// removes an entry of that stripe from ristretto to re-insert it.
func (b *batch) markMoving(i int) {
	if b.moving[i>>6]&(1<<(i&63)) == 0 {
		b.moving[i>>6] |= 1 << (i & 63)
		b.s.stripes[i].seq.Add(1)
	}
}

// flush waits for ristretto to apply the batch's Sets (one Wait for all of
// them), confirms each entry, makes the seq of the stripes with re-inserts
// even again and releases every stripe. It reports the first loss.
func (b *batch) flush() error {
	s := b.s
	var err error
	if b.npend > 0 {
		s.cache.Wait()
		first, extra := b.inFlight()
		for _, e := range first {
			if cerr := s.confirm(e); cerr != nil && err == nil {
				err = cerr
			}
		}
		for _, e := range extra {
			if cerr := s.confirm(e); cerr != nil && err == nil {
				err = cerr
			}
		}
		clear(b.pend[:])
		clear(b.extra)
		b.extra = b.extra[:0]
		b.npend = 0
		b.pidx = nil
	}
	for w := range b.moving {
		for m := b.moving[w]; m != 0; m &= m - 1 {
			s.stripes[w*64+bits.TrailingZeros64(m)].seq.Add(1)
		}
		b.moving[w] = 0
	}
	if b.nheld > 0 {
		for w := range b.held {
			for m := b.held[w]; m != 0; m &= m - 1 {
				s.stripes[w*64+bits.TrailingZeros64(m)].mu.Unlock()
			}
			b.held[w] = 0
		}
		b.nheld = 0
		b.top = -1
		b.now = s.now()
	}
	return err
}

func (b *batch) incr(key string, h uint64, delta int64, ttl time.Duration) (backend.Result, error) {
	e, err := b.lookup(key, h)
	if err != nil {
		return backend.Result{}, err
	}
	if e != nil {
		e.mu.Lock()
		if e.liveAt(b.now) {
			e.value = addClamped(e.value, delta)
			r := e.result(b.now)
			e.mu.Unlock()
			return r, nil
		}
		e.mu.Unlock()
	}
	if delta <= 0 {
		return backend.Result{}, nil
	}
	return b.create(key, h, delta, ttl)
}

// create makes key hold delta with ttl, or adds delta to it if another
// batch created it meanwhile.
//
// Under the stripe lock, any item ristretto holds under h is removed with a
// Del before the new entry is Set: an expired entry that Get still returns,
// or one past its ristretto expiration that Get hides but the map still
// holds. The Set therefore always takes ristretto's "new item" path, never
// the synchronous update path, which could race with ttl cleanup (see the
// package comment). The new item becomes visible to Get when ristretto's
// goroutine applies it; the stripe stays locked until the batch's flush has
// waited for that, so no other batch can create the key twice.
func (b *batch) create(key string, h uint64, delta int64, ttl time.Duration) (backend.Result, error) {
	s := b.s
	for swept := false; ; swept = true {
		e, err := b.locked(h)
		if err != nil {
			return backend.Result{}, err
		}
		if e != nil {
			if e.key != key {
				return backend.Result{}, errCollision
			}
			e.mu.Lock()
			if e.liveAt(b.now) {
				e.value = addClamped(e.value, delta)
				r := e.result(b.now)
				e.mu.Unlock()
				return r, nil
			}
			s.retire(e)
			e.mu.Unlock()
		}
		if s.reserve() {
			// Removes a stale item that Get hides too; OnExit uncounts it.
			s.cache.Del(h)
			break
		}
		if swept || !s.sweepDue(b.now) {
			return backend.Result{}, s.errFull
		}
		// Full: reclaim expired keys (without holding stripes) and try
		// again once.
		if err := b.flush(); err != nil {
			return backend.Result{}, err
		}
		s.sweep()
	}
	exp := expiry(b.now, ttl)
	e := &entry{key: key, h: h, value: delta, rexp: s.reclaimAt(exp)}
	e.exp.Store(exp) // state: stPending
	s.insert(e, e.rexp)
	b.addPending(e)
	r := backend.Result{Found: true, Value: delta, TTL: backend.NoExpiry}
	if exp != never {
		r.TTL = time.Duration(exp - b.now)
	}
	return r, nil
}

func (b *batch) exists(key string, h uint64) (backend.Result, error) {
	e, err := b.lookup(key, h)
	if e == nil || err != nil {
		return backend.Result{}, err
	}
	var r backend.Result
	e.mu.Lock()
	if e.liveAt(b.now) {
		r = e.result(b.now)
	}
	e.mu.Unlock()
	return r, nil
}

// expire sets the TTL of a live key. Shortening it, or lengthening it
// within the entry's ristretto expiration, only changes the entry. Beyond
// that the entry is re-inserted under its stripe lock: Del, then Set as a
// new item, with the stripe's seq odd until the flush has confirmed it, so
// that readers who miss it meanwhile wait for the stripe. The entry keeps
// its identity, so holders of the pointer keep working on it; OnExit
// ignores it while it is stMoving.
func (b *batch) expire(key string, h uint64, ttl time.Duration) (backend.Result, error) {
	e, err := b.lookup(key, h)
	if e == nil || err != nil {
		return backend.Result{}, err
	}
	e.mu.Lock()
	if !e.liveAt(b.now) {
		e.mu.Unlock()
		return backend.Result{}, nil
	}
	if exp := expiry(b.now, ttl); !b.s.needsReinsert(exp, e.rexp) {
		e.exp.Store(exp)
		r := e.result(b.now)
		e.mu.Unlock()
		return r, nil
	}
	e.mu.Unlock()

	if e, err = b.locked(h); e == nil || err != nil || e.key != key {
		return backend.Result{}, err
	}
	e.mu.Lock()
	if !e.liveAt(b.now) {
		e.mu.Unlock()
		return backend.Result{}, nil
	}
	exp := expiry(b.now, ttl)
	if !b.s.needsReinsert(exp, e.rexp) {
		e.exp.Store(exp)
		r := e.result(b.now)
		e.mu.Unlock()
		return r, nil
	}
	// Under the stripe lock no other batch has e pending or moving, and
	// ours was flushed: e is stLive unless ttl cleanup just removed it,
	// which it does only to expired entries.
	if !e.state.CompareAndSwap(stLive, stMoving) {
		e.mu.Unlock()
		return backend.Result{}, nil
	}
	rexp := b.s.reclaimAt(exp)
	e.exp.Store(exp)
	e.rexp = rexp
	r := e.result(b.now)
	e.mu.Unlock()
	b.markMoving(stripeOf(h))
	b.s.cache.Del(h)
	b.s.insert(e, rexp)
	b.addPending(e)
	return r, nil
}

func (b *batch) del(key string, h uint64) (backend.Result, error) {
	e, err := b.lookup(key, h)
	if e == nil || err != nil {
		return backend.Result{}, err
	}
	if e, err = b.locked(h); e == nil || err != nil || e.key != key {
		return backend.Result{}, err
	}
	e.mu.Lock()
	found := e.liveAt(b.now)
	b.s.retire(e)
	e.mu.Unlock()
	b.s.cache.Del(h)
	return backend.Result{Found: found}, nil
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
