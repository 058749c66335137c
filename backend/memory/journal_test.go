package memory_test

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
	"github.com/go-lockout/lockout/internal/reccodec"
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

// TestJournalChunksReused fills a ring many times over with records of a
// kilobyte, each naming its number in a long user agent: every one read
// back is whole (a chunk reused while a record still lived in it would
// show another's bytes), and the ring turns its chunks over without
// allocating new ones (without the spare, about one 64 KB chunk per 64
// records).
func TestJournalChunksReused(t *testing.T) {
	const max, appends = 150, 20_000
	s, err := memory.New(&memory.Options{JournalMax: max})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	agent := func(i int) string { return fmt.Sprintf("%06d-%s", i, strings.Repeat(string(rune('a'+i%26)), 1000)) }
	var (
		b             reccodec.Batch
		before, after runtime.MemStats
	)
	for i := range appends {
		if i == max*2 { // the ring is full, and has dropped a chunk
			runtime.ReadMemStats(&before)
		}
		b.Reset()
		b.Add(&backend.Record{Outcome: "failure", Username: fmt.Sprint(i), UserAgent: agent(i)})
		if err := s.AppendBatch(ctx, "j", &b); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	// Sprint and Sprintf allocate some small objects per append: count
	// the bytes, which 64 KB chunks would dominate.
	perAppend := (after.TotalAlloc - before.TotalAlloc) / (appends - max*2)
	if perAppend > 1024*4 {
		t.Errorf("%d bytes allocated per append: the ring's chunks are not reused", perAppend)
	}
	got, _, err := s.Records(ctx, "j", backend.Query{Limit: backend.MaxQueryLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != max {
		t.Fatalf("%d records, want %d", len(got), max)
	}
	for k, r := range got {
		i := appends - 1 - k
		if r.Username != fmt.Sprint(i) || r.UserAgent != agent(i) {
			t.Fatalf("record %d: username %q, user agent %.10q…: want %d", k, r.Username, r.UserAgent, i)
		}
	}
}

// TestJournalRecordBytes checks that a record's long values are cut to
// Options.JournalRecordBytes, whether it comes as a Record (Append) or
// encoded by the engine (AppendBatch), and that the short values stay
// whole.
func TestJournalRecordBytes(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6000 bytes
	in := backend.Record{
		Outcome: "refused", IP: "192.0.2.1", Username: long, UserAgent: strings.Repeat("a", 1<<20),
		Fields: map[string]string{"tenant": "t1", "blob": long},
	}
	short := len(in.Outcome) + len(in.IP) + len("t1") + len("tenant") + len("blob") // field names count too
	for _, tc := range []struct {
		name  string
		opts  *memory.Options
		limit int // 0: no cut
	}{
		{"default", nil, memory.DefaultJournalRecordBytes},
		{"1 KiB", &memory.Options{JournalRecordBytes: 1024}, 1024},
		{"unbounded", &memory.Options{JournalRecordBytes: -1}, 0},
	} {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/batch=%t", tc.name, batch), func(t *testing.T) {
				s, err := memory.New(tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				orig := in
				orig.Fields = maps.Clone(in.Fields)
				if batch {
					var b reccodec.Batch
					b.Add(&in)
					err = s.AppendBatch(t.Context(), "j", &b)
				} else {
					err = s.Append(t.Context(), "j", []backend.Record{in})
				}
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(in, orig) {
					t.Error("the caller's record changed")
				}
				recs, _, err := s.Records(t.Context(), "j", backend.Query{})
				if err != nil || len(recs) != 1 {
					t.Fatalf("%d records, %v", len(recs), err)
				}
				g := recs[0]
				if g.Outcome != in.Outcome || g.IP != in.IP || g.Fields["tenant"] != "t1" {
					t.Errorf("short values cut: %q %q %q", g.Outcome, g.IP, g.Fields["tenant"])
				}
				if tc.limit == 0 {
					if g.Username != long || g.UserAgent != in.UserAgent || g.Fields["blob"] != long {
						t.Error("unbounded: long values cut")
					}
					return
				}
				total := short + len(g.Username) + len(g.UserAgent) + len(g.Fields["blob"])
				if total > tc.limit || total < tc.limit-8 {
					t.Errorf("values add up to %d bytes, want about %d", total, tc.limit)
				}
				for _, p := range [][2]string{{g.Username, long}, {g.UserAgent, in.UserAgent}, {g.Fields["blob"], long}} {
					if !strings.HasPrefix(p[1], p[0]) || !utf8.ValidString(p[0]) || len(p[0]) < (tc.limit-short)/3-1 {
						t.Errorf("cut value of %d bytes: not a fair, whole-rune prefix", len(p[0]))
					}
				}
			})
		}
	}
}

// TestJournalScanBound: a query that matches nothing reads at most 10,000
// records per call, and its cursors lead to the one record that matches,
// the oldest of 25,000.
func TestJournalScanBound(t *testing.T) {
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs := make([]backend.Record, 25_000)
	for i := range recs {
		recs[i] = backend.Record{Outcome: "failure", Username: "u" + fmt.Sprint(i)}
	}
	if err := s.Append(t.Context(), "j", recs); err != nil {
		t.Fatal(err)
	}
	q := backend.Query{Username: "u0"}
	var calls []int
	for {
		got, next, err := s.Records(t.Context(), "j", q)
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, len(got))
		if next == "" {
			break
		}
		if len(calls) > 10 {
			t.Fatalf("no end after %d calls", len(calls))
		}
		q.Before = next
	}
	if want := []int{0, 0, 1}; !slices.Equal(calls, want) {
		t.Errorf("records per call %v, want %v", calls, want)
	}
}

// TestJournalRecordBytesLeast: a bound below backend.MinRecordBytes would
// cut the short values an operator filters by; New refuses it.
func TestJournalRecordBytesLeast(t *testing.T) {
	for _, n := range []int{1, 10, backend.MinRecordBytes - 1} {
		if s, err := memory.New(&memory.Options{JournalRecordBytes: n}); err == nil {
			s.Close()
			t.Errorf("New with JournalRecordBytes %d succeeded", n)
		}
	}
}

// TestJournalChunksAfterTrim trims all but the newest record of a ring by
// retention, which keeps one dropped chunk as the spare, then grows it by
// several chunks at once:
// each new chunk must be a chunk of its own (a spare handed out twice
// would make two chunks share their bytes), and every record reads back
// whole.
func TestJournalChunksAfterTrim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := memory.New(&memory.Options{JournalRetention: time.Minute, SweepInterval: 10 * time.Second, JournalMax: 1000})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		agent := func(i int) string { return fmt.Sprintf("%06d-%s", i, strings.Repeat(string(rune('a'+i%26)), 1000)) }
		appendN := func(from, n int) {
			var b reccodec.Batch
			for i := from; i < from+n; i++ {
				b.Reset()
				b.Add(&backend.Record{Outcome: "failure", Username: fmt.Sprint(i), UserAgent: agent(i)})
				if err := s.AppendBatch(ctx, "j", &b); err != nil {
					t.Fatal(err)
				}
			}
		}
		appendN(0, 300) // about 5 chunks of 64 KB
		time.Sleep(50 * time.Second)
		appendN(300, 1) // keeps the ring, in its last chunk
		time.Sleep(25 * time.Second)
		if n := s.JournalLen("j"); n != 1 {
			t.Fatalf("%d records after the first 300's retention, want 1", n)
		}
		appendN(301, 200) // about 3 chunks, the first the spare
		got, _, err := s.Records(ctx, "j", backend.Query{Limit: backend.MaxQueryLimit})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 201 {
			t.Fatalf("%d records, want 201", len(got))
		}
		for k, r := range got {
			i := 500 - k
			if r.Username != fmt.Sprint(i) || r.UserAgent != agent(i) {
				t.Fatalf("record %d: username %q, user agent %.10q…: want %d", k, r.Username, r.UserAgent, i)
			}
		}
	})
}
