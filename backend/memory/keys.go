package memory

import (
	"context"
	"fmt"
	"iter"
	"slices"
)

// Keys yields every live key that begins with prefix, in no particular
// order; see [backend.Lister]. It collects the matching entries from the
// stripes' pending sets and in one pass over ristretto's shards (see
// snapshot), then yields them without holding any lock,
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
			if !yield(e.key(), nil) {
				return
			}
		}
	}
}

// snapshot returns the entries whose key begins with prefix: those in
// the stripes' pending sets, then those ristretto holds.
//
// An entry moves between the two while the pass runs: into ristretto when
// it is confirmed (resolve, or a Get that finds it), which cannot hide it,
// since the pending sets are copied first; and out of ristretto into a
// pending set when an Expire re-inserts it, which could. Each re-insert
// of a live entry advances its stripe's seq, under the stripe lock, so a
// stripe whose seq is unchanged across the pass lost nothing. The other
// stripes are collected again holding their locks, which freezes them.
// An entry found both in a pending set and in ristretto is yielded once.
func (s *Store) snapshot(ctx context.Context, prefix string) ([]*entry, error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed.Load() {
		return nil, errClosed
	}
	var seqs [numStripes]uint64
	var out []*entry
	var pend map[*entry]bool
	copyPending := func(st *stripe) {
		for _, e := range st.pending {
			if e.state.Load() == stPending && e.hasPrefix(prefix) {
				if pend == nil {
					pend = map[*entry]bool{}
				}
				pend[e] = true
				out = append(out, e)
			}
		}
	}
	for i := range s.stripes {
		st := &s.stripes[i]
		st.mu.Lock()
		seqs[i] = st.seq
		copyPending(st)
		st.mu.Unlock()
	}
	var cerr error
	n := 0
	collect := func(redo *stripeSet) func(*entry) bool {
		return func(e *entry) bool {
			if n++; n&1023 == 0 {
				if cerr = ctx.Err(); cerr != nil {
					return true
				}
			}
			if redo != nil && !redo.has(stripeOf(e.h)) {
				return false
			}
			if e.hasPrefix(prefix) && !pend[e] {
				out = append(out, e)
			}
			return false
		}
	}
	s.cache.IterValues(collect(nil))
	if cerr != nil {
		return nil, fmt.Errorf("memory: %w", cerr)
	}
	var redo stripeSet
	again := false
	for i := range s.stripes {
		st := &s.stripes[i]
		st.mu.Lock()
		if st.seq != seqs[i] {
			redo.add(i)
			again = true
		}
		st.mu.Unlock()
	}
	if !again {
		return out, nil
	}
	// Start over for the redo stripes, holding their locks (ascending,
	// holding nothing else: the lock order).
	out = slices.DeleteFunc(out, func(e *entry) bool { return redo.has(stripeOf(e.h)) })
	pend = nil
	redo.each(func(i int) {
		st := &s.stripes[i]
		st.mu.Lock()
		copyPending(st)
	})
	s.cache.IterValues(collect(&redo))
	redo.each(func(i int) { s.stripes[i].mu.Unlock() })
	if cerr != nil {
		return nil, fmt.Errorf("memory: %w", cerr)
	}
	return out, nil
}

// sweepDue reports whether a full store may sweep at now.
func (s *Store) sweepDue(now int64) bool {
	return now-s.lastSweep.Load() >= int64(sweepEvery)
}
