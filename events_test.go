package lockout_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
)

// recorder is an Observer that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []lockout.Event
}

func (r *recorder) Observe(_ context.Context, e lockout.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// take returns the events heard since the last take.
func (r *recorder) take() []lockout.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

func kinds(evs []lockout.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Kind.String())
	}
	return out
}

// TestEvents walks a subject through every event a policy reports, and
// checks what each carries.
func TestEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		store := &switchStore{Backend: newStore(t)}
		p, err := lockout.New(store, lockout.Config{
			Rules:    []lockout.Rule{{Fields: []lockout.Field{lockout.Username, lockout.IP}, Limit: 2, Window: time.Hour, Schedule: lockout.Fixed(time.Minute)}},
			Observer: rec,
			Logger:   discard,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ctx := context.Background()
		alice := lockout.Subject{Username: "Alice", IP: "::ffff:192.0.2.7", UserAgent: "ua/1", Fields: map[string]string{"tenant": "t1"}}
		want := lockout.Subject{Username: "alice", IP: "192.0.2.7", UserAgent: "ua/1", Fields: map[string]string{"tenant": "t1"}}
		same := func(step string, got lockout.Subject) {
			t.Helper()
			if got.Username != want.Username || got.IP != want.IP || got.UserAgent != want.UserAgent || !maps.Equal(got.Fields, want.Fields) {
				t.Errorf("%s: subject %+v, want %+v", step, got, want)
			}
		}
		check := func(step string, wantKinds ...string) []lockout.Event {
			t.Helper()
			evs := rec.take()
			if got := kinds(evs); !slices.Equal(got, wantKinds) {
				t.Fatalf("%s: events %v, want %v", step, got, wantKinds)
			}
			for _, e := range evs {
				if e.Time.IsZero() {
					t.Errorf("%s: %v event without a time", step, e.Kind)
				}
			}
			return evs
		}

		a, err := p.Allow(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		same("admitted", check("Allow", "admitted")[0].Subject)
		a.Success(ctx)
		same("success", check("Success", "success")[0].Subject)

		for range 2 {
			a, err := p.Allow(ctx, alice)
			if err != nil {
				t.Fatal(err)
			}
			a.Failure(ctx)
		}
		evs := check("two failures", "admitted", "failure", "admitted", "failure", "lockout")
		lock := evs[4]
		same("lockout", lock.Subject)
		if lock.Rule != "username+ip" || lock.Key != "u=alice,ip=192.0.2.7" || lock.Duration != time.Minute || lock.Count != 1 || lock.Fallback {
			t.Errorf("lockout event %+v", lock)
		}

		_, err = p.Allow(ctx, alice)
		var refused *lockout.RefusedError
		if !errors.As(err, &refused) {
			t.Fatalf("Allow after the lockout: %v", err)
		}
		r := check("refused", "refused")[0]
		same("refused", r.Subject)
		if r.Reason != lockout.ReasonLocked || r.Rule != "username+ip" || r.Key != lock.Key || r.RetryAfter <= 0 || r.RetryAfter > time.Minute {
			t.Errorf("refused event %+v", r)
		}

		opCtx := lockout.WithOperator(ctx, "ops@example.com", "api")
		if err := p.Unlock(opCtx, alice); err != nil {
			t.Fatal(err)
		}
		u := check("Unlock", "unlock")[0]
		same("unlock", u.Subject)
		if u.Operator != "ops@example.com" || u.Via != "api" {
			t.Errorf("unlock event: operator %q via %q", u.Operator, u.Via)
		}
		if err := p.Reset(ctx, alice); err != nil {
			t.Fatal(err)
		}
		if r := check("Reset", "reset")[0]; r.Operator != "" || r.Via != "" {
			t.Errorf("reset without an operator: %q via %q", r.Operator, r.Via)
		}

		// UnlockKey: the event carries the key's fields.
		for range 2 {
			a, _ := p.Allow(ctx, alice)
			a.Failure(ctx)
		}
		rec.take()
		var key string
		for l, err := range p.Locks(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			key = l.Key
		}
		if err := p.UnlockKey(lockout.WithOperator(ctx, "root", "cli"), key); err != nil {
			t.Fatal(err)
		}
		uk := check("UnlockKey", "unlock")[0]
		if uk.Rule != "username+ip" || uk.Key != "u=alice,ip=192.0.2.7" || uk.Subject.Username != "alice" || uk.Subject.IP != "192.0.2.7" || uk.Operator != "root" || uk.Via != "cli" {
			t.Errorf("UnlockKey event %+v", uk)
		}

		// Degraded mode starts and ends.
		store.mode.Store(down)
		a, err = p.Allow(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		a.Success(ctx)
		evs = check("store down", "degraded", "admitted", "success")
		if !errors.Is(evs[0].Err, errBroken) || !evs[1].Fallback {
			t.Errorf("degraded events %+v", evs)
		}
		store.mode.Store(up)
		time.Sleep(2 * lockout.DefaultProbeInterval)
		p.Allow(ctx, lockout.Subject{Username: "bob", IP: "192.0.2.8"}) // drives the probe
		time.Sleep(lockout.DefaultProbeInterval)
		synctest.Wait()
		if evs := rec.take(); !slices.Contains(kinds(evs), "recovered") {
			t.Errorf("store up again: events %v, want recovered among them", kinds(evs))
		}
	})
}

// TestEventKindString names every kind, and no other.
func TestEventKindString(t *testing.T) {
	for k := lockout.EventKind(0); k < 20; k++ {
		name := k.String()
		known := k >= lockout.EventAdmitted && k <= lockout.EventJournalUnrecorded
		if known == (name == "unknown") {
			t.Errorf("EventKind(%d).String() = %q", k, name)
		}
	}
}

// journalPolicy returns a policy over a fresh memory store with a journal,
// and the store.
func journalPolicy(t *testing.T, cfg lockout.Config) (*lockout.Policy, *memory.Store) {
	t.Helper()
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if cfg.Rules == nil {
		cfg.Rules = []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(100)}
	}
	if cfg.Journal == nil {
		cfg.Journal = &lockout.JournalConfig{}
	}
	cfg.Logger = discard
	p, err := lockout.New(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, s
}

// TestJournal records attempts, a lockout, refusals and an operator's
// unlock, and reads them back through Policy.Attempts by each filter.
func TestJournal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := journalPolicy(t, lockout.Config{})
		ctx := context.Background()
		alice := lockout.Subject{Username: "alice", IP: "192.0.2.1", UserAgent: "curl/8"}
		bob := lockout.Subject{Username: "bob", IP: "192.0.2.2"}
		a, _ := p.Allow(ctx, bob)
		a.Success(ctx)
		for range 3 {
			a, err := p.Allow(ctx, alice)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			a.Failure(ctx)
		}
		if _, err := p.Allow(ctx, alice); err == nil {
			t.Fatal("alice admitted after 3 failures")
		}
		if err := p.Unlock(lockout.WithOperator(ctx, "ops@example.com", "http"), lockout.Subject{Username: "ALICE"}); err != nil {
			t.Fatal(err)
		}
		if err := p.SyncJournal(ctx); err != nil { // the writer has written the queue
			t.Fatal(err)
		}

		all, next, err := p.Attempts(ctx, lockout.AttemptQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if next != "" {
			t.Errorf("cursor %q after every record", next)
		}
		var got []string
		for _, r := range all {
			got = append(got, r.Outcome+":"+r.Username)
		}
		wantAll := []string{"unlock:alice", "refused:alice", "lockout:alice", "failure:alice", "failure:alice", "failure:alice", "success:bob"}
		if !slices.Equal(got, wantAll) {
			t.Fatalf("journal %v, want %v", got, wantAll)
		}
		if u := all[0]; u.Operator != "ops@example.com" || u.Via != "http" {
			t.Errorf("unlock record: operator %q via %q", u.Operator, u.Via)
		}
		if r := all[1]; r.Reason != "locked" || r.Rule != "username" || r.Key != "u=alice" || r.UserAgent != "curl/8" || r.IP != "192.0.2.1" {
			t.Errorf("refused record %+v", r)
		}
		if l := all[2]; l.Rule != "username" || l.Duration <= 0 || l.IP != "192.0.2.1" {
			t.Errorf("lockout record %+v", l)
		}
		for _, tc := range []struct {
			q    lockout.AttemptQuery
			want int
		}{
			{lockout.AttemptQuery{Username: "Alice"}, 6}, // canonicalised
			{lockout.AttemptQuery{IP: "::ffff:192.0.2.1"}, 5},
			{lockout.AttemptQuery{Outcome: "failure"}, 3},
			{lockout.AttemptQuery{Username: "bob", Outcome: "success"}, 1},
			{lockout.AttemptQuery{Username: "carol"}, 0},
		} {
			recs, _, err := p.Attempts(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != tc.want {
				t.Errorf("Attempts(%+v): %d records, want %d", tc.q, len(recs), tc.want)
			}
		}
		// Pages of two, newest first, cover everything once.
		var paged []string
		q := lockout.AttemptQuery{Limit: 2}
		for {
			recs, next, err := p.Attempts(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				paged = append(paged, r.Outcome+":"+r.Username)
			}
			if next == "" {
				break
			}
			q.Before = next
		}
		if !slices.Equal(paged, wantAll) {
			t.Errorf("pages of 2: %v, want %v", paged, wantAll)
		}
		if _, _, err := p.Attempts(ctx, lockout.AttemptQuery{IP: "not an ip"}); !errors.Is(err, lockout.ErrInvalidSubject) {
			t.Errorf("Attempts with a bad IP: %v", err)
		}
		if st := p.JournalStats(); st.Written != 7 || st.Dropped != 0 {
			t.Errorf("JournalStats %+v, want 7 written", st)
		}
	})
}

// TestJournalHashKey keeps keyed hashes instead of usernames and IPs:
// no record holds the plain values, and lookups still work.
func TestJournalHashKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, s := journalPolicy(t, lockout.Config{Journal: &lockout.JournalConfig{HashKey: []byte("0123456789abcdef")}})
		ctx := context.Background()
		for range 4 {
			if a, err := p.Allow(ctx, lockout.Subject{Username: "alice", IP: "192.0.2.1"}); err == nil {
				a.Failure(ctx)
			}
		}
		if err := p.SyncJournal(ctx); err != nil {
			t.Fatal(err)
		}
		raw, _, err := s.Records(ctx, lockout.DefaultPrefix, backend.Query{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != 5 { // 3 failures, the lockout, a refusal
			t.Fatalf("%d records, want 5", len(raw))
		}
		for _, r := range raw {
			s := fmt.Sprintf("%+v", r)
			for _, plain := range []string{"alice", "192.0.2.1"} {
				if contains(s, plain) {
					t.Errorf("record holds %q: %s", plain, s)
				}
			}
			if len(r.Username) != 32 || len(r.IP) != 32 {
				t.Errorf("record's username %q and IP %q: want 32 hex digits each", r.Username, r.IP)
			}
		}
		recs, _, err := p.Attempts(ctx, lockout.AttemptQuery{Username: "ALICE", IP: "192.0.2.1"})
		if err != nil || len(recs) != 5 {
			t.Errorf("Attempts by hashed username and IP: %d records, %v; want 5", len(recs), err)
		}
		if _, err := lockout.New(newStore(t), lockout.Config{Rules: benchRules(3), Journal: &lockout.JournalConfig{HashKey: []byte("short")}}); err == nil {
			t.Error("a 5-byte HashKey is accepted")
		}
	})
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// stuckJournal is a journal store whose Append waits until released.
type stuckJournal struct {
	release chan struct{}
	appends chan int
}

func (j *stuckJournal) Append(ctx context.Context, _ string, recs []backend.Record) error {
	j.appends <- len(recs)
	select {
	case <-j.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (j *stuckJournal) Records(context.Context, string, backend.Query) ([]backend.Record, string, error) {
	return nil, "", nil
}

// TestJournalNeverBlocks fills the journal's queue behind a store that
// does not answer: decisions go on at once, the overflow is counted and
// reported.
func TestJournalNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &stuckJournal{release: make(chan struct{}), appends: make(chan int, 100)}
		rec := &recorder{}
		p, _ := journalPolicy(t, lockout.Config{
			Rules:    []lockout.Rule{lockout.ByUsername(1 << 20)},
			Journal:  &lockout.JournalConfig{Store: j, Queue: 8},
			Observer: rec,
		})
		ctx := context.Background()
		start := time.Now()
		for i := range 1000 {
			a, err := p.Allow(ctx, lockout.Subject{Username: fmt.Sprint("u", i)})
			if err != nil {
				t.Fatal(err)
			}
			a.Failure(ctx)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("1000 decisions took %v of fake time behind a stuck journal, want 0", d)
		}
		synctest.Wait()
		st := p.JournalStats()
		// The queue holds 8, and the writer's stuck Append one batch of up
		// to 256, depending on when the writer took them.
		if st.Dropped < 1000-8-256 || st.Dropped > 1000-8 || st.Written != 0 {
			t.Errorf("JournalStats %+v after 1000 records behind a stuck store with a queue of 8", st)
		}
		var dropped int64
		for _, e := range rec.take() {
			if e.Kind == lockout.EventJournalDropped {
				dropped += e.Count
			}
		}
		if dropped == 0 {
			t.Error("no journal_dropped event")
		}
		// Reports come at most every 10 s: the writer reports the rest
		// of the burst at its next tick, with no new drop to wake it.
		time.Sleep(11 * time.Second)
		synctest.Wait()
		for _, e := range rec.take() {
			if e.Kind == lockout.EventJournalDropped {
				dropped += e.Count
				// The stuck Append's timeout, 5 s in: the tick names it.
				if e.Err == nil {
					t.Errorf("the periodic journal_dropped report has no error, after a store call that timed out")
				}
			}
		}
		// (The stuck Append has timed out meanwhile: its batch is
		// dropped too.)
		if st := p.JournalStats(); dropped != int64(st.Dropped) {
			t.Errorf("journal_dropped events count %d records after 11 s, JournalStats.Dropped %d", dropped, st.Dropped)
		}
		close(j.release)
	})
}

// TestJournalNeedsStore: a store that keeps no journal is an error,
// unless the journal goes to another store.
func TestJournalNeedsStore(t *testing.T) {
	_, err := lockout.New(brokenStore{}, lockout.Config{Rules: benchRules(3), Journal: &lockout.JournalConfig{}})
	if !errors.Is(err, backend.ErrUnsupported) {
		t.Errorf("journal on a store without one: %v, want ErrUnsupported", err)
	}
	js, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer js.Close()
	p, err := lockout.New(brokenStore{}, lockout.Config{Rules: benchRules(3), Journal: &lockout.JournalConfig{Store: js}})
	if err != nil {
		t.Fatalf("journal in another store: %v", err)
	}
	p.Close()
	if _, _, err := p.Attempts(context.Background(), lockout.AttemptQuery{}); !errors.Is(err, lockout.ErrClosed) {
		t.Errorf("Attempts after Close: %v", err)
	}
	q, _ := lockout.New(newStore(t), lockout.Config{Rules: benchRules(3)})
	defer q.Close()
	if _, _, err := q.Attempts(context.Background(), lockout.AttemptQuery{}); !errors.Is(err, lockout.ErrNoJournal) {
		t.Errorf("Attempts without a journal: %v", err)
	}
}

// TestJournalCopiesFields: the caller may reuse its Fields map as soon as
// a decision returns; the journal, written later, keeps what it held.
func TestJournalCopiesFields(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := journalPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByFields(100, lockout.Username, "tenant")}})
		ctx := context.Background()
		fields := map[string]string{"tenant": "t1"}
		a, err := p.Allow(ctx, lockout.Subject{Username: "alice", Fields: fields})
		if err != nil {
			t.Fatal(err)
		}
		a.Failure(ctx)
		fields["tenant"] = "t2" // before the writer has run
		if err := p.SyncJournal(ctx); err != nil {
			t.Fatal(err)
		}
		recs, _, err := p.Attempts(ctx, lockout.AttemptQuery{})
		if err != nil || len(recs) != 1 || recs[0].Fields["tenant"] != "t1" {
			t.Errorf("journal: %+v, %v; want one record of tenant t1", recs, err)
		}
	})
}

// TestJournalOrderConcurrent: records are written in the order they were
// queued, so each goroutine's records keep the order it made them in,
// whichever queue shards they went through (under the race detector,
// sync.Pool drops the shard tokens at random: goroutines change shards).
func TestJournalOrderConcurrent(t *testing.T) {
	const goroutines, each = 8, 300
	p, _ := journalPolicy(t, lockout.Config{
		Rules:   []lockout.Rule{lockout.ByUsername(1 << 20), lockout.ByIP(1 << 20)},
		Journal: &lockout.JournalConfig{Queue: goroutines * each},
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				a, err := p.Allow(ctx, lockout.Subject{Username: fmt.Sprint("g", g), Fields: map[string]string{"n": fmt.Sprint(i)}})
				if err != nil {
					t.Error(err)
					return
				}
				a.Failure(ctx)
				if i%50 == 0 {
					runtime.Gosched()
				}
			}
		})
	}
	wg.Wait()
	if err := p.SyncJournal(ctx); err != nil {
		t.Fatal(err)
	}
	last := map[string]int{} // per goroutine, the last n seen, newest first
	total, before := 0, ""
	for {
		recs, next, err := p.Attempts(ctx, lockout.AttemptQuery{Before: before, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			n, _ := strconv.Atoi(r.Fields["n"])
			if prev, ok := last[r.Username]; ok && n >= prev {
				t.Fatalf("%s: record %d after %d, newest first: out of order", r.Username, n, prev)
			}
			last[r.Username] = n
			total++
		}
		if next == "" {
			break
		}
		before = next
	}
	if st := p.JournalStats(); total != goroutines*each || st.Dropped != 0 {
		t.Errorf("%d records read, stats %+v; want %d, none dropped", total, st, goroutines*each)
	}
}

// keepJournal is a journal store that keeps every record it is given as
// it is, with no bound of its own.
type keepJournal struct {
	mu   sync.Mutex
	recs []backend.Record
}

func (j *keepJournal) Append(_ context.Context, _ string, recs []backend.Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.recs = append(j.recs, recs...)
	return nil
}

func (j *keepJournal) Records(context.Context, string, backend.Query) ([]backend.Record, string, error) {
	return nil, "", nil
}

// TestJournalRecordBytes: a client's long user agent or custom field is
// cut before its record is queued (JournalConfig.RecordBytes), so that
// the queue's memory is bounded whatever clients send, even for a store
// that bounds nothing; short values stay whole.
func TestJournalRecordBytes(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		name  string
		bytes int
		limit int // 0: no cut
	}{
		{"default", 0, lockout.DefaultJournalRecordBytes},
		{"1 KiB", 1024, 1024},
		{"unbounded", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				j := &keepJournal{}
				p, _ := journalPolicy(t, lockout.Config{
					Rules:   []lockout.Rule{lockout.ByUsername(100)},
					Journal: &lockout.JournalConfig{Store: j, RecordBytes: tc.bytes},
				})
				ctx := context.Background()
				a, err := p.Allow(ctx, lockout.Subject{Username: "alice", IP: "192.0.2.1", UserAgent: long, Fields: map[string]string{"blob": long}})
				if err != nil {
					t.Fatal(err)
				}
				a.Failure(ctx)
				if err := p.SyncJournal(ctx); err != nil {
					t.Fatal(err)
				}
				j.mu.Lock()
				defer j.mu.Unlock()
				if len(j.recs) != 1 {
					t.Fatalf("%d records, want 1", len(j.recs))
				}
				r := j.recs[0]
				if r.Username != "alice" || r.IP != "192.0.2.1" || r.Outcome != "failure" {
					t.Errorf("short values changed: %q %q %q", r.Username, r.IP, r.Outcome)
				}
				total := len(r.Outcome) + len(r.Username) + len(r.IP) + len(r.UserAgent) + len(r.Fields["blob"])
				switch {
				case tc.limit == 0 && (r.UserAgent != long || r.Fields["blob"] != long):
					t.Errorf("unbounded: values cut to %d and %d bytes", len(r.UserAgent), len(r.Fields["blob"]))
				case tc.limit != 0 && (total > tc.limit || total < tc.limit-8):
					t.Errorf("values add up to %d bytes, want about %d", total, tc.limit)
				}
			})
		})
	}
}

// TestJournalRecordBytesLeast: a bound below backend.MinRecordBytes would
// cut the short values an operator filters by (the outcome, the rule);
// New refuses it.
func TestJournalRecordBytesLeast(t *testing.T) {
	for _, n := range []int{1, 10, backend.MinRecordBytes - 1} {
		p, err := lockout.New(newStore(t), lockout.Config{Rules: benchRules(3), Journal: &lockout.JournalConfig{RecordBytes: n}})
		if err == nil {
			p.Close()
			t.Errorf("New with RecordBytes %d succeeded", n)
		}
	}
}

// TestJournalRefusedBound floods a locked username with refusals from one
// address: the journal records at most that address's part of
// RefusedBurst and RefusedPerSecond (a sixteenth), counts the others,
// and still records every outcome, and the refusals of a client whose
// address falls in another part. Refusals from many addresses are
// bounded by RefusedBurst in all.
func TestJournalRefusedBound(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   lockout.JournalConfig
		first int // the flood's refusals recorded
		later int // of 100 more, 100 s later
		many  int // at most, of 10 refusals from each of 2,000 addresses
	}{
		{"default", lockout.JournalConfig{Queue: 1 << 15}, 1000 / 16, 6, 1000},
		{"set", lockout.JournalConfig{Queue: 1 << 15, RefusedPerSecond: 16, RefusedBurst: 160}, 10, 10, 160},
		{"unbounded", lockout.JournalConfig{Queue: 1 << 15, RefusedPerSecond: -1}, 5000, 100, 20000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := tc.cfg
				rule := lockout.ByUsername(1)
				rule.Schedule = lockout.Fixed(time.Hour)
				rec := &recorder{}
				p, _ := journalPolicy(t, lockout.Config{Rules: []lockout.Rule{rule}, Journal: &cfg, Observer: rec})
				// reported sums the journal_unrecorded events so far.
				var reported int64
				unreported := func() int64 {
					for _, e := range rec.take() {
						if e.Kind == lockout.EventJournalUnrecorded {
							reported += e.Count
						}
					}
					return int64(p.JournalStats().Unrecorded) - reported
				}
				ctx := context.Background()
				attacker := lockout.Subject{Username: "alice", IP: "192.0.2.66"}
				if a, err := p.Allow(ctx, attacker); err != nil {
					t.Fatal(err)
				} else {
					a.Failure(ctx) // locks alice for an hour
				}
				refuse := func(s lockout.Subject, n int) {
					t.Helper()
					for range n {
						if _, err := p.Allow(ctx, s); !errors.Is(err, lockout.ErrRefused) {
							t.Fatalf("Allow(%v) = %v, want a refusal", s, err)
						}
					}
				}
				count := func(q lockout.AttemptQuery) (refused, failures int) {
					t.Helper()
					if err := p.SyncJournal(ctx); err != nil {
						t.Fatal(err)
					}
					q.Limit = 1000
					for {
						recs, next, err := p.Attempts(ctx, q)
						if err != nil {
							t.Fatal(err)
						}
						for _, r := range recs {
							switch r.Outcome {
							case "refused":
								refused++
							case "failure":
								failures++
							}
						}
						if next == "" {
							return refused, failures
						}
						q.Before = next
					}
				}
				refuse(attacker, 5000)
				bob := lockout.Subject{Username: "bob"}
				a, err := p.Allow(ctx, bob)
				if err != nil {
					t.Fatal(err)
				}
				a.Failure(ctx)
				if refused, failures := count(lockout.AttemptQuery{}); refused != tc.first || failures != 2 {
					t.Errorf("after 5000 refusals: %d refusals and %d failures recorded, want %d and 2", refused, failures, tc.first)
				}
				if st := p.JournalStats(); st.Unrecorded != uint64(5000-tc.first) || st.Dropped != 0 {
					t.Errorf("JournalStats %+v, want %d unrecorded, none dropped", st, 5000-tc.first)
				}
				// Reported at the writer's next tick (10 s), not at once.
				if n := unreported(); n != int64(5000-tc.first) {
					t.Errorf("at once: %d refusals not recorded and not reported, want all %d", n, 5000-tc.first)
				}
				time.Sleep(10 * time.Second)
				synctest.Wait()
				if n := unreported(); n != 0 {
					t.Errorf("10 s on: %d refusals not recorded and not reported (journal_unrecorded), want 0", n)
				}
				// alice herself, from an address of another part.
				victim := lockout.Subject{Username: "alice"}
				for i := 1; ; i++ {
					victim.IP = fmt.Sprintf("198.51.100.%d", i)
					if part := lockout.RefusedPart(p, attacker); part < 0 || lockout.RefusedPart(p, victim) != part {
						break
					}
				}
				refuse(attacker, 1000)
				refuse(victim, 10)
				if refused, _ := count(lockout.AttemptQuery{IP: victim.IP}); refused != 10 {
					t.Errorf("alice from %s, during the flood from %s: %d of her 10 refusals recorded", victim.IP, attacker.IP, refused)
				}
				time.Sleep(100 * time.Second)
				before, _ := count(lockout.AttemptQuery{IP: attacker.IP})
				refuse(attacker, 100)
				if after, _ := count(lockout.AttemptQuery{IP: attacker.IP}); after-before != tc.later {
					t.Errorf("100 s later, 100 refusals: %d recorded, want %d", after-before, tc.later)
				}
				// Many addresses: at most the whole bound.
				time.Sleep(time.Hour / 2)
				before, _ = count(lockout.AttemptQuery{})
				for i := range 2000 {
					refuse(lockout.Subject{Username: "alice", IP: fmt.Sprintf("10.0.%d.%d", i>>8, i&255)}, 10)
				}
				if after, _ := count(lockout.AttemptQuery{}); after-before > tc.many {
					t.Errorf("20,000 refusals from 2,000 addresses: %d recorded, want at most %d", after-before, tc.many)
				}
				time.Sleep(10 * time.Second)
				synctest.Wait()
				if n := unreported(); n != 0 {
					t.Errorf("at the end: %d refusals not recorded and not reported, want 0", n)
				}
			})
		})
	}
}

// TestJournalAfterClose reports attempts admitted before Close after it:
// their records are counted as dropped, none is lost uncounted.
func TestJournalAfterClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := journalPolicy(t, lockout.Config{})
		ctx := context.Background()
		var attempts []*lockout.Attempt
		for i := range 10 {
			a, err := p.Allow(ctx, lockout.Subject{Username: fmt.Sprint("u", i)})
			if err != nil {
				t.Fatal(err)
			}
			attempts = append(attempts, a)
		}
		attempts[0].Failure(ctx)
		p.Close()
		before := p.JournalStats()
		if before.Written != 1 || before.Dropped != 0 {
			t.Fatalf("JournalStats %+v after Close, want 1 written", before)
		}
		for _, a := range attempts[1:] {
			a.Failure(ctx)
		}
		if st := p.JournalStats(); st.Written != 1 || st.Dropped != 9 {
			t.Errorf("JournalStats %+v after 9 failures reported after Close, want 1 written, 9 dropped", st)
		}
	})
}
