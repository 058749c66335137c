package memory

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/go-lockout/lockout/backend"
)

// TestShardModel runs random adds, removals and sweeps on one shard, on
// keys that share few hash tags (so that they crowd the same homes and the
// probes wrap around the table), and checks the shard against a map after
// each step: every key found with its entry, none that is not there, the
// count right, and the table three quarters full at most.
func TestShardModel(t *testing.T) {
	tests := []struct {
		name       string
		tags, keys int // distinct hash tags, and keys per tag
		steps      int
	}{
		{"one tag", 1, 40, 2000},
		{"few tags", 3, 10, 4000},
		{"many tags", 200, 3, 20000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(4) {
				r := rand.New(rand.NewPCG(seed, 1))
				var sh shard
				sh.init(maphash.MakeSeed())
				model := map[string]entry{}
				key := func() string {
					return fmt.Sprintf("p:%d:r:{t%d}", r.IntN(tc.keys), r.IntN(tc.tags))
				}
				now := int64(0)
				for step := range tc.steps {
					k := key()
					switch op := r.IntN(10); {
					case op < 5: // add, or remove what is there
						if i, ok := sh.lookup(k); ok {
							sh.remove(i)
							delete(model, k)
						} else {
							e := entry{value: int64(step), exp: now + 1 + r.Int64N(100)}
							if err := sh.add(sh.hash(k), k, e); err != nil {
								t.Fatal(err)
							}
							model[k] = e
						}
					case op < 8: // update in place
						if i, ok := sh.lookup(k); ok {
							sh.at(i).value++
							e := model[k]
							e.value++
							model[k] = e
						}
					case op < 9: // a new expiry, earlier or later (Expire)
						if i, ok := sh.lookup(k); ok {
							e := model[k]
							e.exp = now + 1 + r.Int64N(100)
							sh.setExp(i, e.exp)
							model[k] = e
						}
					default: // time passes; sweep
						now += r.Int64N(30)
						swept := sh.sweep(now)
						want := 0
						for k, e := range model {
							if !e.live(now) {
								delete(model, k)
								want++
							}
						}
						if swept != want {
							t.Fatalf("seed %d step %d: sweep removed %d keys, want %d", seed, step, swept, want)
						}
					}
					checkShard(t, &sh, model, fmt.Sprintf("seed %d step %d", seed, step))
					if t.Failed() {
						return
					}
				}
			}
		})
	}
}

// checkShard reports where sh differs from model.
func checkShard(t *testing.T, sh *shard, model map[string]entry, where string) {
	t.Helper()
	if sh.len() != len(model) {
		t.Errorf("%s: shard holds %d keys, want %d", where, sh.len(), len(model))
	}
	if sh.len()*4 > len(sh.cells)*3 {
		t.Errorf("%s: %d keys in %d cells", where, sh.len(), len(sh.cells))
	}
	for k, e := range model {
		i, ok := sh.lookup(k)
		if !ok {
			t.Errorf("%s: %q not found", where, k)
			continue
		}
		if got := *sh.at(i); got != e {
			t.Errorf("%s: %q holds %+v, want %+v", where, k, got, e)
		}
	}
	held := 0
	for i := range sh.cells {
		if c := &sh.cells[i]; c.hash != 0 {
			held++
			if b := sh.blocks[i>>blockBits]; b > c.exp {
				t.Errorf("%s: cell %d expires at %d, before its block's bound %d", where, i, c.exp, b)
			}
			if m := sh.minExp.Load(); m > c.exp {
				t.Errorf("%s: cell %d expires at %d, before the shard's bound %d", where, i, c.exp, m)
			}
			k := string(sh.key(c))
			if _, ok := model[k]; !ok {
				t.Errorf("%s: cell %d holds %q, which was removed", where, i, k)
			}
		}
	}
	if held != len(model) {
		t.Errorf("%s: %d cells in use, want %d", where, held, len(model))
	}
	live := 0
	for k := range model {
		live += len(k)
	}
	if got := len(sh.keys) - sh.dead; got != live {
		t.Errorf("%s: the arena counts %d live bytes (%d, %d dead), want %d", where, got, len(sh.keys), sh.dead, live)
	}
}

// TestShardShrinks checks that a sweep that leaves a table less than an
// eighth full gives back its room: 5 keys left in 16 cells, at most half
// full, and their bytes in the smallest arena.
func TestShardShrinks(t *testing.T) {
	var sh shard
	sh.init(maphash.MakeSeed())
	for i := range 10_000 {
		exp := int64(10)
		if i < 5 {
			exp = 100
		}
		k := fmt.Sprintf("p:a:r:{u=%d}", i)
		if err := sh.add(sh.hash(k), k, entry{value: 1, exp: exp}); err != nil {
			t.Fatal(err)
		}
	}
	grown, arena := len(sh.cells), cap(sh.keys)
	if n := sh.sweep(50); n != 9_995 {
		t.Fatalf("swept %d keys, want 9995", n)
	}
	if len(sh.cells) != 16 || sh.len() != 5 {
		t.Errorf("after the sweep: %d keys in %d cells (%d before), want 5 in 16", sh.len(), len(sh.cells), grown)
	}
	if cap(sh.keys) != minArena || sh.dead != 0 {
		t.Errorf("after the sweep: an arena of %d bytes (%d before), %d dead, want %d, none dead", cap(sh.keys), arena, sh.dead, minArena)
	}
	for i := range 5 {
		if _, ok := sh.lookup(fmt.Sprintf("p:a:r:{u=%d}", i)); !ok {
			t.Errorf("key %d lost in the shrink", i)
		}
	}
}

// TestArenaFull checks a store whose shard's arena is at its bound: a new
// key is refused as full once the live keys and it would take more than
// half of it, the store's count of keys is what it was, and the room of
// keys deleted since comes back.
func TestArenaFull(t *testing.T) {
	defer func(m int64) { maxArena = m }(maxArena)
	maxArena = 200
	s, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	incr := func(key string) error {
		return s.Do(ctx, []backend.Op{backend.IncrOp(key, 1, time.Hour)}, make([]backend.Result, 1))
	}
	del := func(key string) {
		if err := s.Do(ctx, []backend.Op{backend.DeleteOp(key)}, make([]backend.Result, 1)); err != nil {
			t.Fatal(err)
		}
	}
	key := func(i int) string { return fmt.Sprintf("lockout:a:r:{u=alice}:%015d", i) } // 40 bytes
	// An arena of 200 bytes holds five keys of 40; the sixth needs it
	// copied, with 240 bytes live: more than half of 200.
	for i := range 5 {
		if err := incr(key(i)); err != nil {
			t.Fatal(err)
		}
	}
	err = incr(key(5))
	if !errors.Is(err, backend.ErrFull) || s.Len() != 5 {
		t.Fatalf("a sixth key of 40 bytes in an arena of 200: %v, %d keys; want ErrFull, 5 keys", err, s.Len())
	}
	// With 40 bytes live, the copy leaves room.
	for i := range 4 {
		del(key(i))
	}
	if err := incr(key(5)); err != nil || s.Len() != 2 {
		t.Errorf("after four deletes: %v, %d keys; want the key added, 2 keys", err, s.Len())
	}
	res := make([]backend.Result, 2)
	if err := s.Do(ctx, []backend.Op{backend.ExistsOp(key(4)), backend.ExistsOp(key(5))}, res); err != nil || !res[0].Found || !res[1].Found {
		t.Errorf("after the arena's copy: %+v, %v; want both keys found", res, err)
	}
}

// TestArenaKeepsRoom: after a burst of keys removed one by one (no sweep),
// new keys find the room of the burst's arena, and copy it seldom: each
// copy walks the whole table, as large as the burst made it.
func TestArenaKeepsRoom(t *testing.T) {
	var sh shard
	sh.init(maphash.MakeSeed())
	const burst = 10_000
	key := func(i int) string { return fmt.Sprintf("lockout:a:r:{u=alice}:%015d", i) }
	add := func(i int) {
		k := key(i)
		if err := sh.add(sh.hash(k), k, entry{value: 1, exp: never}); err != nil {
			t.Fatal(err)
		}
	}
	remove := func(i int) {
		j, ok := sh.lookup(key(i))
		if !ok {
			t.Fatalf("key %d not found", i)
		}
		sh.remove(j)
	}
	for i := range burst {
		add(i)
	}
	for i := range burst {
		remove(i)
	}
	copies, arena := 0, unsafe.SliceData(sh.keys)
	for i := burst; i < 3*burst; i++ {
		add(i)
		remove(i)
		if a := unsafe.SliceData(sh.keys); a != arena {
			copies, arena = copies+1, a
		}
	}
	if copies > 4 {
		t.Errorf("%d keys added and removed after a burst of %d: the arena was copied %d times, want at most 4", 2*burst, burst, copies)
	}
}

// TestSweepCostFollowsExpired sweeps a large shard whose keys expire one
// at a time, as a full store's creations do (reclaim) when an attacker
// keeps MaxKeys keys of one hash tag that expire one after another: each
// sweep removes one key, and must not walk the whole table for it (it did:
// some 10 ms under the shard's lock per creation, with a million keys).
func TestSweepCostFollowsExpired(t *testing.T) {
	const keys, sweeps = 1 << 15, 500
	var sh shard
	sh.init(maphash.MakeSeed())
	for i := range keys {
		k := fmt.Sprintf("lockout:f:{u=victim}:%016x", i)
		if err := sh.add(sh.hash(k), k, entry{value: 1, exp: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for now := int64(1); now <= sweeps; now++ {
		n, cost := sh.sweepCost(now)
		if n != 1 {
			t.Fatalf("sweep at %d removed %d keys, want 1", now, n)
		}
		total += cost
	}
	if avg, most := total/sweeps, len(sh.cells)/16; avg > most {
		t.Errorf("a sweep that removes one key of %d looks at %d cells and blocks on average, want at most %d (table of %d cells)", keys, avg, most, len(sh.cells))
	}
}

// TestSweepFindsMovedKey moves a key back across a block's boundary (a
// removal before it, in its probe) and checks that a sweep still finds it
// once it expires: the block it moved into must not be skipped.
func TestSweepFindsMovedKey(t *testing.T) {
	var sh shard
	sh.init(maphash.MakeSeed())
	const mask = 127 // the table of 53 keys: 128 cells
	// keysAt returns n keys whose home is in [lo, hi).
	next := 0
	keysAt := func(n, lo, hi int) []string {
		var ks []string
		for len(ks) < n {
			k := fmt.Sprintf("k%d", next)
			next++
			if h := int(sh.hash(k)) & mask; h >= lo && h < hi {
				ks = append(ks, k)
			}
		}
		return ks
	}
	add := func(k string, exp int64) {
		if err := sh.add(sh.hash(k), k, entry{value: 1, exp: exp}); err != nil {
			t.Fatal(err)
		}
	}
	// Fillers far from cell 63, so that the table has two blocks.
	for _, k := range append(keysAt(25, 0, 20), keysAt(25, 100, 110)...) {
		add(k, 1000)
	}
	abc := keysAt(3, 63, 64) // in cells 63 (block 0), 64 and 65 (block 1)
	add(abc[0], 1000)
	add(abc[1], 10)
	add(abc[2], 1000)
	if len(sh.cells) != mask+1 {
		t.Fatalf("%d cells, want %d", len(sh.cells), mask+1)
	}
	if n := sh.sweep(0); n != 0 {
		t.Fatalf("sweep at 0 removed %d", n)
	}
	i, _ := sh.lookup(abc[0])
	sh.remove(i) // abc[1] moves back into cell 63, in block 0
	if i, _ := sh.lookup(abc[1]); i != 63 {
		t.Fatalf("%q in cell %d, want 63", abc[1], i)
	}
	if n := sh.sweep(20); n != 1 {
		t.Errorf("sweep at 20 removed %d keys, want 1 (the key moved into block 0, expired at 10)", n)
	}
}
