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
	// Rule is the rule's name.
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
	hist := a.historyKeys()
	for _, h := range a.rules {
		ops = append(ops, backend.ExistsOp(a.attemptsKey(h)), backend.ExistsOp(a.lockKey(h)), backend.ExistsOp(hist.of(h)))
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
			Key:             a.subjectKey(h),
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

// Unlock lifts every lock whose key holds s, and clears those keys'
// counters. A key holds s when its rule is keyed by at least one of the
// fields s gives, and has s's value for each of them: Unlock of
// {Username: "alice"} lifts alice's username lock and her username+IP
// locks from every address; of {Username: "alice", IP: ip}, her username
// lock, ip's IP lock and her username+IP lock from ip, not bob's from ip.
// It reaches the locks of the rules keyed by exactly the fields s gives, and,
// where the store can list its keys (backend.Lister), those of the rules
// keyed by some of them and more (Unlock of a username lifts its
// username+IP locks too; of an IP, every lock that holds that IP, or the
// IPv6 prefix the rule keys it by). On a store that cannot list
// (memcached), the latter are out of reach: Unlock lifts what it can reach
// and returns an error wrapping ErrPartial; give every field of the
// rule (the username and the IP) to reach a lock. The lockout history
// stays, so a repeat offence still escalates; Reset forgets it too.
//
// Listing costs: the keys of such a rule are listed by the fields s gives
// that lead the rule's ("u=alice," for username+IP), which on bbolt is a
// seek to them; the memory store and Redis (SCAN MATCH) walk all their
// keys to find them, so an unlock by an IP alone, on a rule whose first
// field is the username, costs in proportion to every user's keys.
func (p *Policy) Unlock(ctx context.Context, s Subject) error {
	_, err := p.clear(ctx, s, false)
	return err
}

// UnlockCount is Unlock, and also returns how many locks it lifted: 0
// when no lock held s (a mistyped username), which an operator's tool
// should say rather than report the unlock as done. The count is also
// the Count of the EventUnlock. With an error, it counts the locks it
// lifted all the same: while the store fails, those the in-process
// fallback held on the keys of the fields given (its listing fails too).
func (p *Policy) UnlockCount(ctx context.Context, s Subject) (lifted int, err error) {
	return p.clear(ctx, s, false)
}

// Reset clears everything the policy keeps about s, in every key that
// holds it as Unlock finds them: counters, locks and lockout history.
func (p *Policy) Reset(ctx context.Context, s Subject) error {
	_, err := p.clear(ctx, s, true)
	return err
}

// Rules returns the policy's rules, with their defaults filled in (names,
// limits, windows, schedules), in the order given to New.
func (p *Policy) Rules() []Rule {
	out := make([]Rule, len(p.rules))
	for i := range p.rules {
		out[i] = p.rules[i].Rule
	}
	return out
}

// ErrPartial is wrapped by the error of an Unlock or Reset that could not
// reach every key holding the subject: rules keyed by more fields than
// the subject gives, on a store that cannot list its keys.
var ErrPartial = errors.New("lockout: the store cannot list keys: only the rules keyed by exactly the fields given were reached")

// clearBatch bounds the deletes of one store call of an operator.
const clearBatch = 300

// clear is Unlock, or Reset with history. It returns how many locks it
// lifted.
func (p *Policy) clear(ctx context.Context, s Subject, history bool) (int, error) {
	c, err := p.canonicalize(s)
	if err != nil {
		return 0, err
	}
	a := &Attempt{p: p}
	a.buildKeys(&c)
	hist := a.historyKeys()
	var ops []backend.Op
	for _, h := range a.rules {
		ops = append(ops, backend.DeleteOp(a.lockKey(h)), backend.DeleteOp(a.attemptsKey(h)))
		if history {
			ops = append(ops, backend.DeleteOp(hist.of(h)))
		}
	}
	if history && p.fp != nil && c.username != "" {
		if p.memoryWriter != nil {
			// What this process queued would come back after the reset
			// (another process's queue may still: its memory of a
			// password counted before the reset).
			p.memoryWriter.forget(p.sequenceKey(&c))
		}
		// Forgets every wrong password: the sequence moves on by
		// Remember, past every fingerprint (deleting it would start it
		// afresh, and old fingerprints would match its new numbers).
		ops = append(ops, backend.IncrOp(p.sequenceKey(&c), p.fp.remember, p.fp.window))
	}
	// partial is ErrPartial, or the listing's error: the keys found by
	// listing are not all reached, the others are cleared all the same
	// (while the store fails, its listing fails too, and the fallback's
	// locks on the keys of the fields given are still lifted).
	var partial error
	if more := p.partialRules(&c); len(more) > 0 {
		if l, ok := p.store.(backend.Lister); ok {
			kinds := []byte{kindLock, kindAttempts}
			if history {
				kinds = append(kinds, kindHistory)
			}
		listing:
			for _, m := range more {
				for _, kind := range kinds {
					// The keys of the subject's leading fields only: on a
					// store whose keys are ordered (bbolt), a seek.
					prefix := p.prefix + ":" + string(kind) + ":" + m.r.Name + ":{" + m.lead()
					for key, err := range l.Keys(ctx, prefix) {
						if err != nil {
							partial = fmt.Errorf("lockout: listing keys: %w", err)
							break listing
						}
						if m.holds(p, key) {
							ops = append(ops, backend.DeleteOp(key))
						}
					}
				}
			}
		} else {
			partial = fmt.Errorf("%w (%T)", ErrPartial, p.store)
		}
	}
	lifted := 0
	for len(ops) > 0 {
		n := min(len(ops), clearBatch)
		k, err := p.clearKeys(ctx, ops[:n])
		lifted += k
		if err != nil {
			if partial != nil && !errors.Is(partial, ErrPartial) {
				err = errors.Join(err, partial) // the listing's
			}
			return lifted, err
		}
		ops = ops[n:]
	}
	kind := EventUnlock
	if history {
		kind = EventReset
	}
	p.operatorDid(ctx, Event{Kind: kind, Subject: c.subject(), Count: int64(lifted)})
	return lifted, partial
}

// partialRule is a rule keyed by some of a subject's fields and more: its
// keys that hold the subject are found by listing. want holds, by the
// index of the rule's field, the "tag=value" a key has for each field the
// subject gives.
type partialRule struct {
	r    *rule
	want map[int]string
}

// partialRules returns the rules keyed by some of c's fields and by one it
// lacks.
func (p *Policy) partialRules(c *canonical) []partialRule {
	var out []partialRule
	for i := range p.rules {
		r := &p.rules[i]
		want := map[int]string{}
		missing := false
		for j, f := range r.Fields {
			one := rule{Rule: Rule{Fields: []Field{f}, IPv4Prefix: r.IPv4Prefix, IPv6Prefix: r.IPv6Prefix}}
			seg, ok := appendSubject(nil, &one, c)
			if !ok {
				missing = true
				continue
			}
			want[j] = string(seg)
		}
		if missing && len(want) > 0 {
			out = append(out, partialRule{r, want})
		}
	}
	return out
}

// lead returns how the subject part of every key m wants begins: the
// "tag=value," of each of the rule's leading fields the subject gives. A
// rule m lists has a field the subject lacks, so each is followed by a
// comma, which no value holds raw.
func (m partialRule) lead() string {
	var b strings.Builder
	for j := 0; ; j++ {
		v, ok := m.want[j]
		if !ok {
			return b.String()
		}
		b.WriteString(v)
		b.WriteByte(',')
	}
}

// holds reports whether key is a key of m's rule, of this policy, whose
// subject has the fields m wants. The fields are compared first: they
// rule out most keys a listing finds, at a fraction of parseKey's cost.
func (m partialRule) holds(p *Policy, key string) bool {
	open := strings.IndexByte(key, '{')
	if open < 0 || !strings.HasSuffix(key, "}") {
		return false
	}
	subject := key[open+1 : len(key)-1]
	for j, want := range m.want {
		seg, ok := field(subject, j)
		if !ok || seg != want {
			return false
		}
	}
	_, info, err := parseKey(p.prefix, p.rules, key)
	return err == nil && info.Rule == m.r.Name
}

// field returns the j-th of the comma-separated fields of subject.
func field(subject string, j int) (string, bool) {
	for ; j > 0; j-- {
		i := strings.IndexByte(subject, ',')
		if i < 0 {
			return "", false
		}
		subject = subject[i+1:]
	}
	if i := strings.IndexByte(subject, ','); i >= 0 {
		subject = subject[:i]
	}
	return subject, true
}

// ResetAll clears everything this policy keeps in the store: every
// counter, lock and lockout history under its prefix and of its own rules,
// never a key of another policy (even one whose prefix begins with this
// one's). It needs a store that can list its keys (backend.Lister), and
// returns how many keys it removed there. The lock cache and the fallback
// forget them too, and, while the policy is degraded, every key of the
// policy in the fallback (counted during the outage, not yet written back
// to the store).
func (p *Policy) ResetAll(ctx context.Context) (int, error) {
	l, ok := p.store.(backend.Lister)
	if !ok {
		return 0, fmt.Errorf("lockout: reset all: %T: %w", p.store, backend.ErrUnsupported)
	}
	if p.memoryWriter != nil {
		p.memoryWriter.forget("") // what is queued would come back after the reset
	}
	var ops []backend.Op
	for key, err := range l.Keys(ctx, p.prefix+":") {
		if err != nil {
			return 0, fmt.Errorf("lockout: listing keys: %w", err)
		}
		if _, _, err := parseKey(p.prefix, p.rules, key); err == nil || p.memoryKey(key) {
			ops = append(ops, backend.DeleteOp(key))
		}
	}
	n := 0
	for len(ops) > 0 {
		k := min(len(ops), clearBatch)
		if _, err := p.clearKeys(ctx, ops[:k]); err != nil {
			return n, err
		}
		n += k
		ops = ops[k:]
	}
	p.clearFallback(ctx)
	p.forgetCounts()
	p.operatorDid(ctx, Event{Kind: EventReset, Key: "*", Count: int64(n)})
	return n, nil
}

// clearFallback deletes every key of the policy that the fallback holds,
// for ResetAll: it clears the keys it lists in the store, and the
// fallback holds some the store does not have yet (counted during the
// outage, not yet written back), which the write-back would bring back.
func (p *Policy) clearFallback(ctx context.Context) {
	p.clears.Add(1)
	var keys []string
	p.breaker.lockWB() // no write-back call reads the fallback meanwhile
	p.mu.RLock()
	if fb := p.fallback; fb != nil && !p.closed.Load() {
		for key, err := range fb.(backend.Lister).Keys(ctx, p.prefix+":") {
			if err != nil {
				p.log.LogAttrs(ctx, slog.LevelError, "lockout: fallback: reset all", slog.Any("error", err))
				break
			}
			if _, _, err := parseKey(p.prefix, p.rules, key); err == nil || p.memoryKey(key) {
				keys = append(keys, key)
				delete(p.breaker.copied, key) // wb held
			}
		}
		for rest := keys; len(rest) > 0; {
			chunk := rest[:min(len(rest), clearBatch)]
			rest = rest[len(chunk):]
			ops := make([]backend.Op, len(chunk))
			for i, k := range chunk {
				ops[i] = backend.DeleteOp(k)
			}
			if err := fb.Do(ctx, ops, make([]backend.Result, len(ops))); err != nil {
				p.log.LogAttrs(ctx, slog.LevelError, "lockout: fallback: reset all", slog.Any("error", err))
			}
		}
	}
	p.mu.RUnlock()
	p.breaker.unlockWB()
	p.forget(keys...)
}

// operatorDid logs an operator's action and reports it to the observer
// and the journal, with the operator WithOperator put in ctx.
func (p *Policy) operatorDid(ctx context.Context, e Event) {
	e.Operator, e.Via = OperatorFrom(ctx)
	attrs := []slog.Attr{slog.String("operator", e.Operator), slog.String("via", e.Via)}
	if e.Rule != "" || e.Key != "" {
		attrs = append(attrs, slog.String("rule", e.Rule), slog.String("key", e.Key))
	} else {
		attrs = append(attrs, slog.String("username", e.Subject.Username), slog.String("ip", e.Subject.IP))
	}
	if e.Key == "*" { // ResetAll
		attrs = append(attrs, slog.Int64("keys", e.Count))
	} else {
		attrs = append(attrs, slog.Int64("locks_lifted", e.Count))
	}
	p.log.LogAttrs(ctx, slog.LevelInfo, "lockout: "+e.Kind.String(), attrs...)
	if p.watched() {
		p.observe(ctx, e)
	}
}

// clearKeys applies an operator's deletes everywhere the policy keeps
// state: the lock cache, the fallback, and the store. The store's error,
// if any, is returned: while it fails, the unlock holds only in this
// process. It waits for a write-back call in flight (breaker.wb), which
// would otherwise write to the store what it read of the keys before
// they were cleared, and makes the write-back copy them afresh: what the
// fallback counts on them from now on is new.
func (p *Policy) clearKeys(ctx context.Context, ops []backend.Op) (lifted int, err error) {
	if p.closed.Load() {
		return 0, ErrClosed
	}
	inFallback := make([]backend.Result, len(ops))
	p.clears.Add(1)
	for _, op := range ops {
		p.forget(op.Key)
	}
	p.breaker.lockWB()
	defer p.breaker.unlockWB()
	p.mu.RLock()
	if fb := p.fallback; fb != nil && !p.closed.Load() {
		if err := fb.Do(ctx, ops, inFallback); err != nil {
			p.log.LogAttrs(ctx, slog.LevelError, "lockout: fallback: unlock", slog.Any("error", err))
		}
	}
	for _, op := range ops {
		delete(p.breaker.copied, op.Key) // wb held: no other user of its entries
	}
	p.mu.RUnlock()
	res := make([]backend.Result, len(ops))
	err = p.do(ctx, ops, res)
	if err != nil {
		clear(res) // what the fallback lifted still counts
	}
	// A lock lifted is a lock key found, in the store or the fallback.
	for i, op := range ops {
		if kind, _ := keyKind(p.prefix, op.Key); kind == kindLock && (res[i].Found || inFallback[i].Found) {
			lifted++
		}
	}
	return lifted, err
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
	return p.UnlockKeys(ctx, key)
}

// UnlockKeys is UnlockKey of each of keys. It checks them all first: when
// one is not a lock key of this policy, it returns an error wrapping
// ErrNotLockKey and touches none of them.
func (p *Policy) UnlockKeys(ctx context.Context, keys ...string) error {
	infos := make([]KeyInfo, len(keys))
	for i, key := range keys {
		kind, info, err := parseKey(p.prefix, p.rules, key)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNotLockKey, err)
		}
		if kind != kindLock {
			return fmt.Errorf("%w: %q is not a lock key", ErrNotLockKey, key)
		}
		infos[i] = info
	}
	n := len(p.prefix) + 1
	for i, key := range keys {
		counter := key[:n] + string(kindAttempts) + key[n+1:]
		lifted, err := p.clearKeys(ctx, []backend.Op{backend.DeleteOp(key), backend.DeleteOp(counter)})
		if err != nil {
			return err
		}
		info := infos[i]
		p.operatorDid(ctx, Event{Kind: EventUnlock, Subject: info.subject(), Rule: info.Rule, Key: info.SubjectString(), Count: int64(lifted)})
	}
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
