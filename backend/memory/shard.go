package memory

import (
	"errors"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// entry is one key's state: 16 bytes, no pointer.
type entry struct {
	value int64
	exp   int64 // expiry in nanoseconds since the store's epoch; never: none
}

// live reports whether e exists at now.
func (e entry) live(now int64) bool { return now < e.exp }

// result describes e at now, where e is live.
func (e entry) result(now int64) backend.Result {
	r := backend.Result{Found: true, Value: e.value, TTL: backend.NoExpiry}
	if e.exp != never {
		r.TTL, r.Expires = time.Duration(e.exp-now), e.exp
	}
	return r
}

// cell is one place in a shard's table: a key's hash, where the key's
// bytes are in the shard's arena, and its entry; or nothing (hash 0). A
// cell holds no pointer, and neither does the arena: however many keys a
// store holds, the garbage collector has nothing in them to scan, and a
// new key costs no allocation of its own.
type cell struct {
	hash uint64 // see shard.hash; 0: the cell is empty
	off  uint32 // the key is keys[off : off+size]
	size uint32
	entry
}

// maxArena bounds a shard's arena: the offsets of its keys are 32 bits,
// and an int bounds the length of a slice. A variable for a test.
var maxArena int64 = min(math.MaxUint32, math.MaxInt)

// shard holds the keys whose hash tags hash to it, under its lock, in a
// table with open addressing and linear probing: a key sits in the first
// cell from its home that is empty or its own. A key's home comes from the
// hash of the whole key, never from its tag alone: an attacker can make
// any number of keys of one tag (see keyHash), and keys sharing a home
// would make every probe through them as long as their count. A removal
// moves back the keys after it that a probe would otherwise not reach (no
// tombstones). Each block of 64 cells keeps a bound on the earliest
// expiry in it, which a sweep reads to skip the blocks where nothing can
// have expired. The table doubles when it is
// three quarters full, and a sweep halves it (or more) when it leaves it
// less than an eighth full: unlike a Go map, a shard gives back the room
// of a burst of keys once they expire.
//
// The keys' bytes sit one after another in the shard's arena, in the order
// they were added. A removed key's bytes stay there, counted as dead, until
// the arena is full: it is then copied, live keys only, into a new one
// twice as large as they are. A sweep that leaves the arena less than a
// quarter live copies it likewise, so that its room comes back too.
type shard struct {
	mu    sync.Mutex
	seed  maphash.Seed
	cells []cell // a power of two long, or empty
	n     int    // keys held
	keys  []byte // the arena
	dead  int    // bytes of keys in the arena that were removed
	// blocks[b] is at most the earliest expiry of the keys in the cells
	// of block b, cells[b<<blockBits : (b+1)<<blockBits] (never: none): a
	// sweep looks only at the blocks where a key can have expired, so
	// that its cost follows the keys it removes, not the table's size.
	blocks []int64
	// minExp is at most the earliest expiry in the shard (never: none
	// expires). Written under mu, read anywhere: the sweeps skip shards
	// where nothing can have expired.
	minExp atomic.Int64
	_      [16]byte // shards on separate cache lines: 128 bytes
}

// blockBits is the log2 of the cells in a block of shard.blocks.
const blockBits = 6

// minCells is the smallest table a shard allocates.
const minCells = 8

func (sh *shard) init(seed maphash.Seed) {
	sh.seed = seed
	sh.minExp.Store(never)
}

// hash returns the hash of key in sh's table; see keyHash.
func (sh *shard) hash(key string) uint64 { return keyHash(sh.seed, key) }

// keyHash returns the hash of key in a shard's table: the key's own hash,
// whose low bits give its home, with the top bit set, so that it is never
// 0. It is the whole key's, not its hash tag's: the keys of one tag share
// a shard, but not a home. One tag can hold as many keys as an attacker
// cares to make: a username's memory of wrong passwords keeps one key per
// counted failure (lockout:f:{u=alice}:<fingerprint>), and every failure
// from a new address counts when no rule is keyed by the username alone.
// A shared home would make each probe of that shard through them as long
// as their count, under the shard's lock. (Homes by tag, so that a rule
// key's counter and lock marker sat side by side, measured no faster.)
func keyHash(seed maphash.Seed, key string) uint64 {
	return maphash.String(seed, key) | 1<<63
}

// drop forgets every key, for Close. The caller holds sh.mu.
func (sh *shard) drop() {
	sh.cells, sh.blocks, sh.n, sh.keys, sh.dead = nil, nil, 0, nil, 0
	sh.minExp.Store(never)
}

// len returns the number of keys sh holds. The caller holds sh.mu.
func (sh *shard) len() int { return sh.n }

// at returns the entry of the key in cell i. The caller holds sh.mu.
func (sh *shard) at(i int) *entry { return &sh.cells[i].entry }

// key returns the key of cell c, in the arena: valid until the next add
// or sweep. The caller holds sh.mu.
func (sh *shard) key(c *cell) []byte { return sh.keys[c.off : c.off+c.size] }

// holds reports whether cell c holds key, whose hash is h. The caller
// holds sh.mu.
func (sh *shard) holds(c *cell, h uint64, key string) bool {
	return c.hash == h && string(sh.key(c)) == key
}

// lookup returns the cell of key. The caller holds sh.mu.
func (sh *shard) lookup(key string) (int, bool) {
	i := sh.find(sh.hash(key), key)
	return i, i >= 0
}

// find returns the cell of key, whose hash is h, or -1. The caller holds
// sh.mu.
func (sh *shard) find(h uint64, key string) int {
	if sh.n == 0 {
		return -1
	}
	mask := len(sh.cells) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		c := &sh.cells[i]
		if sh.holds(c, h, key) {
			return i
		}
		if c.hash == 0 {
			return -1
		}
	}
}

// findFrom is find with a hint: the cell where the key was, or -1. The
// caller holds sh.mu.
func (sh *shard) findFrom(h uint64, key string, hint int) int {
	if hint >= 0 && hint < len(sh.cells) {
		if sh.holds(&sh.cells[hint], h, key) {
			return hint
		}
	}
	return sh.find(h, key)
}

// errArena is returned for a key that finds its shard's arena full when
// the live keys and it would take more than half of maxArena: the new
// arena would have too little room left for its copy to pay.
var errArena = errors.New("memory: a shard's keys would take more than half of its arena's bound (4 GiB)")

// add stores a new key, whose hash is h, with entry e. The caller holds
// sh.mu, and has checked that sh does not hold key.
func (sh *shard) add(h uint64, key string, e entry) error {
	if len(sh.keys)+len(key) > cap(sh.keys) {
		// As large as it was, at least: a compaction walks the whole
		// table, which only a sweep shrinks, so the arena shrinks only in
		// a sweep too. (After a burst of keys removed one by one, an
		// arena sized by the few left would be copied, through the large
		// table, every few new keys.)
		if err := sh.compact(len(key), cap(sh.keys)); err != nil {
			return err
		}
	}
	if (sh.n+1)*4 > len(sh.cells)*3 {
		sh.resize(max(2*len(sh.cells), minCells))
	}
	off := len(sh.keys)
	sh.keys = append(sh.keys, key...)
	sh.put(cell{hash: h, off: uint32(off), size: uint32(len(key)), entry: e})
	sh.n++
	sh.noteExp(e.exp)
	return nil
}

// minArena is the smallest arena a shard allocates.
const minArena = 256

// compact copies the live keys into a new arena of at least keep bytes,
// with room for extra bytes more and as many again as the live keys and
// extra take. The caller holds sh.mu.
func (sh *shard) compact(extra, keep int) error {
	need := int64(len(sh.keys) - sh.dead + extra)
	if 2*need > maxArena {
		return errArena
	}
	keys := make([]byte, 0, min(max(2*need, int64(keep), minArena), maxArena))
	for i := range sh.cells {
		if c := &sh.cells[i]; c.hash != 0 {
			off := len(keys)
			keys = append(keys, sh.key(c)...)
			c.off = uint32(off)
		}
	}
	sh.keys, sh.dead = keys, 0
	return nil
}

// put places c in the first empty cell from its home. The caller holds
// sh.mu, and the table has room.
func (sh *shard) put(c cell) {
	mask := len(sh.cells) - 1
	i := int(c.hash) & mask
	for sh.cells[i].hash != 0 {
		i = (i + 1) & mask
	}
	sh.cells[i] = c
	sh.noteBlock(i, c.exp)
}

// noteBlock lowers the earliest expiry of the block of cell i to exp if
// needed. The caller holds sh.mu.
func (sh *shard) noteBlock(i int, exp int64) {
	if b := &sh.blocks[i>>blockBits]; exp < *b {
		*b = exp
	}
}

// setExp sets the expiry of the key in cell i. The caller holds sh.mu.
func (sh *shard) setExp(i int, exp int64) {
	sh.cells[i].exp = exp
	sh.noteBlock(i, exp)
	sh.noteExp(exp)
}

// resize moves the keys to a new table of n cells, a power of two. The
// caller holds sh.mu.
func (sh *shard) resize(n int) {
	old := sh.cells
	sh.cells = make([]cell, n)
	sh.blocks = make([]int64, (n+1<<blockBits-1)>>blockBits)
	for b := range sh.blocks {
		sh.blocks[b] = never
	}
	for i := range old {
		if old[i].hash != 0 {
			sh.put(old[i])
		}
	}
}

// noteExp lowers sh.minExp to exp if needed. The caller holds sh.mu.
func (sh *shard) noteExp(exp int64) {
	if exp < sh.minExp.Load() {
		sh.minExp.Store(exp)
	}
}

// remove deletes the key in cell i. The keys after it, up to the next
// empty cell, move back into the hole when their probe passes it. The
// caller holds sh.mu.
func (sh *shard) remove(i int) {
	c := sh.cells[i]
	mask := len(sh.cells) - 1
	hole := i
	for j := (i + 1) & mask; sh.cells[j].hash != 0; j = (j + 1) & mask {
		// A probe for the key in j starts at its home and reaches j
		// through the hole unless the home lies after the hole.
		home := int(sh.cells[j].hash) & mask
		if (j-home)&mask >= (j-hole)&mask {
			sh.cells[hole] = sh.cells[j]
			sh.noteBlock(hole, sh.cells[hole].exp)
			hole = j
		}
	}
	sh.cells[hole] = cell{}
	sh.n--
	sh.dead += int(c.size)
}

// sweep deletes the keys of sh expired at now, and returns how many. A
// table left less than an eighth full shrinks to be at most half full.
// The caller holds sh.mu.
func (sh *shard) sweep(now int64) int {
	n, _ := sh.sweepCost(now)
	return n
}

// sweepCost is sweep, and also returns how many cells and blocks it
// looked at: it walks only the blocks where a key can have expired.
//
// A removal moves keys back, from cells after the hole to cells from the
// hole on: into the block being walked, at or after the cell being
// looked at, or into a later block (whose bound it lowers), never into an
// earlier one but across the end of the table, from cells the sweep has
// found live. So every key expired at now is removed.
func (sh *shard) sweepCost(now int64) (n, cost int) {
	for b := range sh.blocks {
		cost++
		if sh.blocks[b] > now {
			continue
		}
		low := int64(never)
		end := min((b+1)<<blockBits, len(sh.cells))
		for i := b << blockBits; i < end; {
			cost++
			c := &sh.cells[i]
			switch {
			case c.hash == 0:
			case now >= c.exp:
				sh.remove(i)
				n++
				continue // a key after it may have moved into cell i
			default:
				low = min(low, c.exp)
			}
			i++
		}
		sh.blocks[b] = low
	}
	if len(sh.cells) > minCells && sh.n*8 < len(sh.cells) {
		size := minCells
		for size < 2*sh.n {
			size *= 2
		}
		sh.resize(size)
	}
	if cap(sh.keys) > minArena && (len(sh.keys)-sh.dead)*4 < cap(sh.keys) {
		sh.compact(0, 0) // cannot fail: a quarter of an arena live at most
	}
	low := int64(never)
	for _, l := range sh.blocks {
		low = min(low, l)
	}
	sh.minExp.Store(low)
	return n, cost
}

// appendLive appends the keys of sh live at now that begin with prefix.
// The caller holds sh.mu.
func (sh *shard) appendLive(keys []string, prefix string, now int64) []string {
	for i := range sh.cells {
		if c := &sh.cells[i]; c.hash != 0 && c.live(now) && c.size >= uint32(len(prefix)) {
			if k := sh.key(c); string(k[:len(prefix)]) == prefix {
				keys = append(keys, string(k))
			}
		}
	}
	return keys
}
