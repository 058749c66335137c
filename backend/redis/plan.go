package redis

import (
	"slices"

	"github.com/go-lockout/lockout/backend"
)

// The ways a store groups operations into script calls.
const (
	groupAll  = iota // one server: any keys in one call
	groupSlot        // a Cluster: keys of one hash slot in one call
	groupTag         // a Ring: keys of one hash tag in one call
	groupKey         // OneKeyPerCall: one key a call
)

// plan is how a batch is sent: script calls, in rounds.
type plan struct {
	// order lists the indexes of the batch's operations in the order the
	// calls take them; empty means batch order.
	order []int
	// ends[c] is where call c ends in that order (it starts where call c-1
	// ends).
	ends []int
	// rounds[r] is where round r ends in the list of calls. The calls of one
	// round go in one pipeline (one round trip per node); a round is sent
	// once the one before it has been answered. Only groupKey has more than
	// one round.
	rounds []int
}

// op returns the index in the batch of the j-th operation in plan order.
func (p *plan) op(j int) int {
	if len(p.order) == 0 {
		return j
	}
	return p.order[j]
}

// plan splits ops into script calls and rounds, appending to the slices of
// p, which it returns.
//
// The contract orders a batch only within a hash tag: operations on one key
// apply in batch order, and a read follows every earlier write of its hash
// tag. A script call applies its operations in batch order, atomically; so
// when every hash tag's operations go in one call, nothing else needs
// ordering, and the whole batch is one round: one pipeline, one round trip
// to each node. That is the case on a single server (every key in one call,
// unless the batch is long), on a Cluster (the keys of one hash slot, which
// share a node, in one call; keys with the same hash tag share a slot) and on
// a Ring (the keys of one hash tag, which go-redis sends to one shard, in one
// call). A long batch is split into calls of at most maxGroup operations
// between hash tags, never within one.
//
// With OneKeyPerCall, every call has one key, and a proxy may send the keys
// of one hash tag to different servers. A read that follows, in its batch, a
// write of another key with the same hash tag then goes in a later round
// than that write, and every later operation on the read's key with it.
func (s *Store) plan(ops []backend.Op, p plan) plan {
	n := len(ops)
	if s.grouping == groupKey {
		return s.planKeys(ops, p)
	}
	p.rounds = append(p.rounds, 1) // fixed below when there are more calls
	if n == 1 || s.grouping == groupAll && n <= maxGroup {
		p.ends = append(p.ends, n)
		return p
	}

	// Units are hash tags, numbered in order of first appearance. A bin
	// holds the units that may share a call: all of them on one server, those
	// of one slot on a Cluster, those of one hash tag (as go-redis shards by)
	// on a Ring. Bins are taken from the prefixed keys, as Redis and go-redis
	// see them; with a Prefix, a key without a hash tag may land in another
	// bin than keys whose hash tag is its name, and then it is another unit.
	// Small batches (a decision) find units by scanning; large ones build an
	// index.
	var (
		unitsBuf  [8]unit
		unitOfBuf [16]int
		ix        unitIndex
	)
	units := unitsBuf[:0]
	unitOf := unitOfBuf[:0]
	if n > len(unitOfBuf) {
		unitOf = make([]int, 0, n)
	}
	for i := range ops {
		tag, bin := backend.HashTag(ops[i].Key), 0
		switch s.grouping {
		case groupSlot:
			bin = keySlot(s.prefix + ops[i].Key)
		case groupTag:
			bin = ix.bin(backend.HashTag(s.prefix + ops[i].Key))
		}
		u := ix.unit(units, tag, bin)
		if u < 0 {
			u = len(units)
			units = append(units, unit{tag: tag, bin: bin})
			ix.add(units, u)
		}
		units[u].size++
		unitOf = append(unitOf, u)
	}

	// Fill calls with whole units, in order of first appearance, adding a
	// unit to the latest call of its bin unless that would take the call
	// past maxGroup.
	var sizesBuf [8]int
	sizes := sizesBuf[:0] // by call
	for u := range units {
		c, ok := ix.lastCall(units[:u], units[u].bin)
		if !ok || sizes[c]+units[u].size > maxGroup {
			c = len(sizes)
			sizes = append(sizes, 0)
		}
		sizes[c] += units[u].size
		units[u].call = c
		ix.setLastCall(units[u].bin, c)
	}
	if len(sizes) == 1 {
		p.ends = append(p.ends, n)
		return p
	}

	// Order the operations by call, keeping batch order within each.
	for i := range n {
		p.order = append(p.order, i)
	}
	callOf := func(i int) int { return units[unitOf[i]].call }
	slices.SortStableFunc(p.order, func(a, b int) int { return callOf(a) - callOf(b) })
	for j := 1; j <= n; j++ {
		if j == n || callOf(p.order[j]) != callOf(p.order[j-1]) {
			p.ends = append(p.ends, j)
		}
	}
	p.rounds[len(p.rounds)-1] = len(p.ends)
	return p
}

// unit is a hash tag of a batch, within one bin: see plan.
type unit struct {
	tag             string
	bin, size, call int
}

// unitIndex finds the units, bins and calls of a batch: by scanning while
// the batch has few units, with maps once it has more.
type unitIndex struct {
	units   map[unitKey]int // unit by tag and bin
	bins    map[string]int  // bin by hash tag, on a Ring
	binTags []string        // the same, while small
	calls   map[int]int     // the latest call of each bin
}

type unitKey struct {
	tag string
	bin int
}

// scanLimit is how many units or bins a batch has before unitIndex builds
// maps.
const scanLimit = 16

// unit returns the index of the unit of tag in bin, or -1.
func (ix *unitIndex) unit(units []unit, tag string, bin int) int {
	if ix.units != nil {
		if u, ok := ix.units[unitKey{tag, bin}]; ok {
			return u
		}
		return -1
	}
	for u := range units {
		if units[u].bin == bin && units[u].tag == tag {
			return u
		}
	}
	return -1
}

// add records units[u], a new unit.
func (ix *unitIndex) add(units []unit, u int) {
	if ix.units == nil && len(units) > scanLimit {
		ix.units = make(map[unitKey]int, 2*len(units))
		for v := range units[:u] {
			ix.units[unitKey{units[v].tag, units[v].bin}] = v
		}
	}
	if ix.units != nil {
		ix.units[unitKey{units[u].tag, units[u].bin}] = u
	}
}

// bin returns the number of a Ring's bin: the hash tag go-redis shards by.
func (ix *unitIndex) bin(tag string) int {
	if ix.bins == nil {
		for b, t := range ix.binTags {
			if t == tag {
				return b
			}
		}
		if len(ix.binTags) < scanLimit {
			ix.binTags = append(ix.binTags, tag)
			return len(ix.binTags) - 1
		}
		ix.bins = make(map[string]int)
		for b, t := range ix.binTags {
			ix.bins[t] = b
		}
	}
	b, ok := ix.bins[tag]
	if !ok {
		b = len(ix.bins)
		ix.bins[tag] = b
	}
	return b
}

// lastCall returns the latest call of bin so far: that of the last of
// earlier (the units before the current one) in bin.
func (ix *unitIndex) lastCall(earlier []unit, bin int) (int, bool) {
	if ix.calls != nil {
		c, ok := ix.calls[bin]
		return c, ok
	}
	for u := len(earlier) - 1; u >= 0; u-- {
		if earlier[u].bin == bin {
			return earlier[u].call, true
		}
	}
	return 0, false
}

// setLastCall records that the latest call of bin is c, once the batch has
// many units (scanning serves fewer).
func (ix *unitIndex) setLastCall(bin, c int) {
	if ix.units != nil && ix.calls == nil {
		ix.calls = make(map[int]int)
	}
	if ix.calls != nil {
		ix.calls[bin] = c
	}
}

// planKeys plans a batch of one key per call (groupKey): see plan.
func (s *Store) planKeys(ops []backend.Op, p plan) plan {
	n := len(ops)
	if n == 1 {
		p.ends = append(p.ends, 1)
		p.rounds = append(p.rounds, 1)
		return p
	}
	// Assign rounds. last[k] is the round of key k's latest operation. Per
	// hash tag, the two highest write rounds of two distinct keys tell a
	// read the latest round of a write of another key with its tag.
	type mark struct {
		round int
		key   string
	}
	type marks struct{ best, second mark }
	var (
		round = make([]int, n)
		last  = make(map[string]int)
		tags  = make(map[string]marks)
	)
	for i := range ops {
		k := ops[i].Key
		tag := backend.HashTag(k)
		r := last[k]
		m, ok := tags[tag]
		if !ok {
			m = marks{mark{-1, ""}, mark{-1, ""}}
		}
		if ops[i].IsRead() {
			other := m.best.round
			if m.best.key == k {
				other = m.second.round
			}
			r = max(r, other+1)
		} else {
			switch {
			case m.best.key == k:
				m.best.round = max(m.best.round, r)
			case r > m.best.round:
				m.best, m.second = mark{r, k}, m.best
			case r > m.second.round && m.second.key != k:
				m.second = mark{r, k}
			case m.second.key == k:
				m.second.round = max(m.second.round, r)
			}
			tags[tag] = m
		}
		round[i], last[k] = r, r
	}

	// Calls: the operations of one key in one round, in batch order.
	keyIndex := make(map[string]int)
	keyOf := make([]int, n)
	for i := range ops {
		u, ok := keyIndex[ops[i].Key]
		if !ok {
			u = len(keyIndex)
			keyIndex[ops[i].Key] = u
		}
		keyOf[i] = u
	}
	p.order = make([]int, n)
	for i := range p.order {
		p.order[i] = i
	}
	slices.SortStableFunc(p.order, func(a, b int) int {
		if round[a] != round[b] {
			return round[a] - round[b]
		}
		return keyOf[a] - keyOf[b]
	})
	start := 0
	for j := 1; j <= n; j++ {
		if j < n && j-start < maxGroup {
			a, b := p.order[j-1], p.order[j]
			if round[a] == round[b] && keyOf[a] == keyOf[b] {
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
