package memory

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/internal/reccodec"
)

// Defaults of the journal's options.
const (
	// DefaultJournalRetention is the default Options.JournalRetention.
	DefaultJournalRetention = 24 * time.Hour
	// DefaultJournalMax is the default Options.JournalMax.
	DefaultJournalMax = 100_000
	// DefaultJournalRecordBytes is the default Options.JournalRecordBytes.
	DefaultJournalRecordBytes = 2048
)

var _ backend.Journal = (*Store)(nil)

// journals holds the store's journals: a bounded ring of records each.
type journals struct {
	mu        sync.Mutex
	byName    map[string]*ring
	seq       uint64 // the last ID given
	retention int64  // nanoseconds
	max       int
	bytes     int // Options.JournalRecordBytes; negative: no bound
}

// chunkSize is the size of the chunks a ring encodes its records into. A
// record longer than that gets a chunk of its own.
const chunkSize = 64 << 10

// ring is one journal: the newest max records, oldest first from head.
// Each record is kept encoded (package reccodec) in a chunk of bytes, and
// described by a slot. Neither holds a pointer the garbage collector must
// follow record by record: a full journal of 100,000 records is about 150
// chunks to it, not a million strings. Chunks are filled in order and
// dropped whole once the oldest record left is in a later one.
type ring struct {
	slots []slot
	head  int // index of the oldest record
	n     int // records held

	chunks     [][]byte // chunks[0] holds the oldest record
	firstChunk uint64   // the number of chunks[0]
	// spare is the last chunk dropped whole, kept for the next: a full
	// ring turns its chunks over without allocating (and zeroing) a
	// fresh one each time.
	spare []byte
}

// slot describes a record: its ID, when the store appended it, and where
// its encoding is.
type slot struct {
	id       uint64
	appended int64 // store time
	chunk    uint64
	off, len uint32
}

func (r *ring) at(i int) *slot { return &r.slots[(r.head+i)%len(r.slots)] }

// bytes returns the encoding of the record s describes.
func (r *ring) bytes(s *slot) []byte {
	c := r.chunks[s.chunk-r.firstChunk]
	return c[s.off : s.off+s.len]
}

// push appends the record encoded as enc, appended at now with the given
// ID, dropping the oldest record when the ring already holds limit.
func (r *ring) push(enc []byte, id uint64, now int64, limit int) {
	last := len(r.chunks) - 1
	if last < 0 || cap(r.chunks[last])-len(r.chunks[last]) < len(enc) {
		c := r.spare
		if len(enc) > cap(c) {
			c = make([]byte, 0, max(chunkSize, len(enc)))
		}
		r.spare = nil
		r.chunks = append(r.chunks, c)
		last++
	}
	c := r.chunks[last]
	off := len(c)
	c = append(c, enc...)
	r.chunks[last] = c
	s := slot{id: id, appended: now, chunk: r.firstChunk + uint64(last), off: uint32(off), len: uint32(len(c) - off)}

	switch {
	case r.n < len(r.slots):
		r.slots[(r.head+r.n)%len(r.slots)] = s
		r.n++
	case len(r.slots) < limit: // grow: unroll into a larger slice
		grown := make([]slot, r.n, min(limit, max(16, 2*len(r.slots))))
		for i := range r.n {
			grown[i] = *r.at(i)
		}
		r.slots, r.head = grown[:cap(grown)], 0
		r.slots[r.n] = s
		r.n++
	default: // overwrite the oldest
		r.slots[r.head] = s
		r.head = (r.head + 1) % len(r.slots)
		r.dropChunks()
	}
}

// trim drops the records appended before cutoff.
func (r *ring) trim(cutoff int64) {
	for r.n > 0 && r.at(0).appended < cutoff {
		r.head = (r.head + 1) % len(r.slots)
		r.n--
	}
	r.dropChunks()
}

// dropChunks drops the chunks before the oldest record's.
func (r *ring) dropChunks() {
	k := len(r.chunks)
	if r.n > 0 {
		k = int(r.at(0).chunk - r.firstChunk)
	}
	if k == 0 {
		return
	}
	if c := r.chunks[k-1]; cap(c) == chunkSize {
		r.spare = c[:0]
	}
	clear(r.chunks[:k])
	r.chunks = r.chunks[k:]
	r.firstChunk += uint64(k)
}

// journalCall checks what every journal call checks.
func (s *Store) journalCall(ctx context.Context, name string) error {
	if s.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	if !backend.ValidJournalName(name) {
		return fmt.Errorf("memory: %w: journal name %q", backend.ErrInvalid, name)
	}
	return nil
}

// Append adds recs to the journal named name; see [backend.Journal]. The
// journal keeps the newest Options.JournalMax records, for
// Options.JournalRetention; a record whose string values add up to more
// than Options.JournalRecordBytes has them cut (backend.Record.Bounded).
func (s *Store) Append(ctx context.Context, name string, recs []backend.Record) error {
	var b reccodec.Batch
	for i := range recs {
		b.Add(&recs[i])
	}
	return s.AppendBatch(ctx, name, &b)
}

// AppendBatch is Append for records the lockout engine has encoded
// already (reccodec.Appender): it copies them as they are, but for one
// longer than Options.JournalRecordBytes, which it cuts.
func (s *Store) AppendBatch(ctx context.Context, name string, b *reccodec.Batch) error {
	if err := s.journalCall(ctx, name); err != nil {
		return err
	}
	j := &s.journal
	j.mu.Lock()
	defer j.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	// Read under the lock: the records' times grow with their IDs, which
	// Records and trim rely on (an append that waited for the lock
	// would otherwise be older than those appended meanwhile).
	now := s.now()
	r := j.byName[name]
	if r == nil {
		if b.Len() == 0 {
			return nil
		}
		r = &ring{}
		j.byName[name] = r
	}
	for enc := range b.All() {
		enc, err := reccodec.Bound(enc, j.bytes)
		if err != nil {
			return fmt.Errorf("memory: append to journal %q: %w", name, err)
		}
		j.seq++
		r.push(enc, j.seq, now, j.max)
	}
	return nil
}

// journalScan is the most records one Records call reads, so that a query
// no record matches holds the store's journals for a bounded time.
const journalScan = 10_000

// Records returns the records of the journal named name that match q,
// newest first; see [backend.Journal]. A cursor is a record's ID. One call
// reads at most 10,000 records: when its filters match fewer than q's
// limit among them, it returns what it found and a cursor to go on from.
func (s *Store) Records(ctx context.Context, name string, q backend.Query) ([]backend.Record, string, error) {
	if err := s.journalCall(ctx, name); err != nil {
		return nil, "", err
	}
	limit, err := q.PageLimit()
	if err != nil {
		return nil, "", fmt.Errorf("memory: %w", err)
	}
	before := uint64(1<<64 - 1)
	if q.Before != "" {
		if before, err = strconv.ParseUint(q.Before, 10, 64); err != nil || before == 0 {
			return nil, "", fmt.Errorf("memory: %w: cursor %q", backend.ErrInvalid, q.Before)
		}
	}
	j := &s.journal
	cutoff := s.now() - j.retention
	j.mu.Lock()
	defer j.mu.Unlock()
	if s.closed.Load() {
		return nil, "", errClosed
	}
	r := j.byName[name]
	if r == nil {
		return nil, "", nil
	}
	var (
		out []backend.Record
		raw reccodec.Raw
	)
	// IDs grow from the oldest record to the newest: the first older
	// than the cursor is found by bisection.
	start := sort.Search(r.n, func(i int) bool { return r.at(i).id >= before }) - 1
	for i, scanned := start, 0; i >= 0; i, scanned = i-1, scanned+1 {
		st := r.at(i)
		if st.appended < cutoff {
			break // older ones are older still
		}
		if scanned == journalScan {
			// More to read: the next page starts after the last record
			// this one read.
			return out, strconv.FormatUint(r.at(i+1).id, 10), nil
		}
		if err := raw.Decode(r.bytes(st)); err != nil {
			return nil, "", fmt.Errorf("memory: journal %q, record %d: %w", name, st.id, err) // a bug: it encoded them
		}
		if !raw.Matches(&q) {
			continue
		}
		if len(out) == limit {
			return out, out[len(out)-1].ID, nil
		}
		out = append(out, raw.Record(strconv.FormatUint(st.id, 10)))
	}
	return out, "", nil
}

// sweepJournals drops the records older than the retention, and the
// journals left empty.
func (s *Store) sweepJournals() {
	j := &s.journal
	cutoff := s.now() - j.retention
	j.mu.Lock()
	defer j.mu.Unlock()
	for name, r := range j.byName {
		r.trim(cutoff)
		if r.n == 0 {
			delete(j.byName, name)
		}
	}
}

// JournalLen returns the number of records the journal named name holds,
// expired ones not yet swept included.
func (s *Store) JournalLen(name string) int {
	j := &s.journal
	j.mu.Lock()
	defer j.mu.Unlock()
	if r := j.byName[name]; r != nil {
		return r.n
	}
	return 0
}
