package memory

import (
	"context"
	"fmt"
	"iter"
)

// Keys yields every live key that begins with prefix, in no particular
// order; see [backend.Lister]. It goes through the shards one at a time:
// it copies the matching keys of a shard under its lock, then yields them
// holding no lock, each only if it is still live then. If the store closes
// during the iteration, the iteration ends with an error wrapping
// [backend.ErrClosed].
func (s *Store) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := ctx.Err(); err != nil {
			yield("", fmt.Errorf("memory: %w", err))
			return
		}
		var keys []string
		n := 0
		for i := range s.shards {
			sh := &s.shards[i]
			keys = keys[:0]
			sh.mu.Lock()
			if s.closed.Load() {
				sh.mu.Unlock()
				yield("", errClosed)
				return
			}
			now := s.now()
			keys = sh.appendLive(keys, prefix, now)
			sh.mu.Unlock()
			for _, k := range keys {
				if n++; n&255 == 0 {
					if err := ctx.Err(); err != nil {
						yield("", fmt.Errorf("memory: %w", err))
						return
					}
				}
				live, err := s.live(sh, k)
				if err != nil {
					yield("", err)
					return
				}
				if live && !yield(k, nil) {
					return
				}
			}
		}
	}
}

// live reports whether shard sh holds key live now. An expired key it
// finds is removed.
func (s *Store) live(sh *shard, key string) (bool, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s.closed.Load() {
		return false, errClosed
	}
	i, ok := sh.lookup(key)
	if ok && !sh.at(i).live(s.now()) {
		sh.remove(i)
		s.keys.Add(-1)
		return false, nil
	}
	return ok, nil
}
