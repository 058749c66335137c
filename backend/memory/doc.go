// Package memory is an in-process lockout store: a [backend.Backend] and
// [backend.Lister] that keeps expiring counters in memory, for tests,
// single-process applications and the lockout engine's degraded-mode
// fallback. It also keeps a journal ([backend.Journal]), never blocks
// ([backend.Nonblocking]) and guards give-backs ([backend.ExpiryGuard]).
//
//	s, err := memory.New(nil) // nil options: defaults
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//
// # How it works
//
// Keys live in 256 shards under a mutex each. A shard is a hash table
// with open addressing: each 32-byte cell holds a key's hash, where the
// key's bytes are in the shard's arena (one byte slice that holds them all,
// one after another), the counter and its expiry in nanoseconds on the
// monotonic clock. Updates write the cell in place. Neither the cells nor
// the arena hold a pointer, and a new key costs no allocation of its own:
// however many keys the store holds, the garbage collector has nothing to
// scan in them (a forced collection with a million keys takes about 1 ms,
// where one Go string per key took 67 ms). A key's shard is
// chosen by a hash of its hash tag ([backend.HashTag]), so the keys of one
// tag share a shard; within it, a key's probe starts at a cell given by
// the hash of the whole key, so that no number of keys of one tag (an
// attacker can make many) lengthens the probes of others. A call
// (Do) takes every shard its keys need, once and in ascending order, reads
// the clock once, looks every key up, applies its operations in order at
// that instant, and releases them: the operations of one hash tag in a
// batch apply as one atomic step, and batches cannot deadlock. Looking the
// keys up first, in a short loop, lets their cache misses overlap.
//
// Expiry is exact: a key whose expiry has passed is never visible, and an
// operation that finds one removes it. A sweeper goroutine reclaims the
// others every SweepInterval, skipping shards where nothing can have
// expired yet. MaxKeys caps the keys held; a call that creates keys first
// reserves room for all of them, reclaiming expired keys if it must, and
// fails with an error wrapping [backend.ErrFull] before it applies any
// operation when they do not fit: a refused attempt counts on none of its
// keys. No live key is ever evicted.
//
// The store reads the clock only through package time, and its goroutine
// exits on Close, so it works inside a testing/synctest bubble (create it
// inside the bubble).
//
// # Caveats
//
//   - An expired key keeps its memory, and counts in [Store.Len], until it
//     is touched, swept, or reclaimed by a creation in a full store. A
//     shard's table shrinks only when a sweep leaves it less than an eighth
//     full, and its arena only when a sweep leaves it less than a quarter
//     live (or when it is full).
//   - A creation in a full store sweeps shards beyond those its call holds:
//     it waits for those above them, but only tries those below (the lock
//     order), so expired keys in a shard that another call holds at that
//     moment may not be reclaimed in time, and the creation is refused.
//   - Keys of one hash tag share a lock: calls on one tag run one at a time
//     (they are one subject's keys in the lockout engine). A sweep holds a
//     shard's lock while it reads the earliest expiry of each block of 64
//     cells of the shard's table, and walks the blocks where a key can
//     have expired: with a million keys of one tag, some 32,768 bounds,
//     not two million cells, for a creation in a full store that
//     reclaims one key.
//   - Memory is some 45 to 85 bytes per key (a cell, in a table from three
//     eighths to three quarters full), plus the key's bytes in the arena.
//     A removed key's bytes stay there until the arena is full; it is then
//     copied, live keys only, into one at least twice their size and no
//     smaller than it was. Like the table, the arena shrinks only in a
//     sweep: one that leaves it less than a quarter live. (144 bytes per
//     key in all for a million keys of 25 to 57 bytes.) The store never
//     shares a key's bytes with a caller.
//   - A shard's arena is at most 4 GiB: a new key that finds it full is
//     refused, with an error wrapping [backend.ErrFull], when the shard's
//     live keys and it would take more than half of that. The lockout
//     engine's keys (at most 910 bytes each, lockout.MaxKeyLen; a million
//     of them by default, MaxKeys) never come near.
//   - [Store.Keys] walks the shards one at a time, copying a shard's
//     matching keys and checking each again before yielding it.
//   - The store is for one process; its state is lost on Close or exit.
//     Close every store you create: it stops the sweeper.
package memory
