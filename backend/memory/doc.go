// Package memory is an in-process lockout store: a [backend.Backend] and
// [backend.Lister] that keeps expiring counters in memory, for tests,
// single-process applications and the lockout engine's degraded-mode
// fallback.
//
//	s, err := memory.New(nil) // nil options: defaults
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//
// # How it works
//
// Keys live in 256 shards under a mutex each. A shard's map gives each
// key (the store's own copy) the index of its entry in a slice of 16-byte
// entries, free of pointers: the counter and its expiry in nanoseconds on
// the monotonic clock. Updates write the entry in place. A key's shard is
// chosen by a hash of its hash tag ([backend.HashTag]), so the keys of one
// tag share a shard. A call (Do) takes every shard its keys need, once and
// in ascending order, reads the clock once, applies its operations in
// order at that instant, and releases them: the operations of one hash tag
// in a batch apply as one atomic step, and batches cannot deadlock.
//
// Expiry is exact: a key whose expiry has passed is never visible, and an
// operation that finds one removes it. A sweeper goroutine reclaims the
// others every SweepInterval, skipping shards where nothing can have
// expired yet. MaxKeys caps the keys held; a creation in a full store
// first reclaims expired keys, then fails with an error wrapping
// [backend.ErrFull]. No live key is ever evicted.
//
// The store reads the clock only through package time, and its goroutine
// exits on Close, so it works inside a testing/synctest bubble (create it
// inside the bubble).
//
// # Caveats
//
//   - An expired key keeps its memory, and counts in [Store.Len], until it
//     is touched, swept, or reclaimed by a creation in a full store. Go's
//     maps do not shrink: a shard keeps the room of the most keys it held.
//   - A creation in a full store sweeps shards beyond those its call holds:
//     it waits for those above them, but only tries those below (the lock
//     order), so expired keys in a shard that another call holds at that
//     moment may not be reclaimed in time, and the creation is refused.
//   - Keys of one hash tag share a lock: calls on one tag run one at a time
//     (they are one subject's keys in the lockout engine). A sweep holds a
//     shard's lock while it walks the shard's map.
//   - Memory is some 60 to 120 bytes per key, plus the key's length
//     (rounded up to an allocation size): a map slot, an entry, and the
//     store's copy of the key, which it never shares with the caller.
//   - [Store.Keys] walks the shards one at a time, copying a shard's
//     matching keys and checking each again before yielding it.
//   - The store is for one process; its state is lost on Close or exit.
//     Close every store you create: it stops the sweeper.
package memory
