package lockout_test

import (
	"errors"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
)

func TestWindowValues(t *testing.T) {
	store := newStore(t)
	tests := []struct {
		window time.Duration
		ok     bool
	}{
		{0, true}, // the default
		{time.Minute, true},
		{lockout.Forever, true},
		{-2, false},
		{-time.Minute, false},
	}
	for _, tc := range tests {
		r := lockout.ByIP(3)
		r.Window = tc.window
		p, err := lockout.New(store, lockout.Config{Rules: []lockout.Rule{r}, Logger: discard})
		if (err == nil) != tc.ok {
			t.Errorf("Window %v: err = %v, want ok = %v", tc.window, err, tc.ok)
		}
		if p != nil {
			p.Close()
		}
	}
}

// TestForeverWindowCapacity: with a window that never ends, a key whose
// every slot is held by abandoned attempts is refused for capacity with
// Forever set, and never with a negative RetryAfter, from the store and
// from the lock cache alike.
func TestForeverWindowCapacity(t *testing.T) {
	for _, cacheTTL := range []time.Duration{0, lockout.NoLockCache} {
		r := lockout.ByUsername(2)
		r.Window = lockout.Forever
		p := newPolicyOn(t, newStore(t), lockout.Config{Rules: []lockout.Rule{r}, LockCacheTTL: cacheTTL})
		for range 2 {
			if _, err := p.Allow(bg, alice); err != nil { // abandoned
				t.Fatal(err)
			}
		}
		_, err := p.Allow(bg, alice)
		var re *lockout.RefusedError
		if !errors.As(err, &re) || re.Reason != lockout.ReasonCapacity || !re.Forever || re.RetryAfter != 0 {
			t.Errorf("LockCacheTTL %v: %v (%+v), want a capacity refusal, Forever, RetryAfter 0", cacheTTL, err, re)
		}
	}
}
