package memcache

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gm "github.com/bradfitz/gomemcache/memcache"

	"github.com/go-lockout/lockout/backend"
)

// Defaults of the client NewServers builds.
const (
	// DefaultMaxIdleConns is the number of idle connections kept per
	// server. gomemcache's own default, 2, makes a busy application dial
	// and close a connection for most requests: every request takes a
	// connection of its own for its round trip, and a decision sends
	// several at once.
	DefaultMaxIdleConns = 64

	// DefaultTimeout bounds dialling a server and each read or write on a
	// connection (gomemcache's default too). It is also how long a request
	// abandoned by a done context may still run in the background.
	DefaultTimeout = 500 * time.Millisecond
)

// Options configure a Store. The zero value (or a nil *Options) gives the
// defaults.
type Options struct {
	// Prefix is written before every key in memcached, to keep the store's
	// keys apart from other data on a shared server. It must be at most 64
	// bytes, none of them a space, control byte or DEL. A '{' in it must be
	// closed by a '}' after at least one byte, in the prefix: the selector
	// places a key by its hash tag, which an unclosed '{' would run into
	// the key (keys that share a tag would land apart); a closed one puts
	// every key on one server. Default: none.
	Prefix string

	// MaxIdleConns is the number of idle connections NewServers keeps per
	// server (gomemcache's Client.MaxIdleConns). Default:
	// DefaultMaxIdleConns. New leaves the caller's client as it is.
	MaxIdleConns int

	// Timeout bounds dialling and each read or write for the client
	// NewServers builds (gomemcache's Client.Timeout). Default:
	// DefaultTimeout. New leaves the caller's client as it is.
	Timeout time.Duration

	// MaxActive bounds the requests in flight: per server for a store made
	// by NewServers, over the whole client for one made by New (which
	// cannot tell which server a key goes to). A request beyond it waits,
	// within its context, for another to finish, rather than dialling a
	// connection that the idle pool would then close. Default: MaxIdleConns
	// for NewServers; no bound for New. Negative: no bound.
	MaxActive int

	// AllowEviction skips the check a store made by NewServers makes of
	// each server before its first request (and after a broken
	// connection): that it runs with -M, which makes a full server refuse
	// writes (backend.ErrFull) instead of evicting. Without -M, memcached
	// drops the least recently used items when full, and an attacker who
	// fills it unlocks himself; a call to a server that may evict fails
	// with an error wrapping ErrEvicting. Set it only for a server known
	// not to evict, behind a proxy that does not answer "stats settings".
	// New, which cannot tell the client's servers, makes no check: run
	// them with -M.
	AllowEviction bool
}

// Store is a backend.Backend over memcached. It does not implement
// backend.Lister: memcached cannot enumerate keys. Its methods are safe for
// concurrent use.
type Store struct {
	c      *gm.Client
	lim    *limiter // nil: no bound
	prefix string
	own    bool            // Close closes c
	evict  *evictionChecks // nil: no check (New, Options.AllowEviction)
	closed atomic.Bool
	// running is read-locked by every request while it runs, and
	// write-locked by Close: Close waits for the requests in flight, and
	// no request starts after it.
	running sync.RWMutex
}

var _ backend.Backend = (*Store)(nil)

// New returns a Store over client, which the caller keeps: Close does not
// close it. Set its MaxIdleConns well above the default of 2 (see
// DefaultMaxIdleConns), and its Timeout to what a request may take. The
// store calls client.Close when a connection breaks, to drop the idle
// connections that are likely stale too; the client stays usable.
func New(client *gm.Client, opts *Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("memcache: New with a nil client")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if len(o.Prefix) > maxPrefixLen || (o.Prefix != "" && !legalKey(o.Prefix)) {
		return nil, fmt.Errorf("memcache: prefix %q: want at most %d bytes, none a space, control byte or DEL", o.Prefix, maxPrefixLen)
	}
	if i := strings.IndexByte(o.Prefix, '{'); i >= 0 && strings.IndexByte(o.Prefix[i+1:], '}') <= 0 {
		return nil, fmt.Errorf("memcache: prefix %q has a '{' that no '}' closes with a hash tag: keys that share a hash tag would land on different servers", o.Prefix)
	}
	return &Store{c: client, prefix: o.Prefix, lim: newLimiter(o.MaxActive, nil)}, nil
}

// NewServers returns a Store over a client of its own for servers
// ("host:port", or a Unix socket path), which picks the server of a key
// with a RendezvousSelector: adding or removing a server moves only the keys
// that must move. Every application instance must list the same servers
// (in any order). Close closes the client. No connection is made until the
// first call.
func NewServers(servers []string, opts *Options) (*Store, error) {
	if len(servers) == 0 {
		return nil, errors.New("memcache: NewServers with no servers")
	}
	sel := new(RendezvousSelector)
	if err := sel.SetServers(servers...); err != nil {
		return nil, err
	}
	c := gm.NewFromSelector(sel)
	c.MaxIdleConns = DefaultMaxIdleConns
	c.Timeout = DefaultTimeout
	if opts != nil {
		if opts.MaxIdleConns > 0 {
			c.MaxIdleConns = opts.MaxIdleConns
		}
		if opts.Timeout > 0 {
			c.Timeout = opts.Timeout
		}
	}
	s, err := New(c, opts)
	if err != nil {
		return nil, err
	}
	s.own = true
	if opts == nil || !opts.AllowEviction {
		s.evict = newEvictionChecks(sel, c.Timeout)
	}
	active := c.MaxIdleConns
	if opts != nil && opts.MaxActive != 0 {
		active = opts.MaxActive
	}
	s.lim = newLimiter(active, sel)
	return s, nil
}

// Close makes every later call fail with backend.ErrClosed, waits for the
// requests in flight (calls abandoned at their deadline finish in the
// background; each request is bounded by the client's Timeout) and, for a
// store made by NewServers, then closes the client's connections: none is
// left open, nor opened after. The requests that an abandoned call had not
// sent yet are not sent. Close may be called more than once.
func (s *Store) Close() error {
	s.running.Lock()
	closed := s.closed.Swap(true)
	s.running.Unlock()
	if closed || !s.own {
		return nil
	}
	if err := s.c.Close(); err != nil {
		return fmt.Errorf("memcache: close: %w", err)
	}
	return nil
}

// Do applies ops, running their requests concurrently (see the package
// documentation). When ctx is done first, Do returns an error wrapping
// ctx.Err() at once; requests already sent then finish in the background,
// each bounded by the client's Timeout, and the results are not written.
func (s *Store) Do(ctx context.Context, ops []backend.Op, results []backend.Result) error {
	if s.closed.Load() {
		return fmt.Errorf("memcache: %w", backend.ErrClosed)
	}
	if err := backend.ValidateBatch(ops, results); err != nil {
		return err
	}
	if err := checkTTLs(ops, time.Now()); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcache: %w", err)
	}
	if len(ops) == 0 {
		return nil
	}
	b := &batch{s: s, ctx: ctx, ops: ops, res: make([]backend.Result, len(ops))}
	if ctx.Done() == nil {
		b.run()
	} else {
		// The requests may outlive this call, and the caller may reuse
		// ops as soon as it returns.
		b.ops = slices.Clone(ops)
		done := make(chan struct{})
		go func() {
			b.run()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("memcache: %w (requests already sent finish in the background)", ctx.Err())
		}
	}
	if b.err != nil {
		return b.err
	}
	copy(results, b.res)
	return nil
}

// checkTTLs rejects TTLs whose logical expiry the flags cannot hold, before
// anything is applied.
func checkTTLs(ops []backend.Op, now time.Time) error {
	limit := time.Unix(math.MaxUint32-1, 0).Sub(now)
	for i, op := range ops {
		if op.TTL > limit && ((op.Kind == backend.Incr && op.Delta > 0) || op.Kind == backend.Expire) {
			return fmt.Errorf("op %d: %w: TTL %v ends after 2106, beyond what memcached flags can hold", i, backend.ErrInvalid, op.TTL)
		}
	}
	return nil
}

// batch is one call of Do. See "Batches" in the package documentation.
type batch struct {
	s   *Store
	ctx context.Context
	ops []backend.Op
	res []backend.Result

	keys []string // the memcached key of each op
	vals []uint64 // the value an increment or decrement that hit returned
	hits []bool   // whether it hit: its result waits for the read

	mu  sync.Mutex
	err error // the first error
}

// itemSet is what a read of several keys found.
type itemSet struct {
	key string   // the key, when one was read
	it  *gm.Item // its item
	m   map[string]*gm.Item
}

// get returns the item of k (nil: missing).
func (r itemSet) get(k string) *gm.Item {
	if r.m != nil {
		return r.m[k]
	}
	if k == r.key {
		return r.it
	}
	return nil
}

// read reads keys: one request per server, concurrently.
func (s *Store) read(ctx context.Context, keys []string) (itemSet, error) {
	switch len(keys) {
	case 0:
		return itemSet{}, nil
	case 1:
		it, err := s.get(ctx, keys[0])
		return itemSet{key: keys[0], it: it}, err
	}
	groups := s.lim.group(keys)
	if len(groups) == 1 {
		m, err := s.getMulti(ctx, keys)
		return itemSet{m: m}, err
	}
	// One multi-get per server, each in its server's connection slot.
	parts := make([]map[string]*gm.Item, len(groups))
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() { parts[i], errs[i] = s.getMulti(ctx, g) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return itemSet{}, err
	}
	m := parts[0]
	for _, p := range parts[1:] {
		maps.Copy(m, p)
	}
	return itemSet{m: m}, nil
}

func (b *batch) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
}

// run applies the batch in rounds (one round unless a key repeats), each
// round in three steps:
//
//  1. Writes, all at once (incr/decr; Expire and Delete: one multi-get per
//     server, then cas or delete).
//  2. One multi-get per server of the round's reads and of the counters
//     whose incr/decr hit (their TTL is in the flags).
//  3. Settling, rare: removal at zero; restart of an increment that went to
//     a dead counter, then the reads again.
func (b *batch) run() {
	b.keys = make([]string, len(b.ops))
	for i := range b.ops {
		b.keys[i] = mapKey(b.s.prefix, b.ops[i].Key)
	}
	b.vals, b.hits = make([]uint64, len(b.ops)), make([]bool, len(b.ops))
	for r, idx := range rounds(b.ops, b.keys) {
		if r > 0 {
			if b.failed() {
				return
			}
			if err := b.ctx.Err(); err != nil {
				b.fail(fmt.Errorf("memcache: %w", err))
				return
			}
		}
		b.round(idx)
	}
}

// rounds splits the ops' indices into rounds applied one after another: an
// op runs in a later round than every earlier op on its key, and a read in
// no earlier round than every earlier write of its hash tag (within a
// round, reads follow writes). A batch without a repeated key is one round.
func rounds(ops []backend.Op, keys []string) [][]int {
	all := make([]int, len(ops))
	for i := range all {
		all[i] = i
	}
	if !sharedKey(keys) {
		return [][]int{all}
	}
	lastKey := map[string]int{}  // key: round of its latest op
	tagWrite := map[string]int{} // hash tag: latest round of a write
	var out [][]int
	for i, op := range ops {
		r := 0
		if p, ok := lastKey[keys[i]]; ok {
			r = p + 1
		}
		tag := backend.HashTag(op.Key)
		if op.IsRead() {
			if w, ok := tagWrite[tag]; ok {
				r = max(r, w)
			}
		} else if w, ok := tagWrite[tag]; !ok || r > w {
			tagWrite[tag] = r
		}
		lastKey[keys[i]] = r
		for len(out) <= r {
			out = append(out, nil)
		}
		out[r] = append(out[r], i)
	}
	return out
}

// each calls f on each of idx concurrently, the last on this goroutine.
func each(idx []int, f func(int)) {
	var wg sync.WaitGroup
	for j, i := range idx {
		if j == len(idx)-1 {
			f(i)
		} else {
			wg.Go(func() { f(i) })
		}
	}
	wg.Wait()
}

// round applies the ops idx, whose keys are distinct.
func (b *batch) round(idx []int) {
	var counters, reads, others []int // increments and decrements, reads, Expire and Delete
	for _, i := range idx {
		switch op := b.ops[i]; {
		case op.IsRead():
			reads = append(reads, i)
		case op.Kind == backend.Incr:
			counters = append(counters, i)
		default:
			others = append(others, i)
		}
	}
	var rest sync.WaitGroup // Expire and Delete
	if len(others) > 0 {
		rest.Go(func() { b.expireDelete(others) })
	}
	each(counters, b.count)
	if len(reads) > 0 {
		rest.Wait()
	}
	b.readAndSettle(counters, reads)
	rest.Wait()
}

// count sends the incr or decr of op i, adding its key when an increment
// finds it missing. When it hits, the result waits for readAndSettle.
func (b *batch) count(i int) {
	op, k := b.ops[i], b.keys[i]
	var err error
	if op.Delta > 0 {
		var r backend.Result
		var done bool
		r, b.vals[i], done, err = b.s.incrStep(b.ctx, k, uint64(op.Delta), op.TTL)
		b.res[i], b.hits[i] = r, err == nil && !done
	} else {
		b.vals[i], b.hits[i], err = b.s.incrDecr(b.ctx, k, uint64(-op.Delta), false)
	}
	if err != nil {
		b.fail(err)
	}
}

// expireDelete applies the Expire and Delete ops idx: one multi-get of
// their keys per server, then their cas or delete, concurrently.
func (b *batch) expireDelete(idx []int) {
	keys := make([]string, len(idx))
	for j, i := range idx {
		keys[j] = b.keys[i]
	}
	got, err := b.s.read(b.ctx, keys)
	if err != nil {
		b.fail(err)
		return
	}
	each(idx, func(i int) {
		op, k := b.ops[i], b.keys[i]
		var r backend.Result
		var err error
		if op.Kind == backend.Expire {
			r, err = b.s.expire(b.ctx, k, op.TTL, got.get(k))
		} else {
			r, err = b.s.del(b.ctx, k, got.get(k))
		}
		if err != nil {
			b.fail(err)
		}
		b.res[i] = r
	})
}

// readAndSettle makes the batch's one read (reads are indices into ops):
// one multi-get per server of the reads' keys and of the keys of the
// increments and decrements that hit, then completes those (settle) and
// the reads.
func (b *batch) readAndSettle(counters, reads []int) {
	keys := make([]string, 0, len(reads)+len(counters))
	for _, i := range reads {
		keys = append(keys, b.keys[i])
	}
	var hit []int
	for _, i := range counters {
		if b.hits[i] {
			keys = append(keys, b.keys[i])
			hit = append(hit, i)
		}
	}
	if len(keys) == 0 || b.failed() {
		return
	}
	got, err := b.s.read(b.ctx, keys)
	if err != nil {
		b.fail(err)
		return
	}
	if b.settle(got, hit) && len(reads) > 0 {
		// An increment made more requests: the reads are made again, so
		// that they still come after every write of their hash tags.
		if b.failed() {
			return
		}
		if got, err = b.s.read(b.ctx, keys[:len(reads)]); err != nil {
			b.fail(err)
			return
		}
	}
	now := time.Now()
	for _, i := range reads {
		r, err := readResult(got.get(b.keys[i]), now)
		if err != nil {
			b.fail(err)
		}
		b.res[i] = r
	}
}

// settle completes the increments and decrements that hit, given a read
// of their keys made after them. It reports whether an increment needed
// more requests, having found its counter deleted or expired since.
func (b *batch) settle(got itemSet, hit []int) bool {
	var wg sync.WaitGroup
	more := false
	for _, i := range hit {
		op, k, it := b.ops[i], b.keys[i], got.get(b.keys[i])
		if op.Delta < 0 {
			b.res[i] = decrSettle(b.vals[i], it)
			if b.vals[i] == 0 && holdsZero(it) {
				// Brought to zero: remove the key.
				wg.Go(func() {
					if err := b.s.dropZero(b.ctx, k, it); err != nil {
						b.fail(err)
					}
				})
			}
			continue
		}
		if it != nil {
			if d, ok := remaining(it.Flags, time.Now()); ok {
				b.res[i] = found(b.vals[i], d)
				continue
			}
		}
		// Rare: the increment went to a counter deleted or expired since.
		more = true
		wg.Go(func() {
			r, err := b.s.incrSettle(b.ctx, k, uint64(op.Delta), op.TTL, b.vals[i], it)
			if err != nil {
				b.fail(err)
			}
			b.res[i] = r
		})
	}
	wg.Wait()
	return more
}

func (b *batch) failed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err != nil
}

// sharedKey reports whether two of keys are equal.
func sharedKey(keys []string) bool {
	if len(keys) <= 16 {
		for i, k := range keys {
			for _, k2 := range keys[:i] {
				if k == k2 {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			return true
		}
		seen[k] = struct{}{}
	}
	return false
}
