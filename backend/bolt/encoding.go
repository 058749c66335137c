package bolt

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// On-disk layout, inside the store's bucket:
//
//	"format"  -> formatVersion
//	"entries" (bucket): stored key -> entry
//	"expiry"  (bucket): expiry (8 bytes, big endian) || stored key -> empty
//
// A key of at most maxRawKey bytes is stored as tagRaw || key, so that raw
// keys sort by their own bytes and a prefix scan is a cursor seek. A longer
// key is stored as tagHashed || SHA-256(key), and its entry keeps the
// original key, which every read compares: two long keys can only share a
// slot through a SHA-256 collision, and even then the store reports an
// error rather than mixing their counters.
//
// An entry is
//
//	version (1 byte) | expiry (8 bytes) | value (8 bytes) | original key (hashed keys only)
//
// with the expiry in Unix nanoseconds, big endian, and zero for a key that
// never expires. Every entry with an expiry has exactly one index entry in
// the "expiry" bucket, which the sweeper walks in expiry order.
const (
	formatVersion = "lockout/bolt 1"
	entryVersion  = 1
	entryHeader   = 17

	tagRaw    byte = 'k'
	tagHashed byte = 'h'

	// maxRawKey is the longest key stored as is. Longer ones are hashed:
	// bbolt refuses keys over 32 KiB, and large keys make its B+tree
	// branches (which copy keys) large too.
	maxRawKey = 512
)

var (
	formatKey     = []byte("format")
	entriesBucket = []byte("entries")
	expiryBucket  = []byte("expiry")
)

// errCorrupt reports an entry the store cannot decode.
var errCorrupt = errors.New("lockout/bolt: corrupt entry")

// entry is a decoded counter.
type entry struct {
	exp int64 // Unix nanoseconds; 0: never expires
	val int64
}

// live reports whether e is still alive at now (Unix nanoseconds). A key
// is gone from the first nanosecond of its expiry on.
func (e entry) live(now int64) bool { return e.exp == 0 || now < e.exp }

// ttl returns e's remaining lifetime at now, for a live e.
func (e entry) ttl(now int64) time.Duration {
	if e.exp == 0 {
		return backend.NoExpiry
	}
	return time.Duration(e.exp - now)
}

// result returns the Result of an operation that leaves e, live, at now:
// its Expires is its expiry on the wall clock (Unix nanoseconds).
func (e entry) result(now int64) backend.Result {
	return backend.Result{Found: true, Value: e.val, TTL: e.ttl(now), Expires: e.exp}
}

// expiryAt returns the expiry of a key given ttl at now: 0 for NoExpiry,
// saturated instead of overflowing.
func expiryAt(now int64, ttl time.Duration) int64 {
	if ttl == backend.NoExpiry {
		return 0
	}
	if int64(ttl) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(ttl)
}

// storedKey appends the stored form of key to dst.
func storedKey(dst []byte, key string) []byte {
	if len(key) <= maxRawKey {
		dst = append(dst, tagRaw)
		return append(dst, key...)
	}
	h := sha256.New()
	h.Write([]byte(key))
	dst = append(dst, tagHashed)
	return h.Sum(dst)
}

// encodeEntry returns a new buffer holding e for key (stored as sk). bbolt
// keeps a reference to a value until its transaction ends, so every Put
// gets a buffer of its own.
func encodeEntry(sk []byte, key string, e entry) []byte {
	n := entryHeader
	if sk[0] == tagHashed {
		n += len(key)
	}
	b := make([]byte, entryHeader, n)
	b[0] = entryVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(e.exp))
	binary.BigEndian.PutUint64(b[9:17], uint64(e.val))
	if sk[0] == tagHashed {
		b = append(b, key...)
	}
	return b
}

// decodeEntry decodes v, stored under sk. For a hashed key, it checks that
// the original key is key (when key is not empty).
func decodeEntry(sk, v []byte, key string) (entry, error) {
	if len(v) < entryHeader || v[0] != entryVersion {
		return entry{}, fmt.Errorf("%w: %d bytes under %q", errCorrupt, len(v), truncKey(sk))
	}
	e := entry{
		exp: int64(binary.BigEndian.Uint64(v[1:9])),
		val: int64(binary.BigEndian.Uint64(v[9:17])),
	}
	if sk[0] == tagHashed && key != "" && string(v[entryHeader:]) != key {
		// A SHA-256 collision, or a corrupt file: never mix two keys.
		return entry{}, fmt.Errorf("%w: hashed slot %x holds another key than %q", errCorrupt, sk[1:], truncKey([]byte(key)))
	}
	return e, nil
}

// originalKey returns the key a stored key and its entry stand for.
func originalKey(sk, v []byte) string {
	if sk[0] == tagHashed {
		return string(v[entryHeader:])
	}
	return string(sk[1:])
}

// indexKey returns a new buffer holding the expiry index key of sk.
func indexKey(exp int64, sk []byte) []byte {
	b := make([]byte, 8, 8+len(sk))
	binary.BigEndian.PutUint64(b, uint64(exp))
	return append(b, sk...)
}

func truncKey(k []byte) string {
	if len(k) > 40 {
		return fmt.Sprintf("%s...(%d bytes)", k[:32], len(k))
	}
	return string(k)
}
