package memory

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/go-lockout/lockout/backend"
)

// Defaults for the zero fields of [Options].
const (
	// DefaultMaxKeys is the default cap on the keys a Store holds.
	DefaultMaxKeys = 1 << 20
	// DefaultReclaimDelay is the default Options.ReclaimDelay: one of
	// ristretto's five-second expiry buckets.
	DefaultReclaimDelay = 5 * time.Second
)

// Options configures a [Store]. A nil *Options means all defaults, and so
// does the zero value of each field.
type Options struct {
	// MaxKeys is the hard cap on the keys the store holds. Creating a key
	// beyond it fails the call with an error wrapping [backend.ErrFull];
	// existing keys keep working. An expired key counts until it is
	// reclaimed (see the package documentation). Default: DefaultMaxKeys
	// (1<<20).
	MaxKeys int

	// ReclaimDelay is how long after its expiry a key's memory may be
	// reclaimed by ristretto's cleanup, which then takes up to another 7.5 s
	// (its 5 s buckets and 2.5 s ticker). It is also the slack that lets
	// Expire lengthen a key's TTL without re-inserting it into ristretto:
	// a key whose expiry keeps moving forward (a sliding window) is
	// re-inserted at most once per ReclaimDelay. Expiry itself is exact
	// whatever the value. Default: DefaultReclaimDelay (5 s).
	ReclaimDelay time.Duration
}

// Why ristretto never loses a live key here.
//
// Ristretto (v2.4.2) can drop or remove an item in these ways: admission
// rejection and eviction (policy.go, defaultPolicy.Add), a full set buffer
// (cache.go, SetWithTTL returns false), ttl cleanup (ttl.go,
// expirationMap.cleanup), Del, and Clear. The store keeps four invariants:
//
//  1. Every item has cost 0 with IgnoreInternalCost, and MaxCost is
//     math.MaxInt64: Add always finds room, so it never evicts, and it
//     rejects only a hash its policy already tracks, which (2) rules out.
//  2. Every Set and Del of hash h happens under h's stripe lock; a Set
//     always follows a Del of h, so it takes the asynchronous new-item path,
//     never the synchronous update path; and the stripe is released only
//     after a Wait has applied the Set and a Get has confirmed it. Set
//     returning false is retried after a Wait.
//  3. An entry's ristretto expiration is never earlier than its own expiry:
//     it is set to expiry+ReclaimDelay (computed before ristretto reads its
//     own, later, clock), an Expire that moves the expiry past it re-inserts
//     the entry first, and shortening leaves it alone.
//  4. Cleanup runs on the goroutine that applies new items (processItems),
//     so no item is inserted while it runs, and the update path is never
//     used, so no item is replaced while it runs.
//
// Cleanup reads an item's expiration, checks it has passed, and deletes
// whatever item is stored under the hash, in separate steps. By (4) the item
// it deletes is the one whose expiration it read (or none, if a Del got
// there first), and by (3) that item's entry had expired. That is the race
// a SetWithTTL of a stored key would open (an update between the read and
// the delete would be deleted), and why (2) never updates: not even an
// expired item that Get hides but the map still holds, which the Del before
// every Set removes.
//
// OnExit (exited) receives every value that leaves, including the one an
// update would replace; it uncounts only live entries the store did not
// retire itself, so the count behind MaxKeys stays exact. Close excludes
// every other call (closeMu), since Cache.Close closes channels that Set,
// Del, Wait and Get send on.

// never is the expiry of a key that does not expire, in nanoseconds since
// the store's epoch.
const never = math.MaxInt64

// sweepEvery is the least time between two sweeps of a full store.
const sweepEvery = time.Second

// Entry states. An entry is counted against MaxKeys in every state but
// stGone.
const (
	stPending int32 = iota // set into ristretto by a batch that has not yet confirmed it
	stLive                 // stored in ristretto
	stMoving               // being re-inserted with a later ristretto expiration
	stGone                 // removed (deleted, reclaimed, or the store closed); never revived
)

// entry is the value stored in ristretto for one key. Its own expiry is the
// truth; ristretto's expiration for it is only ever later (see reclaimAt).
type entry struct {
	mu    sync.Mutex
	value int64 // guarded by mu
	// rexp is a lower bound of ristretto's expiration for this entry
	// (never: none). Written under both the stripe lock and mu; read
	// under either.
	rexp int64
	// exp is the entry's own expiry in nanoseconds since the store's epoch
	// (never: no expiry). Written under mu, read anywhere.
	exp   atomic.Int64
	state atomic.Int32
	h     uint64 // hash of key: ristretto's key
	key   string // immutable
}

// liveAt reports whether e exists at now. Callers that act on the answer
// hold e.mu.
func (e *entry) liveAt(now int64) bool {
	return now < e.exp.Load() && e.state.Load() != stGone
}

// result describes e at now. The caller holds e.mu and has checked liveAt.
func (e *entry) result(now int64) backend.Result {
	r := backend.Result{Found: true, Value: e.value, TTL: backend.NoExpiry}
	if exp := e.exp.Load(); exp != never {
		r.TTL = time.Duration(exp - now)
	}
	return r
}

// numStripes is the number of creation locks. Keys map to stripes by hash.
const (
	stripeBits = 8
	numStripes = 1 << stripeBits
)

func stripeOf(h uint64) int { return int(h >> (64 - stripeBits)) }

// stripe serialises the ristretto writes (Set, Del) for the keys that hash
// to it. seq is odd while a batch holding the stripe has re-inserts in
// flight on it, and changes with each such batch: readers that miss in
// ristretto check it to tell "missing" from "in flight" without the lock.
type stripe struct {
	mu  sync.Mutex
	seq atomic.Uint64
	_   [48]byte // keep stripes on separate cache lines
}

// Store is an in-process [backend.Backend] and [backend.Lister] built on a
// ristretto cache. Its methods are safe for concurrent use.
type Store struct {
	cache   *ristretto.Cache[uint64, *entry]
	seed    maphash.Seed
	epoch   time.Time
	maxKeys int64
	reclaim int64 // ReclaimDelay in nanoseconds
	errFull error

	// keys counts entries not stGone: the figure MaxKeys caps.
	keys atomic.Int64

	stripes [numStripes]stripe

	// closeMu is held shared by every call into the cache and exclusively
	// by Close: ristretto's Close must not run concurrently with anything.
	closeMu sync.RWMutex
	closed  atomic.Bool

	sweepMu   sync.Mutex
	lastSweep atomic.Int64 // nanoseconds since epoch of the last sweep

	// hashFn replaces maphash in tests that need collisions.
	hashFn func(string) uint64
}

var (
	_ backend.Backend = (*Store)(nil)
	_ backend.Lister  = (*Store)(nil)
)

var errClosed = fmt.Errorf("memory: %w", backend.ErrClosed)

// errCollision is returned when a new key's 64-bit hash equals a stored
// key's: ristretto can hold only one of them.
var errCollision = errors.New("memory: cannot create key: its 64-bit hash equals a stored key's")

// New returns an empty store configured by opts (nil: defaults). It starts
// ristretto's two goroutines, which Close stops.
func New(opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	switch {
	case o.MaxKeys < 0:
		return nil, fmt.Errorf("memory: negative MaxKeys %d", o.MaxKeys)
	case o.MaxKeys == 0:
		o.MaxKeys = DefaultMaxKeys
	}
	switch {
	case o.ReclaimDelay < 0:
		return nil, fmt.Errorf("memory: negative ReclaimDelay %v", o.ReclaimDelay)
	case o.ReclaimDelay == 0:
		o.ReclaimDelay = DefaultReclaimDelay
	}
	s := &Store{
		seed:    maphash.MakeSeed(),
		epoch:   time.Now(),
		maxKeys: int64(o.MaxKeys),
		reclaim: int64(o.ReclaimDelay),
		errFull: fmt.Errorf("memory: %w: %d keys held (MaxKeys)", backend.ErrFull, o.MaxKeys),
	}
	s.lastSweep.Store(-int64(sweepEvery))
	cache, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		// The admission sketch is never consulted (see MaxCost): keep it
		// small.
		NumCounters: 1 << 10,
		// Every Set has cost 0 and IgnoreInternalCost leaves it 0, so the
		// policy's roomLeft is MaxCost-0 >= 0: every new item is admitted
		// and nothing is ever evicted (policy.go, defaultPolicy.Add).
		MaxCost:            math.MaxInt64,
		IgnoreInternalCost: true,
		BufferItems:        64,
		// Keys are our 64-bit hashes; with a conflict hash of 0 ristretto
		// skips its own conflict checks, and entries carry their key.
		KeyToHash: func(h uint64) (uint64, uint64) { return h, 0 },
		OnExit:    s.exited,
		// The cleanup ticker fires every TtlTickerDurationInSec/2 seconds;
		// a time.Ticker, so it follows testing/synctest's fake clock.
		TtlTickerDurationInSec: 5,
	})
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	s.cache = cache
	return s, nil
}

// now returns the time in nanoseconds since the store's epoch, on the
// monotonic clock (or the fake clock of a testing/synctest bubble).
func (s *Store) now() int64 { return int64(time.Since(s.epoch)) }

func (s *Store) hash(key string) uint64 {
	if s.hashFn != nil {
		return s.hashFn(key)
	}
	return maphash.String(s.seed, key)
}

// expiry returns the expiry of a key given ttl at now.
func expiry(now int64, ttl time.Duration) int64 {
	if ttl == backend.NoExpiry {
		return never
	}
	if int64(ttl) >= never-1-now {
		return never - 1 // finite, some 292 years away
	}
	return now + int64(ttl)
}

// reclaimAt returns the ristretto expiration to give an entry expiring at
// exp: ReclaimDelay later, or never.
func (s *Store) reclaimAt(exp int64) int64 {
	if exp >= never-s.reclaim {
		return never
	}
	return exp + s.reclaim
}

// needsReinsert reports whether an entry whose ristretto expiration is rexp
// must be re-inserted for its own expiry to become exp: when ristretto would
// otherwise reclaim it early, or never reclaim it at all.
func (s *Store) needsReinsert(exp, rexp int64) bool {
	return exp > rexp || (rexp == never && s.reclaimAt(exp) != never)
}

// ristrettoTTL converts rexp into the TTL argument of SetWithTTL at now.
// Ristretto adds it to its own, later, time.Now, so the item's expiration
// is at least rexp.
func ristrettoTTL(rexp, now int64) time.Duration {
	if rexp == never {
		return 0 // no expiration
	}
	return time.Duration(max(rexp-now, 1))
}

// insert sets e into ristretto as a new item. The caller holds e's stripe
// lock and has removed any item stored under e.h, so that the Set takes the
// asynchronous "new item" path (see the package comment on why the update
// path is never used). Set returns false only when ristretto's set buffer
// is full (the store cannot be closed meanwhile): Wait drains it, and the
// Set is tried again.
func (s *Store) insert(e *entry, rexp int64) {
	for !s.cache.SetWithTTL(e.h, e, 0, ristrettoTTL(rexp, s.now())) {
		s.cache.Wait()
	}
}

// confirm checks that ristretto now holds e, after a Wait, and marks it
// live. A new item is dropped only if ristretto rejects it, which its
// policy does only for a key it already tracks: that cannot happen for an
// item set under its stripe lock after a Del, but e is set again, twice at
// most, before confirm gives up, uncounts e and reports the loss.
func (s *Store) confirm(e *entry) error {
	for attempt := 0; ; attempt++ {
		v, ok := s.cache.Get(e.h)
		if ok && v == e {
			if !e.state.CompareAndSwap(stPending, stLive) {
				e.state.CompareAndSwap(stMoving, stLive)
			}
			return nil
		}
		if ok || attempt == 2 {
			break
		}
		e.mu.Lock()
		rexp := e.rexp
		e.mu.Unlock()
		s.insert(e, rexp)
		s.cache.Wait()
	}
	if e.state.Swap(stGone) != stGone {
		s.keys.Add(-1)
	}
	return fmt.Errorf("memory: ristretto dropped the item of a key (%d bytes)", len(e.key))
}

// exited is ristretto's OnExit: called, on any goroutine, with every value
// that leaves the cache (ttl cleanup, Del, Clear, rejection; a nil entry
// when a Del found nothing). Only the removal of a live entry that the
// store did not retire itself (ttl cleanup, the Del that clears a stale
// item before a Set, Close) changes the count; pending and moving entries
// are the store's own business. It takes no lock: it runs on ristretto's
// goroutine, which store goroutines wait for while holding locks.
func (s *Store) exited(e *entry) {
	if e != nil && e.state.CompareAndSwap(stLive, stGone) {
		s.keys.Add(-1)
	}
}

// retire marks e gone and uncounts it. The caller holds e.mu and e's stripe
// lock, and removes e from ristretto next.
func (s *Store) retire(e *entry) {
	if e.state.CompareAndSwap(stLive, stGone) {
		s.keys.Add(-1)
	}
}

// reserve counts one more key, unless the store is full.
func (s *Store) reserve() bool {
	if s.keys.Add(1) > s.maxKeys {
		s.keys.Add(-1)
		return false
	}
	return true
}

// Len returns the number of keys the store holds and counts against
// MaxKeys: the live ones and the expired ones not yet reclaimed.
func (s *Store) Len() int { return int(s.keys.Load()) }

// Do applies ops in one pass and writes the outcome of ops[i] to
// results[i]; see [backend.Backend]. Operations on one key apply in batch
// order. Creating a key when the store holds MaxKeys keys fails the call
// with an error wrapping [backend.ErrFull], after the operations before it
// have been applied.
func (s *Store) Do(ctx context.Context, ops []backend.Op, results []backend.Result) error {
	if s.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	if err := backend.ValidateBatch(ops, results); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed.Load() {
		return errClosed
	}
	b := batch{s: s, now: s.now(), top: -1}
	var err error
	for i := range ops {
		if i&255 == 255 {
			if cerr := ctx.Err(); cerr != nil {
				err = fmt.Errorf("memory: %w", cerr)
				break
			}
		}
		results[i], err = b.apply(&ops[i])
		if err != nil {
			if !errors.Is(err, backend.ErrFull) && !errors.Is(err, errCollision) {
				err = fmt.Errorf("op %d: %w", i, err)
			}
			break
		}
	}
	if ferr := b.flush(); err == nil {
		err = ferr
	}
	return err
}

// Close stops ristretto's goroutines and drops every key. It waits for
// calls in progress; calls after it return an error wrapping
// [backend.ErrClosed]. Closing twice is harmless.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Load() {
		return nil
	}
	s.closed.Store(true)
	// Cache.Close closes setBuf and the policy's channel: a Set, Del, Wait
	// or even Get running concurrently would panic. closeMu excludes them.
	s.cache.Close()
	return nil
}
