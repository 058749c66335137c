package lockout

import (
	"hash/maphash"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/go-lockout/lockout/backend"
)

// lockCache remembers locks the policy has seen, so that a refusal for one
// costs no backend call and holds while the store is down. It is built on
// ristretto, a cache that admits by frequency and evicts: right here, since
// the store stays the truth (an evicted or dropped entry only costs a
// round trip), and under attack the hottest keys are the targets. It never
// remembers "not locked".
//
// In front of it sits a filter: slot h(part) of ends holds the latest end
// of the locks remembered on the keys whose part after the kind hashes to
// it, so that a rule key's counter and lock marker share a slot. A key
// whose slot has ended cannot be in the cache, and is not looked up: most decisions
// are on keys with no lock, and a ristretto lookup (two hashes, a shard
// lock, a probe, a frequency count) costs about ten times the slot's. The
// filter never says "no" for a remembered lock; a forgotten one leaves its
// slot up until it would have ended, which costs only a lookup.
//
// With four slots per lock the cache holds, a full cache leaves about a
// fifth of the slots up; a lock that never ends keeps its slot up for good,
// which costs the keys that share it a lookup, as before the filter.
//
// The cache is made on the first lock remembered, so that a policy that
// never sees one runs no goroutines. Its methods but slot, inUse and close
// are called with Policy.mu held for reading, or, for the lookups of
// Attempt.remembered while the store is healthy, counted in
// Policy.readers (cacheReaders): either keeps them clear of close, which
// Policy.Close calls once neither can be under way.
type lockCache struct {
	once sync.Once
	c    *ristretto.Cache[string, cachedLock]
	// hist remembers lockout counts (lockoutCount), apart from the locks
	// so that they take none of their room; made on the first lockout.
	histOnce sync.Once
	hist     atomic.Pointer[ristretto.Cache[string, lockoutHistory]]
	used     atomic.Bool // a lock was remembered: lookups are worth making
	ttl      time.Duration
	seed     maphash.Seed
	ends     []atomic.Int64 // the filter; a power of two long
}

// cacheReaders counts the lookups of the lock cache made without
// Policy.mu (Attempt.remembered's, while the store is healthy), in
// several counts, each picked by the reader's processor (procTokens, as
// the journal's queue picks its shards), so that a count stays in one
// core's cache. A refusal
// from the cache is all an attacker's flood of guesses at a locked
// account costs, and Policy.mu's count of readers is one word that every
// core would write at each of them. Close waits until no count is up
// before it closes the cache; a lookup that starts after Close set
// Policy.closed sees it, and touches nothing. New calls init; a Policy
// made otherwise must call it before its cache can be used.
type cacheReaders struct {
	counts []readerCount
	tokens procTokens // pick a count
}

// readerCount is a count of cacheReaders, alone on its cache lines.
type readerCount struct {
	n atomic.Int64
	_ [120]byte
}

// init makes n counts.
func (r *cacheReaders) init(n int) {
	r.counts = make([]readerCount, n)
	r.tokens.init(n)
}

// enter counts a reader in, and returns the count to leave with. Two
// readers may share a count: it is atomic.
func (r *cacheReaders) enter() *atomic.Int64 {
	c := &r.counts[r.tokens.pick()].n
	c.Add(1)
	return c
}

// leave counts out the reader that entered with c.
func (r *cacheReaders) leave(c *atomic.Int64) { c.Add(-1) }

// wait returns when no reader is in. Readers that enter after the caller
// set Policy.closed see it and touch nothing: wait does not wait for them.
func (r *cacheReaders) wait() {
	for i := range r.counts {
		for r.counts[i].n.Load() != 0 {
			time.Sleep(10 * time.Microsecond) // a lookup takes about 1 µs
		}
	}
}

// testHookCacheLookup, when set by a test, runs in Attempt.remembered
// right before it looks in the cache.
var testHookCacheLookup func()

// cachedLock is a remembered lock, in Policy.now() time.
type cachedLock struct {
	until   int64 // when the lock ends; math.MaxInt64 for one that never does
	learned int64 // when the policy saw it
}

// lockoutHistory is a rule key's lockout count as the policy last learned
// it (lockoutCount), until it ends (Policy.now() time; math.MaxInt64:
// never). When made in the fallback of the degraded period epoch, base of
// the count were the store's before it.
type lockoutHistory struct {
	until, count, base int64
	epoch              uint64
	fallback           bool
}

// inUse reports whether any lock was ever remembered.
func (c *lockCache) inUse() bool { return c.used.Load() }

// slot returns the filter's slot for the keys whose part after the kind
// is part (Policy.filterPart). It needs no lock: the filter is never
// freed. The caller has seen inUse.
func (c *lockCache) slot(part string) *atomic.Int64 {
	return &c.ends[maphash.String(c.seed, part)&uint64(len(c.ends)-1)]
}

// get returns how long the lock on key lasts (backend.NoExpiry: until
// unlocked), if it is remembered and fresh: seen within the cache's TTL,
// or at any time when staleOK (the store is failing, so an unlock could
// not have reached it anyway). It does not ask the filter.
func (c *lockCache) get(key string, now int64, staleOK bool) (time.Duration, bool) {
	if c.c == nil {
		return 0, false
	}
	v, ok := c.c.Get(key)
	if !ok || now >= v.until || (!staleOK && now-v.learned >= int64(c.ttl)) {
		return 0, false
	}
	if v.until == math.MaxInt64 {
		return backend.NoExpiry, true
	}
	return time.Duration(v.until - now), true
}

// close releases the cache. It must not run concurrently with the others.
func (c *lockCache) close() {
	if c.c != nil {
		c.c.Close()
	}
	if h := c.hist.Load(); h != nil {
		h.Close()
	}
}

// remember records that key is locked for ttl (backend.NoExpiry: until
// unlocked) from now. With wait, the entry is visible when it returns.
func (p *Policy) remember(key string, ttl time.Duration, wait bool) {
	if p.cacheTTL == NoLockCache || (ttl <= 0 && ttl != backend.NoExpiry) {
		return
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return
	}
	c := &p.cache
	if !p.initCache() {
		return
	}
	now := p.now()
	v := cachedLock{until: math.MaxInt64, learned: now}
	rttl := time.Duration(0) // ristretto: no expiry
	if ttl != backend.NoExpiry {
		v.until, rttl = now+int64(ttl), ttl
	}
	// The slot goes up first: a lookup that finds the entry finds it up.
	for end := c.slot(p.filterPart(key)); ; {
		if old := end.Load(); old >= v.until || end.CompareAndSwap(old, v.until) {
			break
		}
	}
	// ristretto applies sets in the background, within microseconds: an
	// attempt on the key in between asks the store, which is right, only
	// slower. Waiting costs a round trip to ristretto's goroutine, so only
	// the rare events wait: a lockout, a last slot taken (a later forget
	// must come after the set).
	if c.c.SetWithTTL(key, v, 1, rttl) && wait {
		c.c.Wait()
	}
	c.used.Store(true)
}

// newCache returns a cache of size entries, keyed by string. Its
// goroutines are made without the caller's profiler labels.
func newCache[V any](size int) (cache *ristretto.Cache[string, V], err error) {
	unlabeled(func() {
		cache, err = ristretto.NewCache(&ristretto.Config[string, V]{
			NumCounters:        10 * int64(size),
			MaxCost:            int64(size),
			BufferItems:        64,
			IgnoreInternalCost: true,
		})
	})
	return cache, err
}

// initCache makes the cache on its first use, and reports whether it is
// there. The caller holds p.mu for reading.
func (p *Policy) initCache() bool {
	c := &p.cache
	c.once.Do(func() {
		cache, err := newCache[cachedLock](p.cacheSize)
		if err == nil { // the sizes are checked by New
			c.c, c.ttl = cache, p.cacheTTL
			// Four slots per lock the cache can hold, within
			// 8 KiB and 2 MiB.
			n := 1 << min(max(bits.Len(uint(p.cacheSize-1))+2, 10), 18)
			c.seed, c.ends = maphash.MakeSeed(), make([]atomic.Int64, n)
		}
	})
	return c.c != nil
}

// lockoutCount returns the number of the lockout whose first call found
// the key's history, hkey, at count, in the store or (at) in the
// fallback, and remembers it for the history window. A fallback starts
// empty at each outage, and knows nothing of the lockouts the store
// counted before: the count the policy last learned is added to it, so
// that lockouts keep escalating through outages (an attacker who can make
// the store fail must not get a fresh start of the schedule at each
// outage). What the fallback counted is written back to the store when it
// recovers, which then holds the sum too. It is remembered for
// window(count), which window is called with once, whatever happens. With
// wait (a lockout, rare), the count is visible when it returns.
func (p *Policy) lockoutCount(hkey string, count int64, at route, window func(int64) time.Duration, wait bool) int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	hist := p.countsCache()
	now := p.now()
	v := lockoutHistory{count: count}
	if at.fallback && hist != nil {
		if old, ok := hist.Get(hkey); ok && now < old.until {
			v.base = old.count
			if old.fallback && old.epoch == at.epoch {
				v.base = old.base // count includes this period's
			}
		}
		v.count, v.epoch, v.fallback = v.base+count, at.epoch, true
	}
	w := window(v.count)
	if hist == nil {
		return v.count
	}
	v.until = math.MaxInt64
	if w > 0 {
		v.until = now + int64(w)
	} else {
		w = 0 // no TTL
	}
	if hist.SetWithTTL(hkey, v, 1, w) && wait {
		hist.Wait()
	}
	return v.count
}

// countsCache returns the cache of lockout counts, made on its first use;
// nil when the policy caches no locks (NoLockCache) or is closed. The
// caller holds p.mu for reading.
func (p *Policy) countsCache() *ristretto.Cache[string, lockoutHistory] {
	if p.cacheTTL == NoLockCache || p.closed.Load() {
		return nil
	}
	c := &p.cache
	c.histOnce.Do(func() {
		if h, err := newCache[lockoutHistory](p.cacheSize); err == nil { // the sizes are checked by New
			c.hist.Store(h)
		}
	})
	return c.hist.Load()
}

// filterPart returns what the lock cache's filter hashes of key: the part
// after its kind, the same in a rule key's counter, lock marker and
// history (prefix ":" kind ":" rule ":{" subject "}", appendKey).
func (p *Policy) filterPart(key string) string {
	if n := len(p.prefix) + 2; len(key) > n {
		return key[n:]
	}
	return key
}

// mayRemember reports whether the cache may remember something of the
// rule key whose lock marker is lockKey (its lock, or its counter full):
// whether the filter's slot for it is up.
func (p *Policy) mayRemember(lockKey string) bool {
	return p.cache.inUse() && p.cache.slot(p.filterPart(lockKey)).Load() > p.now()
}

// forget drops the remembered locks on keys, and the lockout counts
// remembered under them (history keys), after an unlock or a reset
// through this policy.
func (p *Policy) forget(keys ...string) {
	if !p.cache.inUse() {
		return
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return
	}
	for _, k := range keys {
		if p.cache.c != nil {
			p.cache.c.Del(k)
		}
		if h := p.cache.hist.Load(); h != nil {
			h.Del(k)
		}
	}
}

// forgetCounts drops every lockout count remembered, after a reset of
// everything.
func (p *Policy) forgetCounts() {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if h := p.cache.hist.Load(); h != nil && !p.closed.Load() {
		h.Clear()
	}
}
