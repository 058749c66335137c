package memory_test

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
	"github.com/go-lockout/lockout/internal/guesstest"
)

// TestAttackFull attacks one username (limit 5, an IP rule beside it) with
// 64 concurrent guessers through a policy with the default configuration,
// over a store whose MaxKeys other keys have reached: the fallback decides,
// and at most the limit of guesses reach the password check.
func TestAttackFull(t *testing.T) {
	s, err := memory.New(&memory.Options{MaxKeys: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; ; i++ {
		_, err := backend.Do1(t.Context(), s, backend.IncrOp(fmt.Sprintf("spray/%d", i), 1, time.Hour))
		if errors.Is(err, backend.ErrFull) {
			break
		}
		if err != nil || i > 10_000 {
			t.Fatalf("filling: %v after %d keys", err, i)
		}
	}
	p, err := lockout.New(s, lockout.Config{
		Rules:  []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(20)},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	res := guesstest.Attack{Duration: 3 * time.Second}.Run(p, lockout.Subject{Username: "victim", IP: "203.0.113.9"}, time.Second)
	t.Logf("%d guesses reached the check (%d decided by the fallback), %d refused, %d errors; p99 %v over %d decisions",
		res.Verified, res.Fallback, res.Refused, res.Errors, res.P99, res.Decisions)
	if !res.Within(5) {
		t.Errorf("%d guesses reached the password check (%d decided by the fallback), limit 5 for the store and 5 for the fallback", res.Verified, res.Fallback)
	}
	if res.Fallback == 0 {
		t.Errorf("no guess was decided by the fallback: was the store full?")
	}
	if res.Errors > 0 {
		t.Errorf("%d decisions failed, first: %v", res.Errors, res.FirstErr)
	}
	if res.P99 > 100*time.Millisecond {
		t.Errorf("p99 decision latency %v, want far below the 500ms deadline", res.P99)
	}
}

// TestAttackOneTag makes many keys of one hash tag, as an attacker can: a
// username's memory of wrong passwords (Config.Fingerprints) keeps one key
// per counted failure, lockout:f:{u=victim}:<fingerprint>, and with no rule
// keyed by the username alone, guesses from many addresses are all
// counted. Those keys share a shard, by design, but no probe sequence: a
// lookup of any key of the store, the tag's included, visits a few cells,
// not one per key of the tag.
func TestAttackOneTag(t *testing.T) {
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 20_000
	for i := range n {
		ops := []backend.Op{
			backend.IncrOp(fmt.Sprintf("lockout:f:{u=victim}:%016x", i), 1, time.Hour),
			backend.IncrOp(fmt.Sprintf("lockout:a:ip:{ip=10.0.%d.%d}", i>>8&255, i&255), 1, time.Hour),
		}
		if err := s.Do(t.Context(), ops, make([]backend.Result, len(ops))); err != nil {
			t.Fatal(err)
		}
	}
	// Linear probing in a table at most three quarters full: a few tens
	// of cells at most over 40,000 random keys; one shared home would
	// make it about n.
	got := memory.MaxProbe(s)
	t.Logf("longest probe: %d cells over the home", got)
	if got > 500 {
		t.Errorf("a key sits %d cells from its home, after %d keys of one hash tag", got, n)
	}
}
