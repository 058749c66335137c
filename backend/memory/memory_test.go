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

func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    *Options
		wantErr bool
		maxKeys int64
		reclaim time.Duration
	}{
		{"nil", nil, false, DefaultMaxKeys, DefaultReclaimDelay},
		{"zero", &Options{}, false, DefaultMaxKeys, DefaultReclaimDelay},
		{"set", &Options{MaxKeys: 7, ReclaimDelay: time.Minute}, false, 7, time.Minute},
		{"negative MaxKeys", &Options{MaxKeys: -1}, true, 0, 0},
		{"negative ReclaimDelay", &Options{ReclaimDelay: -time.Second}, true, 0, 0},
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
			if s.maxKeys != tc.maxKeys || s.reclaim != int64(tc.reclaim) {
				t.Errorf("maxKeys %d, reclaim %v; want %d, %v", s.maxKeys, time.Duration(s.reclaim), tc.maxKeys, tc.reclaim)
			}
		})
	}
}

// TestNoEviction inserts far more keys than a cache of ristretto's usual
// configuration would keep, and checks that the first ones are all still
// there with their exact values.
func TestNoEviction(t *testing.T) {
	const early, others = 1000, 200_000
	s := newStore(t, nil)
	fill(t, s, "early/", early, time.Hour, func(i int) int64 { return int64(i + 1) })
	// Read the early keys often, as an attacker would not, so that an
	// admission policy would rather keep them: it must not matter either
	// way.
	fill(t, s, "spray/", others, time.Hour, one)
	if got := s.Len(); got != early+others {
		t.Errorf("Len = %d, want %d", got, early+others)
	}
	ops := make([]backend.Op, early)
	for i := range ops {
		ops[i] = backend.ExistsOp(fmt.Sprint("early/", i))
	}
	for i, r := range do(t, s, ops...) {
		if !r.Found || r.Value != int64(i+1) {
			t.Fatalf("early/%d after %d more keys: %+v, want value %d", i, others, r, i+1)
		}
	}
	// And a sample of the later ones.
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
	// Some 210 bytes per key measured, up to twice that depending on how
	// full the maps happen to be; a store that kept every sprayed key
	// would need ten times the cap's memory.
	const maxBytesPerKey = 600
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
	if got := s.Len(); got != maxKeys {
		t.Errorf("Len = %d, want %d", got, maxKeys)
	}
	// Every held key still reads, with its exact value.
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

// TestReclaimedByRistretto lets keys expire and checks that ristretto's ttl
// cleanup, driven by its ticker on the fake clock, reclaims them and frees
// the cap.
func TestReclaimedByRistretto(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxKeys = 100
		s := newStore(t, &Options{MaxKeys: maxKeys})
		fill(t, s, "k/", maxKeys, time.Minute, one)
		if _, err := try(s, backend.IncrOp("one more", 1, time.Minute)); !errors.Is(err, backend.ErrFull) {
			t.Fatalf("creating key %d: err = %v, want ErrFull", maxKeys+1, err)
		}
		// Expiry + ReclaimDelay + a 5 s bucket + a 2.5 s tick.
		time.Sleep(time.Minute + DefaultReclaimDelay + 7500*time.Millisecond + time.Millisecond)
		synctest.Wait()
		if got := s.Len(); got != 0 {
			t.Fatalf("Len after expiry and cleanup = %d, want 0", got)
		}
		fill(t, s, "again/", maxKeys, time.Minute, one)
		if got := s.Len(); got != maxKeys {
			t.Errorf("Len = %d, want %d", got, maxKeys)
		}
	})
}

// TestSweepWhenFull lets keys expire with a ReclaimDelay so long that
// ristretto keeps them, and checks that a creation in the full store
// sweeps them.
func TestSweepWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxKeys = 100
		s := newStore(t, &Options{MaxKeys: maxKeys, ReclaimDelay: time.Hour})
		fill(t, s, "short/", maxKeys/2, time.Minute, one)
		fill(t, s, "long/", maxKeys/2, 3*time.Hour, one)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if got := s.Len(); got != maxKeys {
			t.Fatalf("Len before the sweep = %d, want %d (expired keys not yet reclaimed)", got, maxKeys)
		}
		fill(t, s, "new/", maxKeys/2, time.Minute, one)
		if got := s.Len(); got != maxKeys {
			t.Errorf("Len after the sweep and %d creations = %d, want %d", maxKeys/2, got, maxKeys)
		}
		if _, err := try(s, backend.IncrOp("one more", 1, time.Minute)); !errors.Is(err, backend.ErrFull) {
			t.Errorf("creating one more: err = %v, want ErrFull", err)
		}
		// The long keys survived the sweep.
		for i := range maxKeys / 2 {
			if r := do1(t, s, backend.ExistsOp(fmt.Sprint("long/", i))); !r.Found || r.Value != 1 {
				t.Fatalf("long/%d after the sweep: %+v", i, r)
			}
		}
	})
}

// TestCountIsExact follows Len through creations, deletions, expiries,
// re-inserting Expires and re-creations, in both of ristretto's states for
// an expired item (still visible to Get, and hidden but not yet cleaned).
func TestCountIsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxKeys = 50
		s := newStore(t, &Options{MaxKeys: maxKeys, ReclaimDelay: time.Second})
		wantLen := func(want int) {
			t.Helper()
			if got := s.Len(); got != want {
				t.Fatalf("Len = %d, want %d", got, want)
			}
		}
		fill(t, s, "short/", 30, 10*time.Second, one)
		fill(t, s, "long/", 20, time.Hour, one)
		wantLen(50)
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
		wantLen(50)
		// Re-inserting Expires keep the count.
		for i := range 10 {
			k := fmt.Sprint("long/", i)
			do(t, s, backend.ExpireOp(k, backend.NoExpiry), backend.ExpireOp(k, 2*time.Hour), backend.IncrOp(k, 1, time.Hour))
		}
		wantLen(50)
		for i := range 5 {
			if r := do1(t, s, backend.DeleteOp(fmt.Sprint("long/", 10+i))); !r.Found {
				t.Fatalf("delete long/%d: not found", 10+i)
			}
		}
		wantLen(45)
		fill(t, s, "new/", 5, time.Hour, one)
		wantLen(50)
		// short/0 is lengthened before it expires: it must survive.
		do1(t, s, backend.ExpireOp("short/0", time.Hour))

		// The short keys expire; ristretto still shows them to Get (within
		// ReclaimDelay). Re-creating one replaces it: the count holds.
		time.Sleep(10*time.Second + 500*time.Millisecond)
		wantLen(50)
		if r := do1(t, s, backend.IncrOp("short/1", 5, time.Hour)); r.Value != 5 {
			t.Fatalf("re-created short/1 = %d, want 5", r.Value)
		}
		wantLen(50)
		// Past ReclaimDelay Get hides them, before cleanup runs (bucket
		// boundary at 15 s on the bubble's clock, which starts at a
		// multiple of 5 s). The sweep of a full store cannot see them:
		// creating another key fails until cleanup has run, but
		// re-creating a hidden key takes its place.
		time.Sleep(time.Second)
		wantLen(50)
		if _, err := try(s, backend.IncrOp("z", 1, time.Hour)); !errors.Is(err, backend.ErrFull) {
			t.Fatalf("creating z in a full store: err = %v, want ErrFull", err)
		}
		if r, err := try(s, backend.IncrOp("short/2", 6, time.Hour)); err != nil || r.Value != 6 {
			t.Fatalf("re-creating short/2 in a full store: %+v, %v; want 6", r, err)
		}
		wantLen(50)
		// With room, re-creating a hidden key replaces it: the count holds.
		do1(t, s, backend.DeleteOp("long/19"))
		wantLen(49)
		if r := do1(t, s, backend.IncrOp("short/3", 7, time.Hour)); r.Value != 7 {
			t.Fatalf("re-created short/3 = %d, want 7", r.Value)
		}
		wantLen(49)
		// Cleanup reclaims the other 26 expired short keys.
		time.Sleep(20 * time.Second)
		synctest.Wait()
		wantLen(23)
		for k, v := range map[string]int64{"short/0": 1, "short/1": 5, "short/2": 6, "short/3": 7, "long/0": 2, "new/4": 1} {
			if r := do1(t, s, backend.ExistsOp(k)); !r.Found || r.Value != v {
				t.Errorf("%s: %+v, want value %d", k, r, v)
			}
		}
		fill(t, s, "more/", 27, time.Hour, one)
		wantLen(50)
		if _, err := try(s, backend.IncrOp("y", 1, time.Hour)); !errors.Is(err, backend.ErrFull) {
			t.Fatalf("creating key 51: err = %v, want ErrFull", err)
		}
	})
}

// TestSlidingExpirySurvivesCleanup keeps lengthening a key's TTL, in small
// and large steps, while ristretto's cleanup runs many times: the key must
// keep its value until it is left to expire.
func TestSlidingExpirySurvivesCleanup(t *testing.T) {
	for _, reclaim := range []time.Duration{time.Nanosecond, DefaultReclaimDelay, time.Minute} {
		t.Run(reclaim.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newStore(t, &Options{ReclaimDelay: reclaim})
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
				time.Sleep(9 * time.Second)
				if r := do1(t, s, backend.ExistsOp("k")); !r.Found || r.Value != 7 {
					t.Fatalf("before the last TTL: %+v, want value 7", r)
				}
				time.Sleep(time.Second)
				if r := do1(t, s, backend.ExistsOp("k")); r.Found {
					t.Fatalf("after the last TTL: %+v, want missing", r)
				}
				time.Sleep(reclaim + 8*time.Second)
				synctest.Wait()
				if got := s.Len(); got != 0 {
					t.Errorf("Len after reclaim = %d, want 0", got)
				}
			})
		})
	}
}

// TestReinsertIsInvisible re-inserts one key as fast as it can (every
// Expire switches it between NoExpiry and a TTL, which re-inserts it) while
// other goroutines read, increment and list it: none may ever miss it, and
// no increment may be lost.
func TestReinsertIsInvisible(t *testing.T) {
	s := newStore(t, nil)
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
							errs <- errors.New("Keys missed k during a re-insert")
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
					errs <- fmt.Errorf("%s missed k during a re-insert", op.Kind)
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
	if got := s.Len(); got != 1001 {
		t.Errorf("Len = %d, want 1001", got)
	}
}

// TestOverlappingBatches runs batches that create and increment random
// keys in random order, so that batches need stripes below ones they hold:
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
						// Re-inserting Expires in the mix.
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

// TestBigBatch creates many keys in one batch and touches each again later
// in the same batch, before ristretto has applied them.
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
	if got := s.Len(); got != n {
		t.Errorf("Len = %d, want %d", got, n)
	}
}

// TestHashCollision forces every key onto one hash: the first key works,
// the others cannot be created (an error, not a silent loss) and read as
// missing, and the first is never disturbed.
func TestHashCollision(t *testing.T) {
	s := newStore(t, nil)
	s.hashFn = func(string) uint64 { return 42 }
	do1(t, s, backend.IncrOp("a", 3, time.Hour))
	if _, err := try(s, backend.IncrOp("b", 1, time.Hour)); !errors.Is(err, errCollision) || errors.Is(err, backend.ErrFull) {
		t.Errorf("creating a colliding key: err = %v, want the collision error", err)
	}
	for _, op := range []backend.Op{
		backend.ExistsOp("b"),
		backend.IncrOp("b", -1, time.Hour),
		backend.IncrOp("b", 0, time.Hour),
		backend.ExpireOp("b", time.Minute),
		backend.DeleteOp("b"),
	} {
		if r := do1(t, s, op); r != (backend.Result{}) {
			t.Errorf("%s of the colliding key: %+v, want missing", op.Kind, r)
		}
	}
	// In one batch with a key created there too.
	res := make([]backend.Result, 2)
	err := s.Do(context.Background(), []backend.Op{backend.IncrOp("a", 1, time.Hour), backend.IncrOp("c", 1, time.Hour)}, res)
	if !errors.Is(err, errCollision) {
		t.Errorf("batch with a colliding key: err = %v, want the collision error", err)
	}
	if r := do1(t, s, backend.ExistsOp("a")); r.Value != 4 {
		t.Errorf("a = %d, want 4", r.Value)
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d, want 1", s.Len())
	}
	n := 0
	for k, err := range s.Keys(context.Background(), "") {
		if err != nil || k != "a" {
			t.Errorf("Keys yields %q, %v", k, err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("Keys yields %d keys, want 1", n)
	}
}

// TestCollisionInOneBatch creates two colliding keys in one batch, before
// ristretto has applied the first.
func TestCollisionInOneBatch(t *testing.T) {
	s := newStore(t, nil)
	s.hashFn = func(string) uint64 { return 7 }
	res := make([]backend.Result, 3)
	err := s.Do(context.Background(), []backend.Op{
		backend.IncrOp("a", 1, time.Hour),
		backend.IncrOp("b", 1, time.Hour),
		backend.IncrOp("a", 1, time.Hour),
	}, res)
	if !errors.Is(err, errCollision) {
		t.Errorf("err = %v, want the collision error", err)
	}
	if r := do1(t, s, backend.ExistsOp("a")); r.Value != 1 {
		t.Errorf("a = %+v, want value 1", r)
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d, want 1", s.Len())
	}
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

// TestEntryLayout checks that an entry takes the two cache lines its
// comment says, and that keys compare exactly whether held inline or not.
func TestEntryLayout(t *testing.T) {
	if size := unsafe.Sizeof(entry{}); size != 128 {
		t.Errorf("entry takes %d bytes, want 128", size)
	}
	for _, n := range []int{1, keyInline - 1, keyInline, keyInline + 1, 300} {
		key := strings.Repeat("k", n)
		e := newEntry(key, 1)
		if !e.is(key) || e.key() != key || !e.hasPrefix(key) || !e.hasPrefix(key[:n/2]) || !e.hasPrefix("") {
			t.Errorf("%d-byte key: is %v, key() %q, hasPrefix %v", n, e.is(key), e.key(), e.hasPrefix(key))
		}
		for _, other := range []string{key + "k", key[:n-1], key[:n-1] + "x", "x" + key[1:]} {
			if other != "" && e.is(other) {
				t.Errorf("%d-byte key: is(%d-byte %q...) = true", n, len(other), other[:min(len(other), 10)])
			}
		}
		if e.hasPrefix(key + "k") {
			t.Errorf("%d-byte key: has a longer prefix", n)
		}
	}
}

// TestRecreateHiddenWhenFull re-creates, in a full store, a key that expired
// more than ReclaimDelay ago but that ristretto's cleanup has not reached:
// ristretto hides it from Get and IterValues, yet it still holds its place
// under MaxKeys, which the new key must take over rather than fail with
// ErrFull.
func TestRecreateHiddenWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStore(t, &Options{MaxKeys: 1, ReclaimDelay: time.Millisecond})
		do1(t, s, backend.IncrOp("k", 1, time.Millisecond))
		time.Sleep(50 * time.Millisecond) // well before cleanup's first tick (2.5 s)
		synctest.Wait()
		r, err := try(s, backend.IncrOp("k", 1, time.Minute))
		if err != nil {
			t.Fatalf("re-creating k in a full store: %v", err)
		}
		if r.Value != 1 || r.TTL != time.Minute {
			t.Errorf("re-created k = %+v, want a fresh counter at 1 for a minute", r)
		}
		if got := s.Len(); got != 1 {
			t.Errorf("Len = %d, want 1", got)
		}
		// Another key still finds the store full.
		if _, err := try(s, backend.IncrOp("j", 1, time.Minute)); !errors.Is(err, backend.ErrFull) {
			t.Errorf("creating j: err = %v, want ErrFull", err)
		}
	})
}
