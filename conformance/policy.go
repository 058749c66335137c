package conformance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/internal/counting"
)

// policyCases are the scenarios that show the lockout engine works on the
// store, with times scaled to its granularity.
var policyCases = []testCase{
	{"ReserveBeforeVerify", testPolicyReserve},
	{"LockoutAndEscalation", testPolicyLockout},
	{"SuccessSemantics", testPolicySuccess},
	{"RoundTripBudget", testPolicyBudget},
	{"Operator", testPolicyOperator},
	{"OperatorPrefixIsolation", testPolicyPrefixIsolation},
	{"HostileSubjects", testPolicyHostile},
	{"OutageLimitDown", testOutageLimit(faultDown)},
	{"OutageLimitHung", testOutageLimit(faultHang)},
	{"OutageLimitFull", testOutageLimit(faultFull)},
	{"OutageRecovery", testOutageRecovery},
	{"OutageLostLock", testOutageLostLock},
	{"RefusedLeavesNoKey", testRefusedLeavesNoKey(0)},
	{"RefusedLeavesNoKeyUncached", testRefusedLeavesNoKey(lockout.NoLockCache)},
	{"UnlockAcrossPolicies", testUnlockAcrossPolicies},
	{"UnlockEveryLock", testUnlockEveryLock},
	{"ResetAllOwnPrefix", testResetAllOwnPrefix},
	{"KnownDeviceAndRepeats", testKnownDeviceAndRepeats},
}

// policy returns a policy over the env's store, wrapped in a call counter.
func (e *env) policy(t *testing.T, cfg lockout.Config) (*lockout.Policy, *counting.Store) {
	t.Helper()
	store, counter := counting.Wrap(e.b)
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * e.h.callTimeout()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := lockout.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, counter
}

// try runs one attempt with the given outcome and returns Allow's error.
func try(t *testing.T, p *lockout.Policy, s lockout.Subject, ok bool) error {
	t.Helper()
	ctx := context.Background()
	a, err := p.Allow(ctx, s)
	if err != nil {
		return err
	}
	if ok {
		err = a.Success(ctx)
	} else {
		err = a.Failure(ctx)
	}
	if err != nil {
		t.Fatalf("reporting the outcome: %v", err)
	}
	return nil
}

func refused(t *testing.T, err error, reason lockout.Reason) *lockout.RefusedError {
	t.Helper()
	var re *lockout.RefusedError
	if !errors.As(err, &re) || re.Reason != reason {
		t.Fatalf("err = %v, want a refusal for %v", err, reason)
	}
	return re
}

func testPolicyReserve(t *testing.T, e *env) {
	rules := []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(5), lockout.ByUsernameAndIP(5)}
	for i, r := range rules {
		r.Schedule = lockout.Fixed(100 * e.unit)
		p, _ := e.policy(t, lockout.Config{Rules: []lockout.Rule{r}, Prefix: fmt.Sprintf("reserve%d", i)})
		var verified atomic.Int64
		var wg sync.WaitGroup
		errs := make([]error, 256)
		for g := range errs {
			s := lockout.Subject{Username: "victim", IP: "203.0.113.9"}
			if r.Fields[0] == lockout.IP {
				s.Username = fmt.Sprintf("user%d", g)
			}
			wg.Go(func() {
				_, errs[g] = p.Check(context.Background(), s, func(context.Context) (bool, error) {
					verified.Add(1)
					return false, nil
				})
			})
		}
		wg.Wait()
		// At most the limit, by the reservation. A store that serves a batch
		// in one atomic step admits exactly the limit; one that cannot (the
		// lock read of an admitted attempt comes a round trip after its
		// reservation, as on memcached) may refuse an attempt whose read sees
		// the lock another attempt's failure set meanwhile.
		switch n := verified.Load(); {
		case e.h.AtomicTags && n != 5:
			t.Errorf("rule %v: 256 concurrent guesses verified %d passwords, want exactly 5 (the store declares AtomicTags)", r.Fields, n)
		case n > 5 || n < 1:
			t.Errorf("rule %v: 256 concurrent guesses verified %d passwords, want 1 to 5", r.Fields, n)
		case n < 5:
			t.Logf("rule %v: 256 concurrent guesses verified %d passwords (the limit is 5)", r.Fields, n)
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, lockout.ErrRefused) {
				t.Errorf("rule %v: %v", r.Fields, err)
			}
		}
	}
}

func testPolicyLockout(t *testing.T, e *env) {
	r := lockout.ByUsername(2)
	r.Window = 100 * e.unit
	r.Schedule = lockout.List(e.unit, 3*e.unit)
	p, _ := e.policy(t, lockout.Config{Rules: []lockout.Rule{r}})
	s := lockout.Subject{Username: "alice"}
	for n, d := range []time.Duration{e.unit, 3 * e.unit} {
		var locking, locked time.Time // the lock is set between these
		for i := range 2 {
			locking = time.Now()
			if err := try(t, p, s, false); err != nil {
				t.Fatalf("lockout %d: failure %d refused: %v", n+1, i+1, err)
			}
		}
		locked = time.Now()
		re := refused(t, try(t, p, s, true), lockout.ReasonLocked)
		if re.RetryAfter <= 0 || re.RetryAfter > d+e.h.Granularity {
			t.Errorf("lockout %d: retry after %v, want within (0, %v]", n+1, re.RetryAfter, d+e.h.Granularity)
		}
		// Refused attempts do not extend the lock.
		for _, at := range []time.Time{locking.Add(d / 2), locking.Add(d - e.margin)} {
			sleepUntil(at)
			a, err := p.Allow(context.Background(), s)
			if err == nil {
				// Admitted: only right if the check ran late, after the
				// lock; a success then leaves the counts below as they were.
				a.Success(context.Background())
			}
			if !errors.Is(err, lockout.ErrLocked) && !e.late(t, locking.Add(d)) {
				t.Fatalf("lockout %d: %v into a %v lock: %v, want ErrLocked", n+1, time.Since(locking), d, err)
			}
		}
		sleepUntil(locked.Add(d + e.h.Granularity + e.margin))
		if err := try(t, p, s, false); err != nil {
			t.Fatalf("lockout %d: after the lock: %v", n+1, err)
		}
		// The refused attempts did not count: one failure so far.
		st, err := p.Status(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		if st[0].Attempts != 1 || st[0].Lockouts != int64(n+1) {
			t.Errorf("lockout %d: status %v, want 1 attempt and %d lockouts", n+1, st[0], n+1)
		}
		if err := try(t, p, s, true); err != nil {
			t.Fatal(err)
		}
	}
}

func testPolicySuccess(t *testing.T, e *env) {
	p, _ := e.policy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(5)}})
	alice := lockout.Subject{Username: "alice", IP: "198.51.100.7"}
	bob := lockout.Subject{Username: "bob", IP: "198.51.100.7"}
	for range 3 {
		if err := try(t, p, alice, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := try(t, p, bob, true); err != nil {
		t.Fatal(err)
	}
	if err := try(t, p, alice, true); err != nil {
		t.Fatal(err)
	}
	st, err := p.Status(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st {
		want := map[string]int64{"username": 0, "ip": 3}[r.Rule]
		if r.Attempts != want {
			t.Errorf("rule %s: %d attempts after successes, want %d", r.Rule, r.Attempts, want)
		}
	}
}

func testPolicyBudget(t *testing.T, e *env) {
	rules := []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(10), lockout.ByUsernameAndIP(3)}
	for i := range rules {
		rules[i].Schedule = lockout.Fixed(100 * e.unit)
	}
	p, c := e.policy(t, lockout.Config{Rules: rules})
	s := lockout.Subject{Username: "alice", IP: "198.51.100.7"}
	ctx := context.Background()
	check := func(name string, budget int64, f func() error) {
		t.Helper()
		c.Reset()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.Calls() > budget {
			t.Errorf("%s: %d backend calls, budget %d", name, c.Calls(), budget)
		}
	}
	var a *lockout.Attempt
	allow := func() (err error) { a, err = p.Allow(ctx, s); return err }
	check("admitted", 1, allow)
	check("failure that does not lock", 0, func() error { return a.Failure(ctx) })
	if err := allow(); err != nil {
		t.Fatal(err)
	}
	check("success", 1, func() error { return a.Success(ctx) })
	for range 2 {
		if err := try(t, p, s, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := allow(); err != nil {
		t.Fatal(err)
	}
	check("failure that locks", 3, func() error { return a.Failure(ctx) })
	check("refused (locked)", 2, func() error {
		if _, err := p.Allow(ctx, s); !errors.Is(err, lockout.ErrLocked) {
			return fmt.Errorf("want ErrLocked, got %v", err)
		}
		return nil
	})
}

func testPolicyOperator(t *testing.T, e *env) {
	r := lockout.ByUsername(1)
	r.Schedule = lockout.Fixed(100 * e.unit)
	p, _ := e.policy(t, lockout.Config{Rules: []lockout.Rule{r}})
	ctx := context.Background()
	for _, u := range []string{"alice", "bob"} {
		if err := try(t, p, lockout.Subject{Username: u}, false); err != nil {
			t.Fatal(err)
		}
	}
	st, err := p.Status(ctx, lockout.Subject{Username: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !st[0].Locked || st[0].LockRemaining <= 0 || st[0].LockRemaining > 100*e.unit+e.h.Granularity || st[0].Lockouts != 1 {
		t.Errorf("status of a locked key: %v", st[0])
	}
	if _, ok := e.b.(backend.Lister); ok {
		var names []string
		for l, err := range p.Locks(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, l.Subject[0].Value)
			if l.Remaining <= 0 {
				t.Errorf("lock %v: remaining %v", l.KeyInfo, l.Remaining)
			}
		}
		if len(names) != 2 {
			t.Errorf("Locks: %v, want alice and bob", names)
		}
	} else {
		for _, err := range p.Locks(ctx) {
			if !errors.Is(err, backend.ErrUnsupported) {
				t.Errorf("Locks on a store without Lister: %v, want ErrUnsupported", err)
			}
		}
	}
	if err := p.Unlock(ctx, lockout.Subject{Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := try(t, p, lockout.Subject{Username: "alice"}, true); err != nil {
		t.Errorf("after Unlock: %v", err)
	}
	refused(t, try(t, p, lockout.Subject{Username: "bob"}, true), lockout.ReasonLocked)
}

func testPolicyHostile(t *testing.T, e *env) {
	r := lockout.Rule{Fields: []lockout.Field{lockout.Username, lockout.UserAgent, "tenant"}, Limit: 1, Schedule: lockout.Fixed(100 * e.unit)}
	p, _ := e.policy(t, lockout.Config{Rules: []lockout.Rule{r}})
	subjects := []lockout.Subject{
		{Username: strings.Repeat("ü", 500), UserAgent: "a", Fields: map[string]string{"tenant": "t"}},
		{Username: strings.Repeat("ü", 500) + "x", UserAgent: "a", Fields: map[string]string{"tenant": "t"}},
		{Username: "a", UserAgent: "Mozilla/5.0 {x} \x00\n" + strings.Repeat("z", 2000), Fields: map[string]string{"tenant": "t"}},
		{Username: "a", UserAgent: "b", Fields: map[string]string{"tenant": "{t},u=a"}},
		{Username: "a", UserAgent: "b", Fields: map[string]string{"tenant": "{t}"}},
	}
	for _, s := range subjects {
		if err := try(t, p, s, false); err != nil {
			t.Fatalf("first failure of %q: %v", s.Username, err)
		}
	}
	for _, s := range subjects {
		refused(t, try(t, p, s, true), lockout.ReasonLocked)
	}
}

// testPolicyPrefixIsolation checks that a policy's operator functions see
// and touch only its own keys when another policy's prefix begins with its
// own ("p" and "p:l", "q" and "q:l:x") on the same store: Locks lists only
// its own locks, and UnlockKey of the other policy's lock is an error
// wrapping lockout.ErrNotLockKey that leaves that lock in place.
func testPolicyPrefixIsolation(t *testing.T, e *env) {
	_, canList := e.b.(backend.Lister)
	// Each pair locks addresses of its own: "p" and "p:l" appear in two
	// pairs, and their locks from the first stay.
	for i, tc := range []struct{ mine, theirs string }{{"p", "p:l"}, {"q", "q:l:x"}, {"p:l", "p"}} {
		func() {
			pols := map[string]*lockout.Policy{}
			ips := map[string]string{tc.mine: fmt.Sprintf("192.0.2.%d", 2*i+1), tc.theirs: fmt.Sprintf("192.0.2.%d", 2*i+2)}
			ctx := context.Background()
			for _, prefix := range []string{tc.mine, tc.theirs} {
				r := lockout.ByIP(1)
				r.Schedule = lockout.Fixed(100 * e.unit)
				p, _ := e.policy(t, lockout.Config{Rules: []lockout.Rule{r, lockout.ByUsername(1)}, Prefix: prefix, LockCacheTTL: lockout.NoLockCache})
				pols[prefix] = p
				if err := try(t, p, lockout.Subject{IP: ips[prefix]}, false); err != nil {
					t.Fatal(err)
				}
			}
			lockKey := func(prefix string) string { return prefix + ":l:ip:{ip=" + ips[prefix] + "}" }
			mine, theirs := pols[tc.mine], pols[tc.theirs]
			if canList {
				for prefix, p := range pols {
					var keys []string
					for l, err := range p.Locks(ctx) {
						if err != nil {
							t.Fatal(err)
						}
						if !strings.HasPrefix(l.Key, prefix+":l:ip:{") {
							t.Errorf("policy %q: Locks lists %q, not a lock of its own", prefix, l.Key)
						}
						keys = append(keys, l.Key)
					}
					if !slices.Contains(keys, lockKey(prefix)) {
						t.Errorf("policy %q: Locks lists %q, without its own lock %q", prefix, keys, lockKey(prefix))
					}
				}
			}
			err := mine.UnlockKey(ctx, lockKey(tc.theirs))
			if !errors.Is(err, lockout.ErrNotLockKey) {
				t.Errorf("policy %q: UnlockKey of policy %q's lock %q = %v, want ErrNotLockKey", tc.mine, tc.theirs, lockKey(tc.theirs), err)
			}
			st, err := theirs.Status(ctx, lockout.Subject{IP: ips[tc.theirs]})
			if err != nil {
				t.Fatal(err)
			}
			if !st[0].Locked {
				t.Errorf("policy %q's lock was lifted by policy %q", tc.theirs, tc.mine)
			}
			refused(t, try(t, theirs, lockout.Subject{IP: ips[tc.theirs]}, true), lockout.ReasonLocked)
			// Its own lock, it can lift.
			if err := mine.UnlockKey(ctx, lockKey(tc.mine)); err != nil {
				t.Errorf("policy %q: UnlockKey of its own lock: %v", tc.mine, err)
			}
			if err := try(t, mine, lockout.Subject{IP: ips[tc.mine]}, true); err != nil {
				t.Errorf("policy %q after UnlockKey of its own lock: %v", tc.mine, err)
			}
		}()
	}
}

// testUnlockEveryLock: an unlock of a username lifts her username+IP locks
// too, where the store can list its keys; where it cannot, the unlock says
// so (ErrPartial), and one with the IP too reaches them.
func testUnlockEveryLock(t *testing.T, e *env) {
	one := func(fields ...lockout.Field) lockout.Rule {
		return lockout.Rule{Fields: fields, Limit: 1, Window: 100 * e.unit, Schedule: lockout.Fixed(100 * e.unit)}
	}
	p, _ := e.policy(t, lockout.Config{Rules: []lockout.Rule{one(lockout.Username), one(lockout.Username, lockout.IP)}, LockCacheTTL: lockout.NoLockCache})
	ctx := context.Background()
	alice := lockout.Subject{Username: "alice", IP: "192.0.2.1"}
	try(t, p, alice, false)
	try(t, p, lockout.Subject{Username: "alice", IP: "192.0.2.2"}, false) // refused: the username lock
	refused(t, try(t, p, alice, true), lockout.ReasonLocked)
	err := p.Unlock(lockout.WithOperator(ctx, "conformance", "api"), lockout.Subject{Username: "alice"})
	if !e.h.Lister {
		if !errors.Is(err, lockout.ErrPartial) {
			t.Fatalf("Unlock of a username on a store that cannot list: %v, want ErrPartial", err)
		}
		refused(t, try(t, p, alice, false), lockout.ReasonLocked) // the username+IP lock
		if err := p.Unlock(ctx, alice); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	if err := try(t, p, alice, true); err != nil {
		t.Errorf("alice after the unlock: %v, want admitted", err)
	}
}

// testResetAllOwnPrefix: ResetAll of prefix p leaves the keys of the
// policies with prefixes p:x and q untouched.
func testResetAllOwnPrefix(t *testing.T, e *env) {
	rule := lockout.Rule{Fields: []lockout.Field{lockout.Username}, Limit: 1, Window: 100 * e.unit, Schedule: lockout.Fixed(100 * e.unit)}
	alice := lockout.Subject{Username: "alice"}
	policies := map[string]*lockout.Policy{}
	for _, prefix := range []string{"p", "p:x", "q"} {
		policies[prefix], _ = e.policy(t, lockout.Config{Prefix: prefix, Rules: []lockout.Rule{rule}, LockCacheTTL: lockout.NoLockCache})
		try(t, policies[prefix], alice, false)
	}
	n, err := policies["p"].ResetAll(context.Background())
	if !e.h.Lister {
		if !errors.Is(err, backend.ErrUnsupported) {
			t.Errorf("ResetAll on a store that cannot list: %v, want ErrUnsupported", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 { // alice's lock and lockout history
		t.Errorf("ResetAll removed %d keys, want 2", n)
	}
	if err := try(t, policies["p"], alice, true); err != nil {
		t.Errorf("p after ResetAll: %v, want admitted", err)
	}
	for _, prefix := range []string{"p:x", "q"} {
		refused(t, try(t, policies[prefix], alice, true), lockout.ReasonLocked)
	}
}

// testKnownDeviceAndRepeats: untrusted failures lock the username, and its
// known device still logs in, then locks on its own limit; the same wrong
// password counts once, distinct ones lock as before.
func testKnownDeviceAndRepeats(t *testing.T, e *env) {
	r := lockout.ByUsername(3)
	r.Window = 100 * e.unit
	r.Schedule = lockout.Fixed(100 * e.unit)
	p, _ := e.policy(t, lockout.Config{
		Rules:        []lockout.Rule{r},
		Devices:      &lockout.DeviceConfig{Keys: [][]byte{[]byte(strings.Repeat("k", lockout.MinSecretLen))}, Rule: lockout.Rule{Limit: 2, Window: 100 * e.unit, Schedule: lockout.Fixed(100 * e.unit)}},
		Fingerprints: &lockout.FingerprintConfig{Secret: []byte(strings.Repeat("s", lockout.MinSecretLen))},
	})
	token, _, err := p.DeviceToken("alice", "")
	if err != nil {
		t.Fatal(err)
	}
	untrusted := lockout.Subject{Username: "alice"}
	for i := range 50 {
		if err := try(t, p, untrusted, false); err != nil && !errors.Is(err, lockout.ErrRefused) {
			t.Fatalf("untrusted failure %d: %v", i, err)
		}
	}
	refused(t, try(t, p, untrusted, true), lockout.ReasonLocked)
	device := lockout.Subject{Username: "alice", DeviceToken: token}
	if err := try(t, p, device, true); err != nil {
		t.Fatalf("the known device after 50 untrusted failures: %v", err)
	}
	for i := range 2 {
		if err := try(t, p, device, false); err != nil {
			t.Fatalf("device failure %d: %v", i+1, err)
		}
	}
	refused(t, try(t, p, device, true), lockout.ReasonLocked)

	bob := func(pw string) lockout.Subject {
		return lockout.Subject{Username: "bob", PasswordFingerprint: p.Fingerprint(pw)}
	}
	for i := range 20 {
		if err := try(t, p, bob("old"), false); err != nil {
			t.Fatalf("repeat %d of the same wrong password: %v", i+1, err)
		}
	}
	if err := try(t, p, bob("second"), false); err != nil {
		t.Fatalf("a second distinct password after 20 repeats: %v", err)
	}
	if err := try(t, p, bob("third"), false); err != nil {
		t.Fatalf("a third distinct password: %v", err)
	}
	refused(t, try(t, p, bob("fourth"), true), lockout.ReasonLocked)
}
