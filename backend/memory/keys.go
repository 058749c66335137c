package memory

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"
)

// Keys yields every live key that begins with prefix, in no particular
// order; see [backend.Lister]. It collects the matching entries in one pass
// over ristretto's shards, then yields them without holding any lock,
// skipping those that have expired or been removed meanwhile. If the store
// closes during the iteration, the iteration ends with an error wrapping
// [backend.ErrClosed].
func (s *Store) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := ctx.Err(); err != nil {
			yield("", fmt.Errorf("memory: %w", err))
			return
		}
		entries, err := s.snapshot(ctx, prefix)
		if err != nil {
			yield("", err)
			return
		}
		for i, e := range entries {
			if i&255 == 255 {
				if err := ctx.Err(); err != nil {
					yield("", fmt.Errorf("memory: %w", err))
					return
				}
			}
			if s.closed.Load() {
				yield("", errClosed)
				return
			}
			if !e.liveAt(s.now()) {
				continue
			}
			if !yield(e.key, nil) {
				return
			}
		}
	}
}

// snapshot returns the entries whose key begins with prefix.
//
// IterValues misses an entry that a batch is re-inserting (between its Del
// and its Set being applied). Such a batch holds the entry's stripe with an
// odd seq from before the Del until after the entry is visible again, so a
// stripe whose seq was even and unchanged across the pass lost nothing. The
// other stripes are collected again in a second pass, holding their locks:
// then none of their entries is in flight.
func (s *Store) snapshot(ctx context.Context, prefix string) ([]*entry, error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed.Load() {
		return nil, errClosed
	}
	var before [numStripes]uint64
	for i := range s.stripes {
		before[i] = s.stripes[i].seq.Load()
	}
	var out []*entry
	var cerr error
	n := 0
	collect := func(redo *[numStripes / 64]uint64) func(*entry) bool {
		return func(e *entry) bool {
			if n++; n&1023 == 0 {
				if cerr = ctx.Err(); cerr != nil {
					return true
				}
			}
			if redo != nil {
				if i := stripeOf(e.h); redo[i>>6]&(1<<(i&63)) == 0 {
					return false
				}
			}
			if strings.HasPrefix(e.key, prefix) {
				out = append(out, e)
			}
			return false
		}
	}
	s.cache.IterValues(collect(nil))
	if cerr != nil {
		return nil, fmt.Errorf("memory: %w", cerr)
	}
	var redo [numStripes / 64]uint64
	again := false
	for i := range s.stripes {
		if seq := s.stripes[i].seq.Load(); seq != before[i] || seq&1 == 1 {
			redo[i>>6] |= 1 << (i & 63)
			again = true
		}
	}
	if !again {
		return out, nil
	}
	// Ascending order, holding nothing else: allowed by the lock order.
	for i := range s.stripes {
		if redo[i>>6]&(1<<(i&63)) != 0 {
			s.stripes[i].mu.Lock()
		}
	}
	s.cache.IterValues(collect(&redo))
	for i := range s.stripes {
		if redo[i>>6]&(1<<(i&63)) != 0 {
			s.stripes[i].mu.Unlock()
		}
	}
	if cerr != nil {
		return nil, fmt.Errorf("memory: %w", cerr)
	}
	return out, nil
}

// sweepDue reports whether a full store may sweep at now.
func (s *Store) sweepDue(now int64) bool {
	return now-s.lastSweep.Load() >= int64(sweepEvery)
}

// sweep reclaims the expired keys ristretto still shows (those within
// ReclaimDelay of their expiry; older ones are hidden from IterValues and
// left to ristretto's cleanup). It runs when a creation finds the store
// full, at most once per sweepEvery and one at a time, from a batch that
// holds no stripe.
func (s *Store) sweep() {
	if !s.sweepMu.TryLock() {
		return
	}
	defer s.sweepMu.Unlock()
	now := s.now()
	if !s.sweepDue(now) {
		return
	}
	s.lastSweep.Store(now)
	var dead []*entry
	s.cache.IterValues(func(e *entry) bool {
		if !e.liveAt(now) {
			dead = append(dead, e)
		}
		return false
	})
	slices.SortFunc(dead, func(a, b *entry) int { return cmp.Compare(stripeOf(a.h), stripeOf(b.h)) })
	for len(dead) > 0 {
		i := stripeOf(dead[0].h)
		n := 1
		for n < len(dead) && stripeOf(dead[n].h) == i {
			n++
		}
		s.stripes[i].mu.Lock()
		for _, e := range dead[:n] {
			if v, ok := s.cache.Get(e.h); !ok || v != e {
				continue
			}
			e.mu.Lock()
			expired := !e.liveAt(s.now())
			if expired {
				s.retire(e)
			}
			e.mu.Unlock()
			if expired {
				s.cache.Del(e.h)
			}
		}
		s.stripes[i].mu.Unlock()
		dead = dead[n:]
	}
}
