package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout/backend"
)

// DefaultScanCount is the COUNT hint Keys gives each SCAN when
// Options.ScanCount is zero.
const DefaultScanCount = 1000

// DefaultEvictionCheckInterval is the default Options.EvictionCheckInterval.
const DefaultEvictionCheckInterval = time.Minute

// evictionCheckTimeout bounds a check of the masters' eviction settings
// after New.
const evictionCheckTimeout = 10 * time.Second

// ErrEvicting is wrapped by the error of New, and of Do, when a master
// may evict keys (maxmemory set, with a maxmemory-policy other than
// noeviction): an evicted counter or lock marker would silently unlock an
// attacker. See Options.AllowEviction and Options.EvictionCheckInterval.
var ErrEvicting = errors.New("lockout/redis: a server may evict keys")

// Granularity is the store's TTL granularity: TTLs are rounded up to whole
// milliseconds (PX, PEXPIRE) and remaining TTLs are read with PTTL.
const Granularity = time.Millisecond

// Options configures a [Store]. The zero value (or a nil *Options) gives the
// documented defaults.
type Options struct {
	// Prefix is prepended to every key the store writes, and stripped from
	// the keys Keys yields, so that lockout state can share a Redis database
	// with other data. Keys only lists keys under it. Default: none.
	//
	// A prefix that contains a hash tag ("{lockout}:") puts every key in
	// that tag's slot of a Redis Cluster: one node holds them all. New
	// refuses a prefix with a '{' that the prefix does not close with a
	// non-empty tag: the keys that share a hash tag would no longer share a
	// slot. With a prefix, a key without a hash tag is hashed with the
	// prefix, so it no longer shares a slot with the keys whose hash tag is
	// that key's name (the lockout engine's keys all have a hash tag).
	Prefix string

	// ScanCount is the COUNT hint of each SCAN that Keys sends: how much
	// work one round trip asks of the server. Default: DefaultScanCount.
	ScanCount int

	// AllowEviction skips a check New makes on every master (with INFO
	// memory): that maxmemory is unset or maxmemory-policy is noeviction.
	// An evicted counter or lock marker silently unlocks an attacker, so New
	// refuses any other setting unless AllowEviction is true, and the store
	// checks again while in use (EvictionCheckInterval). Set it only
	// when the server reports a policy that does not apply. Default: false.
	AllowEviction bool

	// EvictionCheckInterval is how often, at most, the store checks again
	// that no master may evict keys, as New did: a server reconfigured
	// since (CONFIG SET maxmemory-policy), or a master that took over in a
	// failover with settings of its own. The check runs in the background,
	// started by a call to Do once the interval has passed since the last
	// one, so an idle store sends nothing. While the last check found a
	// master that may evict keys, Do fails with an error wrapping
	// ErrEvicting, and the lockout engine's fallback decides, as in an
	// outage; a check that cannot reach a master keeps the last verdict.
	// Negative: only New checks. Ignored with AllowEviction. Default:
	// DefaultEvictionCheckInterval.
	EvictionCheckInterval time.Duration

	// GuardGiveBacks makes the store guard the lockout engine's give-backs
	// (backend.ExpiryGuard), on Redis 7.0 or later (PEXPIRETIME): a
	// give-back then applies only to the counter it reserved on, sliding
	// windows included, where without it the engine skips a give-back on
	// a fixed window that may end before it lands, and sends it on a
	// sliding window (see the package doc). Each key a call reads costs a
	// PEXPIRETIME in place of its PTTL, and each call a TIME: a decision's
	// throughput drops by about 5% (0.58 of a bare INCR against 0.61, the
	// same hour). New checks the version with INFO server on every master,
	// and does not guard when INFO is refused. Default: false.
	GuardGiveBacks bool

	// OneKeyPerCall makes every script call touch one key. Set it when a
	// *redis.Client talks to a proxy in front of several servers (twemproxy,
	// Envoy) that routes a script by its first key. The operations of one
	// hash tag in a batch are then no longer applied as one atomic step, and
	// a read that follows a write of another key with its hash tag waits
	// for that write's reply: such a batch costs two round trips (a lockout
	// decision does). Default: false; a *redis.Client then sends a whole batch
	// in one script call, a *redis.ClusterClient the operations of one hash
	// slot per call, and a *redis.Ring those of one hash tag.
	OneKeyPerCall bool

	// JournalRetention is how long the journal ([Store.Append],
	// [Store.Records]) keeps a record: at least this long after its
	// Append, by the Redis server's clock (rounded up to a millisecond).
	// Records never returns an older record; Append removes them, and an
	// idle journal's stream expires this long after its last Append.
	// Default: DefaultJournalRetention (24 h, like django-defender's
	// ACCESS_ATTEMPT_EXPIRATION).
	JournalRetention time.Duration

	// JournalMax is the most records one journal keeps: each Append trims
	// the journal's stream to its newest JournalMax entries, exactly. An
	// attacker decides how many attempts there are; JournalMax bounds what
	// they cost in Redis memory (see the package documentation for the
	// size of a record). Default: DefaultJournalMax (100,000).
	JournalMax int

	// JournalRecordBytes bounds the bytes of string values (outcome,
	// username, IP, user agent, custom fields, ...) one journal record
	// keeps. When a record's values add up to more, the longest ones are
	// cut, all to the same length, so that short values stay whole and an
	// attacker's multi-kilobyte user agent or username cannot multiply the
	// journal's memory. At least backend.MinRecordBytes; negative: no
	// bound. Default: DefaultJournalRecordBytes (2048).
	JournalRecordBytes int
}

// Store is a lockout backend kept in Redis: a standalone server, a Sentinel
// failover set or a Redis Cluster, through the go-redis client the caller
// passes to [New]. It implements [backend.Backend], [backend.Lister] and
// [backend.Journal]. Its methods are safe for concurrent use.
type Store struct {
	client      goredis.UniversalClient
	grouping    int
	ctxTimeouts bool // the client has ContextTimeoutEnabled
	guards      bool // every master runs Redis 7.0 or later (PEXPIRETIME): backend.ExpiryGuard
	prefix      string
	scanCount   int64
	closed      atomic.Bool

	journalRetentionMs int64 // Options.JournalRetention, in milliseconds
	journalMax         int64
	journalRecordBytes int // <= 0: no bound

	// The checks of eviction after New (Options.EvictionCheckInterval).
	evictEvery int64                 // nanoseconds; 0: none
	evictNext  atomic.Int64          // Unix nanoseconds: when the next may start
	evictErr   atomic.Pointer[error] // the last check's verdict; nil: none may evict
}

var (
	_ backend.Backend     = (*Store)(nil)
	_ backend.Lister      = (*Store)(nil)
	_ backend.ExpiryGuard = (*Store)(nil)
)

// GuardsExpiry implements backend.ExpiryGuard: it reports whether
// Options.GuardGiveBacks was set and every master ran Redis 7.0 or later
// when New checked (PEXPIRETIME; with INFO server, so a user refused INFO
// gets false). Then
// Result.Expires is a key's PEXPIRETIME, in nanoseconds, and a conditional
// decrement is checked in the store's script.
func (s *Store) GuardsExpiry() bool { return s.guards }

// New returns a store that keeps its counters in Redis through client: a
// *redis.Client (standalone, or Sentinel through redis.NewFailoverClient), a
// *redis.ClusterClient or a *redis.Ring. opts may be nil for the defaults.
//
// New loads the store's Lua script on every master (every shard of a Ring),
// and checks that no master may evict keys (see Options.AllowEviction). It
// fails if a master cannot be reached within ctx. Scripts are loaded again
// when a server has lost them (a restart, a failover, SCRIPT FLUSH), so New
// need not be called again.
//
// The store does not take ownership of client: Close leaves it open, and the
// caller closes it after the store. See the package documentation for the
// client settings the store needs.
func New(ctx context.Context, client goredis.UniversalClient, opts *Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("lockout/redis: New: nil client")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.ScanCount < 0 {
		return nil, fmt.Errorf("lockout/redis: New: negative ScanCount %d", o.ScanCount)
	}
	if o.ScanCount == 0 {
		o.ScanCount = DefaultScanCount
	}
	if err := journalOptions(&o); err != nil {
		return nil, fmt.Errorf("lockout/redis: New: %w", err)
	}
	if !validPrefix(o.Prefix) {
		return nil, fmt.Errorf("lockout/redis: New: Prefix %q has a '{' that no '}' closes with a hash tag "+
			"of at least one byte: keys with one hash tag would spread over several hash slots", o.Prefix)
	}
	s := &Store{
		client: client, prefix: o.Prefix, scanCount: int64(o.ScanCount), grouping: groupKey,
		journalRetentionMs: retentionMs(o.JournalRetention),
		journalMax:         int64(o.JournalMax),
		journalRecordBytes: o.JournalRecordBytes,
	}
	switch c := client.(type) {
	case *goredis.Client:
		s.grouping = groupAll
		s.ctxTimeouts = c.Options().ContextTimeoutEnabled
	case *goredis.ClusterClient:
		s.grouping = groupSlot
		s.ctxTimeouts = c.Options().ContextTimeoutEnabled
	case *goredis.Ring:
		s.grouping = groupTag
		s.ctxTimeouts = c.Options().ContextTimeoutEnabled
	}
	if o.OneKeyPerCall {
		s.grouping = groupKey
	}
	if err := s.prepare(ctx, !o.AllowEviction, o.GuardGiveBacks); err != nil {
		return nil, err
	}
	if !o.AllowEviction && o.EvictionCheckInterval >= 0 {
		s.evictEvery = int64(o.EvictionCheckInterval)
		if s.evictEvery == 0 {
			s.evictEvery = int64(DefaultEvictionCheckInterval)
		}
		s.evictNext.Store(time.Now().UnixNano() + s.evictEvery)
	}
	return s, nil
}

// maybeCheckEviction starts a check of the masters' eviction settings in
// the background when the interval since the last one has passed.
func (s *Store) maybeCheckEviction() {
	if s.evictEvery == 0 {
		return
	}
	now := time.Now().UnixNano()
	next := s.evictNext.Load()
	if now < next || !s.evictNext.CompareAndSwap(next, now+s.evictEvery) {
		return
	}
	go s.checkEviction()
}

// checkEviction checks that no master may evict keys, and keeps the
// verdict for Do: an error wrapping ErrEvicting when one may, nil when
// every master said none may, and the last verdict when a master could
// not say.
func (s *Store) checkEviction() {
	ctx, cancel := context.WithTimeout(context.Background(), evictionCheckTimeout)
	defer cancel()
	var (
		mu              sync.Mutex
		evicting, other error
	)
	err := s.forEachMaster(ctx, func(ctx context.Context, node goredis.Cmdable) error {
		err := evictionRisk(ctx, node)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(err, ErrEvicting):
			if evicting == nil {
				evicting = err
			}
		case err != nil:
			other = err
		}
		return nil
	})
	switch {
	case evicting != nil:
		err := fmt.Errorf("lockout/redis: %w (found by a check after New, one every %v)", evicting, time.Duration(s.evictEvery))
		s.evictErr.Store(&err)
	case err == nil && other == nil:
		s.evictErr.Store(nil)
	}
}

// validPrefix reports whether prefix keeps the keys of one hash tag
// together: it has no '{', or its first '{' is closed, in the prefix, by a
// '}' after at least one byte (then every key has the prefix's hash tag).
// Otherwise Redis would hash a prefixed key by a tag that runs into the key,
// or by the whole key, and keys with the same hash tag would land in
// different slots.
func validPrefix(prefix string) bool {
	i := strings.IndexByte(prefix, '{')
	if i < 0 {
		return true
	}
	j := strings.IndexByte(prefix[i+1:], '}')
	return j > 0
}

// prepare loads the script on every master and, if checkEviction, checks
// that none of them may evict keys. With guard, the store guards
// give-backs when every master runs Redis 7.0 or later.
func (s *Store) prepare(ctx context.Context, checkEviction, guard bool) error {
	var (
		mu     sync.Mutex
		guards = guard
	)
	err := s.bounded(ctx, func(ctx context.Context) error {
		return s.forEachMaster(ctx, func(ctx context.Context, node goredis.Cmdable) error {
			g, err := prepareNode(ctx, node, checkEviction, guard)
			mu.Lock()
			guards = guards && g
			mu.Unlock()
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("lockout/redis: New: %w", withCtxErr(ctx, err))
	}
	s.guards = guards
	return nil
}

// prepareNode loads the script on node, checks that it may not evict keys
// if checkEviction, and with guard, reports whether it runs Redis 7.0 or
// later, which has PEXPIRETIME, as INFO says (false when INFO is refused).
func prepareNode(ctx context.Context, node goredis.Cmdable, checkEviction, guard bool) (guards bool, err error) {
	pipe := node.Pipeline()
	load := pipe.ScriptLoad(ctx, opScript)
	var server *goredis.StringCmd
	if guard {
		server = pipe.Info(ctx, "server")
	}
	var info *goredis.StringCmd
	if checkEviction {
		info = pipe.Info(ctx, "memory")
	}
	_, _ = pipe.Exec(ctx)
	sha, err := load.Result()
	if err != nil {
		return false, fmt.Errorf("load script on %s: %w", nodeName(node), err)
	}
	if sha != opSHA {
		return false, fmt.Errorf("load script on %s: server named it %s, want %s", nodeName(node), sha, opSHA)
	}
	// A user refused INFO (an ACL) gets a store that does not guard.
	if server != nil {
		if text, err := server.Result(); err == nil {
			major, _, _ := strings.Cut(infoField(text, "redis_version"), ".")
			if n, err := strconv.Atoi(major); err == nil && n >= 7 {
				guards = true
			}
		}
	}
	if info != nil {
		if err := evictionVerdict(node, info); err != nil {
			return false, err
		}
	}
	return guards, nil
}

// evictionRisk returns an error wrapping ErrEvicting when node may evict
// keys, as INFO memory says; another error when it cannot tell.
func evictionRisk(ctx context.Context, node goredis.Cmdable) error {
	return evictionVerdict(node, node.Info(ctx, "memory"))
}

// evictionVerdict is evictionRisk for node's answer to INFO memory.
func evictionVerdict(node goredis.Cmdable, info *goredis.StringCmd) error {
	text, err := info.Result()
	if err != nil {
		return fmt.Errorf("INFO memory on %s: %w", nodeName(node), err)
	}
	maxmemory, policy := infoField(text, "maxmemory"), infoField(text, "maxmemory_policy")
	if maxmemory != "" && maxmemory != "0" && policy != "" && policy != "noeviction" {
		return fmt.Errorf("%s has maxmemory %s with maxmemory-policy %s: Redis may evict lockout state; "+
			"set maxmemory-policy noeviction (or Options.AllowEviction if eviction is known to be off): %w",
			nodeName(node), maxmemory, policy, ErrEvicting)
	}
	return nil
}

// infoField returns the value of field in INFO output, or "".
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func nodeName(node goredis.Cmdable) string {
	if c, ok := node.(*goredis.Client); ok {
		return c.Options().Addr
	}
	return "the server"
}

// forEachMaster calls fn for every master of a Cluster, every shard of a
// Ring, or the one server of any other client, concurrently.
func (s *Store) forEachMaster(ctx context.Context, fn func(context.Context, goredis.Cmdable) error) error {
	switch c := s.client.(type) {
	case *goredis.ClusterClient:
		return c.ForEachMaster(ctx, func(ctx context.Context, n *goredis.Client) error { return fn(ctx, n) })
	case *goredis.Ring:
		return c.ForEachShard(ctx, func(ctx context.Context, n *goredis.Client) error { return fn(ctx, n) })
	default:
		return fn(ctx, s.client)
	}
}

// masters returns the clients forEachMaster would call fn with.
func (s *Store) masters(ctx context.Context) ([]goredis.Cmdable, error) {
	var (
		mu    sync.Mutex
		nodes []goredis.Cmdable
	)
	err := s.forEachMaster(ctx, func(_ context.Context, n goredis.Cmdable) error {
		mu.Lock()
		nodes = append(nodes, n)
		mu.Unlock()
		return nil
	})
	return nodes, err
}

// Close marks the store closed: every later call returns an error wrapping
// backend.ErrClosed. It does not close the client passed to New. Close may be
// called more than once.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

var errClosed = fmt.Errorf("lockout/redis: %w", backend.ErrClosed)

// opCmd is the EVALSHA (or EVAL) command of a group of operations. It
// reports NoRetry, so that go-redis never sends it a second time after a
// network error: the first one may have run (the reply, not the request, may
// be what was lost), and a second increment would count one attempt twice.
// go-redis honours NoRetry in Process and in the pipelines of Client,
// ClusterClient and Ring, whatever MaxRetries or MaxRedirects say; MOVED and
// ASK redirections (the command did not run) are still followed.
type opCmd struct{ *goredis.IntSliceCmd }

// NoRetry reports that go-redis must not retry the command.
func (opCmd) NoRetry() bool { return true }

// Script arguments, boxed once: "no expiry", and the script's name.
var (
	minusOne any = int64(-1)
	opSHAArg any = opSHA
)

// Do applies ops. It implements [backend.Backend]. A batch costs one round
// trip to each node it touches: one on a single server.
//
// Operations are grouped into calls of the store's script, each applied
// atomically in batch order: a whole batch in one call on a single server
// (long batches are split between hash tags), the operations of one hash
// slot per call on a Cluster, those of one hash tag per call on a Ring. The
// calls go in one pipeline, or as a single command when there is one. Since
// the operations of one hash tag share a call, every read follows the
// earlier writes of its hash tag, as the contract asks, without waiting for
// anything. Only with Options.OneKeyPerCall does a read that follows a write
// of another key with its hash tag wait for that write, in a second
// pipeline.
func (s *Store) Do(ctx context.Context, ops []backend.Op, results []backend.Result) error {
	if s.closed.Load() {
		return errClosed
	}
	if err := backend.ValidateBatch(ops, results); err != nil {
		return fmt.Errorf("lockout/redis: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lockout/redis: %w", err)
	}
	s.maybeCheckEviction()
	if err := s.evictErr.Load(); err != nil {
		return *err
	}
	if len(ops) == 0 {
		return nil
	}
	var (
		orderBuf           [8]int
		endsBuf, roundsBuf [4]int
	)
	p := s.plan(ops, plan{order: orderBuf[:0], ends: endsBuf[:0], rounds: roundsBuf[:0]})
	// The commands, and one allocation for the arguments of them all.
	cmds := make([]opCmd, len(p.ends))
	nargs := 4*len(p.ends) + len(ops) // at most: see command
	for i := range ops {
		switch {
		case ops[i].Kind == backend.Incr && ops[i].Delta != 0:
			nargs += 2 // a delta, and a TTL or an expiry bound
		case ops[i].Kind == backend.Expire:
			nargs++
		}
	}
	args := make([]any, 0, nargs)
	kinds := make([]byte, len(ops)+len(p.ends)) // and a '+' per call, when guarded
	var apartBuf [4]int
	apart := apartBuf[:0] // each call's reads marked a (see opScript)
	start := 0
	for c, end := range p.ends {
		k := kinds[start+c : end+c]
		if s.guards {
			k = kinds[start+c : end+c+1]
		}
		var n int
		cmds[c], args, n = s.command(ctx, ops, &p, start, end, args, k)
		apart = append(apart, n)
		start = end
	}
	var rounds []int // nil: one round (no allocation on the common path)
	if len(p.rounds) > 1 {
		rounds = slices.Clone(p.rounds)
	}
	execErr := s.bounded(ctx, func(ctx context.Context) error { return s.execute(ctx, cmds, rounds) })
	if execErr != nil && (ctx.Err() != nil || pastDeadline(ctx)) {
		// When bounded returned before execute did, cmds are not to be read.
		return fmt.Errorf("lockout/redis: %w", withCtxErr(ctx, execErr))
	}
	start = 0
	for c, end := range p.ends {
		if err := parse(ops, &p, start, end, apart[c], cmds[c].IntSliceCmd, execErr, results, s.guards); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// command builds the EVALSHA command of the operations p takes from start
// to end: the keys, a string naming each operation's kind (written to
// kinds, with a '+' after them when kinds has room for it: the store
// guards give-backs), and the operations' arguments, each given once for a
// run of operations that share them (see opScript). It appends the
// command's arguments to buf, and returns the command, buf, and the number
// of reads it marked a: the reads that end the call, when it writes none
// of their keys.
func (s *Store) command(ctx context.Context, ops []backend.Op, p *plan, start, end int, buf []any, kinds []byte) (opCmd, []any, int) {
	n := end - start
	base := len(buf)
	buf = append(buf, "evalsha", opSHAArg, n)
	for j := range n {
		key := ops[p.op(start+j)].Key
		if s.prefix != "" {
			key = s.prefix + key
		}
		buf = append(buf, key)
	}
	buf = append(buf, kinds)
	var (
		incr, reduce    int64 // the latest deltas sent; zero: none yet
		incrTTL, expTTL time.Duration
		sentExpire      bool
	)
	for j := range n {
		op := &ops[p.op(start+j)]
		switch {
		case op.Kind == backend.Incr && op.Delta > 0:
			if op.Delta == incr && op.TTL == incrTTL {
				kinds[j] = scriptIncrSame
				if op.SkipTTL {
					kinds[j] = scriptIncrSkipSame
				}
				continue
			}
			kinds[j] = scriptIncr
			if op.SkipTTL {
				kinds[j] = scriptIncrSkip
			}
			incr, incrTTL = op.Delta, op.TTL
			buf = append(buf, op.Delta, ttlArg(op.TTL))
		case op.Kind == backend.Incr && op.Delta < 0 && op.IfExpiresBefore != 0 && len(kinds) > n:
			kinds[j] = scriptReduceIf
			reduce = op.Delta
			buf = append(buf, op.Delta, ceilMs(time.Duration(op.IfExpiresBefore)))
		case op.Kind == backend.Incr && op.Delta < 0:
			if op.Delta == reduce {
				kinds[j] = scriptReduceSame
				continue
			}
			kinds[j] = scriptReduce
			reduce = op.Delta
			buf = append(buf, op.Delta)
		case op.Kind == backend.Incr, op.Kind == backend.Exists:
			kinds[j] = scriptGet
		case op.Kind == backend.Expire:
			if sentExpire && op.TTL == expTTL {
				kinds[j] = scriptExpireSame
				continue
			}
			kinds[j] = scriptExpire
			expTTL, sentExpire = op.TTL, true
			buf = append(buf, ttlArg(op.TTL))
		default: // backend.Delete; ValidateBatch rejected any other kind.
			kinds[j] = scriptDelete
		}
	}
	if len(kinds) > n {
		kinds[n] = scriptGuard
	}
	apart := apartReads(ops, p, start, end)
	for j := n - apart; j < n; j++ {
		kinds[j] = scriptGetApart
	}
	return opCmd{goredis.NewIntSliceCmd(ctx, buf[base:len(buf):len(buf)]...)}, buf, apart
}

// apartReads returns the number of reads that end the operations p takes
// from start to end, when none of their keys is a key that the operations
// before them write; 0 otherwise.
func apartReads(ops []backend.Op, p *plan, start, end int) int {
	r := end
	for r > start && ops[p.op(r-1)].IsRead() {
		r--
	}
	if r == end {
		return 0
	}
	var written map[string]struct{}
	if (end-r)*(r-start) > 64 {
		// Many keys: a set, rather than comparing each pair.
		written = make(map[string]struct{}, r-start)
		for j := start; j < r; j++ {
			if op := &ops[p.op(j)]; !op.IsRead() {
				written[op.Key] = struct{}{}
			}
		}
	}
	for j := r; j < end; j++ {
		key := ops[p.op(j)].Key
		if written != nil {
			if _, ok := written[key]; ok {
				return 0
			}
			continue
		}
		for i := start; i < r; i++ {
			if op := &ops[p.op(i)]; op.Key == key && !op.IsRead() {
				return 0
			}
		}
	}
	return end - r
}

// ttlArg returns ttl in whole milliseconds, rounded up so that a key never
// expires early, or -1 for backend.NoExpiry.
func ttlArg(ttl time.Duration) any {
	if ttl == backend.NoExpiry {
		return minusOne
	}
	return ceilMs(ttl)
}

// ceilMs returns d in whole milliseconds, rounded up: a TTL or a time
// bound in nanoseconds, as Redis takes it. (Adding 999,999 ns before
// dividing would overflow for the durations within a millisecond of
// math.MaxInt64, and a negative TTL makes Redis delete the key.)
func ceilMs(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond > 0 {
		ms++
	}
	return ms
}

// maxMs is the longest TTL, in milliseconds, that a time.Duration holds.
const maxMs = int64(math.MaxInt64 / time.Millisecond)

// execute sends cmds round by round: the calls of each round (up to
// rounds[r]; all of them when rounds is nil) in one pipeline, the next round
// once every call of the one before has succeeded. It returns the first
// error.
//
// Within a round, the calls a node refuses with NOSCRIPT are replayed once,
// by EVAL, which runs the script and loads it into that node's cache for the
// next EVALSHA. A refused EVALSHA did not run, so the replay cannot apply an
// operation twice; and when a node lacks the script it refuses every call of
// the round, so the replay keeps their order.
//
// execute may run on its own goroutine, abandoned when ctx is done; it
// touches nothing but cmds, which the caller reads only after it returns.
func (s *Store) execute(ctx context.Context, cmds []opCmd, rounds []int) error {
	if rounds == nil {
		return s.executeRound(ctx, cmds)
	}
	start := 0
	for _, end := range rounds {
		if err := s.executeRound(ctx, cmds[start:end]); err != nil {
			return err
		}
		start = end
	}
	return nil
}

func (s *Store) executeRound(ctx context.Context, cmds []opCmd) error {
	err := s.send(ctx, cmds)
	if err == nil {
		return nil
	}
	var again []int
	for i := range cmds {
		if err := cmds[i].Err(); err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return err
	}
	retry := make([]opCmd, len(again))
	for j, i := range again {
		args := cmds[i].Args()
		evalArgs := make([]any, len(args))
		copy(evalArgs, args)
		evalArgs[0], evalArgs[1] = "eval", opScript
		retry[j] = opCmd{goredis.NewIntSliceCmd(ctx, evalArgs...)}
		cmds[i] = retry[j]
	}
	_ = s.send(ctx, retry)
	for i := range cmds {
		if err := cmds[i].Err(); err != nil {
			return err
		}
	}
	return nil
}

// send runs cmds as one command or one pipeline, and returns the first
// error. Each command carries its own outcome.
func (s *Store) send(ctx context.Context, cmds []opCmd) error {
	if len(cmds) == 1 {
		return s.client.Process(ctx, cmds[0])
	}
	pipe := s.client.Pipeline()
	for i := range cmds {
		_ = pipe.Process(ctx, cmds[i])
	}
	_, err := pipe.Exec(ctx)
	return err
}

// bounded runs f, returning when it does or, with an error wrapping
// ctx.Err(), when ctx is done first.
//
// go-redis interrupts a socket read at the context's deadline only when the
// client has ContextTimeoutEnabled, and never at a cancellation (it does
// honour both while waiting for a pool connection or dialing). So f runs on
// the caller's goroutine when ctx can never end, or when it has a deadline
// and the client applies it to the socket; a cancellation before that
// deadline then ends a wait for a reply at the deadline, not at once.
// Otherwise f runs on a goroutine of its own, which finishes in the
// background (bounded by ctx for pool waits and dials, and by the client's
// ReadTimeout and WriteTimeout on the socket) while the caller gets its
// error on time.
func (s *Store) bounded(ctx context.Context, f func(context.Context) error) error {
	done := ctx.Done()
	if done == nil {
		return f(ctx)
	}
	if s.ctxTimeouts {
		if _, ok := ctx.Deadline(); ok {
			return f(ctx)
		}
	}
	ch := make(chan error, 1)
	go func() { ch <- f(ctx) }()
	select {
	case err := <-ch:
		return err
	case <-done:
		select {
		case err := <-ch: // finished at the same time: keep its outcome
			return err
		default:
			return ctx.Err()
		}
	}
}

// withCtxErr returns err, adding the context's error to the errors it wraps
// when ctx is done or past its deadline: the failure of a call whose context
// ended (a socket deadline, a pool wait) is reported as the context's.
func withCtxErr(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil && pastDeadline(ctx) {
		// A socket deadline set from ctx may fire just before ctx's timer.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	return err
}

// pastDeadline reports whether ctx has a deadline that has passed.
func pastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// parse writes the outcomes of the operations p takes from start to end,
// read from the reply to their command, to results. The last apart of
// them are reads marked a: when the reply ends before them, none of their
// keys exists. With guards, the script reported each key's expiry time too
// (see opScript).
func parse(ops []backend.Op, p *plan, start, end, apart int, cmd *goredis.IntSliceCmd, execErr error, results []backend.Result, guards bool) error {
	vals, err := cmd.Result()
	if err == nil && vals == nil {
		// No reply was read: the command was never sent. (An empty
		// reply, a call of absent a reads only, is an empty slice: go-redis
		// makes one of the reply's length.)
		err = execErr
		if err == nil {
			err = errors.New("no reply")
		}
	}
	per := 2
	if guards {
		per = 3
	}
	replied := end // the operations the reply covers
	want := per * (end - start)
	if apart > 0 && err == nil && len(vals) < want {
		replied -= apart
		want = per * (replied - start)
	}
	if guards {
		want++ // the script's time
	}
	if err == nil && len(vals) != want {
		err = fmt.Errorf("unexpected reply %v", vals)
	}
	if err != nil {
		what := describe(&ops[p.op(start)])
		if n := end - start; n > 1 {
			what += fmt.Sprintf(" and %d more operations of the same script call", n-1)
		}
		if goredis.IsOOMError(err) {
			return fmt.Errorf("lockout/redis: %s: %w: %w", what, backend.ErrFull, err)
		}
		return fmt.Errorf("lockout/redis: %s: %w", what, err)
	}
	for j := replied; j < end; j++ {
		results[p.op(j)] = backend.Result{}
	}
	for j := start; j < replied; j++ {
		i := p.op(j)
		v, pttl := vals[per*(j-start)], vals[per*(j-start)+1]
		var expires int64 // PEXPIRETIME, in nanoseconds
		if guards {
			x := vals[per*(j-start)+2]
			switch {
			case x >= 0:
				expires = math.MaxInt64
				if x <= math.MaxInt64/int64(time.Millisecond) {
					expires = x * int64(time.Millisecond)
				}
				if pttl == -4 { // not read: from the expiry and the script's time
					pttl = max(x-vals[want-1], 0)
				}
			case pttl == -4:
				pttl = x // no expiry (-1), or gone (-2)
			}
		}
		switch {
		case ops[i].Kind == backend.Delete:
			results[i] = backend.Result{Found: v == 1}
		case pttl == -2:
			results[i] = backend.Result{}
		case pttl == -3: // not asked for (SkipTTL)
			results[i] = backend.Result{Found: true, Value: v}
		case pttl == -1:
			results[i] = backend.Result{Found: true, Value: v, TTL: backend.NoExpiry}
		case pttl > maxMs: // a TTL of math.MaxInt64 ns, rounded up
			results[i] = backend.Result{Found: true, Value: v, TTL: math.MaxInt64, Expires: expires}
		default: // 0 while the key lives its last millisecond
			results[i] = backend.Result{Found: true, Value: v, TTL: time.Duration(max(pttl, 1)) * time.Millisecond, Expires: expires}
		}
	}
	return nil
}

// describe names op for an error message.
func describe(op *backend.Op) string {
	return op.Kind.String() + " " + quote(op.Key)
}

// quote quotes key for an error message, shortened when long.
func quote(key string) string {
	if len(key) > 64 {
		return strconv.Quote(key[:48]) + fmt.Sprintf("...(%d bytes)", len(key))
	}
	return strconv.Quote(key)
}
