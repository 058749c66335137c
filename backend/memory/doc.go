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
// Each key is an entry holding its key, its counter, its own expiry and a
// mutex. The entries live in a ristretto v2 cache, which serves here only as
// a sharded concurrent hash map that reclaims expired items in the
// background. Its admission policy and eviction are switched off: every item
// has cost 0 and internal costs are ignored, so the policy always finds room
// and never rejects or evicts anything. Losing a counter would unlock an
// attacker, so the store never lets ristretto decide what to keep.
//
// Ristretto is keyed by a 64-bit hash of the key (hash/maphash, seeded per
// store); the entry carries the key itself, so a lookup checks it.
//
// An operation on an existing key is a ristretto Get and the entry's mutex:
// increments are exact, and the entry's expiry, read on the monotonic clock,
// decides whether the key exists. Ristretto's expiration for the item is set
// ReclaimDelay later than that, and only serves to reclaim memory.
//
// Creating a key takes one of 256 stripe locks, chosen by hash. Under it the
// store removes any stale item ristretto still holds for the hash, counts
// the key against MaxKeys and Sets the new entry. Ristretto applies a new
// item asynchronously, on its own goroutine; the stripe stays locked until
// the batch has waited for that (one Wait per batch, whatever the number of
// keys it creates) and confirmed that the item is stored. A batch takes the
// stripes it needs in ascending order, or releases them all before taking a
// lower one, so batches cannot deadlock.
//
// Ristretto's synchronous "update" path (a Set of a key already stored) is
// never used: ttl cleanup reads an item's expiration and deletes the item in
// two separate steps, so an update landing between them would be deleted
// with the old item. Instead, an Expire that moves a key's expiry past its
// ristretto expiration re-inserts the same entry under the stripe lock (Del,
// then Set as a new item), and readers that miss it meanwhile notice, through
// a per-stripe sequence number, that they must wait for the stripe. Since
// every new item is applied on the goroutine that also runs ttl cleanup, and
// ristretto's expiration of an item is never earlier than the entry's own
// expiry, cleanup only ever removes expired keys.
//
// # Guarantees
//
//   - Every operation of [backend.Backend] as specified: exact counts under
//     any concurrency, operations on one key applied in batch order, reads
//     after the batch's earlier writes (a batch that created keys waits for
//     them to be applied before its first read, so that is still one Wait),
//     expiry to the nanosecond (no TTL granularity), never early.
//   - No live key is ever evicted, whatever the number of keys inserted.
//   - At most MaxKeys keys are held. Creating one more fails the call with an
//     error wrapping [backend.ErrFull]; existing keys keep working.
//   - Close waits for calls in progress and stops ristretto's goroutines;
//     every later call returns an error wrapping [backend.ErrClosed].
//   - The store reads the clock only through package time, and all its
//     goroutines exit on Close, so it works inside a testing/synctest bubble
//     (create it inside the bubble).
//
// # Caveats
//
// An expired key keeps its memory, and its place under MaxKeys, until it is
// reclaimed: when the key is created again, or deleted within ReclaimDelay
// of its expiry; by a sweep of the whole store, run when a creation finds
// the store full, at most once a second, which reclaims keys that expired
// less than ReclaimDelay ago; or by ristretto's cleanup, which runs every
// 2.5 s and takes keys between ReclaimDelay and ReclaimDelay+7.5 s after
// their expiry. A store kept full by a flood of short-lived keys therefore
// refuses new keys for a few seconds at most. [Store.Len] counts the
// unreclaimed expired keys too.
//
// Ristretto files expirations in buckets of wall-clock time (five seconds):
// a backward step of the wall clock can leave the keys expiring during the
// repeated interval unreclaimed until they are touched again. Expiry itself
// is not affected.
//
// Memory is some 200 to 400 bytes per key (depending on how full Go's maps
// happen to be) plus the key itself: the entry, ristretto's map slot, its
// expiry bucket slot and its policy's cost map slot. Maps do not shrink
// when keys are removed.
//
// Creating keys is much slower than using existing ones: a batch that
// creates keys waits once for ristretto's goroutine to apply them. Keys are
// best created in batches. That goroutine also runs the ttl cleanup, so
// creations stall while it reclaims a large number of keys that expired
// together.
//
// Two keys whose 64-bit hashes are equal cannot both be held: creating the
// second fails with an error (not ErrFull). With a random seed per store,
// the chance that any two of a million keys collide is about 3 in 10^8.
//
// [Store.Keys] copies the matching entries in one pass (memory in proportion
// to the matches), then yields them.
//
// A Store runs two goroutines (ristretto's) until Close: close every store
// you create. The store is for one process; its state is lost on Close or
// exit.
package memory
