package memory

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/go-lockout/lockout/backend"
)

// gate stalls ristretto's goroutine on the new items of keys that begin
// with "stall/", one at a time, until the test lets each through or opens
// the gate for good.
type gate struct {
	arrived chan string
	next    chan struct{}
	open    chan struct{}
	once    sync.Once
}

// release opens the gate for good.
func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func newGate() *gate {
	return &gate{arrived: make(chan string), next: make(chan struct{}), open: make(chan struct{})}
}

func (g *gate) apply(e *entry) {
	if !e.hasPrefix("stall/") {
		return
	}
	select {
	case g.arrived <- e.key():
	case <-g.open:
		return
	}
	select {
	case <-g.next:
	case <-g.open:
	}
}

// stalledStore returns a store without its resolver goroutine (the test
// calls round), whose ristretto goroutine is stalled on the item of
// "stall/0": every Set made afterwards stays queued until the gate opens.
func stalledStore(t *testing.T) (*Store, *gate) {
	t.Helper()
	g := newGate()
	s, err := newHooked(nil, hooks{apply: g.apply, manual: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t.Cleanup(g.release) // runs before Close

	do1(t, s, backend.IncrOp("stall/0", 1, time.Hour))
	if k := <-g.arrived; k != "stall/0" {
		t.Fatalf("stalled on %q", k)
	}
	return s, g
}

// where tells where key's entry is: in its stripe's pending set, in
// ristretto (visible to Get), both, or neither.
func where(s *Store, key string) (e *entry, pending, stored bool) {
	h := s.hash(key)
	st := &s.stripes[stripeOf(h)]
	st.mu.Lock()
	defer st.mu.Unlock()
	if p := st.pending[h]; p != nil && p.is(key) {
		e, pending = p, p.state.Load() == stPending
	}
	if v, ok := s.cache.Get(h); ok && v.is(key) {
		e, stored = v, true
	}
	return e, pending, stored
}

// settle runs the resolver until no stripe has pending entries.
func settle(t *testing.T, s *Store) {
	t.Helper()
	for range 5 {
		s.round()
		if !s.anyDirty() {
			return
		}
	}
	t.Fatal("entries still pending after 5 rounds of the resolver")
}

func keysOf(t *testing.T, s *Store, prefix string) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	for k, err := range s.Keys(context.Background(), prefix) {
		if err != nil {
			t.Fatal(err)
		}
		got[k] = true
	}
	return got
}

// TestPendingVisible creates keys while ristretto cannot apply them, and
// checks that every operation sees them as the batch left them: the
// pending overlay is the store until ristretto catches up. Then it lets
// ristretto go, and checks that nothing was lost on the way.
func TestPendingVisible(t *testing.T) {
	s, g := stalledStore(t)
	var ops []backend.Op
	for i := range 8 {
		ops = append(ops, backend.IncrOp(fmt.Sprint("p/", i), int64(i+1), time.Hour))
	}
	do(t, s, ops...)
	for i := range 8 {
		k := fmt.Sprint("p/", i)
		if _, pending, stored := where(s, k); !pending || stored {
			t.Fatalf("%s: pending %v, stored %v; want pending only (ristretto is stalled)", k, pending, stored)
		}
	}

	// Reads, increments, listing.
	if r := do1(t, s, backend.ExistsOp("p/0")); !r.Found || r.Value != 1 || r.TTL <= 0 || r.TTL > time.Hour {
		t.Errorf("exists p/0: %+v", r)
	}
	res := do(t, s,
		backend.IncrOp("p/1", 5, time.Minute),
		backend.IncrOp("p/1", 0, time.Minute),
		backend.IncrOp("p/1", -100, time.Minute),
	)
	if res[0].Value != 7 || res[1].Value != 7 || res[0].TTL <= time.Minute || res[2] != (backend.Result{}) {
		t.Errorf("incr p/1: %+v (want 7, 7 keeping its TTL of an hour, then removed at zero)", res)
	}
	// The decrement to zero removed the pending entry.
	if r := do1(t, s, backend.ExistsOp("p/1")); r != (backend.Result{}) {
		t.Errorf("exists p/1 after a decrement to zero: %+v, want missing", r)
	}
	if got := keysOf(t, s, "p/"); len(got) != 7 || got["p/1"] {
		t.Errorf("Keys(p/) = %v, want p/0 and p/2 to p/7", got)
	}
	if got := s.Len(); got != 8 {
		t.Errorf("Len = %d, want 8", got)
	}

	// Expire within the ristretto expiration changes the entry only.
	if r := do1(t, s, backend.ExpireOp("p/2", 30*time.Minute)); !r.Found || r.TTL > 30*time.Minute {
		t.Errorf("expire p/2: %+v", r)
	}

	// Delete: gone at once, and a ghost blocks nothing else.
	if r := do1(t, s, backend.DeleteOp("p/3")); !r.Found {
		t.Errorf("delete p/3: not found")
	}
	for _, op := range []backend.Op{
		backend.ExistsOp("p/3"),
		backend.IncrOp("p/3", -1, time.Hour),
		backend.IncrOp("p/3", 0, time.Hour),
		backend.ExpireOp("p/3", time.Hour),
		backend.DeleteOp("p/3"),
	} {
		if r := do1(t, s, op); r != (backend.Result{}) {
			t.Errorf("%s of deleted p/3: %+v, want missing", op.Kind, r)
		}
	}
	if got := keysOf(t, s, "p/"); len(got) != 6 || got["p/3"] {
		t.Errorf("Keys(p/) after deleting p/3 = %v", got)
	}
	if got := s.Len(); got != 7 {
		t.Errorf("Len after a delete = %d, want 7", got)
	}

	// Re-creating the deleted key and re-inserting a pending one (a TTL
	// past its ristretto expiration) both need ristretto to have applied
	// the earlier Set of their hash: they wait for the gate.
	type outcome struct {
		res []backend.Result
		err error
	}
	out := make(chan outcome, 1)
	go func() {
		ops := []backend.Op{backend.IncrOp("p/3", 9, time.Hour), backend.ExpireOp("p/4", backend.NoExpiry)}
		res := make([]backend.Result, len(ops))
		err := s.Do(context.Background(), ops, res)
		out <- outcome{res, err}
	}()
	g.release()
	o := <-out
	if o.err != nil {
		t.Fatal(o.err)
	}
	if r := o.res[0]; !r.Found || r.Value != 9 {
		t.Errorf("re-creating p/3: %+v", r)
	}
	if r := o.res[1]; !r.Found || r.Value != 5 || r.TTL != backend.NoExpiry {
		t.Errorf("persisting p/4: %+v", r)
	}

	settle(t, s)
	want := map[string]int64{"p/0": 1, "p/2": 3, "p/3": 9, "p/4": 5, "p/5": 6, "p/6": 7, "p/7": 8}
	for k, v := range want {
		e, pending, stored := where(s, k)
		if pending || !stored || e.state.Load() != stLive {
			t.Errorf("%s after the resolver: pending %v, stored %v, state %d; want stored and live", k, pending, stored, e.state.Load())
		}
		if r := do1(t, s, backend.ExistsOp(k)); !r.Found || r.Value != v {
			t.Errorf("%s: %+v, want value %d", k, r, v)
		}
	}
	if r := do1(t, s, backend.ExistsOp("p/4")); r.TTL != backend.NoExpiry {
		t.Errorf("p/4: TTL %v, want NoExpiry", r.TTL)
	}
	if _, pending, stored := where(s, "p/1"); pending || stored {
		t.Errorf("p/1 after the resolver: pending %v, stored %v; want neither (removed at zero)", pending, stored)
	}
	if r := do1(t, s, backend.ExistsOp("p/1")); r != (backend.Result{}) {
		t.Errorf("p/1 after the resolver: %+v, want missing", r)
	}
	if got := s.Len(); got != 8 {
		t.Errorf("Len = %d, want 8", got)
	}
}

// TestDroppedSetIsRetried fills ristretto's set buffer while its goroutine
// is stalled, so that the Set of a new key is not taken (SetWithTTL returns
// false): the key must work from the pending set, and reach ristretto once
// it catches up.
func TestDroppedSetIsRetried(t *testing.T) {
	s, g := stalledStore(t)
	// Fill the buffer with items ristretto will apply later (stall/...
	// keys, so that it stalls on the first): junk entries, already gone,
	// under hashes no test key has.
	n := 0
	for ; ; n++ {
		junk := newEntry(fmt.Sprint("stall/junk/", n), uint64(n)+1<<40)
		junk.state.Store(stGone)
		if !s.cache.SetWithTTL(junk.h, junk, 0, 0) {
			break
		}
	}
	// Let stall/0 through: ristretto takes the first junk item off the
	// buffer and stalls on it, which leaves room for one item exactly:
	// the Del that precedes the Set of a new key.
	g.next <- struct{}{}
	if k := <-g.arrived; k != "stall/junk/0" {
		t.Fatalf("stalled on %q", k)
	}
	do1(t, s, backend.IncrOp("d/0", 3, time.Hour))
	e, pending, stored := where(s, "d/0")
	if !pending || stored || !e.dropped.Load() {
		t.Fatalf("d/0 after filling %d buffer slots: pending %v, stored %v, dropped %v; want a dropped pending entry", n, pending, stored, e.dropped.Load())
	}
	// The dropped entry serves every operation but ones that Set
	// (which would wait for the buffer).
	if r := do1(t, s, backend.IncrOp("d/0", 1, time.Hour)); r.Value != 4 {
		t.Errorf("incr d/0 = %+v, want 4", r)
	}
	if got := keysOf(t, s, "d/"); !got["d/0"] {
		t.Errorf("Keys(d/) = %v, want d/0", got)
	}
	if got := s.Len(); got != 2 {
		t.Errorf("Len = %d, want 2", got)
	}

	g.release()
	settle(t, s)
	if e, pending, stored := where(s, "d/0"); pending || !stored || e.state.Load() != stLive || e.dropped.Load() {
		t.Errorf("d/0 after the resolver: pending %v, stored %v, state %d, dropped %v; want stored and live", pending, stored, e.state.Load(), e.dropped.Load())
	}
	if r := do1(t, s, backend.ExistsOp("d/0")); r.Value != 4 {
		t.Errorf("d/0 = %+v, want 4", r)
	}
	if got := s.Len(); got != 2 {
		t.Errorf("Len = %d, want 2", got)
	}
}

// TestRejectedSetIsRetried makes ristretto lose a pending entry's item the
// way a rejection by its policy would (OnReject, then OnExit): the key must
// keep working and be Set again.
func TestRejectedSetIsRetried(t *testing.T) {
	s, g := stalledStore(t)
	do1(t, s, backend.IncrOp("r/0", 2, time.Hour))
	e, pending, _ := where(s, "r/0")
	if !pending {
		t.Fatal("r/0 is not pending")
	}
	// Behind the store's back, under the stripe lock: remove the item
	// once ristretto has applied it, and report it rejected. OnExit then
	// sees a dropped entry, and must leave it alone.
	st := &s.stripes[stripeOf(e.h)]
	st.mu.Lock()
	s.cache.Del(e.h)
	rejected(&ristretto.Item[*entry]{Value: e})
	st.mu.Unlock()
	g.release()
	s.waitApplied()
	if _, _, stored := where(s, "r/0"); stored {
		t.Fatal("r/0 still in ristretto after its Del")
	}
	if r := do1(t, s, backend.IncrOp("r/0", 1, time.Hour)); r.Value != 3 {
		t.Errorf("incr r/0 = %+v, want 3", r)
	}
	settle(t, s)
	if e, pending, stored := where(s, "r/0"); pending || !stored || e.state.Load() != stLive {
		t.Errorf("r/0 after the resolver: pending %v, stored %v; want stored and live", pending, stored)
	}
	if r := do1(t, s, backend.ExistsOp("r/0")); r.Value != 3 {
		t.Errorf("r/0 = %+v, want 3", r)
	}
	if got := s.Len(); got != 2 {
		t.Errorf("Len = %d, want 2", got)
	}
}

// TestPendingExpiresInRistretto lets pending entries expire and be
// reclaimed by ristretto's cleanup before the store has confirmed them:
// OnExit must uncount them, and the resolver drop them.
func TestPendingExpiresInRistretto(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := newHooked(&Options{ReclaimDelay: time.Nanosecond}, hooks{manual: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fill(t, s, "short/", 50, time.Second, one)
		fill(t, s, "long/", 50, time.Hour, one)
		s.waitApplied() // applied, not confirmed
		if got := s.Len(); got != 100 {
			t.Fatalf("Len = %d, want 100", got)
		}
		// Past the expiry, a 5 s bucket and a 2.5 s tick.
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := s.Len(); got != 50 {
			t.Errorf("Len after the short keys' cleanup = %d, want 50", got)
		}
		settle(t, s)
		for i := range 50 {
			if _, pending, stored := where(s, fmt.Sprint("short/", i)); pending || stored {
				t.Fatalf("short/%d: pending %v, stored %v; want neither", i, pending, stored)
			}
			if e, pending, stored := where(s, fmt.Sprint("long/", i)); pending || !stored || e.state.Load() != stLive {
				t.Fatalf("long/%d: pending %v, stored %v; want stored and live", i, pending, stored)
			}
		}
		if got := s.Len(); got != 50 {
			t.Errorf("Len = %d, want 50", got)
		}
	})
}

// TestResolverDrains checks that the resolver goroutine confirms every
// pending entry on its own, and goes idle.
func TestResolverDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStore(t, nil)
		fill(t, s, "k/", 5000, time.Hour, one)
		do(t, s, backend.DeleteOp("k/0"), backend.ExpireOp("k/1", backend.NoExpiry))
		// The resolver takes a round, and another resolveEvery later for
		// the entries Set during the first.
		for range 3 {
			time.Sleep(resolveEvery)
			synctest.Wait()
		}
		if s.anyDirty() || !s.idle.Load() {
			t.Fatalf("resolver left dirty stripes (%v) or is not idle (%v)", s.anyDirty(), s.idle.Load())
		}
		n := 0
		for i := range s.stripes {
			s.stripes[i].mu.Lock()
			n += len(s.stripes[i].pending)
			s.stripes[i].mu.Unlock()
		}
		if n != 0 {
			t.Errorf("%d entries left pending", n)
		}
		if got := s.Len(); got != 4999 {
			t.Errorf("Len = %d, want 4999", got)
		}
	})
}
