// Package memcache is a lockout store (a backend.Backend) kept in memcached,
// on one server or several, through github.com/bradfitz/gomemcache.
//
//	store, err := memcache.NewServers([]string{"10.0.0.1:11211", "10.0.0.2:11211"}, nil)
//
// NewServers builds a client of its own, with a RendezvousSelector and pool
// settings fit for load (DefaultMaxIdleConns, DefaultTimeout); New wraps a
// client the caller configured and keeps. The store does not implement
// backend.Lister: memcached cannot enumerate keys, so an operator's list of
// current lockouts is not available with it.
//
// # Running memcached for lockout state
//
// memcached is a cache: by default it evicts the least recently used items
// when its memory is full, and a lockout counter or lock that is evicted is an
// attacker unlocked. Run it so that it never evicts:
//
//   - with -M, so that a full server refuses new items ("SERVER_ERROR out of
//     memory storing object", which the store reports as an error wrapping
//     backend.ErrFull) instead of evicting old ones;
//   - with enough memory (-m, in megabytes): a key takes 150 to 200 bytes
//     with lockout's key lengths, so -m 1024 holds some 5 million keys;
//   - on a dedicated instance, or at least one whose other users cannot fill
//     it up or flush it (flush_all unlocks everyone);
//   - with -c (maximum connections, default 1024) above the number of
//     application instances times MaxIdleConns (64 by default), plus slack;
//   - on several servers if one must be able to fail: keys are spread over
//     them, and a failed server only takes its own keys down. List the same
//     servers on every application instance (order does not matter).
//
// memcached keeps nothing on disk: a restarted server is empty, so every
// counter and lock it held is gone. The application servers' clocks must be
// synchronised (NTP): expiry times are written by one instance and read by
// others (see below).
//
// # Expiry
//
// memcached takes TTLs in whole seconds, reads its clock once a second from a
// timer that drifts, and its classic protocol cannot report the remaining
// TTL of an item. The store therefore keeps each key's expiry itself:
//
//   - The logical expiry is the creation time plus the TTL, rounded up to the
//     next whole second (so never early, and at most a second late: the
//     store's granularity is one second). It is stored, as unix seconds, in
//     the item's 32-bit flags (0: no expiry), which memcached keeps through
//     incr and decr and returns with every read.
//   - memcached's own exptime is set a few seconds later (the logical expiry
//     plus 3 s, as a relative time; TTLs over 30 days are sent as absolute
//     times, as memcached requires, plus 5 min against clock differences;
//     past 2038, where memcached's int32 exptime ends, no physical expiry).
//     So memcached never drops an item before its logical expiry.
//   - Every read compares the flags with the clock. An item past its logical
//     expiry, which memcached may still hold for a few seconds, counts as
//     missing: Exists and Expire report it missing, a decrement leaves it
//     dead, and an increment replaces it, by compare-and-swap, with a fresh
//     counter.
//   - Expire rewrites the flags and exptime by compare-and-swap (gets, then
//     cas; again after a conflict), so that no concurrent increment is lost.
//
// # Counters
//
// An increment is memcached's incr; on a miss the key is added (add) holding
// delta with its TTL, and if another caller added it first, incr runs again:
// no increment is ever lost. A negative delta is decr, which floors at zero
// and creates nothing. Values are stored padded with spaces to 20 bytes, the
// width of any uint64, so that memcached increments them in place and needs
// no memory for a counter that gains a digit: on a full server, existing
// counters keep counting (unless a concurrent read holds the item at that
// moment, when memcached needs a new one and refuses: an error, never a
// lost count).
//
// # Batches
//
// gomemcache sends one request per round trip and has no pipelining, so Do
// runs a batch's requests concurrently:
//
//  1. The writes (increments, Expire, Delete), one request each, all at
//     once. Expire and Delete first read their keys (one multi-get per
//     server, sent alongside the increments).
//  2. Then the reads: one multi-get per server for every Exists and for the
//     flags (hence the TTL) of the keys the increments hit.
//
// An admission decision (increments and Exists) therefore costs two round
// trips of wall time per server, whatever the number of rules. Every read
// of a batch is applied after all of its writes, as a Redis pipeline would
// apply a read after the writes before it: the lockout engine relies on
// this, reading a lock marker after reserving an attempt. A batch with
// several operations on one key runs them one after another, in batch
// order.
//
// A request whose pooled connection turns out broken (a server that died or
// restarted) is sent once more on a fresh connection, after dropping the
// client's idle connections (Client.Close, which leaves the client usable),
// which are likely stale too.
//
// Requests in flight are bounded per server (Options.MaxActive, by default
// MaxIdleConns): beyond it, a request waits for a connection slot rather
// than dialling a connection the idle pool would close again.
//
// # Context
//
// gomemcache takes no context. Do runs the batch on another goroutine and
// returns as soon as ctx is done, with an error wrapping ctx.Err(); the
// requests already sent finish in the background, each bounded by the
// client's Timeout, and send no further requests. Results are written only
// when Do succeeds.
//
// # Keys
//
// memcached refuses keys over 250 bytes and keys with spaces, control bytes
// or DEL. Such bytes, and '%', are written %XX; a key whose escaped form
// (after Options.Prefix) would exceed 250 bytes is replaced by "%H" and the
// unpadded base64url of its SHA-256. The escaper never writes "%H", so the
// mapping has no collisions, and short keys stay readable.
//
// # Caveats
//
//   - Races with expiry. An increment that reaches an item just past its
//     logical expiry, just before another caller replaces it with a fresh
//     counter, is counted in the expired counter and returns its value
//     (with the fresh counter's TTL). It is never counted twice, and never
//     lost to a live counter that it reports; but the fresh counter does
//     not include it. For lockout this is an attempt counted in the window
//     that just ended. A decrement in the same position changes the dead
//     counter.
//   - Races with Delete and Expire. The TTL an increment reports comes from
//     a read after it; when the key is deleted and re-created, or its TTL
//     changed, in between, the TTL is the newer one. Delete reports whether
//     the key existed from a read just before the delete: an item replaced
//     in between by a fresh counter may be reported as not having existed.
//   - Clocks. Logical expiry is judged by the clock of whichever instance
//     reads the key; instances whose clocks differ by s seconds see keys
//     expire up to s seconds apart.
//   - A server that fails takes its keys with it: calls touching them
//     return errors until it is back, empty. Adding or removing a server
//     moves a share of the keys (a third when a third server is added),
//     resetting their counters; keys that move back later (a server removed
//     again) find their old items, if still unexpired.
//   - A full server (-M) refuses new keys with backend.ErrFull; so may an
//     Expire, or the restart of an expired counter, which need a new item.
//   - memcached without -M evicts: lockout state may silently disappear.
//   - A request broken after memcached answered it (a connection reset by
//     the network, not by memcached, which closes connections only when it
//     exits) is sent again: an increment may then count twice.
//   - Counters beyond math.MaxInt64 are reported as math.MaxInt64, and TTLs
//     that end after 2106 (the flags' range) are refused with
//     backend.ErrInvalid.
package memcache
