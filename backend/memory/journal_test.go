package memory_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
)

// TestJournalSweptWhenIdle checks that the sweeper trims a journal nobody
// reads or writes: memory is given back without a reader.
func TestJournalSweptWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := memory.New(&memory.Options{JournalRetention: time.Minute, SweepInterval: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		if err := s.Append(ctx, "j", []backend.Record{{Time: time.Now(), Outcome: "failure"}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Second)
		if err := s.Append(ctx, "j", []backend.Record{{Time: time.Now(), Outcome: "success"}}); err != nil {
			t.Fatal(err)
		}
		if n := s.JournalLen("j"); n != 2 {
			t.Fatalf("%d records, want 2", n)
		}
		time.Sleep(45 * time.Second) // the first is 75 s old: swept at 70 s
		if n := s.JournalLen("j"); n != 1 {
			t.Errorf("after 75 s: %d records, want 1", n)
		}
		time.Sleep(40 * time.Second)
		if n := s.JournalLen("j"); n != 0 {
			t.Errorf("after 115 s: %d records, want 0", n)
		}
	})
}

// TestJournalRing appends across the ring's growth and wrap, and reads
// back the newest JournalMax records in order.
func TestJournalRing(t *testing.T) {
	for _, tc := range []struct{ max, appends, batch int }{
		{1, 5, 1}, {7, 7, 3}, {7, 8, 3}, {16, 100, 1}, {100, 1000, 33}, {100, 50, 50},
	} {
		t.Run(fmt.Sprintf("max%d-appends%d-batch%d", tc.max, tc.appends, tc.batch), func(t *testing.T) {
			s, err := memory.New(&memory.Options{JournalMax: tc.max})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			for i := 0; i < tc.appends; i += tc.batch {
				var recs []backend.Record
				for k := i; k < min(i+tc.batch, tc.appends); k++ {
					recs = append(recs, backend.Record{Outcome: "failure", Username: fmt.Sprint(k)})
				}
				if err := s.Append(ctx, "j", recs); err != nil {
					t.Fatal(err)
				}
			}
			got, _, err := s.Records(ctx, "j", backend.Query{Limit: backend.MaxQueryLimit})
			if err != nil {
				t.Fatal(err)
			}
			want := min(tc.max, tc.appends)
			if len(got) != want {
				t.Fatalf("%d records, want %d", len(got), want)
			}
			for i, r := range got {
				if w := fmt.Sprint(tc.appends - 1 - i); r.Username != w {
					t.Fatalf("record %d is %q, want %q", i, r.Username, w)
				}
			}
		})
	}
}
