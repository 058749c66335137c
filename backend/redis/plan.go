package redis

import (
	"slices"

	"github.com/go-lockout/lockout/backend"
)

// The ways a store groups operations into script calls.
const (
	groupAll  = iota // one server: any keys in one call
	groupSlot        // a Cluster: the keys of one hash slot in one call
	groupNone        // one key a call
)

// plan is how a batch is sent: script calls, in rounds.
type plan struct {
	// order lists the indexes of the batch's operations in the order the
	// calls take them; nil means batch order.
	order []int
	// ends[c] is where call c ends in that order (it starts where call c-1
	// ends).
	ends []int
	// rounds[r] is where round r ends in the list of calls. The calls of one
	// round go in one pipeline (one round trip per node); a round is sent
	// once the one before it has been answered.
	rounds []int
}

// op returns the index in the batch of the j-th operation in plan order.
func (p *plan) op(j int) int {
	if p.order == nil {
		return j
	}
	return p.order[j]
}

// isRead reports whether op only reads: the kind of operation that must see
// every write before it in its batch.
func isRead(op *backend.Op) bool {
	return op.Kind == backend.Exists || op.Kind == backend.Incr && op.Delta == 0
}

// plan splits ops into script calls and rounds, appending to the slices of
// p, which it returns.
//
// A script call takes the operations of one unit: the whole batch on a
// single server, one hash slot on a Cluster, one key otherwise (a Ring, or
// OneKeyPerCall). It applies them in batch order, so operations on one key
// and reads after writes in one unit are ordered by the call itself. But the
// calls of one pipeline may run in any order, concurrently on different
// nodes; so a read that follows a write of another unit in the batch goes in
// a later round than that write, and every later operation of the read's
// unit with it. Writes never wait: a batch of writes, or of writes followed
// by reads of the same units only, is one round.
func (s *Store) plan(ops []backend.Op, p plan) plan {
	n := len(ops)
	if n == 1 || s.grouping == groupAll {
		for end := maxGroup; end < n; end += maxGroup {
			p.ends = append(p.ends, end)
		}
		p.ends = append(p.ends, n)
		p.rounds = append(p.rounds, len(p.ends))
		return p
	}

	// Number the units in order of first appearance.
	unit := make([]int, n)
	var (
		slots  map[int]int
		keys   map[string]int
		nunits int
	)
	if s.grouping == groupSlot {
		slots = make(map[int]int)
	} else {
		keys = make(map[string]int)
	}
	for i := range ops {
		var u int
		var ok bool
		if slots != nil {
			slot := keySlot(s.prefix + ops[i].Key)
			if u, ok = slots[slot]; !ok {
				u = nunits
				slots[slot] = u
			}
		} else if u, ok = keys[ops[i].Key]; !ok {
			u = nunits
			keys[ops[i].Key] = u
		}
		if !ok {
			nunits++
		}
		unit[i] = u
	}

	// Assign rounds. last[u] is the round of unit u's latest operation; the
	// two highest write rounds, of two distinct units, tell a read the latest
	// round of a write in any other unit.
	type mark struct{ round, unit int }
	round := make([]int, n)
	last := make([]int, nunits)
	best, second := mark{-1, -1}, mark{-1, -1}
	for i := range ops {
		u := unit[i]
		r := last[u]
		if isRead(&ops[i]) {
			other := best.round
			if best.unit == u {
				other = second.round
			}
			r = max(r, other+1)
		} else {
			switch {
			case best.unit == u:
				best.round = max(best.round, r)
			case r > best.round:
				best, second = mark{r, u}, best
			case r > second.round:
				second = mark{r, u}
			}
		}
		round[i], last[u] = r, r
	}

	// Calls: the operations of one unit in one round, in batch order.
	p.order = make([]int, n)
	for i := range p.order {
		p.order[i] = i
	}
	slices.SortStableFunc(p.order, func(a, b int) int {
		if round[a] != round[b] {
			return round[a] - round[b]
		}
		return unit[a] - unit[b]
	})
	start := 0
	for j := 1; j <= n; j++ {
		if j < n && j-start < maxGroup {
			a, b := p.order[j-1], p.order[j]
			if round[a] == round[b] && unit[a] == unit[b] {
				continue
			}
		}
		p.ends = append(p.ends, j)
		if j == n || round[p.order[j-1]] != round[p.order[j]] {
			p.rounds = append(p.rounds, len(p.ends))
		}
		start = j
	}
	return p
}
