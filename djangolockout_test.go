package lockout_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
)

// djangoLockout translates django-lockout's settings into a Config, as the
// README's migration table says.
type djangoLockout struct {
	maxAttempts       int    // LOCKOUT_MAX_ATTEMPTS (default 5)
	lockoutTime       int    // LOCKOUT_TIME, seconds (default 600)
	enforcementWindow int    // LOCKOUT_ENFORCEMENT_WINDOW, seconds (default 300)
	useUserAgent      bool   // LOCKOUT_USE_USER_AGENT
	cachePrefix       string // LOCKOUT_CACHE_PREFIX (default "lockout")
}

func (d djangoLockout) config() lockout.Config {
	or := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	limit := or(d.maxAttempts, 5)
	r := lockout.ByIP(limit)
	if d.useUserAgent {
		r = lockout.ByFields(limit, lockout.IP, lockout.UserAgent)
	}
	r.Window = secs(or(d.enforcementWindow, 300))
	r.Schedule = lockout.Fixed(secs(or(d.lockoutTime, 600)))
	return lockout.Config{Rules: []lockout.Rule{r}, Prefix: d.cachePrefix}
}

func TestDjangoLockoutSettings(t *testing.T) {
	ip1 := lockout.Subject{IP: "192.0.2.1"}
	tests := []struct {
		name string
		d    djangoLockout
		run  func(t *testing.T, p *lockout.Policy)
	}{
		{"MAX_ATTEMPTS=5: the 5th failure locks", djangoLockout{}, func(t *testing.T, p *lockout.Policy) {
			if n := failuresUntilLocked(t, p, ip1); n != 5 {
				t.Errorf("%d failures before the lock, want 5", n)
			}
		}},
		{"LOCKOUT_TIME=600: every lock lasts 600 s", djangoLockout{maxAttempts: 2}, func(t *testing.T, p *lockout.Policy) {
			for range 3 { // no escalation
				fail(t, p, ip1, 2)
				if re := refusal(t, attempt(t, p, ip1, true)); re.RetryAfter != 600*time.Second {
					t.Fatalf("%v, want locked for 600 s", re)
				}
				time.Sleep(600 * time.Second)
				if err := attempt(t, p, ip1, true); err != nil {
					t.Fatalf("600 s after the lock: %v", err)
				}
			}
		}},
		{"ENFORCEMENT_WINDOW=300: fixed from the first failure", djangoLockout{maxAttempts: 3}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, ip1, 1)
			time.Sleep(200 * time.Second)
			fail(t, p, ip1, 1)
			time.Sleep(100 * time.Second)
			// 300 s after the first failure, both are forgotten: a failure
			// does not extend the window.
			fail(t, p, ip1, 2)
			if err := attempt(t, p, ip1, true); err != nil {
				t.Fatalf("2 failures in the new window: %v", err)
			}
			time.Sleep(299 * time.Second)
			fail(t, p, ip1, 1) // the third within 300 s of the window's first
			if err := attempt(t, p, ip1, true); !errors.Is(err, lockout.ErrLocked) {
				t.Errorf("3 failures within the window: %v, want locked", err)
			}
		}},
		{"ENFORCEMENT_WINDOW=300: a success before the first failure does not start it", djangoLockout{maxAttempts: 3}, func(t *testing.T, p *lockout.Policy) {
			if err := attempt(t, p, ip1, true); err != nil { // t = 0
				t.Fatal(err)
			}
			if st := status(t, p, ip1)["ip"]; st.WindowRemaining != 0 {
				t.Fatalf("after a success: %+v, want no counter", st)
			}
			time.Sleep(100 * time.Second)
			fail(t, p, ip1, 2) // t = 100: the window starts here
			time.Sleep(299 * time.Second)
			fail(t, p, ip1, 1) // t = 399: within 300 s of the first failure
			if err := attempt(t, p, ip1, true); !errors.Is(err, lockout.ErrLocked) {
				t.Errorf("3 failures within 300 s of the first: %v, want locked", err)
			}
		}},
		{"ENFORCEMENT_WINDOW=300: a success in flight with the first failure starts it", djangoLockout{maxAttempts: 3}, func(t *testing.T, p *lockout.Policy) {
			// The documented bound: attempts in flight at once share a
			// counter, so a success admitted before the first failure and
			// reported after its admission moves the window's start to the
			// success's admission.
			ok, err := p.Allow(bg, ip1) // t = 0
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			bad, err := p.Allow(bg, ip1) // t = 1
			if err != nil {
				t.Fatal(err)
			}
			if err := ok.Success(bg); err != nil {
				t.Fatal(err)
			}
			if err := bad.Failure(bg); err != nil {
				t.Fatal(err)
			}
			if st := status(t, p, ip1)["ip"]; st.Attempts != 1 || st.WindowRemaining != 299*time.Second {
				t.Errorf("%+v, want 1 attempt and the window started 1 s before the failure", st)
			}
		}},
		{"USE_USER_AGENT=True: keyed by IP and user agent", djangoLockout{maxAttempts: 2, useUserAgent: true}, func(t *testing.T, p *lockout.Policy) {
			curl := lockout.Subject{IP: "192.0.2.1", UserAgent: "curl/8"}
			fail(t, p, curl, 2)
			if err := attempt(t, p, curl, true); !errors.Is(err, lockout.ErrLocked) {
				t.Errorf("same IP and user agent: %v, want locked", err)
			}
			if err := attempt(t, p, lockout.Subject{IP: "192.0.2.1", UserAgent: "Firefox"}, true); err != nil {
				t.Errorf("same IP, another user agent: %v", err)
			}
		}},
		{"CACHE_PREFIX", djangoLockout{maxAttempts: 1, cachePrefix: "myapp"}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, ip1, 1)
			n := 0
			for l, err := range p.Locks(bg) {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(l.Key, "myapp:") {
					t.Errorf("lock key %q", l.Key)
				}
				n++
			}
			if n != 1 {
				t.Errorf("%d locks listed, want 1", n)
			}
		}},
		{"LockedOut: errors.Is(err, ErrLocked)", djangoLockout{maxAttempts: 1}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, ip1, 1)
			_, err := p.Check(bg, ip1, func(context.Context) (bool, error) {
				t.Error("the password was checked while locked out")
				return true, nil
			})
			var re *lockout.RefusedError
			if !errors.Is(err, lockout.ErrLocked) || !errors.As(err, &re) || re.RetryAfter != 600*time.Second {
				t.Errorf("Check while locked: %v, want ErrLocked with RetryAfter 600 s", err)
			}
		}},
		{"reset_attempts(request): Unlock", djangoLockout{maxAttempts: 2}, func(t *testing.T, p *lockout.Policy) {
			fail(t, p, ip1, 1)
			if err := p.Unlock(bg, ip1); err != nil {
				t.Fatal(err)
			}
			fail(t, p, ip1, 1) // the first was cleared: no lock
			if err := attempt(t, p, ip1, true); err != nil {
				t.Fatalf("after reset_attempts and one failure: %v", err)
			}
			fail(t, p, ip1, 1) // the second: locks
			if err := attempt(t, p, ip1, true); !errors.Is(err, lockout.ErrLocked) {
				t.Fatalf("after 2 failures: %v, want locked", err)
			}
			if err := p.Unlock(bg, ip1); err != nil {
				t.Fatal(err)
			}
			if err := attempt(t, p, ip1, true); err != nil {
				t.Errorf("a locked IP after reset_attempts: %v", err)
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
