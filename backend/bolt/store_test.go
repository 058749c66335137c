package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/go-lockout/lockout/backend"
)

// open opens a store in a temporary directory, closed when t ends.
func open(t testing.TB, opts *Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lockout.db")
	s, err := Open(path, 0o600, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, path
}

func do(t testing.TB, s backend.Backend, ops ...backend.Op) []backend.Result {
	t.Helper()
	res := make([]backend.Result, len(ops))
	if err := s.Do(context.Background(), ops, res); err != nil {
		t.Fatalf("Do: %v", err)
	}
	return res
}

// counts returns how many entries and expiry index entries the file holds,
// expired ones included.
func (s *Store) counts(t testing.TB) (entries, index int) {
	t.Helper()
	err := s.db.View(func(tx *bbolt.Tx) error {
		e, x, err := s.buckets(tx)
		if err != nil {
			return err
		}
		entries, index = e.Stats().KeyN, x.Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return entries, index
}

// txid returns the id of the last committed transaction.
func (s *Store) txid(t testing.TB) int {
	t.Helper()
	tx, err := s.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	return tx.ID()
}

// holdWriter starts a write transaction that blocks the committer until
// the returned function rolls it back.
func (s *Store) holdWriter(t testing.TB) (release func()) {
	t.Helper()
	tx, err := s.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { tx.Rollback() }) }
	t.Cleanup(release)
	return release
}

// waitQueued waits until n requests wait in the committer's queue.
func (s *Store) waitQueued(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", len(s.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReadsUseReadTransactions(t *testing.T) {
	s, _ := open(t, &Options{SweepInterval: -1})
	do(t, s, backend.IncrOp("a", 2, time.Hour), backend.IncrOp("zero", 1, time.Hour), backend.IncrOp("p", 1, backend.NoExpiry))
	do(t, s, backend.IncrOp("zero", -1, time.Hour))
	before, commits := s.txid(t), s.stats.commits.Load()
	tests := []struct {
		name string
		ops  []backend.Op
	}{
		{"exists", []backend.Op{backend.ExistsOp("a"), backend.ExistsOp("missing")}},
		{"incr 0", []backend.Op{backend.IncrOp("a", 0, time.Hour)}},
		{"decr of a counter at zero", []backend.Op{backend.IncrOp("zero", -1, time.Hour)}},
		{"decr of a missing key", []backend.Op{backend.IncrOp("missing", -1, time.Hour)}},
		{"delete of a missing key", []backend.Op{backend.DeleteOp("missing")}},
		{"expire of a missing key", []backend.Op{backend.ExpireOp("missing", time.Hour)}},
		{"persist a persisted key", []backend.Op{backend.ExpireOp("p", backend.NoExpiry)}},
	}
	for _, tc := range tests {
		do(t, s, tc.ops...)
		if got := s.txid(t); got != before {
			t.Errorf("%s: committed a transaction (txid %d -> %d)", tc.name, before, got)
		}
	}
	if got := s.stats.commits.Load(); got != commits {
		t.Errorf("read-only batches made %d commits", got-commits)
	}
	// A batch that needs a write after all still gets one.
	r := do(t, s, backend.ExistsOp("a"), backend.IncrOp("a", -1, time.Hour))
	if r[1].Value != 1 || s.txid(t) == before {
		t.Errorf("decrement: %+v, txid %d (was %d): want value 1 and a commit", r[1], s.txid(t), before)
	}
}

// TestGroupCommit checks that writers arriving during a commit share the
// next one, and that one caller's failure is isolated.
func TestGroupCommit(t *testing.T) {
	s, _ := open(t, &Options{SweepInterval: -1})
	// A corrupt entry makes every operation on key "bad" fail.
	err := s.db.Update(func(tx *bbolt.Tx) error {
		e, _, err := s.buckets(tx)
		if err != nil {
			return err
		}
		return e.Put(storedKey(nil, "bad"), []byte("garbage"))
	})
	if err != nil {
		t.Fatal(err)
	}

	const writers = 32
	release := s.holdWriter(t)
	c0 := s.stats.commits.Load()
	errs := make([]error, writers+1)
	var wg sync.WaitGroup
	for i := range writers + 1 {
		wg.Go(func() {
			ops := []backend.Op{backend.IncrOp("shared", 1, time.Hour), backend.IncrOp(fmt.Sprint("own/", i), 1, time.Hour)}
			if i == writers {
				ops = append(ops, backend.IncrOp("bad", 1, time.Hour))
			}
			errs[i] = s.Do(context.Background(), ops, make([]backend.Result, len(ops)))
		})
		if i == 0 {
			// The committer takes the first request and blocks on
			// bbolt's writer lock; the others queue behind it.
			for s.stats.commits.Load() == c0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	s.waitQueued(t, writers)
	release()
	wg.Wait()

	for i, err := range errs[:writers] {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if !errors.Is(errs[writers], errCorrupt) {
		t.Errorf("writer with a corrupt key: err = %v, want errCorrupt", errs[writers])
	}
	// One commit for the first writer, then one rolled back by the bad
	// request, then one for the other writers together.
	if got := s.stats.commits.Load() - c0; got != 3 {
		t.Errorf("%d commits for %d writers, want 3", got, writers+1)
	}
	// Nothing lost, nothing applied twice, nothing of the failed request.
	ops := []backend.Op{backend.ExistsOp("shared"), backend.ExistsOp(fmt.Sprint("own/", writers))}
	for i := range writers {
		ops = append(ops, backend.ExistsOp(fmt.Sprint("own/", i)))
	}
	r := do(t, s, ops...)
	if r[0].Value != writers {
		t.Errorf("shared = %d, want %d", r[0].Value, writers)
	}
	if r[1].Found {
		t.Errorf("the failed request's other key was applied: %+v", r[1])
	}
	for i, r := range r[2:] {
		if r.Value != 1 {
			t.Errorf("own/%d = %d, want 1", i, r.Value)
		}
	}
}

// TestCancelWhileQueued checks that a caller whose context ends while its
// write waits returns promptly, and that its queued request is skipped.
func TestCancelWhileQueued(t *testing.T) {
	s, _ := open(t, &Options{SweepInterval: -1})
	release := s.holdWriter(t)
	c0 := s.stats.commits.Load()
	first := make(chan error, 1)
	go func() {
		first <- s.Do(context.Background(), []backend.Op{backend.IncrOp("first", 1, time.Hour)}, make([]backend.Result, 1))
	}()
	for s.stats.commits.Load() == c0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Do(ctx, []backend.Op{backend.IncrOp("late", 1, time.Hour)}, make([]backend.Result, 1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("cancelled write returned after %v", took)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	r := do(t, s, backend.ExistsOp("first"), backend.ExistsOp("late"))
	if r[0].Value != 1 || r[1].Found {
		t.Errorf("first %+v, late %+v: want first applied, late skipped", r[0], r[1])
	}
}

func TestLongKeys(t *testing.T) {
	s, _ := open(t, &Options{SweepInterval: -1})
	long := func(c string, n int) string { return strings.Repeat(c, n) }
	keys := []string{
		long("a", maxRawKey), long("a", maxRawKey+1), long("a", maxRawKey+2),
		long("a", 40000), long("a", 40000) + "b", long("b", 100000),
		"short",
	}
	for i, k := range keys {
		if r := do(t, s, backend.IncrOp(k, int64(i+1), time.Hour))[0]; r.Value != int64(i+1) {
			t.Errorf("key %d (%d bytes) = %d, want %d", i, len(k), r.Value, i+1)
		}
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", keys},
		{long("a", maxRawKey+1), keys[1:5]},
		{long("a", 40000), keys[3:5]},
		{"b", keys[5:6]},
		{"s", keys[6:]},
		{long("a", 40001), nil},
	}
	for _, tc := range tests {
		got := map[string]bool{}
		for k, err := range s.Keys(context.Background(), tc.prefix) {
			if err != nil {
				t.Fatal(err)
			}
			got[k] = true
		}
		if len(got) != len(tc.want) {
			t.Errorf("Keys(%d-byte prefix): %d keys, want %d", len(tc.prefix), len(got), len(tc.want))
		}
		for _, k := range tc.want {
			if !got[k] {
				t.Errorf("Keys(%d-byte prefix) misses a %d-byte key", len(tc.prefix), len(k))
			}
		}
	}

	// A slot holding another key (what a hash collision would look like)
	// is an error, never another key's counter.
	victim := long("v", 1000)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		e, _, err := s.buckets(tx)
		if err != nil {
			return err
		}
		sk := storedKey(nil, victim)
		return e.Put(sk, encodeEntry(sk, long("w", 1000), entry{val: 42}))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []backend.Op{backend.ExistsOp(victim), backend.IncrOp(victim, 1, time.Hour)} {
		err := s.Do(context.Background(), []backend.Op{op}, make([]backend.Result, 1))
		if !errors.Is(err, errCorrupt) {
			t.Errorf("%s of a key whose slot holds another: err = %v, want errCorrupt", op.Kind, err)
		}
	}
}

// TestKeysChunks lists more keys than one read transaction reads, while
// deleting and adding keys between chunks.
func TestKeysChunks(t *testing.T) {
	s, _ := open(t, &Options{SweepInterval: -1})
	const n = 3*keysChunk + 17
	var ops []backend.Op
	for i := range n {
		ops = append(ops, backend.IncrOp(fmt.Sprintf("k/%04d", i), 1, time.Hour))
	}
	do(t, s, ops...)
	got := map[string]int{}
	i := 0
	for k, err := range s.Keys(context.Background(), "k/") {
		if err != nil {
			t.Fatal(err)
		}
		got[k]++
		if i == keysChunk-1 {
			// Delete the key the next chunk resumes after, and one
			// further on; add one beyond.
			do(t, s, backend.DeleteOp(k), backend.DeleteOp(fmt.Sprintf("k/%04d", n-1)), backend.IncrOp("k/9999", 1, time.Hour))
		}
		i++
	}
	for j := range n - 1 {
		if k := fmt.Sprintf("k/%04d", j); got[k] != 1 {
			t.Errorf("%s yielded %d times, want once", k, got[k])
		}
	}
	if got[fmt.Sprintf("k/%04d", n-1)] != 0 {
		t.Errorf("a key deleted before the scan reached it was yielded")
	}
}

func TestNewOverCallersDB(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "app.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := New(db, "lockout-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(db, "lockout-b", &Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	do(t, a, backend.IncrOp("k", 1, time.Hour))
	do(t, b, backend.IncrOp("k", 5, time.Hour))
	if r := do(t, a, backend.ExistsOp("k"))[0]; r.Value != 1 {
		t.Errorf("store a: k = %d, want 1 (stores in distinct buckets are distinct)", r.Value)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The DB is still open: Close did not close it.
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("app"))
		return err
	}); err != nil {
		t.Fatalf("using the DB after the stores closed: %v", err)
	}
	// A bucket that this package did not make is refused.
	db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("app")).Put([]byte("x"), []byte("y")) })
	if _, err := New(db, "app", nil); err == nil {
		t.Error("New over a foreign bucket: no error")
	}
	// Reopening an existing store's bucket keeps its keys.
	a, err = New(db, "lockout-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if r := do(t, a, backend.ExistsOp("k"))[0]; r.Value != 1 {
		t.Errorf("reopened store a: k = %d, want 1", r.Value)
	}
}

// TestCloseUnderLoad closes the store while writers and listers run: each
// call succeeds or returns ErrClosed, and Close returns.
func TestCloseUnderLoad(t *testing.T) {
	s, _ := open(t, &Options{SweepInterval: time.Millisecond})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				var err error
				if g%4 == 0 {
					for _, e := range s.Keys(context.Background(), "") {
						err = e
					}
				} else {
					err = s.Do(context.Background(), []backend.Op{backend.IncrOp(fmt.Sprint(g, "/", i), 1, time.Millisecond)}, make([]backend.Result, 1))
				}
				if errors.Is(err, backend.ErrClosed) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, err := s.Sweep(context.Background()); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Sweep after Close: %v, want ErrClosed", err)
	}
}
