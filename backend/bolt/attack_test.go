package bolt

import (
	"context"
	"errors"
	"fmt"
	"github.com/go-lockout/lockout/backend"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/internal/guesstest"
)

// TestAttackFull attacks one username (limit 5, an IP rule beside it) with
// 64 concurrent guessers through a policy with the default configuration,
// over a file that other keys filled past MaxSize: the fallback decides,
// and at most the limit of guesses reach the password check.
func TestAttackFull(t *testing.T) {
	s, _ := open(t, &Options{MaxSize: 1 << 20, SweepInterval: -1})
	fill(t, s, 0, 100)
	// Fill the pages where the victim's keys would go too, with keys that
	// sort right after each of them, until not one more fits there.
	victim := lockout.Subject{Username: "victim", IP: "203.0.113.9"}
	for _, near := range []string{"lockout:a:username:{u=victim}", "lockout:a:ip:{ip=203.0.113.9}"} {
		for i := 0; ; i++ {
			_, err := backend.Do1(t.Context(), s, backend.IncrOp(fmt.Sprintf("%s/%07d", near, i), 1, time.Hour))
			if errors.Is(err, backend.ErrFull) {
				break
			}
			if err != nil || i > 1_000_000 {
				t.Fatalf("filling: %v after %d keys", err, i)
			}
		}
	}
	var full atomic.Int64
	p, err := lockout.New(s, lockout.Config{
		Rules:  []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(20)},
		Logger: slog.New(slog.DiscardHandler),
		Hooks: lockout.Hooks{BackendError: func(_ context.Context, err error) {
			if errors.Is(err, backend.ErrFull) {
				full.Add(1)
			}
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	res := guesstest.Attack{Duration: 3 * time.Second}.Run(p, victim, time.Second)
	t.Logf("%d guesses reached the check (%d decided by the fallback), %d refused, %d errors; p99 %v over %d decisions",
		res.Verified, res.Fallback, res.Refused, res.Errors, res.P99, res.Decisions)
	if !res.Within(5) {
		t.Errorf("%d guesses reached the password check (%d decided by the fallback), limit 5 for the store and 5 for the fallback", res.Verified, res.Fallback)
	}
	// The file is at MaxSize: bbolt still reuses its free pages, so some
	// writes go in, but the attack must have met a full store.
	if full.Load() == 0 {
		t.Errorf("the store never refused a write as full")
	}
	t.Logf("the store refused %d calls as full", full.Load())
	if res.Errors > 0 {
		t.Errorf("%d decisions failed, first: %v", res.Errors, res.FirstErr)
	}
	if res.P99 > 100*time.Millisecond {
		t.Errorf("p99 decision latency %v, want far below the 500ms deadline", res.P99)
	}
}
