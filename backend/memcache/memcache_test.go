package memcache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gm "github.com/bradfitz/gomemcache/memcache"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/conformance"
	"github.com/go-lockout/lockout/internal/testserver"
)

// parallel marks t parallel unless the servers come from the environment:
// those are shared, and the harness flushes them.
func parallel(t *testing.T) {
	if !shared() {
		t.Parallel()
	}
}

// shared reports whether the tests' servers come from the environment.
func shared() bool { return os.Getenv("LOCKOUT_TEST_MEMCACHED") != "" }

// testTimeout is the client timeout of the conformance stores: a 2-core CI
// machine running the race detector and several memcached processes at once
// stalls a request for more than the default 500 ms now and then, and the
// policy checks fail open on such an error.
const testTimeout = 5 * time.Second

// harness describes a store over the memcached servers at addrs, flushed
// for every subtest.
func harness(addrs ...string) conformance.Harness {
	return conformance.Harness{
		New: func(t testing.TB) backend.Backend {
			testserver.FlushMemcached(t, addrs...)
			return newStore(t, addrs, &Options{Timeout: testTimeout})
		},
		Granularity: time.Second,
		Lister:      false,
	}
}

func newStore(t testing.TB, addrs []string, opts *Options) *Store {
	t.Helper()
	s, err := NewServers(addrs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the suite against one server and against two, at
// the same time: the suite spends most of its time sleeping (expiry is
// real-time with memcached), and as subtests of one test the two runs hold
// one of the -parallel slots (GOMAXPROCS by default, 2 in CI) instead of
// both, so that the package's other tests run meanwhile. Servers from the
// environment are shared, and flushed by the suite: the runs then take
// turns.
func TestConformance(t *testing.T) {
	parallel(t)
	run := func(name string, servers int) {
		t.Run(name, func(t *testing.T) {
			var addrs []string
			for range servers {
				addrs = append(addrs, testserver.Memcached(t).Addr)
			}
			conformance.Run(t, harness(addrs...))
		})
	}
	if shared() {
		run("OneServer", 1)
		run("TwoServers", 2)
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { run("OneServer", 1) })
	wg.Go(func() { run("TwoServers", 2) })
	wg.Wait()
}

func do(t *testing.T, s backend.Backend, ops ...backend.Op) []backend.Result {
	t.Helper()
	res := make([]backend.Result, len(ops))
	if err := s.Do(t.Context(), ops, res); err != nil {
		t.Fatalf("Do: %v", err)
	}
	return res
}

// keysOn returns n user keys whose memcached keys the store's selector puts
// on each of addrs.
func keysOn(t *testing.T, n int, addrs ...string) map[string][]string {
	t.Helper()
	var sel RendezvousSelector
	if err := sel.SetServers(addrs...); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for i := 0; ; i++ {
		k := fmt.Sprintf("user/%d", i)
		a, err := sel.PickServer(mapKey("", k))
		if err != nil {
			t.Fatal(err)
		}
		if len(out[a.String()]) < n {
			out[a.String()] = append(out[a.String()], k)
		}
		done := true
		for _, addr := range addrs {
			done = done && len(out[addr]) == n
		}
		if done {
			return out
		}
	}
}

// TestServerDown stops one of two servers: calls on its keys fail within
// their deadline, the other server's keys keep working; once it is back, all
// keys work.
func TestServerDown(t *testing.T) {
	parallel(t)
	a, b := testserver.Memcached(t), testserver.Memcached(t)
	s := newStore(t, []string{a.Addr, b.Addr}, nil)
	defer s.Close()
	on := keysOn(t, 6, a.Addr, b.Addr)
	ka, kb, lockB := on[a.Addr][:5], on[b.Addr][:5], on[b.Addr][5]

	incrAll := func(keys []string) []backend.Op {
		var ops []backend.Op
		for _, k := range keys {
			ops = append(ops, backend.IncrOp(k, 1, time.Minute))
		}
		return ops
	}
	// Fill both pools with connections that the stop makes stale.
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			res := make([]backend.Result, 10)
			_ = s.Do(context.Background(), incrAll(append(ka[:5:5], kb...)), res)
		})
	}
	wg.Wait()
	for i, r := range do(t, s, incrAll(append(ka[:5:5], kb...))...) {
		if r.Value != 17 {
			t.Fatalf("key %d = %d before the stop, want 17", i, r.Value)
		}
	}

	a.Stop()
	const deadline = time.Second
	for _, k := range ka {
		ctx, cancel := context.WithTimeout(t.Context(), deadline)
		start := time.Now()
		_, err := backend.Do1(ctx, s, backend.IncrOp(k, 1, time.Minute))
		took := time.Since(start)
		cancel()
		if err == nil {
			t.Fatalf("incr of %s on the stopped server: no error", k)
		}
		if took >= deadline {
			t.Errorf("incr of %s on the stopped server took %v", k, took)
		}
		t.Logf("stopped server: %v after %v", err, took.Round(time.Microsecond))
	}
	// The other server's keys work, alone and in a decision-shaped batch.
	for i, r := range do(t, s, incrAll(kb)...) {
		if !r.Found || r.Value != 18 {
			t.Errorf("key %s on the live server: %+v, want 18", kb[i], r)
		}
	}
	rs := do(t, s, backend.IncrOp(kb[0], 1, time.Minute), backend.ExistsOp(kb[1]), backend.ExistsOp(lockB))
	if rs[0].Value != 19 || rs[1].Value != 18 || rs[2].Found {
		t.Errorf("batch on the live server: %+v", rs)
	}
	// A batch that touches the stopped server fails as a whole.
	if err := s.Do(t.Context(), []backend.Op{backend.ExistsOp(ka[0]), backend.ExistsOp(kb[0])}, make([]backend.Result, 2)); err == nil {
		t.Error("batch over both servers with one stopped: no error")
	}

	a.Start()
	// Its keys work again, starting afresh (a restarted memcached is empty).
	for i, r := range do(t, s, incrAll(ka)...) {
		if !r.Found || r.Value != 1 {
			t.Errorf("key %s on the restarted server: %+v, want 1", ka[i], r)
		}
	}
	for i, r := range do(t, s, incrAll(kb)...) {
		want := int64(19)
		if i == 0 {
			want = 20
		}
		if !r.Found || r.Value != want {
			t.Errorf("key %s on the other server: %+v, want %d", kb[i], r, want)
		}
	}
}

// TestHungServer checks that a server that accepts connections and never
// answers costs a call no more than its context allows.
func TestHungServer(t *testing.T) {
	parallel(t)
	addr, stop := hang(t, "127.0.0.1:0")
	t.Cleanup(stop)
	s := newStore(t, []string{addr}, &Options{Timeout: 3 * time.Second})
	defer s.Close()
	ops := []backend.Op{
		backend.IncrOp("a", 1, time.Minute), backend.ExistsOp("b"),
		backend.ExpireOp("c", time.Minute), backend.DeleteOp("d"),
	}
	for _, op := range ops {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		start := time.Now()
		_, err := backend.Do1(ctx, s, op)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s on a hung server: err = %v, want DeadlineExceeded", op.Kind, err)
		}
		if took > 500*time.Millisecond {
			t.Errorf("%s on a hung server took %v with a 100ms deadline", op.Kind, took)
		}
	}
}

// TestFullServer fills a memcached run with -M: writes then fail with
// ErrFull, and every counter written before keeps its value and still
// counts.
func TestFullServer(t *testing.T) {
	parallel(t)
	srv := testserver.Memcached(t, "-M", "-m", "2")
	s := newStore(t, []string{srv.Addr}, nil)
	defer s.Close()
	ctx := t.Context()

	const per = 100
	pad := strings.Repeat("x", 200)
	var written []string
	var fullErr error
	for round := 0; fullErr == nil; round++ {
		if round > 2000 {
			t.Fatal("the server never filled up")
		}
		ops := make([]backend.Op, per)
		for i := range ops {
			ops[i] = backend.IncrOp(fmt.Sprintf("%s/%d/%d", pad, round, i), int64(i%7+1), time.Hour)
		}
		err := s.Do(ctx, ops, make([]backend.Result, per))
		switch {
		case err == nil:
			for _, op := range ops {
				written = append(written, op.Key)
			}
		case errors.Is(err, backend.ErrFull):
			fullErr = err
		default:
			t.Fatalf("round %d: %v", round, err)
		}
	}
	t.Logf("full after %d counters: %v", len(written), fullErr)

	// A new key is refused, every time.
	for i := range 3 {
		_, err := backend.Do1(ctx, s, backend.IncrOp(fmt.Sprintf("%s/new/%d", pad, i), 1, time.Hour))
		if !errors.Is(err, backend.ErrFull) {
			t.Errorf("new key on a full server: err = %v, want ErrFull", err)
		}
	}
	// Nothing written before was lost.
	want := make([]int64, len(written))
	for i := range want {
		want[i] = int64(i%per%7 + 1)
	}
	check := func() {
		t.Helper()
		for lo := 0; lo < len(written); lo += 500 {
			hi := min(lo+500, len(written))
			ops := make([]backend.Op, 0, hi-lo)
			for _, k := range written[lo:hi] {
				ops = append(ops, backend.ExistsOp(k))
			}
			for j, r := range do(t, s, ops...) {
				if !r.Found || r.Value != want[lo+j] {
					t.Fatalf("counter %d after the server filled up: %+v, want %d", lo+j, r, want[lo+j])
				}
			}
		}
	}
	check()
	// Existing counters still count, or fail with ErrFull without losing
	// anything. Stored padded, they are incremented in place, needing no
	// memory, unless a read of the same key holds the item at that moment
	// (as the store's own concurrent read may): memcached then needs a new
	// item, which a full server refuses.
	var okIncr, fullIncr int
	for j := range 200 {
		r, err := backend.Do1(ctx, s, backend.IncrOp(written[j], 1, time.Hour))
		switch {
		case err == nil:
			okIncr++
			want[j]++
			if r.Value != want[j] {
				t.Fatalf("incr of counter %d on a full server = %d, want %d", j, r.Value, want[j])
			}
		case errors.Is(err, backend.ErrFull):
			fullIncr++
		default:
			t.Fatalf("incr of counter %d on a full server: %v", j, err)
		}
	}
	t.Logf("increments of existing counters on the full server: %d applied, %d refused with ErrFull", okIncr, fullIncr)
	check()
}

// TestLogicalExpiry checks the zombie path: memcached keeps an item a few
// seconds past the expiry in its flags; the store reports it missing, and
// an increment restarts it without double counting.
func TestLogicalExpiry(t *testing.T) {
	parallel(t)
	srv := testserver.Memcached(t)
	s := newStore(t, []string{srv.Addr}, nil)
	defer s.Close()
	raw := gm.New(srv.Addr)
	defer raw.Close()

	// A counter whose logical expiry is already past but which memcached
	// still holds for a minute: what a key looks like right after expiry.
	past := uint32(time.Now().Add(-time.Second).Unix())
	zombie := func(k string, v uint64) {
		t.Helper()
		if err := raw.Set(&gm.Item{Key: k, Value: formatValue(v), Flags: past, Expiration: 60}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"exists", "incr", "decr", "expire", "delete", "read"} {
		zombie(k, 5)
	}
	rs := do(t, s,
		backend.ExistsOp("exists"),
		backend.IncrOp("incr", 2, time.Minute),
		backend.IncrOp("decr", -1, time.Minute),
		backend.ExpireOp("expire", time.Minute),
		backend.DeleteOp("delete"),
		backend.IncrOp("read", 0, 0),
	)
	want := []backend.Result{{}, {Found: true, Value: 2}, {}, {}, {}, {}}
	for i, r := range rs {
		if r.Found != want[i].Found || r.Value != want[i].Value {
			t.Errorf("op %d on a logically expired key: %+v, want %+v", i, r, want[i])
		}
	}
	if rs[1].TTL <= 0 || rs[1].TTL > time.Minute+time.Second {
		t.Errorf("restarted counter TTL %v", rs[1].TTL)
	}
	// The same, with every op on one key (the sequential path).
	zombie("seq", 9)
	rs = do(t, s, backend.ExistsOp("seq"), backend.IncrOp("seq", -1, time.Minute), backend.IncrOp("seq", 3, time.Minute), backend.ExistsOp("seq"))
	if rs[0].Found || rs[1].Found || rs[2].Value != 3 || rs[3].Value != 3 {
		t.Errorf("sequential ops on a logically expired key: %+v", rs)
	}

	// Concurrent increments racing to restart one expired counter. Each is
	// counted exactly once: in the fresh counter, or, when it hit the
	// expired item just before another caller replaced it, in the expired
	// counter, whose value it then returns (above 1000 here). None is
	// counted twice.
	zombie("race", 1000)
	const g, m = 16, 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	var fresh, expired int64
	for range g {
		wg.Go(func() {
			for range m {
				r, err := backend.Do1(context.Background(), s, backend.IncrOp("race", 1, time.Minute))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if r.Value > 1000 {
					expired++
				} else {
					fresh++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r := do(t, s, backend.ExistsOp("race"))[0]
	if r.Value != fresh || fresh+expired != g*m {
		t.Errorf("%d increments racing a restart: counter %d, %d results from it, %d from the expired one", g*m, r.Value, fresh, expired)
	}
	t.Logf("%d increments racing a restart: %d counted in the fresh counter, %d in the expired one", g*m, fresh, expired)
}

// TestStoredForm checks what the store writes: padded values, expiry flags
// and relative exptimes, and hashed long keys.
func TestStoredForm(t *testing.T) {
	parallel(t)
	srv := testserver.Memcached(t)
	s := newStore(t, []string{srv.Addr}, &Options{Prefix: "lo:"})
	defer s.Close()
	raw := gm.New(srv.Addr)
	defer raw.Close()

	before := time.Now()
	long := strings.Repeat("k", 300)
	do(t, s, backend.IncrOp("a b", 7, 90*time.Second), backend.IncrOp(long, 1, backend.NoExpiry))
	it, err := raw.Get("lo:a%20b")
	if err != nil {
		t.Fatal(err)
	}
	if string(it.Value) != "7"+strings.Repeat(" ", valueWidth-1) {
		t.Errorf("stored value %q", it.Value)
	}
	if lo, hi := before.Add(90*time.Second).Unix(), time.Now().Add(91*time.Second).Unix(); int64(it.Flags) < lo || int64(it.Flags) > hi {
		t.Errorf("flags %d, want the expiry in [%d, %d]", it.Flags, lo, hi)
	}
	it, err = raw.Get(mapKey("lo:", long))
	if err != nil {
		t.Fatal(err)
	}
	if it.Flags != 0 || !strings.HasPrefix(it.Key, "lo:%H") || len(it.Key) != 3+2+43 {
		t.Errorf("long key stored as %q flags %d", it.Key, it.Flags)
	}
	// A decrement that shortens the number leaves memcached's own padding.
	do(t, s, backend.IncrOp("ten", 10, time.Minute))
	if r := do(t, s, backend.IncrOp("ten", -1, time.Minute), backend.ExistsOp("other"))[0]; r.Value != 9 {
		t.Errorf("10-1 = %d", r.Value)
	}
	if r := do(t, s, backend.ExistsOp("ten"))[0]; r.Value != 9 {
		t.Errorf("read back 9: %+v", r)
	}
	// A value that is not a counter is an error, not a zero.
	if err := raw.Set(&gm.Item{Key: "lo:junk", Value: []byte("abc")}); err != nil {
		t.Fatal(err)
	}
	if _, err := backend.Do1(t.Context(), s, backend.ExistsOp("junk")); err == nil {
		t.Error("exists of a non-numeric value: no error")
	}
	if _, err := backend.Do1(t.Context(), s, backend.IncrOp("junk", 1, time.Minute)); err == nil {
		t.Error("incr of a non-numeric value: no error")
	}
}

func TestOptions(t *testing.T) {
	c := gm.New("127.0.0.1:1")
	for _, p := range []string{"a b", "a\x00", strings.Repeat("p", maxPrefixLen+1), "app{", "app{}:", "{x"} {
		if _, err := New(c, &Options{Prefix: p}); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	for _, p := range []string{"app:", "{app}:", "a{b}c{"} {
		if _, err := New(c, &Options{Prefix: p}); err != nil {
			t.Errorf("prefix %q refused: %v", p, err)
		}
	}
	if _, err := New(nil, nil); err == nil {
		t.Error("nil client accepted")
	}
	if _, err := NewServers(nil, nil); err == nil {
		t.Error("no servers accepted")
	}
	s, err := NewServers([]string{"127.0.0.1:1"}, &Options{MaxIdleConns: 7, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s.c.MaxIdleConns != 7 || s.c.Timeout != time.Second {
		t.Errorf("client MaxIdleConns %d Timeout %v", s.c.MaxIdleConns, s.c.Timeout)
	}
	s, err = NewServers([]string{"127.0.0.1:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.c.MaxIdleConns != DefaultMaxIdleConns || s.c.Timeout != DefaultTimeout {
		t.Errorf("default client MaxIdleConns %d Timeout %v", s.c.MaxIdleConns, s.c.Timeout)
	}
	// A TTL past what the flags hold is refused before anything is sent.
	_, err = backend.Do1(t.Context(), s, backend.IncrOp("k", 1, 100*365*24*time.Hour))
	if !errors.Is(err, backend.ErrInvalid) {
		t.Errorf("TTL of 100 years: err = %v, want ErrInvalid", err)
	}
	// New over a caller's client: Close leaves the client alone.
	s, err = New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := backend.Do1(t.Context(), s, backend.ExistsOp("k")); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// TestCloseWaits closes a store made by NewServers while a request is in
// flight: Close waits for it, and then no connection is left open (one
// that came back to the client after Close emptied it used to stay open
// for good, a review found), and the requests a batch had not sent yet
// are not sent.
func TestCloseWaits(t *testing.T) {
	parallel(t)
	srv := testserver.Memcached(t)
	p := newDelayProxy(t, srv.Addr, 300*time.Millisecond)
	s := newStore(t, []string{p.Addr}, nil)
	done := make(chan error, 1)
	go func() {
		_, err := backend.Do1(context.Background(), s, backend.IncrOp("k", 1, time.Minute))
		done <- err
	}()
	for p.open.Load() == 0 {
		time.Sleep(time.Millisecond) // the request is on its way
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("Close returned after %v, before the request in flight (300 ms) ended", d)
	}
	// The increment's second request (the read of its flags, or the add
	// of a missing key) is not sent after Close.
	if err := <-done; err != nil && !errors.Is(err, backend.ErrClosed) {
		t.Errorf("the call in flight: %v, want nil or ErrClosed", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.open.Load(); n != 0 {
		t.Errorf("%d connections still open after Close", n)
	}
}

// TestDropZeroRace plays the race of a give-back's removal: an increment
// that lands between the decrement to zero (and its gets) and the cas that
// removes the key changes the cas token, so nothing is removed and the
// increment is kept; without one, the cas removes the key.
func TestDropZeroRace(t *testing.T) {
	parallel(t)
	srv := testserver.Memcached(t)
	s := newStore(t, []string{srv.Addr}, nil)
	defer s.Close()
	ctx := t.Context()
	k := mapKey(s.prefix, "k")

	// decrToZero brings k from 1 to 0 by decr alone, and reads it (gets).
	decrToZero := func() *gm.Item {
		t.Helper()
		do(t, s, backend.IncrOp("k", 1, time.Hour))
		v, hit, err := s.incrDecr(ctx, k, 1, false)
		if err != nil || !hit || v != 0 {
			t.Fatalf("decr: %d, %v, %v; want 0, hit", v, hit, err)
		}
		it, err := s.get(ctx, k)
		if err != nil || !holdsZero(it) {
			t.Fatalf("read after decr: %+v, %v; want an item holding zero", it, err)
		}
		return it
	}

	it := decrToZero()
	if _, _, err := s.incrDecr(ctx, k, 1, true); err != nil {
		t.Fatal(err)
	}
	if err := s.dropZero(ctx, k, it); err != nil {
		t.Fatal(err)
	}
	if r := do(t, s, backend.ExistsOp("k"))[0]; !r.Found || r.Value != 1 {
		t.Errorf("after an increment that raced the removal: %+v, want the key holding 1", r)
	}
	do(t, s, backend.DeleteOp("k"))

	it = decrToZero()
	if err := s.dropZero(ctx, k, it); err != nil {
		t.Fatal(err)
	}
	if r := do(t, s, backend.ExistsOp("k"))[0]; r != (backend.Result{}) {
		t.Errorf("after the removal: %+v, want missing", r)
	}
	// A stale read of a key removed since: nothing to do, no error.
	if err := s.dropZero(ctx, k, it); err != nil {
		t.Errorf("removal of a key gone already: %v", err)
	}
	if r := do(t, s, backend.IncrOp("k", 2, time.Minute))[0]; !r.Found || r.Value != 2 || r.TTL > time.Minute+time.Second {
		t.Errorf("increment after the removal: %+v, want a fresh key holding 2 with a TTL of a minute", r)
	}
}

// TestDoDeadlineKeepsNoOps makes a call whose deadline ends while its
// first request is in flight (a network of 100 ms), then reuses its ops,
// as the policy reuses its pooled buffers once a call returns. The
// Expire's multi-get of its key finishes in the background and then reads
// the op: it must read a copy. Under the race detector (the README's test
// command) this failed when Do kept the caller's slice.
func TestDoDeadlineKeepsNoOps(t *testing.T) {
	parallel(t)
	srv := testserver.Memcached(t)
	p := newDelayProxy(t, srv.Addr, 100*time.Millisecond)
	// AllowEviction: no eviction check goes first.
	s := newStore(t, []string{p.Addr}, &Options{AllowEviction: true})
	defer s.Close()

	ops := []backend.Op{backend.ExpireOp("k", time.Minute), backend.ExpireOp("other", time.Minute)}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := s.Do(ctx, ops, make([]backend.Result, len(ops))); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do past its deadline: %v, want context.DeadlineExceeded", err)
	}
	for i := range ops {
		ops[i] = backend.IncrOp("reused", 5, time.Minute)
	}
	// The multi-get's answer comes 100 ms after it was sent; the
	// background work ends soon after.
	time.Sleep(300 * time.Millisecond)
}
