package lockout

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// RuleStatus is the state of one rule key of a subject.
type RuleStatus struct {
	Rule string
	// Key is the rule's subject part, e.g. "u=alice,ip=192.0.2.1".
	Key string
	// Attempts counts the failures and the attempts in flight within the
	// current window; Limit is the rule's limit.
	Attempts int64
	Limit    int
	// WindowRemaining is how long until Attempts starts afresh; zero when
	// there is no counter. Forever for a counter that never expires.
	WindowRemaining time.Duration
	// Locked is set while the key is locked out, for LockRemaining
	// (Forever: until unlocked).
	Locked        bool
	LockRemaining time.Duration
	// Lockouts counts the key's lockouts within its history window.
	Lockouts int64
}

func ttlOrForever(r backend.Result) time.Duration {
	if r.TTL == backend.NoExpiry {
		return Forever
	}
	return r.TTL
}

// Status reports the state of every rule that applies to s, in one backend
// call. It asks the store even while the policy is degraded, and returns
// its error if it fails: what the fallback counted meanwhile is not shown
// (it is written back to the store when the store recovers).
func (p *Policy) Status(ctx context.Context, s Subject) ([]RuleStatus, error) {
	c, err := p.canonicalize(s)
	if err != nil {
		return nil, err
	}
	a := &Attempt{p: p}
	a.buildKeys(&c)
	ops := make([]backend.Op, 0, 3*len(a.rules))
	for _, h := range a.rules {
		ops = append(ops, backend.ExistsOp(a.key(h.attempts)), backend.ExistsOp(a.key(h.lock)), backend.ExistsOp(a.key(h.history)))
	}
	res := make([]backend.Result, len(ops))
	if len(ops) > 0 {
		if err := p.do(ctx, ops, res); err != nil {
			return nil, err
		}
	}
	out := make([]RuleStatus, len(a.rules))
	for i, h := range a.rules {
		cnt, lock, hist := res[3*i], res[3*i+1], res[3*i+2]
		out[i] = RuleStatus{
			Rule:            h.r.Name,
			Key:             a.key(h.subject),
			Attempts:        cnt.Value,
			Limit:           h.r.Limit,
			WindowRemaining: ttlOrForever(cnt),
			Locked:          lock.Found,
			LockRemaining:   ttlOrForever(lock),
			Lockouts:        hist.Value,
		}
	}
	return out, nil
}

// Unlock lifts every lock of the rules that apply to s and clears their
// counters, in one backend call. The lockout history stays, so a repeat
// offence still escalates; Reset forgets it too.
func (p *Policy) Unlock(ctx context.Context, s Subject) error {
	return p.clear(ctx, s, false)
}

// Reset clears everything the policy keeps about s: counters, locks and
// lockout history.
func (p *Policy) Reset(ctx context.Context, s Subject) error {
	return p.clear(ctx, s, true)
}

func (p *Policy) clear(ctx context.Context, s Subject, history bool) error {
	c, err := p.canonicalize(s)
	if err != nil {
		return err
	}
	a := &Attempt{p: p}
	a.buildKeys(&c)
	var ops []backend.Op
	for _, h := range a.rules {
		ops = append(ops, backend.DeleteOp(a.key(h.lock)), backend.DeleteOp(a.key(h.attempts)))
		if history {
			ops = append(ops, backend.DeleteOp(a.key(h.history)))
		}
	}
	if len(ops) > 0 {
		if err := p.clearKeys(ctx, ops); err != nil {
			return err
		}
	}
	kind := EventUnlock
	if history {
		kind = EventReset
	}
	p.operatorDid(ctx, Event{Kind: kind, Subject: c.subject()})
	return nil
}

// operatorDid logs an operator's action and reports it to the observer
// and the journal, with the operator WithOperator put in ctx.
func (p *Policy) operatorDid(ctx context.Context, e Event) {
	e.Operator, e.Via = OperatorFrom(ctx)
	attrs := []slog.Attr{slog.String("operator", e.Operator), slog.String("via", e.Via)}
	if e.Rule != "" {
		attrs = append(attrs, slog.String("rule", e.Rule), slog.String("key", e.Key))
	} else {
		attrs = append(attrs, slog.String("username", e.Subject.Username), slog.String("ip", e.Subject.IP))
	}
	p.log.LogAttrs(ctx, slog.LevelInfo, "lockout: "+e.Kind.String(), attrs...)
	if p.watched() {
		p.observe(ctx, e)
	}
}

// clearKeys applies an operator's deletes everywhere the policy keeps
// state: the lock cache, the fallback, and the store. The store's error,
// if any, is returned: while it fails, the unlock holds only in this
// process.
func (p *Policy) clearKeys(ctx context.Context, ops []backend.Op) error {
	if p.closed.Load() {
		return ErrClosed
	}
	for _, op := range ops {
		p.forget(op.Key)
	}
	p.mu.RLock()
	if fb := p.fallback; fb != nil && !p.closed.Load() {
		if err := fb.Do(ctx, ops, make([]backend.Result, len(ops))); err != nil {
			p.log.LogAttrs(ctx, slog.LevelError, "lockout: fallback: unlock", slog.Any("error", err))
		}
	}
	p.mu.RUnlock()
	return p.do(ctx, ops, make([]backend.Result, len(ops)))
}

// Lock is a locked rule key, as Policy.Locks lists it.
type Lock struct {
	KeyInfo
	// Remaining is how long the lock lasts, or Forever.
	Remaining time.Duration
}

// Locks lists the locked keys of this policy, for an operator's view: only
// the keys of its own rules under its own prefix, never those of another
// policy whose prefix begins with this one's (policies with prefixes "p"
// and "p:l" may share a store). It needs a store that can list its keys
// (backend.Lister); with another, it yields one error wrapping
// backend.ErrUnsupported (and so errors.ErrUnsupported). An error ends the
// iteration.
func (p *Policy) Locks(ctx context.Context) iter.Seq2[Lock, error] {
	return func(yield func(Lock, error) bool) {
		l, ok := p.store.(backend.Lister)
		if !ok {
			yield(Lock{}, fmt.Errorf("lockout: listing locks: %T: %w", p.store, backend.ErrUnsupported))
			return
		}
		const chunk = 100
		var batch []Lock
		flush := func() bool {
			ops := make([]backend.Op, len(batch))
			for i, lk := range batch {
				ops[i] = backend.ExistsOp(lk.Key)
			}
			res := make([]backend.Result, len(ops))
			if err := p.do(ctx, ops, res); err != nil {
				yield(Lock{}, err)
				return false
			}
			for i, lk := range batch {
				if !res[i].Found {
					continue // expired or unlocked since listed
				}
				lk.Remaining = ttlOrForever(res[i])
				if !yield(lk, nil) {
					return false
				}
			}
			batch = batch[:0]
			return true
		}
		prefix := p.prefix + ":" + string(kindLock) + ":"
		for key, err := range l.Keys(ctx, prefix) {
			if err != nil {
				yield(Lock{}, fmt.Errorf("lockout: listing locks: %w", err))
				return
			}
			kind, info, err := parseKey(p.prefix, p.rules, key)
			if err != nil || kind != kindLock {
				continue // not ours: another policy's prefix begins with ours
			}
			batch = append(batch, Lock{KeyInfo: info})
			if len(batch) == chunk && !flush() {
				return
			}
		}
		if len(batch) > 0 {
			flush()
		}
	}
}

// ErrNotLockKey is wrapped by the error UnlockKey returns for a key that is
// not a lock key of the policy: malformed, a counter or history key, or a
// key of another policy (another prefix, or a rule this policy does not
// have), even one whose prefix begins with this policy's.
var ErrNotLockKey = errors.New("lockout: not a lock key of this policy")

// UnlockKey lifts the lock with the given key, as Locks lists it, and clears
// its rule key's counter. The lockout history stays. A key that is not a
// lock key of this policy is an error wrapping ErrNotLockKey, and nothing
// is touched.
func (p *Policy) UnlockKey(ctx context.Context, key string) error {
	kind, info, err := parseKey(p.prefix, p.rules, key)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotLockKey, err)
	}
	if kind != kindLock {
		return fmt.Errorf("%w: %q is not a lock key", ErrNotLockKey, key)
	}
	n := len(p.prefix) + 1
	counter := key[:n] + string(kindAttempts) + key[n+1:]
	if err := p.clearKeys(ctx, []backend.Op{backend.DeleteOp(key), backend.DeleteOp(counter)}); err != nil {
		return err
	}
	p.operatorDid(ctx, Event{Kind: EventUnlock, Subject: info.subject(), Rule: info.Rule, Key: info.SubjectString()})
	return nil
}

// subject returns the fields of k as a Subject (a long value as its
// hashed form).
func (k KeyInfo) subject() Subject {
	var s Subject
	for _, f := range k.Subject {
		switch {
		case f.Tag == "u":
			s.Username = f.Value
		case f.Tag == "ip":
			s.IP = f.Value
		case f.Tag == "ua":
			s.UserAgent = f.Value
		case strings.HasPrefix(f.Tag, "f."):
			if s.Fields == nil {
				s.Fields = map[string]string{}
			}
			s.Fields[f.Tag[2:]] = f.Value
		}
	}
	return s
}

// String formats a rule status for logs.
func (s RuleStatus) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d/%d attempts", s.Rule, s.Key, s.Attempts, s.Limit)
	if s.Locked {
		if s.LockRemaining == Forever {
			b.WriteString(", locked until unlocked")
		} else {
			fmt.Fprintf(&b, ", locked for %v", s.LockRemaining.Round(time.Second))
		}
	}
	fmt.Fprintf(&b, ", %d lockouts", s.Lockouts)
	return b.String()
}
