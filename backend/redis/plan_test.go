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
	many := func(n int, tags ...string) []backend.Op {
		var ops []backend.Op
		for i := range n {
			ops = append(ops, w(fmt.Sprintf("%d{%s}", i, tags[i%len(tags)])))
		}
		return ops
	}
	decision := []backend.Op{w("a:{u}"), r("l:{u}"), w("a:{i}"), r("l:{i}"), w("a:{p}"), r("l:{p}")}
	tests := []struct {
		name     string
		grouping int
		ops      []backend.Op
		calls    int
		rounds   int
	}{
		{"one op", groupSlot, []backend.Op{r("a")}, 1, 1},
		{"single server", groupAll, []backend.Op{w("a"), r("b"), w("b"), r("a")}, 1, 1},
		{"single server decision", groupAll, decision, 1, 1},
		{"single server long", groupAll, many(300, "x", "y", "z"), 3, 1},
		{"single server long tag", groupAll, many(300, "x"), 1, 1},
		{"cluster decision", groupSlot, decision, 3, 1},
		{"cluster same tag", groupSlot, []backend.Op{w("{u}c"), w("{u}d"), r("{u}l"), r("{u}m")}, 1, 1},
		{"cluster store buffering", groupSlot, []backend.Op{w("a"), r("b")}, 2, 1},
		{"ring decision", groupTag, decision, 3, 1},
		{"ring same tag", groupTag, []backend.Op{w("{u}c"), r("{u}l"), w("{u}c")}, 1, 1},
		{"keys writes only", groupKey, []backend.Op{w("a"), w("b"), w("c")}, 3, 1},
		{"keys reads first", groupKey, []backend.Op{r("{t}a"), r("{t}b"), w("{t}a"), w("{t}b")}, 2, 1},
		{"keys read after own write", groupKey, []backend.Op{w("a"), r("a")}, 1, 1},
		{"keys other tags", groupKey, []backend.Op{w("a"), r("b")}, 2, 1},
		{"keys store buffering", groupKey, []backend.Op{w("{t}a"), r("{t}b")}, 2, 2},
		{"keys decision", groupKey, decision, 6, 2},
		{"keys later ops of a waiting key wait", groupKey, []backend.Op{w("{t}a"), r("{t}b"), w("{t}b"), w("c")}, 3, 2},
		{"keys chained", groupKey, []backend.Op{w("{t}a"), r("{t}b"), w("{t}b"), r("{t}c")}, 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Store{grouping: tc.grouping}
			p := s.plan(tc.ops, plan{})
			if len(p.ends) != tc.calls || len(p.rounds) != tc.rounds {
				t.Errorf("%d calls in %d rounds, want %d in %d (plan %+v)", len(p.ends), len(p.rounds), tc.calls, tc.rounds, p)
			}
			checkPlan(t, s, tc.ops, p)
		})
	}
}

// TestPlanRandom checks the plan's invariants on random batches.
func TestPlanRandom(t *testing.T) {
	keys := []string{"a", "b", "{a}b", "{b}a", "c", "{t}1", "{t}2", "x{t}", "{u}1", "{}u", "{a}"}
	for i := range 30 { // enough hash tags for the plan to index them
		keys = append(keys, fmt.Sprintf("{%d}", i), fmt.Sprintf("x{%d}", i/2))
	}
	kinds := []backend.Op{
		backend.IncrOp("", 1, time.Minute), backend.IncrOp("", -1, time.Minute), backend.IncrOp("", 0, 0),
		backend.ExistsOp(""), backend.ExpireOp("", time.Minute), backend.DeleteOp(""),
	}
	seed := uint64(1)
	next := func(n int) int {
		seed = seed*6364136223846793005 + 1442695040888963407
		return int(seed>>33) % n
	}
	for _, grouping := range []int{groupAll, groupSlot, groupTag, groupKey} {
		for _, prefix := range []string{"", "p:", "{p}"} {
			t.Run(fmt.Sprintf("grouping%d/prefix%q", grouping, prefix), func(t *testing.T) {
				s := &Store{grouping: grouping, prefix: prefix}
				for range 30 {
					ops := make([]backend.Op, 1+next(300))
					for i := range ops {
						ops[i] = kinds[next(len(kinds))]
						ops[i].Key = keys[next(len(keys))]
					}
					checkPlan(t, s, ops, s.plan(ops, plan{}))
				}
			})
		}
	}
}

// checkPlan checks that p takes every op once; that each call holds
// operations of one unit (any keys on a single server, one slot on a
// Cluster, one hash tag on a Ring, one key with OneKeyPerCall), in batch
// order, and at most maxGroup of them unless they share a hash tag; that
// the operations of one hash tag share a call, except with OneKeyPerCall,
// where every read comes in a later round than any write before it of
// another key with its hash tag; and that operations on one key keep batch
// order.
func checkPlan(t *testing.T, s *Store, ops []backend.Op, p plan) {
	t.Helper()
	unitOf := func(op backend.Op) string {
		switch s.grouping {
		case groupAll:
			return ""
		case groupSlot:
			return fmt.Sprint(keySlot(s.prefix + op.Key))
		case groupTag:
			return backend.HashTag(s.prefix + op.Key)
		}
		return op.Key
	}
	n := len(ops)
	if len(p.ends) == 0 || p.ends[len(p.ends)-1] != n || len(p.rounds) == 0 || p.rounds[len(p.rounds)-1] != len(p.ends) {
		t.Fatalf("plan does not cover the batch: %+v", p)
	}
	if s.grouping != groupKey && len(p.rounds) != 1 {
		t.Fatalf("%d rounds, want 1", len(p.rounds))
	}
	seen := make([]bool, n)
	roundOf := make([]int, n)
	callOf := make([]int, n)
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
		seen[i], roundOf[i], callOf[i], pos[i] = true, round, call, j
		start := 0
		if call > 0 {
			start = p.ends[call-1]
		}
		if size := p.ends[call] - start; size > maxGroup {
			tags := map[string]bool{}
			for m := start; m < p.ends[call]; m++ {
				tags[backend.HashTag(ops[p.op(m)].Key)] = true
			}
			if len(tags) > 1 || s.grouping == groupKey {
				t.Fatalf("call %d holds %d operations", call, size)
			}
		}
		if j > start {
			prev := p.op(j - 1)
			if unitOf(ops[prev]) != unitOf(ops[i]) || prev > i {
				t.Fatalf("call %d mixes units or order: op %d then op %d", call, prev, i)
			}
		}
	}
	if slices.Contains(seen, false) {
		t.Fatal("an op is missing")
	}
	for i := range n {
		for k := range i {
			if ops[k].Key == ops[i].Key && pos[k] > pos[i] {
				t.Fatalf("ops %d and %d on %q out of order", k, i, ops[i].Key)
			}
			sameTag := backend.HashTag(ops[k].Key) == backend.HashTag(ops[i].Key)
			if !sameTag {
				continue
			}
			if s.grouping != groupKey && unitOf(ops[k]) == unitOf(ops[i]) && callOf[k] != callOf[i] {
				t.Fatalf("ops %d (%q) and %d (%q) share a hash tag but not a call", k, ops[k].Key, i, ops[i].Key)
			}
			if s.grouping == groupKey && ops[i].IsRead() && !ops[k].IsRead() && ops[k].Key != ops[i].Key && roundOf[k] >= roundOf[i] {
				t.Fatalf("read %d (round %d) does not follow write %d (round %d) of its hash tag", i, roundOf[i], k, roundOf[k])
			}
		}
	}
}
