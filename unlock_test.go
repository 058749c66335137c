package lockout_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
)

// lockedKeys returns the policy's locks as "rule:subject" strings, sorted.
func lockedKeys(t *testing.T, p *lockout.Policy) []string {
	t.Helper()
	var out []string
	for l, err := range p.Locks(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l.KeyInfo.String())
	}
	slices.Sort(out)
	return out
}

// unlisted hides the Lister of the store it wraps, as memcached has none.
type unlisted struct{ backend.Backend }

// TestUnlockReachesEveryLock: unlocking a username lifts every lock whose
// key holds it, in every rule; unlocking an IP, every lock that holds it
// (or the IPv6 prefix a rule keys it by); nobody else's.
func TestUnlockReachesEveryLock(t *testing.T) {
	one := func(limit int, fields ...lockout.Field) lockout.Rule {
		return lockout.Rule{Fields: fields, Limit: limit, Window: time.Hour, Schedule: lockout.Fixed(time.Hour)}
	}
	// The IP rule locks on the third failure from an address, so that
	// several users' keys hold one address.
	rules := []lockout.Rule{one(2, lockout.Username), one(3, lockout.IP), one(1, lockout.Username, lockout.IP), one(1, lockout.IP, lockout.UserAgent, lockout.Username)}
	subjects := []lockout.Subject{
		{Username: "alice", IP: "192.0.2.1", UserAgent: "a"},
		{Username: "alice", IP: "2001:db8:1:2::1", UserAgent: "a"},
		{Username: "bob", IP: "192.0.2.1", UserAgent: "b"},
		{Username: "carol", IP: "2001:db8:1:2::9", UserAgent: "c"},
		{Username: "alicex", IP: "192.0.2.10", UserAgent: "a"},
		{Username: "dave", IP: "192.0.2.1", UserAgent: "d"},
		{Username: "erin", IP: "2001:db8:1:2::5", UserAgent: "a"},
	}
	// holds reports whether the lock ("rule:subject") holds the subject
	// given as segments: its key has at least one of their fields, and
	// the subject's value for each field it has.
	holds := func(lock string, segs ...string) bool {
		_, subj, _ := strings.Cut(lock, ":")
		parts := strings.Split(subj, ",")
		some := false
		for _, s := range segs {
			tag, _, _ := strings.Cut(s, "=")
			for _, p := range parts {
				if strings.HasPrefix(p, tag+"=") {
					if p != s {
						return false
					}
					some = true
				}
			}
		}
		return some
	}
	for _, tc := range []struct {
		name   string
		unlock lockout.Subject
		gone   [][]string // a lock holding all of one of these is lifted
		sure   []string   // locks that must exist before, and go
	}{
		{"username", lockout.Subject{Username: "ALICE"}, [][]string{{"u=alice"}},
			[]string{"username:u=alice", "username+ip:u=alice,ip=192.0.2.1", "username+ip:u=alice,ip=2001:db8:1:2::/64", "ip+useragent+username:ip=192.0.2.1,ua=a,u=alice"}},
		{"ipv4", lockout.Subject{IP: "192.0.2.1"}, [][]string{{"ip=192.0.2.1"}},
			[]string{"ip:ip=192.0.2.1", "username+ip:u=alice,ip=192.0.2.1", "username+ip:u=bob,ip=192.0.2.1", "ip+useragent+username:ip=192.0.2.1,ua=b,u=bob"}},
		{"ipv6 in the prefix", lockout.Subject{IP: "2001:db8:1:2::ffff"}, [][]string{{"ip=2001:db8:1:2::/64"}},
			[]string{"ip:ip=2001:db8:1:2::/64", "username+ip:u=carol,ip=2001:db8:1:2::/64", "username+ip:u=alice,ip=2001:db8:1:2::/64"}},
		// Each rule's keys that hold both, or the one of them it is keyed
		// by: not bob's username+IP lock, nor alice's from elsewhere.
		{"username and ip", lockout.Subject{Username: "alice", IP: "192.0.2.1"}, [][]string{{"u=alice", "ip=192.0.2.1"}},
			[]string{"username:u=alice", "ip:ip=192.0.2.1", "username+ip:u=alice,ip=192.0.2.1", "ip+useragent+username:ip=192.0.2.1,ua=a,u=alice"}},
		{"user agent", lockout.Subject{UserAgent: "a"}, [][]string{{"ua=a"}},
			[]string{"ip+useragent+username:ip=192.0.2.1,ua=a,u=alice", "ip+useragent+username:ip=192.0.2.10,ua=a,u=alicex"}},
		{"nobody", lockout.Subject{Username: "zoe"}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPolicyOn(t, newStore(t), lockout.Config{Rules: rules, LockCacheTTL: lockout.NoLockCache})
			ctx := context.Background()
			for _, s := range subjects {
				if a, err := p.Allow(ctx, s); err == nil {
					a.Failure(ctx)
				}
			}
			before := lockedKeys(t, p)
			for _, k := range tc.sure {
				if !slices.Contains(before, k) {
					t.Fatalf("lock %q missing before the unlock; locks: %q", k, before)
				}
			}
			var want []string
			for _, k := range before {
				lifted := false
				for _, segs := range tc.gone {
					lifted = lifted || holds(k, segs...)
				}
				if !lifted {
					want = append(want, k)
				}
			}
			lifted, err := p.UnlockCount(ctx, tc.unlock)
			if err != nil {
				t.Fatal(err)
			}
			if got := lockedKeys(t, p); !slices.Equal(got, want) {
				t.Errorf("locks after Unlock(%+v):\n got %q\nwant %q", tc.unlock, got, want)
			}
			if lifted != len(before)-len(want) {
				t.Errorf("UnlockCount(%+v) = %d, want the %d locks lifted", tc.unlock, lifted, len(before)-len(want))
			}
			// Again: nothing left to lift.
			if lifted, err := p.UnlockCount(ctx, tc.unlock); err != nil || lifted != 0 {
				t.Errorf("UnlockCount(%+v) again = %d, %v; want 0, nil", tc.unlock, lifted, err)
			}
		})
	}

	t.Run("store that cannot list", func(t *testing.T) {
		store := newStore(t)
		p := newPolicyOn(t, unlisted{store}, lockout.Config{Rules: rules[:3], LockCacheTTL: lockout.NoLockCache})
		ctx := context.Background()
		alice := lockout.Subject{Username: "alice", IP: "192.0.2.1"}
		a, err := p.Allow(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		a.Failure(ctx)
		err = p.Unlock(ctx, lockout.Subject{Username: "alice"})
		if !errors.Is(err, lockout.ErrPartial) {
			t.Errorf("Unlock of a username on a store that cannot list: %v, want ErrPartial", err)
		}
		// The username rule's lock is lifted; the username+IP and IP ones
		// are not reached: giving the IP too reaches them.
		if err := p.Unlock(ctx, alice); err != nil {
			t.Fatalf("Unlock with every field: %v", err)
		}
		if _, err := p.Allow(ctx, alice); err != nil {
			t.Errorf("alice after Unlock with every field: %v", err)
		}
	})
}

// TestResetAll clears every key of one policy and none of the policies
// whose prefixes begin with it, or differ.
func TestResetAll(t *testing.T) {
	store := newStore(t)
	ctx := context.Background()
	rule := lockout.Rule{Fields: []lockout.Field{lockout.Username}, Limit: 1, Window: time.Hour, Schedule: lockout.Fixed(time.Hour)}
	policies := map[string]*lockout.Policy{}
	for _, prefix := range []string{"p", "p:x", "q", "p:l"} {
		policies[prefix] = newPolicyOn(t, store, lockout.Config{Prefix: prefix, Rules: []lockout.Rule{rule, lockout.ByIP(100)}, LockCacheTTL: lockout.NoLockCache})
		for _, u := range []string{"alice", "bob"} {
			a, err := policies[prefix].Allow(ctx, lockout.Subject{Username: u, IP: "192.0.2.1"})
			if err != nil {
				t.Fatal(err)
			}
			a.Failure(ctx)
		}
	}
	n, err := policies["p"].ResetAll(lockout.WithOperator(ctx, "ops", "cli"))
	if err != nil {
		t.Fatal(err)
	}
	// alice and bob: a lock and a history each; the IP's counter.
	if n != 5 {
		t.Errorf("ResetAll removed %d keys, want 5", n)
	}
	for prefix, p := range policies {
		locks := lockedKeys(t, p)
		want := 2
		if prefix == "p" {
			want = 0
		}
		if len(locks) != want {
			t.Errorf("policy %q after ResetAll of p: locks %q, want %d", prefix, locks, want)
		}
	}
	if _, err := lockout.New(unlisted{store}, lockout.Config{Rules: []lockout.Rule{rule}}); err != nil {
		t.Fatal(err)
	}
	p := newPolicyOn(t, unlisted{store}, lockout.Config{Rules: []lockout.Rule{rule}})
	if _, err := p.ResetAll(ctx); !errors.Is(err, backend.ErrUnsupported) {
		t.Errorf("ResetAll on a store that cannot list: %v", err)
	}
}

// TestRules returns the rules with their defaults, in order, as a copy.
func TestRules(t *testing.T) {
	p := newPolicyOn(t, newStore(t), lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3), {Fields: []lockout.Field{lockout.IP, "tenant"}}}})
	rules := p.Rules()
	if len(rules) != 2 || rules[0].Name != "username" || rules[0].Limit != 3 || rules[1].Name != "ip+tenant" || rules[1].Limit != 5 || rules[1].Window == 0 {
		t.Fatalf("Rules() = %+v", rules)
	}
	rules[0].Name = "changed"
	if p.Rules()[0].Name != "username" {
		t.Error("Rules() shares the policy's slice")
	}
}

// listed records the prefixes the store it wraps is listed by.
type listed struct {
	backend.Backend
	mu       sync.Mutex
	prefixes []string
}

func (s *listed) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	s.mu.Lock()
	s.prefixes = append(s.prefixes, prefix)
	s.mu.Unlock()
	return s.Backend.(backend.Lister).Keys(ctx, prefix)
}

// TestUnlockListsLeadingFields: to find the keys of a rule keyed by more
// fields than an unlock gives, the policy lists only the keys that begin
// with the fields it has (a seek on bbolt, instead of every user's keys),
// and a rule whose first field is missing in full.
func TestUnlockListsLeadingFields(t *testing.T) {
	store := &listed{Backend: newStore(t)}
	p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{
		lockout.ByUsername(3), lockout.ByUsernameAndIP(3),
		{Name: "ip+username", Fields: []lockout.Field{lockout.IP, lockout.Username}, Limit: 3},
	}})
	if err := p.Reset(context.Background(), lockout.Subject{Username: "Alice"}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"lockout:a:ip+username:{", "lockout:a:username+ip:{u=alice,",
		"lockout:h:ip+username:{", "lockout:h:username+ip:{u=alice,",
		"lockout:l:ip+username:{", "lockout:l:username+ip:{u=alice,",
	}
	slices.Sort(store.prefixes)
	if !slices.Equal(store.prefixes, want) {
		t.Errorf("listed by\n%q\nwant\n%q", store.prefixes, want)
	}
}

// TestUnlockKeys: UnlockKeys lifts every lock it is given, and when one
// key is not a lock key of the policy (another prefix, a counter, an
// unknown rule, garbage), none, wherever that key is in the list.
func TestUnlockKeys(t *testing.T) {
	ctx := context.Background()
	rule := lockout.Rule{Fields: []lockout.Field{lockout.Username}, Limit: 1, Window: time.Hour, Schedule: lockout.Fixed(time.Hour)}
	p := newPolicyOn(t, newStore(t), lockout.Config{Prefix: "p", Rules: []lockout.Rule{rule}, LockCacheTTL: lockout.NoLockCache})
	lockAll := func() []string {
		t.Helper()
		for _, u := range []string{"alice", "bob"} {
			if a, err := p.Allow(ctx, lockout.Subject{Username: u}); err == nil {
				a.Failure(ctx)
			}
		}
		var keys []string
		for l, err := range p.Locks(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, l.Key)
		}
		slices.Sort(keys)
		if len(keys) != 2 {
			t.Fatalf("locks %q, want alice's and bob's", keys)
		}
		return keys
	}
	keys := lockAll()
	for _, tc := range []struct {
		name string
		bad  string
	}{
		{"another prefix", "q:l:username:{u=carol}"},
		{"a counter", "p:a:username:{u=carol}"},
		{"an unknown rule", "p:l:ip:{ip=192.0.2.1}"},
		{"garbage", "x"},
	} {
		for i := range len(keys) + 1 {
			list := slices.Insert(slices.Clone(keys), i, tc.bad)
			if err := p.UnlockKeys(ctx, list...); !errors.Is(err, lockout.ErrNotLockKey) {
				t.Errorf("%s at %d: %v, want ErrNotLockKey", tc.name, i, err)
			}
			if got := lockedKeys(t, p); len(got) != 2 {
				t.Fatalf("%s at %d: locks left %q, want both", tc.name, i, got)
			}
		}
	}
	if err := p.UnlockKeys(ctx, keys...); err != nil {
		t.Fatal(err)
	}
	if got := lockedKeys(t, p); len(got) != 0 {
		t.Errorf("after UnlockKeys of both: %q", got)
	}
}

// TestResetAllDuringOutage: the store is back but the policy is still
// degraded (until its next probe) when an operator resets everything.
// ResetAll cleared the keys it listed in the store, and those of the same
// names in the fallback; alice's lock, made in the fallback during the
// outage and not yet written back, stayed there, and the write-back made
// it in the store: alice locked everywhere after the reset. ResetAll now
// clears the fallback's keys of the policy too.
func TestResetAllDuringOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sw := &switchStore{Backend: newStore(t)}
		rules := []lockout.Rule{lockout.ByUsername(5)}
		p := newPolicyOn(t, sw, lockout.Config{Rules: rules})
		sw.mode.Store(down)
		fail(t, p, alice, 5) // locked in the fallback
		sw.mode.Store(up)    // degraded until the next probe
		if _, err := p.ResetAll(bg); err != nil {
			t.Fatal(err)
		}
		probeAfterInterval(t, p)
		time.Sleep(2 * time.Second)
		other := newPolicyOn(t, sw, lockout.Config{Rules: rules})
		if st := status(t, other, alice)["username"]; st.Locked || st.Lockouts != 0 {
			t.Errorf("alice in the store after ResetAll and the recovery: %v, want nothing", st)
		}
		if err := attempt(t, p, alice, true); err != nil {
			t.Errorf("alice after ResetAll: %v", err)
		}
	})
}

// TestUnlockCountBatches: an unlock by IP of more username+IP locks than
// one store call of an operator deletes counts them all.
func TestUnlockCountBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := lockout.ByUsernameAndIP(1)
		r.Schedule = lockout.Fixed(time.Hour)
		p := newPolicyOn(t, newStore(t), lockout.Config{Rules: []lockout.Rule{r}})
		for i := range 400 {
			fail(t, p, lockout.Subject{Username: fmt.Sprint("u", i), IP: "198.51.100.7"}, 1)
		}
		lifted, err := p.UnlockCount(bg, lockout.Subject{IP: "198.51.100.7"})
		if err != nil || lifted != 400 {
			t.Errorf("UnlockCount = %d, %v; want 400", lifted, err)
		}
	})
}
