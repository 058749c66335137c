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
//     backend.ErrFull) instead of evicting old ones. A store made by
//     NewServers asks each server ("stats settings") before its first
//     request, and again after a broken connection: a server that may
//     evict fails every call with an error wrapping ErrEvicting, so the
//     policy decides in its fallback and logs it (Options.AllowEviction
//     skips the check; New, over a client whose servers it cannot tell,
//     makes none). The same check refuses a server run with -C, without
//     compare-and-swap, which Expire and the removal of a counter at zero
//     need;
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
// counters keep counting. When another request holds the item at that moment
// (often the store's own read of a key's flags, still being sent), memcached
// needs a new item instead, and a full server refuses without applying
// anything; the store sends the incr again, up to four times over some
// 15 ms, then reports an error wrapping backend.ErrFull. Never a lost count,
// nor a doubled one.
//
// A decrement that brings a counter to zero removes the key, as the contract
// asks (a refused attempt's give-back leaves no key behind). memcached's
// classic protocol has no conditional delete, and a plain delete would lose
// an increment made since the decrement; so the read that follows the
// decrement (a gets, which carries the item's cas token) is used: if the
// item still holds zero, it is replaced by cas with an item whose exptime is
// negative, which memcached stores already expired (protocol.txt: "If a
// negative value is given the item is immediately expired"). An increment
// made in between changed the token, so the cas fails and removes nothing.
// That costs one more request (a cas, after the decr and the gets), only for
// a decrement that reaches zero.
//
// # Batches and round trips
//
// gomemcache sends one request per round trip, each on a connection of its
// own, and cannot pipeline; memcached serves requests that arrive on
// different connections in any order. The backend contract orders two
// things within a batch: operations on one key, in batch order, and a read
// (Exists, or an Incr with Delta zero) after every write of the batch on a
// key with the same hash tag. A read sent at the same time as an increment
// could be served first, so it waits for the increment's answer: two
// concurrent attempts could otherwise each miss the lock the other is
// taking, which the contract rules out. Do applies a batch in three steps:
//
//  1. Writes, all at once. An increment or decrement is one request (an
//     increment of a missing counter two: incr, then add). Expire and
//     Delete read their keys first, with one multi-get per server, then
//     send their cas or delete.
//  2. One read: when the increments and decrements have answered (and, in
//     a batch with reads, Expire and Delete too), one multi-get per server
//     of every key the batch reads and of every counter whose increment or
//     decrement hit, whose TTL (the flags) only a read tells.
//  3. Settling, rare: a decrement that brought a counter to zero removes it
//     (a cas); an increment that went to a counter expired or deleted
//     since starts over, and the reads are then read again.
//
// A batch with several operations on one key runs in rounds, one after
// another, each in the three steps above: an operation goes in a later
// round than every earlier one on its key, and a read in no earlier round
// than the earlier writes of its hash tag. Servers are asked concurrently,
// so the wall time of a call does not grow with the number of servers nor
// of rules.
//
// # Requests per decision
//
// With three rules (username, IP, username+IP) whose keys are on one
// server, the lockout engine's decisions send these requests (TestRequests
// counts them through a proxy; Redis sends one round trip for the first
// two):
//
//   - an admitted decision (Allow, then a Failure that does not lock, which
//     costs no call): 4 requests, three incr and one multi-get of the three
//     lock markers and the three counters' flags; 7 for a new subject,
//     whose increments miss and add (3 incr, 3 add, 1 multi-get). Two
//     round trips of wall time, three for a new subject;
//   - a refusal by a lock the process has not seen (the lock cache answers
//     the others with no request): the admission, then the give-back of
//     the three reservations, three decr, one multi-get (which also reads
//     the lockout history of each lock found), and a cas for each
//     counter brought back to zero: 10 in the usual case of a locked
//     subject whose username counters the lockout cleared (3 incr, 1 add,
//     1 multi-get; 3 decr, 1 multi-get, 1 cas);
//   - a failure that locks one rule key: 8, in two calls: the lock marker
//     and the lockout history are incremented (incr, then add, for each
//     when new; a multi-get of the flags of any that existed), then one
//     multi-get of the marker, the counter and the history, two cas that
//     set the marker's and the history's TTLs, and the delete of the
//     counter;
//   - a success: 5, one multi-get of the two username counters, their two
//     deletes, the decr of the IP counter and one multi-get of its flags.
//
// Before issue 14 the counts were the same: the reads of a call already
// went out as one multi-get per server. The three incr and the multi-get
// of an admission are the least gomemcache allows (it has no multi-incr
// and no pipelining); only a client that pipelines, sending the
// increments and the read on one connection, would cut an admission to
// one round trip. What the issue changed is the runner, which had three
// ways of completing an increment and now has the one above, and the
// read of a batch mixing reads with increments of other hash tags, which
// is now one multi-get per server instead of two. The one thing it costs:
// a batch without reads whose increments both hit and miss (a repeat
// lockout: the history exists, the lock marker is new) takes three round
// trips of wall time instead of two, the read of the history's TTL
// waiting for the marker's add.
//
// BenchmarkDecision runs an admitted decision beside a bare increment and
// beside its four requests sent straight through gomemcache (Floor), in
// one run: on a loaded 2-core machine the decision gets some 0.2 of the
// bare increment's throughput (medians of 13 runs: 0.26 before the change,
// 0.21 after, within the noise), and about the Floor's (0.19 and 0.24).
//
// In round trips of wall time (TestRoundTrips measures them through a
// proxy that delays every request): an admission, two (three when a
// counter is new); a success, the give-back of a refused attempt, and
// each of the two calls of a failure that locks, two (three when a
// decrement brings a counter back to zero, or for a repeat lockout's
// first call); Status, one.
//
// A request whose pooled connection turns out broken (a server that died or
// restarted) is sent once more on a fresh connection, unless the caller's
// context is done, after dropping the client's idle connections
// (Client.Close, which leaves the client usable), which are likely stale
// too.
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
// client's Timeout, and nothing more is sent for the batch, not even the
// retry of a broken connection: a write abandoned at a deadline is never
// applied later by a server that is back by then. Results are written only
// when Do succeeds.
//
// # Keys
//
// memcached refuses keys over 250 bytes and keys with spaces, control bytes
// or DEL. Such bytes, and '%', are written %XX; a key whose escaped form
// (after Options.Prefix) would exceed 250 bytes is replaced by "%H" and the
// unpadded base64url of its SHA-256, followed by its hash tag in braces
// (escaped; itself hashed when its escaped form is over 139 bytes), so that
// RendezvousSelector places a long key with the other keys of its tag. The
// escaper never writes "%H", so the mapping has no collisions, and short
// keys stay readable.
//
// # Caveats
//
//   - Races with expiry. An increment that reaches an item just past its
//     logical expiry, just before another caller replaces it with a fresh
//     counter, is counted in the expired counter and returns its value
//     (with the fresh counter's TTL). It is never counted twice, and never
//     lost to a live counter that it reports; but the fresh counter does
//     not include it. For lockout this is an attempt counted in the window
//     that just ended: an attacker who sends a burst as a fixed window
//     ends has the attempts whose increment reached the dead counter
//     admitted (their values are the old counter's, below the limit when
//     it was not locked) and not counted in the new window, up to about
//     Limit-1 more guesses per window, and only in the few seconds that
//     memcached keeps a counter past its logical expiry. memcached's
//     incr reports no version of the item it changed (only the meta
//     command ma does, which gomemcache does not speak), so the store
//     cannot tell such an increment from one whose counter a decrement
//     lowered since; Redis, bbolt and the memory store have no such race.
//     A decrement in the same position changes the dead counter.
//   - Races with the removal at zero. An increment that reaches a counter
//     after a decrement brought it to zero, but before the cas that removes
//     it, is kept (the cas then fails): the key holds it with the TTL the
//     counter had, where the other stores create the key afresh with the
//     increment's TTL. The decrement still reports the key removed. On a
//     full server (-M) the cas, which needs a new item, is refused: the
//     decrement stands, the key holds zero until it expires, and the call
//     fails with an error wrapping backend.ErrFull.
//   - Races with Delete and Expire. The TTL an increment reports comes from
//     a read after it; when the key is deleted and re-created, or its TTL
//     changed, in between, the TTL is the newer one. Delete reports whether
//     the key existed from a read just before the delete: an item replaced
//     in between by a fresh counter may be reported as not having existed.
//   - Clocks. Logical expiry is judged by the clock of whichever instance
//     reads the key; instances whose clocks differ by s seconds see keys
//     expire up to s seconds apart. The store does not guard give-backs
//     (backend.ExpiryGuard): the engine skips one on a fixed window whose
//     counter ends within its Config.Timeout, which holds only while the
//     instances' clocks agree to within that Timeout.
//   - A server that fails takes its keys with it: calls touching them
//     return errors until it is back, empty. Adding or removing a server
//     moves a share of the keys (a third when a third server is added),
//     resetting their counters; keys that move back later (a server removed
//     again) find their old items, if still unexpired.
//   - A full server (-M) refuses new keys with backend.ErrFull; so may an
//     Expire, or the restart of an expired counter, which need a new item.
//     Existing counters keep counting, and nothing is evicted: no lock is
//     lost. But a decision that needs a new counter fails, and the policy
//     goes into degraded mode as for an outage (Config.Outage: its
//     in-process fallback decides by default). That includes a locked
//     subject whose lockout cleared its counters and who has not tried
//     since: the lock cache refuses it while it remembers the lock;
//     otherwise the fallback counts it from zero (the README's bound for
//     an outage), and AdmitUncounted admits it. A
//     failure that reaches a limit cannot create the lock marker; the
//     counter, at its limit, refuses further attempts until its window
//     ends. Watch the servers' memory (stats limit_maxbytes and bytes)
//     and the policy's backend errors: a full server is an incident.
//   - memcached without -M evicts: lockout state may silently disappear.
//     NewServers refuses such a server (ErrEvicting); New cannot tell, and
//     a server restarted without -M is asked again only once a
//     connection to it broke.
//   - A request broken after memcached answered it (a connection reset by
//     the network, not by memcached, which closes connections only when it
//     exits) is sent again: an increment may then count twice.
//   - Counters beyond math.MaxInt64 are reported as math.MaxInt64, and TTLs
//     that end after 2106 (the flags' range) are refused with
//     backend.ErrInvalid.
package memcache
