package redis

import (
	"context"
	"fmt"
	"iter"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// Keys yields every live key that begins with prefix, in no particular order.
// It implements [backend.Lister] with SCAN and a MATCH pattern (never KEYS,
// which blocks the server), on every master of a Cluster and every shard of
// a Ring, one node after the other; each SCAN is one round trip bounded by
// ctx. Redis never returns an expired key from SCAN. A key may be yielded
// twice when the server rehashes during the scan.
func (s *Store) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if s.closed.Load() {
			yield("", errClosed)
			return
		}
		if err := ctx.Err(); err != nil {
			yield("", fmt.Errorf("lockout/redis: keys: %w", err))
			return
		}
		var nodes []goredis.Cmdable
		err := s.bounded(ctx, func(ctx context.Context) error {
			var err error
			nodes, err = s.masters(ctx)
			return err
		})
		if err != nil {
			yield("", fmt.Errorf("lockout/redis: keys: %w", withCtxErr(ctx, err)))
			return
		}
		match := globEscape(s.prefix+prefix) + "*"
		for _, node := range nodes {
			var cursor uint64
			for {
				if s.closed.Load() {
					yield("", errClosed)
					return
				}
				var (
					keys []string
					next uint64
				)
				err := s.bounded(ctx, func(ctx context.Context) error {
					var err error
					keys, next, err = node.Scan(ctx, cursor, match, s.scanCount).Result()
					return err
				})
				if err != nil {
					yield("", fmt.Errorf("lockout/redis: keys: SCAN on %s: %w", nodeName(node), withCtxErr(ctx, err)))
					return
				}
				for _, k := range keys {
					if len(k) == len(s.prefix) {
						continue // the prefix itself: not a key of the store
					}
					if !yield(k[len(s.prefix):], nil) {
						return
					}
				}
				if cursor = next; cursor == 0 {
					break
				}
			}
		}
	}
}

// globEscape escapes the characters that Redis glob patterns (SCAN MATCH)
// give a meaning, so that s matches itself only.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := range len(s) {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
