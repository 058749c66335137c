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
					case op < 9: // update in place
						if i, ok := sh.lookup(k); ok {
							sh.at(i).value++
							e := model[k]
							e.value++
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
