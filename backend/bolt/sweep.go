package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"
)

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
// It then removes the journal records older than Options.JournalRetention
// (and any over Options.JournalMax), in transactions of at most SweepChunk
// records, which it does not count.
// The background sweeper calls it every Options.SweepInterval; call it by
// hand when the sweeper is disabled, or before [Compact]. Expired keys are
// never reported whether or not they were swept: sweeping only frees their
// space.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("lockout/bolt: sweep: %w", err)
		}
		if !s.enter() {
			return total, errClosed
		}
		n, more, err := s.sweepChunk(s.opts.SweepChunk)
		s.leave()
		total += n
		if err != nil {
			return total, fmt.Errorf("lockout/bolt: sweep: %w", mapErr(err))
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
