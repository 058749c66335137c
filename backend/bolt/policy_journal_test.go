package bolt_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend/bolt"
)

// TestPolicyJournal runs the engine's journal on the store: failures, the
// lockout and the refusal they bring are on the record, newest first.
func TestPolicyJournal(t *testing.T) {
	ctx := context.Background()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "lockout.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	p, err := lockout.New(store, lockout.Config{
		Rules:   []lockout.Rule{lockout.ByUsername(3)},
		Journal: &lockout.JournalConfig{},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	alice := lockout.Subject{Username: "alice", IP: "192.0.2.7"}
	for range 4 {
		a, err := p.Allow(ctx, alice)
		if err != nil {
			continue // the fourth is refused
		}
		if err := a.Failure(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Allow(ctx, lockout.Subject{Username: "bob", IP: "192.0.2.8"}); err != nil {
		t.Fatal(err)
	}
	if err := p.SyncJournal(ctx); err != nil {
		t.Fatal(err)
	}
	recs, next, err := p.Attempts(ctx, lockout.AttemptQuery{Username: "alice"})
	if err != nil || next != "" {
		t.Fatalf("Attempts: %v, cursor %q", err, next)
	}
	count := map[string]int{}
	for i, r := range recs {
		count[r.Outcome]++
		if r.Username != "alice" || r.IP != "192.0.2.7" {
			t.Errorf("record %d is %+v", i, r)
		}
		if i > 0 && r.ID >= recs[i-1].ID {
			t.Errorf("not newest first: %s after %s", r.ID, recs[i-1].ID)
		}
	}
	if count["failure"] != 3 || count["lockout"] != 1 || count["refused"] != 1 {
		t.Errorf("alice's records by outcome: %v; want 3 failures, 1 lockout, 1 refused", count)
	}
	if recs[0].Outcome != "refused" {
		t.Errorf("newest record: %q, want refused", recs[0].Outcome)
	}
}
