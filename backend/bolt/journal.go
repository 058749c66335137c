package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/go-lockout/lockout/backend"
)

// Defaults of the journal options.
const (
	// DefaultJournalRetention is how long a journal keeps a record.
	DefaultJournalRetention = 24 * time.Hour
	// DefaultJournalMax is how many records a journal keeps at most.
	DefaultJournalMax = 100_000
	// DefaultJournalRecordBytes bounds the string values of one record.
	DefaultJournalRecordBytes = 2048
)

// journalScan bounds the records one Records call reads: a query whose
// filters match few records returns a short page and a cursor instead of
// holding a read transaction over the whole journal.
const journalScan = 10_000

var _ backend.Journal = (*Store)(nil)

func invalidName(name string) error {
	return fmt.Errorf("lockout/bolt: %w: journal name %q", backend.ErrInvalid, truncKey([]byte(name)))
}

// Append adds recs to the journal named name, in order, in one write
// transaction (see [backend.Journal]). Each record gets as its ID its
// sequence number in the journal. When the journal then holds more than
// Options.JournalMax records, the same transaction drops the oldest. A
// record whose string values add up to more than Options.JournalRecordBytes
// is kept with its longest values cut (see that option).
//
// The journal leaves the file's last eighth to counters: when the pages in
// use pass 7/8 of MaxSize, an Append drops as many of the journal's oldest
// records as it adds, and at least as many bytes (and fails with an error
// wrapping backend.ErrFull, appending nothing, when the journal holds
// fewer). An append
// that would grow the file beyond MaxSize fails with ErrFull too. A counter
// write that finds the file full makes the journals drop their oldest
// records instead (see the package doc, Caveats).
//
// It returns when ctx ends, even while it waits for another write (a
// sweep, a shed) to finish: it then appends nothing, unless its
// transaction had already begun.
func (s *Store) Append(ctx context.Context, name string, recs []backend.Record) error {
	if !s.enter() {
		return errClosed
	}
	left := false
	defer func() {
		if !left {
			s.leave()
		}
	}()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lockout/bolt: journal: %w", err)
	}
	if !backend.ValidJournalName(name) {
		return invalidName(name)
	}
	if len(recs) == 0 {
		return nil
	}
	recs = s.cutRecords(recs)
	size := 0
	for i := range recs {
		size += encodedSize(&recs[i])
	}
	// One buffer for every value: bbolt keeps them until the commit.
	buf := make([]byte, 0, size)
	keys := make([]byte, 0, 8*len(recs))
	ends := make([]int, len(recs)) // where each record's encoding ends in buf
	// bbolt's writer lock cannot be given up on: the transaction waits
	// for it on a goroutine of its own, and the call returns at ctx's end
	// (a long sweep or shed may hold the lock). A transaction that gets
	// the lock after that appends nothing.
	done := make(chan error, 1)
	left = true
	go func() {
		defer s.leave()
		err := s.db.Update(func(tx *bbolt.Tx) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return s.appendIn(tx, name, recs, buf, keys, ends)
		})
		done <- err
		s.makeRoom()
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		return fmt.Errorf("lockout/bolt: journal append: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("lockout/bolt: journal append: %w", mapErr(err))
	}
	return nil
}

// appendIn is Append's transaction: buf, keys and ends have room for the
// records' encodings, keys and ends.
func (s *Store) appendIn(tx *bbolt.Tx, name string, recs []backend.Record, buf, keys []byte, ends []int) error {
	jb, err := s.journals(tx)
	if err != nil {
		return err
	}
	b, err := jb.CreateBucketIfNotExists([]byte(name))
	if err != nil {
		return err
	}
	b.FillPercent = 1 // appends only: pack the pages
	stamp := time.Now().UnixNano()
	buf = buf[:0]
	for i := range recs {
		buf = appendRecord(buf, &recs[i], stamp)
		ends[i] = len(buf)
	}
	if s.crowded(tx) {
		// Rotate: the journal takes no more room than it had, in
		// records or in bytes.
		if err := rotate(b, len(recs), len(buf)); err != nil {
			return err
		}
	}
	keys, v0 := keys[:0], 0
	for i := range recs {
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		k0 := len(keys)
		keys = binary.BigEndian.AppendUint64(keys, seq)
		if err := b.Put(keys[k0:len(keys):len(keys)], buf[v0:ends[i]:ends[i]]); err != nil {
			return err
		}
		v0 = ends[i]
	}
	_, err = trimCount(b, s.opts.JournalMax, -1)
	return err
}

// rotate drops the oldest records of b, at least n of them and at least
// size bytes of their encodings, to make room for n records of size bytes
// in a crowded file. It fails with an error wrapping backend.ErrFull,
// dropping nothing, when b holds fewer records or bytes.
func rotate(b *bbolt.Bucket, n, size int) error {
	var (
		drop    [][]byte
		dropped int
	)
	c := b.Cursor()
	for k, v := c.First(); len(drop) < n || dropped < size; k, v = c.Next() {
		if k == nil {
			return fmt.Errorf("%w: the file is over 7/8 of its capacity and the journal holds too little (%d records, %d bytes) to make room for %d records of %d bytes", backend.ErrFull, len(drop), dropped, n, size)
		}
		drop = append(drop, bytes.Clone(k))
		dropped += len(v)
	}
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Records returns the records of the journal named name that match q,
// newest first (see [backend.Journal]). One call reads at most 10,000
// records: when its filters match fewer than q's limit among them, it
// returns what it found and a cursor to go on from. Records older than
// Options.JournalRetention are never returned, swept or not.
func (s *Store) Records(ctx context.Context, name string, q backend.Query) ([]backend.Record, string, error) {
	if !s.enter() {
		return nil, "", errClosed
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("lockout/bolt: journal: %w", err)
	}
	if !backend.ValidJournalName(name) {
		return nil, "", invalidName(name)
	}
	limit, err := q.PageLimit()
	if err != nil {
		return nil, "", fmt.Errorf("lockout/bolt: %w", err)
	}
	var before uint64
	if q.Before != "" {
		if before, err = parseID(q.Before); err != nil {
			return nil, "", err
		}
		if before == 0 {
			return nil, "", nil // nothing is older than the first record
		}
	}
	var (
		recs []backend.Record
		next string
	)
	err = s.db.View(func(tx *bbolt.Tx) error {
		jb, err := s.journals(tx)
		if err != nil {
			return err
		}
		b := jb.Bucket([]byte(name))
		if b == nil {
			return nil
		}
		cutoff := time.Now().UnixNano() - int64(s.opts.JournalRetention)
		c := b.Cursor()
		var k, v []byte
		if before == 0 {
			k, v = c.Last()
		} else if k, _ = c.Seek(seqKey(before)); k == nil {
			k, v = c.Last() // every record is older than the cursor
		} else {
			k, v = c.Prev() // the first older than the cursor
		}
		var (
			raw     rawRecord
			last    uint64 // the sequence of the last record read
			scanned int
		)
		for ; k != nil; k, v = c.Prev() {
			if len(k) != 8 {
				return fmt.Errorf("%w: key of %d bytes", errCorruptRecord, len(k))
			}
			seq := binary.BigEndian.Uint64(k)
			if err := decodeRaw(v, &raw); err != nil {
				return fmt.Errorf("%w (ID %s)", err, formatID(seq))
			}
			if raw.stamp <= cutoff {
				return nil // past the retention, and so are the older ones
			}
			if scanned == journalScan || len(recs) == limit {
				// More to read: the next page starts after the last
				// record this one read.
				next = formatID(last)
				return nil
			}
			scanned++
			if scanned%256 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			last = seq
			if raw.Matches(&q) {
				recs = append(recs, raw.Record(formatID(seq)))
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, "", fmt.Errorf("lockout/bolt: journal: %w", err)
		}
		return nil, "", fmt.Errorf("lockout/bolt: journal records: %w", mapErr(err))
	}
	return recs, next, nil
}

// crowded reports whether the file's pages in use (its size, less its free
// pages) are over 7/8 of its capacity: the journal then grows no more, and
// leaves the rest to counters.
func (s *Store) crowded(tx *bbolt.Tx) bool {
	limit := capacity(s.db)
	return limit > 0 && s.used(tx) > limit/8*7
}

// used returns the bytes of the file's pages in use: its data (tx.Size),
// less its pages free or pending.
func (s *Store) used(tx *bbolt.Tx) int64 {
	st := s.db.Stats()
	return tx.Size() - int64(st.FreePageN+st.PendingPageN)*int64(s.db.Info().PageSize)
}

// cramped reports whether the file has less room left than a shed of the
// journals needs to be sure of pages to write with: its pages free or
// pending and those it can still grow by, less than 1/32 of its capacity
// (at least 64 pages). A shed writes pages too (bbolt copies every page
// it changes), and a file whose pages are all in use has none for it: the
// journals give way while there is room, not once there is none.
func (s *Store) cramped(tx *bbolt.Tx) bool {
	limit := capacity(s.db)
	return limit > 0 && limit-s.used(tx) < max(limit/32, 64*int64(s.db.Info().PageSize))
}

// capacity returns the largest size, in bytes, that the data of db (its
// high-water mark, tx.Size) can reach under db.MaxSize, or 0 with no
// MaxSize. bbolt grows a file in steps and refuses a page whose step
// would pass MaxSize, so the data fits in less: a step is the memory
// map's size (a power of two) while that is at most AllocSize, and the
// new size plus AllocSize after that (DB.allocate, bbolt v1.4 and v1.5),
// so a file of 64 MiB holds 48 of data, and one of 3 MiB holds 2. The
// rule only gets stricter as the size grows: the largest size it allows
// is found by bisection.
func capacity(db *bbolt.DB) int64 {
	if db.MaxSize <= 0 {
		return 0
	}
	ps := int64(db.Info().PageSize)
	maxSize, alloc := int64(db.MaxSize), int64(db.AllocSize)
	// allowed reports whether bbolt lets the data grow to end bytes: it
	// asks for one page more than the data (minsz in DB.allocate).
	allowed := func(end int64) bool {
		minsz := end + ps
		step := mmapSize(minsz)
		if runtime.GOOS != "windows" && step > alloc {
			step = minsz + alloc
		}
		return step <= maxSize
	}
	lo, hi := int64(0), maxSize/ps // in pages: lo allowed, hi not
	if allowed(hi * ps) {
		return hi * ps
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if allowed(mid * ps) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo * ps
}

// mmapSize is bbolt's DB.mmapSize, the size of the memory map for size
// bytes of data: a power of two from 32 KiB to 1 GiB, then whole GiB.
func mmapSize(size int64) int64 {
	for i := uint(15); i <= 30; i++ {
		if size <= 1<<i {
			return 1 << i
		}
	}
	const step = 1 << 30
	return (size + step - 1) / step * step
}

// journals returns the bucket of the journals in tx.
func (s *Store) journals(tx *bbolt.Tx) (*bbolt.Bucket, error) {
	top := tx.Bucket(s.bucket)
	if top == nil {
		return nil, fmt.Errorf("lockout/bolt: bucket %q is missing", s.bucket)
	}
	jb := top.Bucket(journalBucket)
	if jb == nil {
		return nil, fmt.Errorf("lockout/bolt: bucket %q lacks its journal bucket", s.bucket)
	}
	return jb, nil
}

// trimCount drops the oldest records of b until it holds at most keep, or
// until it has dropped limit records (limit < 0: no limit). The records
// of a journal are contiguous sequence numbers, so b holds
// Sequence - first + 1 of them, and the ones to drop are known by their
// keys: each is deleted by key. (A cursor's First after each delete would
// walk every leaf emptied so far in the transaction, which bbolt removes
// only at the commit: a drop of 25,000 records of 2 KiB took 2.6 s.)
func trimCount(b *bbolt.Bucket, keep, limit int) (int, error) {
	k, _ := b.Cursor().First()
	if len(k) != 8 || keep < 0 {
		return 0, nil
	}
	first, seq := binary.BigEndian.Uint64(k), b.Sequence()
	if seq < first || seq-first < uint64(keep) {
		return 0, nil
	}
	drop := seq - first + 1 - uint64(keep)
	if limit >= 0 && drop > uint64(limit) {
		drop = uint64(limit)
	}
	var key [8]byte
	for i := range drop {
		binary.BigEndian.PutUint64(key[:], first+i)
		if err := b.Delete(key[:]); err != nil {
			return int(i), err
		}
	}
	return int(drop), nil
}

// trimAge drops, oldest first, the records of b appended at cutoff or
// before, at most limit of them.
func trimAge(b *bbolt.Bucket, cutoff int64, limit int) (n int, err error) {
	c := b.Cursor()
	for k, v := c.First(); k != nil && n < limit; k, v = c.First() {
		if len(v) < recordHeader || int64(binary.BigEndian.Uint64(v[1:9])) > cutoff {
			break // appended since: so were the newer ones
		}
		if err := c.Delete(); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// sweepJournals drops the records past their retention from every
// journal, in transactions of at most Options.SweepChunk records, and the
// records over Options.JournalMax. It returns how many it dropped.
func (s *Store) sweepJournals(ctx context.Context) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("lockout/bolt: journal sweep: %w", err)
		}
		if !s.enter() {
			return total, errClosed
		}
		n, more, err := s.sweepJournalChunk(s.opts.SweepChunk)
		s.leave()
		total += n
		if err != nil {
			return total, fmt.Errorf("lockout/bolt: journal sweep: %w", mapErr(err))
		}
		if !more {
			return total, nil
		}
	}
}

// errNothing rolls back a write transaction that changed nothing, which
// spares its commit (and the commit's fsyncs).
var errNothing = errors.New("nothing to do")

func (s *Store) sweepJournalChunk(limit int) (n int, more bool, err error) {
	err = s.db.Update(func(tx *bbolt.Tx) error {
		jb, err := s.journals(tx)
		if err != nil {
			return err
		}
		cutoff := time.Now().UnixNano() - int64(s.opts.JournalRetention)
		for _, name := range journalNames(jb) {
			if n == limit {
				break
			}
			b := jb.Bucket(name)
			d, err := trimAge(b, cutoff, limit-n)
			n += d
			if err != nil {
				return err
			}
			d, err = trimCount(b, s.opts.JournalMax, limit-n)
			n += d
			if err != nil {
				return err
			}
		}
		if n == 0 {
			return errNothing
		}
		if n == limit {
			more = true
		}
		return err
	})
	if errors.Is(err, errNothing) {
		err = nil
	}
	return n, more, err
}

// makeRoom sheds the journals (shedJournals) when the file is cramped and
// they hold records, any store's in the file. The committer calls it after
// each commit, and Append after its own: the file then keeps the pages a
// shed needs, and a counter write that finds it full can always be given
// the journals' room.
func (s *Store) makeRoom() {
	if s.db.MaxSize <= 0 {
		return
	}
	var shed bool
	_ = s.db.View(func(tx *bbolt.Tx) error {
		shed = s.cramped(tx) && holdRecords(tx)
		return nil
	})
	if !shed {
		return
	}
	if n, _ := s.shedJournals(); n > 0 {
		s.stats.sheds.Add(1)
	}
}

// holdRecords reports whether any journal in tx's file holds a record.
func holdRecords(tx *bbolt.Tx) bool {
	for _, jb := range allJournals(tx) {
		held := false
		_ = jb.ForEachBucket(func(name []byte) error {
			if k, _ := jb.Bucket(name).Cursor().First(); k != nil {
				held = true
			}
			return nil
		})
		if held {
			return true
		}
	}
	return false
}

// shedJournals gives space back to counters: it drops the oldest quarter
// (at least 256 records) of every journal in the file, this store's and
// those of other stores that share its DB, and reports how many records
// it dropped. The committer calls it when a counter write finds the file
// full, and then tries the write again, and makeRoom before that happens.
func (s *Store) shedJournals() (int, error) {
	n := 0
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if _, err := s.journals(tx); err != nil {
			return err
		}
		// Every store's journals in the file (bolt.New lets stores share
		// a DB, each in its bucket): the counters of any of them come
		// first, and an idle store's journal would keep its pages.
		for _, jb := range allJournals(tx) {
			for _, name := range journalNames(jb) {
				b := jb.Bucket(name)
				k, _ := b.Cursor().First()
				if len(k) != 8 {
					continue
				}
				held := b.Sequence() - binary.BigEndian.Uint64(k) + 1
				drop := min(max(held/4, 256), held)
				d, err := trimCount(b, int(held-drop), -1)
				n += d
				if err != nil {
					return err
				}
			}
		}
		if n == 0 {
			return errNothing
		}
		return nil
	})
	if errors.Is(err, errNothing) {
		err = nil
	}
	return n, err
}

// allJournals returns the journal buckets of every store in tx's file: the
// top-level buckets this package made (their format key says so).
func allJournals(tx *bbolt.Tx) []*bbolt.Bucket {
	var jbs []*bbolt.Bucket
	_ = tx.ForEach(func(name []byte, top *bbolt.Bucket) error {
		if string(top.Get(formatKey)) != formatVersion {
			return nil
		}
		if jb := top.Bucket(journalBucket); jb != nil {
			jbs = append(jbs, jb)
		}
		return nil
	})
	return jbs
}

// journalNames returns the names of the journals in jb, copied: the
// callers change the journals while they go through them.
func journalNames(jb *bbolt.Bucket) [][]byte {
	var names [][]byte
	_ = jb.ForEachBucket(func(name []byte) error {
		names = append(names, bytes.Clone(name))
		return nil
	})
	return names
}

// cutRecords returns recs, or a copy of it in which the records whose
// string values add up to more than Options.JournalRecordBytes have them
// cut (backend.Record.Bounded). The caller's records and maps are left
// alone.
func (s *Store) cutRecords(recs []backend.Record) []backend.Record {
	limit := s.opts.JournalRecordBytes
	if limit < 0 {
		return recs
	}
	var out []backend.Record
	for i := range recs {
		c, cut := recs[i].Bounded(limit)
		if !cut {
			continue
		}
		if out == nil {
			out = slices.Clone(recs)
		}
		out[i] = c
	}
	if out == nil {
		return recs
	}
	return out
}
