package conformance

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// journalCases are the checks of the backend.Journal capability, run on
// stores whose harness declares Journal.
var journalCases = []testCase{
	{"JournalRoundTrip", testJournalRoundTrip},
	{"JournalFilters", testJournalFilters},
	{"JournalPaging", testJournalPaging},
	{"JournalNames", testJournalNames},
	{"JournalInvalid", testJournalInvalid},
	{"JournalCap", testJournalCap},
	{"JournalLongValues", testJournalLongValues},
	{"JournalRetention", testJournalRetention},
	{"JournalConcurrent", testJournalConcurrent},
	{"JournalContext", testJournalContext},
	{"JournalClose", testJournalClose},
}

func (e *env) journal(t *testing.T) backend.Journal {
	j, ok := e.b.(backend.Journal)
	if !e.h.Journal || !ok {
		t.Skip("the harness declares no Journal") // Capabilities checks the declaration.
	}
	return j
}

// journalMax is the cap the checks rely on: the harness's JournalMax, or a
// number of records they never exceed when it declares none.
func (e *env) journalMax() int {
	if e.h.JournalMax > 0 {
		return e.h.JournalMax
	}
	return 1 << 30
}

// sampleRecords returns n records with varied fields, the i-th at t0+i ms.
func sampleRecords(t0 time.Time, n int, tag string) []backend.Record {
	outcomes := []string{"failure", "success", "refused", "lockout", "unlock"}
	recs := make([]backend.Record, n)
	for i := range recs {
		r := backend.Record{
			Time:      t0.Add(time.Duration(i) * time.Millisecond),
			Outcome:   outcomes[i%len(outcomes)],
			Username:  fmt.Sprintf("%s-user%d", tag, i%3),
			IP:        fmt.Sprintf("192.0.2.%d", i%4),
			UserAgent: fmt.Sprintf("agent %d/%s", i, tag),
		}
		switch r.Outcome {
		case "refused":
			r.Reason, r.Rule, r.Key = "locked", "username", "u="+r.Username
		case "lockout":
			r.Rule, r.Key, r.Duration = "username+ip", "u="+r.Username+",ip="+r.IP, time.Duration(i+1)*time.Minute
		case "unlock":
			r.Operator, r.Via = "ops@example.com", "http"
		}
		if i%4 == 1 {
			r.Fields = map[string]string{"tenant": tag, "device": fmt.Sprint(i)}
		}
		if i%7 == 3 {
			r.Fallback = true
		}
		recs[i] = r
	}
	return recs
}

// hostileRecord holds the bytes a careless encoding would trip over.
func hostileRecord(t0 time.Time) backend.Record {
	odd := "a b\tc\r\nd\x00e=f;g,h:i{j}k\"l'm\\n %s é 中 \xff"
	return backend.Record{
		Time: t0, Outcome: "failure", Reason: odd, Rule: odd, Key: odd,
		Username: odd, IP: odd, UserAgent: odd + odd,
		Fields:   map[string]string{odd: odd, "": "empty name", "empty value": ""},
		Duration: backend.NoExpiry, Operator: odd, Via: odd,
	}
}

// sameRecord reports how got differs from want, ignoring the ID and
// allowing a millisecond on the time; "" when they agree.
func sameRecord(got, want backend.Record) string {
	if d := got.Time.Sub(want.Time); d > time.Millisecond || d < -time.Millisecond {
		return fmt.Sprintf("Time %v, want %v", got.Time, want.Time)
	}
	if len(got.Fields) != len(want.Fields) || (len(want.Fields) > 0 && !maps.Equal(got.Fields, want.Fields)) {
		return fmt.Sprintf("Fields %q, want %q", got.Fields, want.Fields)
	}
	type flat struct {
		outcome, reason, rule, key, username, ip, userAgent, operator, via string
		fallback                                                           bool
		duration                                                           time.Duration
	}
	f := func(r backend.Record) flat {
		return flat{r.Outcome, r.Reason, r.Rule, r.Key, r.Username, r.IP, r.UserAgent, r.Operator, r.Via, r.Fallback, r.Duration}
	}
	if g, w := f(got), f(want); g != w {
		return fmt.Sprintf("%+v, want %+v", g, w)
	}
	return ""
}

// readAll reads every record of name that matches q, page by page.
func readAll(t *testing.T, ctx context.Context, j backend.Journal, name string, q backend.Query) []backend.Record {
	t.Helper()
	var all []backend.Record
	for page := 0; ; page++ {
		recs, next, err := j.Records(ctx, name, q)
		if err != nil {
			t.Fatalf("Records(%q, %+v): %v", name, q, err)
		}
		all = append(all, recs...)
		if next == "" {
			return all
		}
		if next == q.Before {
			t.Fatalf("Records(%q, %+v): the cursor does not move", name, q)
		}
		if page > 100000 {
			t.Fatalf("Records(%q): more than 100,000 pages", name)
		}
		q.Before = next
	}
}

// checkNewestFirst checks that got is want reversed (want in append order).
func checkNewestFirst(t *testing.T, what string, got, want []backend.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d records, want %d", what, len(got), len(want))
		return
	}
	ids := map[string]bool{}
	for i := range got {
		w := want[len(want)-1-i]
		if d := sameRecord(got[i], w); d != "" {
			t.Errorf("%s: record %d (newest first): %s", what, i, d)
			return
		}
		if got[i].ID == "" || ids[got[i].ID] {
			t.Errorf("%s: record %d has ID %q: empty or seen before", what, i, got[i].ID)
			return
		}
		ids[got[i].ID] = true
	}
}

func (e *env) appendRecs(t *testing.T, j backend.Journal, name string, recs []backend.Record) {
	t.Helper()
	if err := j.Append(e.ctx, name, recs); err != nil {
		t.Fatalf("Append(%q, %d records): %v", name, len(recs), err)
	}
}

func testJournalRoundTrip(t *testing.T, e *env) {
	j := e.journal(t)
	if recs := readAll(t, e.ctx, j, "rt", backend.Query{}); len(recs) != 0 {
		t.Fatalf("a fresh journal holds %d records", len(recs))
	}
	t0 := time.Now()
	first := sampleRecords(t0, 10, "a")
	first[0].ID = "ignored" // the store assigns IDs
	want := append([]backend.Record{}, first...)
	want[0].ID = ""
	e.appendRecs(t, j, "rt", first)
	e.appendRecs(t, j, "rt", []backend.Record{hostileRecord(t0)})
	want = append(want, hostileRecord(t0))
	if err := j.Append(e.ctx, "rt", nil); err != nil {
		t.Errorf("Append of no records: %v", err)
	}
	more := sampleRecords(t0.Add(time.Second), 5, "b")
	e.appendRecs(t, j, "rt", more)
	want = append(want, more...)
	checkNewestFirst(t, "all records", readAll(t, e.ctx, j, "rt", backend.Query{}), want)
}

func testJournalFilters(t *testing.T, e *env) {
	j := e.journal(t)
	recs := sampleRecords(time.Now(), min(60, e.journalMax()), "f")
	e.appendRecs(t, j, "filters", recs)
	for _, q := range []backend.Query{
		{Username: "f-user1"},
		{IP: "192.0.2.2"},
		{Outcome: "refused"},
		{Username: "f-user0", IP: "192.0.2.0"},
		{Username: "f-user2", Outcome: "lockout"},
		{Username: "f-user0", IP: "192.0.2.0", Outcome: "failure"},
		{Username: "nobody"},
		{Username: "f-user", IP: "192.0.2."}, // no prefix matches
	} {
		var want []backend.Record
		for i := range recs {
			if q.Match(&recs[i]) {
				want = append(want, recs[i])
			}
		}
		checkNewestFirst(t, fmt.Sprintf("query %+v", q), readAll(t, e.ctx, j, "filters", q), want)
		// One page of at most 3: the newest 3 matches.
		q.Limit = 3
		got, _, err := j.Records(e.ctx, "filters", q)
		if err != nil {
			t.Fatalf("Records(%+v): %v", q, err)
		}
		if len(got) > 3 {
			t.Errorf("query %+v: %d records, want at most 3", q, len(got))
		}
		for i := range got {
			if !q.Match(&got[i]) {
				t.Errorf("query %+v returned %+v", q, got[i])
			}
		}
	}
}

func testJournalPaging(t *testing.T, e *env) {
	j := e.journal(t)
	n := min(150, e.journalMax())
	recs := sampleRecords(time.Now(), n, "p")
	for start := 0; start < n; start += 40 { // several appends
		e.appendRecs(t, j, "paging", recs[start:min(start+40, n)])
	}
	for _, limit := range []int{1, 7, 50, 0} {
		checkNewestFirst(t, fmt.Sprintf("pages of %d", limit), readAll(t, e.ctx, j, "paging", backend.Query{Limit: limit}), recs)
	}
	got, next, err := j.Records(e.ctx, "paging", backend.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != min(n, backend.DefaultQueryLimit) || next == "" {
		t.Errorf("a query with no limit: %d records, cursor %q; want %d and a cursor", len(got), next, backend.DefaultQueryLimit)
	}
	got, _, err = j.Records(e.ctx, "paging", backend.Query{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > backend.MaxQueryLimit {
		t.Errorf("Limit 1<<20: %d records, want at most MaxQueryLimit (%d)", len(got), backend.MaxQueryLimit)
	}
	// Records appended after a page was read do not show in later pages.
	page, next, err := j.Records(e.ctx, "paging", backend.Query{Limit: 10})
	if err != nil || next == "" {
		t.Fatalf("Records: %d records, cursor %q, %v", len(page), next, err)
	}
	e.appendRecs(t, j, "paging", sampleRecords(time.Now(), 3, "late"))
	rest := readAll(t, e.ctx, j, "paging", backend.Query{Before: next})
	checkNewestFirst(t, "pages after a late append", rest, recs[:n-10])
}

func testJournalNames(t *testing.T, e *env) {
	j := e.journal(t)
	t0 := time.Now()
	names := []string{"app", "app:x", "app:", "ap", "lockout", "p/q.r-s_t", "x"}
	for i, name := range names {
		e.appendRecs(t, j, name, sampleRecords(t0, i+1, name))
	}
	for i, name := range names {
		checkNewestFirst(t, "journal "+name, readAll(t, e.ctx, j, name, backend.Query{}), sampleRecords(t0, i+1, name))
	}
	if got := readAll(t, e.ctx, j, "never-written", backend.Query{}); len(got) != 0 {
		t.Errorf("a journal never written holds %d records", len(got))
	}
}

func testJournalInvalid(t *testing.T, e *env) {
	j := e.journal(t)
	recs := sampleRecords(time.Now(), 1, "i")
	for _, name := range []string{"", "a b", "a\nb", "{a}", "a}", string(make([]byte, 129))} {
		if err := j.Append(e.ctx, name, recs); !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("Append to journal %q: %v, want ErrInvalid", name, err)
		}
		if _, _, err := j.Records(e.ctx, name, backend.Query{}); !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("Records of journal %q: %v, want ErrInvalid", name, err)
		}
	}
	e.appendRecs(t, j, "inv", recs)
	if _, _, err := j.Records(e.ctx, "inv", backend.Query{Limit: -1}); !errors.Is(err, backend.ErrInvalid) {
		t.Errorf("Records with Limit -1: %v, want ErrInvalid", err)
	}
	for _, cursor := range []string{"not a cursor", "-", "\x00", "99999999999999999999999999-0"} {
		if _, _, err := j.Records(e.ctx, "inv", backend.Query{Before: cursor}); !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("Records before cursor %q: %v, want ErrInvalid", cursor, err)
		}
	}
}

func testJournalCap(t *testing.T, e *env) {
	j := e.journal(t)
	if e.h.JournalMax <= 0 {
		t.Skip("the harness declares no JournalMax")
	}
	limit := e.h.JournalMax
	recs := sampleRecords(time.Now(), 3*limit, "cap")
	for start := 0; start < len(recs); start += 64 {
		e.appendRecs(t, j, "cap", recs[start:min(start+64, len(recs))])
	}
	got := readAll(t, e.ctx, j, "cap", backend.Query{})
	if len(got) < limit || len(got) > 2*limit {
		t.Fatalf("after %d appends with JournalMax %d: %d records, want %d to %d (the newest kept)", len(recs), limit, len(got), limit, 2*limit)
	}
	checkNewestFirst(t, "the newest JournalMax records", got[:limit], recs[len(recs)-limit:])
}

// testJournalLongValues appends a record whose user agent, username and a
// custom field are long, as an attacker sends them, and reads it back cut
// as the harness declares (backend.Record.Bounded), or whole.
func testJournalLongValues(t *testing.T, e *env) {
	j := e.journal(t)
	long := strings.Repeat("é", 3000) // 6000 bytes
	in := backend.Record{
		Time: time.Now(), Outcome: "refused", Reason: "locked", IP: "192.0.2.1",
		Username: long, UserAgent: strings.Repeat("a", 5000),
		Fields: map[string]string{"tenant": "t1", "blob": long},
	}
	want := in
	if n := e.h.JournalRecordBytes; n > 0 {
		want, _ = in.Bounded(n)
	}
	e.appendRecs(t, j, "long", []backend.Record{in})
	got := readAll(t, e.ctx, j, "long", backend.Query{})
	if len(got) != 1 {
		t.Fatalf("%d records, want 1", len(got))
	}
	if d := sameRecord(got[0], want); d != "" {
		t.Errorf("a record with long values, the harness declaring a bound of %d bytes (0: none): %s", e.h.JournalRecordBytes, d)
	}
}

func testJournalRetention(t *testing.T, e *env) {
	j := e.journal(t)
	if e.h.JournalRetention <= 0 {
		t.Skip("the harness declares no JournalRetention")
	}
	keep, sweep := e.h.JournalRetention, e.h.JournalSweep
	t0 := time.Now()
	old := sampleRecords(t0, 3, "old")
	e.appendRecs(t, j, "ret", old)
	// Kept for the whole retention period: with fake time, on a clock that
	// stood still during the Append, until its last nanosecond.
	kept := t0.Add(keep - e.margin)
	if e.h.FakeTime && time.Now().Equal(t0) {
		kept = t0.Add(keep - 1)
	}
	sleepUntil(kept)
	got := readAll(t, e.ctx, j, "ret", backend.Query{})
	// Conclusive when the read was done before the retention ended.
	if !e.late(t, t0.Add(keep)) {
		checkNewestFirst(t, "before the retention ends", got, old)
	}
	// Gone one sweep after it.
	sleepUntil(t0.Add(keep + sweep + e.margin))
	fresh := sampleRecords(time.Now(), 2, "fresh")
	e.appendRecs(t, j, "ret", fresh)
	checkNewestFirst(t, "after the retention and a sweep", readAll(t, e.ctx, j, "ret", backend.Query{}), fresh)
}

func testJournalConcurrent(t *testing.T, e *env) {
	j := e.journal(t)
	const writers, batches, per = 4, 10, 4
	if e.journalMax() < writers*batches*per {
		t.Skipf("JournalMax %d < %d", e.journalMax(), writers*batches*per)
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				recs := sampleRecords(t0, per, fmt.Sprintf("w%d-b%d", w, b))
				if err := j.Append(e.ctx, "conc", recs); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Append: %v", err)
	}
	got := readAll(t, e.ctx, j, "conc", backend.Query{})
	if len(got) != writers*batches*per {
		t.Fatalf("%d records after concurrent appends, want %d", len(got), writers*batches*per)
	}
	// Each batch reads back in order (newest first), whatever the
	// interleaving of batches.
	pos := map[string][]int{}
	for i, r := range got {
		tag := r.UserAgent[len("agent 0/"):]
		pos[tag] = append(pos[tag], i)
		if len(pos[tag]) > 1 {
			prev := got[pos[tag][len(pos[tag])-2]]
			if !prev.Time.After(r.Time) {
				t.Errorf("batch %s: records out of order: %v before %v", tag, prev.Time, r.Time)
			}
		}
	}
	if len(pos) != writers*batches {
		t.Errorf("%d batches read back, want %d", len(pos), writers*batches)
	}
}

func testJournalContext(t *testing.T, e *env) {
	j := e.journal(t)
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if err := j.Append(ctx, "ctx", sampleRecords(time.Now(), 1, "c")); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a cancelled context: %v, want context.Canceled", err)
	}
	if _, _, err := j.Records(ctx, "ctx", backend.Query{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Records with a cancelled context: %v, want context.Canceled", err)
	}
}

func testJournalClose(t *testing.T, e *env) {
	j := e.journal(t)
	e.appendRecs(t, j, "closed", sampleRecords(time.Now(), 2, "c"))
	if err := e.b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(e.ctx, "closed", sampleRecords(time.Now(), 1, "c")); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	if recs, _, err := j.Records(e.ctx, "closed", backend.Query{}); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Records after Close: %d records, %v; want ErrClosed", len(recs), err)
	}
}
