// Package memory is an in-process lockout store: a [backend.Backend] and
// [backend.Lister] that keeps expiring counters in memory, for tests and
// single-process applications.
//
//	s, err := memory.New(nil) // nil options: defaults
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//
// # How it works
//
// Each key is an entry holding its key, its counter and its own expiry.
// The entries live in a ristretto v2 cache, which serves here only as a
// sharded concurrent hash map that reclaims expired items in the
// background. Its admission policy and eviction are switched off: every
// item has cost 0 and internal costs are ignored, so the policy always
// finds room and never evicts anything. Losing a counter would unlock an
// attacker, so the store never lets ristretto decide what to keep.
//
// Ristretto is keyed by a 64-bit hash of the key (hash/maphash, seeded per
// store) whose top 8 bits are those of a hash of the key's hash tag
// ([backend.HashTag]); the entry carries a copy of the key, so a lookup
// checks it.
//
// Those 8 bits choose one of 256 stripe locks: the keys of one hash tag,
// and any keys that share a ristretto key, share a stripe. Every operation
// runs under its key's stripe lock, reads included. A call (Do) hashes its
// keys, takes every stripe it needs, once and in ascending order, reads
// the clock once, applies its operations in order, and releases the
// stripes: one lock pass. So the operations of one hash tag in a batch
// apply as one atomic step (conformance's AtomicTags), at one instant, and
// batches cannot deadlock. Within the lock the entry's expiry, read on the
// monotonic clock, decides whether the key exists; ristretto's expiration
// for the item is set ReclaimDelay later, and only serves to reclaim
// memory.
//
// # The pending overlay
//
// Ristretto applies a new item asynchronously, on its own goroutine (after
// SetWithTTL has queued it): for a while Get does not return it. Rather
// than wait for that, a batch that creates a key puts the entry into its
// stripe's pending set too, and every lookup that misses in ristretto
// looks there. An entry leaves the pending set once ristretto is known to
// hold it: when a Get returns it, or when the store's resolver goroutine
// has seen a Wait return after the Set (Store.queued and Store.applied
// order Sets against Waits: one Wait settles every Set made before it).
// The resolver runs while entries are pending, at most once a
// millisecond, with one Wait for all of them; a batch that grows a
// stripe's pending set past 64 entries settles it itself before it lets
// go of the stripe. A batch that creates or deletes keys while more than
// 4096 of the store's Sets and Dels are still queued for ristretto's
// goroutine waits for them after letting go of its stripes: backpressure,
// so that a flood of new keys cannot outrun ristretto and fill its set
// buffer. No batch waits for ristretto otherwise, except in the two cases
// below where an earlier Set of the same hash may still be queued, and
// for as long as ristretto's set buffer is full, which a Del or Set blocks
// on.
//
// Why ristretto never loses a live key here. Ristretto (v2.4.2) can drop
// or remove an item in these ways: admission rejection and eviction
// (policy.go, defaultPolicy.Add), a full set buffer (cache.go, SetWithTTL
// returns false), ttl cleanup (ttl.go, expirationMap.cleanup), Del, and
// Clear. The store keeps these invariants:
//
//  1. Every item has cost 0 with IgnoreInternalCost, and MaxCost is
//     math.MaxInt64: Add always finds room, so it never evicts, and it
//     rejects only a hash its policy already tracks, which (2) rules out.
//  2. Every Set and Del of hash h happens under h's stripe lock. A Set is
//     made only when no earlier Set of h may still be queued: a pending
//     entry or ghost of h whose Set is not known to be applied makes the
//     batch Wait first (re-creating a key deleted while pending, or
//     re-inserting a pending key; rare). Each Set follows a Del of h,
//     which removes synchronously whatever ristretto stores under h
//     (including an expired item that Get hides) and queues the removal
//     from its policy. So when SetWithTTL runs, ristretto's map has no h,
//     and nothing queued can put one there before this item: the Set
//     takes the asynchronous new-item path, never the synchronous update
//     path, and ristretto's policy does not track h when it applies it.
//  3. An entry's ristretto expiration is never earlier than its own
//     expiry: it is set to expiry+ReclaimDelay (computed before ristretto
//     reads its own, later, clock), an Expire that moves the expiry past
//     it re-inserts the entry (Del, then Set as a new item, pending again,
//     the same entry), and shortening leaves it alone.
//  4. Cleanup runs on the goroutine that applies new items (processItems),
//     so no item is inserted while it runs, and the update path is never
//     used, so no item is replaced while it runs.
//  5. A pending entry whose Set ristretto did not take (SetWithTTL returned
//     false) or rejected (OnReject, which marks it dropped) stays pending,
//     and so visible to the store's lookups, and is Set again once a later
//     Wait has returned; a dropped entry that has expired meanwhile is
//     retired instead.
//  6. Until a pending entry's Set is known to be applied, the only
//     ristretto call made for its hash is a Del that deletes the key
//     (which leaves a retired "ghost" in the pending set until then, so
//     that (2) holds for the next Set). So when ristretto is seen to hold
//     a pending entry, by a Get or because a Wait returned after its Set
//     and it was not dropped, nothing queued behind it can remove it: it
//     becomes live and leaves the pending set.
//
// Cleanup reads an item's expiration, checks it has passed, and deletes
// whatever item is stored under the hash, in separate steps. By (4) the item
// it deletes is the one whose expiration it read (or none, if a Del got
// there first), and by (3) that item's entry had expired. That is the race
// a SetWithTTL of a stored key would open (an update between the read and
// the delete would be deleted), and why (2) never updates.
//
// Counting. An entry counts against MaxKeys from its creation until it is
// retired (state gone), exactly once: either by the store, under its stripe
// lock, when it deletes, replaces or sweeps it; or by OnExit, when ttl
// cleanup removes it, whether it was live or still pending (by (3) it had
// expired). OnExit ignores an entry being re-inserted (Del, then Set: it is
// "moving" meanwhile) and a dropped one (a rejection reports it before
// OnExit); the store retires the entries it removes before its Del,
// except an expired entry ristretto hides from Get (more than ReclaimDelay
// past its expiry): the Del made before a Set of its hash removes it, and
// OnExit retires it. The
// resolver's "applied, so live" and OnExit's "cleaned up, so gone" are
// compare-and-swaps on the same pending state: one wins.
//
// Close excludes every other call (closeMu), since Cache.Close closes
// channels that Set, Del, Wait and Get send on; it stops the resolver
// first.
//
// # Guarantees
//
//   - Every operation of [backend.Backend] as specified: exact counts under
//     any concurrency, operations on one key applied in batch order, reads
//     after the batch's earlier writes (on any key, not only those of the
//     same hash tag), and the operations of each hash tag in a batch as
//     one atomic step (in a call that fails part way, through a cancelled
//     context, ErrFull or a hash collision, the operations before the
//     failure stay applied, as the contract allows). Expiry to the
//     nanosecond (no TTL granularity), never early.
//   - No live key is ever evicted, whatever the number of keys inserted.
//   - At most MaxKeys keys are held. Creating one more fails the call with an
//     error wrapping [backend.ErrFull]; existing keys keep working.
//   - Close waits for calls in progress and stops the store's goroutines;
//     every later call returns an error wrapping [backend.ErrClosed].
//   - The store reads the clock only through package time, and all its
//     goroutines exit on Close, so it works inside a testing/synctest bubble
//     (create it inside the bubble).
//
// # Caveats
//
// An expired key keeps its memory, and its place under MaxKeys, until it is
// reclaimed: when the key is created again, or deleted; by a sweep, run
// when a creation finds the store full, at most once a second, which
// reclaims the expired pending keys and the keys that expired less than
// ReclaimDelay ago (in the batch's own stripes and those above them,
// waiting for them, and in the stripes below that no other call holds);
// or by ristretto's cleanup, which runs every 2.5 s and
// takes keys between ReclaimDelay and ReclaimDelay+7.5 s after their
// expiry. A store kept full by a flood of short-lived keys therefore
// refuses new keys for a few seconds at most. [Store.Len] counts the
// unreclaimed expired keys too.
//
// All the operations of a call see the instant the call began, but
// ristretto hides an item from Get on its own clock once the item's
// expiration (ReclaimDelay after the entry's expiry) has passed. A call
// that runs longer than ReclaimDelay (it waited for a lock or for
// ristretto that long) can therefore find a key that expired during it
// live in one operation and gone in a later one. Expiry is never early
// either way; keep ReclaimDelay well above the longest a call can take
// (the default 5 s is; values of milliseconds are for tests).
//
// Ristretto files expirations in buckets of wall-clock time (five seconds):
// a step of the wall clock can leave the keys expiring around it
// unreclaimed until they are touched again. Expiry itself is not affected
// (ristretto compares expirations on the monotonic clock too).
//
// Memory is some 250 to 450 bytes per key (depending on how full Go's maps
// happen to be), plus the key itself if it is longer than 56 bytes: the
// entry (128 bytes, which hold shorter keys), ristretto's map slot, its
// expiry bucket slot and its policy's cost map slot. Maps do not shrink
// when keys are removed. The store keeps a copy of each key, never the
// caller's string.
//
// Keys of one hash tag share a stripe lock, so calls on one tag run one at
// a time (they are one subject's keys in the lockout engine). Creating a
// key costs a Del and a Set on ristretto's set buffer, which its goroutine
// drains; that goroutine also runs the ttl cleanup, so while it reclaims a
// large number of keys that expired together, new keys stay pending (and
// work) a little longer.
//
// Two keys whose 64-bit hashes are equal cannot both be held: creating the
// second while the first is live fails with an error (not ErrFull). With a
// random seed per store, the chance that any two of a million keys collide
// is about 3 in 10^8 (keys of one hash tag share the hash's top 8 bits, so
// they compete within 56 bits; the lockout engine puts two or three keys
// in a tag).
//
// [Store.Keys] copies the matching entries (memory in proportion to the
// matches), taking each stripe lock briefly (and holding the stripes that
// changed during its pass over ristretto for a second pass), then yields
// them.
//
// A Store runs three goroutines (ristretto's two and its resolver) until
// Close: close every store you create. The store is for one process; its
// state is lost on Close or exit.
package memory
