// Package redis is a lockout backend kept in Redis, through a go-redis v9
// client (github.com/redis/go-redis/v9) that the application creates and
// owns: a standalone server, a Sentinel-managed failover set, or a Redis
// Cluster. Import it under another name, for example:
//
//	import redisstore "github.com/go-lockout/lockout/backend/redis"
//
// # Setting up
//
// Create the go-redis client as usual and pass it to [New]; close the store
// and then the client when the application stops. A standalone server:
//
//	client := redis.NewClient(&redis.Options{
//		Addr:                  "redis:6379",
//		DialTimeout:           time.Second,
//		ReadTimeout:           time.Second,
//		WriteTimeout:          time.Second,
//		ContextTimeoutEnabled: true,
//	})
//	store, err := redisstore.New(ctx, client, nil)
//
// Sentinel (go-redis finds the current master and follows failovers):
//
//	client := redis.NewFailoverClient(&redis.FailoverOptions{
//		MasterName:            "lockout",
//		SentinelAddrs:         []string{"sentinel-1:26379", "sentinel-2:26379", "sentinel-3:26379"},
//		DialTimeout:           time.Second,
//		ReadTimeout:           time.Second,
//		WriteTimeout:          time.Second,
//		ContextTimeoutEnabled: true,
//	})
//
// A Redis Cluster:
//
//	client := redis.NewClusterClient(&redis.ClusterOptions{
//		Addrs:                 []string{"redis-1:6379", "redis-2:6379", "redis-3:6379"},
//		DialTimeout:           time.Second,
//		ReadTimeout:           time.Second,
//		WriteTimeout:          time.Second,
//		ContextTimeoutEnabled: true,
//	})
//
// redis.NewUniversalClient returns one of these three. A *redis.Ring works
// too, but see the caveats.
//
// New loads the store's Lua script on every master and checks that no master
// may evict keys; it needs Redis 6.0 or later (SET KEEPTTL) and is tested
// with Redis 7.0.
//
// # Client settings
//
// The store is correct with go-redis's defaults; the settings only bound the
// time a call takes and the work it leaves behind. What the store does about
// the two go-redis behaviours that matter:
//
//   - Retries. go-redis resends a command whose reply was lost (MaxRetries,
//     3 by default; a ClusterClient also resends on network errors up to
//     MaxRedirects), and the first one may have run: an increment would
//     count one attempt twice. The store marks each of its commands as not
//     retryable (go-redis's per-command NoRetry), whatever the client's
//     options say, so an operation is applied at most once; a lost reply is
//     an error, after which that operation may or may not have been applied.
//     Cluster redirections (MOVED, ASK), which mean the command did not run,
//     are still followed. MaxRetries: -1 is not needed, and the client's
//     retries still serve the application's own commands.
//   - Deadlines. go-redis applies a context's deadline to the socket only
//     with ContextTimeoutEnabled, and never a cancellation (it honours both
//     while waiting for a pooled connection or dialing). The store returns,
//     with an error wrapping the context's, once the context is done:
//     with ContextTimeoutEnabled, a call whose context has a deadline runs
//     on the caller's goroutine and the socket deadline ends it, but a
//     cancellation before the deadline ends a wait for a reply only at the
//     deadline; any other call whose context can end runs on a goroutine of
//     its own (about 10 µs more per call on a small machine) and returns at
//     once, while
//     the abandoned command finishes in the background, bounded by the
//     client's ReadTimeout and WriteTimeout. A call whose context can never
//     end (context.Background) runs on the caller's goroutine, bounded by
//     those timeouts. Recommended: ContextTimeoutEnabled: true with a
//     deadline on every call (the lockout policy sets one), and finite
//     ReadTimeout and WriteTimeout (the go-redis default is 5 s; about a
//     second is plenty for this store's small commands). Note that with
//     ContextTimeoutEnabled go-redis closes a connection whose reply a
//     deadline cut, and dials a new one. Keep PoolSize at least the number
//     of concurrent calls expected.
//
// # Server settings
//
// Redis must never evict lockout keys: an evicted counter or lock marker
// unlocks an attacker, silently. Run it with
//
//	maxmemory-policy noeviction
//
// (or without maxmemory). New refuses a master whose maxmemory is set with
// another policy, unless [Options].AllowEviction, and the store checks
// again while in use ([Options].EvictionCheckInterval, a minute by
// default): a master reconfigured since, or one that took over in a
// failover with settings of its own, fails every call with an error
// wrapping [ErrEvicting], and the lockout engine's fallback decides until
// a check finds it set back. When a noeviction server is full,
// increments and decrements fail with an error wrapping [backend.ErrFull]
// and the policy goes into degraded mode, as in an outage; reads, expiries
// and deletes still work. Keep lockout
// state in its own Redis, or size maxmemory for it: its keys expire on their
// own, but a key spray can fill a shared server.
//
// Without persistence (appendonly, RDB snapshots), a restart empties the
// server: every counter and lock is gone. Enable appendonly where locks must
// survive a restart.
//
// # Sentinel
//
// With Sentinel, run at least three sentinels, on machines that fail
// independently, with a quorum of two, watching a master and at least one
// replica; for example, in each sentinel.conf:
//
//	sentinel monitor lockout 10.0.0.1 6379 2
//	sentinel down-after-milliseconds lockout 5000
//	sentinel failover-timeout lockout 60000
//
// Give the store a failover client: redis.NewFailoverClient (as above), or
// redis.NewUniversalClient with MasterName set, which returns one; both are
// tested. Leave FailoverOptions.ReplicaOnly unset: every call of the store
// must reach the master (a replica refuses its writes).
// redis.NewFailoverClusterClient, which can route reads to replicas, is not
// tested with the store. go-redis asks the sentinels for the master,
// follows their +switch-master announcement to the promoted replica, and
// the store reloads its script there (below): nothing needs restarting.
//
// During a failover no master answers, for down-after-milliseconds plus
// the sentinels' vote and the promotion: a few seconds (about 2.5 s in the
// tests, which use down-after-milliseconds 1000). The store's calls fail
// meanwhile, and the lockout policy decides as its Outage mode says: by
// default an in-process fallback store with the same rules decides every
// attempt, within the policy's deadline. Once the replica is promoted the
// policy's next probe (every ProbeInterval, 1 s by default) finds the
// store answering, writes back what the fallback counted, and decisions go
// to the store again. The fallback is per process: during a failover each
// application instance allows up to a rule's limit of guesses per key on
// its own. TestSentinel runs the conformance suite over a failover client
// and this drill, on a master, a replica and three sentinels it starts.
//
// # Failover and what it can lose
//
// Redis replicates asynchronously: a master acknowledges an increment or a
// lock before its replicas have it. When the master dies, the writes its
// replica had not yet received are lost: the promoted replica does not
// have the last counts and locks. Attempts counted just before the
// failover are forgotten, and a lock set just before it vanishes, so an
// attacker locked out then can try again early (up to a rule's limit more
// guesses on that key). The loss is bounded by the replication lag,
// normally milliseconds; the store does not use WAIT, which would cost a
// round trip on every decision. The policy's fallback covers the gap during
// the failover (no attempt is decided without limits while no master
// answers); it cannot bring back what the old master had acknowledged and
// not replicated.
//
// A master cut off from the sentinels but still reachable by some
// application instances keeps accepting their writes until it is demoted;
// when it comes back as a replica of the promoted one, those writes are
// discarded too. Setting, on every data server,
//
//	min-replicas-to-write 1
//	min-replicas-max-lag 10
//
// bounds that: a master that no replica has acknowledged for 10 s refuses
// writes, the store's calls fail, and the policy's fallback decides. The
// price: with a single replica, losing that replica also sends decisions
// to the fallback.
//
// A master restarted without persistence comes back empty, and if it does
// so before the sentinels notice it was down, its replicas copy the empty
// data set: every counter and lock is gone. Enable persistence (appendonly)
// on the master, or do not restart it automatically.
//
// A TTL becomes an expiry time on the master's clock, and Redis replicates
// and persists that time, not the TTL (a replica's PEXPIRETIME equals the
// master's). A promoted replica, or a server reloading its persistence
// files, expires keys by its own clock: one that is ahead of the clock
// that set a lock ends that lock, and every attempt window, early by the
// difference. Keep the clocks of the data servers synchronized (NTP).
//
// The promoted replica may lack the store's script. The store notices
// (NOSCRIPT), runs the refused commands again once by EVAL, which also loads
// the script there, and carries on: nothing needs restarting. A refused
// EVALSHA never ran, so this retry cannot count twice. The same holds after
// a Redis Cluster failover, which loses writes the same way.
//
// # How the store uses Redis
//
// Operations run in one small Lua script, called by EVALSHA, so that the
// operations of one call apply atomically and in batch order, without MULTI.
// A batch is grouped into script calls: the whole batch in one call on a
// single server (a batch of more than 128 operations is split between hash
// tags, never within one), the operations of one hash slot per call on a
// Cluster (Redis requires the keys of a script to share a slot, and keys
// with the same hash tag do), and those of one hash tag per call on a Ring
// (go-redis sends each to the shard of its first key's hash tag).
//
// The calls of a batch go in one pipeline: one round trip to each node the
// batch touches (go-redis sends to the nodes of a Cluster in parallel); a
// batch of one call is a single command. The backend contract orders a batch
// only within a hash tag (a read follows the earlier writes of its hash tag;
// see [backend.HashTag]), and the operations of one hash tag share a call,
// so nothing waits: a lockout decision, which increments each rule key's
// counter and reads its lock marker (keys that share the rule key's hash
// tag), is one pipeline on a Cluster too, one round trip to each of the (up
// to three, with three rules) nodes its rule keys live on. With
// Options.OneKeyPerCall every
// call has a single key, and a read that follows a write of another key with
// its hash tag waits for that write's reply, in a second pipeline.
//
// The script makes as few Redis calls per operation as it can, since each
// costs the server far more than the Lua around it: INCRBY for an
// increment (PEXPIRE too for a new key, PTTL too for an existing one unless
// the caller set backend.Op.SkipTTL), and one EXISTS over the reads that
// end a call, when the call writes none of their keys (GET and PTTL more
// for each such key when one exists; a read elsewhere in a call is GET and
// PTTL). The engine's decisions put their reads after their increments,
// and the reply leaves out reads that found nothing. With
// Options.GuardGiveBacks, on Redis 7.0 or later, the store guards
// give-backs ([backend.ExpiryGuard]): it reads each key's PEXPIRETIME in
// place of its PTTL (a new key's after its PEXPIRE), and one TIME per
// call, from which it computes the TTLs; a give-back's decrement applies
// only to a key that expires before the time the engine gives, checked in
// the script. An admitted decision with
// three rules then costs the server eight such calls in one EVALSHA: three
// INCRBY, three PEXPIRETIME, one TIME and one EXISTS (TestDecisionCommands
// counts them); seven without the option (PTTL in place of PEXPIRETIME, no
// TIME), where the engine instead skips a give-back on a fixed window that
// may end before it lands. New learns the version from INFO server on
// every master: a user refused INFO gets a store that does not guard, and
// every master must stay on Redis 7.0 or later (a failover to an older one
// fails every call: PEXPIRETIME is unknown there). Plain commands in
// MULTI/EXEC (SET NX PX, INCRBY and PTTL per increment, GET and PTTL per
// read) cost the server a little less, but the client much more (fifteen
// commands to encode and answer instead of one), and cannot floor a
// decrement at zero nor remove the counter it brings to zero in the same
// atomic step: measured end to end, the script is faster.
//
// TTLs are sent in milliseconds, rounded up, so a key never expires early;
// the granularity is one millisecond ([Granularity]). Counter values are
// exact over the whole int64 range; an increment that would overflow fails.
// Redis does not roll back a script that fails part way: the operations
// of its call before the failing one stay applied (no other call sees the
// call half done, as the script runs alone). Only such an overflow fails a
// script part way with the engine's keys: a full server (OOM) refuses the
// first write, and a slot being migrated (TRYAGAIN) the whole call.
//
// Keys ([backend.Lister]) uses SCAN with an escaped MATCH pattern on every
// master in turn, never KEYS. It walks the whole key space of each master
// (MATCH filters after the fact), so it is for operators' views, not for
// request paths.
//
// # The attempt journal
//
// The store implements [backend.Journal] with Redis Streams (Redis 6.2 or
// later: MINID trimming and exclusive ranges). Each journal is one stream,
// at the key
//
//	<Options.Prefix>{<journal name>}:journal
//
// for example "{lockout}:journal". The name is the key's hash tag, and
// every command touches that one key (XADD, XREVRANGE, and EVAL of a
// script that calls TIME, XTRIM and PEXPIRE on it), so a journal works on a
// Cluster and a Ring like on one server, and lives on the master of its
// slot. The engine's keys begin with its prefix, which never holds '{', so
// no counter key is ever a journal's. Keys ([backend.Lister]) lists the
// journal streams with the other keys under Options.Prefix: they begin with
// '{'.
//
// Append sends one XADD per record (XADD key MAXLEN = JournalMax * ...)
// and the trim script, in one pipeline: one round trip to one node, the
// same for a batch of 64 records as for one. XADD is not retried by
// go-redis (a lost reply would journal a record twice). A record is the
// entry's field-value pairs, always the same twelve core fields in the
// same order, empty ones included, with short names (t: Time as UnixNano,
// o: Outcome, r: Reason, ru: Rule, k: Key, u: Username, ip: IP, ua:
// UserAgent, fb: Fallback "1", d: Duration in nanoseconds, op: Operator,
// v: Via), then each custom field as "f:" and its name, sorted. Redis keeps
// the field names once per stream node for entries whose fields are the
// node's first entry's, so a record costs little more than its values: a
// typical failure (a 20-byte username, an IPv4 address, a 70-byte browser
// user agent) takes about 170 bytes of Redis memory (BenchmarkJournalAppend
// measures it with MEMORY USAGE). Records with custom fields cost their
// field names too. The ID of a record is its stream entry ID.
//
// Trimming, and why it is exact. XADD trims by one measure only, count
// (MAXLEN) or ID (MINID), so each XADD trims to JournalMax entries, and
// the script trims by age. Both trim exactly ("="), not approximately
// ("~"): approximate trimming removes only whole stream nodes (up to
// stream-node-max-entries, 100, or stream-node-max-bytes, 4 KB, per node)
// and so keeps more than asked, which would break the contract's bound on
// a journal's records. Exact trimming costs O(1) per XADD here (the stream
// is at most one entry over its cap), and it frees a node's memory once all
// of its entries are gone: up to one node of removed entries is still held.
//
// Time. Stream IDs begin with the server's clock in milliseconds, and the
// age trim uses the server's clock too: the script asks TIME, removes the
// entries whose ID is older than now minus JournalRetention (rounded up to
// a millisecond: a record is never removed early), and sets the stream to
// expire JournalRetention after the last Append, so an idle journal
// disappears on its own. The application's clocks play no part; Record.Time
// is the engine's clock and is only kept. Records runs the same script
// first, in the pipeline of its first read, and never returns an entry
// older than the threshold the script reports, whatever is left in the
// stream. After a failover, the promoted replica carries on from the
// stream's last ID; if its clock is behind the old master's, new records
// get IDs (and so ages) from the old clock, and are kept longer, never
// shorter.
//
// Reading. Records reads newest first with XREVRANGE (from "(" and the
// cursor, exclusive, when given one), in chunks: the first of the page
// size plus one (in the script's pipeline), then up to 1000 entries per
// round trip, and at most [JournalScan] (10,000) entries per call. The
// filters (username, IP, outcome) are applied by the store after the
// read, so a query for a rare username reads many entries: when it stops
// at the scan bound it returns what it found (possibly nothing) and a
// cursor to continue. A cursor is a stream entry ID; anything else is an
// error wrapping [backend.ErrInvalid]. Because Records runs the trim
// script, it needs write access to the stream (an ACL user for the store
// needs +@stream and +eval on its keys anyway; and +info and +memory for
// the journal to give way to the counters on a server with maxmemory,
// see below).
//
// What an attacker can do, and what to size. Every attempt may be
// journaled, and an attacker decides how many attempts there are and how
// long their usernames and user agents are. The store bounds both: a
// journal never holds more than JournalMax records, and a record never
// more than JournalRecordBytes bytes of values (longer values are cut,
// the longest first, so the username, IP and outcome stay whole). A flood
// of attempts only replaces older records sooner: the journal of the last
// minutes of an attack may hold nothing but the attack. The memory of a
// journal is at most about
//
//	JournalMax * 1.3 * JournalRecordBytes
//
// (about 260 to 283 MB with the defaults: a record cut to 2 KiB of
// values takes about 2,590 to 2,830 bytes of used_memory, as a stream
// node then holds one record, in an allocation of 2,560 bytes; a review
// filled a journal with 100,000 such records in 3.4 s of refused attempts
// on one locked username, and used_memory grew by 259 MB) and typically
// JournalMax * 170 bytes (17 MB); the engine keeps one journal per policy.
// Journals share the server's memory with the counters, and with
// maxmemory-policy noeviction a full server refuses the counters'
// increments (the store reports [backend.ErrFull], and the policy falls
// back). So a journal gives way: an AppendBatch (the engine's) that finds
// used_memory past 7/8 of maxmemory first trims the journal's oldest
// records, as many as it adds and as many as take the memory past 7/8
// (MEMORY USAGE tells their size), and on a server still past maxmemory
// adds nothing and fails with [backend.ErrFull] (the engine counts the
// batch as dropped). The journal never fills the server: before, a
// review's journal filled a 64 MB server in 24,493 attempts with 4 KB
// user agents, and every decision went to the fallback for the 24 h the
// records were kept. Counters (or any other keys) that go past 7/8 take
// the journal's room, oldest records first, as much as they take: an
// attacker who makes counters of the journal's size erases its older
// records (not the newest, his own). Append (one XADD per record) trims
// after its XADDs, for the next. The scripts call INFO and MEMORY
// USAGE with redis.pcall: a user whose ACL refuses them (INFO is in
// @dangerous) journals without this guard, as on a server without
// maxmemory. Size maxmemory for the counters plus the worst case of
// every journal to keep JournalRetention's records, or keep journals
// small with JournalMax and JournalRecordBytes.
//
// Costs, measured on a 2-core machine shared with other work against a
// local redis-server 7.0: an Append of 64 typical records takes about
// 0.6 ms (about 9 µs a record, mostly the server's XADD work and the
// encoding of 64 commands), with 11 allocations and 850 bytes a record on
// the client (BenchmarkJournalAppend). A page of 50 unfiltered records is
// one round trip.
//
// Limits: a Time outside the years 1678 to 2262 is not kept (UnixNano); a
// Fields map that is empty comes back as nil; the journal through a proxy
// (Options.OneKeyPerCall: twemproxy has no stream commands) is not tested.
//
// # Caveats
//
//   - A batch is not atomic: when Do fails, some of its operations may have
//     been applied, including after Do has returned a context error (the
//     abandoned pipeline may still reach the server).
//   - A lost reply (a connection dropped after the server ran a command) is
//     reported as an error, never retried: the operation was applied once or
//     not at all.
//   - While a Redis Cluster slot migrates (a resharding, redis-cli --cluster
//     reshard or rebalance), Redis refuses a script call with several keys
//     of that slot (TRYAGAIN) unless all of them exist on the node that
//     gets it, and a lockout decision always names a lock marker that does
//     not exist: every decision on a key of a migrating slot fails, from
//     the first SETSLOT MIGRATING until the last SETSLOT NODE, and the
//     policy decides it as during a failover (by default with its
//     in-process fallback). A refused call applies nothing, and one-key
//     calls are redirected (ASK) and work. Move few slots at a time.
//   - A Ring spreads hash tags by consistent hashing over shards without
//     replication: a shard that leaves the ring takes its counters and
//     locks with it, and keys that hashed to it start afresh on another
//     shard. Prefer a Cluster.
//   - Options.Prefix is prepended to keys verbatim; a prefix with a hash tag
//     puts every key in one slot of a Cluster (see Options.Prefix).
//   - New checks eviction settings once; a later CONFIG SET maxmemory-policy
//     is not noticed.
//   - Close does not close the client, and does not wait for calls
//     abandoned at their deadline to finish.
package redis
