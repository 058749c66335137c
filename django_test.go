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
// README's migration table says.
type defender struct {
	failureLimit, limitUsername, limitIP int  // DEFENDER_LOGIN_FAILURE_LIMIT(_USERNAME, _IP)
	byIPAndUsername                      bool // DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME
	disableIP, disableUsername           bool // DEFENDER_DISABLE_(IP|USERNAME)_LOCKOUT
	cooloff                              int  // DEFENDER_COOLOFF_TIME, seconds
	attemptCooloff                       int  // DEFENDER_ATTEMPT_COOLOFF_TIME
	lockoutCooloff                       []int
	cachePrefix                          string
}

func secs(s int) time.Duration { return time.Duration(s) * time.Second }

func (d defender) config() lockout.Config {
	or := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	limit := or(d.failureLimit, 3)
	cooloff := or(d.cooloff, 300)
	window := secs(or(d.attemptCooloff, cooloff))
	schedule := lockout.Fixed(secs(cooloff))
	if len(d.lockoutCooloff) > 0 {
		var ds []time.Duration
		for _, s := range d.lockoutCooloff {
			if s == 0 {
				ds = append(ds, lockout.Forever)
			} else {
				ds = append(ds, secs(s))
			}
		}
		schedule = lockout.List(ds...)
	}
	rule := func(r lockout.Rule) lockout.Rule {
		r.Window, r.Schedule = window, schedule
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
		{"COOLOFF_TIME=300: lock and failures last 300 s", defender{cooloff: 300, failureLimit: 2}, func(t *testing.T, p *lockout.Policy) {
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
		{"ATTEMPT_COOLOFF_TIME=60, LOCKOUT_COOLOFF_TIME=600", defender{failureLimit: 1, attemptCooloff: 60, lockoutCooloff: []int{600}}, func(t *testing.T, p *lockout.Policy) {
			s := lockout.Subject{Username: "alice", IP: ip1}
			fail(t, p, s, 1)
			time.Sleep(60 * time.Second)
			fail(t, p, s, 1) // the first one is forgotten
			time.Sleep(59 * time.Second)
			fail(t, p, s, 1) // within 60 s of the first counted failure: locks
			err := attempt(t, p, s, true)
			if re := refusal(t, err); re.RetryAfter != 600*time.Second {
				t.Errorf("lock for %v, want 600 s", re.RetryAfter)
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
