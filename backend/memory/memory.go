package memory

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// Defaults for the zero fields of [Options].
const (
	// DefaultMaxKeys is the default cap on the keys a Store holds.
	DefaultMaxKeys = 1 << 20
	// DefaultSweepInterval is the default Options.SweepInterval.
	DefaultSweepInterval = 5 * time.Second
	// DefaultReclaimDelay was the default of Options.ReclaimDelay.
	//
	// Deprecated: ReclaimDelay is ignored; see Options.ReclaimDelay.
	DefaultReclaimDelay = 5 * time.Second
)

// Options configures a [Store]. A nil *Options means all defaults, and so
// does the zero value of each field.
type Options struct {
	// MaxKeys is the hard cap on the live keys the store holds. Creating a
	// key beyond it fails the call with an error wrapping
	// [backend.ErrFull]; existing keys keep working, and no key is ever
	// evicted. Expired keys are reclaimed before a creation is refused.
	// Default: DefaultMaxKeys (1<<20).
	MaxKeys int

	// SweepInterval is how often the store's sweeper goroutine reclaims
	// the memory of expired keys. Expiry itself is exact whatever the
	// value: an expired key is never visible. Default:
	// DefaultSweepInterval (5 s).
	SweepInterval time.Duration

	// JournalRetention is how long the journal (backend.Journal) keeps a
	// record: the sweeper removes it within SweepInterval after that.
	// Default: DefaultJournalRetention (24 h).
	JournalRetention time.Duration
	// JournalMax is the most records each journal keeps: appending more
	// drops the oldest. Default: DefaultJournalMax (100,000).
	JournalMax int
	// JournalRecordBytes bounds the bytes of string values (outcome,
	// username, IP, user agent, custom fields, ...) one journal record
	// keeps. When a record's values add up to more, the longest ones are
	// cut, all to the same length, so that short values stay whole and an
	// attacker's long user agent or username cannot multiply the
	// journal's memory: a journal holds at most about JournalMax *
	// (JournalRecordBytes + 100) bytes (custom fields' names count in
	// JournalRecordBytes, see backend.Record.Bounded). At least
	// backend.MinRecordBytes; negative: no bound. Default:
	// DefaultJournalRecordBytes (2048).
	JournalRecordBytes int

	// ReclaimDelay tuned the ristretto cache the store was once built on.
	//
	// Deprecated: ignored. The store keeps its keys in its own hash tables and
	// reclaims expired keys with a sweeper; see SweepInterval.
	ReclaimDelay time.Duration
}

// never is the expiry of a key that does not expire, in nanoseconds since
// the store's epoch.
const never = math.MaxInt64

// The store's keys are spread over numShards shards by the hash of their
// hash tag: the top shardBits bits of it.
const (
	shardBits = 8
	numShards = 1 << shardBits
)

// Store is an in-process [backend.Backend], [backend.Lister] and
// [backend.Journal]: expiring counters in sharded maps, and a bounded ring
// of records per journal. Its methods are safe for concurrent use.
type Store struct {
	shards  [numShards]shard
	seed    maphash.Seed
	epoch   time.Time
	maxKeys int64
	errFull error
	sweepIv time.Duration // Options.SweepInterval

	// keys counts the keys in the shards' tables, expired ones not yet
	// reclaimed included.
	keys atomic.Int64

	journal journals

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

var (
	_ backend.Backend = (*Store)(nil)
	_ backend.Lister  = (*Store)(nil)
)

var errClosed = fmt.Errorf("memory: %w", backend.ErrClosed)

// New returns an empty store configured by opts (nil: defaults). It starts
// one goroutine, the sweeper, which Close stops.
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
	case o.SweepInterval < 0:
		return nil, fmt.Errorf("memory: negative SweepInterval %v", o.SweepInterval)
	case o.SweepInterval == 0:
		o.SweepInterval = DefaultSweepInterval
	}
	switch {
	case o.JournalRetention < 0:
		return nil, fmt.Errorf("memory: negative JournalRetention %v", o.JournalRetention)
	case o.JournalRetention == 0:
		o.JournalRetention = DefaultJournalRetention
	}
	switch {
	case o.JournalMax < 0:
		return nil, fmt.Errorf("memory: negative JournalMax %d", o.JournalMax)
	case o.JournalMax == 0:
		o.JournalMax = DefaultJournalMax
	}
	switch {
	case o.JournalRecordBytes == 0:
		o.JournalRecordBytes = DefaultJournalRecordBytes
	case o.JournalRecordBytes > 0 && o.JournalRecordBytes < backend.MinRecordBytes:
		return nil, fmt.Errorf("memory: JournalRecordBytes %d: want at least %d, or negative for no bound", o.JournalRecordBytes, backend.MinRecordBytes)
	}
	s := &Store{
		journal: journals{byName: map[string]*ring{}, retention: int64(o.JournalRetention), max: o.JournalMax, bytes: o.JournalRecordBytes},
		seed:    maphash.MakeSeed(),
		epoch:   time.Now(),
		maxKeys: int64(o.MaxKeys),
		sweepIv: o.SweepInterval,
		errFull: fmt.Errorf("memory: %w: %d keys held (MaxKeys)", backend.ErrFull, o.MaxKeys),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].init(s.seed)
	}
	go s.sweeper()
	return s, nil
}

// now returns the time in nanoseconds since the store's epoch, on the
// monotonic clock (or the fake clock of a testing/synctest bubble).
func (s *Store) now() int64 { return int64(time.Since(s.epoch)) }

// placer finds the places of keys. A key's shard comes from the hash of
// its hash tag, which the placer remembers from one key to the next: the
// keys of one tag come in a row in a batch. Its home comes from its own
// hash (keyHash).
type placer struct {
	s       *Store
	tag     string // "" at first: a hash tag is never empty
	tagHash uint64
}

// place returns the place of key, its cell unknown (-1).
func (pl *placer) place(key string) place {
	if t := backend.HashTag(key); t != pl.tag || t == "" {
		pl.tag, pl.tagHash = t, maphash.String(pl.s.seed, t)
	}
	return place{
		hash:  keyHash(pl.s.seed, key),
		cell:  -1,
		shard: uint8(pl.tagHash >> (64 - shardBits)),
	}
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

// reserve counts n more keys, unless the store cannot hold them.
func (s *Store) reserve(n int64) bool {
	for {
		held := s.keys.Load()
		if held+n > s.maxKeys {
			return false
		}
		if s.keys.CompareAndSwap(held, held+n) {
			return true
		}
	}
}

// Len returns the number of keys the store holds: the live ones, and the
// expired ones whose memory is not reclaimed yet.
func (s *Store) Len() int { return int(s.keys.Load()) }

// Nonblocking reports true: Do only takes the locks of its shards for the
// length of a few table operations, and never waits for I/O. The lockout
// engine calls it without a deadline of its own (backend.Nonblocking).
func (s *Store) Nonblocking() bool { return true }

// GuardsExpiry implements backend.ExpiryGuard: Result.Expires is a key's
// expiry on the store's monotonic clock, and a conditional decrement is
// checked under the key's shard lock.
func (s *Store) GuardsExpiry() bool { return true }

// shardSet is a set of shard indexes.
type shardSet [numShards / 64]uint64

func (m *shardSet) add(i uint8)    { m[i>>6] |= 1 << (i & 63) }
func (m *shardSet) has(i int) bool { return m[i>>6]&(1<<(i&63)) != 0 }

// Do applies ops and writes the outcome of ops[i] to results[i]; see
// [backend.Backend]. It locks the shards of every hash tag in ops at once,
// applies the operations in order at one instant, and unlocks: the
// operations of one hash tag apply as one atomic step. A call that would
// create more keys than the store has room for, MaxKeys live keys in all,
// fails with an error wrapping [backend.ErrFull] before it applies any
// operation: a refused attempt counts on none of its keys. The room of a
// key the call removes stays the call's until it returns, so that a key
// it deletes and creates again always finds room.
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
	var small [16]place
	places := small[:0]
	if len(ops) > len(small) {
		places = make([]place, 0, len(ops))
	}
	b := batch{s: s}
	pl := placer{s: s}
	for i := range ops {
		p := pl.place(ops[i].Key)
		places = append(places, p)
		b.held.add(p.shard)
	}
	b.lock()
	defer b.unlock()
	if s.closed.Load() {
		return errClosed
	}
	// Find every key before applying any operation: each lookup is likely
	// a cache miss or two (the key's cell, then its name), and in this
	// short loop the processor has the misses of several keys in flight
	// at once, where between two operations it would wait for each.
	for i := range places {
		p := &places[i]
		p.cell = s.shards[p.shard].find(p.hash, ops[i].Key)
	}
	defer b.release()
	if err := b.reserveCreations(ops, places); err != nil {
		return err
	}
	for i := range ops {
		if i&255 == 255 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("memory: %w", err)
			}
		}
		p := &places[i]
		r, err := b.apply(&ops[i], &s.shards[p.shard], p)
		if err != nil {
			return err
		}
		results[i] = r
	}
	return nil
}

// Close stops the sweeper and drops every key. Calls in progress finish
// first; calls after it return an error wrapping [backend.ErrClosed].
// Closing twice is harmless.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		<-s.done
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
			s.keys.Add(-int64(sh.len()))
			sh.drop()
			sh.mu.Unlock()
		}
		s.journal.mu.Lock()
		s.journal.byName = nil
		s.journal.mu.Unlock()
	})
	return nil
}

// sweeper reclaims expired keys every SweepInterval until Close.
func (s *Store) sweeper() {
	defer close(s.done)
	t := time.NewTicker(s.sweepIv)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
			s.sweepJournals()
		}
	}
}

// sweep reclaims the expired keys of every shard, one shard at a time,
// skipping the shards where nothing can have expired.
func (s *Store) sweep() {
	now := s.now()
	for i := range s.shards {
		sh := &s.shards[i]
		if sh.minExp.Load() > now {
			continue
		}
		if s.closed.Load() {
			return
		}
		sh.mu.Lock()
		// Counted before the unlock: whoever finds the keys gone finds
		// them uncounted too (Len).
		s.keys.Add(-int64(sh.sweep(now)))
		sh.mu.Unlock()
	}
}
