package lockout_test

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
)

// axes translates django-axes' settings into a Config, as the README's
// migration table says.
type axes struct {
	failureLimit   int            // AXES_FAILURE_LIMIT (default 3)
	cooloff        *time.Duration // AXES_COOLOFF_TIME; nil is None (the default)
	resetOnSuccess bool           // AXES_RESET_ON_SUCCESS (default False)
	// parameters is AXES_LOCKOUT_PARAMETERS, as the rules the README's
	// table gives for it; nil is the default, ["ip_address"].
	parameters func(limit int) []lockout.Rule
}

func (a axes) config() lockout.Config {
	limit := a.failureLimit
	if limit == 0 {
		limit = 3
	}
	params := a.parameters
	if params == nil {
		params = func(limit int) []lockout.Rule { return []lockout.Rule{lockout.ByIP(limit)} }
	}
	rules := params(limit)
	for i := range rules {
		r := &rules[i]
		if a.cooloff == nil {
			r.Window, r.Schedule = lockout.Forever, lockout.Fixed(lockout.Forever)
		} else {
			r.Window, r.Sliding, r.Schedule = *a.cooloff, true, lockout.Fixed(*a.cooloff)
		}
		if a.resetOnSuccess {
			r.OnSuccess = lockout.SuccessReset
		} else {
			r.OnSuccess = lockout.SuccessRelease
		}
	}
	return lockout.Config{Rules: rules}
}

func TestDjangoAxesSettings(t *testing.T) {
	ip1, ip2 := "192.0.2.1", "192.0.2.2"
	alice := lockout.Subject{Username: "alice", IP: ip1}
	hour := new(time.Hour)
	byUsername := func(limit int) []lockout.Rule { return []lockout.Rule{lockout.ByUsername(limit)} }
	locked := func(t *testing.T, p *lockout.Policy, s lockout.Subject, want bool) {
		t.Helper()
		err := attempt(t, p, s, true)
		switch {
		case want && !errors.Is(err, lockout.ErrLocked):
			t.Errorf("%+v: %v, want locked", s, err)
		case !want && err != nil:
			t.Errorf("%+v: %v, want admitted", s, err)
		}
	}
	tests := []struct {
		name string
		a    axes
		run  func(t *testing.T, p *lockout.Policy)
	}{
		{"FAILURE_LIMIT=3: the 3rd failure locks", axes{cooloff: hour}, func(t *testing.T, p *lockout.Policy) {
			if n := failuresUntilLocked(t, p, alice); n != 3 {
				t.Errorf("%d failures before the lock, want 3 (axes: failures >= limit)", n)
			}
		}},
		{"COOLOFF_TIME=1h: failures forgotten after 1 h without one", axes{cooloff: hour}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, alice, 2)
			time.Sleep(time.Hour)
			fail(t, p, alice, 2) // the first two are forgotten
			locked(t, p, alice, false)
		}},
		{"COOLOFF_TIME=1h: failures 40 min apart keep counting", axes{cooloff: hour}, func(t *testing.T, p *lockout.Policy) {
			for range 2 {
				fail(t, p, alice, 1)
				time.Sleep(40 * time.Minute)
			}
			fail(t, p, alice, 1) // 80 min after the first, 40 after the last: locks
			re := refusal(t, attempt(t, p, alice, true))
			if re.Reason != lockout.ReasonLocked || re.RetryAfter != time.Hour {
				t.Fatalf("%v, want locked for 1 h", re)
			}
			time.Sleep(time.Hour)
			locked(t, p, alice, false)
		}},
		{"COOLOFF_TIME=None: failures and locks are permanent", axes{}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, alice, 2)
			time.Sleep(longTime)
			fail(t, p, alice, 1)
			if re := refusal(t, attempt(t, p, alice, true)); !re.Forever {
				t.Fatalf("%v, want locked forever", re)
			}
			time.Sleep(longTime)
			locked(t, p, alice, true)
		}},
		{"RESET_ON_SUCCESS=False: a success keeps the failures", axes{cooloff: hour, parameters: byUsername}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, alice, 2)
			if err := attempt(t, p, alice, true); err != nil {
				t.Fatal(err)
			}
			fail(t, p, alice, 1)
			locked(t, p, alice, true)
		}},
		{"RESET_ON_SUCCESS=True: a success clears the failures", axes{cooloff: hour, resetOnSuccess: true, parameters: byUsername}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, alice, 2)
			if err := attempt(t, p, alice, true); err != nil {
				t.Fatal(err)
			}
			fail(t, p, alice, 2)
			locked(t, p, alice, false)
		}},
		{"RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT: refused attempts never extend a lock", axes{cooloff: hour}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, alice, 3)
			for range 59 {
				time.Sleep(time.Minute)
				locked(t, p, alice, true)
			}
			time.Sleep(time.Minute)
			locked(t, p, alice, false)
		}},
		{`LOCKOUT_PARAMETERS=["ip_address"]`, axes{cooloff: hour}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, alice, 3)
			locked(t, p, lockout.Subject{Username: "bob", IP: ip1}, true)
			locked(t, p, lockout.Subject{Username: "alice", IP: ip2}, false)
		}},
		{`LOCKOUT_PARAMETERS=["username"]`, axes{cooloff: hour, parameters: byUsername}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, alice, 3)
			locked(t, p, lockout.Subject{Username: "alice", IP: ip2}, true)
			locked(t, p, lockout.Subject{Username: "bob", IP: ip1}, false)
		}},
		{`LOCKOUT_PARAMETERS=["username", "ip_address"]`, axes{cooloff: hour, parameters: func(limit int) []lockout.Rule {
			return []lockout.Rule{lockout.ByUsername(limit), lockout.ByIP(limit)}
		}}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, alice, 3)
			locked(t, p, lockout.Subject{Username: "alice", IP: ip2}, true)
			locked(t, p, lockout.Subject{Username: "bob", IP: ip1}, true)
			locked(t, p, lockout.Subject{Username: "bob", IP: ip2}, false)
		}},
		{`LOCKOUT_PARAMETERS=[["username", "ip_address"]]`, axes{cooloff: hour, parameters: func(limit int) []lockout.Rule {
			return []lockout.Rule{lockout.ByUsernameAndIP(limit)}
		}}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, alice, 3)
			locked(t, p, alice, true)
			locked(t, p, lockout.Subject{Username: "alice", IP: ip2}, false)
			locked(t, p, lockout.Subject{Username: "bob", IP: ip1}, false)
		}},
		{`LOCKOUT_PARAMETERS=[["ip_address", "user_agent"]]`, axes{cooloff: hour, parameters: func(limit int) []lockout.Rule {
			return []lockout.Rule{lockout.ByFields(limit, lockout.IP, lockout.UserAgent)}
		}}, func(t *testing.T, p *lockout.Policy) {
			curl := lockout.Subject{IP: ip1, UserAgent: "curl/8"}
			fail(t, p, curl, 3)
			locked(t, p, lockout.Subject{Username: "bob", IP: ip1, UserAgent: "curl/8"}, true)
			locked(t, p, lockout.Subject{IP: ip1, UserAgent: "Firefox"}, false)
		}},
		{`LOCKOUT_PARAMETERS=["ip_address", ["username", "user_agent"]]`, axes{cooloff: hour, parameters: func(limit int) []lockout.Rule {
			return []lockout.Rule{lockout.ByIP(limit), lockout.ByFields(limit, lockout.Username, lockout.UserAgent)}
		}}, func(t *testing.T, p *lockout.Policy) {
			// Three failures from three addresses with one user agent lock
			// alice's pair, not the addresses.
			for _, ip := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
				fail(t, p, lockout.Subject{Username: "alice", IP: ip, UserAgent: "curl/8"}, 1)
			}
			locked(t, p, lockout.Subject{Username: "alice", IP: ip2, UserAgent: "curl/8"}, true)
			locked(t, p, lockout.Subject{Username: "alice", IP: ip2, UserAgent: "Firefox"}, false)
			// Three from one address lock it for everyone.
			for _, u := range []string{"u1", "u2", "u3"} {
				fail(t, p, lockout.Subject{Username: u, IP: ip1}, 1)
			}
			locked(t, p, lockout.Subject{Username: "carol", IP: ip1, UserAgent: "Firefox"}, true)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, _ := newPolicy(t, tc.a.config())
				tc.run(t, p)
			})
		})
	}
}
