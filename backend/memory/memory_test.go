package memory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/go-lockout/lockout/backend"
)

func newStore(t testing.TB, opts *Options) *Store {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func do(t testing.TB, s *Store, ops ...backend.Op) []backend.Result {
	t.Helper()
	res := make([]backend.Result, len(ops))
	if err := s.Do(context.Background(), ops, res); err != nil {
		t.Fatalf("Do(%d ops, first %s %q): %v", len(ops), ops[0].Kind, ops[0].Key, err)
	}
	return res
}

func do1(t testing.TB, s *Store, op backend.Op) backend.Result { return do(t, s, op)[0] }

// try applies one operation and returns its error.
func try(s *Store, op backend.Op) (backend.Result, error) {
	return backend.Do1(context.Background(), s, op)
}

// fill creates keys prefix+0 .. prefix+n-1, each holding value(i), in
// batches of 1000.
func fill(t testing.TB, s *Store, prefix string, n int, ttl time.Duration, value func(i int) int64) {
	t.Helper()
	ops := make([]backend.Op, 0, 1000)
	for i := range n {
		ops = append(ops, backend.IncrOp(fmt.Sprint(prefix, i), value(i), ttl))
		if len(ops) == cap(ops) || i == n-1 {
			do(t, s, ops...)
			ops = ops[:0]
		}
	}
}

func one(int) int64 { return 1 }

// wantLen fails the test unless s holds want keys.
func wantLen(t testing.TB, s *Store, want int) {
	t.Helper()
	if got := s.Len(); got != want {
		t.Fatalf("Len = %d, want %d", got, want)
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    *Options
		wantErr bool
		maxKeys int64
		sweep   time.Duration
	}{
		{"nil", nil, false, DefaultMaxKeys, DefaultSweepInterval},
		{"zero", &Options{}, false, DefaultMaxKeys, DefaultSweepInterval},
		{"set", &Options{MaxKeys: 7, SweepInterval: time.Minute}, false, 7, time.Minute},
		{"ReclaimDelay ignored", &Options{ReclaimDelay: -time.Second}, false, DefaultMaxKeys, DefaultSweepInterval},
		{"negative MaxKeys", &Options{MaxKeys: -1}, true, 0, 0},
		{"negative SweepInterval", &Options{SweepInterval: -time.Second}, true, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.opts)
			if tc.wantErr {
				if err == nil {
					s.Close()
					t.Fatal("New succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.maxKeys != tc.maxKeys || s.sweepIv != tc.sweep {
				t.Errorf("maxKeys %d, sweep interval %v; want %d, %v", s.maxKeys, s.sweepIv, tc.maxKeys, tc.sweep)
			}
		})
	}
}

// TestNoEviction inserts many keys, and checks that the first ones are all
// still there with their exact values.
func TestNoEviction(t *testing.T) {
	const early, others = 1000, 200_000
	s := newStore(t, nil)
	fill(t, s, "early/", early, time.Hour, func(i int) int64 { return int64(i + 1) })
	fill(t, s, "spray/", others, time.Hour, one)
	wantLen(t, s, early+others)
	ops := make([]backend.Op, early)
	for i := range ops {
		ops[i] = backend.ExistsOp(fmt.Sprint("early/", i))
	}
	for i, r := range do(t, s, ops...) {
		if !r.Found || r.Value != int64(i+1) {
			t.Fatalf("early/%d after %d more keys: %+v, want value %d", i, others, r, i+1)
		}
	}
	for i := 0; i < others; i += 997 {
		if r := do1(t, s, backend.ExistsOp(fmt.Sprint("spray/", i))); !r.Found || r.Value != 1 {
			t.Fatalf("spray/%d: %+v, want value 1", i, r)
		}
	}
}

func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestCapBoundsMemory sprays a million distinct keys at a store capped at
// 100,000: the keys past the cap are refused with ErrFull, the memory
// stays what the cap's keys take, and the keys held keep working.
func TestCapBoundsMemory(t *testing.T) {
	const maxKeys, spray = 100_000, 1_000_000
	// Some 70 bytes per key measured for these 7-byte keys (map slot and
	// the key's copy), up to twice that depending on how full the maps
	// happen to be; a store that kept every sprayed key would need ten
	// times the cap's memory.
	const maxBytesPerKey = 200
	h0 := heapAlloc()
	s := newStore(t, &Options{MaxKeys: maxKeys})
	fill(t, s, "k/", maxKeys, time.Hour, func(i int) int64 { return int64(i%7 + 1) })
	h1 := heapAlloc()
	perKey := (int64(h1) - int64(h0)) / maxKeys
	t.Logf("heap for %d keys: %d bytes (%d per key)", maxKeys, int64(h1)-int64(h0), perKey)
	if perKey > maxBytesPerKey {
		t.Errorf("%d bytes per key, want at most %d", perKey, maxBytesPerKey)
	}

	// Past the cap every creation fails, one op per call so that each is
	// checked; existing keys still take increments in between.
	ctx := context.Background()
	ops := make([]backend.Op, 1)
	res := make([]backend.Result, 1)
	buf := []byte("spray/")
	extra := map[int]int64{}
	for i := maxKeys; i < spray; i++ {
		buf = strconv.AppendInt(buf[:len("spray/")], int64(i), 10)
		ops[0] = backend.IncrOp(string(buf), 1, time.Hour)
		if err := s.Do(ctx, ops, res); !errors.Is(err, backend.ErrFull) {
			t.Fatalf("creating key %d of a store capped at %d: err = %v, want ErrFull", i, maxKeys, err)
		}
		if i%10_007 == 0 {
			k := i % maxKeys
			extra[k]++
			if r := do1(t, s, backend.IncrOp(fmt.Sprint("k/", k), 1, time.Hour)); !r.Found {
				t.Fatalf("incr of an existing key after ErrFull: %+v", r)
			}
		}
	}
	h2 := heapAlloc()
	t.Logf("heap after %d refused keys: %+d bytes", spray-maxKeys, int64(h2)-int64(h1))
	if grew := int64(h2) - int64(h1); grew > 4<<20 {
		t.Errorf("heap grew by %d bytes while refusing keys, want under 4 MiB", grew)
	}
	wantLen(t, s, maxKeys)
	const batch = 1000
	check := make([]backend.Op, batch)
	for base := 0; base < maxKeys; base += batch {
		for j := range check {
			check[j] = backend.ExistsOp(fmt.Sprint("k/", base+j))
		}
		for j, r := range do(t, s, check...) {
			k := base + j
			if want := int64(k%7+1) + extra[k]; !r.Found || r.Value != want {
				t.Fatalf("k/%d: %+v, want value %d", k, r, want)
			}
		}
	}
	runtime.KeepAlive(s)
}

// TestCloseRace runs traffic of every kind from 100 goroutines and closes
// the store in the middle: nothing panics, every error is ErrClosed, and
// every call that starts after Close has returned fails with it.
func TestCloseRace(t *testing.T) {
	s, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, "k/", 1000, time.Hour, one)
	var closed atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 100 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			ctx := context.Background()
			res := make([]backend.Result, 4)
			for i := 0; ; i++ {
				after := closed.Load()
				var err error
				if i%50 == 49 {
					for _, err = range s.Keys(ctx, "k/1") {
						if err != nil {
							break
						}
					}
				} else {
					k := fmt.Sprint("k/", rng.IntN(1000))
					ops := []backend.Op{
						backend.IncrOp(k, 1, time.Hour),
						backend.IncrOp(fmt.Sprintf("new/%d/%d", g, i), 1, time.Hour),
						backend.ExpireOp(k, []time.Duration{time.Hour, backend.NoExpiry}[i%2]),
						[]backend.Op{backend.ExistsOp(k), backend.DeleteOp(k)}[rng.IntN(2)],
					}
					err = s.Do(ctx, ops, res)
				}
				switch {
				case err != nil && !errors.Is(err, backend.ErrClosed):
					errs <- fmt.Errorf("goroutine %d call %d: %w", g, i, err)
					return
				case err == nil && after:
					errs <- fmt.Errorf("goroutine %d call %d: succeeded after Close returned", g, i)
					return
				case err != nil:
					return
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	closed.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := try(s, backend.ExistsOp("k/1")); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Exists after Close: %v, want ErrClosed", err)
	}
	wantLen(t, s, 0)
}

// TestKeysClosedMidway closes the store while a Keys iteration is yielding.
func TestKeysClosedMidway(t *testing.T) {
	s := newStore(t, nil)
	fill(t, s, "k/", 100, time.Hour, one)
	n := 0
	var last error
	for _, err := range s.Keys(context.Background(), "") {
		if err != nil {
			last = err
			break
		}
		if n++; n == 10 {
			s.Close()
		}
	}
	if n != 10 || !errors.Is(last, backend.ErrClosed) {
		t.Errorf("yielded %d keys then %v; want 10 keys then ErrClosed", n, last)
	}
}

// TestKeysRechecksExpiry shortens the TTL of keys that Keys has already
// collected (one hash tag: one shard) and lets them expire: they are not
// yielded.
func TestKeysRechecksExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStore(t, nil)
		const n = 10
		for i := range n {
			do1(t, s, backend.IncrOp(fmt.Sprintf("{tag}/%d", i), 1, time.Hour))
		}
		var got []string
		for k, err := range s.Keys(context.Background(), "{tag}/") {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, k)
			if len(got) == 1 {
				for i := range n {
					if k := fmt.Sprintf("{tag}/%d", i); k != got[0] {
						do1(t, s, backend.ExpireOp(k, time.Millisecond))
					}
				}
				time.Sleep(time.Millisecond)
			}
		}
		if len(got) != 1 {
			t.Errorf("Keys yielded %q, want only the first key: the others expired during the iteration", got)
		}
	})
}

// TestCloseStopsSweeper closes a store inside a synctest bubble: the bubble
// can end only if the sweeper's goroutine has exited.
func TestCloseStopsSweeper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(&Options{SweepInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		do1(t, s, backend.IncrOp("k", 1, time.Millisecond))
		time.Sleep(10 * time.Millisecond)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSweeperReclaims lets keys expire and checks that the sweeper,
// driven by its ticker on the fake clock, reclaims them, and only them.
func TestSweeperReclaims(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxKeys = 100
		// Sweeps at 56 s and 63 s; the short keys expire at 60 s.
		s := newStore(t, &Options{MaxKeys: maxKeys, SweepInterval: 7 * time.Second})
		fill(t, s, "short/", maxKeys/2, time.Minute, one)
		fill(t, s, "long/", maxKeys/2, time.Hour, one)
		if _, err := try(s, backend.IncrOp("one more", 1, time.Minute)); !errors.Is(err, backend.ErrFull) {
			t.Fatalf("creating key %d: err = %v, want ErrFull", maxKeys+1, err)
		}
		time.Sleep(62 * time.Second)
		synctest.Wait()
		wantLen(t, s, maxKeys) // expired, not swept yet
		time.Sleep(time.Second)
		synctest.Wait()
		wantLen(t, s, maxKeys/2)
		for i := range maxKeys / 2 {
			if r := do1(t, s, backend.ExistsOp(fmt.Sprint("long/", i))); !r.Found || r.Value != 1 {
				t.Fatalf("long/%d after the sweep: %+v", i, r)
			}
		}
		fill(t, s, "again/", maxKeys/2, time.Minute, one)
		wantLen(t, s, maxKeys)
	})
}

// TestFullReclaimsExpired lets keys expire in a full store whose sweeper
// will not run for an hour: creating keys reclaims the expired ones
// instead of failing, and never a live one.
func TestFullReclaimsExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxKeys = 100
		s := newStore(t, &Options{MaxKeys: maxKeys, SweepInterval: time.Hour})
		fill(t, s, "short/", maxKeys/2, time.Minute, one)
		fill(t, s, "long/", maxKeys/2, 3*time.Hour, one)
		time.Sleep(2 * time.Minute)
		wantLen(t, s, maxKeys)
		fill(t, s, "new/", maxKeys/2, time.Minute, one)
		wantLen(t, s, maxKeys)
		if _, err := try(s, backend.IncrOp("one more", 1, time.Minute)); !errors.Is(err, backend.ErrFull) {
			t.Errorf("creating one more: err = %v, want ErrFull", err)
		}
		for i := range maxKeys / 2 {
			if r := do1(t, s, backend.ExistsOp(fmt.Sprint("long/", i))); !r.Found || r.Value != 1 {
				t.Fatalf("long/%d after the reclaim: %+v", i, r)
			}
		}
	})
}

// TestRecreateExpiredWhenFull re-creates, in a store full of one expired
// key, that key, then fails to create another.
func TestRecreateExpiredWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStore(t, &Options{MaxKeys: 1, SweepInterval: time.Hour})
		do1(t, s, backend.IncrOp("k", 1, time.Millisecond))
		time.Sleep(50 * time.Millisecond)
		r, err := try(s, backend.IncrOp("k", 1, time.Minute))
		if err != nil {
			t.Fatalf("re-creating k in a full store: %v", err)
		}
		if r.Value != 1 || r.TTL != time.Minute {
			t.Errorf("re-created k = %+v, want a fresh counter at 1 for a minute", r)
		}
		wantLen(t, s, 1)
		if _, err := try(s, backend.IncrOp("j", 1, time.Minute)); !errors.Is(err, backend.ErrFull) {
			t.Errorf("creating j: err = %v, want ErrFull", err)
		}
	})
}

// TestExpiredRemovedOnAccess touches an expired key with each kind of
// operation: it reads as missing and its place is reclaimed at once.
func TestExpiredRemovedOnAccess(t *testing.T) {
	tests := []struct {
		op   backend.Op
		want backend.Result
	}{
		{backend.ExistsOp("k"), backend.Result{}},
		{backend.IncrOp("k", 0, time.Hour), backend.Result{}},
		{backend.IncrOp("k", -1, time.Hour), backend.Result{}},
		{backend.ExpireOp("k", time.Hour), backend.Result{}},
		{backend.DeleteOp("k"), backend.Result{}},
		{backend.IncrOp("k", 3, time.Hour), backend.Result{Found: true, Value: 3, TTL: time.Hour}},
	}
	for _, tc := range tests {
		t.Run(tc.op.Kind.String()+"/"+strconv.FormatInt(tc.op.Delta, 10), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newStore(t, &Options{SweepInterval: time.Hour})
				do(t, s, backend.IncrOp("k", 5, time.Second), backend.IncrOp("other", 1, time.Hour))
				time.Sleep(time.Second)
				r := do1(t, s, tc.op)
				r.Expires = 0 // on the store's clock: checked by the conformance suite
				if r != tc.want {
					t.Errorf("%s of an expired key: %+v, want %+v", tc.op.Kind, r, tc.want)
				}
				wantLen(t, s, 1+int(tc.want.Value)/3)
			})
		})
	}
}

// TestCountIsExact follows Len through creations, deletions, give-backs
// to zero, expiries and re-creations.
func TestCountIsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxKeys = 50
		s := newStore(t, &Options{MaxKeys: maxKeys, SweepInterval: time.Minute})
		fill(t, s, "short/", 30, 10*time.Second, one)
		fill(t, s, "long/", 20, time.Hour, one)
		wantLen(t, s, 50)
		if _, err := try(s, backend.IncrOp("x", 1, time.Hour)); !errors.Is(err, backend.ErrFull) {
			t.Fatalf("creating key 51: err = %v, want ErrFull", err)
		}
		// Operations that create nothing.
		do(t, s,
			backend.IncrOp("missing", 0, time.Hour),
			backend.IncrOp("missing", -1, time.Hour),
			backend.ExpireOp("missing", time.Hour),
			backend.DeleteOp("missing"),
			backend.ExistsOp("missing"),
		)
		wantLen(t, s, 50)
		for i := range 10 {
			k := fmt.Sprint("long/", i)
			do(t, s, backend.ExpireOp(k, backend.NoExpiry), backend.ExpireOp(k, 2*time.Hour), backend.IncrOp(k, 1, time.Hour))
		}
		wantLen(t, s, 50)
		for i := range 5 {
			if r := do1(t, s, backend.DeleteOp(fmt.Sprint("long/", 10+i))); !r.Found {
				t.Fatalf("delete long/%d: not found", 10+i)
			}
		}
		wantLen(t, s, 45)
		// A give-back to zero removes the key.
		if r := do1(t, s, backend.IncrOp("long/15", -1, time.Hour)); r.Found {
			t.Fatalf("long/15 given back to zero: %+v, want removed", r)
		}
		wantLen(t, s, 44)
		fill(t, s, "new/", 6, time.Hour, one)
		wantLen(t, s, 50)
		// short/0 is lengthened before it expires: it must survive.
		do1(t, s, backend.ExpireOp("short/0", time.Hour))

		// The short keys expire. Re-creating one replaces it: the count
		// holds.
		time.Sleep(10*time.Second + 500*time.Millisecond)
		wantLen(t, s, 50)
		if r := do1(t, s, backend.IncrOp("short/1", 5, time.Hour)); r.Value != 5 {
			t.Fatalf("re-created short/1 = %d, want 5", r.Value)
		}
		wantLen(t, s, 50)
		// The sweeper reclaims the other 28.
		time.Sleep(time.Minute)
		synctest.Wait()
		wantLen(t, s, 22)
		for k, v := range map[string]int64{"short/0": 1, "short/1": 5, "long/0": 2, "long/19": 1, "new/5": 1} {
			if r := do1(t, s, backend.ExistsOp(k)); !r.Found || r.Value != v {
				t.Errorf("%s: %+v, want value %d", k, r, v)
			}
		}
		fill(t, s, "more/", 28, time.Hour, one)
		wantLen(t, s, 50)
		if _, err := try(s, backend.IncrOp("y", 1, time.Hour)); !errors.Is(err, backend.ErrFull) {
			t.Fatalf("creating key 51: err = %v, want ErrFull", err)
		}
	})
}

// TestSlidingExpiry keeps lengthening a key's TTL, in small and large
// steps, while the sweeper runs many times: the key must keep its value
// until it is left to expire, and then be reclaimed.
func TestSlidingExpiry(t *testing.T) {
	for _, sweep := range []time.Duration{time.Millisecond, DefaultSweepInterval, time.Minute} {
		t.Run(sweep.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newStore(t, &Options{SweepInterval: sweep})
				do1(t, s, backend.IncrOp("k", 7, 10*time.Second))
				for i := range 61 {
					time.Sleep(time.Duration(1+i%9) * time.Second)
					ttl := 10 * time.Second
					if i%10 == 9 {
						ttl = backend.NoExpiry
					}
					r := do1(t, s, backend.ExpireOp("k", ttl))
					if !r.Found || r.Value != 7 {
						t.Fatalf("step %d: expire: %+v, want value 7", i, r)
					}
				}
				time.Sleep(10*time.Second - time.Nanosecond)
				if r := do1(t, s, backend.ExistsOp("k")); !r.Found || r.Value != 7 || r.TTL != 1 {
					t.Fatalf("a nanosecond before the last TTL: %+v, want value 7", r)
				}
				time.Sleep(time.Nanosecond)
				if r := do1(t, s, backend.ExistsOp("k")); r.Found {
					t.Fatalf("after the last TTL: %+v, want missing", r)
				}
				wantLen(t, s, 0) // the Exists removed it
			})
		})
	}
}

// TestExpireUnderLoad switches one key between NoExpiry and a TTL as fast
// as it can while other goroutines read, increment and list it: none may
// ever miss it, and no increment may be lost.
func TestExpireUnderLoad(t *testing.T) {
	s := newStore(t, &Options{SweepInterval: time.Millisecond})
	do1(t, s, backend.IncrOp("k", 1, time.Hour))
	fill(t, s, "other/", 1000, time.Hour, one)
	var stop atomic.Bool
	var incrs atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				var op backend.Op
				switch i % 3 {
				case 0:
					op = backend.ExistsOp("k")
				case 1:
					op = backend.IncrOp("k", 1, time.Hour)
				case 2:
					if g == 0 && i%30 == 2 {
						found := false
						for k, err := range s.Keys(context.Background(), "k") {
							if err != nil {
								errs <- err
								return
							}
							found = found || k == "k"
						}
						if !found {
							errs <- errors.New("Keys missed k")
							return
						}
					}
					continue
				}
				r, err := try(s, op)
				if err != nil {
					errs <- err
					return
				}
				if !r.Found {
					errs <- fmt.Errorf("%s missed k", op.Kind)
					return
				}
				if op.Kind == backend.Incr {
					incrs.Add(1)
				}
			}
		})
	}
	for i := range 1500 {
		ttl := time.Hour
		if i%2 == 0 {
			ttl = backend.NoExpiry
		}
		if r := do1(t, s, backend.ExpireOp("k", ttl)); !r.Found {
			t.Fatalf("expire %d: key missing", i)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if r := do1(t, s, backend.ExistsOp("k")); r.Value != 1+incrs.Load() {
		t.Errorf("k = %d after %d increments, want %d", r.Value, incrs.Load(), 1+incrs.Load())
	}
	wantLen(t, s, 1001)
}

// TestOverlappingBatches runs batches that create and increment random
// keys in random order, so that batches need shards below ones they hold:
// no deadlock, no lost increment.
func TestOverlappingBatches(t *testing.T) {
	s := newStore(t, nil)
	const pool, goroutines, calls, perCall = 2000, 8, 200, 40
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			ops := make([]backend.Op, perCall)
			res := make([]backend.Result, perCall)
			for range calls {
				for i := range ops {
					k := fmt.Sprint("k/", rng.IntN(pool))
					if i%10 == 9 {
						ops[i] = backend.ExpireOp(k, []time.Duration{time.Hour, backend.NoExpiry}[rng.IntN(2)])
						continue
					}
					ops[i] = backend.IncrOp(k, 1, time.Hour)
				}
				if err := s.Do(context.Background(), ops, res); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ops := make([]backend.Op, pool)
	for i := range ops {
		ops[i] = backend.ExistsOp(fmt.Sprint("k/", i))
	}
	var total int64
	for _, r := range do(t, s, ops...) {
		total += r.Value
	}
	if want := int64(goroutines * calls * perCall * 9 / 10); total != want {
		t.Errorf("total = %d, want %d", total, want)
	}
}

// TestReclaimRace fills a store with short-lived keys, lets them expire,
// and has goroutines create keys in batches over many shards while the
// sweeper runs: the reclaims of a full store, which take shards beyond
// those a batch holds, never deadlock, and the cap holds throughout.
func TestReclaimRace(t *testing.T) {
	const maxKeys, goroutines, perCall = 2000, 8, 16
	s := newStore(t, &Options{MaxKeys: maxKeys, SweepInterval: 5 * time.Millisecond})
	var wg sync.WaitGroup
	var created atomic.Int64
	errs := make(chan error, goroutines)
	deadline := time.Now().Add(300 * time.Millisecond)
	for g := range goroutines {
		wg.Go(func() {
			ops := make([]backend.Op, perCall)
			res := make([]backend.Result, perCall)
			for i := 0; time.Now().Before(deadline); i++ {
				for j := range ops {
					ops[j] = backend.IncrOp(fmt.Sprintf("k/%d/%d/%d", g, i, j), 1, time.Millisecond)
				}
				err := s.Do(context.Background(), ops, res)
				if err != nil && !errors.Is(err, backend.ErrFull) {
					errs <- err
					return
				}
				if err == nil {
					created.Add(perCall)
				}
				if n := s.Len(); n > maxKeys {
					errs <- fmt.Errorf("Len = %d, over MaxKeys %d", n, maxKeys)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d keys created in batches of %d, a cap of %d", created.Load(), perCall, maxKeys)
	if created.Load() <= maxKeys {
		t.Errorf("%d keys created: expired keys were not reclaimed", created.Load())
	}
}

// TestBigBatch creates many keys in one batch and touches each again later
// in the same batch.
func TestBigBatch(t *testing.T) {
	s := newStore(t, nil)
	const n = 3000
	var ops []backend.Op
	for i := range n {
		ops = append(ops, backend.IncrOp(fmt.Sprint("k/", i), 1, time.Hour))
	}
	for i := range n {
		k := fmt.Sprint("k/", i)
		switch i % 4 {
		case 0:
			ops = append(ops, backend.IncrOp(k, 2, time.Hour))
		case 1:
			ops = append(ops, backend.ExistsOp(k))
		case 2:
			ops = append(ops, backend.ExpireOp(k, backend.NoExpiry))
		case 3:
			ops = append(ops, backend.DeleteOp(k), backend.IncrOp(k, 5, time.Hour))
		}
	}
	res := do(t, s, ops...)
	for i := range n {
		if r := res[i]; !r.Found || r.Value != 1 {
			t.Fatalf("create k/%d: %+v", i, r)
		}
	}
	for i := range n {
		r := do1(t, s, backend.ExistsOp(fmt.Sprint("k/", i)))
		want := []int64{3, 1, 1, 5}[i%4]
		if !r.Found || r.Value != want {
			t.Errorf("k/%d: %+v, want value %d", i, r, want)
		}
		if (i%4 == 2) != (r.TTL == backend.NoExpiry) {
			t.Errorf("k/%d: TTL %v", i, r.TTL)
		}
	}
	wantLen(t, s, n)
}

func TestAddClamped(t *testing.T) {
	const maxI = 1<<63 - 1
	tests := []struct{ v, d, want int64 }{
		{0, 1, 1},
		{5, -2, 3},
		{5, -9, 0},
		{0, -1 << 62, 0},
		{maxI - 1, 1, maxI},
		{maxI - 1, 5, maxI},
		{maxI, maxI, maxI},
	}
	for _, tc := range tests {
		if got := addClamped(tc.v, tc.d); got != tc.want {
			t.Errorf("addClamped(%d, %d) = %d, want %d", tc.v, tc.d, got, tc.want)
		}
	}
}

// TestLayout checks the sizes the comments promise: a 16-byte entry, a
// 32-byte cell, and shards on separate cache lines.
func TestLayout(t *testing.T) {
	if size := unsafe.Sizeof(entry{}); size != 16 {
		t.Errorf("entry takes %d bytes, want 16", size)
	}
	if size := unsafe.Sizeof(cell{}); size != 32 {
		t.Errorf("cell takes %d bytes, want 32", size)
	}
	if size := unsafe.Sizeof(shard{}); size%64 != 0 {
		t.Errorf("shard takes %d bytes, want a multiple of 64", size)
	}
}

// TestTagsShareShard checks that keys of one hash tag land in one shard
// (AtomicTags relies on it), and that keys without a tag spread.
func TestTagsShareShard(t *testing.T) {
	s := newStore(t, nil)
	th := placer{s: s}
	want := th.place("{user:alice}").shard
	for _, k := range []string{"a/{user:alice}", "lock/{user:alice}/x", "{user:alice}{other}", "user:alice"} {
		fresh := placer{s: s}
		if got := fresh.place(k).shard; got != want {
			t.Errorf("shard of %q = %d, want %d (that of its tag)", k, got, want)
		}
		if got := th.place(k).shard; got != want {
			t.Errorf("shard of %q after another key = %d, want %d", k, got, want)
		}
	}
	seen := map[uint8]bool{}
	for i := range 1000 {
		seen[th.place(fmt.Sprint("k/", i)).shard] = true
	}
	if len(seen) < numShards/2 {
		t.Errorf("1000 keys fell into %d shards, want them spread over most of %d", len(seen), numShards)
	}
}

// TestKeyForms works keys short and long, with NUL bytes, and keys that
// are prefixes of each other.
func TestKeyForms(t *testing.T) {
	const n = 63
	long := strings.Repeat("x", n)
	keys := []string{
		"a", "a\x00", "a\x00\x00", "\x00", "\x00a",
		long[:n-1], long, long + "x", long + "\x00", long + long,
		long[:n-1] + "\x00",
	}
	s := newStore(t, &Options{MaxKeys: len(keys)})
	for i, k := range keys {
		if r := do1(t, s, backend.IncrOp(k, int64(i+1), time.Hour)); r.Value != int64(i+1) {
			t.Fatalf("creating %q: %+v, want a new key", k, r)
		}
	}
	wantLen(t, s, len(keys))
	for i, k := range keys {
		if r := do(t, s, backend.IncrOp(k, 10, time.Hour), backend.ExpireOp(k, backend.NoExpiry))[0]; r.Value != int64(i+11) {
			t.Errorf("incr %q: %+v, want %d", k, r, i+11)
		}
	}
	got := map[string]bool{}
	for k, err := range s.Keys(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		got[k] = true
	}
	for i, k := range keys {
		if !got[k] {
			t.Errorf("Keys missed %q", k)
		}
		if r := do1(t, s, backend.ExistsOp(k)); r.Value != int64(i+11) || r.TTL != backend.NoExpiry {
			t.Errorf("%q: %+v, want %d without expiry", k, r, i+11)
		}
		if r := do1(t, s, backend.IncrOp(k, -int64(i+11), time.Hour)); r.Found {
			t.Errorf("%q given back to zero: %+v, want removed", k, r)
		}
	}
	wantLen(t, s, 0)
}

// TestKeyNotShared checks that the store keeps its own copy of a key: the
// caller's buffer changing afterwards does not change the store's keys.
func TestKeyNotShared(t *testing.T) {
	s := newStore(t, nil)
	for _, n := range []int{10, 100} {
		buf := []byte(strings.Repeat("k", n))
		key := unsafe.String(&buf[0], len(buf))
		do1(t, s, backend.IncrOp(key, 1, time.Hour))
		do1(t, s, backend.IncrOp(key, 1, time.Hour)) // an update too
		want := strings.Clone(key)
		buf[0] = 'X'
		if r := do1(t, s, backend.ExistsOp(want)); r.Value != 2 {
			t.Errorf("%d-byte key after its buffer changed: %+v, want value 2", n, r)
		}
		for k := range s.Keys(context.Background(), "X") {
			t.Errorf("Keys yields %q, which the caller's buffer now holds", k)
		}
	}
}

// TestFullBatchChangesNothing: a call that would create more keys than the
// store has room for fails as full before it applies any operation, so
// that an attempt refused for want of room counts on none of its keys
// (the lockout engine's fallback, full, must not raise the counter of a
// user whose attempt it refuses); a call whose creations fit succeeds.
func TestFullBatchChangesNothing(t *testing.T) {
	incr := func(key string) backend.Op { return backend.IncrOp(key, 1, time.Hour) }
	tests := []struct {
		name string
		room int // keys the store can still create
		ops  []backend.Op
		full bool
	}{
		{"an existing key and a new one, no room", 0, []backend.Op{incr("old/0"), incr("new/a")}, true},
		{"two new keys, room for one", 1, []backend.Op{incr("old/0"), incr("new/a"), backend.ExistsOp("new/x"), incr("new/b")}, true},
		{"one new key twice, room for one", 1, []backend.Op{incr("new/a"), incr("old/0"), incr("new/a")}, false},
		{"two new keys, room for two", 2, []backend.Op{incr("new/a"), incr("new/b"), incr("old/0")}, false},
		{"nothing new, no room", 0, []backend.Op{incr("old/0"), backend.IncrOp("new/a", 0, time.Hour), backend.IncrOp("new/b", -1, time.Hour)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const maxKeys = 10
			s := newStore(t, &Options{MaxKeys: maxKeys})
			fill(t, s, "old/", maxKeys-tt.room, time.Hour, one)
			err := s.Do(t.Context(), tt.ops, make([]backend.Result, len(tt.ops)))
			if tt.full != errors.Is(err, backend.ErrFull) || !tt.full && err != nil {
				t.Fatalf("Do: %v, want full: %v", err, tt.full)
			}
			if !tt.full {
				return
			}
			wantLen(t, s, maxKeys-tt.room)
			if r := do1(t, s, backend.ExistsOp("old/0")); r.Value != 1 {
				t.Errorf("old/0 = %d after a call refused as full, want 1 (unchanged)", r.Value)
			}
			for _, k := range []string{"new/a", "new/b"} {
				if r := do1(t, s, backend.ExistsOp(k)); r.Found {
					t.Errorf("%s created by a call refused as full", k)
				}
			}
		})
	}
}
