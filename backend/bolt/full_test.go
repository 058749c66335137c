package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// fill creates keys "fill/N" in batches of batch until the store is full,
// and returns the keys it acknowledged.
func fill(t *testing.T, s *Store, from, batch int) []string {
	t.Helper()
	var keys []string
	for i := from; ; i += batch {
		var ops []backend.Op
		for j := range batch {
			ops = append(ops, backend.IncrOp(fmt.Sprintf("fill/%07d", i+j), int64(i+j+1), time.Hour))
		}
		err := s.Do(context.Background(), ops, make([]backend.Result, len(ops)))
		if errors.Is(err, backend.ErrFull) && batch > 1 {
			batch = 1 // fill what is left one key at a time
			i -= batch
			continue
		}
		if errors.Is(err, backend.ErrFull) {
			t.Logf("full after %d new keys: %v", len(keys), err)
			return keys
		}
		if err != nil {
			t.Fatalf("filling: %v", err)
		}
		for _, op := range ops {
			keys = append(keys, op.Key)
		}
		if i > 10_000_000 {
			t.Fatal("the store never got full")
		}
	}
}

func TestMaxSize(t *testing.T) {
	const maxSize = 1 << 20
	s, path := open(t, &Options{MaxSize: maxSize, SweepInterval: -1})
	keys := fill(t, s, 0, 100)
	if len(keys) == 0 {
		t.Fatal("no key fitted")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > maxSize {
		t.Errorf("file size %d, beyond MaxSize %d", fi.Size(), maxSize)
	}
	// A single new key no longer fits either, and is not applied.
	err = s.Do(context.Background(), []backend.Op{backend.IncrOp("one more", 1, time.Hour)}, make([]backend.Result, 1))
	if !errors.Is(err, backend.ErrFull) {
		t.Errorf("one more key: err = %v, want ErrFull", err)
	}

	// Every acknowledged key still reads correctly.
	checkKeys := func(what string, keys []string, delta int64) {
		t.Helper()
		ops := make([]backend.Op, len(keys))
		for i, k := range keys {
			ops[i] = backend.ExistsOp(k)
		}
		for i, r := range do(t, s, ops...) {
			var n int64
			fmt.Sscanf(keys[i], "fill/%d", &n)
			if !r.Found || r.Value != n+1+delta {
				t.Fatalf("%s: %s = %+v, want value %d", what, keys[i], r, n+1+delta)
			}
		}
	}
	checkKeys("when full", keys, 0)
	if r := do(t, s, backend.ExistsOp("one more"))[0]; r.Found {
		t.Errorf("the key that did not fit exists: %+v", r)
	}

	// Existing keys can still be incremented and deleted one call at a
	// time, in the pages earlier transactions freed.
	some := keys[:50]
	for _, k := range some {
		var r [1]backend.Result
		if err := s.Do(context.Background(), []backend.Op{backend.IncrOp(k, 1, time.Hour)}, r[:]); err != nil {
			t.Fatalf("incr of existing %s when full: %v", k, err)
		}
	}
	checkKeys("after increments", some, 1)
	for _, k := range keys[len(keys)-50:] {
		if r := do(t, s, backend.DeleteOp(k))[0]; !r.Found {
			t.Fatalf("delete of %s when full: not found", k)
		}
	}
	keys = keys[:len(keys)-50]

	// Deleting made room: new keys fit again, until the store is full.
	more := fill(t, s, 5_000_000, 10)
	if len(more) == 0 {
		t.Error("no new key fitted after deleting 50")
	}

	// Concurrent callers on a full store: those that need more space get
	// ErrFull, the others are unaffected, even if they shared a
	// transaction with one that did not fit.
	const callers = 16
	var wg sync.WaitGroup
	errs := make([]error, callers)
	release := s.holdWriter(t)
	c0 := s.stats.commits.Load()
	for g := range callers {
		if g == 1 {
			// The first caller's request is taken alone; make the others
			// queue behind it, to share the next transaction.
			for s.stats.commits.Load() == c0 {
				time.Sleep(time.Millisecond)
			}
		}
		wg.Go(func() {
			var ops []backend.Op
			if g%2 == 0 {
				ops = append(ops, backend.IncrOp(keys[g], 1, time.Hour))
			} else {
				for j := range 200 {
					ops = append(ops, backend.IncrOp(fmt.Sprintf("new/%d/%d", g, j), 1, time.Hour))
				}
			}
			errs[g] = s.Do(context.Background(), ops, make([]backend.Result, len(ops)))
		})
	}
	s.waitQueued(t, callers-1)
	release()
	wg.Wait()
	t.Logf("%d commits for %d callers", s.stats.commits.Load()-c0, callers)
	for g, err := range errs {
		if g%2 == 0 && err != nil {
			t.Errorf("caller %d (increment of an existing key): %v", g, err)
		}
		if g%2 == 1 && !errors.Is(err, backend.ErrFull) {
			t.Errorf("caller %d (200 new keys): err = %v, want ErrFull", g, err)
		}
	}
	for g := 0; g < callers; g += 2 {
		if r := do(t, s, backend.ExistsOp(keys[g]))[0]; r.Value != int64(g)+2+1 {
			t.Errorf("%s = %d after one more increment, want %d", keys[g], r.Value, g+3)
		}
	}

	// Reopened, the full file reads the same.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, 0o600, &Options{MaxSize: maxSize, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkKeys("after reopening", keys[callers:50], 1)
	checkKeys("after reopening", keys[50:], 0)
}
