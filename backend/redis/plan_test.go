package redis

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

func TestPlan(t *testing.T) {
	w := func(k string) backend.Op { return backend.IncrOp(k, 1, time.Minute) }
	r := func(k string) backend.Op { return backend.ExistsOp(k) }
	tests := []struct {
		name     string
		grouping int
		ops      []backend.Op
		rounds   int
	}{
		{"one op", groupSlot, []backend.Op{r("a")}, 1},
		{"single server", groupAll, []backend.Op{w("a"), r("b"), w("b"), r("a")}, 1},
		{"writes only", groupSlot, []backend.Op{w("a"), w("b"), w("c")}, 1},
		{"reads first", groupSlot, []backend.Op{r("a"), r("b"), w("a"), w("b")}, 1},
		{"read after own write", groupSlot, []backend.Op{w("a"), r("a")}, 1},
		{"read after own and other writes", groupSlot, []backend.Op{w("a"), r("a"), w("b"), r("b")}, 2},
		{"read after own tag", groupSlot, []backend.Op{w("{u}c"), w("{i}c"), r("{u}l"), r("{i}l")}, 2},
		{"tagged rule keys", groupSlot, []backend.Op{w("{u}c"), r("{u}l"), w("{i}c"), r("{i}l")}, 2},
		{"same tag", groupSlot, []backend.Op{w("{u}c"), w("{u}d"), r("{u}l"), r("{u}m")}, 1},
		{"store buffering", groupSlot, []backend.Op{w("a"), r("b")}, 2},
		{"store buffering by key", groupNone, []backend.Op{w("a"), r("b")}, 2},
		{"later ops of a waiting unit wait", groupSlot, []backend.Op{w("a"), r("b"), w("b"), w("c")}, 2},
		{"chained", groupNone, []backend.Op{w("a"), r("b"), w("b"), r("c")}, 3},
		{"decision", groupSlot, []backend.Op{w("u"), w("i"), w("p"), r("lu"), r("li"), r("lp")}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Store{grouping: tc.grouping}
			p := s.plan(tc.ops, plan{})
			if len(p.rounds) != tc.rounds {
				t.Errorf("%d rounds, want %d (plan %+v)", len(p.rounds), tc.rounds, p)
			}
			checkPlan(t, s, tc.ops, p)
		})
	}
}

// TestPlanRandom checks the plan's invariants on random batches.
func TestPlanRandom(t *testing.T) {
	keys := []string{"a", "b", "{a}b", "{b}a", "c", "{t}1", "{t}2"}
	kinds := []backend.Op{
		backend.IncrOp("", 1, time.Minute), backend.IncrOp("", -1, time.Minute), backend.IncrOp("", 0, 0),
		backend.ExistsOp(""), backend.ExpireOp("", time.Minute), backend.DeleteOp(""),
	}
	seed := uint64(1)
	next := func(n int) int {
		seed = seed*6364136223846793005 + 1442695040888963407
		return int(seed>>33) % n
	}
	for _, grouping := range []int{groupAll, groupSlot, groupNone} {
		s := &Store{grouping: grouping}
		for range 400 {
			ops := make([]backend.Op, 1+next(200))
			for i := range ops {
				ops[i] = kinds[next(len(kinds))]
				ops[i].Key = keys[next(len(keys))]
			}
			checkPlan(t, s, ops, s.plan(ops, plan{}))
			if t.Failed() {
				return
			}
		}
	}
}

// checkPlan checks that p takes every op once; that each call holds at most
// maxGroup operations of one unit, in batch order; that operations on one
// key keep batch order; and that every read comes in a later round than any
// write before it of another unit.
func checkPlan(t *testing.T, s *Store, ops []backend.Op, p plan) {
	t.Helper()
	unitOf := func(op backend.Op) string {
		switch s.grouping {
		case groupAll:
			return ""
		case groupSlot:
			return fmt.Sprint(keySlot(op.Key))
		}
		return op.Key
	}
	n := len(ops)
	if len(p.ends) == 0 || p.ends[len(p.ends)-1] != n || len(p.rounds) == 0 || p.rounds[len(p.rounds)-1] != len(p.ends) {
		t.Fatalf("plan does not cover the batch: %+v", p)
	}
	seen := make([]bool, n)
	roundOf := make([]int, n)
	pos := make([]int, n) // position in plan order
	call, round := 0, 0
	for j := range n {
		for j >= p.ends[call] {
			call++
			if call >= p.rounds[round] {
				round++
			}
		}
		i := p.op(j)
		if seen[i] {
			t.Fatalf("op %d taken twice", i)
		}
		seen[i], roundOf[i], pos[i] = true, round, j
		start := 0
		if call > 0 {
			start = p.ends[call-1]
		}
		if p.ends[call]-start > maxGroup {
			t.Fatalf("call %d holds %d operations", call, p.ends[call]-start)
		}
		if j > start {
			prev := p.op(j - 1)
			if unitOf(ops[prev]) != unitOf(ops[i]) || prev > i {
				t.Fatalf("call %d mixes units or order: op %d then op %d", call, prev, i)
			}
		}
	}
	for i := range n {
		for k := range i {
			if ops[k].Key == ops[i].Key && pos[k] > pos[i] {
				t.Fatalf("ops %d and %d on %q out of order", k, i, ops[i].Key)
			}
			if isRead(&ops[i]) && !isRead(&ops[k]) && unitOf(ops[k]) != unitOf(ops[i]) && roundOf[k] >= roundOf[i] {
				t.Fatalf("read %d (round %d) does not follow write %d (round %d) of another unit", i, roundOf[i], k, roundOf[k])
			}
		}
	}
	if s.grouping == groupAll && len(p.rounds) != 1 {
		t.Fatalf("%d rounds on a single server", len(p.rounds))
	}
	if slices.Contains(seen, false) {
		t.Fatal("an op is missing")
	}
}
