package lockout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// DefaultTimeout is the deadline of each backend call of a decision when
// Config.Timeout is zero.
const DefaultTimeout = 500 * time.Millisecond

// Config configures a Policy. The zero value of each field means its
// documented default; only Rules is required.
type Config struct {
	// Rules are checked together: an attempt is refused when any
	// applicable rule refuses it.
	Rules []Rule

	// Prefix starts every key, so that several policies (or applications)
	// can share a store: 1 to 64 bytes of [A-Za-z0-9._:/-]. Default
	// DefaultPrefix ("lockout").
	Prefix string

	// Canonicalize maps a username to the form it is counted under, or
	// rejects it. Default CanonicalizeUsername (PRECIS UsernameCaseMapped).
	// It must map to one form every spelling that the application's
	// account lookup takes to one account (a lookup through
	// strings.ToLower, or a database collation that ignores accents, is
	// looser than PRECIS): each form has its own counters. Mapping a
	// username to the ID of the account it opens does that. It must also
	// take its own results back unchanged (f(f(u)) == f(u)): the operator
	// page and API list the canonical usernames, and pass them back to
	// Unlock and Status. An empty result for a username that is not empty
	// is an error wrapping ErrInvalidSubject: the username rules would not
	// apply to it.
	Canonicalize func(string) (string, error)

	// AllowIPs lists addresses and CIDR prefixes ("192.0.2.0/24") that are
	// never counted nor locked. AllowUsernames does the same for names.
	AllowIPs       []string
	AllowUsernames []string
	// DenyIPs and DenyUsernames are always refused, without a backend
	// call. They take precedence over the allow lists.
	DenyIPs       []string
	DenyUsernames []string

	// Timeout bounds each backend call of a decision. A call that takes
	// longer counts as a store failure (see Outage). Default
	// DefaultTimeout.
	Timeout time.Duration

	// Outage says how attempts are decided while the store fails, times
	// out or is full. Default Fallback: an in-process store decides them,
	// with the same rules and keys, so the limit holds during the outage.
	Outage Outage
	// FallbackMaxKeys caps the keys of the in-process fallback store. When
	// it is full, attempts that need a new key are refused
	// (ReasonUnavailable); nothing is admitted uncounted. Default
	// DefaultFallbackMaxKeys.
	FallbackMaxKeys int
	// ProbeInterval is how often a failing store is tried again, in the
	// background, while decisions go to the fallback. Default
	// DefaultProbeInterval.
	ProbeInterval time.Duration

	// LockCacheTTL bounds how long the policy remembers a lock it has seen
	// (a refusal it received, a lockout it made) without asking the store
	// again: a refusal for a remembered lock costs no backend call, and an
	// unlock made through another process takes effect here within
	// LockCacheTTL. While the store fails, remembered locks are honoured
	// until they end. Default DefaultLockCacheTTL; NoLockCache disables the
	// cache.
	LockCacheTTL time.Duration
	// LockCacheSize bounds the number of locks remembered. It also sizes
	// the filter in front of the cache, four slots of 8 bytes per lock it
	// can hold (8 KiB to 2 MiB), made with the cache at the first lock, and
	// bounds the lockout counts remembered beside it, which a lockout in
	// the fallback counts (made at the first lockout). Default
	// DefaultLockCacheSize.
	LockCacheSize int

	// Devices, when set, counts the attempts of clients that present a
	// valid device token on a key of their own device, so that failures
	// of untrusted clients do not lock them out (see DeviceConfig).
	// Default none.
	Devices *DeviceConfig
	// Fingerprints, when set, does not count a wrong password that the
	// username failed with recently again (see FingerprintConfig).
	// Default none.
	Fingerprints *FingerprintConfig

	// Observer hears every event: decisions, outcomes, lockouts,
	// operators' unlocks and resets, changes of degraded mode. Default
	// none, and then no event is built.
	Observer Observer
	// Journal, when set, keeps a record of every attempt's outcome,
	// lockout and operator action in a store that implements
	// backend.Journal (see JournalConfig). Default none.
	Journal *JournalConfig

	// Hooks are told about lockouts, refusals, backend errors and changes
	// of degraded mode (a subset of what an Observer hears).
	Hooks Hooks
	// Logger receives the same events: lockouts and the start of degraded
	// mode at Warn, backend errors at Error, its end at Info, refusals at
	// Debug. Default slog.Default().
	Logger *slog.Logger
}

// Hooks are functions the policy calls on events, synchronously, on the
// goroutine of the decision; Degraded on that of the call that started or
// ended degraded mode (a decision, the background probe, or Close), or of
// one reporting such a change made at the same time, so that its calls
// come in the order of the changes. The policy holds none of its locks
// while it calls a hook, which may call the policy. Nil hooks are skipped.
type Hooks struct {
	// Lockout is called when a rule key is locked.
	Lockout func(ctx context.Context, e LockoutEvent)
	// Refusal is called for every refused attempt.
	Refusal func(ctx context.Context, err *RefusedError)
	// BackendError is called when a backend call fails, whatever the
	// policy then does. While the policy is degraded it makes no backend
	// calls for decisions, so this is called once per outage, give or take
	// the calls that were in flight when it started.
	BackendError func(ctx context.Context, err error)
	// Degraded is called once when degraded mode starts (the store failed)
	// and once when it ends: the store answered again and what the
	// fallback counted was written back to it, or the policy was closed
	// (DegradedEvent.Err then wraps ErrClosed).
	Degraded func(ctx context.Context, e DegradedEvent)
}

// LockoutEvent describes a lockout.
type LockoutEvent struct {
	Rule string
	// Key is the rule's subject part, e.g. "u=alice".
	Key string
	// Duration is the lock's length, or Forever.
	Duration time.Duration
	// Count is the number of lockouts of this key within the history
	// window, this one included.
	Count int64
	// Fallback is set when the lock was set in the in-process fallback
	// store, because the store was failing.
	Fallback bool
}

// DegradedEvent describes a change of degraded mode.
type DegradedEvent struct {
	// Start is set when degraded mode starts, and clear when it ends:
	// when the store answers again, or when the policy is closed while
	// degraded.
	Start bool
	// Err is the store error that started degraded mode; at an end by
	// Close, an error that wraps it and ErrClosed.
	Err error
	// Duration is, when it ends, how long degraded mode lasted.
	Duration time.Duration
}

// Policy decides whether login attempts may go ahead. It is safe for
// concurrent use. Close releases its background resources.
type Policy struct {
	store       backend.Backend
	nonblocking bool // the store never blocks: its calls need no deadline
	guards      bool // the store guards give-backs (backend.ExpiryGuard)
	rules       []rule
	prefix      string
	canon       func(string) (string, error)
	allowNets   []netip.Prefix
	denyNets    []netip.Prefix
	allowUsers  map[string]bool
	denyUsers   map[string]bool
	timeout     time.Duration
	hooks       Hooks
	observer    Observer
	decisions   DecisionObserver // observer, when it is one
	journal     *journal         // nil: no journal
	clears      atomic.Uint64    // operators' clears (clearKeys) so far
	log         *slog.Logger
	devices     *devices      // nil: no known devices
	fp          *fingerprints // nil: no memory of wrong passwords

	outage          Outage
	fallbackMaxKeys int
	probeInterval   time.Duration
	cacheTTL        time.Duration
	cacheSize       int

	// mu guards the switch between the store and the fallback (epoch,
	// state changes into and out of degraded), and Close. Decisions that
	// use the fallback or the lock cache hold it for reading, but for the
	// lookups of the cache while the store is healthy, which count
	// themselves in readers instead.
	mu      sync.RWMutex
	closed  atomic.Bool
	breaker breaker
	cache   lockCache
	readers cacheReaders   // of the cache, without mu
	wg      sync.WaitGroup // the background probe
	started time.Time      // the clock's origin for the lock cache
	anchor  atomic.Pointer[wallAnchor]
	// memoryWriter writes the memory of wrong passwords in the
	// background, on a store whose calls are round trips; else nil.
	memoryWriter *memoryWriter
	fallback     backend.Backend
}

// New returns a Policy over store. It checks cfg and returns an error
// describing the first problem found.
func New(store backend.Backend, cfg Config) (*Policy, error) {
	if store == nil {
		return nil, errors.New("lockout: nil store")
	}
	if len(cfg.Rules) == 0 {
		return nil, errors.New("lockout: no rules")
	}
	p := &Policy{
		store:           store,
		prefix:          cfg.Prefix,
		canon:           cfg.Canonicalize,
		timeout:         cfg.Timeout,
		hooks:           cfg.Hooks,
		observer:        cfg.Observer,
		log:             cfg.Logger,
		outage:          cfg.Outage,
		fallbackMaxKeys: cfg.FallbackMaxKeys,
		probeInterval:   cfg.ProbeInterval,
		cacheTTL:        cfg.LockCacheTTL,
		cacheSize:       cfg.LockCacheSize,
		started:         time.Now(),
	}
	p.breaker.wb = make(chan struct{}, 1)
	p.readers.init(max(8, runtime.GOMAXPROCS(0)))
	if nb, ok := store.(backend.Nonblocking); ok {
		p.nonblocking = nb.Nonblocking()
	}
	if g, ok := store.(backend.ExpiryGuard); ok {
		p.guards = g.GuardsExpiry()
	}
	p.decisions, _ = cfg.Observer.(DecisionObserver)
	if p.prefix == "" {
		p.prefix = DefaultPrefix
	}
	if !validPrefix(p.prefix) {
		return nil, fmt.Errorf("lockout: prefix %q: want 1 to %d bytes of [A-Za-z0-9._:/-]", p.prefix, maxPrefixLen)
	}
	if p.canon == nil {
		p.canon = CanonicalizeUsername
	}
	if p.timeout == 0 {
		p.timeout = DefaultTimeout
	}
	if p.timeout < 0 {
		return nil, fmt.Errorf("lockout: timeout %v: want > 0", p.timeout)
	}
	if err := p.degradedDefaults(); err != nil {
		return nil, err
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	names := map[string]bool{}
	for i, r := range cfg.Rules {
		cr, err := r.compile()
		if err != nil {
			return nil, fmt.Errorf("lockout: rule %d: %w", i, err)
		}
		if names[cr.Name] {
			return nil, fmt.Errorf("lockout: two rules are named %q", cr.Name)
		}
		names[cr.Name] = true
		p.rules = append(p.rules, cr)
	}
	var err error
	if cfg.Devices != nil {
		var dr rule
		if p.devices, dr, err = newDevices(cfg.Devices); err != nil {
			return nil, fmt.Errorf("lockout: %w", err)
		} else if names[dr.Name] {
			return nil, fmt.Errorf("lockout: the device rule and another are named %q", dr.Name)
		}
		p.rules = append(p.rules, dr)
	}
	if cfg.Fingerprints != nil {
		if p.fp, err = newFingerprints(cfg.Fingerprints, p.rules); err != nil {
			return nil, fmt.Errorf("lockout: %w", err)
		}
	}
	if p.allowNets, err = parseNets(cfg.AllowIPs); err != nil {
		return nil, fmt.Errorf("lockout: AllowIPs: %w", err)
	}
	if p.denyNets, err = parseNets(cfg.DenyIPs); err != nil {
		return nil, fmt.Errorf("lockout: DenyIPs: %w", err)
	}
	if p.allowUsers, err = p.userSet(cfg.AllowUsernames); err != nil {
		return nil, fmt.Errorf("lockout: AllowUsernames: %w", err)
	}
	if p.denyUsers, err = p.userSet(cfg.DenyUsernames); err != nil {
		return nil, fmt.Errorf("lockout: DenyUsernames: %w", err)
	}
	// Last: they start the journal's writer and the memory's.
	if p.journal, err = newJournal(p, cfg.Journal); err != nil {
		return nil, err
	}
	if p.fp != nil && !p.nonblocking {
		p.memoryWriter = newMemoryWriter(p)
	}
	return p, nil
}

func parseNets(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			if p.Addr().Is4In6() {
				p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
			}
			out = append(out, p.Masked())
			continue
		}
		ip, err := ParseIP(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR prefix", s)
		}
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

func (p *Policy) userSet(list []string) (map[string]bool, error) {
	m := map[string]bool{}
	for _, u := range list {
		c, err := p.canon(u)
		if err != nil {
			return nil, fmt.Errorf("username %q: %w", u, err)
		}
		m[c] = true
	}
	return m, nil
}

func inNets(nets []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Close stops the policy's background work (the probe of a failing store,
// the writers of the journal and of the memory of wrong passwords, after
// they wrote what is queued) and releases its lock cache and fallback
// store. It does not close the
// store. Decisions and operator calls made after Close return an error
// wrapping ErrClosed. So do the reports of attempts admitted before that
// need a store call: a Success then gives nothing back (the reservation
// counts as a failure until its window ends), and a Failure on a key's
// last slot sets no lock (the key is refused for capacity until its window
// ends, and the lockout is not counted). A Failure that needs no call
// returns nil. Close does not wait for calls in flight; stop the callers
// first (http.Server.Shutdown, say). Close may be called more than once.
func (p *Policy) Close() error {
	if p.memoryWriter != nil {
		p.memoryWriter.close() // writes what is queued, while the store may be used
	}
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return nil
	}
	p.closed.Store(true)
	// Closed while degraded: degraded mode ends with the policy, and is
	// reported so, so that whoever counts the periods (an observer's
	// gauge of degraded policies) sees it end.
	if p.breaker.state.Load() == degraded {
		p.endDegraded(errors.Join(ErrClosed, p.breaker.cause), "lockout: policy closed, degraded mode ends")
	}
	p.mu.Unlock()
	p.reportDegraded(context.Background())
	p.wg.Wait() // the probe sees closed and stops
	if p.journal != nil {
		p.journal.close() // writes what is queued
	}
	p.readers.wait() // lookups of the cache that began before closed
	p.cache.close()
	if p.fallback != nil {
		return p.fallback.Close()
	}
	return nil
}

// An Attempt is an admitted login attempt, waiting for its outcome. Report
// it once, with Success or Failure; one never reported counts as a failure
// (see the package doc).
type Attempt struct {
	p           *Policy
	c           canonical // the subject, for events
	keys        string    // every key of the attempt, concatenated
	rules       []held
	reported    atomic.Bool
	allowlisted bool // here, with succeeded, in what would be padding
	succeeded   bool // set by Success, after reported
	// err is the backend error the attempt was admitted despite
	// (AdmitUncounted); allowlisted marks an attempt on the allow lists.
	err error
	// at is where the attempt's reservations are: in the store, or in the
	// fallback of one degraded period.
	at route

	heldBuf [4]held
}

// held is one applicable rule of an attempt: where its keys are, and its
// reservation.
type held struct {
	r *rule
	// at and n place the rule's keys in Attempt.keys: its counter's key
	// is the n bytes at at, its lock marker's the n bytes after them.
	// Its history's key, needed far less often, is built on demand
	// (historyKeys).
	at, n int32
	value int64 // the counter's value after the reservation
	// until is when the counter that holds the reservation ends, as the
	// reservation read it: its Result.Expires where the store guards
	// give-backs (Policy.guardsAt), else the earliest it can end on the
	// policy's clock (Policy.now). 0 when it never ends or the store did
	// not say. See giveBack.
	until int64
}

// giveBack returns the give-back of h's reservation, to be sent now, or
// false when none is to be sent. A give-back is a
// decrement, and a plain one lands on whatever counter holds the key: one
// that lands after the reserved counter ended takes a count from the next
// one, a guess more for whoever times attempts at a window's end.
//
// Where the store guards give-backs (backend.ExpiryGuard), the decrement
// applies, on a fixed window, only to a counter that expires when the
// reserved one does: that one, never one made again after it ended or was
// cleared. On a sliding window, only to one that expires before the
// reserved one's expiry plus the window: the reserved counter, however
// often refreshed, and never one made after it ended; but one made again
// after a lockout or a reset cleared it, before it would have ended, may.
//
// Elsewhere (memcached), on a fixed window, it is not sent when the counter
// ends within the call's deadline (Config.Timeout; a store that stalls
// longer may apply it later still): the reservation then counts until its
// counter ends, the safe side, and soon. On a sliding window it is always
// sent, as it was: a failure in those last moments would refresh the
// counter, and the reservation would count for a whole window, a way to
// hold a user at capacity without a lockout.
//
// A reservation made in a fallback since written back to the store gives
// nothing back: what it read of its counter says nothing of the store's,
// which holds its count now and may end first.
func (a *Attempt) giveBack(h held) (backend.Op, bool) {
	op := backend.IncrOp(a.attemptsKey(h), -1, h.r.Window)
	if a.at.fallback && a.p.writtenBack(a.at) {
		return op, false
	}
	guards := a.p.guardsAt(a.at)
	switch {
	case h.until == 0:
		return op, true // a counter that never ends, or the store did not say
	case guards && !h.r.Sliding:
		// A fixed window's counter keeps its expiry: it alone expires at
		// h.until, where one made again later (after a lockout or a reset
		// cleared it, or by a write-back) expires later.
		op.IfExpiresBefore = h.until + 1
		return op, true
	case guards:
		op.IfExpiresBefore = h.until + min(int64(h.r.Window), math.MaxInt64-h.until)
		return op, true
	case h.r.Sliding:
		return op, true
	}
	return op, h.until-a.p.now() > int64(a.p.timeout)
}

// guardsAt reports whether the store that holds the reservations of at
// guards give-backs (backend.ExpiryGuard): the fallback, a memory store,
// does.
func (p *Policy) guardsAt(at route) bool { return at.fallback || p.guards }

type span struct{ start, end int32 }

func (a *Attempt) key(s span) string { return a.keys[s.start:s.end] }

// attemptsKey returns the key of h's attempt counter.
func (a *Attempt) attemptsKey(h held) string { return a.keys[h.at : h.at+h.n] }

// lockKey returns the key of h's lock marker.
func (a *Attempt) lockKey(h held) string { return a.keys[h.at+h.n : h.at+2*h.n] }

// subjectKey returns h's subject part, as it sits in its keys (without
// the braces).
func (a *Attempt) subjectKey(h held) string {
	// prefix ":" kind ":" name ":{" subject "}"; see appendKey.
	start := h.at + int32(len(a.p.prefix)+len(h.r.Name)+5)
	return a.keys[start : h.at+h.n-1]
}

// historyKeys returns the keys of the attempt's lockout histories, in one
// allocation: a copy of the attempt's keys in which each counter's key
// names its rule's history instead (the kind after the prefix).
func (a *Attempt) historyKeys() historyKeys {
	var b strings.Builder
	b.Grow(len(a.keys))
	last := 0
	for _, h := range a.rules {
		kind := int(h.at) + len(a.p.prefix) + 1
		b.WriteString(a.keys[last:kind])
		b.WriteByte(kindHistory)
		last = kind + 1
	}
	b.WriteString(a.keys[last:])
	return historyKeys(b.String())
}

// historyKeys holds an attempt's history keys (Attempt.historyKeys).
type historyKeys string

// of returns the key of h's lockout history.
func (k historyKeys) of(h held) string { return string(k[h.at : h.at+h.n]) }

// Err returns the backend error the attempt was admitted despite, without
// being counted (Outage: AdmitUncounted), or nil.
func (a *Attempt) Err() error { return a.err }

// Allowlisted reports whether the attempt was admitted by an allow list,
// without being counted.
func (a *Attempt) Allowlisted() bool { return a.allowlisted }

// Fallback reports whether the in-process fallback store decided the
// attempt, because the store was failing.
func (a *Attempt) Fallback() bool { return a.at.fallback }

// Allow asks whether a login attempt by s may go ahead, reserving one attempt
// on every applicable rule key. On success the caller verifies the password
// and reports the outcome on the returned Attempt. Otherwise the error is a
// *RefusedError (errors.Is(err, ErrRefused)), wraps ErrInvalidSubject or
// ErrClosed, or, when ctx ends first, wraps ctx's error; in every case the
// password must not be verified. A ctx that ends is the caller giving up,
// not a store failure: it is neither admitted nor reported to the hooks.
// A store call already sent then runs to its end (within Config.Timeout),
// and what it reserved is given back (a call of its own, within Timeout
// too; dropped if the policy is closed meanwhile): a client that goes away
// while Allow waits leaves no count behind.
func (p *Policy) Allow(ctx context.Context, s Subject) (*Attempt, error) {
	if d := p.decisions; d != nil {
		start := p.now()
		ctx = d.StartDecision(ctx, OpAllow)
		a, err := p.allow(ctx, s, start)
		d.EndDecision(ctx, OpAllow, time.Duration(p.now()-start), err)
		return a, err
	}
	return p.allow(ctx, s, 0)
}

// attemptPool holds Attempts that Allow made and dropped, refused from
// the lock cache.
var attemptPool = sync.Pool{New: func() any { return new(Attempt) }}

// allow is Allow; start is when it started (Policy.now), 0 when not read.
func (p *Policy) allow(ctx context.Context, s Subject, start int64) (*Attempt, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	a := attemptPool.Get().(*Attempt)
	*a = Attempt{p: p}
	c := &a.c
	if err := p.canonicalizeTo(c, &s); err != nil {
		return nil, err
	}
	c.start = start
	if inNets(p.denyNets, c.ip) || (c.username != "" && p.denyUsers[c.username]) {
		return nil, p.refuse(ctx, c, &RefusedError{Reason: ReasonDenylisted})
	}
	if inNets(p.allowNets, c.ip) || (c.username != "" && p.allowUsers[c.username]) {
		a.allowlisted = true
		return p.admitted(ctx, a)
	}
	a.buildKeys(c)
	if len(a.rules) == 0 {
		return p.admitted(ctx, a)
	}
	// Before the reservation is sent: the counters it reads end no
	// earlier than this plus their TTL (held.until).
	sent := p.now()
	if refusal, err := a.remembered(sent, false); err != nil || refusal != nil {
		if err != nil {
			return nil, err
		}
		if p.breaker.state.Load() == degraded {
			// Probes are driven by decisions: keep them going while
			// remembered locks answer every one.
			p.maybeProbe()
		}
		err := p.refuse(ctx, c, refusal)
		// Nothing holds a now: the refusal's and the events' strings
		// share a.keys, a string that buildKeys makes afresh for every
		// decision (it must never build into a buffer kept in the
		// Attempt). The next Allow may take it, emptied first, so that
		// the pool keeps no subject (nor a password's fingerprint). A
		// refusal from the cache is all an attacker's flood at a locked
		// account costs, and the Attempt was a third of it.
		*a = Attempt{}
		attemptPool.Put(a)
		return nil, err
	}

	// The batch: each rule's counter, then each rule's lock marker, then
	// the fingerprint's reads. The reads come last, after every write: a
	// store can then read them all at once (Redis: one EXISTS), and the
	// contract still has each follow the writes of its hash tag.
	nr := len(a.rules)
	n := 2 * nr
	sc, ops, res := getScratch(n + a.fpOps())
	defer putScratch(sc)
	a.appendFingerprintReads(ops[n:])
	for i, h := range a.rules {
		// The counter's TTL is read too (no SkipTTL): a give-back must
		// know when the counter it is for ends (giveBack).
		ops[i] = backend.IncrOp(a.attemptsKey(h), 1, h.r.Window)
		ops[nr+i] = backend.ExistsOp(a.lockKey(h))
	}
	// On a store that can block, the call runs to its end (Config.Timeout)
	// even when the caller gives up meanwhile: a network store may have
	// applied it, and only its answer says so, for the give-back below. A
	// caller that gave up before makes no call.
	actx := ctx
	if !p.nonblocking {
		if ctx.Err() != nil {
			return nil, gaveUpErr(ctx)
		}
		actx = uncancelled(ctx)
	}
	at, err := p.admit(actx, a, ops, res)
	if err != nil {
		var remembered *RefusedError
		switch {
		case errors.As(err, &remembered):
			return nil, p.refuse(ctx, c, remembered)
		case ctx.Err() != nil:
			return nil, gaveUpErr(ctx)
		case errors.Is(err, ErrClosed):
			return nil, err
		case p.outage == AdmitUncounted && !at.fallback:
			a.err = err
			a.rules = nil // nothing was reserved that the outcome should touch
			return p.admitted(ctx, a)
		}
		return nil, p.refuse(ctx, c, &RefusedError{Reason: ReasonUnavailable, Err: err, Fallback: at.fallback})
	}
	a.at = at
	a.readFingerprint(res[n:])

	guards := p.guardsAt(at)
	var found RefusedError // the longest refusal, built on the stack
	var lockedBuf [4]int
	locked := lockedBuf[:0] // the rules whose lock the store holds
	for i := range a.rules {
		h := &a.rules[i]
		cnt, lock := res[i], res[nr+i]
		h.value = cnt.Value
		switch {
		case cnt.TTL == backend.NoExpiry:
		case guards:
			if cnt.Expires < math.MaxInt64 { // saturated: as if unknown
				h.until = cnt.Expires
			}
		case cnt.TTL > 0:
			h.until = sent + min(int64(cnt.TTL), math.MaxInt64-sent)
		}
		var e RefusedError
		switch {
		case lock.Found:
			e = RefusedError{Reason: ReasonLocked, RetryAfter: lock.TTL, Forever: lock.TTL == backend.NoExpiry}
			p.remember(a.lockKey(*h), lock.TTL, false)
			locked = append(locked, i)
		case cnt.Value > int64(h.r.Limit):
			e = RefusedError{Reason: ReasonCapacity, RetryAfter: cnt.TTL, Forever: cnt.TTL == backend.NoExpiry}
		default:
			continue
		}
		if e.Forever {
			e.RetryAfter = 0
		}
		e.Rule, e.Key, e.Fallback = h.r.Name, a.subjectKey(*h), at.fallback
		if found.Reason == 0 || longer(&e, &found) {
			found = e
		}
	}
	// The caller gave up while the call ran: what it reserved goes back,
	// as for a refusal, and nothing is reported. (Kept, as an abandoned
	// attempt's is, it would count for the counter's window with no
	// password checked, no failure and no lock: a client that disconnects
	// during Allow, Limit times, refused the owner for a whole window, a
	// Forever window until an operator stepped in, a review found.)
	gaveUp := found.Reason == 0 && ctx.Err() != nil
	if found.Reason == 0 && !gaveUp {
		// A key whose last slot this attempt took refuses every other
		// attempt until it reports: remember that, so that the refusals
		// cost no store call and still hold if the store fails before the
		// lock is set (an outage's fallback would start the key afresh).
		for i := range a.rules {
			if h := &a.rules[i]; h.value == int64(h.r.Limit) {
				ttl := res[i].TTL
				if ttl == 0 { // not reported: at most the window
					ttl = h.r.Window
				}
				p.remember(a.attemptsKey(*h), ttl, true)
			}
		}
		return p.admitted(ctx, a)
	}
	refusal := new(RefusedError) // only now on the heap
	*refusal = found
	// Give back every reservation this attempt made, unless its counter
	// may end before the give-back lands (giveBack). A counter brought
	// back to zero is removed, so refused traffic leaves no key behind.
	ops = ops[:0]
	for _, h := range a.rules {
		if op, ok := a.giveBack(h); ok {
			ops = append(ops, op)
		}
	}
	gave := len(ops)
	if a.at.fallback || p.cacheTTL == NoLockCache {
		locked = locked[:0]
	}
	// The same call reads the lockout count of each lock the store holds,
	// after the give-backs: a lockout this process's fallback makes during
	// an outage counts them (lockoutCount), and it learns them only here
	// and from its own lockouts.
	var hist historyKeys
	if len(locked) > 0 {
		hist = a.historyKeys()
	}
	for _, i := range locked {
		ops = append(ops, backend.ExistsOp(hist.of(a.rules[i])))
	}
	res = res[:len(ops)]
	if len(ops) > 0 {
		if _, err := p.execAt(uncancelled(ctx), a.at, ops, res, false); err == nil {
			for j, i := range locked {
				if r := res[gave+j]; r.Found && r.Value > 0 {
					ttl := r.TTL
					if ttl == backend.NoExpiry {
						ttl = 0
					}
					p.lockoutCount(hist.of(a.rules[i]), r.Value, route{}, func(int64) time.Duration { return ttl }, false)
				}
			}
		}
	}
	if refusal.Reason == ReasonCapacity && refusal.RetryAfter == 0 && !refusal.Forever {
		refusal.RetryAfter = p.windowOf(refusal.Rule) // not reported: at most the window
	}
	if refusal.RetryAfter == backend.NoExpiry { // a window that never ends
		refusal.RetryAfter, refusal.Forever = 0, true
	}
	if gaveUp {
		return nil, gaveUpErr(ctx)
	}
	return nil, p.refuse(ctx, c, refusal) // a failed give-back is reported; the refusal stands
}

// remembered returns the refusal for the longest lock of the attempt's
// rule keys that the lock cache holds (its RetryAfter at most a
// millisecond longer than that lock's), or nil, at now (Policy.now).
// Locks seen longer ago than the cache's TTL count only when stale is set,
// or the policy is degraded.
func (a *Attempt) remembered(now int64, stale bool) (*RefusedError, error) {
	p := a.p
	if !p.cache.inUse() {
		return nil, nil
	}
	// The filter first, without the policy's lock, whose readers' count
	// every core would write: most attempts have no key to look up. One
	// slot per rule, which its counter and lock marker share.
	var endBuf [4]int64
	ends, maybe := endBuf[:0], false
	for _, h := range a.rules {
		end := p.cache.slot(p.filterPart(a.lockKey(h))).Load()
		ends, maybe = append(ends, end), maybe || end > now
	}
	if !maybe {
		return nil, nil
	}
	// While the store is healthy, the lookups need only be kept clear of
	// Close (cacheReaders). Policy.mu orders the rest: stale locks and
	// the carry into the fallback. Should degraded mode start meanwhile,
	// this refusal is one made before it.
	isDegraded := p.breaker.state.Load() == degraded
	if stale || isDegraded {
		p.mu.RLock()
		defer p.mu.RUnlock()
		isDegraded = p.breaker.state.Load() == degraded
	} else {
		c := p.readers.enter()
		defer p.readers.leave(c)
	}
	if p.closed.Load() {
		return nil, ErrClosed
	}
	if testHookCacheLookup != nil {
		testHookCacheLookup()
	}
	staleOK := stale || isDegraded
	// The refusals are built on the stack: only the one returned escapes.
	var refusal RefusedError
	var carry []backend.Op
	for i, h := range a.rules {
		key, end := a.lockKey(h), ends[i]
		if end <= now {
			continue // nothing remembered
		}
		if !isDegraded && refusal.Reason != 0 && (refusal.Forever || end-now <= int64(refusal.RetryAfter+time.Millisecond)) {
			// Nothing that would outlast the lock found by more than a
			// millisecond (a lockout locks its rules one after the
			// other, microseconds apart): not worth a lookup. The wait
			// asked for covers it, so that a client that waits as told
			// is not refused again. While degraded, every lock found is
			// looked up, to be carried to the fallback.
			if !refusal.Forever && time.Duration(end-now) > refusal.RetryAfter {
				refusal.RetryAfter = time.Duration(end - now)
			}
			continue
		}
		left, ok := p.cache.get(key, now, staleOK)
		if !ok {
			continue
		}
		e := RefusedError{Reason: ReasonLocked, Rule: h.r.Name, Key: a.subjectKey(h), RetryAfter: left, Remembered: true}
		if left == backend.NoExpiry {
			e.RetryAfter, e.Forever = 0, true
		}
		if refusal.Reason == 0 || longer(&e, &refusal) {
			refusal = e
		}
		if isDegraded && p.fallback != nil && p.outage == Fallback {
			// Not in the other modes, whose fallback holds only the locks
			// made during the outage: a lock remembered here may have
			// been lifted through another process since (the cache trusts
			// a stale lock while degraded), and its write-back would
			// bring it back (a review, with a Forever lock).
			carry = append(carry, backend.IncrOp(key, 1, left))
		}
	}
	// A lock says more than a full counter: the counters only matter
	// when no lock is remembered.
	for i := 0; i < len(a.rules) && refusal.Reason == 0; i++ {
		if ends[i] <= now {
			continue // the counter's slot is its lock marker's
		}
		h := &a.rules[i]
		if left, ok := p.cache.get(a.attemptsKey(*h), now, staleOK); ok {
			// Every slot is taken by an attempt of this process that has
			// not reported yet.
			refusal = RefusedError{Reason: ReasonCapacity, Rule: h.r.Name, Key: a.subjectKey(*h), RetryAfter: left, Remembered: true}
			if left == backend.NoExpiry {
				refusal.RetryAfter, refusal.Forever = 0, true
			}
		}
	}
	if len(carry) > 0 {
		// The fallback learns the lock too, so that the write-back at the
		// end of the outage restores it in a store that lost it (one
		// restarted empty). Best effort: the refusal stands either way.
		_ = p.fallback.Do(context.Background(), carry, make([]backend.Result, len(carry)))
	}
	if refusal.Reason == 0 {
		return nil, nil
	}
	e := new(RefusedError) // only now on the heap
	*e = refusal
	return e, nil
}

// longer reports whether a asks to wait longer than b.
func longer(a, b *RefusedError) bool {
	if a.Forever != b.Forever {
		return a.Forever
	}
	if a.Reason != b.Reason && a.RetryAfter == b.RetryAfter {
		return a.Reason == ReasonLocked
	}
	return a.RetryAfter > b.RetryAfter
}

// buildKeys computes the keys of every rule that applies to c, in one
// string.
func (a *Attempt) buildKeys(c *canonical) {
	p := a.p
	var stack [512]byte // three rules' keys, usually: about 300 bytes
	buf := stack[:0]
	a.rules = a.heldBuf[:0]
	for i := range p.rules {
		r := &p.rules[i]
		if c.device() != "" && r.hasUsername && !r.device {
			continue // a known device counts on its own key instead
		}
		// The counter's key, as appendKey makes it, with the subject
		// written in place; then the lock marker's, a copy but for its
		// kind.
		at := len(buf)
		buf = append(buf, p.prefix...)
		buf = append(buf, ':', kindAttempts, ':')
		buf = append(buf, r.Name...)
		buf = append(buf, ':', '{')
		var ok bool
		if buf, ok = appendSubject(buf, r, c); !ok {
			buf = buf[:at]
			continue
		}
		buf = append(buf, '}')
		n := len(buf) - at
		buf = append(buf, buf[at:]...)
		buf[at+n+len(p.prefix)+1] = kindLock
		a.rules = append(a.rules, held{r: r, at: int32(at), n: int32(n)})
	}
	if fp := c.fingerprint(); fp != "" {
		buf, c.x.fpSeq, c.x.fpKey = appendFingerprintKeys(buf, p.prefix, c.username, fp)
	}
	a.keys = string(buf)
}

// getScratch returns n operations and results for one store call, and the
// scratch to release with putScratch when they are no longer used.
func getScratch(n int) (*scratch, []backend.Op, []backend.Result) {
	if n > len(scratch{}.ops) {
		return nil, make([]backend.Op, n), make([]backend.Result, n)
	}
	sc := scratchPool.Get().(*scratch)
	return sc, sc.ops[:n:n], sc.res[:n:n]
}

// putScratch releases what getScratch returned.
func putScratch(sc *scratch) {
	if sc != nil {
		scratchPool.Put(sc)
	}
}

// scratch holds the operations and results of a decision's store calls
// (up to four rules). It is pooled: an Attempt outlives its calls and need
// not carry them. Its operations are not cleared when it is put back: the
// next decision overwrites them, and meanwhile they keep the keys of the
// last one reachable, a few hundred bytes per pooled scratch, until the
// pool drops it at a garbage collection. Clearing them cost every decision
// a clear of pointers, with write barriers while the collector runs.
type scratch struct {
	ops [16]backend.Op
	res [16]backend.Result
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// Success reports that the password was right: rules keyed by the username
// reset their counters, the others give back this attempt's reservation.
// It costs one backend call. The error is a backend failure (also reported
// to the hooks), or ErrReported.
func (a *Attempt) Success(ctx context.Context) error {
	if d := a.p.decisions; d != nil {
		start := a.p.now()
		ctx = d.StartDecision(ctx, OpSuccess)
		err := a.success(ctx, start)
		d.EndDecision(ctx, OpSuccess, time.Duration(a.p.now()-start), err)
		return err
	}
	return a.success(ctx, 0)
}

// success is Success; start is when it started (Policy.now), 0 when not
// read.
func (a *Attempt) success(ctx context.Context, start int64) error {
	if !a.reported.CompareAndSwap(false, true) {
		return ErrReported
	}
	a.succeeded = true
	a.p.outcome(ctx, a, EventSuccess, start)
	if len(a.rules) == 0 {
		return nil
	}
	sc, ops, res := getScratch(len(a.rules))
	defer putScratch(sc)
	ops = ops[:0]
	for _, h := range a.rules {
		if h.r.reset {
			ops = append(ops, backend.DeleteOp(a.attemptsKey(h)))
		} else {
			op, ok := a.giveBack(h)
			if !ok {
				continue // its counter may end before the give-back lands
			}
			ops = append(ops, op)
		}
		if h.value == int64(h.r.Limit) || a.p.mayRemember(a.lockKey(h)) {
			// Its last slot is free again, or a write-back remembered
			// the counter full (fullCounter), which this empties.
			a.p.forget(a.attemptsKey(h))
		}
	}
	if len(ops) == 0 {
		return nil
	}
	_, err := a.p.execAt(uncancelled(ctx), a.at, ops, res[:len(ops)], false)
	return err
}

// Failure reports that the password was wrong. The reservation made by
// Allow already counts it, so this costs no backend call, except one to
// refresh a sliding window, and two when this failure locks a key. The
// error is a backend failure (also reported to the hooks), or ErrReported.
func (a *Attempt) Failure(ctx context.Context) error {
	if d := a.p.decisions; d != nil {
		start := a.p.now()
		ctx = d.StartDecision(ctx, OpFailure)
		err := a.failure(ctx, start)
		d.EndDecision(ctx, OpFailure, time.Duration(a.p.now()-start), err)
		return err
	}
	return a.failure(ctx, 0)
}

// failure is Failure; start is when it started (Policy.now), 0 when not
// read.
func (a *Attempt) failure(ctx context.Context, start int64) error {
	if !a.reported.CompareAndSwap(false, true) {
		return ErrReported
	}
	a.p.outcome(ctx, a, EventFailure, start)
	if len(a.rules) == 0 {
		return nil
	}
	// One call refreshes sliding windows and, for each rule whose last
	// slot this attempt held, takes the lock marker (only its creator goes
	// on) and counts the lockout. A lockCall is such a rule: where its two
	// increments went in the call (indexes in ops and res).
	type lockCall struct {
		h               *held
		marker, history int
	}
	var lockBuf [4]lockCall
	locking := lockBuf[:0]
	// The call's operations, in a scratch taken with the first: the
	// usual failure (fixed windows, no lock) takes none.
	var (
		sc    *scratch
		ops   []backend.Op
		res   []backend.Result
		taken bool
	)
	defer func() { putScratch(sc) }()
	add := func(more ...backend.Op) {
		if !taken {
			sc, ops, res = getScratch(3*len(a.rules) + 2*a.fpOps())
			ops, taken = ops[:0], true
		}
		ops = append(ops, more...)
	}
	for i := range a.rules {
		h := &a.rules[i]
		switch {
		case a.Repeat() && h.r.hasUsername:
			// A remembered wrong password: not a new guess, unless its
			// counter may end before the give-back lands (giveBack).
			op, ok := a.giveBack(*h)
			if !ok {
				continue
			}
			add(op)
			if h.value == int64(h.r.Limit) || a.p.mayRemember(a.lockKey(*h)) {
				a.p.forget(a.attemptsKey(*h)) // its last slot is free again
			}
		case h.value == int64(h.r.Limit):
			locking = append(locking, lockCall{h: h})
		case h.r.Sliding:
			add(backend.ExpireOp(a.attemptsKey(*h), h.r.Window))
		}
	}
	if x := a.memory(); x != nil && !x.repeat && len(ops) == 0 && len(locking) == 0 && a.p.memoryWriter != nil {
		// The failure makes no call of its own: its memory goes in the
		// background, with others.
		a.p.memoryWriter.add(a.memoryWrite())
	} else if x != nil {
		add()
		ops = a.appendFingerprintWrites(ops)
	}
	var hist historyKeys
	if len(locking) > 0 {
		hist = a.historyKeys()
	}
	for i := range locking {
		l := &locking[i]
		provisional, err := lockDuration(l.h.r.Schedule, 1)
		if err != nil || provisional == Forever {
			provisional = l.h.r.Window
		}
		l.marker, l.history = len(ops), len(ops)+1
		add(backend.IncrOp(a.lockKey(*l.h), 1, provisional),
			backend.IncrOp(hist.of(*l.h), 1, l.h.r.HistoryWindow))
	}
	if len(ops) == 0 {
		return nil
	}
	// Reporting must not be lost to a client that went away.
	ctx = uncancelled(ctx)
	// A refresh alone is dropped while the store it is for fails; a lock
	// must not be: it goes to the fallback then.
	at, err := a.p.execAt(ctx, a.at, ops, res[:len(ops)], len(locking) > 0)
	if err != nil || len(locking) == 0 {
		return err
	}
	var errs []error

	// Second call: the owners set the lock's duration and clear the
	// counter; a concurrent locker that lost the marker gives back its
	// history increment.
	type lockout struct {
		h   *held
		d   time.Duration
		ttl time.Duration // d in the store: backend.NoExpiry for Forever
		n   int64
	}
	var lockouts [4]lockout
	done := lockouts[:0]
	ops2 := make([]backend.Op, 0, 3*len(locking))
	for _, l := range locking {
		h, marker, count := l.h, res[l.marker], res[l.history]
		if marker.Value != 1 {
			ops2 = append(ops2, backend.IncrOp(hist.of(*h), -1, h.r.HistoryWindow))
			continue
		}
		var d time.Duration
		n := a.p.lockoutCount(hist.of(*h), count.Value, at, func(n int64) time.Duration {
			var err error
			if d, err = lockDuration(h.r.Schedule, int(min(n, math.MaxInt32))); err != nil {
				errs = append(errs, err)
				d = h.r.Window
			}
			return historyTTL(h.r.HistoryWindow, d)
		}, true)
		ttl := d
		if d == Forever {
			ttl = backend.NoExpiry
		}
		ops2 = append(ops2,
			backend.ExpireOp(a.lockKey(*h), ttl),
			backend.DeleteOp(a.attemptsKey(*h)),
			backend.ExpireOp(hist.of(*h), historyTTL(h.r.HistoryWindow, d)))
		done = append(done, lockout{h, d, ttl, n})
	}
	at2, err := a.p.execAt(ctx, at, ops2, make([]backend.Result, len(ops2)), true)
	switch {
	case err != nil:
		errs = append(errs, err)
	case at2.fallback && !at.fallback && len(done) > 0:
		// The store failed between the two calls: the first call's
		// marker is in the store, with its provisional TTL, and the
		// second found none in the fallback. Make it there, for the
		// lock's length: the fallback refuses for as long, and its
		// write-back lengthens the store's marker when the store
		// recovers. (Otherwise the lock would end with the provisional
		// TTL, and the counter, left full, refuse only for its window.)
		fix := make([]backend.Op, len(done))
		for i, l := range done {
			fix[i] = backend.IncrOp(a.lockKey(*l.h), 1, l.ttl)
		}
		if _, err := a.p.execAt(ctx, at2, fix, make([]backend.Result, len(fix)), true); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range done {
		a.p.remember(a.lockKey(*l.h), l.ttl, true)
		a.p.forget(a.attemptsKey(*l.h)) // the lock refuses now; the counter is cleared
		a.p.lockedOut(ctx, &a.c, LockoutEvent{Rule: l.h.r.Name, Key: a.subjectKey(*l.h), Duration: l.d, Count: l.n, Fallback: at.fallback})
	}
	return errors.Join(errs...)
}

// historyTTL returns how long a key's lockout history lasts from a
// lockout of d: HistoryWindow after the lock ends, so that a lock longer
// than the window does not outlive the count that made it (the next
// lockout escalates from it); HistoryWindow after it starts for a lock
// that never ends, so that a Forever lock an operator lifts after
// HistoryWindow leaves no history (the next lockout is the first).
func historyTTL(window, d time.Duration) time.Duration {
	if d == Forever || d <= 0 || d > math.MaxInt64-window {
		return window
	}
	return window + d
}

// Check runs one whole attempt: Allow, then verify, then Success or Failure.
// verify reports whether the password is right; an error from it counts as
// a failure and is returned. A panic in verify counts as a failure too, and
// goes on. Check returns true only for an admitted attempt that verify
// accepted. Backend errors after verify are reported to the hooks and the
// logger only: the outcome stands.
func (p *Policy) Check(ctx context.Context, s Subject, verify func(context.Context) (bool, error)) (bool, error) {
	a, err := p.Allow(ctx, s)
	if err != nil {
		return false, err
	}
	reported := false
	defer func() {
		if !reported {
			a.Failure(ctx)
		}
	}()
	ok, err := verify(ctx)
	reported = true
	if err != nil || !ok {
		a.Failure(ctx)
		return false, err
	}
	a.Success(ctx)
	return true, nil
}

// do runs one call to the store under the policy's deadline and reports
// its error.
func (p *Policy) do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	if p.closed.Load() {
		return ErrClosed
	}
	var start int64
	if p.decisions != nil {
		start = p.now() // a monotonic clock read: cheaper than time.Now
	}
	var err error
	if p.nonblocking {
		err = p.store.Do(ctx, ops, res) // no deadline to enforce: saves its cost
	} else {
		tctx, cancel := context.WithTimeout(ctx, p.timeout)
		err = p.store.Do(tctx, ops, res)
		cancel()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = gaveUpErr(ctx) // not the store's fault
		} else {
			err = fmt.Errorf("lockout: backend: %w", err)
			p.backendError(ctx, err)
		}
	}
	if p.decisions != nil {
		e := Event{Kind: EventStoreCall, Latency: time.Duration(p.now() - start), Count: int64(len(ops)), Err: err}
		e.Time = p.started.Add(time.Duration(start))
		p.decisions.Observe(ctx, e)
	}
	return err
}

// gaveUpErr is the error of a call whose caller gave up: it wraps ctx's
// cause.
func gaveUpErr(ctx context.Context) error {
	return fmt.Errorf("lockout: %w", context.Cause(ctx))
}

func (p *Policy) backendError(ctx context.Context, err error) {
	p.log.LogAttrs(ctx, slog.LevelError, "lockout: backend error", slog.Any("error", err), slog.String("outage", p.outage.String()))
	if p.hooks.BackendError != nil {
		p.hooks.BackendError(ctx, err)
	}
}

// admitted reports a, admitted, to the observer, and returns it.
func (p *Policy) admitted(ctx context.Context, a *Attempt) (*Attempt, error) {
	if p.observer != nil { // the journal records outcomes, not admissions
		p.observer.Observe(ctx, Event{Kind: EventAdmitted, Time: p.wallAt(a.c.start), Subject: a.c.subject(), Fallback: a.at.fallback})
	}
	return a, nil
}

// outcome reports a's outcome (EventSuccess or EventFailure) to the
// observer and the journal. With the journal alone, it builds no Event.
// start is when the report started (Policy.now), 0 when not read.
func (p *Policy) outcome(ctx context.Context, a *Attempt, kind EventKind, start int64) {
	switch {
	case p.observer != nil:
		p.observe(ctx, Event{Kind: kind, Time: p.wallAt(start), Subject: a.c.subject(), Fallback: a.at.fallback})
	case p.journal != nil:
		p.journal.recordOutcome(ctx, kind, &a.c, p.wallAt(start), a.at.fallback)
	}
}

// refuse reports the refusal e of an attempt by c, and returns it.
func (p *Policy) refuse(ctx context.Context, c *canonical, e *RefusedError) error {
	if p.log.Enabled(ctx, slog.LevelDebug) {
		p.log.LogAttrs(ctx, slog.LevelDebug, "lockout: refused", slog.String("reason", e.Reason.String()),
			slog.String("rule", e.Rule), slog.String("key", e.Key), slog.Duration("retry_after", e.RetryAfter))
	}
	if p.hooks.Refusal != nil {
		p.hooks.Refusal(ctx, e)
	}
	if p.watched() {
		ev := Event{Kind: EventRefused, Time: p.wallAt(c.start), Subject: c.subject(), Rule: e.Rule, Key: e.Key, Reason: e.Reason, RetryAfter: e.RetryAfter, Fallback: e.Fallback}
		if e.Forever {
			ev.RetryAfter = Forever
		}
		p.observe(ctx, ev)
	}
	return e
}

func (p *Policy) lockedOut(ctx context.Context, c *canonical, e LockoutEvent) {
	p.log.LogAttrs(ctx, slog.LevelWarn, "lockout: locked out", slog.String("rule", e.Rule), slog.String("key", e.Key),
		slog.Duration("duration", max(e.Duration, 0)), slog.Bool("forever", e.Duration == Forever), slog.Int64("count", e.Count),
		slog.Bool("fallback", e.Fallback))
	if p.hooks.Lockout != nil {
		p.hooks.Lockout(ctx, e)
	}
	if p.watched() {
		// An operator's lock (LockDevice) names the operator.
		operator, via := OperatorFrom(ctx)
		p.observe(ctx, Event{Kind: EventLockout, Subject: c.subject(), Rule: e.Rule, Key: e.Key, Duration: e.Duration, Count: e.Count,
			Fallback: e.Fallback, Operator: operator, Via: via})
	}
}

// uncancelled returns ctx without its cancellation, for reports that must
// not be lost to a client that went away; ctx itself when it has none (no
// allocation).
func uncancelled(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

// windowOf returns the window of the rule named name.
func (p *Policy) windowOf(name string) time.Duration {
	for i := range p.rules {
		if p.rules[i].Name == name {
			return p.rules[i].Window
		}
	}
	return 0
}
