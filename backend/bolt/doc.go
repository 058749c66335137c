// Package bolt is a lockout store kept in a bbolt file (go.etcd.io/bbolt):
// an embedded, durable [backend.Backend] for single-binary applications,
// with the [backend.Lister], [backend.Journal] and [backend.ExpiryGuard]
// capabilities.
//
// [Open] opens (or creates) a file that the store owns; [New] keeps the
// store in a bucket of a *bbolt.DB the caller owns:
//
//	s, err := bolt.Open("/var/lib/myapp/lockout.db", 0o600, nil)
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//
// # Expiry
//
// Every entry carries its expiry, in wall-clock nanoseconds, and every read
// compares it with time.Now: a key is reported until the nanosecond before
// its expiry and never after (the TTL granularity is zero). Expired entries
// stay on disk, invisible, until a background goroutine sweeps them: every
// Options.SweepInterval it walks an expiry index (a bucket of keys ordered
// by expiry time) and deletes expired entries in transactions of at most
// Options.SweepChunk keys, so that a sweep never holds bbolt's single writer
// lock for long. Close stops it. [Store.Sweep] runs one by hand.
//
// # Writes and durability
//
// Each bbolt commit writes its pages and syncs the file twice. A call whose
// batch writes anything returns only once its transaction is committed and
// synced: an increment that returned is on disk, and survives a crash of
// the process, or of the machine as far as its disk honours fdatasync. Calls that change nothing (Exists, Incr by
// zero, a decrement of a missing key, Delete or Expire of a missing key)
// are served by a read transaction, which never syncs. A decrement that
// brings a counter to zero deletes its entry (and its expiry index entry)
// in its write transaction.
//
// Concurrent writers share commits: one goroutine commits, and every write
// that arrives while a commit is under way goes into the next transaction,
// together with the others that arrived meanwhile (group commit). A lone
// writer is committed at once; it never waits for company the way bbolt's
// DB.Batch makes it wait (DB.MaxBatchDelay, 10 ms by default). One caller's
// error never fails another caller's writes nor applies them twice: a
// caller whose operations fail (a corrupt entry) is answered with its error
// and the others are committed again without it, in a fresh transaction (a
// rolled-back transaction leaves nothing behind); a shared commit that
// would outgrow MaxSize is retried in halves, down to single callers, so
// that only the callers that need the space get ErrFull.
//
// # Capacity
//
// Options.MaxSize (1 GiB by default) bounds the file. A write that would
// grow it further fails with an error wrapping [backend.ErrFull] and is not
// applied; the keys already stored keep reading, and writes that fit in
// pages the file has freed (incrementing or deleting existing keys, new
// keys in the space of swept ones) still succeed.
//
// # Keys
//
// Any non-empty key is accepted. A key of at most 512 bytes is stored as
// is; a longer one (bbolt refuses keys over 32 KiB) is stored under its
// SHA-256 hash, with the original key kept in the value and checked on every
// read, so that distinct keys never share a counter. [Store.Keys] yields the
// original keys.
//
// # Journal
//
// The store keeps attempt journals ([Store.Append], [Store.Records]) in
// the same file: one bucket per journal, keyed by the bucket's sequence (8
// bytes, big endian), so that records sort in append order and a record's
// ID is its sequence as 16 hex digits (which the store parses back as a
// cursor; anything else is an error wrapping backend.ErrInvalid). A record
// is encoded in binary: varints for its time (seconds and nanoseconds:
// every time.Time round-trips, to the nanosecond), duration and lengths,
// then its strings and its custom fields in key order, after a header with
// the time the store appended it. A typical record (a browser's user agent,
// a username, an IPv4 address) takes about 160 bytes encoded and 200 bytes
// of the file. One Append is one write transaction (two fsyncs), whatever
// the number of records: the engine batches them.
//
// Records reads newest first, in one read transaction, filtering on
// Username, IP and Outcome as it goes; it reads at most 10,000 records per
// call, and returns a short page and a cursor when its filters matched
// fewer than the page's limit among them. It never returns a record older
// than the retention, swept or not.
//
// Three things bound a journal:
//
//   - Options.JournalRetention (24 h): the sweeper removes records that
//     long after their Append (by the store's clock, not the record's Time)
//     at its next run, so a record stays at most SweepInterval longer, in
//     transactions of at most SweepChunk records. With the sweeper
//     disabled, old records are never returned but stay on disk until
//     [Store.Sweep] runs.
//   - Options.JournalMax (100,000 records per journal): an Append that
//     takes a journal beyond it drops the oldest in its own transaction.
//   - Options.JournalRecordBytes (2048): a record's string values are cut,
//     the longest first, to that many bytes in all.
//
// So one journal takes at most about JournalMax * 2 * (JournalRecordBytes
// + 60) bytes of the file: bbolt keeps at least two records in a node and
// writes a node on whole pages, so with 4 KiB pages a record of more than
// about 2,000 bytes takes a page of its own (400 MiB by default, for an
// attacker who sends 2 KiB user agents; 20 MiB for typical records).
//
// The journal never makes counters fail with ErrFull. An attacker who
// floods attempts fills the journal, and an attacker who sprays keys fills
// the file: counters come first. The file's capacity is what bbolt lets its
// data grow to under MaxSize (see Options.MaxSize). When the pages in use
// pass 7/8 of it, the journal stops growing (an Append drops as many old
// records as it adds, and at least as many bytes of them, and fails with
// ErrFull, appending nothing, when the journal holds fewer), which leaves
// the last eighth to counters. Dropping records writes pages too (bbolt
// copies every page it changes), so the journals give way while the file
// still has pages to write with: after every commit, when the room left
// (free pages, and what the file can still grow by) is under 1/32 of the
// capacity (at least 64 pages), every journal in the file (other stores'
// in a shared DB too) drops its oldest quarter (at least 256 records). And
// a counter write that finds the file full all the same makes them drop
// it too, and is committed again, as long as the journals hold records:
// counters get ErrFull only once the journals are empty (and a journal
// Append gets ErrFull, which the engine counts as dropped records, when
// the file is full). With no MaxSize (negative), none of this applies.
// The room counts the pages freed but still pending: a read transaction
// that stays open long (a backup of a shared DB) keeps them from use, and
// a shed may then find too few. (Before the journals gave way early, a file whose
// pages were all in use had none to drop records with: counters got
// ErrFull while a journal of 2 KiB records kept all of them, a review
// found; TestJournalGivesWayLargeRecords.)
//
// # Time and tests
//
// The store reads the clock only through time.Now, and its goroutines (the
// committer and the sweeper, which uses a time.Ticker) wait on channels and
// timers made when the store is: a store opened inside a testing/synctest
// bubble runs on the bubble's fake clock, and Close ends its goroutines.
// Its conformance tests run that way (Harness.FakeTime), and, on request,
// once more in real time. Such a store belongs to its bubble: like a
// channel made in a bubble, it must not be used from outside it.
//
// # Caveats
//
//   - The file is locked while a store (or any bbolt DB) has it open. A
//     second Open, from this process or another, fails after
//     Options.Timeout (1 s by default; there is no "wait forever") with an
//     error wrapping [ErrFileLocked] and bbolt's errors.ErrTimeout. One process
//     at a time can use a store file: share lockout state between processes
//     or machines with the redis backend instead.
//   - Expiry uses the wall clock, which is stored in the file so that it
//     means the same after a restart. Setting the clock forward expires
//     keys early (locks lift early); setting it back keeps them longer.
//   - A bbolt file never shrinks. The space of swept and deleted keys is
//     reused, but the file keeps the size of its largest burst (an attacker
//     spraying keys can grow it up to MaxSize, after which new keys fail
//     closed with ErrFull until the burst expires and is swept). [Compact]
//     rewrites the file offline, with only its live keys.
//   - Open sets bbolt's NoFreelistSync (and the map freelist): bbolt
//     would otherwise write its whole list of free pages at every commit,
//     so that after a burst was swept every write paid for it (a review
//     measured logins 8 times slower after a million sprayed usernames,
//     until the file was compacted). The cost is at Open, which rebuilds
//     the list by reading the file's live pages, and at a write that
//     fails because the file is at MaxSize: bbolt rebuilds the list then
//     too, holding the writer (a review measured 24 ms per failed write
//     with a full file of 64 MiB, against 0.4 ms without the option; it
//     grows with the file). A full file sends the policy to its fallback,
//     whose probes are then the only writes that fail, about one per
//     ProbeInterval. Open a DB for [New] the
//     same way: bbolt.Options{NoFreelistSync: true, FreelistType:
//     bbolt.FreelistMapType}.
//   - When the file is at MaxSize, a write can only use pages freed by
//     earlier transactions, and bbolt cannot reuse pages that an open read
//     transaction may still see: under heavy concurrent reads, even an
//     increment of an existing key may fail with ErrFull.
//   - Every write costs two fsyncs, so a store's write throughput follows
//     its disk's sync latency; group commit spreads that cost over
//     concurrent callers but does not remove it from any single call.
//   - A call whose context ends while its write waits for the committer
//     returns the context's error at once; its batch may still be committed
//     if the committer had taken it (the backend contract allows this).
//   - The journal costs a write transaction (two fsyncs) per Append, on
//     the same single bbolt writer as counter writes: it is not part of
//     their group commit, so a journal append makes concurrent counter
//     writes wait for one commit (the engine appends in batches, not per
//     decision). Records holds a read transaction for up to 10,000
//     records, which, like any reader, keeps the pages freed meanwhile
//     from being reused until it ends.
//   - Under a full file, a counter write that makes the journals give way
//     costs one more commit per round, and the journal loses its oldest
//     records: an attack that fills the file also erases the journal's
//     history, oldest first. Pages freed by the journal can be reused only
//     once no read transaction older than their release is open: under
//     heavy concurrent reads (Records among them) a counter write may still
//     get ErrFull while the journal holds records.
//   - The journal's size only counts its records; a journal's bucket stays
//     in the file once made, empty or not, so that its IDs never go back.
//     Compact copies the journals, records past their retention included
//     (the sweeper removes them at its first run).
//   - Records are ordered by Append, and expire by the store's wall
//     clock: setting it forward expires records early, setting it back
//     keeps them longer. Records and the sweeper stop at the first expired
//     record they meet (older ones are taken to be expired too), so after
//     the clock is set back by d, the records appended before the step
//     may stop showing up to d early, once those appended after it expire.
//   - New does not apply Options.Timeout and Options.MaxSize, which belong
//     to the caller's bbolt.Open; a write beyond the DB's own MaxSize is
//     reported as ErrFull all the same.
package bolt
