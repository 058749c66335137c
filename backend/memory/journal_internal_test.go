package memory

import (
	"context"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// TestJournalAppendTimeUnderLock appends a record while another call holds
// the journals' lock for longer than the retention. The record enters the
// journal when the lock is free, and a read right after the append finds
// it: its time of appending is read under the lock, so that the records'
// times grow with their IDs, as the reads and the trims assume.
func TestJournalAppendTimeUnderLock(t *testing.T) {
	const retention = 500 * time.Millisecond
	s := newStore(t, &Options{JournalRetention: retention, SweepInterval: time.Hour})
	ctx := context.Background()
	if err := s.Append(ctx, "j", []backend.Record{{Time: time.Now(), Outcome: "first"}}); err != nil {
		t.Fatal(err)
	}
	s.journal.mu.Lock() // another call, holding the journals
	done := make(chan error, 1)
	go func() {
		done <- s.Append(ctx, "j", []backend.Record{{Time: time.Now(), Outcome: "late"}})
	}()
	time.Sleep(2 * retention)
	s.journal.mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	recs, _, err := s.Records(ctx, "j", backend.Query{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Outcome)
	}
	if len(got) != 1 || got[0] != "late" {
		t.Errorf("records right after the append: %q, want [late]", got)
	}
}
