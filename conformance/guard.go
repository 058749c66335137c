package conformance

import (
	"math"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// testExpiryGuard checks Result.Expires and the decrements conditional on
// it (Op.IfExpiresBefore) of a store that declares ExpiryGuard, as the
// engine's give-backs use them: a decrement bounded by a counter's
// reported expiry plus its window applies to that counter, refreshed or
// not, and never to one made after it. A store that does not declare it
// reports no Expires.
func testExpiryGuard(t *testing.T, e *env) {
	w := 10 * e.unit // the window
	if !e.h.ExpiryGuard {
		if r := e.do1(t, backend.IncrOp("k", 1, w)); r.Expires != 0 {
			t.Errorf("a store without ExpiryGuard reported Expires %d", r.Expires)
		}
		return
	}
	give := func(key string, before int64) backend.Op {
		op := backend.IncrOp(key, -1, w)
		op.IfExpiresBefore = before
		return op
	}
	// A reservation, and what reads of the key report of its expiry.
	r := e.do1(t, backend.IncrOp("k", 3, w))
	end := r.Expires
	if end == 0 {
		t.Fatalf("incr: %+v, want Expires set", r)
	}
	if x := e.do1(t, backend.ExistsOp("k")); x.Expires != end {
		t.Errorf("exists: Expires %d, want the increment's %d", x.Expires, end)
	}
	if x := e.do1(t, backend.IncrOp("k", 1, w)); x.Expires != end || x.Value != 4 {
		t.Errorf("incr of an existing key: %+v, want value 4 and Expires %d", x, end)
	}

	steps := []struct {
		name      string
		op        backend.Op
		wantValue int64 // after the step; 0: missing
	}{
		{"before its expiry plus the window", give("k", end+int64(w)), 3},
		{"just after its expiry", give("k", end+1), 2},
		{"at its expiry: not before it", give("k", end), 2},
		{"before its expiry", give("k", end-int64(e.unit)), 2},
		{"an increment ignores the bound", func() backend.Op { op := backend.IncrOp("k", 2, w); op.IfExpiresBefore = 1; return op }(), 4},
		{"a read ignores it", func() backend.Op { op := backend.IncrOp("k", 0, w); op.IfExpiresBefore = 1; return op }(), 4},
		{"a missing key stays missing", give("missing", math.MaxInt64), 0},
	}
	for _, s := range steps {
		got := e.do1(t, s.op)
		if s.op.Key == "missing" {
			e.checkMissing(t, s.name, got)
			e.checkMissing(t, s.name+", then", e.do1(t, backend.ExistsOp("missing")))
			continue
		}
		if !got.Found || got.Value != s.wantValue {
			t.Errorf("%s: %+v, want value %d", s.name, got, s.wantValue)
		}
		if x := e.do1(t, backend.ExistsOp(s.op.Key)); x.Value != s.wantValue {
			t.Errorf("%s: the key holds %d, want %d", s.name, x.Value, s.wantValue)
		}
	}

	// A sliding window's refresh: the same counter, expiring later, but
	// before its former expiry plus the window.
	time.Sleep(e.unit / 5)
	x := e.do1(t, backend.ExpireOp("k", w))
	if x.Expires <= end {
		t.Errorf("a refresh's Expires %d, want later than %d", x.Expires, end)
	}
	if got := e.do1(t, give("k", end+int64(w))); got.Value != 3 {
		t.Errorf("a give-back to the refreshed counter: %+v, want value 3", got)
	}

	// A counter made again after the key went (deleted here, as after its
	// window): it expires a window after it was made, too late.
	e.do(t, backend.DeleteOp("k"))
	time.Sleep(e.unit / 5)
	r = e.do1(t, backend.IncrOp("k", 5, w))
	if r.Expires <= end {
		t.Fatalf("a counter made again: Expires %d, want later than the first's %d", r.Expires, end)
	}
	again := r.Expires
	if got := e.do1(t, give("k", again-(again-end)/2)); got.Value != 5 {
		t.Errorf("a give-back bound by an earlier counter's expiry: %+v, want the new counter untouched (5)", got)
	}

	// A key without expiry never qualifies.
	if r := e.do1(t, backend.IncrOp("forever", 2, backend.NoExpiry)); r.Expires != 0 {
		t.Errorf("incr with NoExpiry: Expires %d, want 0", r.Expires)
	}
	if got := e.do1(t, give("forever", math.MaxInt64)); got.Value != 2 {
		t.Errorf("a conditional give-back to a key without expiry: %+v, want it untouched (2)", got)
	}
}
