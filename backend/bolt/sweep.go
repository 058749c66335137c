package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// sweepRegrow is how many chunks in a row a sweep commits before it
// doubles a chunk it had to halve for want of space (each failed commit
// costs bbolt a scan of the file).
const sweepRegrow = 8

// sweepLoop removes expired keys every SweepInterval until Close.
func (s *Store) sweepLoop() {
	defer s.bg.Done()
	tick := time.NewTicker(s.opts.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		// Errors are not fatal: expired keys are never reported, and a
		// store that is full says so to its callers. The next tick retries.
		_, _ = s.Sweep(context.Background())
	}
}

// Sweep removes the keys that have expired from the file, in transactions
// of at most Options.SweepChunk keys each, and returns how many it removed.
// On a file at MaxSize, where a transaction that deletes keys scattered
// over many pages may not find the pages to write their new copies, it
// halves its transactions until they fit, down to one key.
// It then removes the journal records older than Options.JournalRetention
// (and any over Options.JournalMax), in transactions of at most SweepChunk
// records, which it does not count.
// The background sweeper calls it every Options.SweepInterval; call it by
// hand when the sweeper is disabled, or before [Compact]. Expired keys are
// never reported whether or not they were swept: sweeping only frees their
// space.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	total := 0
	chunk, fitted := s.opts.SweepChunk, 0
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("lockout/bolt: sweep: %w", err)
		}
		if !s.enter() {
			return total, errClosed
		}
		n, more, err := s.sweepChunk(chunk)
		s.leave()
		total += n
		if errors.Is(err, berrors.ErrMaxSizeReached) && chunk > 1 {
			// The file is at MaxSize: deleting needs new pages too
			// (bbolt copies every page it changes), and the file has
			// only the few that its last commits freed. Smaller chunks
			// fit, and free more pages as the sweep goes on.
			chunk, fitted = chunk/2, 0
			continue
		}
		if err != nil {
			return total, fmt.Errorf("lockout/bolt: sweep: %w", mapErr(err))
		}
		if fitted++; fitted == sweepRegrow {
			chunk, fitted = min(chunk*2, s.opts.SweepChunk), 0
		}
		if !more {
			_, err := s.sweepJournals(ctx)
			return total, err
		}
	}
}

// sweepChunk removes at most limit expired keys in one transaction, walking
// the expiry index from its earliest entry, and reports whether more
// expired keys remain.
func (s *Store) sweepChunk(limit int) (n int, more bool, err error) {
	err = s.db.Update(func(tx *bbolt.Tx) error {
		entries, expiry, err := s.buckets(tx)
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		var keys [][]byte
		c := expiry.Cursor()
		// Collect first, delete after: deleting under a bbolt cursor can
		// make its Next skip a key.
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) > 8 && int64(binary.BigEndian.Uint64(k)) > now {
				break // the index is in expiry order: the rest is alive
			}
			if len(keys) == limit {
				more = true
				break
			}
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if len(k) > 8 {
				sk := k[8:]
				exp := int64(binary.BigEndian.Uint64(k))
				if v := entries.Get(sk); v != nil {
					// The index is exact, so the entry carries this
					// expiry; check anyway rather than trust it.
					if e, err := decodeEntry(sk, v, ""); err == nil && e.exp == exp {
						if err := entries.Delete(sk); err != nil {
							return err
						}
					}
				}
			}
			if err := expiry.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return n, more, nil
}
