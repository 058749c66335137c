package lockout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
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
	Canonicalize func(string) (string, error)

	// AllowIPs lists addresses and CIDR prefixes ("192.0.2.0/24") that are
	// never counted nor locked. AllowUsernames does the same for names.
	AllowIPs       []string
	AllowUsernames []string
	// DenyIPs and DenyUsernames are always refused, without a backend
	// call. They take precedence over the allow lists.
	DenyIPs       []string
	DenyUsernames []string

	// Timeout bounds each backend call of a decision. Default
	// DefaultTimeout.
	Timeout time.Duration
	// FailClosed refuses attempts (ErrUnavailable) when the backend fails
	// or times out. The default admits them (fail open): a store outage
	// must not become a login outage.
	FailClosed bool

	// Hooks are told about lockouts, refusals and backend errors.
	Hooks Hooks
	// Logger receives the same events: lockouts at Warn, backend errors at
	// Error, refusals at Debug. Default slog.Default().
	Logger *slog.Logger
}

// Hooks are functions the policy calls on events, synchronously, on the
// goroutine of the decision. Nil hooks are skipped.
type Hooks struct {
	// Lockout is called when a rule key is locked.
	Lockout func(ctx context.Context, e LockoutEvent)
	// Refusal is called for every refused attempt.
	Refusal func(ctx context.Context, err *RefusedError)
	// BackendError is called when a backend call fails, whether the policy
	// then fails open or closed.
	BackendError func(ctx context.Context, err error)
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
}

// Policy decides whether login attempts may go ahead. It is safe for
// concurrent use.
type Policy struct {
	store      backend.Backend
	rules      []rule
	prefix     string
	canon      func(string) (string, error)
	allowNets  []netip.Prefix
	denyNets   []netip.Prefix
	allowUsers map[string]bool
	denyUsers  map[string]bool
	timeout    time.Duration
	failClosed bool
	hooks      Hooks
	log        *slog.Logger
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
		store:      store,
		prefix:     cfg.Prefix,
		canon:      cfg.Canonicalize,
		timeout:    cfg.Timeout,
		failClosed: cfg.FailClosed,
		hooks:      cfg.Hooks,
		log:        cfg.Logger,
	}
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

// An Attempt is an admitted login attempt, waiting for its outcome. Report
// it once, with Success or Failure; one never reported counts as a failure
// (see the package doc).
type Attempt struct {
	p        *Policy
	keys     string // every key of the attempt, concatenated
	rules    []held
	reported atomic.Bool
	// err is the backend error the attempt was admitted despite (fail
	// open); allowlisted marks an attempt on the allow lists.
	err         error
	allowlisted bool

	heldBuf [4]held
	opsBuf  [12]backend.Op
	resBuf  [12]backend.Result
}

// held is one applicable rule of an attempt: its keys and its reservation.
type held struct {
	r                *rule
	attempts, lock   span // key offsets in Attempt.keys
	history, subject span
	value            int64 // the counter's value after the reservation
}

type span struct{ start, end int32 }

func (a *Attempt) key(s span) string { return a.keys[s.start:s.end] }

// Err returns the backend error the attempt was admitted despite, when the
// policy failed open, or nil.
func (a *Attempt) Err() error { return a.err }

// Allowlisted reports whether the attempt was admitted by an allow list,
// without being counted.
func (a *Attempt) Allowlisted() bool { return a.allowlisted }

// Allow asks whether a login attempt by s may go ahead, reserving one attempt
// on every applicable rule key. On success the caller verifies the password
// and reports the outcome on the returned Attempt. Otherwise the error is a
// *RefusedError (errors.Is(err, ErrRefused)), wraps ErrInvalidSubject, or,
// when ctx ends first, wraps ctx's error; in every case the password must
// not be verified. A ctx that ends is the caller giving up, not a store
// failure: it is neither admitted by fail-open nor reported to the hooks.
func (p *Policy) Allow(ctx context.Context, s Subject) (*Attempt, error) {
	c, err := p.canonicalize(s)
	if err != nil {
		return nil, err
	}
	if inNets(p.denyNets, c.ip) || (c.username != "" && p.denyUsers[c.username]) {
		return nil, p.refuse(ctx, &RefusedError{Reason: ReasonDenylisted})
	}
	a := &Attempt{p: p}
	if inNets(p.allowNets, c.ip) || (c.username != "" && p.allowUsers[c.username]) {
		a.allowlisted = true
		return a, nil
	}
	a.buildKeys(&c)
	if len(a.rules) == 0 {
		return a, nil
	}

	ops, res := a.scratch(2 * len(a.rules))
	for i, h := range a.rules {
		ops[2*i] = backend.IncrOp(a.key(h.attempts), 1, h.r.Window)
		ops[2*i+1] = backend.ExistsOp(a.key(h.lock))
	}
	// One deadline for the decision, fallback read included.
	tctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if err := p.call(ctx, tctx, ops, res); err != nil {
		if ctx.Err() != nil {
			return nil, err // the caller gave up: neither admitted nor refused
		}
		if p.failClosed {
			return nil, p.refuse(ctx, &RefusedError{Reason: ReasonUnavailable, Err: err})
		}
		// Failing open must not ignore a lock the store still holds: a
		// full store, for one, refuses the reservation but can still be
		// read. So read the lock markers alone before admitting.
		if refusal := a.lockedDespite(tctx); refusal != nil {
			return nil, p.refuse(ctx, refusal)
		}
		a.err = err
		a.rules = nil // nothing was reserved that the outcome should touch
		return a, nil
	}

	var refusal *RefusedError
	for i := range a.rules {
		h := &a.rules[i]
		cnt, lock := res[2*i], res[2*i+1]
		h.value = cnt.Value
		var e *RefusedError
		switch {
		case lock.Found:
			e = &RefusedError{Reason: ReasonLocked, RetryAfter: lock.TTL, Forever: lock.TTL == backend.NoExpiry}
		case cnt.Value > int64(h.r.Limit):
			e = &RefusedError{Reason: ReasonCapacity, RetryAfter: cnt.TTL}
		default:
			continue
		}
		if e.Forever {
			e.RetryAfter = 0
		}
		e.Rule, e.Key = h.r.Name, a.key(h.subject)
		if refusal == nil || longer(e, refusal) {
			refusal = e
		}
	}
	if refusal == nil {
		return a, nil
	}
	// Give back every reservation this attempt made.
	ops, res = a.scratch(len(a.rules))
	for i, h := range a.rules {
		ops[i] = backend.IncrOp(a.key(h.attempts), -1, h.r.Window)
	}
	_ = p.do(context.WithoutCancel(ctx), ops, res) // reported by do; the refusal stands either way
	return nil, p.refuse(ctx, refusal)
}

// lockedDespite reads the attempt's lock markers after its reservation
// failed, within what is left of the decision's deadline (tctx), and
// returns the refusal of the longest lock found, or nil when none is found
// or the read fails too (the same outage, already reported).
func (a *Attempt) lockedDespite(tctx context.Context) *RefusedError {
	if tctx.Err() != nil {
		return nil
	}
	ops, res := a.scratch(len(a.rules))
	for i, h := range a.rules {
		ops[i] = backend.ExistsOp(a.key(h.lock))
	}
	if a.p.store.Do(tctx, ops, res) != nil {
		return nil
	}
	var refusal *RefusedError
	for i, h := range a.rules {
		if !res[i].Found {
			continue
		}
		e := &RefusedError{Reason: ReasonLocked, Rule: h.r.Name, Key: a.key(h.subject), RetryAfter: res[i].TTL}
		if res[i].TTL == backend.NoExpiry {
			e.RetryAfter, e.Forever = 0, true
		}
		if refusal == nil || longer(e, refusal) {
			refusal = e
		}
	}
	return refusal
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
	var stack [1024]byte
	buf := stack[:0]
	a.rules = a.heldBuf[:0]
	var subj [512]byte
	for i := range p.rules {
		r := &p.rules[i]
		s, ok := appendSubject(subj[:0], r, c)
		if !ok {
			continue
		}
		h := held{r: r}
		h.attempts.start = int32(len(buf))
		buf = appendKey(buf, p.prefix, kindAttempts, r.Name, s)
		h.attempts.end = int32(len(buf))
		h.lock.start = h.attempts.end
		buf = appendKey(buf, p.prefix, kindLock, r.Name, s)
		h.lock.end = int32(len(buf))
		h.history.start = h.lock.end
		buf = appendKey(buf, p.prefix, kindHistory, r.Name, s)
		h.history.end = int32(len(buf))
		// The subject part, as it sits in the history key.
		h.subject = span{h.history.end - 1 - int32(len(s)), h.history.end - 1}
		a.rules = append(a.rules, h)
	}
	a.keys = string(buf)
}

func (a *Attempt) scratch(n int) ([]backend.Op, []backend.Result) {
	if n <= len(a.opsBuf) {
		return a.opsBuf[:n], a.resBuf[:n]
	}
	return make([]backend.Op, n), make([]backend.Result, n)
}

// Success reports that the password was right: rules keyed by the username
// reset their counters, the others give back this attempt's reservation.
// It costs one backend call. The error is a backend failure (also reported
// to the hooks), or ErrReported.
func (a *Attempt) Success(ctx context.Context) error {
	if !a.reported.CompareAndSwap(false, true) {
		return ErrReported
	}
	if len(a.rules) == 0 {
		return nil
	}
	ops, res := a.scratch(len(a.rules))
	for i, h := range a.rules {
		if h.r.reset {
			ops[i] = backend.DeleteOp(a.key(h.attempts))
		} else {
			ops[i] = backend.IncrOp(a.key(h.attempts), -1, h.r.Window)
		}
	}
	return a.p.do(context.WithoutCancel(ctx), ops, res)
}

// Failure reports that the password was wrong. The reservation made by
// Allow already counts it, so this costs no backend call, except one to
// refresh a sliding window, and two when this failure locks a key. The
// error is a backend failure (also reported to the hooks), or ErrReported.
func (a *Attempt) Failure(ctx context.Context) error {
	if !a.reported.CompareAndSwap(false, true) {
		return ErrReported
	}
	if len(a.rules) == 0 {
		return nil
	}
	ops, res := a.scratch(3 * len(a.rules))
	ops, locking := ops[:0], 0
	for _, h := range a.rules {
		switch {
		case h.value == int64(h.r.Limit):
			// This attempt held the last slot: lock. Take the lock marker
			// (only its creator goes on) and count the lockout.
			locking++
			provisional, err := lockDuration(h.r.Schedule, 1)
			if err != nil || provisional == Forever {
				provisional = h.r.Window
			}
			ops = append(ops,
				backend.IncrOp(a.key(h.lock), 1, provisional),
				backend.IncrOp(a.key(h.history), 1, h.r.HistoryWindow))
		case h.r.Sliding:
			ops = append(ops, backend.ExpireOp(a.key(h.attempts), h.r.Window))
		}
	}
	if len(ops) == 0 {
		return nil
	}
	// Reporting must not be lost to a client that went away.
	ctx = context.WithoutCancel(ctx)
	if err := a.p.do(ctx, ops, res); err != nil || locking == 0 {
		return err
	}

	// Second call: the owners set the lock's duration and clear the
	// counter; a concurrent locker that lost the marker gives back its
	// history increment.
	type lockout struct {
		h *held
		d time.Duration
		n int64
	}
	var lockouts [4]lockout
	done := lockouts[:0]
	first := res[:len(ops)]
	ops2, res2 := make([]backend.Op, 0, 3*locking), make([]backend.Result, 3*locking)
	j := 0
	var errs []error
	for i := range a.rules {
		h := &a.rules[i]
		if h.value != int64(h.r.Limit) {
			if h.r.Sliding {
				j++
			}
			continue
		}
		marker, hist := first[j], first[j+1]
		j += 2
		if marker.Value != 1 {
			ops2 = append(ops2, backend.IncrOp(a.key(h.history), -1, h.r.HistoryWindow))
			continue
		}
		d, err := lockDuration(h.r.Schedule, int(hist.Value))
		if err != nil {
			errs = append(errs, err)
			d = h.r.Window
		}
		ttl := d
		if d == Forever {
			ttl = backend.NoExpiry
		}
		ops2 = append(ops2,
			backend.ExpireOp(a.key(h.lock), ttl),
			backend.DeleteOp(a.key(h.attempts)),
			backend.ExpireOp(a.key(h.history), h.r.HistoryWindow))
		done = append(done, lockout{h, d, hist.Value})
	}
	if err := a.p.do(ctx, ops2, res2[:len(ops2)]); err != nil {
		errs = append(errs, err)
	}
	for _, l := range done {
		a.p.lockedOut(ctx, LockoutEvent{Rule: l.h.r.Name, Key: a.key(l.h.subject), Duration: l.d, Count: l.n})
	}
	return errors.Join(errs...)
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

// do runs one backend call under the policy's deadline and reports its
// error.
func (p *Policy) do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	tctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	return p.call(ctx, tctx, ops, res)
}

// call runs one backend call under tctx, a deadline derived from ctx, and
// reports its error.
func (p *Policy) call(ctx, tctx context.Context, ops []backend.Op, res []backend.Result) error {
	err := p.store.Do(tctx, ops, res)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			// The caller gave up: not the store's fault.
			return fmt.Errorf("lockout: %w", context.Cause(ctx))
		}
		err = fmt.Errorf("lockout: backend: %w", err)
		p.backendError(ctx, err)
	}
	return err
}

func (p *Policy) backendError(ctx context.Context, err error) {
	p.log.LogAttrs(ctx, slog.LevelError, "lockout: backend error", slog.Any("error", err), slog.Bool("fail_closed", p.failClosed))
	if p.hooks.BackendError != nil {
		p.hooks.BackendError(ctx, err)
	}
}

func (p *Policy) refuse(ctx context.Context, e *RefusedError) error {
	if p.log.Enabled(ctx, slog.LevelDebug) {
		p.log.LogAttrs(ctx, slog.LevelDebug, "lockout: refused", slog.String("reason", e.Reason.String()),
			slog.String("rule", e.Rule), slog.String("key", e.Key), slog.Duration("retry_after", e.RetryAfter))
	}
	if p.hooks.Refusal != nil {
		p.hooks.Refusal(ctx, e)
	}
	return e
}

func (p *Policy) lockedOut(ctx context.Context, e LockoutEvent) {
	p.log.LogAttrs(ctx, slog.LevelWarn, "lockout: locked out", slog.String("rule", e.Rule), slog.String("key", e.Key),
		slog.Duration("duration", max(e.Duration, 0)), slog.Bool("forever", e.Duration == Forever), slog.Int64("count", e.Count))
	if p.hooks.Lockout != nil {
		p.hooks.Lockout(ctx, e)
	}
}
