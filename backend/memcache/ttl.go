package memcache

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/go-lockout/lockout/backend"
)

const (
	// maxRelative is the largest exptime memcached reads as relative (30
	// days); larger ones are unix times.
	maxRelative = 30 * 24 * 60 * 60

	// relativeSlack is how many seconds a relative exptime exceeds the
	// logical expiry. memcached reads its clock once a second from a timer
	// that drifts, so an item given n seconds can expire up to 2 s early;
	// a third second covers a late tick.
	relativeSlack = 3

	// absoluteSlack is how many seconds an absolute exptime (TTLs over 30
	// days) exceeds the logical expiry: it is read against the server's
	// own wall clock, which may differ from ours.
	absoluteSlack = 5 * 60

	// valueWidth is the width values are stored with, padded with spaces:
	// wide enough for any uint64, so that memcached always increments in
	// place and never needs memory for a counter that gains a digit.
	valueWidth = 20

	// minTTL is reported for a key that exists at the linearization point
	// of an operation but whose logical expiry passed while it ran.
	minTTL = time.Nanosecond
)

// expiry is how a TTL is stored: the logical expiry in the item's flags
// (unix seconds, 0 for none) and the exptime memcached enforces, which is
// never earlier.
type expiry struct {
	flags   uint32
	exptime int32
}

// newExpiry returns the expiry of a key given ttl (positive, or NoExpiry)
// at now. The logical expiry is now+ttl rounded up to the next second, so a
// key never expires early and lives at most a second more than asked.
func newExpiry(now time.Time, ttl time.Duration) (expiry, error) {
	if ttl == backend.NoExpiry {
		return expiry{}, nil
	}
	end := now.Add(ttl)
	e := end.Unix()
	if end.Nanosecond() != 0 {
		e++
	}
	if e > math.MaxUint32 {
		return expiry{}, fmt.Errorf("%w: TTL %v ends after 2106, beyond what memcached flags can hold", backend.ErrInvalid, ttl)
	}
	// now.Unix() rounds down, so rel-relativeSlack >= e-now in seconds.
	if rel := e - now.Unix() + relativeSlack; rel <= maxRelative {
		return expiry{flags: uint32(e), exptime: int32(rel)}, nil
	}
	if abs := e + absoluteSlack; abs <= math.MaxInt32 {
		return expiry{flags: uint32(e), exptime: int32(abs)}, nil
	}
	// memcached's exptime is an int32: beyond 2038 the item is kept
	// without a physical expiry; the logical one in the flags still holds.
	return expiry{flags: uint32(e)}, nil
}

// remaining returns the remaining TTL of an item whose flags are flags, and
// false if its logical expiry has passed: memcached may hold an item for a
// few seconds after it, and such an item counts as missing.
func remaining(flags uint32, now time.Time) (time.Duration, bool) {
	if flags == 0 {
		return backend.NoExpiry, true
	}
	d := time.Unix(int64(flags), 0).Sub(now)
	return d, d > 0
}

// ttlOf is the TTL a fresh expiry reports at now.
func (x expiry) ttlOf(now time.Time) time.Duration {
	d, ok := remaining(x.flags, now)
	if !ok {
		return minTTL
	}
	return d
}

// formatValue returns v as stored: decimal, padded with spaces to
// valueWidth bytes. memcached's incr and decr read a number followed by
// spaces and keep the padding.
func formatValue(v uint64) []byte {
	b := make([]byte, 0, valueWidth)
	b = strconv.AppendUint(b, v, 10)
	for len(b) < valueWidth {
		b = append(b, ' ')
	}
	return b
}

// parseValue reads a stored counter: a decimal number, possibly followed by
// spaces (the padding, and memcached's own after a decrement shortened it).
func parseValue(b []byte) (int64, error) {
	b = bytes.TrimRight(b, " ")
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("memcache: stored value %.24q is not a counter: %w", b, err)
	}
	return clampValue(v), nil
}

// clampValue converts a memcached counter to int64; values past MaxInt64
// (reachable only by adding more than that) are reported as MaxInt64.
func clampValue(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}
