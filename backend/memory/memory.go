package memory

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"strings"
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

// never is the expiry of a key that does not expire, in nanoseconds since
// the store's epoch.
const never = math.MaxInt64

// sweepEvery is the least time between two sweeps of a full store.
const sweepEvery = time.Second

// Entry states. An entry is counted against MaxKeys in every state but
// stGone. The state says where the entry is: see the package comment on
// the pending overlay.
const (
	// stPending: in its stripe's pending set. Its last Set into ristretto
	// may not be applied yet, may have been rejected, or may not have been
	// sent at all (dropped).
	stPending int32 = iota
	// stLive: stored in ristretto, which its stripe's lock holders can Get.
	stLive
	// stMoving: being re-inserted, between the Del and the Set, by a
	// batch that holds its stripe. Never seen by other lock holders.
	stMoving
	// stGone: removed (deleted, expired and reclaimed, or replaced); never
	// revived. A gone entry may still sit in a pending set, as a ghost.
	stGone
)

// entry is the value stored in ristretto for one key. Its own expiry is the
// truth; ristretto's expiration for it is only ever later (see reclaimAt).
//
// An entry takes 128 bytes, two cache lines: a lookup reads the first,
// and the second for keys longer than 32 bytes. The key is copied into it
// (into long, past keyInline bytes), so that comparing it reads no other
// memory, and the store never keeps the caller's string alive.
type entry struct {
	state atomic.Int32
	// dropped is set when the entry's last Set was not sent (ristretto's
	// set buffer was full) or was rejected by ristretto's policy: the
	// entry is pending and must be Set again.
	dropped atomic.Bool
	klen    int32 // the key's length
	// exp is the entry's own expiry in nanoseconds since the store's epoch
	// (never: no expiry). Written under the stripe lock, read anywhere.
	exp atomic.Int64
	// value, rexp and ep are guarded by the lock of the entry's stripe.
	value int64
	kin   [keyInline]byte // the key, if it is at most keyInline bytes long
	// rexp is a lower bound of ristretto's expiration for this entry
	// (never: none).
	rexp int64
	// ep numbers the entry's last Set among the store's calls that queue
	// work for ristretto's goroutine (Store.queued): once Store.applied
	// reaches it, ristretto has dealt with that Set.
	ep   uint64
	h    uint64 // ristretto's key; its top bits are the stripe
	long string // the key, if it is longer than keyInline bytes
}

// keyInline is the longest key an entry holds in itself.
const keyInline = 56

// newEntry returns a pending entry for key, with hash h.
func newEntry(key string, h uint64) *entry {
	e := &entry{h: h, klen: int32(len(key))}
	if len(key) <= keyInline {
		copy(e.kin[:], key)
	} else {
		e.long = strings.Clone(key)
	}
	return e
}

// is reports whether e is key's entry.
func (e *entry) is(key string) bool {
	if len(key) <= keyInline {
		return int(e.klen) == len(key) && string(e.kin[:len(key)]) == key
	}
	return e.long == key
}

// hasPrefix reports whether e's key begins with prefix.
func (e *entry) hasPrefix(prefix string) bool {
	if e.klen <= keyInline {
		return len(prefix) <= int(e.klen) && string(e.kin[:len(prefix)]) == prefix
	}
	return strings.HasPrefix(e.long, prefix)
}

// key returns e's key.
func (e *entry) key() string {
	if e.klen <= keyInline {
		return string(e.kin[:e.klen])
	}
	return e.long
}

// liveAt reports whether e exists at now. Callers that act on the answer
// hold e's stripe lock.
func (e *entry) liveAt(now int64) bool {
	return now < e.exp.Load() && e.state.Load() != stGone
}

// result describes e at now. The caller holds e's stripe lock and has
// checked liveAt.
func (e *entry) result(now int64) backend.Result {
	r := backend.Result{Found: true, Value: e.value, TTL: backend.NoExpiry}
	if exp := e.exp.Load(); exp != never {
		r.TTL = time.Duration(exp - now)
	}
	return r
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

	// queued and applied order ristretto's Sets against its Waits. Every
	// Set and Del the store makes is followed by queued.Add(1), and an
	// entry records the number its Set got (entry.ep). A waiter loads
	// queued, calls Wait, then raises applied to the value it loaded:
	// every call numbered up to applied was made before a Wait that has
	// returned, so ristretto has dealt with it. queued-applied bounds the
	// work ristretto's goroutine has yet to do for the store.
	queued  atomic.Uint64
	applied atomic.Uint64

	// dirty has a bit for every stripe whose pending set may be non-empty
	// (see resolver).
	dirty [numStripes / 64]atomic.Uint64
	// idle is true while the resolver waits for a kick.
	idle atomic.Bool
	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	// closeMu is held shared by every call into the cache and exclusively
	// by Close: ristretto's Close must not run concurrently with anything.
	closeMu  sync.RWMutex
	closed   atomic.Bool
	stopOnce sync.Once

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

// errCollision is returned when a new key's 64-bit hash equals a live
// stored key's: ristretto can hold only one of them.
var errCollision = errors.New("memory: cannot create key: its 64-bit hash equals a stored key's")

// New returns an empty store configured by opts (nil: defaults). It starts
// three goroutines (ristretto's two and the store's resolver), which Close
// stops.
func New(opts *Options) (*Store, error) {
	return newHooked(opts, hooks{})
}

// hooks lets tests take control of the store's asynchronous parts.
type hooks struct {
	// apply, when set, is called on ristretto's goroutine with each new
	// item it is about to apply: tests stall ristretto there.
	apply func(*entry)
	// manual leaves the resolver goroutine out: tests call round.
	manual bool
}

func newHooked(opts *Options, hk hooks) (*Store, error) {
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
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.lastSweep.Store(-int64(sweepEvery))
	cfg := &ristretto.Config[uint64, *entry]{
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
		OnReject:  rejected,
		// The cleanup ticker fires every TtlTickerDurationInSec/2 seconds;
		// a time.Ticker, so it follows testing/synctest's fake clock.
		TtlTickerDurationInSec: 5,
	}
	if hk.apply != nil {
		cfg.Cost = func(e *entry) int64 {
			hk.apply(e)
			return 0
		}
	}
	cache, err := ristretto.NewCache(cfg)
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	s.cache = cache
	if hk.manual {
		close(s.done)
	} else {
		go s.resolver()
	}
	return s, nil
}

// now returns the time in nanoseconds since the store's epoch, on the
// monotonic clock (or the fake clock of a testing/synctest bubble).
func (s *Store) now() int64 { return int64(time.Since(s.epoch)) }

func (s *Store) rawHash(key string) uint64 {
	if s.hashFn != nil {
		return s.hashFn(key)
	}
	return maphash.String(s.seed, key)
}

// hash returns key's ristretto key: a hash of the key whose top stripeBits
// are those of a hash of its hash tag (backend.HashTag), so that the keys
// of one tag share a stripe, and keys that share a ristretto key share a
// stripe too.
func (s *Store) hash(key string) uint64 {
	var th tagHasher
	return th.hash(s, key)
}

// tagHasher computes ristretto keys (Store.hash), remembering the last
// hash tag it hashed: the keys of one rule key come in a row in a batch.
type tagHasher struct {
	tag string // "" at first: a hash tag is never empty
	th  uint64
}

func (t *tagHasher) hash(s *Store, key string) uint64 {
	h := s.rawHash(key)
	if tag := backend.HashTag(key); len(tag) != len(key) {
		if tag != t.tag {
			t.tag, t.th = tag, s.rawHash(tag)
		}
		const low = 1<<(64-stripeBits) - 1
		h = h&low | t.th&^low
	}
	return h
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

// exited is ristretto's OnExit: called, on any goroutine, with every value
// that leaves the cache (ttl cleanup, Del, Clear, rejection; a nil entry
// when a Del found nothing). It takes no lock: it runs on ristretto's
// goroutine, which store goroutines wait for while holding locks.
//
// The store never has ristretto evict, and retires (stGone) the entries it
// removes itself before it calls Del, except an entry it re-inserts, which
// is stMoving meanwhile. A rejected entry is marked dropped by OnReject
// just before. What is left removes only entries past their own expiry:
// ttl cleanup (stored or still pending entries), and the Del a batch makes
// before it Sets a hash whose expired entry ristretto hides from Get.
// exited retires them.
func (s *Store) exited(e *entry) {
	if e == nil || e.dropped.Load() {
		return
	}
	if e.state.CompareAndSwap(stLive, stGone) || e.state.CompareAndSwap(stPending, stGone) {
		s.keys.Add(-1)
	}
}

// rejected is ristretto's OnReject, called on its goroutine before OnExit
// when its policy turns a new item away: the entry stays pending, and is
// Set again once the store has seen that (see Store.resolve).
func rejected(item *ristretto.Item[*entry]) {
	if item.Value != nil {
		item.Value.dropped.Store(true)
	}
}

// retire marks e gone and uncounts it, once. The caller holds e's stripe
// lock, and removes e from ristretto (Del) or has seen it leave.
func (s *Store) retire(e *entry) {
	if e.state.Swap(stGone) != stGone {
		s.keys.Add(-1)
	}
}

// reserve counts one more key, unless the store is full.
func (s *Store) reserve() bool {
	for {
		n := s.keys.Load()
		if n >= s.maxKeys {
			return false
		}
		if s.keys.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Len returns the number of keys the store holds and counts against
// MaxKeys: the live ones and the expired ones not yet reclaimed.
func (s *Store) Len() int { return int(s.keys.Load()) }

// Do applies ops and writes the outcome of ops[i] to results[i]; see
// [backend.Backend]. It locks the stripes of every hash tag in ops at once,
// applies the operations in order at one instant, and unlocks: the
// operations of one hash tag apply as one atomic step. Creating a key when
// the store holds MaxKeys keys fails the call with an error wrapping
// [backend.ErrFull], after the operations before it have been applied.
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
	var small [16]uint64
	hashes := small[:0]
	if len(ops) > len(small) {
		hashes = make([]uint64, 0, len(ops))
	}
	var need stripeSet
	var th tagHasher
	for i := range ops {
		h := th.hash(s, ops[i].Key)
		hashes = append(hashes, h)
		need.add(stripeOf(h))
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed.Load() {
		return errClosed
	}
	b := batch{s: s}
	b.lock(&need)
	var err error
	for i := range ops {
		if i&255 == 255 {
			if cerr := ctx.Err(); cerr != nil {
				err = fmt.Errorf("memory: %w", cerr)
				break
			}
		}
		results[i], err = b.apply(&ops[i], hashes[i])
		if err != nil {
			if !errors.Is(err, backend.ErrFull) && !errors.Is(err, errCollision) {
				err = fmt.Errorf("op %d: %w", i, err)
			}
			break
		}
	}
	b.unlock()
	return err
}

// Close stops the store's and ristretto's goroutines and drops every key.
// It waits for calls in progress; calls after it return an error wrapping
// [backend.ErrClosed]. Closing twice is harmless.
func (s *Store) Close() error {
	// The resolver takes closeMu shared: stop it before taking it
	// exclusively.
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
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
