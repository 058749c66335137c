package memory

import (
	"strings"
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
		r.TTL = time.Duration(e.exp - now)
	}
	return r
}

// shard holds the keys whose hash tags hash to it, under its lock. Its map
// gives each key the index of its entry in a slice: an update writes the
// entry in place, and never stores the caller's string as the map's key
// (a map replaces a string key on assignment), so the store keeps only its
// own copies of keys, never a caller's string (maybe part of a larger
// buffer).
type shard struct {
	mu      sync.Mutex
	index   map[string]uint32 // nil once the store is closed
	entries []entry
	free    []uint32 // indexes of unused entries
	// minExp is at most the earliest expiry in the shard (never: none
	// expires). Written under mu, read anywhere: the sweeps skip shards
	// where nothing can have expired.
	minExp atomic.Int64
	_      [56]byte // shards on separate cache lines
}

func (sh *shard) init() {
	sh.index = make(map[string]uint32)
	sh.minExp.Store(never)
}

// drop forgets every key, for Close. The caller holds sh.mu.
func (sh *shard) drop() {
	sh.index, sh.entries, sh.free = nil, nil, nil
	sh.minExp.Store(never)
}

// len returns the number of keys sh holds. The caller holds sh.mu.
func (sh *shard) len() int { return len(sh.index) }

// lookup returns the index of key's entry. The caller holds sh.mu.
func (sh *shard) lookup(key string) (uint32, bool) {
	i, ok := sh.index[key]
	return i, ok
}

// add stores a new key with entry e. The caller holds sh.mu, and has
// checked that sh does not hold key.
func (sh *shard) add(key string, e entry) {
	var i uint32
	if n := len(sh.free); n > 0 {
		i = sh.free[n-1]
		sh.free = sh.free[:n-1]
		sh.entries[i] = e
	} else {
		i = uint32(len(sh.entries))
		sh.entries = append(sh.entries, e)
	}
	sh.index[strings.Clone(key)] = i
	sh.noteExp(e.exp)
}

// noteExp lowers sh.minExp to exp if needed. The caller holds sh.mu.
func (sh *shard) noteExp(exp int64) {
	if exp < sh.minExp.Load() {
		sh.minExp.Store(exp)
	}
}

// remove deletes key, whose entry is at i. The caller holds sh.mu.
func (sh *shard) remove(key string, i uint32) {
	delete(sh.index, key)
	sh.entries[i] = entry{}
	sh.free = append(sh.free, i)
}

// sweep deletes the entries of sh expired at now, and returns how many.
// The caller holds sh.mu.
func (sh *shard) sweep(now int64) int {
	n, low := 0, int64(never)
	for k, i := range sh.index {
		if exp := sh.entries[i].exp; now >= exp {
			sh.remove(k, i)
			n++
		} else {
			low = min(low, exp)
		}
	}
	sh.minExp.Store(low)
	return n
}

// appendLive appends the keys of sh live at now that begin with prefix.
// The caller holds sh.mu.
func (sh *shard) appendLive(keys []string, prefix string, now int64) []string {
	for k, i := range sh.index {
		if sh.entries[i].live(now) && strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	return keys
}
