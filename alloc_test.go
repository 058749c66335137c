package lockout_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
)

// TestAllocationBudget holds the decision's hot paths to their allocation
// budgets: three rules on the memory store, keys already in it (a running
// service's steady state), no observer. The budget counts the Attempt and
// the one string that holds its keys; a refusal also allocates its
// RefusedError. Under the race detector sync.Pool drops some of what it is
// given, so pooled objects (the decision's scratch, the lock cache's access
// buffers) are allocated again now and then: the budget has slack there.
func TestAllocationBudget(t *testing.T) {
	ctx := context.Background()
	const subjects = 64
	list := make([]lockout.Subject, subjects)
	for i := range list {
		list[i] = lockout.Subject{Username: fmt.Sprintf("user%03d", i), IP: fmt.Sprintf("10.0.0.%d", i)}
	}
	newPolicy := func(t *testing.T, limit int) *lockout.Policy {
		p, err := lockout.New(newStore(t), lockout.Config{Rules: benchRules(limit), Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		for _, s := range list {
			a, err := p.Allow(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Failure(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	for _, tc := range []struct {
		name          string
		limit         int
		budget, slack float64 // slack: more allowed under the race detector
		run           func(p *lockout.Policy, s lockout.Subject) error
	}{
		{"AllowFailure", 1 << 30, 2, 1, func(p *lockout.Policy, s lockout.Subject) error {
			a, err := p.Allow(ctx, s)
			if err != nil {
				return err
			}
			return a.Failure(ctx)
		}},
		// A success deletes the counters of the two rules keyed by the
		// username, so the next Allow of the subject makes the store
		// create them again: it keeps its own copy of each key.
		{"AllowSuccess", 1 << 30, 4, 1, func(p *lockout.Policy, s lockout.Subject) error {
			a, err := p.Allow(ctx, s)
			if err != nil {
				return err
			}
			return a.Success(ctx)
		}},
		// Every subject is locked (limit 1), and the lock cache remembers
		// it: no store call, three allocations (Attempt, keys, refusal).
		{"RefusedRemembered", 1, 3, 4, func(p *lockout.Policy, s lockout.Subject) error {
			if _, err := p.Allow(ctx, s); err == nil {
				return fmt.Errorf("%v admitted, want refused", s)
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPolicy(t, tc.limit)
			if tc.limit == 1 {
				time.Sleep(10 * time.Millisecond) // the lock cache applies its sets in the background
				for _, s := range list {
					p.Allow(ctx, s) // remembered, at the latest, by this refusal
				}
			}
			budget := tc.budget
			if raceEnabled {
				budget += tc.slack
			}
			var err error
			i := 0
			got := testing.AllocsPerRun(1000, func() {
				if e := tc.run(p, list[i%subjects]); e != nil && err == nil {
					err = e
				}
				i++
			})
			if err != nil {
				t.Fatal(err)
			}
			if got > budget {
				t.Errorf("%v allocations per decision, budget %v", got, budget)
			}
			t.Logf("%v allocations per decision (budget %v)", got, budget)
		})
	}
}
