package redis_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/internal/guesstest"
	"github.com/go-lockout/lockout/internal/testserver"
)

// attackRules are the rules of the attack tests: one username, limit 5,
// an IP rule beside it.
func attackRules() []lockout.Rule {
	return []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(20)}
}

// TestAttackOutage attacks one username with 64 concurrent guessers (each
// admitted guess a 1 ms password check) through a policy with the default
// configuration, while the server is frozen (SIGSTOP), killed and restarted
// empty, or full: at most the limit of guesses reach the check, and once
// the breaker is open decisions do not wait for the deadline.
func TestAttackOutage(t *testing.T) {
	const limit = 5
	cases := []struct {
		name   string
		args   []string
		faults func(srv *testserver.Server) []guesstest.Fault
		prep   func(t *testing.T, srv *testserver.Server)
	}{
		{name: "frozen", faults: func(srv *testserver.Server) []guesstest.Fault {
			return []guesstest.Fault{{At: 200 * time.Millisecond, Do: srv.Freeze}, {At: 2500 * time.Millisecond, Do: srv.Thaw}}
		}},
		{name: "killed, restarted empty", faults: func(srv *testserver.Server) []guesstest.Fault {
			return []guesstest.Fault{{At: 200 * time.Millisecond, Do: srv.Stop}, {At: 2000 * time.Millisecond, Do: srv.Start}}
		}},
		{name: "full", args: []string{"--maxmemory", "2mb", "--maxmemory-policy", "noeviction"},
			prep: func(t *testing.T, srv *testserver.Server) {
				c := newClient(t, srv.Addr, nil)
				for round := range 3 {
					fill(t, c, round)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := testserver.Redis(t, tc.args...)
			srv.RequireControl(t)
			store := newStore(t, newClient(t, srv.Addr, nil), nil)
			start := time.Now()
			var mu sync.Mutex
			var events []string
			p, err := lockout.New(store, lockout.Config{
				Rules:  attackRules(),
				Logger: slog.New(slog.DiscardHandler),
				Hooks: lockout.Hooks{Degraded: func(_ context.Context, e lockout.DegradedEvent) {
					mu.Lock()
					defer mu.Unlock()
					events = append(events, fmt.Sprintf("%v: start %v (%v)", time.Since(start).Round(time.Millisecond), e.Start, e.Err))
				}},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			if tc.prep != nil {
				tc.prep(t, srv)
			}
			var faults []guesstest.Fault
			if tc.faults != nil {
				faults = tc.faults(srv)
			}
			guesstest.WarmUp(t, p, 64)
			victim := lockout.Subject{Username: "victim", IP: "203.0.113.9"}
			// Latencies count from one deadline (500 ms by default) after the
			// first fault, plus slack for a loaded machine.
			res := guesstest.Attack{Duration: 3500 * time.Millisecond, Faults: faults}.Run(p, victim, 1500*time.Millisecond)
			t.Logf("%s: %d guesses reached the check (%d decided by the fallback), %d refused, %d errors; p99 %v over %d decisions",
				tc.name, res.Verified, res.Fallback, res.Refused, res.Errors, res.P99, res.Decisions)
			if !res.Within(limit) {
				t.Errorf("%s: %d guesses reached the password check (%d decided by the fallback), limit %d for the store and %d for the fallback",
					tc.name, res.Verified, res.Fallback, limit, limit)
			}
			if res.Errors > 0 {
				t.Errorf("%s: %d decisions failed, first: %v", tc.name, res.Errors, res.FirstErr)
			}
			if res.P99 > 100*time.Millisecond {
				t.Errorf("%s: p99 decision latency %v, want far below the 500ms deadline", tc.name, res.P99)
			}
			if tc.prep != nil {
				return // the store is still full: the fallback holds the lock
			}
			// Once the policy is back on the store (within a probe
			// interval, 1 s), the store holds the lock: the username's, or
			// the IP's (a guess whose IP reservation is refused gives back
			// its username slot, so the IP can lock first).
			ended := time.Now()
			for {
				st, err := p.Status(t.Context(), victim)
				if _, err := p.Allow(t.Context(), victim); err == nil { // drives the probes
					t.Errorf("%s: admitted after the attack", tc.name)
				}
				if err == nil && slices.ContainsFunc(st, func(r lockout.RuleStatus) bool { return r.Locked }) {
					t.Logf("%s: the store holds the lock %v after the attack", tc.name, time.Since(ended).Round(time.Millisecond))
					break
				}
				if time.Since(ended) > 3*time.Second {
					mu.Lock()
					t.Logf("degraded mode: %q", events)
					mu.Unlock()
					t.Fatalf("%s: 3s after the attack the store does not hold the lock: %v, %v", tc.name, st, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
