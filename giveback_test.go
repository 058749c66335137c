package lockout_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/bolt"
	"github.com/go-lockout/lockout/backend/memory"
)

// latencyStore is a store a round trip away: each call reaches the store
// half of rtt after it is made, and its answer comes back half of rtt after
// that (in a synctest bubble: exactly). It guards give-backs
// (backend.ExpiryGuard) when guard is set and the store it wraps does.
type latencyStore struct {
	backend.Backend
	rtt   time.Duration
	guard bool
}

func (s *latencyStore) GuardsExpiry() bool {
	g, ok := s.Backend.(backend.ExpiryGuard)
	return s.guard && ok && g.GuardsExpiry()
}

// unguarded hides the capabilities of the store it wraps, ExpiryGuard
// among them, as memcached lacks it.
type unguarded struct{ backend.Backend }

// guardModes are the two ways the policy makes give-backs: conditional on
// the counter's expiry (a store that guards them), or skipped near a
// fixed window's end (one that does not).
var guardModes = []struct {
	name  string
	guard bool
}{{"guarded", true}, {"unguarded", false}}

func (s *latencyStore) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	time.Sleep(s.rtt / 2)
	err := s.Backend.Do(ctx, ops, res)
	time.Sleep(s.rtt / 2)
	return err
}

// TestGiveBackAtWindowEnd is an attacker who times attempts that another
// rule refuses (his own address is locked) at the end of alice's window,
// so that their give-backs land after it ended, while his guesses from
// fresh addresses reach alice's next counter in between. A give-back that landed then
// took a count from the next counter, a guess more each: 24 checks of
// alice's password in the next window against a limit of 5, with 20 such
// attempts. Give-backs that may land after their counter ends are not
// sent, or, on a store that guards them, apply only to the counter they
// reserved on, so the next window admits at most the limit. On a store
// that does not guard them, a sliding window keeps the defect (see
// TestGiveBackSlidingNoGhosts), and is not checked here.
func TestGiveBackAtWindowEnd(t *testing.T) {
	const (
		limit   = 5
		window  = time.Minute
		rtt     = 5 * time.Millisecond
		refused = 20 // attempts in flight at the window's end
	)
	tests := []struct {
		name string
		// How refused attempts are made: by the attacker's locked
		// address, or by another rule at capacity (his address holds its
		// last slot, in flight).
		lockedIP bool
		guard    bool // the store guards give-backs
		sliding  bool // alice's window is sliding
	}{
		{"refused by a lock/unguarded", true, false, false},
		{"refused at capacity/unguarded", false, false, false},
		{"refused by a lock/guarded", true, true, false},
		{"refused at capacity/guarded", false, true, false},
		{"refused by a lock/guarded/sliding", true, true, true},
		{"refused at capacity/guarded/sliding", false, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem, err := memory.New(nil)
				if err != nil {
					t.Fatal(err)
				}
				defer mem.Close()
				user := lockout.ByUsername(limit)
				user.Window, user.Sliding = window, tc.sliding
				ip := lockout.ByIP(1)
				ip.Window = time.Hour
				ip.Schedule = lockout.Fixed(time.Hour)
				p, err := lockout.New(&latencyStore{Backend: mem, rtt: rtt, guard: tc.guard}, lockout.Config{
					Rules:        []lockout.Rule{user, ip},
					LockCacheTTL: lockout.NoLockCache, // as in another process
					Timeout:      50 * time.Millisecond,
					Logger:       discard,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				attacker := lockout.Subject{Username: "alice", IP: "203.0.113.1"}

				if tc.lockedIP {
					// The attacker's address is locked, by a guess at bob.
					a, err := p.Allow(bg, lockout.Subject{Username: "bob", IP: attacker.IP})
					if err != nil {
						t.Fatal(err)
					}
					if err := a.Failure(bg); err != nil {
						t.Fatal(err)
					}
				}
				// alice's window opens with a guess of his from elsewhere.
				a, err := p.Allow(bg, lockout.Subject{Username: "alice", IP: "198.51.100.1"})
				if err != nil {
					t.Fatal(err)
				}
				// When alice's counter ends, as the store sees it: made
				// by the Allow's call, or refreshed by the Failure's.
				end := time.Now().Add(window - rtt/2)
				if tc.sliding {
					end = time.Now().Add(window + rtt/2)
				}
				if err := a.Failure(bg); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Until(end.Add(-3 * rtt)))
				if !tc.lockedIP {
					// The attacker's address holds its only slot, on a
					// guess at bob he keeps in flight past the window's end.
					a, err := p.Allow(bg, lockout.Subject{Username: "bob", IP: attacker.IP})
					if err != nil {
						t.Fatal(err)
					}
					defer a.Failure(bg)
				}

				var wg sync.WaitGroup
				var badRefusals atomic.Int64
				// The refused attempts reach the store in the last
				// round trip of the window, one every rtt/refused: their
				// give-backs land in the first round trip of the next.
				time.Sleep(time.Until(end.Add(-rtt - rtt/2)))
				for i := range refused {
					wg.Go(func() {
						time.Sleep(time.Duration(i) * rtt / refused)
						_, err := p.Allow(bg, attacker)
						var re *lockout.RefusedError
						if !errors.As(err, &re) || re.Rule != "ip" {
							badRefusals.Add(1)
						}
					})
				}
				// Guesses from fresh addresses, one reaching the store
				// just after each give-back would, then more until alice
				// is locked.
				var checked atomic.Int64
				var locked atomic.Bool
				for g := range refused {
					wg.Go(func() {
						time.Sleep(time.Until(end.Add(-rtt/2 + time.Duration(g)*rtt/refused + rtt/(2*refused))))
						for n := 0; !locked.Load() && n < 100; n++ {
							s := lockout.Subject{Username: "alice", IP: fmt.Sprintf("10.%d.%d.1", n, g)}
							a, err := p.Allow(bg, s)
							if errors.Is(err, lockout.ErrLocked) {
								locked.Store(true)
								return
							}
							if err != nil {
								time.Sleep(rtt / 10)
								continue
							}
							checked.Add(1)
							a.Failure(bg)
						}
					})
				}
				wg.Wait()
				if n := badRefusals.Load(); n > 0 {
					t.Fatalf("%d of the attacker's timed attempts were not refused by the ip rule", n)
				}
				if !locked.Load() {
					t.Fatal("alice never locked")
				}
				if n := checked.Load(); n > limit {
					t.Errorf("alice's password checked %d times in her next window, want at most %d", n, limit)
				}
			})
		})
	}
}

// TestGiveBackOfEndedCounter: an attempt whose reservation's counter ended
// while it ran (a slow password check over a window's end) gives nothing
// back on success, on a store that applies calls at once: its give-back
// would free a slot of the next counter, held by another attempt.
func TestGiveBackOfEndedCounter(t *testing.T) {
	for _, m := range guardModes {
		t.Run(m.name, func(t *testing.T) { synctest.Test(t, func(t *testing.T) { testGiveBackOfEndedCounter(t, m.guard) }) })
	}
}

func testGiveBackOfEndedCounter(t *testing.T, guard bool) {
	{
		r := lockout.ByIP(1)
		r.Window = time.Minute
		store := newStore(t)
		if !guard {
			store = unguarded{store}
		}
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{r}})
		old, err := p.Allow(bg, alice)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute) // old's counter ends
		held, err := p.Allow(bg, alice)
		if err != nil {
			t.Fatal(err)
		}
		if err := old.Success(bg); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Allow(bg, alice); !errors.Is(err, lockout.ErrCapacity) {
			t.Errorf("an attempt while another holds the only slot: %v, want ErrCapacity", err)
		}
		if err := held.Success(bg); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Allow(bg, alice); err != nil {
			t.Errorf("after the holder's success: %v, want admitted", err)
		}
	}
}

// TestGiveBackSlidingNoGhosts: on a sliding window, give-backs are sent
// even at the window's end. Skipped, the attempts refused by an
// attacker's locked address in the last moments of alice's window kept
// their counts, and one failure of his (a guess from elsewhere, admitted
// earlier) refreshed the counter with them: alice was refused at capacity
// for the whole next window, having typed nothing wrong, and no lockout
// told anyone (a review's finding).
func TestGiveBackSlidingNoGhosts(t *testing.T) {
	for _, m := range guardModes {
		t.Run(m.name, func(t *testing.T) { synctest.Test(t, func(t *testing.T) { testGiveBackSlidingNoGhosts(t, m.guard) }) })
	}
}

func testGiveBackSlidingNoGhosts(t *testing.T, guard bool) {
	{
		const rtt = 5 * time.Millisecond
		user := lockout.ByUsername(5)
		user.Window = time.Minute
		user.Sliding = true
		ip := lockout.ByIP(1)
		ip.Window = time.Hour
		ip.Schedule = lockout.Fixed(time.Hour)
		p := newPolicyOn(t, &latencyStore{Backend: newStore(t), rtt: rtt, guard: guard}, lockout.Config{
			Rules:        []lockout.Rule{user, ip},
			LockCacheTTL: lockout.NoLockCache,
			Timeout:      50 * time.Millisecond,
		})
		attacker := "203.0.113.1"
		// His address is locked by one guess at bob.
		if err := attempt(t, p, lockout.Subject{Username: "bob", IP: attacker}, false); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		held, err := p.Allow(bg, lockout.Subject{Username: "alice", IP: "198.51.100.99"})
		if err != nil {
			t.Fatal(err)
		}
		// In the last 40 ms of alice's window, within the deadline:
		time.Sleep(time.Until(start.Add(time.Minute - 40*time.Millisecond)))
		var wg sync.WaitGroup
		var notLocked atomic.Int64
		for range 20 {
			wg.Go(func() {
				if _, err := p.Allow(bg, lockout.Subject{Username: "alice", IP: attacker}); !errors.Is(err, lockout.ErrLocked) {
					notLocked.Add(1)
				}
			})
		}
		wg.Wait()
		if n := notLocked.Load(); n > 0 {
			t.Fatalf("%d of the attacker's attempts were not refused by his lock", n)
		}
		if err := held.Failure(bg); err != nil { // refreshes alice's counter
			t.Fatal(err)
		}
		for _, after := range []time.Duration{2 * time.Second, 30 * time.Second, 59 * time.Second} {
			time.Sleep(time.Until(start.Add(time.Minute + after)))
			s := lockout.Subject{Username: "alice", IP: fmt.Sprintf("192.0.2.%d", after/time.Second)}
			if err := attempt(t, p, s, true); err != nil {
				t.Errorf("alice, %v into the next window, having typed nothing wrong: %v", after, err)
			}
		}
	}
}

// TestGiveBackAfterWriteBack: an attempt reserved in a fallback whose
// counts were since written back to the store gives nothing back. Its
// counter's end, which it read in the fallback, says nothing of the
// store's counter, which holds its count now and may end first: a success
// reported after the store's counter ended took a count from its next
// one, a guess more (a review's finding: 4 checks, limit 3).
func TestGiveBackAfterWriteBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit = 3
		sw := &switchStore{Backend: newStore(t)}
		ip := lockout.ByIP(limit)
		ip.Window = time.Minute
		ip.Schedule = lockout.Fixed(time.Hour)
		p := newPolicyOn(t, sw, lockout.Config{
			Rules:         []lockout.Rule{ip},
			ProbeInterval: 100 * time.Millisecond,
			LockCacheTTL:  lockout.NoLockCache,
		})
		x := "203.0.113.9"
		start := time.Now()
		// A guess from x: its counter in the store ends at 60 s.
		if err := attempt(t, p, lockout.Subject{Username: "bob", IP: x}, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(start.Add(59500 * time.Millisecond)))
		sw.mode.Store(down)
		// 59.5 s: the attacker logs in to his own account from x, in the
		// fallback (its counter there ends at 119.5 s); a slow check.
		own, err := p.Allow(bg, lockout.Subject{Username: "mallory", IP: x})
		if err != nil {
			t.Fatal(err)
		}
		if !own.Fallback() {
			t.Fatal("the login was not decided by the fallback")
		}
		sw.mode.Store(up)
		time.Sleep(150 * time.Millisecond)
		// A decision starts the probe, and the write-back adds the login's
		// count to x's counter in the store (2, still ending at 60 s).
		if err := attempt(t, p, lockout.Subject{Username: "carol", IP: "192.0.2.50"}, true); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		time.Sleep(time.Until(start.Add(60100 * time.Millisecond)))
		// x's counter in the store has ended. Guesses from x in its next
		// window, with the login's success in between.
		g := &guesser{p: p, ip: x}
		g.guess()
		g.guess()
		if err := own.Success(bg); err != nil {
			t.Fatal(err)
		}
		g.upTo(10)
		if _, err := p.Allow(bg, lockout.Subject{Username: "bob", IP: x}); !errors.Is(err, lockout.ErrLocked) {
			t.Errorf("after the guesses: %v, want x locked", err)
		}
		if g.checked > limit {
			t.Errorf("%d guesses from x checked in its next window, limit %d", g.checked, limit)
		}
	})
}

// guardedSwitch is a switchStore that guards give-backs, as the memory
// store it wraps does.
type guardedSwitch struct{ *switchStore }

func (guardedSwitch) GuardsExpiry() bool { return true }

// TestGiveBackWriteBackMadeCounter: a reservation in the store whose
// counter ends during an outage, while the fallback counts a guess from
// the same address; the write-back makes the store's counter again, with
// the fallback's TTL. A late success's give-back must not take a count
// from that counter (a review: 4 checks, limit 3, on a guarding store).
func TestGiveBackWriteBackMadeCounter(t *testing.T) {
	for _, m := range guardModes {
		t.Run(m.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const limit = 3
				sw := &switchStore{Backend: newStore(t)}
				var store backend.Backend = sw // hides the memory store's guard
				if m.guard {
					store = guardedSwitch{sw}
				}
				ip := lockout.ByIP(limit)
				ip.Window = time.Minute
				ip.Schedule = lockout.Fixed(time.Hour)
				p := newPolicyOn(t, store, lockout.Config{
					Rules:         []lockout.Rule{ip},
					ProbeInterval: 100 * time.Millisecond,
					LockCacheTTL:  lockout.NoLockCache,
				})
				x := "203.0.113.9"
				start := time.Now()
				// 0 s: dave logs in from x (a shared address), a slow
				// check (a second factor): x's counter ends at 60 s.
				dave, err := p.Allow(bg, lockout.Subject{Username: "dave", IP: x})
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(30 * time.Second)
				sw.mode.Store(down)
				g := &guesser{p: p, ip: x}
				// 30 s: a guess from x, in the fallback (its counter
				// there ends at 90 s).
				if !g.guess() {
					t.Fatal("the guess in the fallback was refused")
				}
				time.Sleep(time.Until(start.Add(61 * time.Second)))
				sw.mode.Store(up)
				// Decisions start the probe; the write-back makes x's
				// counter again in the store, ending at 90 s.
				for _, ip := range []string{"192.0.2.50", "192.0.2.51"} {
					if err := attempt(t, p, lockout.Subject{Username: "carol", IP: ip}, true); err != nil {
						t.Fatal(err)
					}
					synctest.Wait()
					time.Sleep(100 * time.Millisecond)
				}
				g.guess()
				if err := dave.Success(bg); err != nil {
					t.Fatal(err)
				}
				g.upTo(10)
				if g.checked > limit {
					t.Errorf("%d guesses from x checked in [30 s, 90 s), limit %d", g.checked, limit)
				}
			})
		})
	}
}

// TestGiveBackLockoutRemadeCounter: a lockout clears the counter, and one
// made again after the lock, before the reserved counter would have ended,
// must not lose a count to a late give-back on a fixed window (a review: 3
// checks, limit 2). That holds on a store that guards give-backs; on a
// sliding window, or on a store that does not guard them, it still may
// (the reset caveat of the package doc and the README).
func TestGiveBackLockoutRemadeCounter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit = 2
		ip := lockout.ByIP(limit)
		ip.Window = time.Minute
		ip.Schedule = lockout.Fixed(10 * time.Second)
		p := newPolicyOn(t, newStore(t), lockout.Config{Rules: []lockout.Rule{ip}, LockCacheTTL: lockout.NoLockCache})
		x := "203.0.113.9"
		dave, err := p.Allow(bg, lockout.Subject{Username: "dave", IP: x}) // a slow login
		if err != nil {
			t.Fatal(err)
		}
		g := &guesser{p: p, ip: x}
		g.guess() // the limit-th: locks x for 10 s, clears the counter
		time.Sleep(11 * time.Second)
		g.checked = 0
		g.guess()
		if err := dave.Success(bg); err != nil {
			t.Fatal(err)
		}
		g.upTo(5)
		if g.checked > limit {
			t.Errorf("%d guesses from x checked in the counter made after the lock, limit %d", g.checked, limit)
		}
	})
}

// TestGiveBackSaturatedExpiry: a window so long that a store saturates
// the counter's expiry (bbolt at math.MaxInt64) still gets its give-backs:
// attempts refused by the attacker's lock leave alice's counter as it was
// (a review: alice was held at capacity for 250 years).
func TestGiveBackSaturatedExpiry(t *testing.T) {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const long = 250 * 365 * 24 * time.Hour
	user := lockout.ByUsername(3)
	user.Window = long
	ip := lockout.ByIP(1)
	ip.Window = time.Hour
	ip.Schedule = lockout.Fixed(time.Hour)
	p := newPolicyOn(t, s, lockout.Config{Rules: []lockout.Rule{user, ip}, LockCacheTTL: lockout.NoLockCache})
	attacker := "203.0.113.1"
	if err := attempt(t, p, lockout.Subject{Username: "bob", IP: attacker}, false); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := p.Allow(bg, lockout.Subject{Username: "alice", IP: attacker}); !errors.Is(err, lockout.ErrLocked) {
			t.Fatalf("attempt %d from the locked address: %v, want ErrLocked", i, err)
		}
	}
	if err := attempt(t, p, lockout.Subject{Username: "alice", IP: "198.51.100.7"}, true); err != nil {
		t.Errorf("alice, having typed nothing wrong, after 3 attempts refused by the attacker's lock: %v", err)
	}
}

// guesser makes wrong guesses at bob from one address, and counts those
// admitted to the password check.
type guesser struct {
	p       *lockout.Policy
	ip      string
	checked int
}

// guess makes one, and reports whether it was admitted.
func (g *guesser) guess() bool {
	a, err := g.p.Allow(bg, lockout.Subject{Username: "bob", IP: g.ip})
	if err != nil {
		return false
	}
	g.checked++
	a.Failure(bg)
	return true
}

// upTo makes up to n, until one is refused.
func (g *guesser) upTo(n int) {
	for range n {
		if !g.guess() {
			return
		}
	}
}
