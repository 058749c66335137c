package memory

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// Defaults of the journal's options.
const (
	// DefaultJournalRetention is the default Options.JournalRetention.
	DefaultJournalRetention = 24 * time.Hour
	// DefaultJournalMax is the default Options.JournalMax.
	DefaultJournalMax = 100_000
)

var _ backend.Journal = (*Store)(nil)

// journals holds the store's journals: a bounded ring of records each.
type journals struct {
	mu        sync.Mutex
	byName    map[string]*ring
	seq       uint64 // the last ID given
	retention int64  // nanoseconds
	max       int
}

// ring is one journal: the newest max records, oldest first from head.
type ring struct {
	recs []stored
	head int // index of the oldest record
	n    int // records held
}

// stored is a record as the store keeps it.
type stored struct {
	id       uint64
	appended int64 // store time
	rec      backend.Record
}

func (r *ring) at(i int) *stored { return &r.recs[(r.head+i)%len(r.recs)] }

// push appends s, dropping the oldest record when the ring is full.
func (r *ring) push(s stored, limit int) {
	if r.n < len(r.recs) {
		r.recs[(r.head+r.n)%len(r.recs)] = s
		r.n++
		return
	}
	if len(r.recs) < limit { // grow: unroll into a larger slice
		grown := make([]stored, r.n, min(limit, max(16, 2*len(r.recs))))
		for i := range r.n {
			grown[i] = *r.at(i)
		}
		r.recs, r.head = grown[:cap(grown)], 0
		r.recs[r.n] = s
		r.n++
		return
	}
	r.recs[r.head] = s // overwrite the oldest
	r.head = (r.head + 1) % len(r.recs)
}

// trim drops the records appended before cutoff.
func (r *ring) trim(cutoff int64) {
	for r.n > 0 && r.at(0).appended < cutoff {
		*r.at(0) = stored{}
		r.head = (r.head + 1) % len(r.recs)
		r.n--
	}
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
// Options.JournalRetention.
func (s *Store) Append(ctx context.Context, name string, recs []backend.Record) error {
	if err := s.journalCall(ctx, name); err != nil {
		return err
	}
	j := &s.journal
	now := s.now()
	j.mu.Lock()
	defer j.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	r := j.byName[name]
	if r == nil {
		if len(recs) == 0 {
			return nil
		}
		r = &ring{}
		j.byName[name] = r
	}
	for _, rec := range recs {
		j.seq++
		rec.ID = ""
		rec.Fields = maps.Clone(rec.Fields)
		r.push(stored{id: j.seq, appended: now, rec: rec}, j.max)
	}
	return nil
}

// Records returns the records of the journal named name that match q,
// newest first; see [backend.Journal]. A cursor is a record's ID.
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
	var out []backend.Record
	for i := r.n - 1; i >= 0; i-- {
		st := r.at(i)
		if st.appended < cutoff {
			break // older ones are older still
		}
		if st.id >= before || !q.Match(&st.rec) {
			continue
		}
		if len(out) == limit {
			return out, out[len(out)-1].ID, nil
		}
		rec := st.rec
		rec.ID = strconv.FormatUint(st.id, 10)
		rec.Fields = maps.Clone(rec.Fields)
		out = append(out, rec)
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
