package bolt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/go-lockout/lockout/backend"
)

// addKeys creates n keys named prefix/i with ttl.
func addKeys(t *testing.T, s *Store, prefix string, n int, ttl time.Duration) {
	t.Helper()
	ops := make([]backend.Op, n)
	for i := range ops {
		ops[i] = backend.IncrOp(fmt.Sprint(prefix, "/", i), 1, ttl)
	}
	do(t, s, ops...)
}

// TestSweeper runs the background sweeper on fake time: expired keys leave
// the file, live ones stay, and Close ends the sweeper (synctest.Test fails
// if a goroutine of the bubble outlives it).
func TestSweeper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(filepath.Join(t.TempDir(), "sweep.db"), 0o600, &Options{SweepInterval: time.Minute, SweepChunk: 10})
		if err != nil {
			t.Fatal(err)
		}
		addKeys(t, s, "short", 95, 30*time.Second)
		addKeys(t, s, "long", 5, time.Hour)
		addKeys(t, s, "forever", 3, backend.NoExpiry)
		// An Expire moves a key's index entry; a Delete removes it.
		do(t, s, backend.ExpireOp("short/0", time.Hour), backend.ExpireOp("long/0", 10*time.Second), backend.DeleteOp("short/1"))
		if e, x := s.counts(t); e != 102 || x != 99 {
			t.Fatalf("before expiry: %d entries, %d index entries; want 102, 99", e, x)
		}

		time.Sleep(59 * time.Second) // expired, but not swept yet
		synctest.Wait()
		if e, _ := s.counts(t); e != 102 {
			t.Errorf("before the first sweep: %d entries, want 102", e)
		}
		if r := do(t, s, backend.ExistsOp("short/2"))[0]; r.Found {
			t.Errorf("an expired key exists before it is swept: %+v", r)
		}

		tx0 := s.txid(t)
		time.Sleep(2 * time.Second) // the sweeper ran at 1 min
		synctest.Wait()
		if n := s.txid(t) - tx0; n != 10 {
			t.Errorf("the sweep of 94 keys took %d transactions, want 10 (chunks of 10)", n)
		}
		// 93 short keys and long/0 expired; short/0 lives on.
		if e, x := s.counts(t); e != 102-94 || x != 99-94 {
			t.Errorf("after a sweep: %d entries, %d index entries; want %d, %d", e, x, 102-94, 99-94)
		}
		got := map[string]bool{}
		for k, err := range s.Keys(context.Background(), "") {
			if err != nil {
				t.Fatal(err)
			}
			got[k] = true
		}
		for _, k := range []string{"short/0", "long/1", "long/4", "forever/0", "forever/2"} {
			if !got[k] {
				t.Errorf("live key %s was swept", k)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSweepChunks checks that a sweep removes expired keys in transactions
// of at most SweepChunk keys.
func TestSweepChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := open(t, &Options{SweepInterval: -1, SweepChunk: 10})
		addKeys(t, s, "x", 25, time.Second)
		addKeys(t, s, "y", 3, time.Hour)
		time.Sleep(2 * time.Second)
		for i, want := range []struct {
			n    int
			more bool
		}{{10, true}, {10, true}, {5, false}, {0, false}} {
			n, more, err := s.sweepChunk(s.opts.SweepChunk)
			if err != nil || n != want.n || more != want.more {
				t.Errorf("chunk %d: removed %d, more %v, err %v; want %d, %v", i, n, more, err, want.n, want.more)
			}
		}
		addKeys(t, s, "z", 25, time.Second)
		time.Sleep(2 * time.Second)
		c0 := s.txid(t)
		n, err := s.Sweep(context.Background())
		if err != nil || n != 25 {
			t.Errorf("Sweep: removed %d, err %v; want 25", n, err)
		}
		if tx := s.txid(t) - c0; tx != 3 {
			t.Errorf("Sweep of 25 keys took %d transactions, want 3", tx)
		}
		if e, x := s.counts(t); e != 3 || x != 3 {
			t.Errorf("after sweeping: %d entries, %d index entries; want 3, 3", e, x)
		}
	})
}

// storeGoroutines counts the running goroutines of every store.
func storeGoroutines() (committers, sweepers int) {
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	return strings.Count(stacks, "bolt.(*Store).commitLoop("), strings.Count(stacks, "bolt.(*Store).sweepLoop(")
}

// TestCloseStopsGoroutines checks, in real time, that Close ends the
// store's goroutines.
func TestCloseStopsGoroutines(t *testing.T) {
	c0, s0 := storeGoroutines()
	s, err := Open(filepath.Join(t.TempDir(), "g.db"), 0o600, &Options{SweepInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	addKeys(t, s, "k", 10, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	if c, sw := storeGoroutines(); c != c0+1 || sw != s0+1 {
		t.Errorf("open store: %d committers, %d sweepers running; want %d, %d", c, sw, c0+1, s0+1)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close returns once the goroutines have signalled their end (their
	// deferred WaitGroup.Done), which can be a moment before their frames
	// leave the stack dump: allow them that moment, not more.
	deadline := time.Now().Add(time.Second)
	for {
		c, sw := storeGoroutines()
		if c == c0 && sw == s0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("a second after Close: %d committers, %d sweepers running; want %d, %d", c, sw, c0, s0)
			break
		}
		time.Sleep(time.Millisecond)
	}
}

// checkIndex fails unless the expiry index holds exactly one entry for
// every entry with an expiry, and nothing else.
func (s *Store) checkIndex(t *testing.T) {
	t.Helper()
	err := s.db.View(func(tx *bbolt.Tx) error {
		entries, expiry, err := s.buckets(tx)
		if err != nil {
			return err
		}
		want := map[string]bool{}
		err = entries.ForEach(func(k, v []byte) error {
			e, err := decodeEntry(k, v, "")
			if err != nil {
				return err
			}
			if e.exp != 0 {
				want[string(indexKey(e.exp, k))] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		n := 0
		err = expiry.ForEach(func(k, _ []byte) error {
			n++
			if !want[string(k)] {
				t.Errorf("stray index entry %x", k)
			}
			return nil
		})
		if n != len(want) {
			t.Errorf("%d index entries, want %d", n, len(want))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestExpiryIndexExact applies random operations, on fake time, and checks
// that the expiry index always matches the entries exactly.
func TestExpiryIndexExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := open(t, &Options{SweepInterval: 7 * time.Second, SweepChunk: 3})
		rng := rand.New(rand.NewPCG(1, 2))
		ttls := []time.Duration{time.Second, 5 * time.Second, backend.NoExpiry}
		for round := range 200 {
			var ops []backend.Op
			for range 1 + rng.IntN(6) {
				k := fmt.Sprint("k", rng.IntN(12))
				ttl := ttls[rng.IntN(len(ttls))]
				switch rng.IntN(5) {
				case 0:
					ops = append(ops, backend.IncrOp(k, 1, ttl))
				case 1:
					ops = append(ops, backend.IncrOp(k, -1, ttl))
				case 2:
					ops = append(ops, backend.ExpireOp(k, ttl))
				case 3:
					ops = append(ops, backend.DeleteOp(k))
				case 4:
					ops = append(ops, backend.ExistsOp(k))
				}
			}
			do(t, s, ops...)
			if round%10 == 0 {
				s.checkIndex(t)
			}
			time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
		}
		s.checkIndex(t)
	})
}

// TestCommitAfterBurst: after a burst of keys (an attacker's spray of
// usernames) has been swept, the file holds many free pages; a commit must
// not write their list (bbolt's NoFreelistSync), or every later write pays
// for the whole burst (a review measured logins 8 times slower after a
// burst of a million usernames, until the file was compacted).
func TestCommitAfterBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(filepath.Join(t.TempDir(), "burst.db"), 0o600, &Options{SweepInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for i := range 10 {
			addKeys(t, s, fmt.Sprint("spray", i), 10_000, time.Minute)
		}
		time.Sleep(2 * time.Minute)
		if n, err := s.Sweep(context.Background()); err != nil || n != 100_000 {
			t.Fatalf("Sweep: %d keys, %v; want 100000", n, err)
		}
		st := s.db.Stats()
		free := st.FreePageN + st.PendingPageN
		if free < 1000 {
			t.Fatalf("%d free pages after the sweep: the test needs a burst that frees more", free)
		}
		before := st.TxStats.GetPageAlloc()
		do(t, s, backend.IncrOp("alice", 1, time.Minute))
		after := s.db.Stats()
		written := after.TxStats.GetPageAlloc() - before
		// A commit of one key writes a few pages of the tree; the list of
		// free pages would be 8 bytes per page more.
		if written >= int64(free)*8/2 {
			t.Errorf("one commit allocated %d bytes with %d pages free: the free list is written", written, free)
		}
		t.Logf("%d pages free; one commit allocated %d bytes", free, written)
	})
}

// TestSweepFullFile fills a file to MaxSize with keys sprayed in random
// order (an attacker's usernames) that then expire: the sweep must free
// their space, though deleting needs new pages too (bbolt copies every
// page it changes) and a full file has only a few free. A sweep of 1000
// scattered keys failed with ErrFull at every run, so the file stayed full
// for good: 100 of 100 new keys refused after five sweeps.
func TestSweepFullFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := open(t, &Options{MaxSize: 1 << 20, SweepInterval: -1})
		rnd := rand.New(rand.NewPCG(1, 2))
		sprayed := 0
		for batch := 100; ; {
			ops := make([]backend.Op, batch)
			for i := range ops {
				ops[i] = backend.IncrOp(fmt.Sprintf("lockout:a:username:{u=%016x}", rnd.Uint64()), 1, time.Minute)
			}
			err := s.Do(context.Background(), ops, make([]backend.Result, len(ops)))
			if errors.Is(err, backend.ErrFull) && batch > 1 {
				batch = 1
				continue
			}
			if errors.Is(err, backend.ErrFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			sprayed += batch
			time.Sleep(time.Millisecond) // each batch expires in turn
		}
		t.Logf("%d keys sprayed", sprayed)
		time.Sleep(2 * time.Minute)
		tx0 := s.txid(t)
		n, err := s.Sweep(context.Background())
		t.Logf("swept in %d transactions", s.txid(t)-tx0)
		if err != nil || n != sprayed {
			t.Errorf("Sweep of a full file: %d keys of %d removed, err %v", n, sprayed, err)
		}
		refused := 0
		for i := range 100 {
			if _, err := backend.Do1(context.Background(), s, backend.IncrOp(fmt.Sprint("new/", i), 1, time.Hour)); err != nil {
				refused++
			}
		}
		if refused > 0 {
			t.Errorf("after the sweep, %d of 100 new keys refused", refused)
		}
	})
}
