package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// do applies ops and fails the test on error.
func (e *env) do(t *testing.T, ops ...backend.Op) []backend.Result {
	t.Helper()
	res := make([]backend.Result, len(ops))
	if err := e.b.Do(e.ctx, ops, res); err != nil {
		t.Fatalf("Do(%s): %v", describe(ops), err)
	}
	return res
}

func (e *env) do1(t *testing.T, op backend.Op) backend.Result {
	t.Helper()
	return e.do(t, op)[0]
}

func describe(ops []backend.Op) string {
	if len(ops) == 1 {
		op := ops[0]
		return fmt.Sprintf("%s %q delta=%d ttl=%v", op.Kind, trunc(op.Key), op.Delta, op.TTL)
	}
	return fmt.Sprintf("%d ops", len(ops))
}

func trunc(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%s...(%d bytes)", s[:32], len(s))
	}
	return s
}

// sleepUntil sleeps until deadline (real or fake time).
func sleepUntil(deadline time.Time) {
	if d := time.Until(deadline); d > 0 {
		time.Sleep(d)
	}
}

// late reports whether the call just made may have reached the store after
// deadline, which makes a check that the key still existed inconclusive:
// the test goroutine woke, or the call took, too late (a loaded machine).
// With fake time it is never late.
func (e *env) late(t *testing.T, deadline time.Time) bool {
	t.Helper()
	if now := time.Now(); now.After(deadline) {
		t.Logf("inconclusive: the check ran %v after the deadline it needed to beat", now.Sub(deadline))
		return true
	}
	return false
}

// checkTTL fails unless r is a found key whose remaining TTL is within
// (0, want+granularity].
func (e *env) checkTTL(t *testing.T, what string, r backend.Result, want time.Duration) {
	t.Helper()
	if !r.Found {
		t.Fatalf("%s: key not found", what)
	}
	if r.TTL <= 0 || r.TTL > want+e.h.Granularity {
		t.Errorf("%s: remaining TTL %v, want in (0, %v]", what, r.TTL, want+e.h.Granularity)
	}
}

func (e *env) checkMissing(t *testing.T, what string, r backend.Result) {
	t.Helper()
	if r.Found || r.Value != 0 || r.TTL != 0 {
		t.Errorf("%s: got %+v, want a missing key (zero Result)", what, r)
	}
}

// oddTTL is a TTL off the round intervals (seconds, the TTL unit) at which
// a store's sweeper may run, for the checks of what a store's own
// operations do with a key that has expired: with fake time, a sweeper
// ticking at round intervals has not removed the key yet when they look
// (see goneAt), so they see what the operation itself does with it.
func (e *env) oddTTL() time.Duration { return e.unit + e.unit/3 }

// goneAt returns when a key given ttl by a call that returned at t1 must be
// gone: past its TTL, the granularity and the margin; for a store with
// exact expiry on fake time, at the very instant of its expiry (the key
// expired no later than that), before any sweep that runs at round
// intervals can have removed a key given an odd TTL.
func (e *env) goneAt(t1 time.Time, ttl time.Duration) time.Time {
	if e.h.FakeTime && e.h.Granularity == 0 {
		return t1.Add(ttl)
	}
	return t1.Add(ttl + e.h.Granularity + e.margin)
}

func testCapabilities(t *testing.T, e *env) {
	_, ok := e.b.(backend.Lister)
	if ok != e.h.Lister {
		t.Errorf("store implements backend.Lister: %v; harness declares Lister: %v", ok, e.h.Lister)
	}
	if _, ok := e.b.(backend.Journal); ok != e.h.Journal {
		t.Errorf("store implements backend.Journal: %v; harness declares Journal: %v", ok, e.h.Journal)
	}
	if g, ok := e.b.(backend.ExpiryGuard); (ok && g.GuardsExpiry()) != e.h.ExpiryGuard {
		t.Errorf("store guards expiry (backend.ExpiryGuard): %v; harness declares ExpiryGuard: %v", ok && g.GuardsExpiry(), e.h.ExpiryGuard)
	}
}

func testCreateAndIncrement(t *testing.T, e *env) {
	ttl := 10 * e.unit
	tests := []struct {
		delta     int64
		wantValue int64
	}{
		{1, 1},
		{1, 2},
		{5, 7},
		{1 << 40, 1<<40 + 7},
	}
	for i, tc := range tests {
		r := e.do1(t, backend.IncrOp("counter", tc.delta, ttl))
		if r.Value != tc.wantValue {
			t.Fatalf("step %d: incr by %d = %d, want %d", i, tc.delta, r.Value, tc.wantValue)
		}
		e.checkTTL(t, fmt.Sprintf("step %d", i), r, ttl)
	}
	r := e.do1(t, backend.ExistsOp("counter"))
	if r.Value != 1<<40+7 {
		t.Errorf("exists: value %d, want %d", r.Value, int64(1<<40+7))
	}
	e.checkTTL(t, "exists", r, ttl)

	// A key created with NoExpiry persists.
	r = e.do1(t, backend.IncrOp("forever", 3, backend.NoExpiry))
	if !r.Found || r.Value != 3 || r.TTL != backend.NoExpiry {
		t.Errorf("incr with NoExpiry: %+v, want value 3, TTL NoExpiry", r)
	}
	// Other keys are untouched.
	e.checkMissing(t, "unrelated key", e.do1(t, backend.ExistsOp("counter2")))
}

func testNegativeDelta(t *testing.T, e *env) {
	ttl := 10 * e.unit
	// On a missing key: nothing is created.
	r := e.do1(t, backend.IncrOp("missing", -1, ttl))
	e.checkMissing(t, "decr of a missing key", r)
	e.checkMissing(t, "after decr of a missing key", e.do1(t, backend.ExistsOp("missing")))

	// A decrement that brings a counter to zero, or would take it below,
	// removes the key; a positive result keeps the TTL; a decrement of a
	// removed key creates nothing.
	tests := []struct {
		delta int64
		want  int64
	}{
		{5, 5},
		{-2, 3},
		{-3, 0}, // reaches zero: removed
		{-1, 0}, // a removed key stays missing
		{3, 3},  // created afresh
		{-1 << 40, 0},
		{2, 2},
		{-5, 0},
		{-1, 0},
	}
	for i, tc := range tests {
		what := fmt.Sprintf("step %d (incr by %d)", i, tc.delta)
		r := e.do1(t, backend.IncrOp("k", tc.delta, ttl))
		if r.Value != tc.want {
			t.Fatalf("%s = %d, want %d", what, r.Value, tc.want)
		}
		if tc.want == 0 {
			e.checkMissing(t, what, r)
			e.checkMissing(t, what+", then exists", e.do1(t, backend.ExistsOp("k")))
			continue
		}
		e.checkTTL(t, what, r, ttl)
	}
	// The same within one batch: the decrement that reaches zero removes
	// the key before the operations after it.
	rs := e.do(t,
		backend.IncrOp("b", 2, ttl),
		backend.IncrOp("b", -2, ttl),
		backend.ExistsOp("b"),
		backend.IncrOp("b", -1, ttl),
		backend.IncrOp("b", 0, ttl),
	)
	for i, r := range rs[1:] {
		e.checkMissing(t, fmt.Sprintf("batch op %d, after a decrement to zero", i+1), r)
	}
	e.checkMissing(t, "exists after a batch that decremented to zero", e.do1(t, backend.ExistsOp("b")))
	// A key that never expires is removed too.
	e.do1(t, backend.IncrOp("p", 1, backend.NoExpiry))
	e.checkMissing(t, "decrement to zero of a key without expiry", e.do1(t, backend.IncrOp("p", -1, ttl)))
	e.checkMissing(t, "exists after it", e.do1(t, backend.ExistsOp("p")))
}

// testConcurrentGiveBack is the policy's reserve and give-back under
// contention: goroutines each add 1 to a key and take it back, over and
// over. A decrement that brings the key to zero removes it; none may lose
// a concurrent increment, and none may take the key below zero. Starting
// from base > 0 the key never reaches zero: it ends holding base. Starting
// missing, it ends missing: every pair nets zero.
func testConcurrentGiveBack(t *testing.T, e *env) {
	const (
		workers = 16
		rounds  = 200
	)
	ttl := 100 * e.unit
	for _, base := range []int64{5, 0} {
		key := fmt.Sprintf("giveback/%d", base)
		if base > 0 {
			e.do1(t, backend.IncrOp(key, base, ttl))
		}
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for g := range workers {
			wg.Go(func() {
				for i := range rounds {
					up, err := backend.Do1(e.ctx, e.b, backend.IncrOp(key, 1, ttl))
					if err == nil && (!up.Found || up.Value < base+1 || up.Value > base+workers) {
						err = fmt.Errorf("increment: %+v, want a key holding %d to %d", up, base+1, base+workers)
					}
					var down backend.Result
					if err == nil {
						down, err = backend.Do1(e.ctx, e.b, backend.IncrOp(key, -1, ttl))
					}
					if err == nil {
						switch {
						case down.Value < base || down.Value > base+workers-1:
							err = fmt.Errorf("decrement: %+v, want a value of %d to %d", down, base, base+workers-1)
						case down.Value == 0 && (down.Found || down.TTL != 0):
							err = fmt.Errorf("decrement to zero: %+v, want the key removed (zero Result)", down)
						case down.Value > 0 && !down.Found:
							err = fmt.Errorf("decrement: %+v, value without a key", down)
						}
					}
					if err != nil {
						errs <- fmt.Errorf("base %d, goroutine %d, round %d: %w", base, g, i, err)
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
		r := e.do1(t, backend.ExistsOp(key))
		if base > 0 {
			if !r.Found || r.Value != base {
				t.Errorf("base %d: after %d goroutines x %d (+1, -1) pairs: %+v, want the key holding %d", base, workers, rounds, r, base)
			}
			continue
		}
		e.checkMissing(t, fmt.Sprintf("base 0: after %d goroutines x %d (+1, -1) pairs", workers, rounds), r)
	}
}

func testZeroDelta(t *testing.T, e *env) {
	ttl := 10 * e.unit
	// Incr by zero reads: it never creates a key, whatever its TTL.
	for _, ttl := range []time.Duration{0, ttl, backend.NoExpiry} {
		e.checkMissing(t, fmt.Sprintf("incr 0 (ttl %v) of a missing key", ttl), e.do1(t, backend.IncrOp("z", 0, ttl)))
	}
	e.do1(t, backend.IncrOp("z", 4, ttl))
	r := e.do1(t, backend.IncrOp("z", 0, 0))
	if r.Value != 4 {
		t.Errorf("incr 0: value %d, want 4", r.Value)
	}
	e.checkTTL(t, "incr 0", r, ttl)
}

func testInvalid(t *testing.T, e *env) {
	tests := []struct {
		name string
		op   backend.Op
	}{
		{"incr with zero TTL", backend.IncrOp("k", 1, 0)},
		{"incr with negative TTL", backend.IncrOp("k", 1, -2*time.Second)},
		{"expire with zero TTL", backend.ExpireOp("k", 0)},
		{"expire with negative TTL", backend.ExpireOp("k", -time.Minute)},
		{"empty key", backend.IncrOp("", 1, time.Minute)},
		{"unknown kind", backend.Op{Kind: 99, Key: "k"}},
	}
	e.do1(t, backend.IncrOp("k", 1, 10*e.unit))
	for _, tc := range tests {
		res := make([]backend.Result, 1)
		err := e.b.Do(e.ctx, []backend.Op{tc.op}, res)
		if !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", tc.name, err)
		}
	}
	// Too few results for the ops.
	err := e.b.Do(e.ctx, []backend.Op{backend.ExistsOp("k"), backend.ExistsOp("k")}, make([]backend.Result, 1))
	if !errors.Is(err, backend.ErrInvalid) {
		t.Errorf("short results: err = %v, want ErrInvalid", err)
	}
	// Nothing was changed by the invalid calls, and the key is still usable.
	r := e.do1(t, backend.ExistsOp("k"))
	if r.Value != 1 {
		t.Errorf("after invalid calls: value %d, want 1", r.Value)
	}
	e.checkTTL(t, "after invalid calls", r, 10*e.unit)
}

func testIncrementKeepsTTL(t *testing.T, e *env) {
	ttl := e.unit
	t0 := time.Now()
	e.do1(t, backend.IncrOp("k", 1, ttl))
	t1 := time.Now()
	// Increments with a longer TTL, a persisting TTL and a negative delta
	// keep the original one.
	for i, op := range []backend.Op{
		backend.IncrOp("k", 1, 100*ttl),
		backend.IncrOp("k", 1, backend.NoExpiry),
		backend.IncrOp("k", -1, 100*ttl),
	} {
		r := e.do1(t, op)
		e.checkTTL(t, fmt.Sprintf("incr %d", i), r, ttl)
	}
	sleepUntil(t0.Add(ttl / 2))
	r := e.do1(t, backend.IncrOp("k", 1, 100*ttl))
	if r.Value != 3 {
		t.Errorf("value %d, want 3", r.Value)
	}
	e.checkTTL(t, "halfway", r, ttl-time.Since(t1)+e.margin)
	sleepUntil(t0.Add(ttl - e.margin))
	if r := e.do1(t, backend.ExistsOp("k")); (!r.Found || r.Value != 3) && !e.late(t, t0.Add(ttl)) {
		t.Errorf("just before the original TTL: %+v, want value 3", r)
	}
	sleepUntil(t1.Add(ttl + e.h.Granularity + e.margin))
	e.checkMissing(t, "after the original TTL", e.do1(t, backend.ExistsOp("k")))
}

func testExpireSets(t *testing.T, e *env) {
	long := 100 * e.unit
	e.do1(t, backend.IncrOp("shorten", 1, long))
	e.do1(t, backend.IncrOp("lengthen", 1, e.unit))
	t0 := time.Now()
	rs := e.do(t, backend.ExpireOp("shorten", e.unit), backend.ExpireOp("lengthen", 3*e.unit))
	t1 := time.Now()
	e.checkTTL(t, "expire shorten", rs[0], e.unit)
	e.checkTTL(t, "expire lengthen", rs[1], 3*e.unit)
	if rs[0].Value != 0 && rs[0].Value != 1 {
		t.Errorf("expire result value %d: want 1 (or 0 for a store that does not read it)", rs[0].Value)
	}

	sleepUntil(t0.Add(e.unit - e.margin))
	rs = e.do(t, backend.ExistsOp("shorten"), backend.ExistsOp("lengthen"))
	if (!rs[0].Found || rs[0].Value != 1) && !e.late(t, t0.Add(e.unit)) {
		t.Errorf("shortened key before its new TTL: %+v, want value 1", rs[0])
	}
	sleepUntil(t1.Add(e.unit + e.h.Granularity + e.margin))
	rs = e.do(t, backend.ExistsOp("shorten"), backend.ExistsOp("lengthen"))
	e.checkMissing(t, "shortened key after its new TTL", rs[0])
	if !rs[1].Found || rs[1].Value != 1 {
		t.Errorf("lengthened key after its old TTL: %+v, want it to exist with value 1", rs[1])
	}
	sleepUntil(t1.Add(3*e.unit + e.h.Granularity + e.margin))
	e.checkMissing(t, "lengthened key after its new TTL", e.do1(t, backend.ExistsOp("lengthen")))
}

func testExpirePersists(t *testing.T, e *env) {
	t0 := time.Now()
	e.do1(t, backend.IncrOp("k", 2, e.unit))
	r := e.do1(t, backend.ExpireOp("k", backend.NoExpiry))
	if !r.Found || r.TTL != backend.NoExpiry {
		t.Fatalf("expire NoExpiry: %+v, want Found with TTL NoExpiry", r)
	}
	sleepUntil(t0.Add(2*e.unit + e.h.Granularity + e.margin))
	r = e.do1(t, backend.ExistsOp("k"))
	if !r.Found || r.Value != 2 || r.TTL != backend.NoExpiry {
		t.Errorf("persisted key after its old TTL: %+v, want value 2 and TTL NoExpiry", r)
	}
	// An increment keeps "no expiry".
	r = e.do1(t, backend.IncrOp("k", 1, e.unit))
	if r.Value != 3 || r.TTL != backend.NoExpiry {
		t.Errorf("incr of a persisted key: %+v, want value 3 and TTL NoExpiry", r)
	}
	// And an expiry can be set again.
	t1 := time.Now()
	r = e.do1(t, backend.ExpireOp("k", e.unit))
	e.checkTTL(t, "expire after persist", r, e.unit)
	sleepUntil(t1.Add(e.unit + e.h.Granularity + e.margin))
	e.checkMissing(t, "after the TTL set again", e.do1(t, backend.ExistsOp("k")))
}

func testExpireMissing(t *testing.T, e *env) {
	for _, ttl := range []time.Duration{e.unit, backend.NoExpiry} {
		r := e.do1(t, backend.ExpireOp("missing", ttl))
		e.checkMissing(t, fmt.Sprintf("expire %v of a missing key", ttl), r)
		e.checkMissing(t, "exists after expire of a missing key", e.do1(t, backend.ExistsOp("missing")))
	}
	// Nor does it revive an expired key.
	e.do1(t, backend.IncrOp("gone", 1, e.oddTTL()))
	sleepUntil(e.goneAt(time.Now(), e.oddTTL()))
	e.checkMissing(t, "expire of an expired key", e.do1(t, backend.ExpireOp("gone", backend.NoExpiry)))
	e.checkMissing(t, "exists after expire of an expired key", e.do1(t, backend.ExistsOp("gone")))
}

func testExpiredNeverExists(t *testing.T, e *env) {
	ttl := e.oddTTL()
	e.do(t,
		backend.IncrOp("a", 5, ttl),
		backend.IncrOp("b", 5, ttl),
		backend.IncrOp("c", 5, ttl),
		backend.IncrOp("d", 5, ttl),
		backend.IncrOp("e", 5, ttl),
		backend.IncrOp("f", 5, ttl),
	)
	e.do1(t, backend.ExpireOp("e", 2*ttl))
	t1 := time.Now()
	sleepUntil(e.goneAt(t1, ttl))
	// Every kind of operation sees the expired keys as missing.
	e.checkMissing(t, "exists", e.do1(t, backend.ExistsOp("a")))
	e.checkMissing(t, "incr 0", e.do1(t, backend.IncrOp("b", 0, e.unit)))
	e.checkMissing(t, "decr", e.do1(t, backend.IncrOp("c", -1, e.unit)))
	e.checkMissing(t, "expire", e.do1(t, backend.ExpireOp("d", 10*e.unit)))
	e.checkMissing(t, "exists after expire", e.do1(t, backend.ExistsOp("d")))
	// Each kind meets its own expired key, not one an earlier operation
	// found expired (and may have removed).
	if r := e.do1(t, backend.DeleteOp("f")); r.Found {
		t.Errorf("delete of an expired key reports it existed")
	}
	if r := e.do1(t, backend.DeleteOp("a")); r.Found {
		t.Errorf("delete of an expired key, read since, reports it existed")
	}
	if r := e.do1(t, backend.ExistsOp("e")); !r.Found || r.Value != 5 {
		t.Errorf("key with a longer TTL: %+v, want it to exist with value 5", r)
	}
	// An increment starts afresh, with the new TTL.
	t2 := time.Now()
	r := e.do1(t, backend.IncrOp("a", 1, 3*e.unit))
	if r.Value != 1 {
		t.Errorf("incr of an expired key = %d, want 1 (a fresh counter)", r.Value)
	}
	e.checkTTL(t, "incr of an expired key", r, 3*e.unit)
	sleepUntil(t2.Add(e.unit + e.h.Granularity + e.margin))
	if r := e.do1(t, backend.ExistsOp("a")); !r.Found || r.Value != 1 {
		t.Errorf("recreated key after the old TTL: %+v, want value 1", r)
	}
}

func testExpiryNeverEarly(t *testing.T, e *env) {
	// Several TTLs that are not multiples of the granularity, so that a
	// store rounding down is caught.
	ttls := []time.Duration{e.unit, e.unit + e.unit/3, 2*e.unit - e.unit/7}
	if e.h.Granularity > 0 {
		ttls = append(ttls, e.h.Granularity+e.h.Granularity/2)
	}
	ops := make([]backend.Op, len(ttls))
	for i, ttl := range ttls {
		ops[i] = backend.IncrOp(fmt.Sprintf("k%d", i), 1, ttl)
	}
	t0 := time.Now()
	rs := e.do(t, ops...)
	t1 := time.Now()
	type check struct {
		at      time.Time
		i       int
		present bool
	}
	// Exact expiry, on a clock that stood still while the keys were made:
	// each is found until the last nanosecond of its TTL, with exactly
	// the TTL it has left, and gone from the very instant of its expiry
	// (not found with a TTL of 0).
	exact := e.h.FakeTime && e.h.Granularity == 0 && t1.Equal(t0)
	var checks []check
	for i, ttl := range ttls {
		e.checkTTL(t, fmt.Sprintf("created with TTL %v", ttl), rs[i], ttl)
		// Just before the TTL: present, with a TTL that has counted down.
		checks = append(checks, check{t0.Add(ttl - e.margin), i, true})
		// After TTL plus granularity: gone.
		checks = append(checks, check{t1.Add(ttl + e.h.Granularity + e.margin), i, false})
		if exact {
			checks = append(checks, check{t0.Add(ttl - 1), i, true}, check{t0.Add(ttl), i, false})
		}
	}
	slices.SortFunc(checks, func(a, b check) int { return a.at.Compare(b.at) })
	for _, c := range checks {
		sleepUntil(c.at)
		ttl := ttls[c.i]
		r := e.do1(t, backend.ExistsOp(ops[c.i].Key))
		switch {
		case c.present && !r.Found:
			if !e.late(t, t0.Add(ttl)) {
				t.Errorf("key with TTL %v gone %v after creation, before its TTL", ttl, time.Since(t0))
			}
		case c.present && exact:
			if left := time.Until(t0.Add(ttl)); r.TTL != left {
				t.Errorf("key with TTL %v, %v after creation: remaining TTL %v, want exactly %v (the store declares exact expiry)", ttl, time.Since(t0), r.TTL, left)
			}
		case c.present:
			if bound := t1.Sub(t0) + e.h.Granularity + 2*e.margin; r.TTL > bound {
				t.Errorf("key with TTL %v: remaining TTL %v near its end, want at most %v", ttl, r.TTL, bound)
			}
		default:
			e.checkMissing(t, fmt.Sprintf("key with TTL %v, after TTL plus granularity", ttl), r)
		}
	}
}

func testDeleteMissing(t *testing.T, e *env) {
	r := e.do1(t, backend.DeleteOp("missing"))
	if r.Found {
		t.Errorf("delete of a missing key reports it existed")
	}
	r = e.do1(t, backend.DeleteOp("missing"))
	if r.Found {
		t.Errorf("second delete of a missing key reports it existed")
	}
}

func testDelete(t *testing.T, e *env) {
	e.do(t, backend.IncrOp("a", 3, e.unit), backend.IncrOp("b", 4, backend.NoExpiry))
	rs := e.do(t, backend.DeleteOp("a"), backend.DeleteOp("b"))
	if !rs[0].Found || !rs[1].Found {
		t.Errorf("delete of existing keys: %+v, want both Found", rs)
	}
	rs = e.do(t, backend.ExistsOp("a"), backend.ExistsOp("b"))
	e.checkMissing(t, "a after delete", rs[0])
	e.checkMissing(t, "b after delete", rs[1])
	// A deleted key starts afresh, with a new TTL.
	r := e.do1(t, backend.IncrOp("b", 1, e.unit))
	if r.Value != 1 {
		t.Errorf("incr after delete = %d, want 1", r.Value)
	}
	e.checkTTL(t, "incr after delete", r, e.unit)
}

// model is the expected state of the keys a test touched.
type model map[string]int64

func testMixedBatch(t *testing.T, e *env) {
	const n = 240
	ttl := 20 * e.unit
	keys := make([]string, n)
	ops := make([]backend.Op, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("batch/%03d", i)
		ops[i] = backend.IncrOp(keys[i], int64(i+1), ttl)
	}
	rs := e.do(t, ops...)
	m := model{}
	for i, r := range rs {
		if r.Value != int64(i+1) {
			t.Fatalf("initial incr of %s = %d, want %d", keys[i], r.Value, i+1)
		}
		e.checkTTL(t, keys[i], r, ttl)
		m[keys[i]] = int64(i + 1)
	}

	// One batch mixing every kind of operation over the existing keys and
	// as many missing ones.
	ops = ops[:0]
	type want struct {
		found bool
		value int64
		ttl   time.Duration // 0: any valid; NoExpiry; or the TTL bound
	}
	var wants []want
	for i, k := range keys {
		v := m[k]
		switch i % 6 {
		case 0:
			ops = append(ops, backend.IncrOp(k, 2, ttl))
			m[k] = v + 2
			wants = append(wants, want{true, v + 2, ttl})
		case 1:
			ops = append(ops, backend.ExistsOp(k))
			wants = append(wants, want{true, v, ttl})
		case 2:
			ops = append(ops, backend.ExpireOp(k, backend.NoExpiry))
			wants = append(wants, want{true, -1, backend.NoExpiry})
		case 3:
			ops = append(ops, backend.DeleteOp(k))
			delete(m, k)
			wants = append(wants, want{true, -1, -2})
		case 4:
			ops = append(ops, backend.IncrOp(k, -1, ttl))
			m[k] = v - 1
			wants = append(wants, want{true, v - 1, ttl})
		case 5:
			ops = append(ops, backend.ExpireOp(k, 2*ttl))
			wants = append(wants, want{true, -1, 2 * ttl})
		}
		missing := fmt.Sprintf("missing/%03d", i)
		switch i % 4 {
		case 0:
			ops = append(ops, backend.ExistsOp(missing))
			wants = append(wants, want{false, 0, 0})
		case 1:
			ops = append(ops, backend.DeleteOp(missing))
			wants = append(wants, want{false, -1, -2})
		case 2:
			ops = append(ops, backend.ExpireOp(missing, ttl))
			wants = append(wants, want{false, 0, 0})
		case 3:
			ops = append(ops, backend.IncrOp(missing, 7, ttl))
			m[missing] = 7
			wants = append(wants, want{true, 7, ttl})
		}
	}
	rs = e.do(t, ops...)
	for i, r := range rs {
		w, op := wants[i], ops[i]
		what := fmt.Sprintf("op %d (%s %s)", i, op.Kind, op.Key)
		if r.Found != w.found {
			t.Errorf("%s: Found = %v, want %v", what, r.Found, w.found)
			continue
		}
		if w.value >= 0 && r.Value != w.value {
			t.Errorf("%s: Value = %d, want %d", what, r.Value, w.value)
		}
		switch {
		case w.ttl == -2: // delete: no TTL reported
		case !w.found:
			e.checkMissing(t, what, r)
		case w.ttl == backend.NoExpiry:
			if r.TTL != backend.NoExpiry {
				t.Errorf("%s: TTL %v, want NoExpiry", what, r.TTL)
			}
		default:
			e.checkTTL(t, what, r, w.ttl)
		}
	}

	// Read everything back in one more batch.
	ops = ops[:0]
	var all []string
	for i := range keys {
		all = append(all, keys[i], fmt.Sprintf("missing/%03d", i))
	}
	for _, k := range all {
		ops = append(ops, backend.ExistsOp(k))
	}
	rs = e.do(t, ops...)
	for i, k := range all {
		v, ok := m[k]
		if rs[i].Found != ok || rs[i].Value != v {
			t.Errorf("read back %s: %+v, want found=%v value=%d", k, rs[i], ok, v)
		}
	}
}

func testSameKeyInBatch(t *testing.T, e *env) {
	ttl := 10 * e.unit
	rs := e.do(t,
		backend.IncrOp("k", 1, ttl),
		backend.IncrOp("k", 1, ttl),
		backend.ExistsOp("k"),
		backend.DeleteOp("k"),
		backend.ExistsOp("k"),
		backend.IncrOp("k", 5, ttl),
		backend.IncrOp("k", -2, ttl),
		backend.ExpireOp("k", backend.NoExpiry),
		backend.ExistsOp("k"),
	)
	wants := []struct {
		found bool
		value int64
	}{{true, 1}, {true, 2}, {true, 2}, {true, -1}, {false, 0}, {true, 5}, {true, 3}, {true, -1}, {true, 3}}
	for i, w := range wants {
		if rs[i].Found != w.found || (w.value >= 0 && rs[i].Value != w.value) {
			t.Errorf("op %d: %+v, want found=%v value=%d (ops on one key apply in batch order)", i, rs[i], w.found, w.value)
		}
	}
	if rs[8].TTL != backend.NoExpiry {
		t.Errorf("last exists: TTL %v, want NoExpiry", rs[8].TTL)
	}
}

// testReadsAfterWrites is the store-buffering litmus test: two callers at
// once each increment their own key and read the other's, in one batch, on
// two keys with the same hash tag. If reads may overtake the batch's
// writes, both can miss the other's write; a store that reads after writing
// never lets both miss.
func testReadsAfterWrites(t *testing.T, e *env) {
	const pairs = 200
	ttl := 20 * e.unit
	var wg sync.WaitGroup
	seen := make([][2]bool, pairs)
	errs := make(chan error, 2*pairs)
	for i := range pairs {
		a, b := fmt.Sprintf("litmus:a:{%d}", i), fmt.Sprintf("litmus:b:{%d}", i)
		start := make(chan struct{})
		for side, keys := range [2][2]string{{a, b}, {b, a}} {
			wg.Go(func() {
				<-start
				res := make([]backend.Result, 2)
				ops := []backend.Op{backend.IncrOp(keys[0], 1, ttl), backend.ExistsOp(keys[1])}
				if err := e.b.Do(e.ctx, ops, res); err != nil {
					errs <- err
					return
				}
				seen[i][side] = res[1].Found
			})
		}
		close(start)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, s := range seen {
		if !s[0] && !s[1] {
			t.Errorf("pair %d: each caller's read missed the other's write: a read overtook its batch's write", i)
		}
	}
}

const (
	goroutines = 64
	perG       = 500
)

// hammer runs goroutines that each call op perG times, and reports the first
// error back to the test goroutine.
func (e *env) hammer(t *testing.T, op func(g, i int) []backend.Op) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			var res [8]backend.Result
			for i := range perG {
				ops := op(g, i)
				if err := e.b.Do(e.ctx, ops, res[:len(ops)]); err != nil {
					errs <- fmt.Errorf("goroutine %d, call %d: %w", g, i, err)
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
}

func testConcurrentShared(t *testing.T, e *env) {
	ttl := 100 * e.unit
	e.hammer(t, func(g, i int) []backend.Op {
		return []backend.Op{backend.IncrOp("shared", 1, ttl)}
	})
	r := e.do1(t, backend.ExistsOp("shared"))
	if want := int64(goroutines * perG); r.Value != want {
		t.Errorf("%d goroutines x %d increments of one key = %d, want %d (lost %d)", goroutines, perG, r.Value, want, want-r.Value)
	}
}

func testConcurrentDistinct(t *testing.T, e *env) {
	ttl := 100 * e.unit
	const nkeys = 64
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("distinct/%d", i)
	}
	// Every call increments two keys (one batch); every key starts missing,
	// so creation races too.
	e.hammer(t, func(g, i int) []backend.Op {
		return []backend.Op{
			backend.IncrOp(keys[(g+i)%nkeys], 1, ttl),
			backend.IncrOp(keys[(g*7+i*3+1)%nkeys], 2, ttl),
		}
	})
	want := make([]int64, nkeys)
	for g := range goroutines {
		for i := range perG {
			want[(g+i)%nkeys]++
			want[(g*7+i*3+1)%nkeys] += 2
		}
	}
	ops := make([]backend.Op, nkeys)
	for i, k := range keys {
		ops[i] = backend.ExistsOp(k)
	}
	var total, wantTotal int64
	for i, r := range e.do(t, ops...) {
		total += r.Value
		wantTotal += want[i]
		if r.Value != want[i] {
			t.Errorf("%s = %d, want %d", keys[i], r.Value, want[i])
		}
	}
	if total != wantTotal {
		t.Errorf("total over %d keys = %d, want %d (lost %d)", nkeys, total, wantTotal, wantTotal-total)
	}
}

// HostileKeys returns keys that break naive stores: long ones, spaces and
// control bytes, invalid UTF-8, separators and glob characters, and pairs that
// differ only in their last byte or in a way a careless escaping would erase.
func HostileKeys() []string {
	long := strings.Repeat("k", 1023)
	return []string{
		long + "1", long + "2", // 1 KiB, equal but for the last byte
		strings.Repeat("x", 249) + "\x00", strings.Repeat("x", 249) + "\x01",
		strings.Repeat("y", 250), strings.Repeat("y", 251),
		strings.Repeat("€", 2000) + "a", strings.Repeat("€", 2000) + "b",
		strings.Repeat("z", 40000), // beyond bbolt's raw key limit
		"with space", "with_space", "with%20space", "with+space",
		"new\nline", "new\rline", "tab\tkey",
		"nul\x00byte", "nul", "nul\x00", "\x00",
		"\xff\xfe\xfd invalid utf-8", "\xc3\x28",
		"a:b", "a::b", "{tag}", "}{", "{", "}", "{a}:{b}",
		"*", "?", "[x]", "\\", "\\*", "a*",
		"k", "K", "k ", " k",
	}
}

func testHostileKeys(t *testing.T, e *env) {
	keys := HostileKeys()
	ttl := 20 * e.unit
	// One key at a time, then all of them in one batch.
	for i, k := range keys {
		r := e.do1(t, backend.IncrOp(k, int64(i+1), ttl))
		if r.Value != int64(i+1) {
			t.Errorf("incr of key %d %q = %d, want %d (collides with another key)", i, trunc(k), r.Value, i+1)
		}
	}
	ops := make([]backend.Op, len(keys))
	for i, k := range keys {
		ops[i] = backend.IncrOp(k, int64(i+1), ttl)
	}
	for i, r := range e.do(t, ops...) {
		if r.Value != 2*int64(i+1) {
			t.Errorf("batched incr of key %d %q = %d, want %d", i, trunc(keys[i]), r.Value, 2*(i+1))
		}
	}
	// Deleting every other key leaves the rest intact.
	for i, k := range keys {
		if i%2 == 0 {
			if r := e.do1(t, backend.DeleteOp(k)); !r.Found {
				t.Errorf("delete of key %d %q: not found", i, trunc(k))
			}
		}
	}
	for i, k := range keys {
		r := e.do1(t, backend.ExistsOp(k))
		if i%2 == 0 {
			e.checkMissing(t, fmt.Sprintf("deleted key %d %q", i, trunc(k)), r)
		} else if r.Value != 2*int64(i+1) {
			t.Errorf("key %d %q = %d after deleting others, want %d", i, trunc(k), r.Value, 2*(i+1))
		}
	}
}

// allKinds is one operation of every kind.
func allKinds(key string, ttl time.Duration) []backend.Op {
	return []backend.Op{
		backend.IncrOp(key, 1, ttl),
		backend.ExpireOp(key, ttl),
		backend.ExistsOp(key),
		backend.DeleteOp(key),
	}
}

func (e *env) checkPrompt(t *testing.T, ctx context.Context, want error) {
	t.Helper()
	for _, op := range allKinds("ctx", 10*e.unit) {
		start := time.Now()
		res := make([]backend.Result, 1)
		err := e.b.Do(ctx, []backend.Op{op}, res)
		took := time.Since(start)
		if !errors.Is(err, want) {
			t.Errorf("%s with a done context: err = %v, want one wrapping %v", op.Kind, err, want)
		}
		if took > e.h.callTimeout() {
			t.Errorf("%s with a done context took %v, want at most %v", op.Kind, took, e.h.callTimeout())
		}
	}
	// A batch too.
	start := time.Now()
	res := make([]backend.Result, 4)
	if err := e.b.Do(ctx, allKinds("ctx2", 10*e.unit), res); !errors.Is(err, want) {
		t.Errorf("batch with a done context: err = %v, want one wrapping %v", err, want)
	}
	if took := time.Since(start); took > e.h.callTimeout() {
		t.Errorf("batch with a done context took %v", took)
	}
}

func testCancelledContext(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	e.checkPrompt(t, ctx, context.Canceled)
	// The store still works with a live context.
	if r := e.do1(t, backend.IncrOp("after", 1, e.unit)); r.Value != 1 {
		t.Errorf("incr after a cancelled call = %d, want 1", r.Value)
	}
}

func testExpiredContext(t *testing.T, e *env) {
	ctx, cancel := context.WithDeadline(e.ctx, time.Now().Add(-time.Second))
	defer cancel()
	e.checkPrompt(t, ctx, context.DeadlineExceeded)
	if r := e.do1(t, backend.IncrOp("after", 1, e.unit)); r.Value != 1 {
		t.Errorf("incr after a timed-out call = %d, want 1", r.Value)
	}
}

func testClose(t *testing.T, e *env) {
	e.do1(t, backend.IncrOp("k", 1, e.unit))
	if err := e.b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, op := range allKinds("k", e.unit) {
		res := make([]backend.Result, 1)
		if err := e.b.Do(e.ctx, []backend.Op{op}, res); !errors.Is(err, backend.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", op.Kind, err)
		}
	}
	if l, ok := e.b.(backend.Lister); ok {
		// One pair, whose error wraps ErrClosed: a listing that yields
		// nothing would tell an operator there are no locks.
		yielded := false
		for k, err := range l.Keys(e.ctx, "") {
			yielded = true
			if !errors.Is(err, backend.ErrClosed) {
				t.Errorf("Keys after Close: yielded %q, %v; want an error wrapping ErrClosed", trunc(k), err)
			}
			break
		}
		if !yielded {
			t.Errorf("Keys after Close yielded nothing, and no error: want an error wrapping ErrClosed")
		}
	}
	// The suite closes the store again when the test ends: that must be
	// harmless too.
}

// collect returns the keys l yields for prefix, failing on an error or a
// key without the prefix. Duplicates are folded.
func collect(t *testing.T, ctx context.Context, l backend.Lister, prefix string) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	for k, err := range l.Keys(ctx, prefix) {
		if err != nil {
			t.Fatalf("Keys(%q): %v", prefix, err)
		}
		if !strings.HasPrefix(k, prefix) {
			t.Errorf("Keys(%q) yielded %q", prefix, trunc(k))
		}
		got[k] = true
	}
	return got
}

func (e *env) lister(t *testing.T) backend.Lister {
	l, ok := e.b.(backend.Lister)
	if !e.h.Lister || !ok {
		t.Skip("the harness declares no Lister") // Capabilities checks the declaration.
	}
	return l
}

func testListerAgrees(t *testing.T, e *env) {
	l := e.lister(t)
	if got := collect(t, e.ctx, l, ""); len(got) != 0 {
		t.Errorf("Keys of a fresh store: %d keys, want none", len(got))
	}
	long := 20 * e.unit
	live := map[string]bool{}
	var ops []backend.Op
	for i := range 300 {
		k := fmt.Sprintf("lock/%03d", i)
		ops = append(ops, backend.IncrOp(k, 1, long))
		live[k] = true
	}
	ops = append(ops,
		backend.IncrOp("lockless", 1, long),
		backend.IncrOp("other/1", 1, backend.NoExpiry),
		backend.IncrOp("lock/deleted", 1, long),
		backend.IncrOp("lock/short", 1, e.oddTTL()),
		backend.DeleteOp("lock/deleted"),
	)
	e.do(t, ops...)
	t1 := time.Now()
	// Decrementing to zero removes a key: it is listed no more.
	e.do1(t, backend.IncrOp("lock/000", -1, long))
	delete(live, "lock/000")
	sleepUntil(e.goneAt(t1, e.oddTTL()))

	got := collect(t, e.ctx, l, "lock/")
	for k := range live {
		if !got[k] {
			t.Errorf("Keys(\"lock/\") misses live key %q", k)
		}
	}
	for k := range got {
		if !live[k] {
			t.Errorf("Keys(\"lock/\") yields %q, which is deleted, expired or outside the prefix", k)
		}
	}
	// Every yielded key exists according to Exists.
	for k := range got {
		if r := e.do1(t, backend.ExistsOp(k)); !r.Found {
			t.Errorf("Keys yields %q, which Exists says is missing", k)
		}
	}
	all := collect(t, e.ctx, l, "")
	if len(all) != len(live)+2 || !all["lockless"] || !all["other/1"] {
		t.Errorf("Keys(\"\"): %d keys, want %d including lockless and other/1", len(all), len(live)+2)
	}
	// Stopping early is allowed.
	n := 0
	for _, err := range l.Keys(e.ctx, "lock/") {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n == 3 {
			break
		}
	}
	// A cancelled context ends the iteration with its error.
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	var ctxErr error
	for _, err := range l.Keys(ctx, "lock/") {
		if err != nil {
			ctxErr = err
			break
		}
	}
	if !errors.Is(ctxErr, context.Canceled) {
		t.Errorf("Keys with a cancelled context: err = %v, want context.Canceled", ctxErr)
	}
}

func testListerHostile(t *testing.T, e *env) {
	l := e.lister(t)
	keys := HostileKeys()
	ops := make([]backend.Op, len(keys))
	for i, k := range keys {
		ops[i] = backend.IncrOp(k, 1, 20*e.unit)
	}
	e.do(t, ops...)
	got := collect(t, e.ctx, l, "")
	if len(got) != len(keys) {
		t.Errorf("Keys(\"\"): %d keys, want %d", len(got), len(keys))
	}
	for _, k := range keys {
		if !got[k] {
			t.Errorf("Keys(\"\") misses %q", trunc(k))
		}
	}
	// Prefixes with glob and escape characters match literally.
	for _, prefix := range []string{"*", "[", "\\", "{", "nul\x00", "a:", "with "} {
		got := collect(t, e.ctx, l, prefix)
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) != got[k] {
				t.Errorf("Keys(%q): has %q = %v, want %v", prefix, trunc(k), got[k], !got[k])
			}
		}
	}
}

// testAtomicTags checks what a store declares with Harness.AtomicTags: the
// operations of one hash tag in a batch are one atomic step. Writers apply
// batches that change three keys of one tag alike (add 1 to each, or
// delete all three); readers read the three in one batch, all the while,
// and must always find them equal: never some of a batch's writes without
// the rest, and a writer's own increments return equal values. A race
// shows only when the scheduler interleaves the calls, so the round is run
// again, up to atomicAttempts times, while nothing is seen. A store that
// declares no AtomicTags has nothing to show here.
func testAtomicTags(t *testing.T, e *env) {
	if !e.h.AtomicTags {
		t.Log("the harness declares no AtomicTags: the contract orders only reads after writes, checked by ReadsAfterWrites")
		return
	}
	const atomicAttempts = 3
	for attempt := range atomicAttempts {
		key := fmt.Sprintf("atomic%d:%%s:{tag%d}", attempt, attempt)
		torn, writes, reads := e.atomicRound(t, key)
		if len(torn) > 0 {
			t.Errorf("the store declares AtomicTags, but %d of %d reads and writes saw part of a batch on one hash tag without the rest; first: %s", len(torn), writes+reads, torn[0])
			return
		}
		t.Logf("round %d: %d batches written, %d read, none torn", attempt, writes, reads)
	}
}

// atomicRound runs one round of testAtomicTags on the keys that format
// (with "a", "b" and "c") makes, and returns what was torn, and how many
// batches were written and read.
func (e *env) atomicRound(t *testing.T, format string) (torn []string, writes, reads int) {
	t.Helper()
	const (
		writers  = 8
		readers  = 4
		rounds   = 40
		maxReads = 250 // per reader: a store whose reads are much faster than its writes stops reading early
	)
	ttl := 100 * e.unit
	keys := []string{fmt.Sprintf(format, "a"), fmt.Sprintf(format, "b"), fmt.Sprintf(format, "c")}
	incr := make([]backend.Op, len(keys))
	del := make([]backend.Op, len(keys))
	read := make([]backend.Op, len(keys))
	for i, k := range keys {
		incr[i] = backend.IncrOp(k, 1, ttl)
		del[i] = backend.DeleteOp(k)
		read[i] = backend.ExistsOp(k)
	}
	var (
		wg, rg sync.WaitGroup
		start  = make(chan struct{}) // all at once
		done   = make(chan struct{})
		errs   = make(chan error, writers+readers)
		mu     sync.Mutex
	)
	for w := range writers {
		wg.Go(func() {
			<-start
			res := make([]backend.Result, len(keys))
			for i := range rounds {
				ops := incr
				if (i+w)%37 == 36 {
					ops = del
				}
				if err := e.b.Do(e.ctx, ops, res); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
				mu.Lock()
				writes++
				if ops[0].Kind == backend.Incr && (res[0].Value != res[1].Value || res[1].Value != res[2].Value) {
					torn = append(torn, fmt.Sprintf("a writer's own batch returned %d, %d, %d", res[0].Value, res[1].Value, res[2].Value))
				}
				mu.Unlock()
			}
		})
	}
	for range readers {
		rg.Go(func() {
			<-start
			res := make([]backend.Result, len(keys))
			for range maxReads {
				select {
				case <-done:
					return
				default:
				}
				if err := e.b.Do(e.ctx, read, res); err != nil {
					errs <- fmt.Errorf("reader: %w", err)
					return
				}
				mu.Lock()
				reads++
				if res[0].Value != res[1].Value || res[0].Found != res[1].Found ||
					res[1].Value != res[2].Value || res[1].Found != res[2].Found {
					torn = append(torn, fmt.Sprintf("a reader saw %+v, %+v, %+v", res[0], res[1], res[2]))
				}
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	close(done)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return torn, writes, reads
}

// testLongTTLs checks TTLs far longer than the other checks use, and
// NoExpiry, set by Incr and by Expire: the TTL reported is the one asked for
// (30 and 40 days: memcached reads an exptime over 30 days as a date), not
// a store's silent cap. With fake time the keys are read again two hours
// later, past a one-hour cap that reports the TTL it was asked for; with
// real time, a moment later.
func testLongTTLs(t *testing.T, e *env) {
	const day = 24 * time.Hour
	finite := map[string]time.Duration{
		"long/incr/30d":   30 * day,
		"long/incr/40d":   40 * day,
		"long/expire/30d": 30 * day,
		"long/expire/40d": 40 * day,
	}
	forever := []string{"long/incr/forever", "long/expire/forever"}
	t0 := time.Now()
	var ops []backend.Op
	for k, ttl := range finite {
		if strings.HasPrefix(k, "long/incr/") {
			ops = append(ops, backend.IncrOp(k, 1, ttl))
		} else {
			ops = append(ops, backend.IncrOp(k, 1, e.unit))
		}
	}
	ops = append(ops, backend.IncrOp(forever[0], 1, backend.NoExpiry), backend.IncrOp(forever[1], 1, e.unit))
	rs := e.do(t, ops...)
	for i, op := range ops {
		if ttl := finite[op.Key]; op.TTL == ttl {
			e.checkLongTTL(t, "incr of "+op.Key, rs[i], ttl, t0, 0)
		}
	}
	if rs[len(rs)-2].TTL != backend.NoExpiry {
		t.Errorf("incr of %s with NoExpiry: %+v, want TTL NoExpiry", forever[0], rs[len(rs)-2])
	}
	ops = ops[:0]
	for k, ttl := range finite {
		if strings.HasPrefix(k, "long/expire/") {
			ops = append(ops, backend.ExpireOp(k, ttl))
		}
	}
	ops = append(ops, backend.ExpireOp(forever[1], backend.NoExpiry))
	t1 := time.Now()
	rs = e.do(t, ops...)
	for i, op := range ops[:len(ops)-1] {
		e.checkLongTTL(t, "expire of "+op.Key, rs[i], op.TTL, t1, 0)
	}
	if r := rs[len(rs)-1]; !r.Found || r.TTL != backend.NoExpiry {
		t.Errorf("expire of %s to NoExpiry: %+v, want TTL NoExpiry", forever[1], r)
	}

	wait := e.unit
	if e.h.FakeTime {
		wait = 2 * time.Hour
	}
	sleepUntil(t1.Add(wait))
	for k, ttl := range finite {
		e.checkLongTTL(t, fmt.Sprintf("%s, %v later", k, wait), e.do1(t, backend.ExistsOp(k)), ttl, t0, wait)
	}
	for _, k := range forever {
		if r := e.do1(t, backend.ExistsOp(k)); !r.Found || r.Value != 1 || r.TTL != backend.NoExpiry {
			t.Errorf("%s, %v later: %+v, want value 1 and TTL NoExpiry", k, wait, r)
		}
	}
}

// checkLongTTL fails unless r is a found key holding 1 whose remaining TTL
// is what a key given ttl by a call that started at since has left, when
// at least elapsed has passed since that call: no less than ttl minus the
// time since the call started, no more than ttl minus elapsed plus the
// granularity and the margin (the call's latency).
func (e *env) checkLongTTL(t *testing.T, what string, r backend.Result, ttl time.Duration, since time.Time, elapsed time.Duration) {
	t.Helper()
	if !r.Found || r.Value != 1 {
		t.Errorf("%s (TTL %v): %+v, want a key holding 1", what, ttl, r)
		return
	}
	lo, hi := ttl-time.Since(since)-e.margin, ttl-elapsed+e.h.Granularity+e.margin
	if r.TTL < lo || r.TTL > hi {
		t.Errorf("%s: remaining TTL %v, want in [%v, %v] (asked for %v)", what, r.TTL, lo, hi, ttl)
	}
}

// capacityMaxKeys bounds the keys testCapacity creates before it gives up
// on the store ever getting full.
const capacityMaxKeys = 1 << 20

// testCapacity fills a store from Harness.NewCapped with new keys, in
// batches and then one key at a time, until a call fails. The failure
// must wrap backend.ErrFull; every call before it must have created its
// keys (not dropped them quietly), and afterwards every acknowledged key
// must still hold its value (none evicted) while the refused key does not
// exist.
func testCapacity(t *testing.T, e *env) {
	if e.h.NewCapped == nil {
		t.Skip("the harness declares no NewCapped")
	}
	b := e.h.NewCapped(t)
	if b == nil {
		t.Fatal("conformance: Harness.NewCapped returned nil")
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ttl := 100 * e.unit
	key := func(i int) string { return fmt.Sprintf("full/%07d", i) }
	var (
		acked []int // the keys created, by number; key i holds i+1
		full  error
	)
	for i, batch := 0, 16; full == nil; {
		if i >= capacityMaxKeys {
			t.Fatalf("%d keys created, and the store made by NewCapped is not full yet", i)
		}
		ops := make([]backend.Op, batch)
		for j := range ops {
			ops[j] = backend.IncrOp(key(i+j), int64(i+j+1), ttl)
		}
		res := make([]backend.Result, len(ops))
		err := b.Do(e.ctx, ops, res)
		switch {
		case err != nil && !errors.Is(err, backend.ErrFull):
			t.Fatalf("creating keys %d to %d: %v, want success or an error wrapping ErrFull", i, i+batch-1, err)
		case err != nil && batch > 1:
			// Any subset of a failed batch may have been applied: its
			// keys may exist or not. The rest is filled one key at a
			// time, from past them.
			i, batch = i+batch, 1
		case err != nil:
			full = err
		default:
			for j, r := range res {
				if !r.Found || r.Value != int64(i+j+1) {
					t.Fatalf("creating key %d: %+v and no error, want it created holding %d (a full store fails the call, never drops a key)", i+j, r, i+j+1)
				}
				acked = append(acked, i+j)
			}
			i += batch
		}
	}
	if len(acked) == 0 {
		t.Fatalf("not a single key fitted in the store made by NewCapped: %v", full)
	}
	t.Logf("full after %d keys: %v", len(acked), full)
	// One more new key is refused too, and not applied.
	res := make([]backend.Result, 1)
	if err := b.Do(e.ctx, []backend.Op{backend.IncrOp("full/one more", 1, ttl)}, res); !errors.Is(err, backend.ErrFull) {
		t.Errorf("a new key in a full store: err = %v, want one wrapping ErrFull", err)
	}
	// Every acknowledged key is still there, holding its value.
	for start := 0; start < len(acked); start += 256 {
		part := acked[start:min(start+256, len(acked))]
		ops := make([]backend.Op, len(part))
		for j, n := range part {
			ops[j] = backend.ExistsOp(key(n))
		}
		res := make([]backend.Result, len(ops))
		if err := b.Do(e.ctx, ops, res); err != nil {
			t.Fatalf("reading the keys of a full store: %v", err)
		}
		for j, n := range part {
			if !res[j].Found || res[j].Value != int64(n+1) {
				t.Fatalf("key %d of a full store: %+v, want it holding %d (a full store never drops nor evicts a key)", n, res[j], n+1)
			}
		}
	}
	if err := b.Do(e.ctx, []backend.Op{backend.ExistsOp("full/one more")}, res); err != nil {
		t.Fatalf("reading a full store: %v", err)
	}
	e.checkMissing(t, "the key a full store refused", res[0])
}
