package lockout_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
)

// remoteStore is a latencyStore that, as a network client does (go-redis),
// returns the caller's context error when the context ends while it waits
// for the answer, although the server applied the call.
type remoteStore struct {
	latencyStore
	calls atomic.Int64
}

func (s *remoteStore) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	s.calls.Add(1)
	err := s.latencyStore.Do(context.WithoutCancel(ctx), ops, res) // the server applies it
	if ctx.Err() != nil {
		return ctx.Err() // the client gave up waiting for the answer
	}
	return err
}

// TestAllowGivenUp: a client that goes away while Allow's store call is
// under way (lockouthttp passes the request's context) leaves no count
// behind: the call runs to its end, and what it reserved is given back.
// Before, Limit such disconnects filled the owner's counter with no
// password checked, no failure and no lock, and she was refused for the
// rest of the window; with a Forever window, until an operator unlocked
// her (a review). A caller that gave up before Allow makes no call.
func TestAllowGivenUp(t *testing.T) {
	for _, window := range []time.Duration{lockout.DefaultWindow, lockout.Forever} {
		t.Run(window.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var lockouts atomic.Int64
				rule := lockout.ByUsername(5)
				rule.Window = window
				store := &remoteStore{latencyStore: latencyStore{Backend: newStore(t), rtt: 2 * time.Millisecond}}
				p := newPolicyOn(t, store, lockout.Config{
					Rules: []lockout.Rule{rule},
					Hooks: lockout.Hooks{Lockout: func(context.Context, lockout.LockoutEvent) { lockouts.Add(1) }},
				})
				attacker := lockout.Subject{Username: "alice", IP: "203.0.113.1"}
				for range 2 * rule.Limit {
					ctx, cancel := context.WithTimeout(bg, time.Millisecond) // the client goes away
					a, err := p.Allow(ctx, attacker)
					cancel()
					if a != nil || !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("Allow, given up during its call = %v, %v; want an error wrapping the context's", a, err)
					}
				}
				synctest.Wait()
				owner := lockout.Subject{Username: "alice", IP: "198.51.100.7"}
				if st := status(t, p, owner)["username"]; st.Attempts != 0 {
					t.Errorf("after %d Allows given up: %v, want no attempt counted", 2*rule.Limit, st)
				}
				if _, err := p.Allow(bg, owner); err != nil {
					t.Errorf("the owner after %d Allows given up: %v", 2*rule.Limit, err)
				}
				if n := lockouts.Load(); n != 0 {
					t.Errorf("%d lockouts", n)
				}

				calls := store.calls.Load()
				ctx, cancel := context.WithCancel(bg)
				cancel()
				if a, err := p.Allow(ctx, attacker); a != nil || !errors.Is(err, context.Canceled) {
					t.Errorf("Allow, given up before = %v, %v; want an error wrapping context.Canceled", a, err)
				}
				if n := store.calls.Load() - calls; n != 0 {
					t.Errorf("Allow, given up before, made %d store calls", n)
				}
			})
		})
	}
}
