package conformance_test

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// The reference journal's settings, declared by the harness.
const (
	refRetention   = time.Minute
	refMax         = 200
	refRecordBytes = 1024
)

// journalFaults make the reference journal one of the broken journals the
// suite must catch.
type journalFaults struct {
	oldestFirst    bool // Records returns the oldest records first
	ignoresOutcome bool // the Outcome filter is ignored
	dropsFields    bool // custom fields are not kept
	keepsForever   bool // records outlive the retention
	noCap          bool // JournalMax is not enforced
	openAfterClose bool // the journal works after Close
	sharedNames    bool // every name is the same journal
	laxCursor      bool // a malformed cursor reads from the newest record
	secondsOnly    bool // times are kept to the second
	unbounded      bool // records are not cut to refRecordBytes

	retention time.Duration // refRetention when zero
}

type refRecord struct {
	rec      backend.Record
	appended time.Time
}

// journalName returns the journal a call uses, or an error.
func (s *refStore) journalName(ctx context.Context, name string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if !backend.ValidJournalName(name) {
		return "", fmt.Errorf("%w: journal name %q", backend.ErrInvalid, name)
	}
	if s.closed && !s.faults.journal.openAfterClose {
		return "", s.errClosed()
	}
	if s.faults.journal.sharedNames {
		return "shared", nil
	}
	return name, nil
}

func (s *refStore) Append(ctx context.Context, name string, recs []backend.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, err := s.journalName(ctx, name)
	if err != nil {
		return err
	}
	if s.journals == nil {
		s.journals = map[string][]refRecord{}
	}
	now := time.Now()
	f := s.faults.journal
	for _, r := range recs {
		s.seq++
		r.ID = strconv.FormatUint(s.seq, 10)
		if f.dropsFields {
			r.Fields = nil
		} else {
			r.Fields = maps.Clone(r.Fields)
		}
		if f.secondsOnly {
			r.Time = r.Time.Truncate(time.Second)
		}
		if !f.unbounded {
			r, _ = r.Bounded(refRecordBytes)
		}
		s.journals[name] = append(s.journals[name], refRecord{r, now})
	}
	if j := s.journals[name]; len(j) > refMax && !f.noCap {
		s.journals[name] = append([]refRecord(nil), j[len(j)-refMax:]...)
	}
	return nil
}

func (s *refStore) Records(ctx context.Context, name string, q backend.Query) ([]backend.Record, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, err := s.journalName(ctx, name)
	if err != nil {
		return nil, "", err
	}
	limit, err := q.PageLimit()
	if err != nil {
		return nil, "", err
	}
	f := s.faults.journal
	before := uint64(1<<64 - 1)
	if q.Before != "" {
		n, err := strconv.ParseUint(q.Before, 10, 64)
		switch {
		case err == nil:
			before = n
		case !f.laxCursor:
			return nil, "", fmt.Errorf("%w: cursor %q", backend.ErrInvalid, q.Before)
		}
	}
	if f.ignoresOutcome {
		q.Outcome = ""
	}
	now := time.Now()
	j := s.journals[name]
	var out []backend.Record
	next := ""
	for i := range j {
		k := len(j) - 1 - i // newest first
		if f.oldestFirst {
			k = i
		}
		r := j[k]
		id, _ := strconv.ParseUint(r.rec.ID, 10, 64)
		if id >= before && !f.oldestFirst || f.oldestFirst && q.Before != "" && id <= before {
			continue
		}
		if !f.keepsForever && now.Sub(r.appended) >= cmp.Or(f.retention, refRetention) {
			continue
		}
		if !q.Match(&r.rec) {
			continue
		}
		if len(out) == limit {
			next = out[len(out)-1].ID
			break
		}
		rec := r.rec
		rec.Fields = maps.Clone(rec.Fields)
		out = append(out, rec)
	}
	return out, next, nil
}
