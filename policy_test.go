package lockout_test

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
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/internal/counting"
)

// newPolicy returns a policy over a fresh store wrapped in a call counter.
// Call it inside the test's synctest bubble.
func newPolicy(t *testing.T, cfg lockout.Config) (*lockout.Policy, *counting.Store) {
	t.Helper()
	store, counter := counting.Wrap(newStore(t))
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	p, err := lockout.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, counter
}

var bg = context.Background()

// attempt runs one attempt with the given outcome and returns Allow's error.
func attempt(t *testing.T, p *lockout.Policy, s lockout.Subject, ok bool) error {
	t.Helper()
	a, err := p.Allow(bg, s)
	if err != nil {
		return err
	}
	if ok {
		err = a.Success(bg)
	} else {
		err = a.Failure(bg)
	}
	if err != nil {
		t.Fatalf("reporting the outcome: %v", err)
	}
	return nil
}

func fail(t *testing.T, p *lockout.Policy, s lockout.Subject, n int) {
	t.Helper()
	for i := range n {
		if err := attempt(t, p, s, false); err != nil {
			t.Fatalf("failure %d of %d: %v", i+1, n, err)
		}
	}
}

// refusal returns err as a *RefusedError, failing the test if it is not one.
func refusal(t *testing.T, err error) *lockout.RefusedError {
	t.Helper()
	var re *lockout.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a *RefusedError", err)
	}
	return re
}

func status(t *testing.T, p *lockout.Policy, s lockout.Subject) map[string]lockout.RuleStatus {
	t.Helper()
	st, err := p.Status(bg, s)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]lockout.RuleStatus{}
	for _, r := range st {
		m[r.Rule] = r
	}
	return m
}

var (
	alice = lockout.Subject{Username: "alice", IP: "198.51.100.7"}
	bob   = lockout.Subject{Username: "bob", IP: "198.51.100.7"}
)

func TestReserveBeforeVerify(t *testing.T) {
	rules := []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(5), lockout.ByUsernameAndIP(5)}
	for _, r := range rules {
		for _, slow := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/slow=%v", r.Fields, slow), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{r}})
					var verified atomic.Int64
					var wg sync.WaitGroup
					refused := make([]error, 256)
					for g := range 256 {
						s := lockout.Subject{Username: "victim", IP: "203.0.113.9"}
						if r.Fields[0] == lockout.IP {
							s.Username = fmt.Sprintf("user%d", g) // an IP rule sees many usernames
						}
						wg.Go(func() {
							_, err := p.Check(bg, s, func(context.Context) (bool, error) {
								verified.Add(1)
								if slow {
									time.Sleep(50 * time.Millisecond) // all in flight at once
								}
								return false, nil
							})
							refused[g] = err
						})
					}
					wg.Wait()
					got := verified.Load()
					if got != 5 {
						t.Errorf("%d password verifications, want exactly 5", got)
					}
					n := 0
					for _, err := range refused {
						if err != nil {
							n++
							if !errors.Is(err, lockout.ErrRefused) {
								t.Errorf("err = %v, want a refusal", err)
							}
						}
					}
					if n != 256-int(got) {
						t.Errorf("%d refusals and %d verifications, want 256 in all", n, got)
					}
					st, err := p.Status(bg, lockout.Subject{Username: "victim", IP: "203.0.113.9"})
					if err != nil {
						t.Fatal(err)
					}
					if !st[0].Locked || st[0].Lockouts != 1 || st[0].Attempts != 0 {
						t.Errorf("status %v: want locked once, with a fresh counter", st[0])
					}
				})
			})
		}
	}
}

func TestLockTimingAndEscalation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := lockout.ByUsername(3)
		r.Window = time.Hour
		r.Schedule = lockout.List(time.Minute, 2*time.Minute, 5*time.Minute, 10*time.Minute, lockout.Forever)
		var events []lockout.LockoutEvent
		p, _ := newPolicy(t, lockout.Config{
			Rules: []lockout.Rule{r},
			Hooks: lockout.Hooks{Lockout: func(_ context.Context, e lockout.LockoutEvent) { events = append(events, e) }},
		})
		for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute} {
			fail(t, p, alice, 3)
			start := time.Now()
			re := refusal(t, attempt(t, p, alice, true))
			if re.Reason != lockout.ReasonLocked || re.RetryAfter != want || re.Rule != "username" || re.Key != "u=alice" {
				t.Fatalf("lockout %d: %+v, want locked by username for %v", i+1, re, want)
			}
			if !errors.Is(re, lockout.ErrLocked) {
				t.Errorf("errors.Is(ErrLocked) = false")
			}
			// Refused attempts during the lock do not extend it.
			for range 10 {
				time.Sleep(want / 20)
				re := refusal(t, attempt(t, p, alice, false))
				if got, wantLeft := re.RetryAfter, want-time.Since(start); got != wantLeft {
					t.Fatalf("retry after %v, want %v", got, wantLeft)
				}
			}
			time.Sleep(time.Until(start.Add(want - time.Nanosecond)))
			if err := attempt(t, p, alice, false); !errors.Is(err, lockout.ErrLocked) {
				t.Fatalf("1ns before the lock ends: %v, want ErrLocked", err)
			}
			time.Sleep(time.Nanosecond)
			// Admitted again, with a fresh counter: refused attempts did not count.
			a, err := p.Allow(bg, alice)
			if err != nil {
				t.Fatalf("when the lock ends: %v", err)
			}
			a.Success(bg)
			if st := status(t, p, alice)["username"]; st.Attempts != 0 || st.Lockouts != int64(i+1) || st.Locked {
				t.Errorf("after lockout %d: %v", i+1, st)
			}
		}
		fail(t, p, alice, 3)
		re := refusal(t, attempt(t, p, alice, true))
		if !re.Forever || re.RetryAfter != 0 {
			t.Fatalf("fifth lockout: %+v, want Forever", re)
		}
		time.Sleep(25 * time.Hour) // past every window the rule has
		if err := attempt(t, p, alice, true); !errors.Is(err, lockout.ErrLocked) {
			t.Fatalf("a day into a forever lock: %v", err)
		}
		if len(events) != 5 || events[4].Duration != lockout.Forever || events[4].Count != 5 || events[0].Duration != time.Minute {
			t.Errorf("lockout events: %+v", events)
		}
		if err := p.Unlock(bg, alice); err != nil {
			t.Fatal(err)
		}
		if err := attempt(t, p, alice, true); err != nil {
			t.Fatalf("after Unlock: %v", err)
		}
	})
}

func TestHistoryForgets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := lockout.ByUsername(2)
		r.Schedule = lockout.List(time.Minute, time.Hour)
		r.HistoryWindow = 3 * time.Hour
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{r}})
		lockFor := func() time.Duration {
			t.Helper()
			fail(t, p, alice, 2)
			return refusal(t, attempt(t, p, alice, true)).RetryAfter
		}
		if d := lockFor(); d != time.Minute {
			t.Fatalf("first lock %v", d)
		}
		time.Sleep(2 * time.Hour)
		if d := lockFor(); d != time.Hour {
			t.Fatalf("second lock within the history window: %v, want 1h", d)
		}
		// The history runs 3h from the end of the latest lock (1h).
		time.Sleep(4*time.Hour - time.Nanosecond)
		if st := status(t, p, alice)["username"]; st.Lockouts != 2 {
			t.Fatalf("history just before it ends: %d lockouts", st.Lockouts)
		}
		time.Sleep(time.Nanosecond)
		if d := lockFor(); d != time.Minute {
			t.Fatalf("lock after the history window: %v, want 1m again", d)
		}
	})
}

// TestHistoryOutlivesLock: a lock longer than the history window does not
// outlive the count that made it; the next lockout escalates from it (a
// review: with HistoryWindow 30m the schedule ran 1m ... 32m, then 1m
// again).
func TestHistoryOutlivesLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := lockout.ByUsername(2)
		r.Schedule = lockout.Exponential(time.Minute, 2, time.Hour)
		r.HistoryWindow = 30 * time.Minute
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{r}})
		var got []time.Duration
		for range 8 {
			fail(t, p, alice, 2)
			d := refusal(t, attempt(t, p, alice, true)).RetryAfter
			got = append(got, d)
			time.Sleep(d) // the lock ends; the next guesses come at once
		}
		want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute,
			16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}
		if !slices.Equal(got, want) {
			t.Errorf("locks %v, want %v", got, want)
		}
	})
}

func TestWindow(t *testing.T) {
	for _, sliding := range []bool{false, true} {
		t.Run(fmt.Sprintf("sliding=%v", sliding), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := lockout.ByUsername(3)
				r.Window = 10 * time.Minute
				r.Sliding = sliding
				p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{r}})
				fail(t, p, alice, 1)
				time.Sleep(6 * time.Minute)
				fail(t, p, alice, 1)
				time.Sleep(6 * time.Minute)
				// Fixed: the first failure is forgotten with its window, and
				// the second with it. Sliding: both are remembered.
				want := int64(0)
				if sliding {
					want = 2
				}
				if st := status(t, p, alice)["username"]; st.Attempts != want {
					t.Errorf("attempts = %d, want %d", st.Attempts, want)
				}
			})
		})
	}
}

func TestSuccessSemantics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(5)}})
		fail(t, p, alice, 3)
		// bob logs in from alice's IP: the IP's counter stays.
		if err := attempt(t, p, bob, true); err != nil {
			t.Fatal(err)
		}
		st := status(t, p, alice)
		if st["ip"].Attempts != 3 || st["username"].Attempts != 3 {
			t.Fatalf("after bob's success from the same IP: %v", st)
		}
		// alice logs in: her username counter resets, the IP's does not.
		if err := attempt(t, p, alice, true); err != nil {
			t.Fatal(err)
		}
		st = status(t, p, alice)
		if st["ip"].Attempts != 3 || st["username"].Attempts != 0 {
			t.Fatalf("after alice's success: %v", st)
		}
		// An explicit SuccessReset on the IP rule does reset it.
		ipReset := lockout.ByIP(5)
		ipReset.OnSuccess = lockout.SuccessReset
		userRelease := lockout.ByUsername(5)
		userRelease.OnSuccess = lockout.SuccessRelease
		p2, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{userRelease, ipReset}, Prefix: "p2"})
		fail(t, p2, alice, 2)
		if err := attempt(t, p2, alice, true); err != nil {
			t.Fatal(err)
		}
		st = status(t, p2, alice)
		if st["ip"].Attempts != 0 || st["username"].Attempts != 2 {
			t.Fatalf("SuccessReset on ip, SuccessRelease on username: %v", st)
		}
	})
}

func TestSubjects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(100)}})
		attempts := func(s lockout.Subject, rule string) int64 {
			t.Helper()
			return status(t, p, s)[rule].Attempts
		}
		// A username that looks like an IP never touches the IP's counter.
		fail(t, p, lockout.Subject{Username: "203.0.113.5", IP: "198.51.100.1"}, 2)
		if n := attempts(lockout.Subject{IP: "203.0.113.5"}, "ip"); n != 0 {
			t.Errorf("IP 203.0.113.5 has %d attempts from username 203.0.113.5", n)
		}
		// Case and width variants share a counter.
		for _, u := range []string{"Alice", "ALICE", "Ａｌｉｃｅ"} {
			fail(t, p, lockout.Subject{Username: u}, 1)
		}
		if err := attempt(t, p, lockout.Subject{Username: "alice"}, true); !errors.Is(err, lockout.ErrLocked) {
			t.Errorf("after failures as Alice, ALICE and Ａｌｉｃｅ: %v, want alice locked", err)
		}
		// One IPv6 /64 shares a counter; the next /64 does not.
		fail(t, p, lockout.Subject{IP: "2001:db8:1:2::1"}, 1)
		fail(t, p, lockout.Subject{IP: "2001:db8:1:2:ffff:ffff:ffff:fffe"}, 1)
		if n := attempts(lockout.Subject{IP: "2001:db8:1:2::99"}, "ip"); n != 2 {
			t.Errorf("/64 counter = %d, want 2", n)
		}
		if n := attempts(lockout.Subject{IP: "2001:db8:1:3::1"}, "ip"); n != 0 {
			t.Errorf("next /64 counter = %d, want 0", n)
		}
		// IPv4-mapped IPv6 is IPv4.
		fail(t, p, lockout.Subject{IP: "::ffff:192.0.2.1"}, 1)
		fail(t, p, lockout.Subject{IP: "192.0.2.1"}, 1)
		if n := attempts(lockout.Subject{IP: "192.0.2.1"}, "ip"); n != 2 {
			t.Errorf("mapped and plain IPv4 counter = %d, want 2", n)
		}
		// An empty username makes the username rule not apply.
		st, err := p.Status(bg, lockout.Subject{IP: "192.0.2.1"})
		if err != nil || len(st) != 1 || st[0].Rule != "ip" {
			t.Errorf("status without a username: %v, %v; want the ip rule only", st, err)
		}
		// Unparseable IPs and rejected usernames are errors, not buckets.
		for _, s := range []lockout.Subject{
			{IP: "203.0.113.5, 198.51.100.1"}, {IP: "203.0.113.5:443"}, {IP: "not an ip"}, {IP: "999.1.1.1"},
			{Username: "with space"}, {Username: "tab\tname"}, {Username: "\u0000"},
		} {
			_, err := p.Allow(bg, s)
			if !errors.Is(err, lockout.ErrInvalidSubject) || errors.Is(err, lockout.ErrRefused) {
				t.Errorf("Allow(%+v) = %v, want ErrInvalidSubject", s, err)
			}
		}
	})
}

func TestLists(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, counter := newPolicy(t, lockout.Config{
			Rules:          []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(3)},
			AllowIPs:       []string{"10.0.0.0/8", "2001:db8:aaaa::/48"},
			AllowUsernames: []string{"Monitor"},
			DenyIPs:        []string{"192.0.2.66", "10.6.6.0/24"},
			DenyUsernames:  []string{"root"},
		})
		for _, s := range []lockout.Subject{
			{Username: "alice", IP: "10.1.2.3"},
			{Username: "alice", IP: "2001:db8:aaaa:1::5"},
			{Username: "MONITOR", IP: "198.51.100.1"},
		} {
			fail(t, p, s, 50)
			a, err := p.Allow(bg, s)
			if err != nil || !a.Allowlisted() {
				t.Errorf("allowlisted %+v after 50 failures: %v", s, err)
			}
		}
		if n := counter.Calls(); n != 0 {
			t.Errorf("allowlisted attempts made %d backend calls, want 0", n)
		}
		for _, s := range []lockout.Subject{
			{Username: "alice", IP: "192.0.2.66"},
			{Username: "alice", IP: "10.6.6.1"}, // deny wins over allow
			{Username: "Root", IP: "198.51.100.1"},
			{Username: "root"},
		} {
			_, err := p.Allow(bg, s)
			if re := refusal(t, err); re.Reason != lockout.ReasonDenylisted || !errors.Is(err, lockout.ErrDenylisted) {
				t.Errorf("denylisted %+v: %v", s, err)
			}
		}
		if n := counter.Calls(); n != 0 {
			t.Errorf("denylisted attempts made %d backend calls, want 0", n)
		}
	})
}

func TestRoundTripBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rules := []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(10), lockout.ByUsernameAndIP(3)}
		p, counter := newPolicy(t, lockout.Config{Rules: rules, DenyIPs: []string{"192.0.2.66"}})
		sliding := slices.Clone(rules)
		sliding[1].Sliding = true
		// Without the lock cache, a refusal is the store's: its budget
		// is measured there (with the cache, a remembered lock answers).
		pn, counterN := newPolicy(t, lockout.Config{Rules: rules, LockCacheTTL: lockout.NoLockCache})
		ps, counterS := newPolicy(t, lockout.Config{Rules: sliding})
		check := func(step string, c *counting.Store, max int64, f func()) {
			t.Helper()
			c.Reset()
			f()
			if got := c.Calls(); got > max {
				t.Errorf("%s: %d backend calls, budget %d", step, got, max)
			} else {
				t.Logf("%s: %d backend calls (budget %d)", step, got, max)
			}
		}
		var a *lockout.Attempt
		check("permission asked, admitted", counter, 1, func() { a, _ = p.Allow(bg, alice) })
		check("failure that does not lock", counter, 0, func() { a.Failure(bg) })
		a, _ = p.Allow(bg, alice)
		check("success", counter, 1, func() { a.Success(bg) })
		fail(t, p, alice, 2)
		a, _ = p.Allow(bg, alice)
		check("failure that locks", counter, 3, func() { a.Failure(bg) })
		check("refused by a lock this process remembers", counter, 0, func() {
			if _, err := p.Allow(bg, alice); !errors.Is(err, lockout.ErrLocked) {
				t.Fatalf("want locked: %v", err)
			}
		})
		fail(t, pn, alice, 3)
		check("refused (locked)", counterN, 2, func() {
			if _, err := pn.Allow(bg, alice); !errors.Is(err, lockout.ErrLocked) {
				t.Fatalf("want locked: %v", err)
			}
		})
		if n := counterN.Calls(); n != 2 {
			t.Errorf("a refusal by the store's lock made %d calls, want 2 (the admission, the give-back)", n)
		}
		check("refused (denylisted)", counter, 0, func() { p.Allow(bg, lockout.Subject{IP: "192.0.2.66"}) })
		a, _ = ps.Allow(bg, alice)
		check("failure that does not lock, sliding window", counterS, 1, func() { a.Failure(bg) })
		if counterS.Calls() != 1 {
			t.Errorf("a sliding window failure made %d calls, want exactly 1", counterS.Calls())
		}
	})
}

func TestCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3)}})
		errDB := errors.New("user database down")
		// A verify error counts as a failure and is returned.
		ok, err := p.Check(bg, alice, func(context.Context) (bool, error) { return false, errDB })
		if ok || !errors.Is(err, errDB) {
			t.Errorf("Check with a verify error = %v, %v", ok, err)
		}
		// A panic counts as a failure and goes on.
		func() {
			defer func() {
				if recover() == nil {
					t.Error("the panic did not go on")
				}
			}()
			p.Check(bg, alice, func(context.Context) (bool, error) { panic("boom") })
		}()
		if st := status(t, p, alice)["username"]; st.Attempts != 2 {
			t.Errorf("attempts after an error and a panic = %d, want 2", st.Attempts)
		}
		ok, err = p.Check(bg, alice, func(context.Context) (bool, error) { return true, nil })
		if !ok || err != nil {
			t.Errorf("Check of a right password = %v, %v", ok, err)
		}
		// An abandoned attempt counts as a failure: three of them use up the
		// limit, and the next attempt is refused without verifying.
		for range 3 {
			if _, err := p.Allow(bg, alice); err != nil {
				t.Fatal(err)
			}
		}
		called := false
		ok, err = p.Check(bg, alice, func(context.Context) (bool, error) { called = true; return true, nil })
		if ok || called || !errors.Is(err, lockout.ErrCapacity) {
			t.Errorf("after three abandoned attempts: ok=%v called=%v err=%v, want ErrCapacity without verifying", ok, called, err)
		}
		// Reporting twice is an error.
		a, _ := p.Allow(bg, bob)
		a.Failure(bg)
		if err := a.Success(bg); !errors.Is(err, lockout.ErrReported) {
			t.Errorf("second report: %v", err)
		}
	})
}

func TestOperator(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(2), lockout.ByIP(50)}})
		fail(t, p, alice, 2)
		fail(t, p, lockout.Subject{Username: "carol", IP: "2001:db8::1"}, 2)
		fail(t, p, bob, 1)
		st := status(t, p, alice)
		if u := st["username"]; !u.Locked || u.LockRemaining != time.Minute || u.Lockouts != 1 || u.Limit != 2 {
			t.Errorf("alice: %v", u)
		}
		if ip := st["ip"]; ip.Attempts != 3 || ip.Locked || ip.WindowRemaining != lockout.DefaultWindow {
			t.Errorf("alice's IP: %+v", ip)
		}
		var locks []lockout.Lock
		for l, err := range p.Locks(bg) {
			if err != nil {
				t.Fatal(err)
			}
			locks = append(locks, l)
		}
		if len(locks) != 2 {
			t.Fatalf("Locks: %+v, want alice and carol", locks)
		}
		for _, l := range locks {
			if l.Rule != "username" || l.Remaining != time.Minute || len(l.Subject) != 1 || l.Subject[0].Tag != "u" {
				t.Errorf("lock %+v", l)
			}
			if l.Subject[0].Value == "carol" {
				if err := p.UnlockKey(bg, l.Key); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := attempt(t, p, lockout.Subject{Username: "carol"}, true); err != nil {
			t.Errorf("carol after UnlockKey: %v", err)
		}
		if err := p.UnlockKey(bg, "lockout:a:username:{u=alice}"); !errors.Is(err, lockout.ErrNotLockKey) {
			t.Errorf("UnlockKey of a counter key: %v, want ErrNotLockKey", err)
		}
		if err := p.Reset(bg, alice); err != nil {
			t.Fatal(err)
		}
		if st := status(t, p, alice)["username"]; st.Locked || st.Lockouts != 0 {
			t.Errorf("after Reset: %v", st)
		}
		// A store that cannot list says so.
		pb, _ := lockout.New(brokenStore{}, lockout.Config{Rules: []lockout.Rule{lockout.ByIP(1)}, Logger: discard})
		n := 0
		for _, err := range pb.Locks(bg) {
			n++
			if !errors.Is(err, errors.ErrUnsupported) || !errors.Is(err, backend.ErrUnsupported) {
				t.Errorf("Locks on a store that cannot list: %v", err)
			}
		}
		if n != 1 {
			t.Errorf("Locks on a store that cannot list yielded %d times, want one error", n)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	store := newStore(t)
	good := lockout.ByUsername(3)
	tests := []struct {
		name string
		cfg  lockout.Config
	}{
		{"no rules", lockout.Config{}},
		{"no fields", lockout.Config{Rules: []lockout.Rule{{Limit: 3}}}},
		{"negative limit", lockout.Config{Rules: []lockout.Rule{lockout.ByIP(-1)}}},
		{"duplicate names", lockout.Config{Rules: []lockout.Rule{good, good}}},
		{"bad rule name", lockout.Config{Rules: []lockout.Rule{{Name: "a:b", Fields: []lockout.Field{lockout.IP}}}}},
		{"bad field name", lockout.Config{Rules: []lockout.Rule{{Fields: []lockout.Field{"a b"}}}}},
		{"same field twice", lockout.Config{Rules: []lockout.Rule{{Fields: []lockout.Field{lockout.IP, lockout.IP}}}}},
		{"bad prefix", lockout.Config{Rules: []lockout.Rule{good}, Prefix: "a{b}"}},
		{"IPv6 prefix", lockout.Config{Rules: []lockout.Rule{{Fields: []lockout.Field{lockout.IP}, IPv6Prefix: 129}}}},
		{"empty schedule", lockout.Config{Rules: []lockout.Rule{{Fields: []lockout.Field{lockout.IP}, Schedule: lockout.List()}}}},
		{"forever not last", lockout.Config{Rules: []lockout.Rule{{Fields: []lockout.Field{lockout.IP}, Schedule: lockout.List(lockout.Forever, time.Minute)}}}},
		{"zero fixed", lockout.Config{Rules: []lockout.Rule{{Fields: []lockout.Field{lockout.IP}, Schedule: lockout.Fixed(0)}}}},
		{"exponential max below base", lockout.Config{Rules: []lockout.Rule{{Fields: []lockout.Field{lockout.IP}, Schedule: lockout.Exponential(time.Hour, 2, time.Minute)}}}},
		{"bad allow IP", lockout.Config{Rules: []lockout.Rule{good}, AllowIPs: []string{"10.0.0.0/33"}}},
		{"bad deny username", lockout.Config{Rules: []lockout.Rule{good}, DenyUsernames: []string{"a b"}}},
		{"negative timeout", lockout.Config{Rules: []lockout.Rule{good}, Timeout: -1}},
	}
	for _, tc := range tests {
		if _, err := lockout.New(store, tc.cfg); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
	if _, err := lockout.New(nil, lockout.Config{Rules: []lockout.Rule{good}}); err == nil {
		t.Error("New with a nil store succeeded")
	}
}

func TestLogging(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf strings.Builder
		logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(1)}, Logger: logger})
		fail(t, p, alice, 1)
		attempt(t, p, alice, true)
		pb, _ := lockout.New(brokenStore{}, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(1)}, Logger: logger})
		defer pb.Close()
		pb.Allow(bg, alice)
		out := buf.String()
		for _, want := range []string{
			`level=WARN msg="lockout: locked out" rule=username key="u=alice" duration=1m0s forever=false count=1`,
			`level=DEBUG msg="lockout: refused" reason=locked rule=username key="u=alice" retry_after=1m0s`,
			`level=ERROR msg="lockout: backend error" error="lockout: backend: store is down" outage=fallback`,
			`level=WARN msg="lockout: store failing, degraded mode starts" error="lockout: backend: store is down" outage=fallback probe_interval=1s`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %q:\n%s", want, out)
			}
		}
	})
}

// TestCallerCancels: a caller that gave up before Allow makes no store
// call and is no store failure. One that gives up during the call gets
// its context's error once the call ended (TestAllowGivenUp: what it
// reserved is given back), and a store that hung meanwhile, past the
// policy's Timeout, did fail.
func TestCallerCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hooked int
		p, err := lockout.New(brokenStore{hang: true}, lockout.Config{
			Rules:  []lockout.Rule{lockout.ByUsername(3)},
			Logger: discard,
			Hooks:  lockout.Hooks{BackendError: func(context.Context, error) { hooked++ }},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ctx, cancel := context.WithCancel(bg)
		cancel()
		if a, err := p.Allow(ctx, alice); a != nil || !errors.Is(err, context.Canceled) || errors.Is(err, lockout.ErrRefused) {
			t.Errorf("Allow with a cancelled context = %v, %v; want nil and context.Canceled", a, err)
		}
		if hooked != 0 {
			t.Errorf("BackendError hook called %d times for a caller that gave up before", hooked)
		}
		ctx, cancel = context.WithTimeout(bg, 10*time.Millisecond) // shorter than the policy's timeout
		defer cancel()
		start := time.Now()
		if a, err := p.Allow(ctx, alice); a != nil || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, lockout.ErrRefused) {
			t.Errorf("Allow past the caller's deadline = %v, %v", a, err)
		}
		if d := time.Since(start); d != lockout.DefaultTimeout {
			t.Errorf("Allow past the caller's deadline returned after %v, want the policy's timeout, %v", d, lockout.DefaultTimeout)
		}
		if hooked != 1 {
			t.Errorf("BackendError hook called %d times for a store that hung, want 1", hooked)
		}
	})
}

// TestCanonicalizeToEmpty: a Canonicalize of the application's that makes
// a username empty is an error, not a subject without a username, which
// every username rule would skip (a review).
func TestCanonicalizeToEmpty(t *testing.T) {
	p, err := lockout.New(newStore(t), lockout.Config{
		Rules:        []lockout.Rule{lockout.ByUsername(1)},
		Logger:       discard,
		Canonicalize: func(u string) (string, error) { return strings.TrimPrefix(u, "skip:"), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	for _, tc := range []struct {
		username string
		invalid  bool
	}{
		{"skip:", true},
		{"skip:alice", false},
		{"", false}, // no username: the username rules do not apply
	} {
		_, err := p.Allow(bg, lockout.Subject{Username: tc.username, IP: "192.0.2.1"})
		if got := errors.Is(err, lockout.ErrInvalidSubject); got != tc.invalid {
			t.Errorf("Allow(%q): %v, want invalid: %v", tc.username, err, tc.invalid)
		}
	}
}

// TestUsernameLength: a username longer than MaxUsernameBytes is invalid
// before it is canonicalized (which takes time in proportion to its
// length), in Allow, Status and Attempts alike; one of MaxUsernameBytes
// is counted.
func TestUsernameLength(t *testing.T) {
	var canonicalized []int
	p, _ := journalPolicy(t, lockout.Config{
		Rules: []lockout.Rule{lockout.ByUsername(5)},
		Canonicalize: func(u string) (string, error) {
			canonicalized = append(canonicalized, len(u))
			return lockout.CanonicalizeUsername(u)
		},
	})
	ctx := t.Context()
	longest := strings.Repeat("a", lockout.MaxUsernameBytes)
	a, err := p.Allow(ctx, lockout.Subject{Username: longest})
	if err != nil {
		t.Fatalf("a username of MaxUsernameBytes: %v", err)
	}
	a.Failure(ctx)
	canonicalized = nil
	long := longest + "a"
	if _, err := p.Allow(ctx, lockout.Subject{Username: long}); !errors.Is(err, lockout.ErrInvalidSubject) {
		t.Errorf("Allow with a username of MaxUsernameBytes+1: %v, want ErrInvalidSubject", err)
	}
	if _, err := p.Status(ctx, lockout.Subject{Username: long}); !errors.Is(err, lockout.ErrInvalidSubject) {
		t.Errorf("Status with a username of MaxUsernameBytes+1: %v, want ErrInvalidSubject", err)
	}
	if _, _, err := p.Attempts(ctx, lockout.AttemptQuery{Username: long}); !errors.Is(err, lockout.ErrInvalidSubject) {
		t.Errorf("Attempts by a username of MaxUsernameBytes+1: %v, want ErrInvalidSubject", err)
	}
	if len(canonicalized) != 0 {
		t.Errorf("usernames of %v bytes canonicalized, want none", canonicalized)
	}
}

// TestPanicLocks: a panic in Check's verify is a failure: with the key's
// last slot, it locks the key (an abandoned attempt would only leave the
// counter full, refusing for capacity until the window ends).
func TestPanicLocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3)}})
		fail(t, p, alice, 2)
		func() {
			defer func() { _ = recover() }()
			p.Check(bg, alice, func(context.Context) (bool, error) { panic("boom") })
		}()
		if _, err := p.Allow(bg, alice); !errors.Is(err, lockout.ErrLocked) {
			t.Errorf("after two failures and a panic (limit 3): %v, want locked", err)
		}
	})
}

// TestLockerLosesMarker: two attempts each held the last slot of one rule
// key (an unlock between them), and both fail. Only the first takes the
// lock marker: one lockout, of the schedule's first length.
func TestLockerLosesMarker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(1)}})
		a, err := p.Allow(bg, alice)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Unlock(bg, alice); err != nil {
			t.Fatal(err)
		}
		b, err := p.Allow(bg, alice)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Failure(bg); err != nil {
			t.Fatal(err)
		}
		if err := b.Failure(bg); err != nil {
			t.Fatal(err)
		}
		if st := status(t, p, alice)["username"]; st.Lockouts != 1 || st.LockRemaining != time.Minute {
			t.Errorf("after two lockers of one key: %+v, want one lockout of a minute", st)
		}
	})
}

// TestStaleLockOnTrip: a lock the policy remembers but last saw longer
// ago than LockCacheTTL, and a store that fails on this very decision (no
// earlier one carried the lock into the fallback): refused, not admitted
// by a fallback that starts the key afresh.
func TestStaleLockOnTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &switchStore{Backend: newStore(t)}
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3)}})
		fail(t, p, alice, 3) // locked for a minute, remembered
		time.Sleep(2 * lockout.DefaultLockCacheTTL)
		store.mode.Store(down)
		if a, err := p.Allow(bg, alice); !errors.Is(err, lockout.ErrLocked) {
			t.Fatalf("alice, locked, on the decision that trips the breaker: %v, %v; want refused (locked)", a, err)
		}
	})
}

// TestManyRules runs decisions through more rules than an Attempt holds
// inline (four): every rule counts, locks and is reported, whether the
// attempt was admitted or refused.
func TestManyRules(t *testing.T) {
	ctx := context.Background()
	rules := []lockout.Rule{
		lockout.ByUsername(2), lockout.ByIP(2), lockout.ByUsernameAndIP(2),
		lockout.ByFields(2, lockout.UserAgent), lockout.ByFields(2, "tenant"), lockout.ByFields(2, lockout.Username, "tenant"),
	}
	p, err := lockout.New(newStore(t), lockout.Config{Rules: rules, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s := lockout.Subject{Username: "alice", IP: "192.0.2.1", UserAgent: "ua", Fields: map[string]string{"tenant": "t1"}}
	for i := range 2 {
		a, err := p.Allow(ctx, s)
		if err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		if err := a.Failure(ctx); err != nil {
			t.Fatalf("attempt %d: Failure: %v", i+1, err)
		}
	}
	st, err := p.Status(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != len(rules) {
		t.Fatalf("Status has %d rules, want %d", len(st), len(rules))
	}
	for _, r := range st {
		if !r.Locked || r.Lockouts != 1 {
			t.Errorf("rule %s after 2 failures (limit 2): %+v, want locked once", r.Rule, r)
		}
	}
	var refused *lockout.RefusedError
	if _, err := p.Allow(ctx, s); !errors.As(err, &refused) || refused.Reason != lockout.ReasonLocked {
		t.Fatalf("third attempt: %v, want refused as locked", err)
	}
	if err := p.Unlock(ctx, s); err != nil {
		t.Fatal(err)
	}
	a, err := p.Allow(ctx, s)
	if err != nil {
		t.Fatalf("after Unlock: %v", err)
	}
	if err := a.Success(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err = p.Status(ctx, s); err != nil {
		t.Fatal(err)
	}
	for _, r := range st {
		if r.Locked || r.Attempts != 0 {
			t.Errorf("rule %s after Unlock and a success: %+v, want no lock and no attempts", r.Rule, r)
		}
	}
}
