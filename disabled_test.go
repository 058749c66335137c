package lockout_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-lockout/lockout"
)

// TestDisabled is django-axes' AXES_ENABLED = False: a policy that admits
// everything and keeps nothing.
func TestDisabled(t *testing.T) {
	p := lockout.Disabled()
	alice := lockout.Subject{Username: "alice", IP: "192.0.2.1"}
	for i := range 100 {
		if err := attempt(t, p, alice, false); err != nil {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	verified := false
	ok, err := p.Check(bg, alice, func(context.Context) (bool, error) { verified = true; return true, nil })
	if !ok || err != nil || !verified {
		t.Errorf("Check after 100 failures: %v, %v (verified: %v), want admitted and verified", ok, err, verified)
	}
	a, err := p.Allow(bg, alice)
	if err != nil {
		t.Fatal(err)
	}
	if a.Allowlisted() || a.Fallback() || a.Err() != nil {
		t.Errorf("attempt: allowlisted %v, fallback %v, err %v", a.Allowlisted(), a.Fallback(), a.Err())
	}
	if err := a.Success(bg); err != nil {
		t.Error(err)
	}
	if err := a.Failure(bg); !errors.Is(err, lockout.ErrReported) {
		t.Errorf("second report: %v, want ErrReported", err)
	}

	// Subjects are checked as usual.
	for _, s := range []lockout.Subject{{IP: "not an address"}, {Username: "a\x00b"}} {
		if _, err := p.Allow(bg, s); !errors.Is(err, lockout.ErrInvalidSubject) {
			t.Errorf("Allow(%+v): %v, want ErrInvalidSubject", s, err)
		}
	}

	// The operator view is empty, and its actions do nothing.
	if st, err := p.Status(bg, alice); err != nil || len(st) != 0 {
		t.Errorf("Status: %v, %v, want no rules", st, err)
	}
	for l, err := range p.Locks(bg) {
		t.Errorf("Locks yielded %+v, %v", l, err)
	}
	if err := p.Unlock(bg, alice); err != nil {
		t.Errorf("Unlock: %v", err)
	}
	if err := p.Reset(bg, alice); err != nil {
		t.Errorf("Reset: %v", err)
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Allow(bg, alice); !errors.Is(err, lockout.ErrClosed) {
		t.Errorf("Allow after Close: %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
