package memcache

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/internal/guesstest"
	"github.com/go-lockout/lockout/internal/testserver"
)

// TestAttackServerStopped attacks one username (limit 5, an IP rule beside
// it) with 64 concurrent guessers through a policy with the default
// configuration, while the memcached server is stopped and then started
// again, empty: at most the limit of guesses reach the password check, and
// the lock is back in the store once the policy recovers.
func TestAttackServerStopped(t *testing.T) {
	parallel(t)
	srv := testserver.Memcached(t)
	s := newStore(t, []string{srv.Addr}, nil)
	defer s.Close()
	p, err := lockout.New(s, lockout.Config{
		Rules:  []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(20)},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	guesstest.WarmUp(t, p, 64)
	victim := lockout.Subject{Username: "victim", IP: "203.0.113.9"}
	res := guesstest.Attack{
		Duration: 3500 * time.Millisecond,
		Faults:   []guesstest.Fault{{At: 200 * time.Millisecond, Do: srv.Stop}, {At: 2 * time.Second, Do: srv.Start}},
	}.Run(p, victim, 1500*time.Millisecond)
	t.Logf("%d guesses reached the check (%d decided by the fallback), %d refused, %d errors; p99 %v over %d decisions",
		res.Verified, res.Fallback, res.Refused, res.Errors, res.P99, res.Decisions)
	if !res.Within(5) {
		t.Errorf("%d guesses reached the password check (%d decided by the fallback), limit 5 for the store and 5 for the fallback", res.Verified, res.Fallback)
	}
	if res.Errors > 0 {
		t.Errorf("%d decisions failed, first: %v", res.Errors, res.FirstErr)
	}
	if res.P99 > 100*time.Millisecond {
		t.Errorf("p99 decision latency %v, want far below the 500ms deadline", res.P99)
	}
	waitStoreLocked(t, p, victim)
}

// waitStoreLocked waits until the store holds a lock on one of s's rule
// keys, making decisions (which drive the policy's probes) meanwhile. The
// lock may be the IP's rather than the username's: a guess reserves a slot
// on both keys, so one whose IP reservation is refused gives back a
// username slot, and the IP's 20th failure can lock it while the username
// has counted only 4.
func waitStoreLocked(t *testing.T, p *lockout.Policy, s lockout.Subject) {
	t.Helper()
	start := time.Now()
	for {
		if _, err := p.Allow(t.Context(), s); err == nil {
			t.Errorf("%v admitted after the attack", s)
		}
		st, err := p.Status(t.Context(), s)
		if err == nil && slices.ContainsFunc(st, func(r lockout.RuleStatus) bool { return r.Locked }) {
			t.Logf("the store holds the lock %v after the attack", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("3s after the attack the store does not hold the lock: %v, %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
