package lockout

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/internal/reccodec"
	"golang.org/x/time/rate"
)

// DefaultJournalQueue is the default JournalConfig.Queue.
const DefaultJournalQueue = 4096

// DefaultJournalRecordBytes is the default JournalConfig.RecordBytes: the
// default bound of the stores' records too.
const DefaultJournalRecordBytes = 2048

// journalBatch bounds the records of one Append.
const journalBatch = 256

// journalTimeout bounds one Append of the journal's writer.
const journalTimeout = 5 * time.Second

// JournalConfig turns on the attempt journal: a record of every attempt's
// outcome (success, failure, refused), every lockout, and every unlock and
// reset with the operator who made it, kept by a store that implements
// backend.Journal and trimmed by it after its retention period (24 h by
// default). Records are written in the background, in batches, through a
// bounded queue: a journal never adds a round trip to a decision, and never
// makes one wait. When the queue is full, records are dropped and counted
// (Policy.JournalStats, EventJournalDropped, a warning in the log).
type JournalConfig struct {
	// Store keeps the records. Default: the policy's store, which must then
	// implement backend.Journal (memory, bbolt and Redis do; memcached
	// does not, and can journal into another store).
	Store backend.Journal
	// Queue bounds the records waiting to be written. Default
	// DefaultJournalQueue.
	Queue int
	// RecordBytes bounds the bytes of a record's string values (user
	// agent, username, custom fields' names and values, ...): when they
	// add up to more, the longest values are cut before the record is
	// queued
	// (backend.Record.Bounded), so that the queue holds at most about
	// Queue * (RecordBytes + 100) bytes, whatever clients send. The store
	// may bound records further. At least backend.MinRecordBytes;
	// negative: no bound. Default DefaultJournalRecordBytes.
	RecordBytes int
	// RefusedPerSecond bounds the records of refused attempts: on
	// average at most this many a second, in bursts of up to
	// RefusedBurst; the others are counted (JournalStats.Unrecorded,
	// EventJournalUnrecorded and a warning in the log every 10 s while
	// there are new ones), not recorded. A refusal costs an attacker nothing (no password is
	// checked, often no store call), so without a bound a flood of them
	// would push every older record out of a journal bounded by count,
	// and fill its queue so that records of real guesses are dropped.
	// Outcomes, lockouts, unlocks and resets are always recorded: the
	// policy's limits bound the outcomes. At the defaults, one process's
	// refusals alone take more than a day to fill 100,000 records (the
	// stores' default JournalMax), longer than the stores' default
	// retention; the bound is per Policy, so N processes sharing a
	// journal record up to N a second. It is split in 16 parts by the
	// client's address (the username without one), each a sixteenth of
	// the rate and burst: a client that floods refusals uses up its part
	// only, and the refusals of clients in the other parts are still
	// recorded (those in its part are not, nor, against refusals from
	// addresses in every part, anyone's; outcomes always are). Negative:
	// every refusal is recorded. Default DefaultJournalRefusedPerSecond.
	RefusedPerSecond float64
	// RefusedBurst is the burst of RefusedPerSecond. Default
	// DefaultJournalRefusedBurst.
	RefusedBurst int
	// HashKey, when set, makes the journal keep a keyed hash
	// (HMAC-SHA256, 128 bits, hex) of each username and IP address instead
	// of the value, and no rule key (which holds them): records can still
	// be looked up by username or IP through Policy.Attempts, which hashes
	// the query alike, but not read back as names. At least 16 bytes.
	HashKey []byte
}

// DefaultJournalRefusedPerSecond is the default
// JournalConfig.RefusedPerSecond.
const DefaultJournalRefusedPerSecond = 1

// DefaultJournalRefusedBurst is the default JournalConfig.RefusedBurst.
const DefaultJournalRefusedBurst = 1000

// JournalStats counts what happened to the journal's records.
type JournalStats struct {
	// Written counts the records the store accepted.
	Written uint64
	// Dropped counts the records lost: queue full, the store failed, or
	// the policy was closed.
	Dropped uint64
	// Unrecorded counts the refused attempts not recorded, over
	// JournalConfig.RefusedPerSecond.
	Unrecorded uint64
}

// journal writes records to a backend.Journal in the background.
type journal struct {
	store   backend.Journal
	name    string
	hashKey []byte
	bytes   int // JournalConfig.RecordBytes; negative: no bound
	log     *slog.Logger

	// The queue: a record is encoded (reccodec) by the decision that
	// makes it, and appended to the pending batch of a shard, which holds
	// at most shardMax; the writer takes every shard's batch and leaves it
	// another, and merges them in the order they were queued (seq). A
	// decision picks its shard by its processor (procTokens): the
	// shard's lock and the end of its batch stay in that core's cache,
	// where a shard picked by subject would move them between cores at
	// almost every record. A pick is only a hint: the shards keep their
	// records whoever picks them. This costs a
	// decision little: no allocation, about a cache line of bytes, a lock
	// no other core touches but the writer's once per batch, one shared
	// counter, and no wake-up of the writer but for the first records of a
	// batch and full shards.
	shards   []queueShard
	shardMax int
	tokens   procTokens         // pick a shard
	seq      atomic.Int64       // the records queued so far
	wake     chan struct{}      // records wait: 1 buffered
	syncs    chan chan struct{} // Sync's requests
	stop     chan struct{}
	done     chan struct{}

	// refused bounds the refusals' records, in refusedParts parts by the
	// client's address (or the username without one); nil: no bound.
	refused            []*rate.Limiter
	partSeed           maphash.Seed
	unrecorded         atomic.Uint64
	unrecordedReported uint64 // unrecorded, when last reported: the writer's

	written, dropped atomic.Uint64
	reported         atomic.Uint64         // dropped, when last reported
	lastReport       atomic.Int64          // unix nanoseconds
	lastErr          atomic.Pointer[error] // of the latest drop with one since the last report
	p                *Policy
	closeOnce        sync.Once
}

// journalShards is the number of shards of a journal's queue, at least
// (and at least GOMAXPROCS when New runs).
const journalShards = 8

// queueShard is a part of a journal's queue, alone on its cache lines.
type queueShard struct {
	mu      sync.Mutex
	pending reccodec.Batch
	times   []int64 // each pending record's number in the queue (journal.seq)
	closed  bool    // the writer is stopping: the shard takes no record
	_       [128 - 72]byte
}

// add appends the record enc and numbers it from seq, unless the shard
// holds max records already, or is closed. n is the number it held before.
func (sh *queueShard) add(enc []byte, seq *atomic.Int64, max int) (n int, ok, closed bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n = sh.pending.Len()
	if sh.closed {
		return n, false, true
	}
	if n >= max {
		return n, false, false
	}
	sh.pending.AddEncoded(enc)
	// Numbered under the shard's lock: a shard's records are in order,
	// and a record numbered before a flush began is in the shard when the
	// flush takes it.
	sh.times = append(sh.times, seq.Add(1))
	return n, true, false
}

// newJournal returns the journal cfg describes for p, or nil.
func newJournal(p *Policy, cfg *JournalConfig) (*journal, error) {
	if cfg == nil {
		return nil, nil
	}
	store := cfg.Store
	if store == nil {
		js, ok := p.store.(backend.Journal)
		if !ok {
			return nil, fmt.Errorf("lockout: Journal: the store %T keeps no journal (backend.Journal): set JournalConfig.Store: %w", p.store, backend.ErrUnsupported)
		}
		store = js
	}
	n := cfg.Queue
	switch {
	case n < 0:
		return nil, fmt.Errorf("lockout: Journal: queue %d: want >= 0", n)
	case n == 0:
		n = DefaultJournalQueue
	}
	bytes := cfg.RecordBytes
	switch {
	case bytes == 0:
		bytes = DefaultJournalRecordBytes
	case bytes > 0 && bytes < backend.MinRecordBytes:
		return nil, fmt.Errorf("lockout: Journal: RecordBytes %d: want at least %d, or negative for no bound", bytes, backend.MinRecordBytes)
	}
	refusedRate, burst := cfg.RefusedPerSecond, cfg.RefusedBurst
	switch {
	case math.IsNaN(refusedRate) || math.IsInf(refusedRate, 0):
		return nil, fmt.Errorf("lockout: Journal: RefusedPerSecond %v: want a number", refusedRate)
	case refusedRate == 0:
		refusedRate = DefaultJournalRefusedPerSecond
	}
	switch {
	case burst < 0:
		return nil, fmt.Errorf("lockout: Journal: RefusedBurst %d: want >= 0", burst)
	case burst == 0:
		burst = DefaultJournalRefusedBurst
	}
	if cfg.HashKey != nil && len(cfg.HashKey) < 16 {
		return nil, fmt.Errorf("lockout: Journal: HashKey of %d bytes: want at least 16", len(cfg.HashKey))
	}
	if !backend.ValidJournalName(p.prefix) {
		return nil, fmt.Errorf("lockout: Journal: prefix %q cannot name a journal", p.prefix)
	}
	shards := min(n, max(journalShards, runtime.GOMAXPROCS(0)))
	j := &journal{
		store:    store,
		name:     p.prefix,
		hashKey:  cfg.HashKey,
		bytes:    bytes,
		shards:   make([]queueShard, shards),
		shardMax: (n + shards - 1) / shards,
		wake:     make(chan struct{}, 1),
		syncs:    make(chan chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		log:      p.log,
		p:        p,
	}
	if refusedRate > 0 {
		j.refused = make([]*rate.Limiter, refusedParts)
		j.partSeed = maphash.MakeSeed()
		for i := range j.refused {
			j.refused[i] = rate.NewLimiter(rate.Limit(refusedRate/refusedParts), max(burst/refusedParts, 1))
		}
	}
	j.tokens.init(len(j.shards))
	unlabeled(func() { go j.run() })
	return j, nil
}

// refusedParts is the number of parts of the bound on refusals' records:
// a client that floods refusals takes one part, and the clients whose
// addresses hash to the other parts keep theirs.
const refusedParts = 16

// refusedPart returns the part of the bound on refusals' records that s's
// refusals take: by the client's address, or the username without one.
func (j *journal) refusedPart(s *Subject) *rate.Limiter {
	v := s.IP
	if v == "" {
		v = s.Username
	}
	return j.refused[maphash.String(j.partSeed, v)%refusedParts]
}

// hash returns the keyed hash of v, tagged by what it is, or v itself when
// the journal keeps plain values.
func (j *journal) hash(tag, v string) string {
	if j.hashKey == nil || v == "" {
		return v
	}
	m := hmac.New(sha256.New, j.hashKey)
	m.Write([]byte(tag))
	m.Write([]byte{0})
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// record queues the record of e, if e is one the journal keeps. It never
// blocks.
func (j *journal) record(ctx context.Context, e *Event) {
	var outcome string
	switch e.Kind {
	case EventSuccess, EventFailure, EventRefused, EventLockout, EventUnlock, EventReset:
		outcome = e.Kind.String()
	default:
		return
	}
	if e.Kind == EventRefused && j.refused != nil && !j.refusedPart(&e.Subject).AllowN(e.Time, 1) {
		// Before the record is built: an unrecorded refusal costs no
		// hash nor encoding.
		j.unrecorded.Add(1)
		return
	}
	r := backend.Record{
		Time:      e.Time,
		Outcome:   outcome,
		Rule:      e.Rule,
		Key:       e.Key,
		Username:  j.hash("u", e.Subject.Username),
		IP:        j.hash("ip", e.Subject.IP),
		UserAgent: e.Subject.UserAgent,
		Fields:    e.Subject.Fields, // encoded now: the caller may change it later
		Fallback:  e.Fallback,
		Operator:  e.Operator,
		Via:       e.Via,
	}
	if j.hashKey != nil {
		r.Key = "" // it holds the username and the IP
	}
	if e.Kind == EventRefused {
		r.Reason = e.Reason.String()
	}
	if e.Kind == EventLockout {
		r.Duration = e.Duration
		if e.Duration == Forever {
			r.Duration = backend.NoExpiry
		}
	}
	j.add(ctx, &r)
}

// recordOutcome queues the record of an attempt's outcome (EventSuccess or
// EventFailure): what record does with its Event, without one.
func (j *journal) recordOutcome(ctx context.Context, kind EventKind, c *canonical, t time.Time, fallback bool) {
	r := backend.Record{
		Time:      t,
		Outcome:   kind.String(),
		Username:  j.hash("u", c.username),
		IP:        j.hash("ip", c.ipString()),
		UserAgent: c.userAgent,
		Fields:    c.fields,
		Fallback:  fallback,
	}
	j.add(ctx, &r)
}

// add queues r. It never blocks.
func (j *journal) add(ctx context.Context, r *backend.Record) {
	var buf [256]byte // on the stack, unless the record is longer
	enc := reccodec.Append(buf[:0], r)
	if j.bytes >= 0 && len(enc) > j.bytes {
		// Its values may add up to more than the bound: a client's
		// megabyte of user agent must not take a megabyte of queue.
		if cut, ok := r.Bounded(j.bytes); ok {
			enc = reccodec.Append(buf[:0], &cut)
		}
	}
	// The records' order is the order they were queued in (j.seq), one
	// subject's and all. Times would not do: records made in the same
	// instant (one clock tick, a synctest bubble) may sit in different
	// shards.
	first := j.tokens.pick()
	n, ok, closed := j.shards[first].add(enc, &j.seq, j.shardMax)
	// A full shard (its processor outran the writer): the others may
	// have room.
	for i := 1; !ok && !closed && i < len(j.shards); i++ {
		n, ok, closed = j.shards[(first+i)%len(j.shards)].add(enc, &j.seq, j.shardMax)
	}
	if !ok {
		var err error
		if closed {
			err = ErrClosed
		}
		j.drop(ctx, 1, err)
		return
	}
	if n == 0 || n+1 == j.shardMax || n+1 == journalBatch/len(j.shards) {
		// A first record starts the writer's linger; a full shard, or
		// a shard's share of a batch, may end it.
		select {
		case j.wake <- struct{}{}:
		default:
		}
	}
}

// queued returns the number of records in the queue.
func (j *journal) queued() int {
	n := 0
	for i := range j.shards {
		sh := &j.shards[i]
		sh.mu.Lock()
		n += sh.pending.Len()
		sh.mu.Unlock()
	}
	return n
}

// dropReportEvery is how often dropped records are reported, at most.
const dropReportEvery = 10 * time.Second

// drop counts n lost records, for err (nil: the queue was full), and
// reports them (report).
func (j *journal) drop(ctx context.Context, n uint64, err error) {
	if err != nil {
		j.lastErr.Store(&err)
	}
	j.dropped.Add(n)
	j.report(ctx)
}

// report logs the records dropped since the last report, with the latest
// error among them, and tells the observer (EventJournalDropped), unless
// there are none or the last report is less than dropReportEvery old. The
// writer calls it every dropReportEvery too, so that the last drops of a
// burst are reported.
func (j *journal) report(ctx context.Context) {
	total := j.dropped.Load()
	if total == j.reported.Load() {
		return
	}
	now := time.Now().UnixNano()
	last := j.lastReport.Load()
	if now-last < int64(dropReportEvery) || !j.lastReport.CompareAndSwap(last, now) {
		return
	}
	count := total - j.reported.Swap(total)
	var err error
	if last := j.lastErr.Swap(nil); last != nil {
		err = *last
	}
	j.log.LogAttrs(ctx, slog.LevelWarn, "lockout: journal records dropped", slog.Uint64("count", count), slog.Any("error", err))
	if j.p.observer != nil {
		j.p.observer.Observe(ctx, Event{Kind: EventJournalDropped, Time: time.Unix(0, now), Count: int64(count), Err: err})
	}
}

// reportUnrecorded logs the refusals not recorded since the last call,
// and tells the observer (EventJournalUnrecorded), unless there are none.
// The writer calls it every dropReportEvery.
func (j *journal) reportUnrecorded(ctx context.Context) {
	total := j.unrecorded.Load()
	count := total - j.unrecordedReported
	if count == 0 {
		return
	}
	j.unrecordedReported = total
	j.log.LogAttrs(ctx, slog.LevelWarn, "lockout: refused attempts not recorded in the journal (over JournalConfig.RefusedPerSecond)", slog.Uint64("count", count))
	if j.p.observer != nil {
		j.p.observer.Observe(ctx, Event{Kind: EventJournalUnrecorded, Time: time.Now(), Count: int64(count)})
	}
}

// journalLinger is how long the writer waits for more records after the
// first of a batch: a store pays for each call (a round trip, a
// transaction), so records go in batches of up to journalBatch, at most
// journalLinger late.
const journalLinger = 10 * time.Millisecond

// run is a run of queued records, in the order of their numbers, that the
// writer merges with others.
type run struct {
	batch reccodec.Batch
	times []int64 // each record's number
	off   int     // the next record's offset in batch
	i     int     // and its index in times
}

// lowest returns the index of the run whose next record has the lowest
// number; -1 when every run is done.
func lowest(runs []run) int {
	k := -1
	for i := range runs {
		r := &runs[i]
		if r.i < len(r.times) && (k < 0 || r.times[r.i] < runs[k].times[runs[k].i]) {
			k = i
		}
	}
	return k
}

// run writes the queued records in batches until close, then what is left.
func (j *journal) run() {
	defer close(j.done)
	var (
		// What flush took from each shard (and the shards get next), and
		// last, what it held back for the next flush (see flush).
		runs        = make([]run, len(j.shards)+1)
		carry, next = &runs[len(j.shards)], run{}
		batch       reccodec.Batch
	)
	// flush writes the queued records in the order they were numbered
	// (queueShard.add), in batches of up to journalBatch. A record
	// numbered before flush began is in a shard it takes, or in carry; a
	// later one may have gone to a shard that flush already took while a
	// record with a lower number went to one it takes after: those wait
	// in carry for the next flush, unless this one is the last.
	flush := func(last bool) {
		limit := j.seq.Load()
		if last {
			limit = math.MaxInt64
		}
		for i := range j.shards {
			sh, r := &j.shards[i], &runs[i]
			r.batch.Reset()
			sh.mu.Lock()
			sh.pending, r.batch = r.batch, sh.pending
			sh.times, r.times = r.times[:0], sh.times
			sh.mu.Unlock()
			r.off, r.i = 0, 0
		}
		// Each run is in order: merge them. A record numbered during this
		// flush (rarely more than a few) may follow one still on its way
		// to a shard taken already: it waits, in order, for the next.
		next.batch.Reset()
		next.times, next.off, next.i = next.times[:0], 0, 0
		for {
			k := lowest(runs)
			if k < 0 {
				break
			}
			r := &runs[k]
			n := r.times[r.i]
			enc, off, _ := r.batch.Next(r.off)
			r.off, r.i = off, r.i+1
			if n > limit {
				next.batch.AddEncoded(enc)
				next.times = append(next.times, n)
				continue
			}
			batch.AddEncoded(enc)
			if batch.Len() == journalBatch {
				j.write(&batch)
				batch.Reset()
			}
		}
		if batch.Len() > 0 {
			j.write(&batch)
			batch.Reset()
		}
		*carry, next = next, *carry
	}
	linger := time.NewTimer(journalLinger)
	linger.Stop()
	reports := time.NewTicker(dropReportEvery)
	defer reports.Stop()
	for {
		// Records held back wait no longer than the linger.
		if len(carry.times) == 0 {
			select {
			case <-j.wake:
			case done := <-j.syncs:
				flush(false)
				close(done)
				continue
			case <-reports.C:
				j.report(context.Background())
				j.reportUnrecorded(context.Background())
				continue
			case <-j.stop:
				flush(true)
				return
			}
		}
		// Wait for more records, up to a full batch.
		linger.Reset(journalLinger)
	wait:
		for j.queued() < journalBatch {
			select {
			case <-linger.C:
				break wait
			case <-j.wake:
			case done := <-j.syncs:
				flush(false)
				close(done)
			case <-j.stop:
				linger.Stop()
				flush(true)
				return
			}
		}
		linger.Stop()
		flush(false)
	}
}

func (j *journal) write(b *reccodec.Batch) {
	ctx, cancel := context.WithTimeout(context.Background(), journalTimeout)
	defer cancel()
	var err error
	if a, ok := j.store.(reccodec.Appender); ok {
		err = a.AppendBatch(ctx, j.name, b)
	} else {
		var recs []backend.Record
		if recs, err = b.Records(); err == nil {
			err = j.store.Append(ctx, j.name, recs)
		}
	}
	if err != nil {
		j.drop(ctx, uint64(b.Len()), err)
		return
	}
	j.written.Add(uint64(b.Len()))
}

// close writes what is queued and stops the writer. A record made after
// it is dropped (an attempt that reports after Close).
func (j *journal) close() {
	j.closeOnce.Do(func() {
		// Every record a shard took before it closed is written by the
		// last flush; every later one is counted as dropped.
		for i := range j.shards {
			sh := &j.shards[i]
			sh.mu.Lock()
			sh.closed = true
			sh.mu.Unlock()
		}
		close(j.stop)
		<-j.done
	})
}

// SyncJournal waits until the journal's store has the records of the
// events before the call (or they are dropped), or ctx ends. Decisions
// never wait for the journal; SyncJournal is for tests, examples and
// operator tools that read right after writing.
func (p *Policy) SyncJournal(ctx context.Context) error {
	if p.journal == nil {
		return ErrNoJournal
	}
	done := make(chan struct{})
	select {
	case p.journal.syncs <- done:
	case <-p.journal.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// JournalStats returns what happened to the journal's records so far; zero
// without a journal.
func (p *Policy) JournalStats() JournalStats {
	if p.journal == nil {
		return JournalStats{}
	}
	return JournalStats{Written: p.journal.written.Load(), Dropped: p.journal.dropped.Load(), Unrecorded: p.journal.unrecorded.Load()}
}

// ErrNoJournal is returned by Attempts for a policy without a journal.
var ErrNoJournal = errors.New("lockout: the policy keeps no journal (Config.Journal)")

// AttemptQuery selects journal records for Policy.Attempts.
type AttemptQuery struct {
	// Username and IP, when set, select the records of that subject. They
	// are canonicalised as the policy counts them (and hashed, with
	// JournalConfig.HashKey).
	Username, IP string
	// Outcome, when set, selects one kind of record: "success",
	// "failure", "refused", "lockout", "unlock" or "reset".
	Outcome string
	// Before continues after an earlier page: the cursor it returned.
	Before string
	// Limit bounds the records returned (default 50, at most 1000).
	Limit int
}

// Attempts returns the journal's records that match q, newest first, and
// a cursor for the next page ("" after the oldest). It reads what the
// journal's store holds: records still queued are not in it yet.
func (p *Policy) Attempts(ctx context.Context, q AttemptQuery) ([]backend.Record, string, error) {
	if p.journal == nil {
		return nil, "", ErrNoJournal
	}
	if p.closed.Load() {
		return nil, "", ErrClosed
	}
	bq := backend.Query{Outcome: q.Outcome, Before: q.Before, Limit: q.Limit}
	if q.Username != "" {
		u, err := p.canonUsername(q.Username)
		if err != nil {
			return nil, "", err
		}
		bq.Username = p.journal.hash("u", u)
	}
	if q.IP != "" {
		ip, err := ParseIP(q.IP)
		if err != nil {
			return nil, "", err
		}
		bq.IP = p.journal.hash("ip", ip.String())
	}
	recs, next, err := p.journal.store.Records(ctx, p.journal.name, bq)
	if err != nil {
		return nil, "", fmt.Errorf("lockout: journal: %w", err)
	}
	return recs, next, nil
}
