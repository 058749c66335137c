package lockout_test

import (
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
