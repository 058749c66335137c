package lockout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
)

// Outage says how a Policy decides while its store fails, times out or is
// full.
//
// In every mode, a lock is never lost to an outage: a failure that locks
// (admitted before the store failed, or in the fallback) whose store call
// fails, and the lock it sets, go to the fallback, which the policy then
// starts in FailClosed and AdmitUncounted too, and whose locks are written
// back to the store when it recovers. An attacker who makes the store fail
// at the moment an attempt locks gets no shorter lock, nor a lockout
// missing from the schedule's count.
type Outage uint8

// The ways to decide during an outage.
const (
	// Fallback decides in an in-process store (a capped memory store) with
	// the same rules and keys: per key and per process, at most Limit
	// guesses reach the password check before a lockout, and a lockout
	// there lasts as the schedule says after the lockouts this policy
	// counted or learned of (through its own lockouts) before and during
	// the outage, so that an outage is no fresh start of the schedule.
	// What it counted is written back to the store when the store
	// recovers. When the fallback is full, attempts that need a new key are
	// refused. The default.
	Fallback Outage = iota
	// FailClosed refuses every attempt with ErrUnavailable.
	FailClosed
	// AdmitUncounted admits every attempt that no remembered lock refuses,
	// without counting it. It leaves the password check UNPROTECTED for
	// the whole outage, which an attacker can cause (by filling a capped
	// store, or slowing it past the deadline): ask for it only knowingly.
	AdmitUncounted
)

// String returns the mode's name.
func (o Outage) String() string {
	switch o {
	case Fallback:
		return "fallback"
	case FailClosed:
		return "fail-closed"
	case AdmitUncounted:
		return "admit-uncounted"
	}
	return fmt.Sprintf("outage(%d)", uint8(o))
}

// Defaults of the degraded-mode settings of Config.
const (
	DefaultFallbackMaxKeys = 100_000
	DefaultProbeInterval   = time.Second
	DefaultLockCacheTTL    = time.Second
	DefaultLockCacheSize   = 1 << 16
	// NoLockCache, as Config.LockCacheTTL, disables the lock cache.
	NoLockCache time.Duration = -1
)

func (p *Policy) degradedDefaults() error {
	if p.outage > AdmitUncounted {
		return fmt.Errorf("lockout: unknown Outage %d", p.outage)
	}
	if p.fallbackMaxKeys == 0 {
		p.fallbackMaxKeys = DefaultFallbackMaxKeys
	}
	if p.probeInterval == 0 {
		p.probeInterval = DefaultProbeInterval
	}
	if p.cacheTTL == 0 {
		p.cacheTTL = DefaultLockCacheTTL
	}
	if p.cacheSize == 0 {
		p.cacheSize = DefaultLockCacheSize
	}
	switch {
	case p.fallbackMaxKeys < 0:
		return fmt.Errorf("lockout: FallbackMaxKeys %d: want > 0", p.fallbackMaxKeys)
	case p.probeInterval < 0:
		return fmt.Errorf("lockout: ProbeInterval %v: want > 0", p.probeInterval)
	case p.cacheTTL < 0 && p.cacheTTL != NoLockCache:
		return fmt.Errorf("lockout: LockCacheTTL %v: want > 0, or NoLockCache", p.cacheTTL)
	case p.cacheSize < 0:
		return fmt.Errorf("lockout: LockCacheSize %d: want > 0", p.cacheSize)
	}
	return nil
}

// Breaker states.
const (
	healthy  int32 = iota // decisions go to the store
	degraded              // the store failed: decisions go to the fallback
)

// breaker is the circuit breaker between the store and the fallback.
type breaker struct {
	state     atomic.Int32
	nextProbe atomic.Int64 // p.now() of the next probe
	probing   atomic.Bool
	// Guarded by Policy.mu.
	epoch uint64    // counts the ends of degraded periods
	cause error     // the error that started the current outage
	since time.Time // when it started
	// copied holds, by key, the fallback's value the write-back has
	// copied to the store in this degraded period, through every attempt
	// to recover: a recovery that fails half way and starts again adds
	// only what the fallback counted since. Made with the fallback. Its
	// entries are read and written with wb held (and the pointer under
	// Policy.mu): an operator's clear drops the keys it clears, which the
	// fallback then counts afresh.
	copied map[string]copiedKey
	// reports are the starts and ends of degraded mode not yet reported,
	// queued under Policy.mu in the order they happened, so that they are
	// reported in that order (reportDegraded) whichever goroutines make
	// them: a Close right after a failing call set degraded mode, but
	// before that call reported it, must not report the end first.
	reports []degradedReport
	// delivering is held by the goroutine reporting them.
	delivering sync.Mutex
	// wb, a semaphore (a channel, so that a wait on it is a durable block
	// under testing/synctest), keeps an operator's clear (its deletes in
	// the fallback and in the store) and a write-back call (its read of
	// the fallback and its write to the store) apart: a clear between the
	// two would be undone by the write, which copies what it read before
	// it. Taken before Policy.mu.
	wb chan struct{}
}

func (b *breaker) lockWB()   { b.wb <- struct{}{} }
func (b *breaker) unlockWB() { <-b.wb }

// copiedKey is a fallback key that a write-back copied: its value then,
// and when it was to expire (Policy.now time; math.MaxInt64: never).
// Entries past that time are dropped (writeBackFrom): a key found under
// the same name later is another one, made again since, and copied whole.
// A lock is copied again when its end moved (made again, or lengthened,
// since).
type copiedKey struct {
	value, until int64
}

// lockUntilSlack is how far apart two readings of one lock's end may be
// (they are read as TTLs, at different times) and still be the same lock.
const lockUntilSlack = int64(time.Second)

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// route says where an attempt's reservations are: in the store, or in the
// fallback of the degraded period numbered epoch.
type route struct {
	fallback bool
	epoch    uint64
}

// errOutage is returned for calls not made because the store is failing.
var errOutage = errors.New("lockout: store unavailable (degraded mode)")

// exec applies ops that must not be lost (a lock, and what comes with it)
// where the policy decides now: on the store, or on the fallback while the
// store fails, in every Outage mode (see Outage). A store call that fails
// starts degraded mode. It returns where the ops were applied.
func (p *Policy) exec(ctx context.Context, ops []backend.Op, res []backend.Result) (route, error) {
	return p.admit(ctx, nil, ops, res)
}

// admit is exec for the ops of a's admission (a nil a: exec's), which go to
// the fallback only in the Fallback mode; in the others, a failing store's
// error is returned. Before they go to the fallback, the locks the policy
// remembers are checked again, stale ones included (an unlock cannot have
// reached a failing store), and the refusal for one is returned as the
// error.
func (p *Policy) admit(ctx context.Context, a *Attempt, ops []backend.Op, res []backend.Result) (route, error) {
	for range 3 {
		if p.closed.Load() {
			return route{}, ErrClosed
		}
		if p.breaker.state.Load() != degraded {
			err := p.do(ctx, ops, res)
			if err == nil || ctx.Err() != nil {
				return route{}, err
			}
			p.trip(ctx, err)
			if p.outage != Fallback && a != nil {
				return route{}, err
			}
		} else if p.outage != Fallback && a != nil {
			p.maybeProbe()
			return route{}, p.outageErr()
		}
		p.maybeProbe()
		if a != nil {
			if refusal, err := a.remembered(p.now(), true); err != nil || refusal != nil {
				if err != nil {
					return route{}, err
				}
				return route{}, refusal
			}
		}
		if at, err, ok := p.onFallback(ctx, ops, res); ok {
			return at, err
		}
		// The store recovered in between: try it.
	}
	return route{}, p.outageErr()
}

// execAt applies an attempt's follow-up ops where its reservations are
// (at). When those are in a fallback that was since written back to the
// store, they are in the store. Ops that only undo or extend what the
// reservations did (keep false: give-backs, resets, refreshes) are dropped
// while the store fails: the reservations then keep counting, which errs
// on the safe side. Ops that must not be lost (keep: a lock) go wherever
// exec sends them.
func (p *Policy) execAt(ctx context.Context, at route, ops []backend.Op, res []backend.Result, keep bool) (route, error) {
	if at.fallback {
		p.mu.RLock()
		if !p.closed.Load() && p.breaker.state.Load() == degraded && p.breaker.epoch == at.epoch {
			err := p.fallback.Do(ctx, ops, res)
			p.mu.RUnlock()
			if err != nil {
				err = fmt.Errorf("lockout: fallback: %w", err)
			}
			return at, err
		}
		p.mu.RUnlock()
	}
	if keep {
		return p.exec(ctx, ops, res)
	}
	if p.closed.Load() {
		return route{}, ErrClosed
	}
	if p.breaker.state.Load() == degraded {
		return route{}, p.outageErr()
	}
	err := p.do(ctx, ops, res)
	if err != nil && ctx.Err() == nil {
		p.trip(ctx, err)
	}
	return route{}, err
}

// writtenBack reports whether the fallback of at, an attempt's route
// through a fallback, ended: its counts were written back to the store.
func (p *Policy) writtenBack(at route) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.breaker.state.Load() != degraded || p.breaker.epoch != at.epoch
}

// onFallback applies ops to the fallback if the policy is degraded, and
// reports whether it was.
func (p *Policy) onFallback(ctx context.Context, ops []backend.Op, res []backend.Result) (route, error, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return route{}, ErrClosed, true
	}
	if p.breaker.state.Load() != degraded {
		return route{}, nil, false
	}
	at := route{fallback: true, epoch: p.breaker.epoch}
	if err := p.fallback.Do(ctx, ops, res); err != nil {
		return at, fmt.Errorf("lockout: fallback: %w", err), true
	}
	return at, nil, true
}

func (p *Policy) outageErr() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.breaker.cause != nil {
		return fmt.Errorf("%w: %w", errOutage, p.breaker.cause)
	}
	return errOutage
}

// trip starts degraded mode after the store failed with err.
func (p *Policy) trip(ctx context.Context, err error) {
	p.mu.Lock()
	state := p.breaker.state.Load()
	if p.closed.Load() || state == degraded {
		p.mu.Unlock()
		return
	}
	if p.fallback == nil { // in every mode: for the locks (see Outage)
		var fb *memory.Store
		var ferr error
		unlabeled(func() { fb, ferr = memory.New(&memory.Options{MaxKeys: p.fallbackMaxKeys}) })
		if ferr != nil {
			// Options are checked by New: not expected.
			p.mu.Unlock()
			p.log.LogAttrs(ctx, slog.LevelError, "lockout: cannot start the fallback store", slog.Any("error", ferr))
			return
		}
		p.fallback = fb
		p.breaker.copied = map[string]copiedKey{}
	}
	p.breaker.nextProbe.Store(p.now() + int64(p.probeInterval))
	p.breaker.state.Store(degraded)
	if state == healthy {
		p.breaker.cause = err
		p.breaker.since = time.Now()
		p.breaker.reports = append(p.breaker.reports, degradedReport{start: true, err: err, at: p.breaker.since,
			msg: "lockout: store failing, degraded mode starts", level: slog.LevelWarn,
			attrs: []slog.Attr{slog.Any("error", err), slog.String("outage", p.outage.String()), slog.Duration("probe_interval", p.probeInterval)}})
	}
	p.mu.Unlock()
	p.reportDegraded(ctx)
}

// degradedReport is a start or an end of degraded mode, to report: a log
// line, an event and a call of Hooks.Degraded.
type degradedReport struct {
	start bool
	err   error
	at    time.Time
	d     time.Duration // at an end, how long degraded mode lasted; 0 at a start
	msg   string
	level slog.Level
	attrs []slog.Attr
}

// endDegraded queues the report of the end of the degraded period, for
// reportDegraded. The caller holds p.mu, and has ended the period.
func (p *Policy) endDegraded(cause error, msg string, attrs ...slog.Attr) {
	now := time.Now()
	d := now.Sub(p.breaker.since)
	p.breaker.reports = append(p.breaker.reports, degradedReport{err: cause, at: now, d: d, msg: msg, level: slog.LevelInfo,
		attrs: append([]slog.Attr{slog.Duration("lasted", d)}, attrs...)})
}

// reportDegraded reports the queued starts and ends of degraded mode, in
// order, unless another goroutine is reporting them, which then reports
// these too. The caller holds no lock of the policy's: a hook may call the
// policy (even Close, whose report waits for the hook to return).
func (p *Policy) reportDegraded(ctx context.Context) {
	b := &p.breaker
	for {
		if !b.delivering.TryLock() {
			return // its holder reports what was queued, this too
		}
		for {
			p.mu.Lock()
			if len(b.reports) == 0 {
				p.mu.Unlock()
				break
			}
			r := b.reports[0]
			b.reports = b.reports[1:]
			p.mu.Unlock()
			p.log.LogAttrs(ctx, r.level, r.msg, r.attrs...)
			if p.observer != nil {
				kind := EventRecovered
				if r.start {
					kind = EventDegraded
				}
				p.observer.Observe(ctx, Event{Kind: kind, Time: r.at, Err: r.err, Duration: r.d})
			}
			if p.hooks.Degraded != nil {
				p.hooks.Degraded(ctx, DegradedEvent{Start: r.start, Err: r.err, Duration: r.d})
			}
		}
		b.delivering.Unlock()
		// A report queued after the last look, whose goroutine found
		// delivering held, is this one's to make.
		p.mu.RLock()
		more := len(b.reports) > 0
		p.mu.RUnlock()
		if !more {
			return
		}
	}
}

// maybeProbe starts a probe of the store in the background, at most once
// per probe interval.
func (p *Policy) maybeProbe() {
	b := &p.breaker
	now := p.now()
	if now < b.nextProbe.Load() || !b.probing.CompareAndSwap(false, true) {
		return
	}
	b.nextProbe.Store(now + int64(p.probeInterval))
	p.mu.RLock()
	if p.closed.Load() {
		p.mu.RUnlock()
		b.probing.Store(false)
		return
	}
	p.wg.Add(1) // under mu, so that it cannot race with Close's Wait
	p.mu.RUnlock()
	go func() {
		defer p.wg.Done()
		defer b.probing.Store(false)
		p.probe()
	}()
}

// probeTTL is the lifetime of the probe's key, should its Delete be lost.
const probeTTL = time.Minute

// probe tries the store with a write that creates a key (so that a full
// store still fails it), and ends degraded mode when it succeeds.
func (p *Policy) probe() {
	ctx := context.Background()
	key := p.prefix + ":" + string(kindProbe) + ":{probe}"
	ops := []backend.Op{backend.IncrOp(key, 1, probeTTL), backend.DeleteOp(key)}
	tctx, cancel := context.WithTimeout(ctx, p.timeout)
	err := p.store.Do(tctx, ops, make([]backend.Result, len(ops)))
	cancel()
	if err != nil {
		p.log.LogAttrs(ctx, slog.LevelDebug, "lockout: store still failing", slog.Any("error", err))
		return
	}
	p.recover(ctx)
}

// recover ends degraded mode once the store answers a probe, writing back
// what the fallback counted in two passes. The first copies every key of
// the fallback to the store while decisions still go to the fallback, and
// runs again (up to maxFirstPasses times) while there was more than one
// call's worth to copy. The second holds decisions for its length
// (usually one round trip; more only while an attacker adds keys to the
// fallback faster than the first pass copies them), adds
// what the fallback counted since the first, and sends decisions back to
// the store. No decision ever sees a store without the outage's counts. A
// pass that fails leaves the policy degraded; the next recovery copies
// what was not copied yet (breaker.copied), and again only the writes of
// the call that failed, which the store may have applied or not: on the
// strict side.
func (p *Policy) recover(ctx context.Context) {
	if p.closed.Load() || p.breaker.state.Load() != degraded {
		return
	}
	p.mu.RLock()
	copied := p.breaker.copied
	p.mu.RUnlock()
	if copied == nil { // the fallback could not start
		copied = map[string]copiedKey{}
	}
	// The counters the write-back takes to their rule's limit, to
	// remember once decisions may take the policy's lock again; unless
	// an operator cleared keys meanwhile (an unlock or a reset, which
	// forgets what is remembered): what the write-back saw may be gone.
	var full []fullCounter
	clears := p.clears.Load()
	defer func() {
		if p.clears.Load() != clears {
			return
		}
		for _, f := range full {
			p.remember(f.key, f.ttl, false)
		}
	}()
	// The first pass runs again, and then again while it copied more
	// than one call's worth: what the fallback counted while the
	// previous run was at the store (under attack, many keys), which the
	// second pass would otherwise copy while it holds every decision.
	// Again, it reads the fallback, and writes only what changed.
	for round := 0; ; round++ {
		n, err := p.writeBack(ctx, copied, &full, p.do)
		if err != nil {
			p.stillDegraded(ctx, err)
			return
		}
		if (round > 0 && n <= writeBackChunk) || round == maxFirstPasses-1 {
			break
		}
	}
	p.breaker.lockWB()
	p.mu.Lock()
	if p.closed.Load() || p.breaker.state.Load() != degraded {
		p.mu.Unlock()
		p.breaker.unlockWB()
		return
	}
	// Decisions wait on mu: nothing reports to hooks from here (a hook may
	// call the policy), and the store calls are made directly. Operators'
	// clears wait on wb.
	_, err := p.writeBackFrom(ctx, p.fallback, copied, &full, p.storeDo, false)
	var fb backend.Backend
	if err == nil {
		p.endDegraded(p.breaker.cause, "lockout: store recovered, degraded mode ends", slog.Int("keys_written_back", len(copied)))
		fb, p.fallback, p.breaker.copied = p.fallback, nil, nil
		p.breaker.epoch++
		p.breaker.cause = nil
		p.breaker.state.Store(healthy)
	}
	p.mu.Unlock()
	// Before any report: a hook may call an operator's clear, which
	// waits on wb.
	p.breaker.unlockWB()
	if err != nil {
		p.backendError(ctx, err)
		p.stillDegraded(ctx, err)
		return
	}
	if fb != nil {
		fb.Close()
	}
	p.reportDegraded(ctx)
}

// stillDegraded records that a write-back failed: the next probe comes a
// probe interval later.
func (p *Policy) stillDegraded(ctx context.Context, err error) {
	p.breaker.nextProbe.Store(p.now() + int64(p.probeInterval))
	p.log.LogAttrs(ctx, slog.LevelWarn, "lockout: writing the fallback's state back to the store failed; still degraded", slog.Any("error", err))
}

// storeDo is a store call under the policy's deadline that reports nothing.
func (p *Policy) storeDo(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	tctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if err := p.store.Do(tctx, ops, res); err != nil {
		return fmt.Errorf("lockout: backend: %w", err)
	}
	return nil
}

// writeBackChunk is how many fallback keys one write-back call moves.
const writeBackChunk = 128

// maxFirstPasses bounds the runs of a recovery's first pass: an attacker
// who adds keys to the fallback faster than the write-back copies them
// would keep it from ever ending.
const maxFirstPasses = 4

// writeBack adds to the store, through do, what the fallback counted
// beyond copied (the values a previous pass wrote), and records the new
// values in copied: counters and lockout histories are added to the
// store's; locks are set, keeping the longer of the two, every time (the
// fallback may have made a lock again since it was copied). Counters the
// store then holds at their rule's limit or past it are added to full.
// It returns how many keys it wrote.
func (p *Policy) writeBack(ctx context.Context, copied map[string]copiedKey, full *[]fullCounter, do func(context.Context, []backend.Op, []backend.Result) error) (int, error) {
	p.mu.RLock()
	fb := p.fallback
	p.mu.RUnlock()
	return p.writeBackFrom(ctx, fb, copied, full, do, true)
}

// fullCounter is a counter the store holds at its rule's limit or past
// it, for ttl, after a write-back. The store refuses its key, but an
// attacker who guesses only while the store fails never meets it: the
// policy remembers it (as it remembers a counter whose last slot an
// attempt took), so that the next outage's fallback, which starts afresh,
// refuses too. Without it, an attacker who can make the store fail and
// come back got Limit-1 guesses in every outage.
type fullCounter struct {
	key string
	ttl time.Duration
}

// writeBackFrom is writeBack from fb. With lock, it takes breaker.wb for
// each step; else the caller holds it.
func (p *Policy) writeBackFrom(ctx context.Context, fb backend.Backend, copied map[string]copiedKey, full *[]fullCounter, do func(context.Context, []backend.Op, []backend.Result) error, lock bool) (int, error) {
	if fb == nil {
		return 0, nil
	}
	lockWB, unlockWB := func() {}, func() {}
	if lock {
		lockWB, unlockWB = p.breaker.lockWB, p.breaker.unlockWB
	}
	// What was copied of keys that have expired since says nothing of
	// the keys of those names now: forget it, so that copied does not
	// grow with the outage's length.
	now := p.now()
	lockWB()
	maps.DeleteFunc(copied, func(_ string, c copiedKey) bool { return now >= c.until })
	unlockWB()
	var keys []string
	for k, err := range fb.(backend.Lister).Keys(ctx, p.prefix+":") {
		if err != nil {
			return 0, err
		}
		keys = append(keys, k)
	}
	written := 0
	for len(keys) > 0 {
		if p.closed.Load() {
			return written, ErrClosed
		}
		chunk := keys[:min(len(keys), writeBackChunk)]
		keys = keys[len(chunk):]
		lockWB()
		n, err := p.copyChunk(ctx, fb, chunk, copied, full, do)
		unlockWB()
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// copyChunk writes back the keys of chunk, and returns how many it wrote.
func (p *Policy) copyChunk(ctx context.Context, fb backend.Backend, chunk []string, copied map[string]copiedKey, full *[]fullCounter, do func(context.Context, []backend.Op, []backend.Result) error) (int, error) {
	read := make([]backend.Op, len(chunk))
	for i, k := range chunk {
		read[i] = backend.ExistsOp(k)
	}
	got := make([]backend.Result, len(read))
	if err := fb.Do(ctx, read, got); err != nil {
		return 0, fmt.Errorf("lockout: fallback: %w", err)
	}
	var put []backend.Op
	var lengthen []int // indexes in put of lock markers and histories
	var values []copiedKey
	now := p.now()
	for i, k := range chunk {
		r := got[i]
		if !r.Found || r.Value <= 0 {
			continue
		}
		kind, ok := keyKind(p.prefix, k)
		if !ok {
			continue
		}
		v := copiedKey{value: r.Value, until: math.MaxInt64}
		if r.TTL != backend.NoExpiry {
			v.until = now + int64(r.TTL)
		}
		switch kind {
		case kindAttempts, kindHistory:
			var before int64
			if c, ok := copied[k]; ok && now < c.until {
				// The same key (one made again since would be past the
				// old one's end): what it counted since. Below what was
				// copied, a reservation given back in the fallback since
				// stays in the store: on the strict side.
				before = c.value
			}
			if r.Value <= before {
				continue
			}
			if kind == kindHistory {
				lengthen = append(lengthen, len(put))
			}
			put = append(put, backend.IncrOp(k, r.Value-before, r.TTL))
		case kindLock:
			if c, ok := copied[k]; ok && now < c.until && absDiff(c.until, v.until) < lockUntilSlack {
				continue // copied, and not made again nor lengthened since
			}
			lengthen = append(lengthen, len(put))
			put = append(put, backend.IncrOp(k, 1, r.TTL))
		default:
			continue
		}
		values = append(values, v)
	}
	if len(put) == 0 {
		return 0, nil
	}
	res := make([]backend.Result, len(put))
	if err := do(ctx, put, res); err != nil {
		return 0, err
	}
	for i, op := range put {
		copied[op.Key] = values[i]
		if kind, _ := keyKind(p.prefix, op.Key); kind == kindAttempts {
			if r := p.ruleOfKey(op.Key); r != nil && res[i].Value >= int64(r.Limit) && res[i].TTL != 0 {
				*full = append(*full, fullCounter{op.Key, res[i].TTL})
			}
		}
	}
	// A lock or a lockout history the store already held keeps its own
	// TTL: lengthen it where the fallback's lasts longer (a history lasts
	// HistoryWindow after its latest lock ends, historyTTL).
	var longer []backend.Op
	for _, i := range lengthen {
		want, have := put[i].TTL, res[i].TTL
		if have != backend.NoExpiry && (want == backend.NoExpiry || have < want) {
			longer = append(longer, backend.ExpireOp(put[i].Key, want))
		}
	}
	if len(longer) > 0 {
		if err := do(ctx, longer, make([]backend.Result, len(longer))); err != nil {
			for _, op := range longer {
				delete(copied, op.Key) // copied again, and lengthened
			}
			return len(put), err
		}
	}
	return len(put), nil
}

// now is the policy's monotonic clock, in nanoseconds since New.
func (p *Policy) now() int64 { return int64(time.Since(p.started)) }

// wallAnchor is a reading of the wall clock, at a time of Policy.now.
type wallAnchor struct{ wall, mono int64 }

// wallNow returns the time of day, for events: a monotonic clock read (half
// the cost of time.Now on some machines) added to the wall clock as read
// within the last second, so that a step of the wall clock shows within a
// second.
func (p *Policy) wallNow() time.Time { return p.wallAt(p.now()) }

// wallAt returns the time of day at mono, a reading of Policy.now, as
// wallNow does; 0 means now.
func (p *Policy) wallAt(mono int64) time.Time {
	if mono == 0 {
		mono = p.now()
	}
	a := p.anchor.Load()
	if a != nil && mono-a.mono < int64(time.Second) && a.mono-mono < int64(time.Second) {
		return time.Unix(0, a.wall+mono-a.mono)
	}
	t := time.Now()
	now := int64(t.Sub(p.started))
	if a == nil || now-a.mono >= int64(time.Second) {
		// One new anchor a second: decisions that started before it
		// still use it.
		p.anchor.CompareAndSwap(a, &wallAnchor{wall: t.UnixNano(), mono: now})
	}
	return time.Unix(0, t.UnixNano()-(now-mono))
}

// kindProbe is the kind of the key the probe writes.
const kindProbe = 'p'

// ruleOfKey returns the rule of the policy that key, one of its keys, is
// for; nil for none.
func (p *Policy) ruleOfKey(key string) *rule {
	rest, ok := strings.CutPrefix(key, p.prefix+":")
	if !ok || len(rest) < 2 {
		return nil
	}
	name, _, ok := strings.Cut(rest[2:], ":{")
	if !ok {
		return nil
	}
	for i := range p.rules {
		if p.rules[i].Name == name {
			return &p.rules[i]
		}
	}
	return nil
}

// keyKind returns the kind of a key the policy made. The fallback holds no
// other policy's keys, so the prefix and kind are enough.
func keyKind(prefix, key string) (byte, bool) {
	rest, ok := strings.CutPrefix(key, prefix+":")
	if !ok || len(rest) < 3 || rest[1] != ':' {
		return 0, false
	}
	return rest[0], true
}

// unlabeled runs f without the calling goroutine's profiler labels, so that
// the long-lived goroutines f starts (the fallback's and the lock cache's)
// are not counted against the request that happened to create them.
func unlabeled(f func()) {
	pprof.Do(context.Background(), pprof.Labels(), func(context.Context) { f() })
}
