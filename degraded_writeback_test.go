package lockout_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
)

// TestGiveBackBetweenPasses: a give-back in the fallback between the
// recovery's two passes (a success on a rule that does not reset, here an
// IP rule) leaves the fallback's counter below what the first pass copied.
// The second pass took that for a key made again and copied it whole, a
// second time: 5 of 5, and the address refused for 15 minutes after 2
// failures (a review). It now adds nothing: the store keeps the given-back
// reservation, on the strict side (3 of 5).
func TestGiveBackBetweenPasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sw := &switchStore{Backend: newStore(t)}
		store := &onWriteBack{switchStore: sw, match: "ip="}
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{lockout.ByIP(5)}})
		carol := lockout.Subject{Username: "carol", IP: "198.51.100.7"}
		sw.mode.Store(down)
		fail(t, p, alice, 2)                // the IP at 2 in the fallback
		inflight, err := p.Allow(bg, carol) // the IP at 3, carol's password being checked
		if err != nil {
			t.Fatal(err)
		}
		store.fn = func() {
			// pass 1 copied 3; carol's password was right: the fallback
			// gives back her reservation (3 -> 2)
			if err := inflight.Success(bg); err != nil {
				t.Error(err)
			}
		}
		store.armed.Store(true)
		sw.mode.Store(up)
		time.Sleep(lockout.DefaultProbeInterval)
		if err := attempt(t, p, lockout.Subject{Username: "dave", IP: "192.0.2.1"}, true); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if store.armed.Load() {
			t.Fatal("hook did not run")
		}
		other := newPolicyOn(t, sw, lockout.Config{Rules: []lockout.Rule{lockout.ByIP(5)}})
		st := status(t, other, alice)["ip"]
		if st.Attempts != 3 {
			t.Errorf("the store's IP counter after recovery: %v, want 3 (2 failures, and the reservation given back in the fallback)", st)
		}
		// 2 failures and one success on this IP: 2 is right, 3 strict.
		if err := attempt(t, p, carol, true); err != nil {
			t.Errorf("a legitimate user on the IP refused after 2 failures (limit 5): %v", err)
		}
	})
}

// TestResetDuringRecovery: an operator's Reset runs while the recovery's
// first pass has taken alice's counter to the limit. The write-back
// remembered the full counter after the reset had forgotten it, and the
// next outage refused alice (a review); a recovery during which an
// operator cleared keys now remembers nothing.
func TestResetDuringRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sw := &switchStore{Backend: newStore(t)}
		store := &onWriteBack{switchStore: sw, match: "u=alice"}
		rules := []lockout.Rule{lockout.ByUsername(5)}
		p := newPolicyOn(t, store, lockout.Config{Rules: rules})
		fail(t, p, alice, 3) // in the store
		sw.mode.Store(down)
		fail(t, p, alice, 2) // in the fallback: 5 once written back
		done := make(chan error, 1)
		store.fn = func() {
			// The reset waits for the write-back call to end (an
			// operator's clear and a write-back call do not interleave).
			go func() { done <- p.Reset(bg, lockout.Subject{Username: "alice"}) }()
			time.Sleep(time.Millisecond) // a store call's length
		}
		store.armed.Store(true)
		sw.mode.Store(up)
		probeAfterInterval(t, p)
		if store.armed.Load() {
			t.Fatal("hook did not run")
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if err := attempt(t, p, alice, true); err != nil {
			t.Errorf("healthy, after the reset: %v", err)
		}
		sw.mode.Store(down) // the next outage
		if err := attempt(t, p, alice, true); err != nil {
			var re *lockout.RefusedError
			errors.As(err, &re)
			t.Errorf("next outage, after an operator's reset: refused: %v (remembered %v)", err, re != nil && re.Remembered)
		}
	})
}

// TestSuccessAfterWriteBack: alice's own attempt, in flight while the
// write-back takes her counter to the limit, succeeds: her counter is reset
// in the store. The full counter the write-back remembered was not
// forgotten, and the next outage refused her (a review); a success now
// forgets a counter the cache may remember.
func TestSuccessAfterWriteBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sw := &switchStore{Backend: newStore(t)}
		rules := []lockout.Rule{lockout.ByUsername(5)}
		p := newPolicyOn(t, sw, lockout.Config{Rules: rules})
		fail(t, p, alice, 4) // in the store
		sw.mode.Store(down)
		a, err := p.Allow(bg, alice) // in the fallback: 1, in flight
		if err != nil {
			t.Fatal(err)
		}
		sw.mode.Store(up)
		probeAfterInterval(t, p)              // the store's counter at 5: remembered full
		if err := a.Success(bg); err != nil { // to the store: deleted
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if err := attempt(t, p, alice, true); err != nil {
			t.Errorf("healthy, after her success: %v", err)
		}
		sw.mode.Store(down) // the next outage, within the window
		if err := attempt(t, p, alice, true); err != nil {
			t.Errorf("next outage, after her own success reset her counter: refused: %v", err)
		}
	})
}

// TestRecoveryCalls counts the store calls of a recovery with 2,000 locked
// users in the fallback: each pass copies 128 keys a call, and the second
// pass, which decisions wait for, does not copy the locks again (it did,
// doubling the calls to 65; 33 before).
func TestRecoveryCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sw := &switchStore{Backend: newStore(t)}
		p := newPolicyOn(t, sw, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)}})
		sw.mode.Store(down)
		for i := range 2000 {
			for range 5 {
				_ = attempt(t, p, lockout.Subject{Username: fmt.Sprintf("u%d", i)}, false)
			}
		}
		sw.mode.Store(up)
		before := sw.calls.Load()
		probeAfterInterval(t, p)
		if n := sw.calls.Load() - before; n > 40 {
			t.Errorf("the recovery made %d store calls, want at most 40", n)
		}
	})
}

// operatorClears are the operator's calls that clear alice's lock and
// counter.
var operatorClears = []struct {
	name string
	fn   func(*lockout.Policy) error
}{
	{"Unlock", func(p *lockout.Policy) error { return p.Unlock(bg, lockout.Subject{Username: "alice"}) }},
	{"Reset", func(p *lockout.Policy) error { return p.Reset(bg, lockout.Subject{Username: "alice"}) }},
	{"UnlockKeys", func(p *lockout.Policy) error {
		return p.UnlockKeys(bg, "lockout:l:username:{u=alice}")
	}},
}

// TestUnlockBetweenPasses: a recovery's first pass copies alice's 3
// failures, its second pass fails (the store flaps), and an operator
// unlocks alice before the next probe; alice then fails twice in the
// fallback. The write-back remembered having copied 3, took the
// fallback's 2 for what it had copied, and wrote nothing: the store held
// 0, and 5 more guesses were admitted after the recovery, 7 since the
// unlock against a limit of 5. An operator's clear now makes the
// write-back copy those keys afresh.
func TestUnlockBetweenPasses(t *testing.T) {
	for _, tc := range operatorClears {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sw := &switchStore{Backend: newStore(t)}
				store := &onWriteBack{switchStore: sw, match: "u=alice"}
				rules := []lockout.Rule{lockout.ByUsername(5)}
				p := newPolicyOn(t, store, lockout.Config{Rules: rules})
				sw.mode.Store(down)
				fail(t, p, alice, 3) // in the fallback
				store.fn = func() {
					_ = attempt(t, p, bob, false) // something for the second pass
					sw.mode.Store(down)           // which fails
				}
				store.armed.Store(true)
				sw.mode.Store(up)
				probeAfterInterval(t, p)
				if store.armed.Load() {
					t.Fatal("the write-back hook did not run")
				}
				sw.mode.Store(up) // the policy is degraded until the next probe
				if err := tc.fn(p); err != nil {
					t.Fatal(err)
				}
				fail(t, p, alice, 2) // in the fallback, since the unlock
				probeAfterInterval(t, p)
				other := newPolicyOn(t, sw, lockout.Config{Rules: rules})
				if st := status(t, other, alice)["username"]; st.Attempts != 2 {
					t.Errorf("alice in the store after the recovery: %d attempts, want the 2 failures since the unlock", st.Attempts)
				}
				n := 0
				for range 10 {
					if attempt(t, p, alice, false) == nil {
						n++
					}
				}
				if n != 3 {
					t.Errorf("%d guesses admitted after the recovery, want 3 (2 made in the fallback since the unlock, limit 5)", n)
				}
			})
		})
	}
}

// TestUnlockDuringWriteBack: an operator unlocks alice, locked in the
// fallback, while the recovery's first pass has read her lock from the
// fallback and not yet written it to the store. The unlock deleted the
// lock from the store before the write-back made it there, and alice
// stayed locked everywhere for the lock's minute after the unlock. An
// operator's clear and a write-back call no longer interleave.
func TestUnlockDuringWriteBack(t *testing.T) {
	for _, tc := range operatorClears {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sw := &switchStore{Backend: newStore(t)}
				store := &onWriteBack{switchStore: sw, match: "u=alice", before: true}
				rules := []lockout.Rule{lockout.ByUsername(5)}
				p := newPolicyOn(t, store, lockout.Config{Rules: rules})
				sw.mode.Store(down)
				fail(t, p, alice, 5) // locked in the fallback, for a minute
				done := make(chan error, 1)
				store.fn = func() {
					go func() { done <- tc.fn(p) }()
					time.Sleep(time.Millisecond) // a store call's length
				}
				store.armed.Store(true)
				sw.mode.Store(up)
				probeAfterInterval(t, p)
				if store.armed.Load() {
					t.Fatal("the write-back hook did not run")
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Second) // past the lock cache's freshness
				other := newPolicyOn(t, sw, lockout.Config{Rules: rules})
				if st := status(t, other, alice)["username"]; st.Locked {
					t.Errorf("alice in the store after the unlock: %+v, want not locked", st)
				}
				if err := attempt(t, p, alice, true); err != nil {
					t.Errorf("alice after the unlock: %v", err)
				}
			})
		})
	}
}

// heldWriteBack counts the store calls made while decisions wait on the
// policy (a recovery's second pass), and delays each write-back call
// (those that read no lock marker; every decision's reads one) by delay:
// a store just under the policy's deadline.
type heldWriteBack struct {
	backend.Backend
	p     atomic.Pointer[lockout.Policy]
	delay time.Duration
	held  atomic.Int64
}

func (s *heldWriteBack) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	if !slices.ContainsFunc(ops, func(op backend.Op) bool { return op.Kind == backend.Exists }) {
		if p := s.p.Load(); p != nil && lockout.DecisionsHeld(p) {
			s.held.Add(1)
		}
		time.Sleep(s.delay)
	}
	return s.Backend.Do(ctx, ops, res)
}

func (s *heldWriteBack) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return s.Backend.(backend.Lister).Keys(ctx, prefix)
}

// TestSecondPassShort: an attacker sprays 1,000 fresh usernames into the
// fallback while the recovery's first pass runs, on a store whose calls
// take 400 ms (under the 500 ms deadline). The second pass, which holds
// every decision, copied them all: 8 calls, 3.2 s during which no
// decision was made, while the breaker was open. The first pass now runs
// again while it copies more than one call's worth: the second pass holds
// decisions for at most one call here.
func TestSecondPassShort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sw := &switchStore{Backend: newStore(t)}
		hook := &onWriteBack{switchStore: sw, match: "u=carol"}
		store := &heldWriteBack{Backend: hook, delay: 400 * time.Millisecond}
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)}})
		store.p.Store(p)
		sw.mode.Store(down)
		fail(t, p, lockout.Subject{Username: "carol"}, 1)
		hook.fn = func() {
			for i := range 1000 {
				_ = attempt(t, p, lockout.Subject{Username: fmt.Sprintf("spray%d", i)}, false)
			}
		}
		hook.armed.Store(true)
		sw.mode.Store(up)
		probeAfterInterval(t, p)
		time.Sleep(time.Minute) // the recovery's calls sleep: synctest.Wait does not wait for them
		if hook.armed.Load() {
			t.Fatal("the write-back hook did not run")
		}
		if a, err := p.Allow(bg, alice); err != nil || a.Fallback() {
			t.Fatalf("after the recovery: %v, %v; want admitted by the store", a, err)
		}
		if n := store.held.Load(); n > 1 {
			t.Errorf("the second pass held decisions for %d store calls of 400 ms, want at most 1", n)
		}
	})
}
