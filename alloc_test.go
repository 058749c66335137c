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
// RefusedError, and one from the lock cache gives its Attempt back to a
// pool. Under the race detector sync.Pool drops some of what it is
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
		// it: no store call, two allocations (keys, refusal; the Attempt
		// goes back to a pool, and was a third).
		{"RefusedRemembered", 1, 2, 5, func(p *lockout.Policy, s lockout.Subject) error {
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

// TestRefusalOutlivesPooledAttempt: a refusal from the lock cache gives its
// Attempt back to a pool; the RefusedError a caller keeps, and the one a
// hook kept, stay as they were while later refusals reuse the Attempt.
func TestRefusalOutlivesPooledAttempt(t *testing.T) {
	ctx := context.Background()
	var hooked []*lockout.RefusedError
	hooks := lockout.Hooks{Refusal: func(_ context.Context, e *lockout.RefusedError) { hooked = append(hooked, e) }}
	p, err := lockout.New(newStore(t), lockout.Config{Rules: benchRules(1), Logger: discard, Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	subjects := make([]lockout.Subject, 32)
	for i := range subjects {
		subjects[i] = lockout.Subject{Username: fmt.Sprintf("user%03d", i), IP: fmt.Sprintf("10.0.1.%d", i)}
		if a, err := p.Allow(ctx, subjects[i]); err == nil {
			a.Failure(ctx) // locks every rule
		}
	}
	time.Sleep(10 * time.Millisecond) // the lock cache applies its sets in the background
	kept := make([]*lockout.RefusedError, len(subjects))
	want := make([]string, len(subjects))
	for i, s := range subjects {
		_, err := p.Allow(ctx, s)
		re, ok := err.(*lockout.RefusedError)
		if !ok {
			t.Fatalf("%v: %v, want a refusal", s, err)
		}
		if !re.Remembered {
			t.Fatalf("%v: refused from the store, want from the lock cache", s)
		}
		kept[i], want[i] = re, re.Rule+" "+re.Key+" "+re.Reason.String()
	}
	for range 10 {
		for _, s := range subjects {
			p.Allow(ctx, s)
		}
	}
	for i, re := range kept {
		if got := re.Rule + " " + re.Key + " " + re.Reason.String(); got != want[i] {
			t.Errorf("refusal %d changed: %q, was %q", i, got, want[i])
		}
	}
	// The hook heard the kept refusals among the first: they are the
	// ones returned.
	seen := make(map[*lockout.RefusedError]bool)
	for _, e := range hooked {
		seen[e] = true
	}
	for i, re := range kept {
		if !seen[re] {
			t.Errorf("refusal %d was not given to the hook", i)
		}
	}
}
