package lockout_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
)

// defender translates django-defender's settings into a Config, as the
// README's migration table says. A nil cooloff is the setting's default; a
// cooloff of 0 is defender's "never".
type defender struct {
	failureLimit, limitUsername, limitIP int  // DEFENDER_LOGIN_FAILURE_LIMIT(_USERNAME, _IP)
	byIPAndUsername                      bool // DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME
	disableIP, disableUsername           bool // DEFENDER_DISABLE_(IP|USERNAME)_LOCKOUT
	cooloff                              *int // DEFENDER_COOLOFF_TIME, seconds (default 300)
	attemptCooloff                       *int // DEFENDER_ATTEMPT_COOLOFF_TIME (default COOLOFF_TIME)
	lockoutCooloff                       []int
	cachePrefix                          string
}

// longTime stands for "never" in tests of things that never expire: far
// longer than any finite TTL the tests use. (A synctest bubble sleeps it
// fast, but the stores' sweepers tick through it: longer costs real time.)
const longTime = 10 * 24 * time.Hour

func secs(s int) time.Duration { return time.Duration(s) * time.Second }

// defenderSecs is a defender duration: 0 means never.
func defenderSecs(s int) time.Duration {
	if s == 0 {
		return lockout.Forever
	}
	return secs(s)
}

func (d defender) config() lockout.Config {
	or := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	orp := func(v *int, def int) int {
		if v == nil {
			return def
		}
		return *v
	}
	limit := or(d.failureLimit, 3)
	cooloff := orp(d.cooloff, 300)
	window := defenderSecs(orp(d.attemptCooloff, cooloff))
	lockoutCooloff := d.lockoutCooloff
	if len(lockoutCooloff) == 0 {
		lockoutCooloff = []int{cooloff}
	}
	var ds []time.Duration
	for _, s := range lockoutCooloff {
		ds = append(ds, defenderSecs(s))
	}
	schedule := lockout.List(ds...)
	rule := func(r lockout.Rule) lockout.Rule {
		r.Window, r.Sliding, r.Schedule = window, true, schedule
		return r
	}
	var rules []lockout.Rule
	switch {
	case d.byIPAndUsername:
		rules = append(rules, rule(lockout.ByUsernameAndIP(limit+1)))
	default:
		if !d.disableUsername {
			rules = append(rules, rule(lockout.ByUsername(or(d.limitUsername, limit)+1)))
		}
		if !d.disableIP {
			rules = append(rules, rule(lockout.ByIP(or(d.limitIP, limit)+1)))
		}
	}
	return lockout.Config{Rules: rules, Prefix: d.cachePrefix}
}

// failuresUntilLocked counts the failures s can make before it is refused.
func failuresUntilLocked(t *testing.T, p *lockout.Policy, s lockout.Subject) int {
	t.Helper()
	for n := 0; n < 100; n++ {
		if err := attempt(t, p, s, false); err != nil {
			if !errors.Is(err, lockout.ErrLocked) {
				t.Fatalf("refused with %v, want ErrLocked", err)
			}
			return n
		}
	}
	return 100
}

func TestDjangoDefenderSettings(t *testing.T) {
	ip1, ip2 := "192.0.2.1", "192.0.2.2"
	tests := []struct {
		name string
		d    defender
		run  func(t *testing.T, p *lockout.Policy)
	}{
		{"LOGIN_FAILURE_LIMIT=3: the 4th failure locks username and IP", defender{failureLimit: 3}, func(t *testing.T, p *lockout.Policy) {
			if n := failuresUntilLocked(t, p, lockout.Subject{Username: "alice", IP: ip1}); n != 4 {
				t.Errorf("%d failures before the lock, want 4 (defender: count > 3)", n)
			}
			// The username is locked from any IP, the IP for any username.
			if err := attempt(t, p, lockout.Subject{Username: "alice", IP: ip2}, true); !errors.Is(err, lockout.ErrLocked) {
				t.Errorf("alice from another IP: %v", err)
			}
			if err := attempt(t, p, lockout.Subject{Username: "bob", IP: ip1}, true); !errors.Is(err, lockout.ErrLocked) {
				t.Errorf("bob from the locked IP: %v", err)
			}
		}},
		{"LOGIN_FAILURE_LIMIT_USERNAME=1, _IP=5", defender{limitUsername: 1, limitIP: 5}, func(t *testing.T, p *lockout.Policy) {
			if n := failuresUntilLocked(t, p, lockout.Subject{Username: "alice"}); n != 2 {
				t.Errorf("username: %d failures before the lock, want 2", n)
			}
			for i := range 6 {
				if err := attempt(t, p, lockout.Subject{Username: fmt.Sprintf("u%d", i), IP: ip1}, false); err != nil {
					t.Fatalf("failure %d from the IP: %v", i+1, err)
				}
			}
			if err := attempt(t, p, lockout.Subject{IP: ip1}, true); !errors.Is(err, lockout.ErrLocked) {
				t.Errorf("IP after 6 failures: %v, want locked", err)
			}
		}},
		{"LOCK_OUT_BY_IP_AND_USERNAME", defender{byIPAndUsername: true}, func(t *testing.T, p *lockout.Policy) {
			if n := failuresUntilLocked(t, p, lockout.Subject{Username: "alice", IP: ip1}); n != 4 {
				t.Errorf("%d failures before the lock, want 4", n)
			}
			for _, s := range []lockout.Subject{{Username: "alice", IP: ip2}, {Username: "bob", IP: ip1}} {
				if err := attempt(t, p, s, true); err != nil {
					t.Errorf("%+v is not the locked pair, but: %v", s, err)
				}
			}
		}},
		{"DISABLE_IP_LOCKOUT", defender{disableIP: true}, func(t *testing.T, p *lockout.Policy) {
			for i := range 50 {
				if err := attempt(t, p, lockout.Subject{Username: fmt.Sprintf("u%d", i), IP: ip1}, false); err != nil {
					t.Fatalf("IP refused without an IP rule: %v", err)
				}
			}
		}},
		{"DISABLE_USERNAME_LOCKOUT", defender{disableUsername: true}, func(t *testing.T, p *lockout.Policy) {
			for i := range 50 {
				if err := attempt(t, p, lockout.Subject{Username: "alice", IP: fmt.Sprintf("198.51.100.%d", i)}, false); err != nil {
					t.Fatalf("username refused without a username rule: %v", err)
				}
			}
		}},
		{"COOLOFF_TIME=300: lock and failures last 300 s", defender{cooloff: new(300), failureLimit: 2}, func(t *testing.T, p *lockout.Policy) {
			s := lockout.Subject{Username: "alice", IP: ip1}
			fail(t, p, s, 2)
			time.Sleep(300*time.Second - time.Nanosecond)
			fail(t, p, s, 1) // the third failure within 300 s locks
			start := time.Now()
			if err := attempt(t, p, s, true); !errors.Is(err, lockout.ErrLocked) {
				t.Fatalf("after 3 failures: %v", err)
			}
			time.Sleep(time.Until(start.Add(300 * time.Second)))
			if err := attempt(t, p, s, true); err != nil {
				t.Errorf("300 s after the lock: %v", err)
			}
			// Failures older than 300 s are forgotten.
			fail(t, p, s, 2)
			time.Sleep(300 * time.Second)
			fail(t, p, s, 2)
			if err := attempt(t, p, s, true); err != nil {
				t.Errorf("2 failures, 300 s apart from 2 more: %v", err)
			}
		}},
		{"COOLOFF_TIME=300 refreshes with every failure: 4 failures 200 s apart lock", defender{cooloff: new(300)}, func(t *testing.T, p *lockout.Policy) {
			s := lockout.Subject{Username: "alice", IP: ip1}
			for i := range 3 {
				fail(t, p, s, 1)
				time.Sleep(200 * time.Second)
				if st := status(t, p, s)["username"]; st.Attempts != int64(i+1) {
					t.Fatalf("after failure %d, 200 s later: %d attempts counted, want %d", i+1, st.Attempts, i+1)
				}
			}
			fail(t, p, s, 1) // the fourth, 600 s after the first
			if re := refusal(t, attempt(t, p, s, true)); re.Reason != lockout.ReasonLocked || re.RetryAfter != 300*time.Second {
				t.Errorf("after the fourth failure: %v, want locked for 300 s", re)
			}
		}},
		{"COOLOFF_TIME=0: failures and locks never expire", defender{cooloff: new(0)}, func(t *testing.T, p *lockout.Policy) {
			s := lockout.Subject{Username: "alice", IP: ip1}
			fail(t, p, s, 3)
			time.Sleep(longTime)
			if st := status(t, p, s)["username"]; st.Attempts != 3 || st.WindowRemaining != lockout.Forever {
				t.Fatalf("%v after 3 failures: %+v, want 3 attempts that never expire", longTime, st)
			}
			fail(t, p, s, 1)
			re := refusal(t, attempt(t, p, s, true))
			if !re.Forever {
				t.Fatalf("after the fourth failure: %v, want locked forever", re)
			}
			time.Sleep(longTime)
			if err := attempt(t, p, s, true); !errors.Is(err, lockout.ErrLocked) {
				t.Errorf("%v into the lock: %v, want still locked", longTime, err)
			}
		}},
		{"ATTEMPT_COOLOFF_TIME=60, LOCKOUT_COOLOFF_TIME=600", defender{failureLimit: 1, attemptCooloff: new(60), lockoutCooloff: []int{600}}, func(t *testing.T, p *lockout.Policy) {
			s := lockout.Subject{Username: "alice", IP: ip1}
			fail(t, p, s, 1)
			time.Sleep(60 * time.Second)
			fail(t, p, s, 1) // the first one is forgotten: 60 s without a failure
			time.Sleep(59 * time.Second)
			fail(t, p, s, 1) // within 60 s of the previous failure: locks
			err := attempt(t, p, s, true)
			if re := refusal(t, err); re.RetryAfter != 600*time.Second {
				t.Errorf("lock for %v, want 600 s", re.RetryAfter)
			}
		}},
		{"ATTEMPT_COOLOFF_TIME=0, LOCKOUT_COOLOFF_TIME=60: failures never forgotten", defender{failureLimit: 1, attemptCooloff: new(0), lockoutCooloff: []int{60}}, func(t *testing.T, p *lockout.Policy) {
			s := lockout.Subject{Username: "alice", IP: ip1}
			fail(t, p, s, 1)
			time.Sleep(longTime)
			fail(t, p, s, 1) // much later, the first still counts: locks
			if re := refusal(t, attempt(t, p, s, true)); re.RetryAfter != time.Minute {
				t.Errorf("%v, want locked for 60 s", re)
			}
		}},
		{"LOCKOUT_COOLOFF_TIME=[60, 120, 300, 600, 0]", defender{failureLimit: 1, lockoutCooloff: []int{60, 120, 300, 600, 0}}, func(t *testing.T, p *lockout.Policy) {
			s := lockout.Subject{Username: "alice", IP: ip1}
			for _, want := range []int{60, 120, 300, 600, 0} {
				fail(t, p, s, 2)
				re := refusal(t, attempt(t, p, s, true))
				if want == 0 {
					if !re.Forever {
						t.Errorf("fifth lock: %+v, want forever", re)
					}
					break
				}
				if re.RetryAfter != secs(want) {
					t.Errorf("lock for %v, want %d s", re.RetryAfter, want)
				}
				time.Sleep(secs(want))
			}
		}},
		{"CACHE_PREFIX", defender{cachePrefix: "defender", failureLimit: 1}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, lockout.Subject{Username: "alice"}, 2)
			n := 0
			for l, err := range p.Locks(bg) {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(l.Key, "defender:") {
					t.Errorf("lock key %q", l.Key)
				}
				n++
			}
			if n != 1 {
				t.Errorf("%d locks listed, want 1", n)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, _ := newPolicy(t, tc.d.config())
				tc.run(t, p)
			})
		})
	}
}
