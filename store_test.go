package lockout_test

import (
	"testing"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
)

// newStore returns a fresh memory store, closed when the test ends. Inside a
// synctest bubble, its time is the bubble's.
func newStore(t testing.TB) backend.Backend {
	t.Helper()
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
