package bolt

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	bbolt "go.etcd.io/bbolt"

	"github.com/go-lockout/lockout/backend"
)

func appendN(t testing.TB, s *Store, name string, from, n int) {
	t.Helper()
	recs := make([]backend.Record, n)
	for i := range recs {
		recs[i] = rec(from + i)
	}
	if err := s.Append(context.Background(), name, recs); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

// readAll pages through the journal with q, checking each page's bound.
func readAll(t testing.TB, s *Store, name string, q backend.Query) []backend.Record {
	t.Helper()
	var all []backend.Record
	for pages := 0; ; pages++ {
		recs, next, err := s.Records(context.Background(), name, q)
		if err != nil {
			t.Fatalf("Records(%+v): %v", q, err)
		}
		if lim, _ := q.PageLimit(); len(recs) > lim {
			t.Fatalf("page of %d records, limit %d", len(recs), lim)
		}
		all = append(all, recs...)
		if next == "" {
			return all
		}
		if pages > 10_000 {
			t.Fatal("paging never ends")
		}
		q.Before = next
	}
}

// index returns which rec(i) r is, by its Time.
func index(r backend.Record) int { return int(r.Time.Nanosecond() / 1_000_003) }

func sameRecord(t testing.TB, got backend.Record, i int) {
	t.Helper()
	want := rec(i)
	want.ID = got.ID
	if !got.Time.Equal(want.Time) {
		t.Errorf("record %d: Time %v, want %v", i, got.Time, want.Time)
	}
	got.Time = want.Time
	if !reflect.DeepEqual(got, want) {
		t.Errorf("record %d:\n got %+v\nwant %+v", i, got, want)
	}
}

func TestJournalAppendRead(t *testing.T) {
	s, _ := open(t, nil)
	appendN(t, s, "j", 0, 30)
	appendN(t, s, "j", 30, 20)
	appendN(t, s, "other", 0, 3)

	all := readAll(t, s, "j", backend.Query{})
	if len(all) != 50 {
		t.Fatalf("%d records, want 50", len(all))
	}
	for k, r := range all {
		sameRecord(t, r, 49-k) // newest first
		if k > 0 && r.ID >= all[k-1].ID {
			t.Errorf("IDs not decreasing: %s after %s", r.ID, all[k-1].ID)
		}
	}
	if n := len(readAll(t, s, "other", backend.Query{})); n != 3 {
		t.Errorf("other journal: %d records, want 3", n)
	}
	if recs, next, err := s.Records(context.Background(), "missing", backend.Query{}); err != nil || len(recs) != 0 || next != "" {
		t.Errorf("missing journal: %v, %q, %v", recs, next, err)
	}
	// An empty record round-trips, zero Time included.
	if err := s.Append(context.Background(), "empty", []backend.Record{{}}); err != nil {
		t.Fatal(err)
	}
	recs, _, err := s.Records(context.Background(), "empty", backend.Query{})
	if err != nil || len(recs) != 1 || !reflect.DeepEqual(recs[0], backend.Record{ID: recs[0].ID}) {
		t.Errorf("empty record: %+v, %v", recs, err)
	}
}

func TestJournalFilters(t *testing.T) {
	s, _ := open(t, nil)
	const n = 200
	appendN(t, s, "j", 0, n)
	for _, tc := range []struct {
		name string
		q    backend.Query
		want func(i int) bool
	}{
		{"all", backend.Query{}, func(int) bool { return true }},
		{"username", backend.Query{Username: "u1"}, func(i int) bool { return i%3 == 1 }},
		{"ip", backend.Query{IP: "192.0.2.4"}, func(i int) bool { return i%5 == 4 }},
		{"outcome", backend.Query{Outcome: "success"}, func(i int) bool { return i%2 == 1 }},
		{"all three", backend.Query{Username: "u2", IP: "192.0.2.0", Outcome: "failure"}, func(i int) bool { return i%3 == 2 && i%5 == 0 && i%2 == 0 }},
		{"no match", backend.Query{Username: "nobody"}, func(int) bool { return false }},
	} {
		for _, limit := range []int{0, 1, 7, 1000} {
			t.Run(fmt.Sprint(tc.name, "/limit=", limit), func(t *testing.T) {
				q := tc.q
				q.Limit = limit
				var want []int
				for i := n - 1; i >= 0; i-- {
					if tc.want(i) {
						want = append(want, i)
					}
				}
				got := readAll(t, s, "j", q)
				if len(got) != len(want) {
					t.Fatalf("%d records, want %d", len(got), len(want))
				}
				for k, r := range got {
					if index(r) != want[k] {
						t.Fatalf("record %d is rec(%d), want rec(%d)", k, index(r), want[k])
					}
					sameRecord(t, r, want[k])
				}
			})
		}
	}
}

func TestJournalPaging(t *testing.T) {
	s, _ := open(t, nil)
	appendN(t, s, "j", 0, 25)
	q := backend.Query{Limit: 10}
	var sizes []int
	var last string
	for {
		recs, next, err := s.Records(context.Background(), "j", q)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(recs))
		if len(recs) > 0 {
			if next != "" && next != recs[len(recs)-1].ID {
				t.Errorf("cursor %q, want the last record's ID %q", next, recs[len(recs)-1].ID)
			}
			last = recs[len(recs)-1].ID
		}
		if next == "" {
			break
		}
		q.Before = next
	}
	if !reflect.DeepEqual(sizes, []int{10, 10, 5}) {
		t.Errorf("page sizes %v, want [10 10 5]", sizes)
	}
	// A page that ends with the oldest record has no cursor; the oldest
	// record's ID as a cursor gives nothing.
	recs, next, err := s.Records(context.Background(), "j", backend.Query{Before: last})
	if err != nil || len(recs) != 0 || next != "" {
		t.Errorf("before the oldest: %d records, %q, %v", len(recs), next, err)
	}
	// A cursor beyond the newest record reads from the newest.
	recs, _, err = s.Records(context.Background(), "j", backend.Query{Before: formatID(1 << 40), Limit: 1})
	if err != nil || len(recs) != 1 || index(recs[0]) != 24 {
		t.Errorf("before a future ID: %+v, %v", recs, err)
	}
	// Records appended since a page was read do not show in the pages after it.
	first, next, _ := s.Records(context.Background(), "j", backend.Query{Limit: 5})
	appendN(t, s, "j", 25, 5)
	second, _, _ := s.Records(context.Background(), "j", backend.Query{Limit: 5, Before: next})
	if index(first[4]) != 20 || index(second[0]) != 19 {
		t.Errorf("pages around an append: %d then %d, want 20 then 19", index(first[4]), index(second[0]))
	}
}

func TestJournalScanBound(t *testing.T) {
	s, _ := open(t, nil)
	appendN(t, s, "j", 0, journalScan+500) // rec(0), the oldest, is u0
	recs, next, err := s.Records(context.Background(), "j", backend.Query{Username: "nobody"})
	if err != nil || len(recs) != 0 || next == "" {
		t.Fatalf("first call over %d records: %d records, cursor %q, %v; want none, a cursor", journalScan+500, len(recs), next, err)
	}
	recs, next, err = s.Records(context.Background(), "j", backend.Query{Username: "nobody", Before: next})
	if err != nil || len(recs) != 0 || next != "" {
		t.Fatalf("second call: %d records, cursor %q, %v; want none, no cursor", len(recs), next, err)
	}
	if got := readAll(t, s, "j", backend.Query{Username: "u0", Limit: 1000}); len(got) != (journalScan+500+2)/3 {
		t.Errorf("u0: %d records, want %d", len(got), (journalScan+500+2)/3)
	}
}

func (s *Store) journalLen(t testing.TB, name string) (n int) {
	t.Helper()
	err := s.db.View(func(tx *bbolt.Tx) error {
		jb, err := s.journals(tx)
		if err != nil {
			return err
		}
		if b := jb.Bucket([]byte(name)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestJournalCap(t *testing.T) {
	s, _ := open(t, &Options{JournalMax: 100})
	for i := 0; i < 300; i += 30 {
		appendN(t, s, "j", i, 30)
	}
	if n := s.journalLen(t, "j"); n != 100 {
		t.Errorf("%d records on disk, want JournalMax 100", n)
	}
	all := readAll(t, s, "j", backend.Query{Limit: 1000})
	if len(all) != 100 || index(all[0]) != 299 || index(all[99]) != 200 {
		t.Fatalf("%d records, from rec(%d) to rec(%d); want 100, 299 to 200", len(all), index(all[0]), index(all[len(all)-1]))
	}
	// One append larger than the cap keeps its newest records.
	appendN(t, s, "big", 0, 250)
	if all := readAll(t, s, "big", backend.Query{Limit: 1000}); len(all) != 100 || index(all[99]) != 150 {
		t.Errorf("append of 250: %d kept, oldest rec(%d); want 100, 150", len(all), index(all[len(all)-1]))
	}
}

// TestJournalRetention runs on fake time: records past the retention are
// never read, and the sweeper removes them within one sweep period.
func TestJournalRetention(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(filepath.Join(t.TempDir(), "j.db"), 0o600, &Options{
			JournalRetention: time.Minute, SweepInterval: 10 * time.Second, SweepChunk: 7,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// The sweeper ticks every 10 s from the Open: appending 5 s on,
		// no check below falls on a tick (one there would race with the
		// sweep it starts).
		time.Sleep(5 * time.Second)
		appendN(t, s, "j", 0, 40)
		appendN(t, s, "k", 0, 5)
		time.Sleep(30 * time.Second)
		appendN(t, s, "j", 40, 10)
		time.Sleep(29 * time.Second) // 59 s after the first append: all there
		synctest.Wait()
		if n := len(readAll(t, s, "j", backend.Query{})); n != 50 {
			t.Errorf("59 s on: %d records, want 50", n)
		}
		time.Sleep(time.Second) // 60 s: the first 40 are past the retention
		if got := readAll(t, s, "j", backend.Query{}); len(got) != 10 || index(got[9]) != 40 {
			t.Errorf("60 s on: %d records, want the 10 newest", len(got))
		}
		if n := s.journalLen(t, "j"); n != 50 {
			t.Errorf("before the sweep: %d records on disk, want 50", n)
		}
		time.Sleep(10 * time.Second) // the sweeper ran
		synctest.Wait()
		if n, m := s.journalLen(t, "j"), s.journalLen(t, "k"); n != 10 || m != 0 {
			t.Errorf("after the sweep: %d and %d records on disk, want 10 and 0", n, m)
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if n := s.journalLen(t, "j"); n != 0 {
			t.Errorf("after the last sweep: %d records on disk, want 0", n)
		}
		if recs, next, err := s.Records(context.Background(), "j", backend.Query{}); len(recs) != 0 || next != "" || err != nil {
			t.Errorf("all expired: %d records, %q, %v", len(recs), next, err)
		}
		// The sequence goes on: IDs still grow.
		appendN(t, s, "j", 50, 1)
		if recs, _, _ := s.Records(context.Background(), "j", backend.Query{}); len(recs) != 1 || recs[0].ID != formatID(51) {
			t.Errorf("after the sweep, an append got %+v, want ID %s", recs, formatID(51))
		}
	})
}

func TestJournalErrors(t *testing.T) {
	s, _ := open(t, nil)
	ctx := context.Background()
	appendN(t, s, "j", 0, 3)
	for _, name := range []string{"", "a b", "a{b}", "tab\t", strings.Repeat("x", 129)} {
		if err := s.Append(ctx, name, []backend.Record{rec(0)}); !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("Append(%q): %v, want ErrInvalid", name, err)
		}
		if _, _, err := s.Records(ctx, name, backend.Query{}); !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("Records(%q): %v, want ErrInvalid", name, err)
		}
	}
	for _, cur := range []string{"x", "12", "000000000000000g", "000000000000000A", "00000000000000001", "-000000000000001", " 00000000000001"} {
		if _, _, err := s.Records(ctx, "j", backend.Query{Before: cur}); !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("cursor %q: %v, want ErrInvalid", cur, err)
		}
	}
	if _, _, err := s.Records(ctx, "j", backend.Query{Limit: -1}); !errors.Is(err, backend.ErrInvalid) {
		t.Errorf("limit -1: %v, want ErrInvalid", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Append(cctx, "j", []backend.Record{rec(0)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Append, cancelled: %v", err)
	}
	if _, _, err := s.Records(cctx, "j", backend.Query{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Records, cancelled: %v", err)
	}
	if n := len(readAll(t, s, "j", backend.Query{})); n != 3 {
		t.Errorf("%d records after the failed calls, want 3", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, "j", []backend.Record{rec(0)}); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, _, err := s.Records(ctx, "j", backend.Query{}); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Records after Close: %v", err)
	}
}

// TestJournalReopen: records, and the sequence of IDs, survive a restart.
func TestJournalReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	s, err := Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, "j", 0, 5)
	s.Close()
	s, err = Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(t, s, "j", 5, 1)
	all := readAll(t, s, "j", backend.Query{})
	if len(all) != 6 || all[0].ID != formatID(6) {
		t.Fatalf("after a restart: %d records, newest %q", len(all), all[0].ID)
	}
	for k, r := range all {
		sameRecord(t, r, 5-k)
	}
}

// TestJournalGivesWay floods the journal of a small file, then fills the
// file with counters: the journal drops its records for them, and counters
// get ErrFull only once the journal is gone.
func TestJournalGivesWay(t *testing.T) {
	const maxSize = 1 << 20
	s, _ := open(t, &Options{MaxSize: maxSize, SweepInterval: -1, JournalMax: 1 << 30})
	big := strings.Repeat("a", 200)
	var appended, refused int
	for i := range 300 { // 19,200 records of 300 bytes: over 5 MiB
		recs := make([]backend.Record, 64)
		for j := range recs {
			recs[j] = rec(i*64 + j)
			recs[j].UserAgent = big
		}
		switch err := s.Append(context.Background(), "flood", recs); {
		case err == nil:
			appended += len(recs)
		case errors.Is(err, backend.ErrFull):
			refused++
		default:
			t.Fatal(err)
		}
	}
	held := s.journalLen(t, "flood")
	t.Logf("journal: %d records appended, %d held, %d appends refused", appended, held, refused)
	if held == 0 || held == appended {
		t.Fatalf("the journal held %d records of %d appended: no rotation", held, appended)
	}
	keys := fill(t, s, 0, 100)
	plain, _ := open(t, &Options{MaxSize: maxSize, SweepInterval: -1})
	if n := len(fill(t, plain, 0, 100)); len(keys) < n*95/100 {
		t.Errorf("%d counters fitted beside the journal, %d in a file without one", len(keys), n)
	}
	if n := s.journalLen(t, "flood"); n != 0 {
		t.Errorf("counters got ErrFull while the journal kept %d records", n)
	}
	if s.stats.sheds.Load() == 0 {
		t.Error("the journal never gave way")
	}
	// Every acknowledged counter is there.
	for _, k := range keys[:10] {
		if r := do(t, s, backend.ExistsOp(k))[0]; !r.Found {
			t.Errorf("%s is missing", k)
		}
	}
}

// TestJournalShedTime sheds the oldest quarter of a full journal of
// records with 2 KiB user agents (an attacker's, at the default
// JournalMax), as the committer does when a counter write finds the file
// full: every counter write waits for it, so it must take far less than a
// decision's deadline. Deleting each record at the cursor's First walked
// every leaf emptied before it in the transaction: 12.6 s for 25,000
// records, against 0.1 s deleting them by key.
func TestJournalShedTime(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 200 MB of records")
	}
	s, _ := open(t, &Options{SweepInterval: -1})
	ua := strings.Repeat("a", DefaultJournalRecordBytes)
	for i := 0; i < DefaultJournalMax; i += 1000 {
		recs := make([]backend.Record, 1000)
		for j := range recs {
			recs[j] = rec(i + j)
			recs[j].UserAgent = ua
		}
		if err := s.Append(context.Background(), "j", recs); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	n, err := s.shedJournals()
	took := time.Since(t0)
	t.Logf("shed %d records in %v", n, took)
	if err != nil || n != DefaultJournalMax/4 {
		t.Fatalf("shed %d records, %v; want %d", n, err, DefaultJournalMax/4)
	}
	bound := time.Second
	if raceEnabled {
		bound = 10 * time.Second
	}
	if took > bound {
		t.Errorf("shedding %d records held the writer for %v", n, took)
	}
	if got, want := s.journalLen(t, "j"), DefaultJournalMax*3/4; got != want {
		t.Errorf("%d records left, want %d", got, want)
	}
	if recs, _, err := s.Records(context.Background(), "j", backend.Query{Limit: 1}); err != nil || len(recs) != 1 || recs[0].ID != formatID(DefaultJournalMax) {
		t.Errorf("newest record after the shed: %d records, %v; want ID %s", len(recs), err, formatID(DefaultJournalMax))
	}
}

// TestJournalSizeBound checks the package doc's bound on the size of one
// journal, JournalMax * 2 * (JournalRecordBytes + 60) bytes, with records
// as large as the default JournalRecordBytes lets them be (an attacker's
// user agents). bbolt keeps at least two records in a node and writes a
// node on whole pages, so such a record takes a 4 KiB page of its own:
// 39 MiB for 10,000 records, where the bound once said 20 MiB.
func TestJournalSizeBound(t *testing.T) {
	const n = 10_000
	s, _ := open(t, &Options{SweepInterval: -1, JournalMax: n})
	ua := strings.Repeat("a", DefaultJournalRecordBytes)
	for i := 0; i < n; i += 1000 {
		recs := make([]backend.Record, 1000)
		for j := range recs {
			recs[j] = rec(i + j)
			recs[j].UserAgent = ua
		}
		if err := s.Append(context.Background(), "j", recs); err != nil {
			t.Fatal(err)
		}
	}
	var st bbolt.BucketStats
	err := s.db.View(func(tx *bbolt.Tx) error {
		jb, err := s.journals(tx)
		if err != nil {
			return err
		}
		st = jb.Bucket([]byte("j")).Stats()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	size := st.BranchAlloc + st.LeafAlloc
	bound := n * 2 * (DefaultJournalRecordBytes + 60)
	t.Logf("%d records take %d bytes (%d per record), bound %d", st.KeyN, size, size/st.KeyN, bound)
	if size > bound {
		t.Errorf("%d records of %d bytes of values take %d bytes of the file, over the documented %d", st.KeyN, DefaultJournalRecordBytes, size, bound)
	}
}

// TestJournalCrowdedBytes crowds a file past 7/8 of MaxSize with counters
// beside a journal of small records, then appends records with 2 KiB user
// agents: the journal rotates, and takes no more room than it had, in
// records or in bytes. Rotating by records only, the journal kept its 200
// records while 120 of them became large ones: from 24 KiB of pages to
// 488 KiB, 95% of the eighth left to counters.
func TestJournalCrowdedBytes(t *testing.T) {
	const maxSize = 4 << 20
	s, _ := open(t, &Options{MaxSize: maxSize, SweepInterval: -1})
	appendN(t, s, "j", 0, 200)
	journal := func() (records, bytes int) {
		t.Helper()
		err := s.db.View(func(tx *bbolt.Tx) error {
			jb, err := s.journals(tx)
			if err != nil {
				return err
			}
			st := jb.Bucket([]byte("j")).Stats()
			records, bytes = st.KeyN, st.LeafAlloc+st.BranchAlloc
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return records, bytes
	}
	crowded := func() (c bool) {
		_ = s.db.View(func(tx *bbolt.Tx) error { c = s.crowded(tx); return nil })
		return c
	}
	for i := 0; !crowded(); i += 100 {
		ops := make([]backend.Op, 100)
		for j := range ops {
			ops[j] = backend.IncrOp(fmt.Sprintf("k/%08d", i+j), 1, time.Hour)
		}
		do(t, s, ops...)
	}
	n0, b0 := journal()
	ua := strings.Repeat("a", DefaultJournalRecordBytes)
	appended := 0
	for range 60 {
		recs := make([]backend.Record, 2)
		for j := range recs {
			recs[j] = rec(j)
			recs[j].UserAgent = ua
		}
		err := s.Append(context.Background(), "j", recs)
		if errors.Is(err, backend.ErrFull) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		appended += len(recs)
	}
	n1, b1 := journal()
	t.Logf("crowded file: the journal went from %d records (%d bytes) to %d (%d bytes), %d large records appended", n0, b0, n1, b1, appended)
	if appended == 0 {
		t.Error("no large record was appended: the journal did not rotate")
	}
	if n1 > n0 {
		t.Errorf("the journal grew from %d records to %d", n0, n1)
	}
	// Pages: a large record takes a page of its own where small ones
	// share one, so allow twice the bytes (and a page).
	if b1 > 2*b0+4096 {
		t.Errorf("the journal grew from %d bytes to %d in a crowded file", b0, b1)
	}
}

func BenchmarkJournalAppend64(b *testing.B) {
	s, _ := open(b, &Options{SweepInterval: -1})
	recs := make([]backend.Record, 64)
	for i := range recs {
		recs[i] = rec(i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Append(ctx, "bench", recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}

func BenchmarkJournalRecords(b *testing.B) {
	s, _ := open(b, &Options{SweepInterval: -1})
	appendN(b, s, "bench", 0, 10_000)
	ctx := context.Background()
	for _, q := range []backend.Query{{}, {Username: "u1", Outcome: "failure"}, {Username: "nobody"}} {
		b.Run(fmt.Sprintf("%+v", q), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.Records(ctx, "bench", q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestJournalCompact: Compact keeps the journals, and their sequences.
func TestJournalCompact(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.db"), filepath.Join(dir, "dst.db")
	s, err := Open(src, 0o600, &Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	const n = compactTxKeys + 500 // two transactions
	appendN(t, s, "j", 0, n)
	appendN(t, s, "k", 0, 3)
	do(t, s, backend.IncrOp("counter", 1, time.Hour))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Compact(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dst, 0o600, &Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := readAll(t, s, "j", backend.Query{Limit: 1000}); len(got) != n || got[0].ID != formatID(n) {
		t.Errorf("compacted journal: %d records, want %d", len(got), n)
	}
	appendN(t, s, "k", 3, 1)
	if got := readAll(t, s, "k", backend.Query{}); len(got) != 4 || got[0].ID != formatID(4) {
		t.Errorf("compacted journal k: %d records, newest %q; want 4, %s", len(got), got[0].ID, formatID(4))
	}
	if r := do(t, s, backend.ExistsOp("counter"))[0]; !r.Found {
		t.Error("the counter is gone")
	}
}

func TestJournalRecordBytes(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6000 bytes
	in := backend.Record{
		Outcome: "failure", IP: "192.0.2.1", Username: long, UserAgent: strings.Repeat("a", 5000),
		Fields: map[string]string{"tenant": "t1", "blob": long},
	}
	short := 0 // field names count too
	for _, v := range []string{in.Outcome, in.IP, "t1", "tenant", "blob"} {
		short += len(v)
	}
	for _, tc := range []struct {
		name  string
		opts  *Options
		limit int // 0: no cut
	}{
		{"default", nil, DefaultJournalRecordBytes},
		{"1 KiB", &Options{JournalRecordBytes: 1024}, 1024},
		{"below the least, raised", &Options{JournalRecordBytes: 10}, backend.MinRecordBytes},
		{"unbounded", &Options{JournalRecordBytes: -1}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := open(t, tc.opts)
			orig := in
			orig.Fields = maps.Clone(in.Fields)
			if err := s.Append(context.Background(), "j", []backend.Record{in}); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(in, orig) {
				t.Error("Append changed the caller's record")
			}
			recs, _, err := s.Records(context.Background(), "j", backend.Query{})
			if err != nil || len(recs) != 1 {
				t.Fatalf("%d records, %v", len(recs), err)
			}
			g := recs[0]
			if g.Outcome != in.Outcome || g.IP != in.IP || g.Fields["tenant"] != "t1" {
				t.Errorf("short values cut: %q %q %q", g.Outcome, g.IP, g.Fields["tenant"])
			}
			total := len(g.Outcome) + len(g.IP) + len(g.Username) + len(g.UserAgent) + len(g.Fields["tenant"]) + len(g.Fields["blob"]) + len("tenant") + len("blob")
			if tc.limit == 0 {
				if g.Username != long || g.UserAgent != in.UserAgent || g.Fields["blob"] != long {
					t.Error("unbounded: long values cut")
				}
				return
			}
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

// TestAppendHonoursDeadline: an Append that waits for bbolt's writer lock
// (held here, as a long sweep or shed holds it) returns at its deadline,
// as Do does, and appends nothing once the lock is free.
func TestAppendHonoursDeadline(t *testing.T) {
	s, _ := open(t, &Options{SweepInterval: -1})
	release := s.holdWriter(t)
	time.AfterFunc(2*time.Second, release) // an Append that waits for it fails, not hangs
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Append(ctx, "j", []backend.Record{rec(1)})
	if took := time.Since(start); took > time.Second || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Append with a 50 ms deadline: %v after %v, want DeadlineExceeded at once", err, took)
	}
	release()
	if err := s.Append(context.Background(), "j", []backend.Record{rec(2)}); err != nil {
		t.Fatal(err)
	}
	recs, _, err := s.Records(context.Background(), "j", backend.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Username != rec(2).Username {
		t.Errorf("records %+v, want only the second append's", recs)
	}
}

// TestJournalGivesWayLargeRecords is TestJournalGivesWay with an
// attacker's records: 2 KiB user agents, each record on a page of its own,
// in files of several sizes. Before the committer shed records while free
// pages remained, a file whose pages were all in use had none to write
// the shed with either: counters got ErrFull while the journal kept its
// records (a review: all 887 of them at 4 MiB, about half at 16 and 64).
func TestJournalGivesWayLargeRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("fills files of up to 64 MiB")
	}
	for _, size := range []int64{4 << 20, 16 << 20, 64 << 20} {
		t.Run(fmt.Sprintf("MiB=%d", size>>20), func(t *testing.T) {
			s, _ := open(t, &Options{MaxSize: size, SweepInterval: -1, JournalMax: 1 << 30})
			ua := strings.Repeat("a", DefaultJournalRecordBytes)
			// Records of eight times the file's size, in appends of 64: past 7/8
			// of MaxSize, an append drops as many records as it adds, or
			// is refused.
			refused := 0
			for i := 0; i < int(size/4096)*8; i += 64 {
				recs := make([]backend.Record, 64)
				for j := range recs {
					recs[j] = rec(i + j)
					recs[j].UserAgent = ua
				}
				switch err := s.Append(context.Background(), "flood", recs); {
				case errors.Is(err, backend.ErrFull):
					refused++
				case err != nil:
					t.Fatal(err)
				}
			}
			held := s.journalLen(t, "flood")
			keys := fill(t, s, 0, 100)
			left := s.journalLen(t, "flood")
			t.Logf("journal of %d records (%d appends refused); %d counters fitted beside it, which left %d records, in %d sheds", held, refused, len(keys), left, s.stats.sheds.Load())
			if left != 0 {
				t.Errorf("counters got ErrFull while the journal kept %d records of %d", left, held)
			}
			for _, k := range keys[len(keys)-10:] {
				if r := do(t, s, backend.ExistsOp(k))[0]; !r.Found {
					t.Errorf("%s is missing", k)
				}
			}
		})
	}
}

// TestCapacity checks capacity against bbolt: a file filled with counters
// until a write fails has data up to its capacity, and not beyond.
func TestCapacity(t *testing.T) {
	for _, size := range []int64{1 << 20, 3 << 20, 4 << 20, 20 << 20, 40 << 20} {
		t.Run(fmt.Sprintf("MaxSize=%d", size), func(t *testing.T) {
			s, _ := open(t, &Options{MaxSize: size, SweepInterval: -1})
			fill(t, s, 0, 100)
			var end int64
			_ = s.db.View(func(tx *bbolt.Tx) error { end = tx.Size(); return nil })
			c := capacity(s.db)
			t.Logf("MaxSize %d: capacity %d, data at %d when full", size, c, end)
			if end > c || end < c-64<<10 {
				t.Errorf("the data ends at %d when full, want at most the capacity %d and within 64 KiB of it", end, c)
			}
		})
	}
}

// TestJournalGivesWayAcrossStores: two stores in one caller's DB (New);
// one's journal is flooded, then the other's counters fill the file: the
// first's journal gives way to them too (a review: each store shed only
// its own journals, so an idle store's journal kept the file).
func TestJournalGivesWayAcrossStores(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "app.db"), 0o600, &bbolt.Options{MaxSize: 4 << 20, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := New(db, "lockout-a", &Options{SweepInterval: -1, JournalMax: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(db, "lockout-b", &Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ua := strings.Repeat("a", DefaultJournalRecordBytes)
	for i := 0; i < (4<<20)/4096*2; i += 64 {
		recs := make([]backend.Record, 64)
		for j := range recs {
			recs[j] = rec(i + j)
			recs[j].UserAgent = ua
		}
		if err := a.Append(context.Background(), "flood", recs); err != nil && !errors.Is(err, backend.ErrFull) {
			t.Fatal(err)
		}
	}
	held := a.journalLen(t, "flood")
	keys := fill(t, b, 0, 100)
	left := a.journalLen(t, "flood")
	t.Logf("a's journal: %d records; b fitted %d counters, then ErrFull; a's journal kept %d", held, len(keys), left)
	if left != 0 {
		t.Errorf("b's counters got ErrFull while a's journal kept %d records", left)
	}
}

// TestNewNoStatistics: New refuses a bounded DB without statistics, where
// the journal's bounds would see no free page (a review: a file once near
// full then refused every Append for good); an unbounded one is fine.
func TestNewNoStatistics(t *testing.T) {
	for _, tc := range []struct {
		maxSize int
		wantErr bool
	}{{4 << 20, true}, {0, false}} {
		t.Run(fmt.Sprintf("MaxSize=%d", tc.maxSize), func(t *testing.T) {
			db, err := bbolt.Open(filepath.Join(t.TempDir(), "app.db"), 0o600, &bbolt.Options{MaxSize: tc.maxSize, NoStatistics: true})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			s, err := New(db, "lockout", nil)
			if (err != nil) != tc.wantErr {
				t.Fatalf("New: %v, want an error: %v", err, tc.wantErr)
			}
			if s != nil {
				s.Close()
			}
		})
	}
}
