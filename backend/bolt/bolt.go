package bolt

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/go-lockout/lockout/backend"
)

// Defaults for the zero fields of [Options].
const (
	// DefaultTimeout is how long Open waits for the file lock.
	DefaultTimeout = time.Second
	// DefaultMaxSize is the largest size Open lets the file grow to: 1 GiB,
	// several million lockout keys.
	DefaultMaxSize int64 = 1 << 30
	// DefaultSweepInterval is how often the sweeper removes expired keys.
	DefaultSweepInterval = time.Minute
	// DefaultSweepChunk is how many expired keys the sweeper removes per
	// transaction.
	DefaultSweepChunk = 1000
	// DefaultBucket is the bucket Open keeps the store in.
	DefaultBucket = "lockout"
)

// ErrFileLocked is returned, wrapped together with bbolt's ErrTimeout, by an
// Open that could not lock the file within Options.Timeout: another
// process, or another Store in this one, has it open.
//
// It is about the database file, not a login: lockout.ErrLocked is the
// refusal of a key that is locked out. (It was named ErrLocked before
// the two were told apart.)
var ErrFileLocked = errors.New("lockout/bolt: database file is locked by another process or Store")

func lockedErr(path string, timeout time.Duration, err error) error {
	wait := "without waiting"
	if timeout > 0 {
		wait = "after waiting " + timeout.String()
	}
	return fmt.Errorf("%w: %s (gave up %s): %w", ErrFileLocked, path, wait, err)
}

// Options configures a [Store]. A nil *Options, and every zero field, means
// the default.
type Options struct {
	// Timeout bounds how long Open waits for the exclusive lock on the
	// file, which another process (or another Store in this process)
	// holding the file open keeps. Zero means DefaultTimeout (1 s); a
	// negative value tries once without waiting. There is no way to wait
	// forever: to wait longer, give a longer duration. When the time is up
	// (bbolt retries every 50 ms, and gives up within 50 ms of Timeout),
	// Open returns an error wrapping ErrFileLocked and bbolt's ErrTimeout.
	// New ignores Timeout.
	Timeout time.Duration

	// MaxSize is the largest size, in bytes, that Open lets the file grow
	// to. A write that would grow the file beyond it fails with an error
	// wrapping backend.ErrFull and is not applied; existing keys still read,
	// and writes that fit in the file's free pages still succeed. Zero means
	// DefaultMaxSize (1 GiB); a negative value means no limit. bbolt grows
	// a file in steps (doubling up to 16 MiB, then 16 MiB at a time) and
	// refuses a step that would pass MaxSize, so the data that fits can be
	// up to one step less than MaxSize: 16 MiB less from 32 MiB on (1,008
	// MiB of data by default), and below that the largest power of two
	// that fits (2 MiB of data for 3 MiB, 16 for 20; TestCapacity).
	// New ignores MaxSize:
	// the limit of the caller's DB (bbolt.Options.MaxSize) applies, and is
	// reported as ErrFull too.
	MaxSize int64

	// SweepInterval is how often a background goroutine removes expired
	// keys from the file. Zero means DefaultSweepInterval (1 min); a
	// negative value disables the sweeper (expired keys are still never
	// reported, and [Store.Sweep] can be called by hand).
	SweepInterval time.Duration

	// SweepChunk bounds how many expired keys one sweep transaction
	// removes, so that a sweep never holds the writer lock for long. Zero
	// means DefaultSweepChunk (1000).
	SweepChunk int

	// JournalRetention is how long the journal ([Store.Append],
	// [Store.Records]) keeps a record after its Append. Older records are
	// never returned, and the sweeper removes them at its next run (every
	// SweepInterval). Zero or a negative value means
	// DefaultJournalRetention (24 h).
	JournalRetention time.Duration

	// JournalMax is how many records each journal keeps at most: an Append
	// that takes a journal beyond it drops the journal's oldest records in
	// its own transaction. Zero or a negative value means DefaultJournalMax
	// (100,000).
	JournalMax int

	// JournalRecordBytes bounds the bytes of string values (outcome,
	// username, IP, user agent, custom fields' names and values, ...) one journal
	// record keeps. When a record's values add up to more, the longest
	// ones are cut, all to the same length (at a rune boundary when valid
	// UTF-8), so that short values stay whole and an attacker's
	// multi-kilobyte user agent or username cannot multiply the journal's
	// size. Zero means DefaultJournalRecordBytes (2048); a positive value
	// below backend.MinRecordBytes (1024) is raised to it; a negative
	// value means no bound.
	JournalRecordBytes int
}

func (o *Options) resolve() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Timeout == 0 {
		r.Timeout = DefaultTimeout
	}
	if r.MaxSize == 0 {
		r.MaxSize = DefaultMaxSize
	}
	if r.SweepInterval == 0 {
		r.SweepInterval = DefaultSweepInterval
	}
	if r.SweepChunk <= 0 {
		r.SweepChunk = DefaultSweepChunk
	}
	if r.JournalRetention <= 0 {
		r.JournalRetention = DefaultJournalRetention
	}
	if r.JournalMax <= 0 {
		r.JournalMax = DefaultJournalMax
	}
	switch {
	case r.JournalRecordBytes == 0:
		r.JournalRecordBytes = DefaultJournalRecordBytes
	case r.JournalRecordBytes > 0:
		r.JournalRecordBytes = max(r.JournalRecordBytes, backend.MinRecordBytes)
	}
	return r
}

// Store is a [backend.Backend], [backend.Lister] and [backend.Journal]
// kept in a bbolt file.
// Its methods are safe for concurrent use.
type Store struct {
	db     *bbolt.DB
	ownDB  bool // Close closes db
	bucket []byte
	opts   Options

	// mu guards closed; inflight counts the calls under way, which Close
	// waits for before it stops the goroutines and closes the file.
	mu       sync.RWMutex
	closed   bool
	inflight sync.WaitGroup

	queue chan *request // writers waiting for the committer
	stop  chan struct{} // closed by Close: the goroutines return
	bg    sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	reqPool sync.Pool // *request, per store: its channels belong to one bubble under synctest

	// mode replaces the group commit by a baseline, for benchmarks.
	mode commitMode

	stats struct {
		commits  atomic.Int64 // write transactions committed (or attempted)
		requests atomic.Int64 // write requests served

		lastBatchTx atomic.Int64 // modeBatch: the transaction last counted

		sheds atomic.Int64 // rounds of journal records dropped for counters
	}
}

var (
	_ backend.Backend = (*Store)(nil)
	_ backend.Lister  = (*Store)(nil)
)

// Open opens the bbolt file at path, creating it with mode if it does not
// exist, and returns a store kept in its bucket DefaultBucket. The store
// owns the file: Close closes it. While the store is open, the file is
// locked: a second Open of it, from this process or another, fails after
// opts.Timeout with an error wrapping ErrFileLocked.
func Open(path string, mode os.FileMode, opts *Options) (*Store, error) {
	o := opts.resolve()
	bo := &bbolt.Options{
		Timeout:        o.Timeout,
		FreelistType:   bbolt.FreelistMapType,
		NoFreelistSync: true, // see the package's caveats
	}
	if o.MaxSize > 0 {
		bo.MaxSize = int(min(o.MaxSize, math.MaxInt))
	}
	db, err := bbolt.Open(path, mode, bo)
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, lockedErr(path, o.Timeout, err)
		}
		return nil, fmt.Errorf("lockout/bolt: open %s: %w", path, err)
	}
	s, err := newStore(db, DefaultBucket, o, true)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// New returns a store kept in the named bucket of db, which the caller
// opened read-write and keeps: Close stops the store but does not close db.
// The bucket is created if missing; an existing one must have been made by
// this package. opts.Timeout and opts.MaxSize do not apply (they are
// db's own options); writes beyond db's MaxSize fail with ErrFull all the
// same. Open db with NoFreelistSync, as Open does (see the package's
// caveats): without it, every commit after a swept burst of keys writes
// the burst's list of free pages. A db with a MaxSize must keep its
// statistics (no NoStatistics): the store reads its free pages there.
// Stores that share a DB share its room: when it runs short, a store drops
// the oldest records of every store's journals, not only its own (see the
// package doc).
func New(db *bbolt.DB, bucket string, opts *Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("lockout/bolt: New with a nil DB")
	}
	if bucket == "" {
		return nil, errors.New("lockout/bolt: New with an empty bucket name")
	}
	if db.IsReadOnly() {
		return nil, errors.New("lockout/bolt: New with a read-only DB")
	}
	if db.MaxSize > 0 && !keepsStatistics(db) {
		// The journal's bounds count the free pages in db.Stats: with
		// none, a file once near full refused every Append for good.
		return nil, errors.New("lockout/bolt: New with a DB that has a MaxSize and NoStatistics: the store reads the free pages of a bounded file from its statistics")
	}
	return newStore(db, bucket, opts.resolve(), false)
}

// keepsStatistics reports whether db was opened without NoStatistics: a
// read transaction then shows in its statistics.
func keepsStatistics(db *bbolt.DB) bool {
	_ = db.View(func(*bbolt.Tx) error { return nil })
	return db.Stats().TxN > 0
}

func newStore(db *bbolt.DB, bucket string, o Options, ownDB bool) (*Store, error) {
	s := &Store{
		db:     db,
		ownDB:  ownDB,
		bucket: []byte(bucket),
		opts:   o,
		queue:  make(chan *request, maxQueue),
		stop:   make(chan struct{}),
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists(s.bucket)
		if err != nil {
			return err
		}
		if v := top.Get(formatKey); v == nil {
			if k, _ := top.Cursor().First(); k != nil {
				return fmt.Errorf("bucket %q is not empty and was not made by this package", bucket)
			}
			if err := top.Put(formatKey, []byte(formatVersion)); err != nil {
				return err
			}
		} else if string(v) != formatVersion {
			return fmt.Errorf("bucket %q holds format %q, want %q", bucket, v, formatVersion)
		}
		if _, err := top.CreateBucketIfNotExists(entriesBucket); err != nil {
			return err
		}
		if _, err := top.CreateBucketIfNotExists(journalBucket); err != nil {
			return err
		}
		_, err = top.CreateBucketIfNotExists(expiryBucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lockout/bolt: preparing bucket %q: %w", bucket, mapErr(err))
	}
	s.bg.Add(1)
	go s.commitLoop()
	if o.SweepInterval > 0 {
		s.bg.Add(1)
		go s.sweepLoop()
	}
	return s, nil
}

// enter registers a call; it reports false once the store is closed.
func (s *Store) enter() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	s.inflight.Add(1)
	return true
}

func (s *Store) leave() { s.inflight.Done() }

var errClosed = fmt.Errorf("lockout/bolt: %w", backend.ErrClosed)

// GuardsExpiry implements backend.ExpiryGuard: Result.Expires is a key's
// expiry on the wall clock (Unix nanoseconds), and a conditional decrement
// is checked in the call's transaction.
func (s *Store) GuardsExpiry() bool { return true }

// Close stops the store: it waits for the calls under way, stops the
// sweeper and the committer, and closes the file if Open opened it. Calls
// made after Close return an error wrapping backend.ErrClosed. Close may be
// called more than once; every call returns the first one's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.inflight.Wait()
		close(s.stop)
		s.bg.Wait()
		if s.ownDB {
			if err := s.db.Close(); err != nil {
				s.closeErr = fmt.Errorf("lockout/bolt: close: %w", err)
			}
		}
	})
	return s.closeErr
}

// Do applies ops in one transaction (see [backend.Backend]). A batch that
// changes nothing (Exists, Incr by zero, and operations that find nothing
// to change) is served by a read transaction, which never syncs the disk.
// A batch that writes joins the next group commit: when Do returns nil, its
// changes are on disk.
func (s *Store) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	if !s.enter() {
		return errClosed
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lockout/bolt: %w", err)
	}
	if err := backend.ValidateBatch(ops, res); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	if !certainWrite(ops) {
		write, err := s.view(ops, res)
		if err != nil || !write {
			return err
		}
	}
	switch s.mode {
	case modeUpdate:
		return s.updateEach(ops, res)
	case modeBatch:
		return s.batchEach(ops, res)
	}
	return s.submit(ctx, ops, res)
}

// certainWrite reports whether ops hold an Incr with a positive delta,
// which always writes.
func certainWrite(ops []backend.Op) bool {
	for i := range ops {
		if ops[i].Kind == backend.Incr && ops[i].Delta > 0 {
			return true
		}
	}
	return false
}

// view applies ops in a read transaction, and reports whether they need a
// write transaction instead.
func (s *Store) view(ops []backend.Op, res []backend.Result) (needWrite bool, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		needWrite, err = s.applyIn(tx, false, ops, res)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("lockout/bolt: %w", mapErr(err))
	}
	return needWrite, nil
}

// applyIn applies one call's ops in tx; see txn.apply.
func (s *Store) applyIn(tx *bbolt.Tx, writable bool, ops []backend.Op, res []backend.Result) (needWrite bool, err error) {
	t, err := s.newTxn(tx, writable)
	if err != nil {
		return false, err
	}
	return t.apply(ops, res)
}

func (s *Store) newTxn(tx *bbolt.Tx, writable bool) (*txn, error) {
	entries, expiry, err := s.buckets(tx)
	if err != nil {
		return nil, err
	}
	return &txn{
		entries:  entries,
		expiry:   expiry,
		now:      time.Now().UnixNano(),
		writable: writable,
	}, nil
}

// mapErr maps bbolt's errors to the backend's.
func mapErr(err error) error {
	switch {
	case errors.Is(err, berrors.ErrMaxSizeReached):
		return fmt.Errorf("%w: %w", backend.ErrFull, err)
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return fmt.Errorf("%w: %w", backend.ErrClosed, err)
	}
	return err
}
