package bolt

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// keysChunk is how many entries one read transaction of Keys scans.
const keysChunk = 256

// listed is a key read by Keys, with its expiry.
type listed struct {
	key string
	exp int64
}

// Keys yields every live key that begins with prefix (see
// [backend.Lister]). It reads the file in short read transactions of a few
// hundred entries, with a cursor that resumes after the last entry read, so
// that no transaction stays open while the caller's loop body runs (a
// long-lived read transaction would stop the file from growing and keep
// freed pages from being reused). Keys of at most 512 bytes are found by a
// cursor seek to the prefix; longer ones, stored under their hash, are all
// scanned and matched against the prefix.
func (s *Store) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for _, tag := range []byte{tagRaw, tagHashed} {
			// start is where the scan begins, and what every stored key
			// it reads begins with: the tag, and for raw keys the prefix.
			start := []byte{tag}
			if tag == tagRaw {
				if len(prefix) > maxRawKey {
					continue // no raw key is that long
				}
				start = append(start, prefix...)
			}
			var after []byte // the last stored key read
			for {
				if err := ctx.Err(); err != nil {
					yield("", fmt.Errorf("lockout/bolt: keys: %w", err))
					return
				}
				chunk, last, err := s.keysChunk(start, after, prefix)
				if err != nil {
					yield("", err)
					return
				}
				for _, l := range chunk {
					// Never yield a key past its expiry, even one that
					// expired since it was read.
					if l.exp != 0 && time.Now().UnixNano() >= l.exp {
						continue
					}
					if !yield(l.key, nil) {
						return
					}
				}
				if last == nil {
					break
				}
				after = last
			}
		}
	}
}

// keysChunk reads up to keysChunk entries under start's tag, from after
// (exclusive) or else from start, and returns the live keys among them that
// begin with prefix, and the last stored key read: nil when the scan is
// over.
func (s *Store) keysChunk(start, after []byte, prefix string) (chunk []listed, last []byte, err error) {
	if !s.enter() {
		return nil, nil, errClosed
	}
	defer s.leave()
	err = s.db.View(func(tx *bbolt.Tx) error {
		entries, _, err := s.buckets(tx)
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		c := entries.Cursor()
		var k, v []byte
		if after == nil {
			k, v = c.Seek(start)
		} else if k, v = c.Seek(after); bytes.Equal(k, after) {
			k, v = c.Next()
		}
		var prev []byte
		for n := 0; k != nil; k, v = c.Next() {
			if !bytes.HasPrefix(k, start) {
				return nil // past the prefix (raw) or the tag (hashed)
			}
			if n == keysChunk {
				// More to read: the next chunk resumes after prev.
				last = bytes.Clone(prev)
				return nil
			}
			n++
			prev = k
			e, err := decodeEntry(k, v, "")
			if err != nil {
				return err
			}
			if !e.live(now) {
				continue
			}
			key := originalKey(k, v)
			if !strings.HasPrefix(key, prefix) {
				continue
			}
			chunk = append(chunk, listed{key: key, exp: e.exp})
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("lockout/bolt: keys: %w", mapErr(err))
	}
	return chunk, last, nil
}
