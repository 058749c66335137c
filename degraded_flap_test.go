package lockout_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
)

// flapGuesser guesses alice's password, each time from a fresh IPv6 /64
// (free for an attacker), and counts the guesses admitted.
type flapGuesser struct {
	p    *lockout.Policy
	n    atomic.Int64
	next atomic.Int64
}

// guess makes one attempt, a wrong password; it reports whether it was
// admitted.
func (g *flapGuesser) guess() bool {
	ip := fmt.Sprintf("2001:db8:%x::1", g.next.Add(1))
	a, err := g.p.Allow(bg, lockout.Subject{Username: "alice", IP: ip})
	if err != nil {
		return false
	}
	g.n.Add(1)
	a.Failure(bg)
	return true
}

// TestFlappingStore is an attacker who can make the store fail (flood it
// past its Timeout, fill it) and let it come back, again and again, and
// makes Limit-1 guesses in each outage, none while the store answers. Each
// outage's fallback starts alice afresh, and its count, written back, took
// the store past the limit without locking: with nothing remembered, the
// next outage's fallback admitted Limit-1 more (a review measured 200
// guesses in 50 outages, limit 5). The write-back now remembers a counter
// it takes to the limit, for the counter's TTL, so that the next outages
// refuse: at most Limit-1 in the fallback and Limit-1 more per window.
func TestFlappingStore(t *testing.T) {
	for _, fault := range []int32{down, hanging} {
		t.Run(map[int32]string{down: "down", hanging: "hanging"}[fault], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := &switchStore{Backend: newStore(t)}
				rules := []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(20), lockout.ByUsernameAndIP(5)}
				p := newPolicyOn(t, store, lockout.Config{Rules: rules})
				g := &flapGuesser{p: p}
				const outages = 50
				for range outages {
					store.mode.Store(fault)
					for range 4 { // Limit-1: never locks
						g.guess()
					}
					store.mode.Store(up)
					probeAfterInterval(t, p) // recovery, write-back
				}
				// 50 outages take less than the window (15 min): the first
				// outage's 4, then 4 in the second (the store at 8).
				if n := g.n.Load(); n > 8 {
					t.Errorf("%d guesses admitted over %d outages, want at most 8 (Limit-1 in each of two)", n, outages)
				}
			})
		})
	}
}

// TestLockRewrittenAfterHalfRecovery: a recovery whose first pass copies
// alice's lock from the fallback and whose second pass fails leaves the
// policy degraded; her lock ends in the fallback, and she is locked again
// there (a new lock marker, under the same key). The next recovery must
// write the new lock: the write-back skipped a lock marker it had copied
// once, and the store admitted 5 guesses during her second, 2-minute,
// lockout (a review). It also checks that a counter made again in the
// fallback after its first copy is written back.
func TestLockRewrittenAfterHalfRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sw := &switchStore{Backend: newStore(t)}
		store := &onWriteBack{switchStore: sw, match: "u=alice"}
		rules := []lockout.Rule{lockout.ByUsername(5)}
		p := newPolicyOn(t, store, lockout.Config{Rules: rules})
		g := &flapGuesser{p: p}
		sw.mode.Store(down)
		for range 5 {
			g.guess() // the 5th locks alice in the fallback, for 1 min (lockout 1)
		}
		// The store comes back; during the first pass, bob fails once
		// in the fallback; the store then drops again, so the second
		// pass fails: still degraded, alice's lock copied once.
		store.fn = func() {
			_ = attempt(t, p, bob, false)
			sw.mode.Store(down) // before the second pass
		}
		store.armed.Store(true)
		sw.mode.Store(up)
		probeAfterInterval(t, p)
		if store.armed.Load() {
			t.Fatal("the write-back hook did not run")
		}
		// The store stays down. Alice's lock ends in the fallback; 5 more
		// guesses lock her again there, for 2 minutes (lockout 2).
		time.Sleep(time.Minute + time.Second)
		for range 5 {
			g.guess()
		}
		// The store comes back for good.
		sw.mode.Store(up)
		probeAfterInterval(t, p)
		time.Sleep(2 * time.Second) // past the lock cache's freshness (1 s)
		before := g.n.Load()
		for range 10 {
			g.guess()
		}
		if n := g.n.Load() - before; n > 0 {
			t.Errorf("%d guesses admitted during alice's 2-minute lockout: the lock the fallback set again was not written back", n)
		}
		other := newPolicyOn(t, sw, lockout.Config{Rules: rules})
		if st := status(t, other, lockout.Subject{Username: "alice"})["username"]; !st.Locked || st.Lockouts != 2 {
			t.Errorf("the store's view of alice: locked %v, %d lockouts; want locked, 2", st.Locked, st.Lockouts)
		}
	})
}

// TestCopiedForgetsExpired is one long outage whose recoveries fail half
// way (the probe and one write-back call pass, the next fails), while an
// attacker sprays fresh usernames: what the write-back remembers copying
// must not grow with the outage's length. It kept every key ever copied
// (a review counted 1,796 after 2.5 h; here, past 1,800 in an hour); it
// now forgets the keys that have expired since (about 140 here).
func TestCopiedForgetsExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &switchStore{Backend: newStore(t)}
		rule := lockout.ByUsername(5)
		rule.Window = 5 * time.Minute
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}})
		store.mode.Store(down)
		most := 0
		for c := range 120 { // an hour: a recovery every 30 s, each failing after one write-back call
			for i := range 300 { // more than one write-back call's worth
				_ = attempt(t, p, lockout.Subject{Username: fmt.Sprintf("spray-%d-%d", c, i)}, false)
			}
			time.Sleep(30 * time.Second)
			store.mode.Store(up)
			store.failIn.Store(3) // the probe and one write-back call pass
			_ = attempt(t, p, bob, true)
			synctest.Wait()
			store.mode.Store(down)
			store.failIn.Store(0)
			most = max(most, lockout.CopiedLen(p))
		}
		// Each recovery copies one call's worth of keys (128) before it
		// fails, some of them copied before; the keys live 5 min, 10
		// recoveries. Without forgetting, it grew past 1,800 in this hour.
		if most == 0 || most > 700 {
			t.Errorf("the write-back remembered up to %d keys copied; want some, and no more than 700", most)
		}
	})
}

// TestLockLengthenedAfterHalfRecovery: a lock copied by a recovery that
// failed half way, then made again in the fallback, longer, before the
// copy's end (an operator unlocked alice there; 5 more guesses locked her
// for lockout 2's 2 minutes). The next write-back must send it again, and
// the store's lock must last as long as the fallback's: it skipped every
// lock already copied and not yet expired, and the store's copy of the
// first lock ended a minute early.
func TestLockLengthenedAfterHalfRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sw := &switchStore{Backend: newStore(t)}
		store := &onWriteBack{switchStore: sw, match: "u=alice"}
		rules := []lockout.Rule{lockout.ByUsername(5)}
		p := newPolicyOn(t, store, lockout.Config{Rules: rules})
		g := &flapGuesser{p: p}
		sw.mode.Store(down)
		for range 5 {
			g.guess() // the 5th locks alice in the fallback, for 1 min (lockout 1)
		}
		// The store comes back; after the write-back's first call (alice's
		// lock copied), bob fails once in the fallback, and the store drops
		// again: the second pass, which has bob's failure to write, fails.
		store.fn = func() {
			_ = attempt(t, p, bob, false)
			sw.mode.Store(down)
		}
		store.armed.Store(true)
		sw.mode.Store(up)
		probeAfterInterval(t, p)
		if store.armed.Load() {
			t.Fatal("the write-back hook did not run")
		}
		// Well before the first lock's end: an operator unlocks alice (in
		// the fallback only: the store fails), and 5 guesses lock her again.
		time.Sleep(10 * time.Second)
		if err := p.Unlock(bg, lockout.Subject{Username: "alice"}); err == nil {
			t.Fatal("Unlock with the store down: no error")
		}
		for range 5 {
			g.guess()
		}
		sw.mode.Store(up)
		probeAfterInterval(t, p)
		// Past the first lock's end, within the second's.
		time.Sleep(time.Minute)
		other := newPolicyOn(t, sw, lockout.Config{Rules: rules})
		st := status(t, other, lockout.Subject{Username: "alice"})["username"]
		if !st.Locked || st.LockRemaining < 30*time.Second {
			t.Errorf("the store's view of alice: locked %v for %v more; want locked, for about 2 min from the second lock", st.Locked, st.LockRemaining)
		}
	})
}
